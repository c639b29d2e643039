"""File formats: every read and write of images, manifests, shards and weights lives in this package.

Library code outside ``faceops.io`` never opens files (docs/ARCHITECTURE.md); import the module you
need (``faceops.io.images``, ``faceops.io.jsonl``, ...) directly.
"""
