"""Stage `monitor`: is each source's newest data like what the model trained on? Gscore, OOD share, verdict.

``faceops.ood.monitor.monitor_model`` scores the incoming photos of every source (``monitor.sources``, or
all) against the model's training photos; ``monitor.model: model@vN`` reads that promoted model and the
ingest manifest of its version (``stages._versions``), so incoming = the photos added since. Writes
``--out``/summary.json (per source: Gscores, estimated OOD share, recommendation and why, the most-OOD
sample ids) with ``ood_<source>.png`` contact sheets, score histograms to ``--plots`` as
``<source>_scores.json`` and the flat metrics (``<source>/gscore``, ``retrain``, ...) to ``--metrics``.
With ``--cache FOLDER`` the model's outputs are kept per shard under ``FOLDER/<model fingerprint>/``, so a run
after new photos arrived predicts only the new shards (the most recently used fingerprints are kept).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from faceops.config.monitor import MonitorParams
from faceops.io.atomic import atomic_directory, atomic_write_bytes, atomic_write_text
from faceops.io.digest import sha256_file
from faceops.io.jsonl import read_jsonl
from faceops.io.layout import MANIFEST, MODEL_FILE, SUMMARY_JSON
from faceops.io.shards import read_index, split_urls
from faceops.runcache import device_type, fingerprint, prune_finished
from stages._common import console, params_or_exit, parse_args, write_metrics
from stages._finished import cache_folder, code_digest
from stages._versions import file_at_version


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(__doc__, ["model", "interim", "shards", "scratch", "out", "metrics", "plots"], argv,
                      path_lists=["cache"])  # fmt: skip
    cfg = params_or_exit(args.params, monitor=MonitorParams).monitor
    if cfg.model == "trained":
        model_file, baseline = args.model / MODEL_FILE, None
    else:
        model_file = file_at_version(args.model / MODEL_FILE, cfg.model, args.scratch / "model", param="monitor.model")
        manifest = file_at_version(args.interim / MANIFEST, cfg.model, args.scratch / "manifest", param="monitor.model")
        baseline = frozenset(row["id"] for row in read_jsonl(manifest))
    _run(args, cfg, model_file, baseline)


def _run(args: Any, cfg: MonitorParams, model_file: Path, baseline: frozenset[str] | None) -> None:
    """torch and the model code are imported here, not at the top (stage modules import fast)."""
    import cv2

    from faceops.ood.collect import SampleRoles, ShardOutputs
    from faceops.ood.monitor import MonitorRule, monitor_model
    from faceops.report import contact_sheet
    from faceops.train.export import load_trained_model

    device = device_type()
    model, record = load_trained_model(model_file, map_location=device)
    reference = frozenset(spec["name"] for spec in record["params"].get("sources", []))
    shards = {folder.name: {split: split_urls(folder, split) for split in read_index(folder)["splits"]}
              for folder in sorted(p for p in args.shards.iterdir() if p.is_dir())}  # fmt: skip
    roles = SampleRoles(reference, baseline, cfg.calibration_share, frozenset(cfg.sources) or None)
    rule = MonitorRule(score=cfg.score, head=cfg.head, k=cfg.k, gscore_method=cfg.gscore, tpr=cfg.tpr,
                       min_incoming=cfg.min_incoming, retrain_min_gscore=cfg.retrain_min_gscore,
                       retrain_min_share=cfg.retrain_min_share, most_ood=cfg.sheet_faces)  # fmt: skip
    cache, kept = cache_folder(args.cache), None
    if cache is not None:  # outputs depend on the model's bytes, the batching, the code and the libraries
        key = fingerprint("monitor", [sha256_file(model_file), cfg.batch_size], code=code_digest("monitor"),
                          device=device)  # fmt: skip
        (cache / key).mkdir(parents=True, exist_ok=True)
        os.utime(cache / key)  # this model's outputs are the most recently used: never the ones pruned
        prune_finished(cache)
        kept = ShardOutputs(cache / key)
    result = monitor_model(model.to(device), shards, roles, rule, batch_size=cfg.batch_size, device=device,
                           kept=kept)  # fmt: skip
    summary: dict[str, Any] = {"model": cfg.model, "model_name": record["model_name"], "step": record["step"],
                               "reference_sources": sorted(reference), "recommendation": "ok", "sources": {}}  # fmt: skip
    with atomic_directory(args.out) as out, atomic_directory(args.plots) as plots:
        for verdict in result.verdicts:
            sheet = f"ood_{verdict.source}.png"
            image = contact_sheet(result.faces[verdict.source], columns=cfg.columns)
            atomic_write_bytes(out / sheet, cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))[1].tobytes())
            summary["sources"][verdict.source] = {**asdict(verdict), "sheet": sheet}
            del summary["sources"][verdict.source]["histogram"]
            atomic_write_text(plots / f"{verdict.source}_scores.json", json.dumps(verdict.histogram, indent=1) + "\n")
        if result.metrics["retrain"]:
            summary["recommendation"] = "retrain"
        atomic_write_text(out / SUMMARY_JSON, json.dumps(summary, indent=2, sort_keys=True) + "\n")
    write_metrics(args.metrics, result.metrics)
    for verdict in result.verdicts:
        console.print(
            f"monitor {verdict.source}: {verdict.incoming} incoming, {verdict.recommendation}: {verdict.reason}"
        )


if __name__ == "__main__":
    main()
