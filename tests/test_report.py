"""Report building blocks: contact sheets, the stage's summary, headline rules, value formats and the page."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from pydantic import ValidationError

from faceops.config.report import DEFAULT_HEADLINE, HeadlineRule
from faceops.report import contact_sheet, report_summary, summary_markdown
from faceops.report.headline import (
    HeadlineRow,
    format_change,
    format_metric,
    format_value,
    headline_rows,
    metric_changes,
)
from faceops.report.page import Figure, ReportPage, render_page


def test_contact_sheet_places_each_face_in_its_tile():
    faces = [np.full((4, 5, 3), i * 20, np.uint8) for i in range(7)]
    sheet = contact_sheet(faces, columns=3, pad=1, background=255)
    assert sheet.shape == (3 * 5 + 1, 3 * 6 + 1, 3)
    for i in range(7):
        r, c = divmod(i, 3)
        tile = sheet[1 + r * 5 : 1 + r * 5 + 4, 1 + c * 6 : 1 + c * 6 + 5]
        assert (tile == i * 20).all()
    assert (sheet[11:15, 7:12] == 255).all()  # tile 8 is empty padding


def test_contact_sheet_rejects_mixed_shapes_and_handles_empty():
    with pytest.raises(ValueError, match="faces"):
        contact_sheet([np.zeros((4, 4, 3), np.uint8), np.zeros((5, 4, 3), np.uint8)], columns=2)
    assert contact_sheet([], columns=3).shape == (1, 1, 3)


def _quarantine():
    rows = [("lab", "ingest", "truncated", "b.jpg"), ("lab", "ingest", "truncated", "a.jpg"),
            ("lab", "align", "no_face", "c.jpg"), ("cam", "ingest", "duplicate", "d.jpg")]  # fmt: skip
    return [{"source": s, "stage": st, "reason": r, "path": p, "detail": "why"} for s, st, r, p in rows]


def test_report_summary_counts_every_quarantined_file_and_lists_the_first():
    splits = {"train": {"samples": 10, "identities": 3, "shards": ["a", "b"]},
              "test": {"samples": 4, "identities": 1, "shards": ["c"]}}  # fmt: skip
    summary = report_summary({"lab": splits}, _quarantine(), max_rows=2)
    assert summary["quarantine"] == [["cam", "ingest", "duplicate", 1], ["lab", "align", "no_face", 1],
                                     ["lab", "ingest", "truncated", 2]]  # fmt: skip
    assert [q["path"] for q in summary["quarantine_rows"]] == ["d.jpg", "c.jpg"] and summary["quarantine_total"] == 4
    assert summary["metrics"] == {"cam/samples": 0, "cam/quarantined": 1, "cam/quarantined/ingest": 1,
                                  "lab/samples": 14, "lab/quarantined": 3, "lab/quarantined/align": 1,
                                  "lab/quarantined/ingest": 2}  # fmt: skip
    assert summary["counts"] == {"samples": 14, "quarantined": 4}
    text = summary_markdown(summary)
    assert "| lab | train | 10 | 3 | 2 |" in text and "| lab | test | 4 | 1 | 1 |" in text
    assert "| lab | ingest | truncated | 2 |" in text and "| lab | align | no_face | 1 |" in text


METRICS = {
    "evaluate/lab/verif/acc": 0.91234, "evaluate/cam/verif/acc": 0.8, "evaluate/lab/expr/acc": 0.4,
    "evaluate/lab/expr/majority_acc": 0.3, "evaluate/lab/group/g0/acc": 0.9, "evaluate/lab/group/g1/acc": 0.7,
    "evaluate/lab/group/g0/n": 10, "cluster/method": "hdbscan", "cluster/gcn/bcubed/f": 0.4,
    "cluster/hdbscan/bcubed/f": 0.6, "cluster/propagation/min_score": 0.5,
}  # fmt: skip


def _rules(*rules: dict) -> list[HeadlineRule]:
    return [HeadlineRule(**r) for r in rules]


def test_headline_rows_expand_sources_and_wildcards_in_order():
    rules = _rules(
        {"label": "verification", "key": "evaluate/{source}/verif/acc"},
        {"label": "expression", "key": "evaluate/{source}/expr/acc", "baseline": "evaluate/{source}/expr/majority_acc"},
        {"label": "group {*}", "key": "evaluate/{source}/group/*/acc"},
        {"label": "F {*}", "key": "cluster/*/bcubed/f", "chosen": "cluster/method"},
        {"label": "absent", "key": "ood/{source}/auroc"},
    )
    rows = headline_rows(METRICS, rules, ["lab", "cam"])
    assert [(r.group, r.label) for r in rows] == [
        ("lab", "verification"), ("lab", "expression"), ("lab", "group g0"), ("lab", "group g1"),
        ("cam", "verification"), ("", "F gcn"), ("", "F hdbscan"),
    ]  # fmt: skip
    assert rows[1].baseline == 0.3 and rows[0].baseline is None and rows[0].key == "evaluate/lab/verif/acc"
    assert [r.label for r in rows if r.chosen] == ["F hdbscan"]


def test_a_wildcard_baseline_follows_its_match():
    metrics = {"m/a/acc": 0.5, "m/a/base": 0.4, "m/b/acc": 0.6, "m/b/base": 0.7}
    rows = headline_rows(metrics, _rules({"label": "{*}", "key": "m/*/acc", "baseline": "m/*/base"}), [])
    assert [(r.label, r.value, r.baseline) for r in rows] == [("a", 0.5, 0.4), ("b", 0.6, 0.7)]


def test_every_default_rule_is_valid_and_bad_rules_are_named():
    assert len({r.label for r in DEFAULT_HEADLINE}) == len(DEFAULT_HEADLINE)
    for bad, message in [({"key": "a/*/b/*"}, "at most one"), ({"key": "a/{split}/b"}, "no placeholder"),
                         ({"key": "a/b", "chosen": "a/method"}, "has no '\\*'"), ({"key": "nofile"}, "pattern")]:
        with pytest.raises(ValidationError, match=message):
            HeadlineRule(label="x", **bad)


@pytest.mark.parametrize(
    ("value", "digits", "text"),
    [(0.91234, 3, "0.912"), (1200, 3, "1,200"), (7.0, 0, "7"), (None, 3, ""), ("gcn", 3, "gcn"),
     (float("nan"), 3, "nan")],
)  # fmt: skip
def test_format_value(value, digits, text):
    assert format_value(value, digits) == text


def test_format_metric_and_change():
    assert [format_metric(v) for v in (0.780666, 16.1198, 1.2e-05, 3000, 2.0)] == ["0.7807", "16.12", "1.2e-05",
                                                                                   "3,000", "2"]  # fmt: skip
    assert [format_change(0.75, 0.7, 3), format_change(5, 7, 0), format_change(1, None, 0), format_change(1, 1, 2),
            format_change(None, 1, 2)] == ["+0.050", "-2", "new", "=", "gone"]  # fmt: skip


def test_metric_changes_are_dvc_metrics_diff():
    old = {"a/x": 1.0, "a/y": 2, "a/gone": 3.0, "a/name": "gcn"}
    new = {"a/x": 1.5, "a/y": 2, "a/new": 4.0, "a/name": "hdbscan"}
    assert metric_changes(old, new) == {"a/gone": (3.0, None), "a/new": (None, 4.0), "a/x": (1.0, 1.5)}


def _page(**more) -> ReportPage:
    rows = [HeadlineRow("lab", "verification <acc>", "evaluate/lab/verif/acc", 0.91234, None, 3),
            HeadlineRow("", "F hdbscan", "cluster/hdbscan/bcubed/f", 0.6, 0.4, 2, chosen=True)]  # fmt: skip
    return ReportPage(title="t", meta="m", headline=rows, metrics={"evaluate/lab/verif/acc": 0.91234}, **more)


def test_page_escapes_text_embeds_images_and_shows_changes_only_against_a_version():
    html = render_page(_page(plots=[Figure("ROC", "image/svg+xml", b"<svg/>")]))
    assert "verification &lt;acc&gt;" in html and "<acc>" not in html
    assert 'src="data:image/svg+xml;base64,PHN2Zy8+"' in html
    assert "0.912" in html and "&#9733; in use" in html and "change since" not in html
    assert "No earlier faceops version" in html and "Nothing was quarantined" in html
    assert not re.search(r"(src|href)=\"(https?:)?//", html)
    compared = render_page(_page(previous={"evaluate/lab/verif/acc": 0.9}, previous_name="v3 (abc)"))
    assert "change since v3 (abc)" in compared and '<span class="up">+0.012</span>' in compared
    assert "1 metrics changed since v3 (abc)" in compared


def test_report_stage_writes_the_same_summary_bytes_twice(tmp_path):
    from faceops.io.jsonl import write_jsonl
    from stages.report import main

    rows = _quarantine()
    write_jsonl(tmp_path / "interim" / "quarantine.jsonl", [r for r in rows if r["stage"] == "ingest"])
    write_jsonl(tmp_path / "aligned" / "quarantine.jsonl", [r for r in rows if r["stage"] == "align"])
    (tmp_path / "shards").mkdir()
    (tmp_path / "params.yaml").write_text("report:\n  quarantine_rows: 3\n")
    outputs = []
    for out in ("a", "b"):
        main(["--params", str(tmp_path / "params.yaml"), "--interim", str(tmp_path / "interim"), "--aligned",
              str(tmp_path / "aligned"), "--shards", str(tmp_path / "shards"), "--out", str(tmp_path / out)])
        outputs.append({p.name: p.read_bytes() for p in sorted((tmp_path / out).iterdir())})
    assert outputs[0] == outputs[1] and set(outputs[0]) == {"summary.json", "summary.md"}
    summary = json.loads(outputs[0]["summary.json"])
    assert summary["quarantine_total"] == 4 and len(summary["quarantine_rows"]) == 3
