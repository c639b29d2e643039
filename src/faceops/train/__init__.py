"""Training SwinFace-style models: batches, schedule, the flat ``fit`` loop, DDP, export.

Modules: ``batch`` (normalisation, label scan, targets + masks, flips), ``mixing`` (multi-source
batches), ``schedule`` (warm-up + cosine), ``distributed`` (torchrun/DDP), ``loop`` (``fit``),
``export`` (model records, initialisation), ``run`` (assembling a run's parts), ``job`` (one resumable
training job: its section in, the record to export out; imported from ``faceops.train.job``, so the code
that only loads a trained model does not depend on the params sections).
Checkpoint files live in ``faceops.io.checkpoint``. Nothing here reads params.yaml or imports a
logging library.
"""

from faceops.train.batch import (
    IMAGE_MEAN, IMAGE_STD, LabelStats, flip_images, identity_key, label_stats, normalize_images, to_targets,
)  # fmt: skip
from faceops.train.distributed import DistInfo, close_distributed, init_distributed, mean_across_ranks, world_info
from faceops.train.export import (
    build_model, disabled_record, init_backbone, init_head_bias, load_trained_model, model_record,
)  # fmt: skip
from faceops.train.loop import FitResult, StepInfo, fit, summarize
from faceops.train.mixing import Batch, MixedBatches, batch_counts
from faceops.train.run import TrainingRun, build_training
from faceops.train.schedule import make_scheduler, warmup_cosine

__all__ = [
    "IMAGE_MEAN", "IMAGE_STD", "normalize_images", "identity_key", "LabelStats", "label_stats", "to_targets",
    "flip_images",
    "Batch", "batch_counts", "MixedBatches",
    "warmup_cosine", "make_scheduler",
    "DistInfo", "init_distributed", "close_distributed", "world_info", "mean_across_ranks",
    "fit", "StepInfo", "FitResult", "summarize",
    "model_record", "disabled_record", "build_model", "load_trained_model", "init_backbone", "init_head_bias",
    "TrainingRun", "build_training",
]  # fmt: skip
