"""The one pydantic schema for params.yaml.

Why one schema: a wrong key, type or range must fail *before any stage runs*, with a message that
names the key and what is allowed (DEVELOPERS.md). Every section is a frozen model with
``extra="forbid"``, so a misspelt key is an error, not a silently ignored setting.

Stages read only their own section (plus ``base``); DVC's ``params:`` lists in dvc.yaml declare
the same sections, so a change re-runs exactly the stages that read it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from faceops.parallel import check_dask_address

__all__ = ["Params", "ParamsError", "load_params", "parse_params"]

SOURCE_NAME_PATTERN = r"^[a-z0-9_]+$"


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class BaseParams(_Section):
    """Values every stage shares."""

    seed: Annotated[int, Field(ge=0)] = 0
    image_size: Literal[112] = 112


class SampleParams(_Section):
    """The embedded synthetic data set (stage ``sample``)."""

    identities: Annotated[int, Field(ge=2, le=100_000)] = 60
    images_per_identity: Annotated[int, Field(ge=1, le=10_000)] = 20
    min_side: Annotated[int, Field(ge=128, le=4096)] = 160
    max_side: Annotated[int, Field(ge=128, le=4096)] = 320
    jpeg_quality: tuple[int, int] = (60, 95)

    @model_validator(mode="after")
    def _sides_ordered(self) -> "SampleParams":
        if self.min_side > self.max_side:
            raise ValueError(f"min_side ({self.min_side}) must be <= max_side ({self.max_side})")
        lo, hi = self.jpeg_quality
        if not 1 <= lo <= hi <= 100:
            raise ValueError(f"jpeg_quality must be [lo, hi] with 1 <= lo <= hi <= 100, got {self.jpeg_quality}")
        return self


class SourceSpec(_Section):
    """One raw source under data/raw/<name>/ and the layout it is stored in."""

    name: Annotated[str, Field(pattern=SOURCE_NAME_PATTERN, max_length=64)]
    format: Literal["imagefolder", "unlabeled", "labels_csv", "coco_keypoints"]


class IngestParams(_Section):
    """Validation limits for the ``ingest`` stage."""

    sources: list[SourceSpec] = Field(default_factory=lambda: [SourceSpec(name="sample", format="labels_csv")])
    max_pixels: Annotated[int, Field(ge=1, le=500_000_000)] = 40_000_000
    max_file_bytes: Annotated[int, Field(ge=1)] = 50_000_000
    min_side: Annotated[int, Field(ge=1)] = 32
    workers: Annotated[int, Field(ge=1, le=64)] = 2

    @field_validator("sources")
    @classmethod
    def _unique_names(cls, sources: list[SourceSpec]) -> list[SourceSpec]:
        names = [s.name for s in sources]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"source names must be unique; repeated: {dupes}")
        if not sources:
            raise ValueError("at least one source is required")
        return sources


class _RunnerChoice(_Section):
    """Who computes a stage's parallel part: ``processes`` on this machine (default), or ``dask``: chunks
    of work through a Prefect flow to a Dask cluster (``faceops.parallel``; the ``dask`` extra), so
    several machines can share a large run. With ``dask`` and no ``dask_address`` a temporary local
    cluster runs; else the running scheduler at ``dask_address`` (``tcp://`` or ``tls://host:port``),
    whose workers must see the workspace under the same paths.
    """

    runner: Literal["processes", "dask"] = "processes"
    dask_address: str | None = None

    @field_validator("dask_address")
    @classmethod
    def _dask_address_form(cls, address: str | None) -> str | None:
        try:
            return None if address is None else check_dask_address(address)
        except ValueError:  # the error report shows the value already
            raise ValueError("must be a Dask scheduler address: tcp://host:port or tls://host:port") from None

    @model_validator(mode="after")
    def _address_needs_dask(self) -> "_RunnerChoice":
        if self.dask_address is not None and self.runner != "dask":
            raise ValueError(f"dask_address is only used with runner: dask (runner is {self.runner!r})")
        return self


class AlignParams(_RunnerChoice):
    """Face alignment (stage ``align``).

    Landmarks come from, in order: the source's labels (``use_given_landmarks``), the ``keypoints``
    stage's pseudo-landmarks when their mean confidence reaches ``pseudo_min_confidence``
    (``use_pseudo_landmarks``), else the detector.

    ``runner`` (see ``_RunnerChoice``) decides who computes the images missing from the per-image
    cache, never what comes out: ``processes`` uses ``workers`` processes; ``dask`` sends chunks of
    images to the cluster (a temporary local one has ``workers`` processes).
    """

    detector: Literal["mtcnn"] = "mtcnn"
    min_score: Annotated[float, Field(ge=0.0, le=1.0)] = 0.9
    multiple_faces: Literal["largest", "quarantine"] = "largest"
    use_given_landmarks: bool = True
    use_pseudo_landmarks: bool = True
    pseudo_min_confidence: Annotated[float, Field(ge=0.0, le=1.0)] = 0.3
    workers: Annotated[int, Field(ge=1, le=64)] = 2
    jpeg_quality: Annotated[int, Field(ge=50, le=100)] = 95


class SplitFractions(_Section):
    train: Annotated[float, Field(ge=0.0, le=1.0)] = 0.7
    val: Annotated[float, Field(ge=0.0, le=1.0)] = 0.1
    test: Annotated[float, Field(ge=0.0, le=1.0)] = 0.2

    @model_validator(mode="after")
    def _sum_to_one(self) -> "SplitFractions":
        total = self.train + self.val + self.test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"train + val + test must sum to 1, got {total:.6g}")
        return self


class KeypointsParams(_Section):
    """Semi-supervised landmarks (stage ``keypoints``, SSPCM) for faces that come without them.

    Per source, faces with given landmarks are the labelled set; ``holdout_fraction`` of them (by id
    hash) have their landmarks hidden and join the unlabelled ones, so every run measures the
    pseudo-labels' NME against the truth (the demo hides 90 %: 10 % labels, as in SSPCM's setting).
    Crops: a square ``crop_spread`` x the landmarks' mean radius around the given landmarks
    (labelled and held-out, jittered by ``crop_jitter``) or around the detector's landmarks (faces
    with none). ``max_unlabeled`` caps the unlabelled crops used for *training* (all are predicted).
    The SSPCM settings not listed keep the library defaults (``faceops.pseudo.SSPCMConfig``).
    ``compare_supervised`` also trains one network on the labelled crops alone and reports its
    held-out scores as ``supervised/...`` (the baseline SSPCM has to beat; about 1/6 of the cost).
    """

    enabled: bool = True
    sources: list[Annotated[str, Field(pattern=SOURCE_NAME_PATTERN)]] = Field(default_factory=lambda: ["sample"])
    holdout_fraction: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.9
    max_unlabeled: Annotated[int, Field(ge=1)] = 300
    crop_spread: Annotated[float, Field(gt=1.0, le=10.0)] = 3.5
    crop_jitter: Annotated[float, Field(ge=0.0, le=0.5)] = 0.1
    detector: Literal["mtcnn"] = "mtcnn"
    min_score: Annotated[float, Field(ge=0.0, le=1.0)] = 0.9
    method: Literal["sspcm", "supervised"] = "sspcm"
    input_size: Literal[64, 96, 128] = 64
    epochs: Annotated[int, Field(ge=1, le=10_000)] = 20
    batch_size: Annotated[int, Field(ge=1, le=4096)] = 32
    lr: Annotated[float, Field(gt=0.0, le=1.0)] = 1e-3
    score_threshold: Annotated[float, Field(ge=0.0, le=1.0)] = 0.1
    inconsistency_filter: bool = True
    inconsistency_threshold: Annotated[float, Field(ge=0.0)] = 0.6
    compare_supervised: bool = True


class ShardParams(_Section):
    """WebDataset shards (stage ``shard``)."""

    maxcount: Annotated[int, Field(ge=1, le=1_000_000)] = 500
    split: SplitFractions = Field(default_factory=SplitFractions)


class ReportParams(_Section):
    """Contact sheets and summary (stage ``report``)."""

    faces_per_split: Annotated[int, Field(ge=1, le=1024)] = 48
    columns: Annotated[int, Field(ge=1, le=64)] = 12


class TrainSource(_Section):
    """One shard source (data/shards/<name>/, its ``train`` split) and its share of every batch."""

    name: Annotated[str, Field(pattern=SOURCE_NAME_PATTERN, max_length=64)]
    share: Annotated[float, Field(gt=0.0, le=1.0)] = 1.0


class _FitParams(_Section):
    """What ``pretrain`` and ``train`` share: data mix, AdamW + warm-up/cosine, margin, checkpoints.

    SwinFace (arXiv:2308.11509): AdamW, linear warm-up then cosine to ``lr * final_lr_ratio``, CosFace
    (``margin_scale`` s=64, ``margin_cos`` m=0.4), Partial FC ``sample_rate``, grad-norm clip 5 on the
    backbone only (0 = off). ``batch_size`` is per process (torchrun: global batch = batch_size x
    processes), split over ``sources`` by share. ``precision`` applies on CUDA only; CPU runs are fp32
    so that a seeded run is reproducible. Resumable checkpoints every ``checkpoint_every`` steps;
    dvclive gets interval means every ``log_every`` steps.
    """

    sources: list[TrainSource] = Field(default_factory=lambda: [TrainSource(name="sample")])
    steps: Annotated[int, Field(ge=1, le=10_000_000)] = 100
    batch_size: Annotated[int, Field(ge=1, le=65_536)] = 32
    lr: Annotated[float, Field(gt=0.0, le=1.0)] = 1e-3
    weight_decay: Annotated[float, Field(ge=0.0, le=1.0)] = 0.05
    warmup_steps: Annotated[int, Field(ge=0)] = 10
    final_lr_ratio: Annotated[float, Field(ge=0.0, le=1.0)] = 0.01
    backbone_lr_scale: Annotated[float, Field(gt=0.0, le=1.0)] = 1.0
    grad_clip: Annotated[float, Field(ge=0.0)] = 5.0
    margin_scale: Annotated[float, Field(gt=0.0, le=1024.0)] = 64.0
    margin_cos: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.4
    sample_rate: Annotated[float, Field(gt=0.0, le=1.0)] = 1.0
    hflip: Annotated[float, Field(ge=0.0, le=1.0)] = 0.5
    shuffle_buffer: Annotated[int, Field(ge=0, le=1_000_000)] = 1000
    num_workers: Annotated[int, Field(ge=0, le=64)] = 0
    precision: Literal["bf16", "fp16", "fp32"] = "bf16"
    checkpoint_every: Annotated[int, Field(ge=1)] = 50
    log_every: Annotated[int, Field(ge=1)] = 1

    @model_validator(mode="after")
    def _consistent(self) -> "_FitParams":
        if self.warmup_steps >= self.steps:
            raise ValueError(f"warmup_steps ({self.warmup_steps}) must be < steps ({self.steps})")
        names = [s.name for s in self.sources]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes or not names:
            raise ValueError(f"sources must be non-empty with unique names; repeated: {dupes}")
        total = sum(s.share for s in self.sources)
        if abs(total - 1.0) > 1e-6:
            shares = {s.name: s.share for s in self.sources}
            raise ValueError(f"source shares must sum to 1, got {total:.6g} ({shares})")
        if len(self.sources) > self.batch_size:
            raise ValueError(
                f"batch_size ({self.batch_size}) must give every one of the {len(self.sources)} sources a sample"
            )
        return self


class PretrainParams(_FitParams):
    """Recognition-only pre-training (stage ``pretrain``); ``enabled: false`` makes ``train`` start from scratch."""

    enabled: bool = True
    model: Literal["swinface_tiny_rec", "swinface_t_rec"] = "swinface_tiny_rec"
    steps: Annotated[int, Field(ge=1, le=10_000_000)] = 120
    warmup_steps: Annotated[int, Field(ge=0)] = 12


class TrainParams(_FitParams):
    """Multi-task SwinFace training (stage ``train``); the backbone learns at ``lr * backbone_lr_scale``.

    ``init``: ``pretrain`` starts the backbone from the ``pretrain`` stage's model (from scratch when
    pre-training is disabled); a promotion tag ``model@vN`` fine-tunes the whole model promoted as that
    version (backbone and analysis heads; the identity classifier starts afresh, since the identities may
    differ). A tag rather than "the latest promoted" so that params, and so dvc.lock, say which model a
    run started from; ``ops.retrain.from_promoted`` moves it to the newest tag before a scheduled retrain.
    """

    model: Literal["swinface_tiny", "swinface_t"] = "swinface_tiny"
    init: Annotated[str, Field(pattern=r"^(pretrain|model@v[1-9][0-9]*)$")] = "pretrain"
    steps: Annotated[int, Field(ge=1, le=10_000_000)] = 160
    warmup_steps: Annotated[int, Field(ge=0)] = 16
    backbone_lr_scale: Annotated[float, Field(gt=0.0, le=1.0)] = 0.1


class EvaluateParams(_Section):
    """Evaluation of the trained model (stage ``evaluate``)."""

    sources: list[Annotated[str, Field(pattern=SOURCE_NAME_PATTERN)]] = Field(default_factory=lambda: ["sample"])
    split: Literal["train", "val", "test", "unlabeled"] = "test"
    n_pairs: Annotated[int, Field(ge=2, le=10_000_000)] = 3000
    folds: Annotated[int, Field(ge=2, le=100)] = 10
    batch_size: Annotated[int, Field(ge=1, le=4096)] = 64
    num_workers: Annotated[int, Field(ge=0, le=64)] = 0
    bin_sets: list[Annotated[str, Field(pattern=SOURCE_NAME_PATTERN)]] = Field(default_factory=list)


class EmbedParams(_RunnerChoice):
    """Embedding extraction (stage ``embed``): L2-normalised float32 vectors per source and split.

    ``backend: swinface`` uses the model the ``train`` stage wrote. ``backend: dlib`` uses dlib's
    pretrained ResNet (128-d; extra ``.[dlib]``), so real photos can be clustered before any training
    here; ``batch_size`` is then faces per dlib batch. Splits are the shard splits (``unlabeled``
    holds a source's samples without identity).

    ``runner: dask`` (see ``_RunnerChoice``) embeds one shard file per Dask task, on the workers' CPUs
    (one torch thread each; a local cluster has one process per CPU here). dlib's vectors are the same
    bytes either way; a trained model's agree to float rounding (its batches end at shard boundaries).
    """

    backend: Literal["swinface", "dlib"] = "swinface"
    sources: list[Annotated[str, Field(pattern=SOURCE_NAME_PATTERN)]] = Field(default_factory=lambda: ["sample"])
    splits: list[Literal["train", "val", "test", "unlabeled"]] = Field(default_factory=lambda: ["train", "test"])
    batch_size: Annotated[int, Field(ge=1, le=4096)] = 64
    num_workers: Annotated[int, Field(ge=0, le=64)] = 0


class EmbeddingRef(_Section):
    """One embedded (source, split) pair written by ``embed``."""

    source: Annotated[str, Field(pattern=SOURCE_NAME_PATTERN)]
    split: Literal["train", "val", "test", "unlabeled"]


class ClusterParams(_Section):
    """Pseudo-labels for an unlabeled target (stage ``cluster``), AIN's linkage-GCN recipe.

    The GCN learns "same identity?" for kNN edges on ``train_on`` (a labelled embedding set) and then
    clusters ``target``. In the demo the target is the sample's held-out test identities, clustered as
    if unlabeled; their hidden labels only score the result (metrics), never steer it.
    ``k1, k2, u``: the instance pivot subgraph (1-hop, 2-hop neighbours, active links); ``max_size``
    caps a pseudo-identity; ``min_members``: smaller clusters stay out of the pseudo-label shards (a
    one-face class teaches nothing). A baseline ``method`` chooses its free parameter (threshold,
    distance, min cluster size) by pairwise F on ``train_on``; ``compare_baselines`` scores them all.
    ``calibration_share`` of ``train_on``'s identities (by name hash) are kept out of GCN training and
    choose the propagation's ``min_score``, ``max_size`` (``max_size`` then caps the candidates), split
    step and edge-score merge (mean or max); 0 trains on all of them and uses ``min_score`` and
    ``max_size`` as given (mean merge, step 0.6).
    """

    method: Literal["gcn", "threshold", "hdbscan", "agglomerative"] = "gcn"
    train_on: EmbeddingRef = Field(default_factory=lambda: EmbeddingRef(source="sample", split="train"))
    target: EmbeddingRef = Field(default_factory=lambda: EmbeddingRef(source="sample", split="test"))
    k1: Annotated[int, Field(ge=1, le=1024)] = 10
    k2: Annotated[int, Field(ge=1, le=1024)] = 3
    u: Annotated[int, Field(ge=1, le=1024)] = 3
    epochs: Annotated[int, Field(ge=1, le=1000)] = 4
    max_size: Annotated[int, Field(ge=2)] = 300
    min_score: Annotated[float, Field(ge=0.0, le=1.0)] = 0.5
    min_members: Annotated[int, Field(ge=1)] = 2
    compare_baselines: bool = True
    calibration_share: Annotated[float, Field(ge=0.0, le=0.9)] = 0.3

    @model_validator(mode="after")
    def _hops_fit(self) -> "ClusterParams":
        if self.k2 > self.k1 or self.u > self.k1:
            raise ValueError(f"k2 ({self.k2}) and u ({self.u}) must be <= k1 ({self.k1})")
        return self


class PromotionParams(_Section):
    """When a newly evaluated model replaces the promoted one (``model@vN`` git tags).

    ``metric`` is a key of metrics/evaluate.json; the candidate must beat the promoted model by
    more than ``margin`` in the direction ``mode``.
    """

    metric: Annotated[str, Field(min_length=1)] = "sample/verif/acc"
    mode: Literal["max", "min"] = "max"
    margin: Annotated[float, Field(ge=0.0)] = 0.0


class InboxParams(_Section):
    """The watched inbox: ``path/<source>/`` folders whose files become a new version of that source."""

    path: Annotated[str, Field(min_length=1)] = "data/inbox"
    settle_seconds: Annotated[float, Field(ge=0.0, le=86_400.0)] = 10.0
    poll_seconds: Annotated[float, Field(gt=0.0, le=3600.0)] = 2.0


class RetrainParams(_Section):
    """Scheduled retraining (the ``retrain`` deployment of ``faceops serve``).

    ``from_promoted``: before it runs, the retrain flow sets ``train.init`` in params.yaml to the newest
    ``model@vN`` tag (when there is one), so each scheduled run fine-tunes the promoted model on the data of
    the day instead of starting over; the params change goes into the version commit like any other.
    """

    cron: str = "0 3 * * 0"
    timezone: Annotated[str, Field(min_length=1)] = "UTC"
    enabled: bool = True
    from_promoted: bool = False

    @field_validator("cron")
    @classmethod
    def _five_fields(cls, cron: str) -> str:
        fields = cron.split()
        if len(fields) != 5 or not all(re.fullmatch(r"[0-9A-Za-z*/,?#-]+", f) for f in fields):
            raise ValueError(f"cron must have 5 fields (minute hour day month weekday), e.g. '0 3 * * 0'; got {cron!r}")
        return cron


class OpsParams(_Section):
    """Operations read by ``faceops serve`` and the new-data/retrain flows (not by any DVC stage)."""

    inbox: InboxParams = Field(default_factory=InboxParams)
    retrain: RetrainParams = Field(default_factory=RetrainParams)
    promotion: PromotionParams = Field(default_factory=PromotionParams)
    commit_versions: bool = True


class PipelineParams(_Section):
    """Orchestration settings read by the Prefect flow (not by any DVC stage)."""

    retries: Annotated[int, Field(ge=0, le=10)] = 0
    retry_delay_seconds: Annotated[float, Field(ge=0.0, le=3600.0)] = 10.0
    timeout_seconds: Annotated[float, Field(gt=0.0)] = 3600.0
    stage_timeout_seconds: dict[str, Annotated[float, Field(gt=0.0)]] = Field(default_factory=dict)
    stage_retries: dict[str, Annotated[int, Field(ge=0, le=10)]] = Field(default_factory=dict)
    lock_wait_seconds: Annotated[float, Field(ge=0.0)] = 0.0


class Params(_Section):
    """All of params.yaml."""

    base: BaseParams = Field(default_factory=BaseParams)
    sample: SampleParams = Field(default_factory=SampleParams)
    ingest: IngestParams = Field(default_factory=IngestParams)
    align: AlignParams = Field(default_factory=AlignParams)
    keypoints: KeypointsParams = Field(default_factory=KeypointsParams)
    shard: ShardParams = Field(default_factory=ShardParams)
    report: ReportParams = Field(default_factory=ReportParams)
    pretrain: PretrainParams = Field(default_factory=PretrainParams)
    train: TrainParams = Field(default_factory=TrainParams)
    evaluate: EvaluateParams = Field(default_factory=EvaluateParams)
    embed: EmbedParams = Field(default_factory=EmbedParams)
    cluster: ClusterParams = Field(default_factory=ClusterParams)
    ops: OpsParams = Field(default_factory=OpsParams)
    pipeline: PipelineParams = Field(default_factory=PipelineParams)


class ParamsError(ValueError):
    """params.yaml is invalid; the message names every bad key and what is allowed."""


def _format_errors(err: ValidationError, origin: str) -> str:
    lines = [f"{origin} is invalid ({err.error_count()} problem{'s' if err.error_count() != 1 else ''}):"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "<root>"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key (misspelt or not supported here)"
        got = e.get("input")
        shown = "" if e["type"] in ("extra_forbidden", "missing") or isinstance(got, dict) else f" (got {got!r})"
        lines.append(f"  - {key}: {msg}{shown}")
    return "\n".join(lines)


def parse_params(data: object, origin: str = "params") -> Params:
    """Validate an already-loaded mapping.

    Raises:
        ParamsError: listing every invalid key with its allowed values.
    """
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ParamsError(f"{origin} must be a mapping of sections, got {type(data).__name__}")
    try:
        return Params.model_validate(data)
    except ValidationError as err:
        raise ParamsError(_format_errors(err, origin)) from None


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate a params file.

    Raises:
        FileNotFoundError: the file does not exist.
        ParamsError: YAML syntax error or invalid keys/values.
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ParamsError(f"{path} is not valid YAML: {err}") from None
    return parse_params(data, origin=str(path))
