"""The schema of all of params.yaml, assembled from the section modules (what the flows and the CLI validate).

A wrong key, type or range fails *before any stage runs*, with a message that names the key and what
is allowed. Stages do not import this module: each loads only its own sections
(``faceops.config.core.load_sections``), so a change to one section's defaults re-runs only the stages
that read it (their dvc.yaml deps list those section modules).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator

from faceops.config.adapt import AdaptParams
from faceops.config.align import AlignParams
from faceops.config.base import BaseParams
from faceops.config.cluster import ClusterParams
from faceops.config.core import ParamsError, Section, read_params_file, validate
from faceops.config.embed import EmbedParams
from faceops.config.evaluate import EvaluateParams
from faceops.config.ingest import IngestParams
from faceops.config.keypoints import KeypointsParams
from faceops.config.monitor import MonitorParams
from faceops.config.ops import OpsParams
from faceops.config.pipeline import PipelineParams
from faceops.config.pretrain import PretrainParams
from faceops.config.report import ReportParams
from faceops.config.robustness import RobustnessParams
from faceops.config.sample import SampleParams
from faceops.config.shard import ShardParams
from faceops.config.sr import SrParams
from faceops.config.structure_evaluate import StructureEvaluateParams
from faceops.config.structure_sample import StructureSampleParams
from faceops.config.structure_shard import StructureShardParams
from faceops.config.structure_train import StructureTrainParams
from faceops.config.train import TrainParams

__all__ = ["Params", "ParamsError", "load_params", "parse_params"]


class Params(Section):
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
    adapt: AdaptParams = Field(default_factory=AdaptParams)
    sr: SrParams = Field(default_factory=SrParams)
    evaluate: EvaluateParams = Field(default_factory=EvaluateParams)
    embed: EmbedParams = Field(default_factory=EmbedParams)
    cluster: ClusterParams = Field(default_factory=ClusterParams)
    robustness: RobustnessParams = Field(default_factory=RobustnessParams)
    monitor: MonitorParams = Field(default_factory=MonitorParams)
    structure_sample: StructureSampleParams = Field(default_factory=StructureSampleParams)
    structure_shard: StructureShardParams = Field(default_factory=StructureShardParams)
    structure_train: StructureTrainParams = Field(default_factory=StructureTrainParams)
    structure_evaluate: StructureEvaluateParams = Field(default_factory=StructureEvaluateParams)
    ops: OpsParams = Field(default_factory=OpsParams)
    pipeline: PipelineParams = Field(default_factory=PipelineParams)

    @model_validator(mode="after")
    def _adapt_continues_train(self) -> "Params":
        """adapt trains on from the `train` stage's model, so both build the same variant; caught here, before
        train has spent its steps, rather than when adapt finds the checkpoint does not fit."""
        if self.adapt.model != self.train.model:
            raise ValueError(f"adapt.model ({self.adapt.model!r}) must equal train.model ({self.train.model!r}): "
                             "adapt continues training the train stage's model")
        return self


def parse_params(data: object, origin: str = "params") -> Params:
    """Validate an already-loaded mapping.

    Raises:
        ParamsError: listing every invalid key with its allowed values.
    """
    return validate(Params, data, origin)


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate a params file.

    Raises:
        FileNotFoundError: the file does not exist.
        ParamsError: YAML syntax error or invalid keys/values.
    """
    return parse_params(read_params_file(path), origin=str(path))
