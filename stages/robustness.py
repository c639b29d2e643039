"""Stage `robustness`: universal adversarial perturbations (SGA, SPGD, random noise) against the trained model.

``faceops.robust.attack_model`` learns SGA and SPGD perturbations on part of each source's
``robustness.split`` and reports fooling rates on the held-out rest; metrics go to ``--metrics``
(``<source>/<target>/<method>/fooling_rate``), held-out fooling rate per epoch to ``--plots`` as
``<source>_<target>_fooling.json``, each perturbation to ``--out`` as ``<source>_<target>_<method>.png``.
With ``--cache FOLDER`` the outputs of a finished run with the same model, shards read, params and code are
restored instead (``stages._finished``): new photos of another source or split do not re-run the attack.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from faceops.config.base import BaseParams
from faceops.config.robustness import RobustnessParams
from faceops.io.atomic import atomic_directory, atomic_write_bytes, atomic_write_text
from faceops.io.digest import sha256_file
from faceops.io.layout import MODEL_FILE
from faceops.io.shards import split_urls
from faceops.runcache import device_type, split_digests
from stages._common import params_or_exit, parse_args, print_counts, progress_bar, write_metrics
from stages._finished import cache_folder, reuse_or_run

#: Added to ``base.seed`` so the attack's draws differ from every other stage's.
SEED_OFFSET = 7_000


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(__doc__, ["model", "shards", "out", "metrics", "plots"], argv, path_lists=["cache"])
    params = params_or_exit(args.params, base=BaseParams, robustness=RobustnessParams)
    cfg, device = params.robustness, device_type()
    reads = {source: split_digests(args.shards, source, [cfg.split]) for source in cfg.sources}
    parts = [cfg.model_dump(mode="json"), params.base.seed, sha256_file(args.model / MODEL_FILE), reads]
    outputs = {"out": args.out, "plots": args.plots, "metrics.json": args.metrics}
    reuse_or_run("robustness", cache_folder(args.cache), parts, outputs, lambda: _run(args, params), device=device)


def _run(args: Any, params: Any) -> None:
    """torch and the model code are imported here, not at the top (stage modules import fast)."""
    import cv2
    import torch

    from faceops.robust import UAPConfig, attack_model, perturbation_image
    from faceops.train.export import load_trained_model

    cfg, device, seed = params.robustness, device_type(), params.base.seed + SEED_OFFSET
    torch.manual_seed(seed)
    model, record = load_trained_model(args.model / MODEL_FILE, map_location=device)
    uap = UAPConfig(eps=cfg.eps, step_decay=cfg.step_decay, batch_size=cfg.batch_size,
                    minibatch_size=cfg.minibatch_size, inner_iters=cfg.inner_iters, epochs=cfg.epochs, beta=cfg.beta,
                    momentum=cfg.momentum)  # fmt: skip
    urls = {source: split_urls(args.shards / source, cfg.split) for source in cfg.sources}
    with progress_bar("robustness", len(urls) * len(cfg.targets) * 2 * cfg.epochs, "epochs") as advance:
        results = attack_model(model.to(device), urls, targets=cfg.targets, cfg=uap, max_images=cfg.max_images,
                               held_out_share=cfg.held_out_share, seed=seed, batch_size=cfg.eval_batch_size,
                               device=device, progress=advance)  # fmt: skip
    metrics: dict[str, float | int] = {}
    with atomic_directory(args.out) as out, atomic_directory(args.plots) as plots:
        for source, result in results.items():
            metrics.update({f"{source}/{key}": value for key, value in result.metrics.items()})
            for name, delta in sorted(result.perturbations.items()):
                image = cv2.cvtColor(perturbation_image(delta, cfg.eps), cv2.COLOR_RGB2BGR)
                atomic_write_bytes(
                    out / f"{source}_{name.replace('/', '_')}.png", cv2.imencode(".png", image)[1].tobytes()
                )
            for target, rows in sorted(result.curves.items()):
                atomic_write_text(plots / f"{source}_{target}_fooling.json", json.dumps(rows, indent=1) + "\n")
    write_metrics(args.metrics, metrics)
    print_counts(f"robustness ({record['model_name']}, step {record['step']}): held-out fooling rates",
                 {k: round(v, 4) for k, v in metrics.items() if k.endswith("/fooling_rate")})  # fmt: skip


if __name__ == "__main__":
    main()
