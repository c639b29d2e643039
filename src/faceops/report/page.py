"""The run report as one self-contained HTML page: headline first, then changes, plots, faces, quarantine, times.

No script, no stylesheet or font from elsewhere: images are embedded as ``data:`` URIs (PNG contact sheets,
SVG plots, each its own document so their ids cannot clash), so the file opens offline and can be mailed.
The page renders what it is given (:class:`ReportPage`); gathering it from a workspace is the caller's
(``flows.report_page``).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from html import escape

from faceops.report.headline import HeadlineRow, Value, format_change, format_metric, format_value, metric_changes

__all__ = ["Figure", "StageTime", "ReportPage", "render_page"]

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
h1 { margin-bottom: 0.2em; } .meta { color: #666; margin-top: 0; }
table { border-collapse: collapse; margin: 0.6em 0 1.4em; } caption { text-align: left; font-weight: 600; }
th, td { padding: 0.25em 0.8em; border-bottom: 1px solid #ddd; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.group th { background: #eef2f7; } .up { color: #1a7f37; } .down { color: #b42318; }
.chosen { font-weight: 600; } .note { background: #fff6dd; padding: 0.4em 0.8em; }
figure { display: inline-block; margin: 0 1em 1em 0; vertical-align: top; }
figure img { max-width: 100%; border: 1px solid #ddd; } figcaption { color: #555; }
"""


@dataclass(frozen=True)
class Figure:
    """An image for the page: ``mime`` (``image/png``, ``image/svg+xml``) and its bytes."""

    caption: str
    mime: str
    data: bytes


@dataclass(frozen=True)
class StageTime:
    """A stage's last run as recorded by the run that ran it (``seconds`` of wall time, ``finished`` ISO time)."""

    stage: str
    seconds: float
    finished: str


@dataclass(frozen=True)
class ReportPage:
    """Everything the page shows.

    Attributes:
        title, meta: heading and the line under it (workspace, commit, when rendered).
        headline: the headline rows (``faceops.report.headline.headline_rows``).
        metrics: every metrics file's flat values, ``<stem>/<key>`` (the "all metrics" section).
        previous: the same at the version compared with; ``previous_name`` says which (None: no version yet).
        plots, contact_sheets: figures.
        quarantine_counts: ``(source, stage, reason, files)``; ``quarantine``: listed rows (``source``,
            ``stage``, ``reason``, ``path``, ``detail``); ``quarantine_total``: all quarantined files.
        run_times: per stage.
        notes: what could not be shown and why.
    """

    title: str
    meta: str
    headline: Sequence[HeadlineRow]
    metrics: Mapping[str, Value]
    previous: Mapping[str, Value] = field(default_factory=dict)
    previous_name: str | None = None
    plots: Sequence[Figure] = ()
    contact_sheets: Sequence[Figure] = ()
    quarantine_counts: Sequence[tuple[str, str, str, int]] = ()
    quarantine: Sequence[Mapping[str, str]] = ()
    quarantine_total: int = 0
    run_times: Sequence[StageTime] = ()
    notes: Sequence[str] = ()


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], caption: str = "", numeric: Sequence[int] = ()) -> str:
    """An HTML table of already-escaped cells; columns in ``numeric`` are right-aligned."""
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f'<td class="num">{c}</td>' if i in numeric else f"<td>{c}</td>" for i, c in enumerate(row))
        + "</tr>"
        for row in rows
    )  # fmt: skip
    title = f"<caption>{caption}</caption>" if caption else ""
    return f"<table>{title}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _change(new: Value, old: Value, digits: int) -> str:
    """The change column's cell: ``format_change``, green when up, red when down."""
    text = format_change(new, old, digits)
    css = {"+": "up", "-": "down"}.get(text[:1])
    return f'<span class="{css}">{escape(text)}</span>' if css else escape(text)


def _headline(page: ReportPage) -> str:
    compare = page.previous_name is not None
    header = ["metric", "value", "baseline"] + ([f"change since {escape(page.previous_name)}"] if compare else [])
    lines, group = [], None
    for row in page.headline:
        if row.group != group:
            group = row.group
            title = f"source <b>{escape(group)}</b>" if group else "across sources"
            lines.append(f'<tr class="group"><th colspan="{len(header)}">{title}</th></tr>')
        value = escape(format_value(row.value, row.digits)) + (" &#9733; in use" if row.chosen else "")
        cells = [escape(row.label), value, escape(format_value(row.baseline, row.digits))]
        if compare:
            cells.append(_change(row.value, page.previous.get(row.key), row.digits))
        css = ' class="chosen"' if row.chosen else ""
        numbers = "".join(f'<td class="num">{c}</td>' for c in cells[1:])
        lines.append(f"<tr{css}><td>{cells[0]}</td>{numbers}</tr>")
    head = "".join(f"<th>{h}</th>" for h in header)
    return f'<table id="headline"><thead><tr>{head}</tr></thead><tbody>{"".join(lines)}</tbody></table>'


def _changes(page: ReportPage) -> str:
    if page.previous_name is None:
        return "<p>No earlier faceops version to compare with yet.</p>"
    changed = metric_changes(page.previous, page.metrics)
    if not changed:
        return f"<p>No metric changed since {escape(page.previous_name)}.</p>"
    rows = [[escape(key), escape(format_metric(old)), escape(format_metric(new)), _change(new, old, 4)]
            for key, (old, new) in changed.items()]  # fmt: skip
    table = _table(["metric", "before", "now", "change"], rows, numeric=(1, 2, 3))
    title = f"{len(changed)} metrics changed since {escape(page.previous_name)}"
    return f"<details><summary>{title}</summary>{table}</details>"


def _figures(figures: Sequence[Figure], empty: str) -> str:
    if not figures:
        return f"<p>{escape(empty)}</p>"
    return "".join(
        f'<figure><img alt="{escape(f.caption)}" src="data:{f.mime};base64,{base64.b64encode(f.data).decode()}">'
        f"<figcaption>{escape(f.caption)}</figcaption></figure>"
        for f in figures
    )


def _quarantine(page: ReportPage) -> str:
    if not page.quarantine_counts:
        return "<p>Nothing was quarantined.</p>"
    counts = _table(["source", "stage", "reason", "files"],
                    [[escape(s), escape(st), escape(r), f"{n:,}"] for s, st, r, n in page.quarantine_counts],
                    caption="by reason", numeric=(3,))  # fmt: skip
    shown = f"the first {len(page.quarantine):,} of {page.quarantine_total:,}" if page.quarantine_total > len(
        page.quarantine) else f"all {page.quarantine_total:,}"  # fmt: skip
    listed = _table(["source", "stage", "reason", "file", "detail"],
                    [[escape(str(q.get(k, ""))) for k in ("source", "stage", "reason", "path", "detail")]
                     for q in page.quarantine], caption=f"files ({shown})")  # fmt: skip
    return counts + listed


def _run_times(page: ReportPage) -> str:
    if not page.run_times:
        return "<p>No run times recorded yet: <code>faceops run</code> records each stage it runs.</p>"
    rows = [[escape(t.stage), f"{t.seconds:,.1f}", escape(t.finished)] for t in page.run_times]
    return _table(["stage", "seconds (last run)", "finished"], rows, numeric=(1,))


def _all_metrics(metrics: Mapping[str, Value]) -> str:
    files: dict[str, list[list[str]]] = {}
    for key, value in metrics.items():
        stem, rest = key.split("/", 1)
        files.setdefault(stem, []).append([escape(rest), escape(format_metric(value))])
    return "".join(
        f"<details><summary>{escape(stem)} ({len(rows)} values)</summary>{_table(['key', 'value'], rows, numeric=(1,))}"
        "</details>"
        for stem, rows in sorted(files.items())
    )


def render_page(page: ReportPage) -> str:
    """The report page's HTML (UTF-8 text; every value escaped)."""
    notes = "".join(f'<p class="note">{escape(n)}</p>' for n in page.notes)
    sections = [
        ("Headline", _headline(page) if page.headline else "<p>No headline metric yet: run the pipeline.</p>"),
        ("Changes against the last version", _changes(page)),
        ("Training curves, ROC and confusion", _figures(page.plots, "No plot to show.")),
        ("Contact sheets", _figures(page.contact_sheets, "No contact sheet yet.")),
        ("Quarantine", _quarantine(page)),
        ("Stage run times", _run_times(page)),
        ("All metrics", _all_metrics(page.metrics)),
    ]
    body = "".join(f"<section><h2>{title}</h2>{html}</section>" for title, html in sections)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(page.title)}</title><style>{_STYLE}</style></head><body>"
        f'<h1>{escape(page.title)}</h1><p class="meta">{escape(page.meta)}</p>{notes}{body}</body></html>\n'
    )
