"""The run report (section ``report``): contact sheets, the quarantine list and the headline table's rows."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import Field, field_validator, model_validator

from faceops.config.core import Section

__all__ = ["HeadlineRule", "DEFAULT_HEADLINE", "ReportParams"]

_KEY = r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.@=*{}/+-]+$"


class HeadlineRule(Section):
    """One row (or one row per match) of the report's headline table.

    ``key`` is ``<metrics file stem>/<key in it>`` (``evaluate/{source}/verif/acc``); ``{source}`` gives a
    row per source, one ``*`` a row per matching key (``cluster/*/bcubed/f``), its value filling ``{*}`` in
    ``label``. The file stem ``report`` names the report stage's own counts (per source ``faces``,
    ``quarantined``). ``baseline`` (same placeholders) is shown beside the value, e.g. the trivial predictor;
    ``chosen`` names a metrics key whose value is the ``*`` match in use (``cluster/method``: the clustering
    method that wrote the pseudo-labels), and that row gets marked.
    A key missing from the metrics gives no row, so a stage that is off leaves no empty line.
    """

    label: Annotated[str, Field(min_length=1, max_length=80)]
    key: Annotated[str, Field(pattern=_KEY, max_length=200)]
    baseline: Annotated[str, Field(pattern=_KEY, max_length=200)] | None = None
    digits: Annotated[int, Field(ge=0, le=6)] = 3
    chosen: Annotated[str, Field(pattern=_KEY, max_length=200)] | None = None

    @field_validator("key", "baseline", "chosen")
    @classmethod
    def _one_wildcard(cls, value: str | None) -> str | None:
        if value is not None and (value.count("*") > 1 or set(re.findall(r"{(\w*)}", value)) - {"source"}):
            raise ValueError(f"{value!r}: use at most one '*' and no placeholder but {{source}}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> "HeadlineRule":
        if self.baseline and "*" in self.baseline and "*" not in self.key:
            raise ValueError(f"baseline {self.baseline!r} has a '*' but key {self.key!r} has none to fill it")
        if self.chosen and "*" not in self.key:
            raise ValueError(f"chosen {self.chosen!r} marks one '*' match, but key {self.key!r} has no '*'")
        return self


def _rule(label: str, key: str, baseline: str | None = None, **more: object) -> HeadlineRule:
    return HeadlineRule(label=label, key=key, baseline=baseline, **more)


#: What a face team reads first after a run; a params.yaml ``report.headline`` replaces the whole list.
DEFAULT_HEADLINE: tuple[HeadlineRule, ...] = (
    _rule("faces in", "ingest/{source}/seen"),
    _rule("quarantined (ingest + align)", "report/{source}/quarantined"),
    _rule("verification accuracy", "evaluate/{source}/verif/acc"),
    _rule("verification AUC", "evaluate/{source}/verif/auc"),
    _rule("TAR at FAR {*}", "evaluate/{source}/verif/tar@far=*"),
    _rule("expression accuracy (vs. majority class)", "evaluate/{source}/expr/acc",
          "evaluate/{source}/expr/majority_acc"),
    _rule("gender accuracy (vs. majority class)", "evaluate/{source}/gender/acc",
          "evaluate/{source}/gender/majority_acc"),
    _rule("attribute accuracy, mean (vs. majority classes)", "evaluate/{source}/attr/mean_acc",
          "evaluate/{source}/attr/mean_majority_acc"),
    _rule("attributes above their majority class", "evaluate/{source}/attr/n_above_majority", digits=0),
    _rule("age MAE, years (vs. the median age)", "evaluate/{source}/age/mae", "evaluate/{source}/age/median_mae",
          digits=2),
    _rule("accuracy of group {*}", "evaluate/{source}/group/*/acc"),
    _rule("group accuracy std", "evaluate/{source}/group/std"),
    _rule("group SER (worst / best error)", "evaluate/{source}/group/ser", digits=2),
    _rule("verification accuracy on {*}", "evaluate/bin/*/verif/acc"),
    _rule("clustering B-cubed F: {*}", "cluster/*/bcubed/f", chosen="cluster/method"),
    _rule("clustering pairwise F: {*}", "cluster/*/pairwise/f", chosen="cluster/method"),
    _rule("keypoint NME, held-out (vs. supervised only)", "keypoints/heldout/nme",
          "keypoints/supervised/heldout/nme", digits=4),
)  # fmt: skip


class ReportParams(Section):
    """Contact sheets, quarantine list and headline table (stage ``report`` and the page of ``faceops report``)."""

    faces_per_split: Annotated[int, Field(ge=1, le=1024)] = 48
    columns: Annotated[int, Field(ge=1, le=64)] = 12
    quarantine_rows: Annotated[int, Field(ge=0, le=100_000)] = 200
    headline: list[HeadlineRule] = Field(default_factory=lambda: list(DEFAULT_HEADLINE))
