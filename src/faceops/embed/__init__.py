"""Embeddings of aligned faces for the ``embed`` stage: by the trained model or dlib's ResNet, here or on Dask.

- `faceops.embed.backends`: the vectors of the faces in shard files (one process, or one shard per Dask task).
"""

from faceops.embed.backends import concat_sets, dlib_embeddings, embed_shards_on_dask, model_embeddings

__all__ = ["concat_sets", "dlib_embeddings", "embed_shards_on_dask", "model_embeddings"]
