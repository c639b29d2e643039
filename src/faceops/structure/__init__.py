"""Structured reconstruction: a raster image in, a planar graph (corners + edges, hence regions) out.

Methods:

- CornerFormer: Hongbo Tian, Yulong Li, Linzhi Huang, Xu Ling, Yue Yang and Jiani Hu, "CornerFormer: Boosting
  Corner Representation for Fine-Grained Structured Reconstruction", arXiv preprint 2304.07072 (2023, v4). No
  code of it is public and only its abstract was available to us, so its two ideas are **reconstructions**
  here, each behind a param: corner heatmaps in four direction channels (:mod:`faceops.structure.targets`,
  :mod:`faceops.structure.corners`; ``structure_train.corner_channels``) and corner detection and edge
  prediction sharing features at several granularities in one jointly trained network
  (:mod:`faceops.structure.model`; ``structure_train.feature_sharing``).
- HEAT, the baseline CornerFormer improves on: Jiacheng Chen, Yiming Qian and Yasutaka Furukawa, "HEAT: Holistic
  Edge Attention Transformer for Structured Reconstruction", CVPR 2022, arXiv 2111.15143 (code
  github.com/woodfrog/heat, read for facts only). Its Gaussian corner targets and weighted BCE, its edge
  candidates, filtering, masked training and iterative decoding, its data layout and its metrics follow
  that code (:mod:`faceops.structure.losses`, :mod:`faceops.structure.inference`,
  :mod:`faceops.structure.metrics`, ``faceops.ingest.heat``); it shares only the backbone, uses deformable
  attention and a ResNet-50, which our CPU-sized network replaces (module docs say where).

Modules: :mod:`~faceops.structure.graph` (planar graphs, faces, HEAT's rasterised regions),
:mod:`~faceops.structure.synthetic` (the generated building scenes), :mod:`~faceops.structure.shards` (a source
into shards), :mod:`~faceops.structure.targets`, :mod:`~faceops.structure.corners`,
:mod:`~faceops.structure.model` (registers ``cornerformer_tiny`` / ``cornerformer_base`` in
:mod:`faceops.models`), :mod:`~faceops.structure.losses`, :mod:`~faceops.structure.training` (the job, on
``faceops.train.fit``), :mod:`~faceops.structure.inference`, :mod:`~faceops.structure.metrics`,
:mod:`~faceops.structure.evaluation`. This ``__init__`` imports nothing, so the data stages never load torch.
"""
