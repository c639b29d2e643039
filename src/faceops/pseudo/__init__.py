"""Semi-supervised keypoints (SSPCM): heatmap models trained from a few labels plus unlabelled images.

The ``keypoints`` stage uses :func:`fit_sspcm` and :func:`predict_keypoints` to write pseudo-landmarks
for unlabelled faces (5 points) or COCO body keypoints (17 joints). Importing this package registers
the ``sspcm_*`` heatmap networks in :mod:`faceops.models`.
"""

from faceops.pseudo.augment import affine_theta, random_affine, warp, warp_points
from faceops.pseudo.cutocclude import CutOcclude, cut_occlude
from faceops.pseudo.heatmaps import decode_heatmaps, encode_heatmaps, heatmap_to_image, image_to_heatmap
from faceops.pseudo.losses import consistency_loss, joints_mse, supervised_loss
from faceops.pseudo.metrics import COCO_OKS_STATS, inter_ocular, nme, oks_ap, pck
from faceops.pseudo.models import HeatmapNet
from faceops.pseudo.selection import PAIR_NAMES, PairSelection, outlier_weights, select_pairs
from faceops.pseudo.sspcm import FitResult, SSPCMConfig, build_nets, fit_sspcm, fit_supervised, predict_keypoints

__all__ = [
    "COCO_OKS_STATS", "PAIR_NAMES", "CutOcclude", "FitResult", "HeatmapNet", "PairSelection", "SSPCMConfig",
    "affine_theta", "build_nets", "consistency_loss", "cut_occlude", "decode_heatmaps", "encode_heatmaps",
    "fit_sspcm", "fit_supervised", "heatmap_to_image", "image_to_heatmap", "inter_ocular", "joints_mse", "nme",
    "oks_ap", "outlier_weights", "pck", "predict_keypoints", "random_affine", "select_pairs",
    "supervised_loss", "warp", "warp_points",
]  # fmt: skip
