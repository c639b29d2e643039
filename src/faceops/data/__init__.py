"""Data for training and evaluation: identity-disjoint splits and the streaming shard reader.

``faceops.data.split`` assigns identities to train/val/test; ``faceops.data.loader`` streams the shards
that ``faceops.io.shards`` wrote. Import the submodule you need; the loader pulls in torch and cv2.
"""
