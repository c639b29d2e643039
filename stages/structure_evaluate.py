"""Stage `structure-evaluate`: HEAT's corner, edge and region precision/recall/F1 of the structure model.

``faceops.structure.evaluation.evaluate_model_file`` decodes every image of ``structure_evaluate.split`` of each
source and scores it against its labels; ``--plots`` gets ``<source>_graphs.png`` (ground truth green, prediction
red). With ``--cache FOLDER`` the metrics and plots of a finished run with the same model, shards read, params and
code are restored instead (``stages._finished``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from faceops.config.structure_evaluate import StructureEvaluateParams
from faceops.io.atomic import atomic_directory, atomic_write_bytes
from faceops.io.digest import sha256_file
from faceops.io.layout import MODEL_FILE
from faceops.io.shards import split_urls
from faceops.runcache import device_type, split_digests
from stages._common import params_or_exit, parse_args, print_counts, write_metrics
from stages._finished import cache_folder, reuse_or_run

HEADLINE = ("corner/f1", "edge/f1", "region/f1", "images")


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(__doc__, ["model", "shards", "metrics", "plots"], argv, path_lists=["cache"])
    params = params_or_exit(args.params, structure_evaluate=StructureEvaluateParams)
    cfg, device = params.structure_evaluate, device_type()
    reads = {source: split_digests(args.shards, source, [cfg.split]) for source in cfg.sources}
    parts = [cfg.model_dump(mode="json"), sha256_file(args.model / MODEL_FILE), reads]
    outputs = {"plots": args.plots, "metrics.json": args.metrics}
    reuse_or_run("structure-evaluate", cache_folder(args.cache), parts, outputs,
                 lambda: _run(args, cfg, device), device=device)  # fmt: skip


def _run(args: Any, cfg: StructureEvaluateParams, device: str) -> None:
    """torch, cv2 and the model code are imported here, not at the top: a restore never needs them."""
    import cv2

    from faceops.structure.evaluation import evaluate_model_file

    urls = {source: split_urls(args.shards / source, cfg.split) for source in cfg.sources}
    metrics, drawings = evaluate_model_file(args.model / MODEL_FILE, urls, cfg, device)
    with atomic_directory(args.plots) as staging:
        for source, grid in drawings.items():
            ok, png = cv2.imencode(".png", grid[:, :, ::-1])
            if not ok:
                raise ValueError(f"PNG encoding of the {source} drawing ({grid.shape}) failed")
            atomic_write_bytes(staging / f"{source}_graphs.png", png.tobytes())
    write_metrics(args.metrics, metrics)
    print_counts(f"structure-evaluate ({cfg.split})", {k: round(v, 4) if isinstance(v, float) else v
                                                        for k, v in metrics.items()
                                                        if k.endswith(HEADLINE)})  # fmt: skip


if __name__ == "__main__":
    main()
