"""The report's headline table: rules over the flat metrics of every stage -> rounded rows, per source.

Rules are data (``faceops.config.report.HeadlineRule``: label, key template, baseline, digits, chosen), so a
new stage's metrics reach the table through a params entry, not code; a rule whose key no metrics file holds
gives no row. Metrics are one flat mapping ``<metrics file stem>/<key>`` -> value, as ``dvc metrics show``
names them. :func:`metric_changes` is ``dvc metrics diff`` over two such mappings.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

__all__ = ["Rule", "HeadlineRow", "headline_rows", "format_value", "format_metric", "format_change", "metric_changes"]

#: A metric value as the metrics files hold it.
Value = float | int | str | bool | None


class Rule(Protocol):
    """What :func:`headline_rows` reads of a rule (``faceops.config.report.HeadlineRule``)."""

    label: str
    key: str
    baseline: str | None
    digits: int
    chosen: str | None


@dataclass(frozen=True)
class HeadlineRow:
    """One line of the headline table.

    Attributes:
        group: the source the row belongs to, or ``""`` for rows over all sources.
        label: what it measures, wildcards filled in.
        key: the flat metrics key of ``value`` (``evaluate/sample/verif/acc``).
        value: the metric.
        baseline: the value to compare with (trivial predictor, supervised-only, ...), or None.
        digits: decimals to show.
        chosen: this row's ``*`` match is the one the pipeline used (the value of ``rule.chosen``).
    """

    group: str
    label: str
    key: str
    value: Value
    baseline: Value
    digits: int
    chosen: bool = False


def _matches(template: str, metrics: Mapping[str, Value]) -> list[tuple[str, str]]:
    """``(key, wildcard value)`` of every metrics key that ``template`` names; one ``*`` spans one path part."""
    if "*" not in template:
        return [(template, "")] if template in metrics else []
    pattern = re.compile(re.escape(template).replace(r"\*", "([^/]+)"))
    return sorted((key, m.group(1)) for key in metrics if (m := pattern.fullmatch(key)))


def headline_rows(metrics: Mapping[str, Value], rules: Sequence[Rule], sources: Sequence[str]) -> list[HeadlineRow]:
    """The headline table: for each source in order, then for all sources, each rule's rows in rule order.

    Args:
        metrics: flat ``<file stem>/<key>`` -> value of every metrics file.
        rules: the headline rules (``report.headline``).
        sources: the sources ``{source}`` stands for, in display order.
    """
    rows = []
    for group in [*sources, ""]:
        for rule in rules:
            if ("{source}" in rule.key) != bool(group):
                continue
            key = rule.key.replace("{source}", group)
            in_use = metrics.get(rule.chosen.replace("{source}", group)) if rule.chosen else None
            for found, wild in _matches(key, metrics):
                base = rule.baseline.replace("{source}", group).replace("*", wild) if rule.baseline else None
                rows.append(HeadlineRow(
                    group=group, label=rule.label.replace("{*}", wild), key=found, value=metrics[found],
                    baseline=metrics.get(base) if base else None, digits=rule.digits,
                    chosen=in_use is not None and in_use == wild,
                ))  # fmt: skip
    return rows


def format_value(value: Value, digits: int) -> str:
    """A value for people: ``digits`` decimals, thousands separated, whole numbers without decimals."""
    if value is None:
        return ""
    if isinstance(value, bool) or isinstance(value, str):
        return str(value)
    if isinstance(value, int) or (digits == 0 and math.isfinite(value)):
        return f"{round(value):,}"
    return f"{value:,.{digits}f}" if math.isfinite(value) else str(value)


def format_metric(value: Value) -> str:
    """A metric of unknown scale: four significant digits (``0.7807``, ``16.12``, ``1.2e-05``), ints as they are."""
    if isinstance(value, float) and math.isfinite(value) and not value.is_integer():
        return f"{value:.4g}"
    return format_value(value, 0)


def _numeric(value: Value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def format_change(new: Value, old: Value, digits: int) -> str:
    """``new - old`` signed (``+0.012``, ``-3``), ``=`` when equal, ``new`` when there was no ``old``."""
    if old is None:
        return "new" if new is not None else ""
    if new is None:
        return "gone"
    if not (_numeric(new) and _numeric(old)) or new == old:
        return "="
    delta = new - old  # type: ignore[operator]
    return ("+" if delta > 0 else "-") + format_value(abs(delta), max(digits, 1))


def metric_changes(old: Mapping[str, Value], new: Mapping[str, Value]) -> dict[str, tuple[Value, Value]]:
    """``key -> (old, new)`` for every numeric metric that differs, appeared (old None) or went (new None).

    The same pairs as ``dvc metrics diff`` between the two revisions; keys sorted.
    """
    keys = {k for k, v in old.items() if _numeric(v)} | {k for k, v in new.items() if _numeric(v)}
    return {k: (old.get(k), new.get(k)) for k in sorted(keys) if old.get(k) != new.get(k)}
