"""Stage `report`: contact sheets per source and split, the quarantine (by reason and file) and counts.

Writes ``summary.json`` (``faceops.report.report_summary``) and a short ``summary.md`` (also printed). The
page people read, with every stage's metrics, plots and run times, is ``faceops report``'s view of these.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from faceops.config.report import ReportParams
from faceops.io.atomic import atomic_directory, atomic_write_bytes, atomic_write_text
from faceops.io.jsonl import read_jsonl
from faceops.io.layout import QUARANTINE, SUMMARY_JSON, SUMMARY_MD
from faceops.io.shards import iter_tar_samples, read_index
from faceops.report import contact_sheet, report_summary, summary_markdown
from stages._common import console, params_or_exit, parse_args


def _first_faces(shard_paths: list[Path], n: int) -> list[np.ndarray]:
    samples = itertools.islice((s for p in shard_paths for s in iter_tar_samples(p)), n)
    return [cv2.cvtColor(cv2.imdecode(np.frombuffer(s["jpg"], np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
            for s in samples]  # fmt: skip


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(__doc__, ["interim", "aligned", "shards", "out"], argv)
    cfg = params_or_exit(args.params, report=ReportParams).report
    quarantine = list(itertools.chain(read_jsonl(args.interim / QUARANTINE), read_jsonl(args.aligned / QUARANTINE)))
    sources = {}
    with atomic_directory(args.out) as staging:
        for index_dir in sorted(p for p in args.shards.iterdir() if p.is_dir()):
            index = read_index(index_dir)
            sources[index_dir.name] = index["splits"]
            for split, info in sorted(index["splits"].items()):
                faces = _first_faces([index_dir / s for s in info["shards"]], cfg.faces_per_split)
                sheet = cv2.cvtColor(contact_sheet(faces, columns=cfg.columns), cv2.COLOR_RGB2BGR)
                png = cv2.imencode(".png", sheet)[1]
                atomic_write_bytes(staging / f"contact_{index_dir.name}_{split}.png", png.tobytes())
        summary = report_summary(sources, quarantine, max_rows=cfg.quarantine_rows)
        atomic_write_text(staging / SUMMARY_JSON, json.dumps(summary, indent=2, sort_keys=True) + "\n")
        markdown = summary_markdown(summary)
        atomic_write_text(staging / SUMMARY_MD, markdown)
    console.print(markdown)


if __name__ == "__main__":
    main()
