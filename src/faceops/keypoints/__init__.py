"""Semi-supervised keypoints (SSPCM): heatmap models trained from a few labels plus unlabelled images.

SSPCM: Huang, Li, Tian, Yang, Li, Deng and Ye, "Semi-Supervised 2D Human Pose Estimation Driven by Position
Inconsistency Pseudo Label Correction Module", CVPR 2023 (arXiv 2303.04346); code github.com/hlz0606/SSPCM.
The paper estimates human body pose; here the method learns five facial landmarks (and COCO body joints)
with small networks. Only the paper's abstract was available to us: the method follows the authors' released
code, written anew without copying it, and each place where this package departs from that code or fills a
gap says so (:mod:`faceops.keypoints.sspcm`: pseudo-label targets, consistency ramp-up, warm-up epochs;
:mod:`faceops.keypoints.selection`: position-inconsistency removal switched on;
:mod:`faceops.keypoints.cutocclude`: the paste axes). The heatmap networks follow SimpleBaseline
(:mod:`faceops.keypoints.models`).

The ``keypoints`` stage calls :func:`pseudo_keypoints` (:mod:`faceops.keypoints.tasks`: manifest rows in;
crops, face and body models, manifest rows, scores out), built on :func:`train_keypoint_models` and
:func:`predict_keypoints` (uint8 crops in, pixel points and confidences out; records by
:meth:`KeypointModel.to_record`). The tensor level (:func:`fit_sspcm`, :func:`fit_supervised`,
:func:`predict_points`) is for benches and tests.
Importing this package registers the ``sspcm_*`` heatmap networks in :mod:`faceops.models`.
"""

from faceops.keypoints.api import RECORD_FORMAT, KeypointModel, predict_keypoints, train_keypoint_models
from faceops.keypoints.augment import affine_theta, random_affine, warp, warp_points
from faceops.keypoints.cutocclude import CutOcclude, cut_occlude
from faceops.keypoints.heatmaps import decode_heatmaps, encode_heatmaps, heatmap_to_image, image_to_heatmap
from faceops.keypoints.losses import consistency_loss, joints_mse, supervised_loss
from faceops.keypoints.metrics import COCO_OKS_STATS, inter_ocular, nme, oks_ap, pck
from faceops.keypoints.models import HeatmapNet
from faceops.keypoints.selection import PAIR_NAMES, PairSelection, outlier_weights, select_pairs
from faceops.keypoints.sspcm import (
    FitResult,
    SSPCMConfig,
    build_nets,
    fit_sspcm,
    fit_supervised,
    predict_points,
    pseudo_targets,
    rampup_weight,
    steps_per_epoch,
)
from faceops.keypoints.tasks import KeypointsResult, pseudo_keypoints

__all__ = [
    "COCO_OKS_STATS", "PAIR_NAMES", "RECORD_FORMAT", "CutOcclude", "FitResult", "HeatmapNet", "KeypointModel",
    "KeypointsResult", "pseudo_keypoints",
    "PairSelection", "SSPCMConfig", "affine_theta", "build_nets", "consistency_loss", "cut_occlude",
    "decode_heatmaps", "encode_heatmaps", "fit_sspcm", "fit_supervised", "heatmap_to_image", "image_to_heatmap",
    "inter_ocular", "joints_mse", "nme", "oks_ap", "outlier_weights", "pck", "predict_keypoints",
    "predict_points", "pseudo_targets", "rampup_weight", "random_affine", "select_pairs", "steps_per_epoch",
    "supervised_loss", "train_keypoint_models", "warp", "warp_points",
]  # fmt: skip
