"""Embeddings of aligned faces for the ``embed`` stage: by the trained model or dlib's ResNet, here or on Dask.

- `faceops.embed.backends`: the vectors of the faces in shard files (one process, or one shard per Dask task).
- `faceops.embed.sets`: the embedder the params name (``make_embedder``), run over every (source, split)
  (``embed_splits``): the stage's work.
"""

from faceops.embed.backends import concat_sets, dlib_embeddings, embed_shards_on_dask, model_embeddings
from faceops.embed.sets import EmbedSplit, embed_splits, make_embedder

__all__ = ["EmbedSplit", "concat_sets", "dlib_embeddings", "embed_shards_on_dask", "embed_splits", "make_embedder",
           "model_embeddings"]
