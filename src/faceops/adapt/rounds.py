"""AIN's outer loop, the ``adapt`` stage's work: embed -> cluster -> pseudo-identities -> train; ``rounds`` times.

Round ``r`` starts from the model round ``r - 1`` exported (round 0: the ``train`` stage's, the source
model). It embeds the labelled source and the target with that model, learns the linkage GCN on the source
embeddings and clusters the target with it (``faceops.cluster.pseudo.pseudo_identities``, the ``cluster``
stage's recipe), and trains ``steps`` steps with ``faceops.train.job.run_training``: the task loss on source
batches plus :class:`faceops.adapt.term.AdversarialInformationTerm` on target rows. Re-clustering with the
adapted model every round is AIN's alternation (the abstract's "GCN predicts linkage likelihoods" between
updates); how often is a param (``steps`` per round).

Everything a round needs to continue after a kill lives in ``workdir/round-<r>/`` (a folder the caller
owns): the clustering it trains on (``pseudo.json``, written before training, so a resumed round trains on
the same pseudo-identities), the resumable checkpoint, and when it is done its model and ``round.json``.
"""

from __future__ import annotations

import functools
import json
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from faceops.adapt.domains import select_by_group, write_domain
from faceops.adapt.term import AdversarialInformationTerm
from faceops.cluster.pseudo import pseudo_identities
from faceops.config.adapt import AdaptParams
from faceops.config.cluster import ClusterParams
from faceops.embed.backends import concat_sets, model_embeddings
from faceops.io.atomic import atomic_write_text
from faceops.io.checkpoint import load_checkpoint, save_checkpoint
from faceops.io.layout import MODEL_FILE, RESUME_FILE
from faceops.train.batch import identity_key, to_targets
from faceops.train.distributed import DistInfo
from faceops.train.export import load_trained_model
from faceops.train.job import run_training
from faceops.train.mixing import MixedBatches
from faceops.train.terms import linear_ramp

__all__ = ["AdaptRound", "AdaptedModel", "adapt_model"]

#: The target term's name (its loss is logged as ``loss/ain``).
TERM_NAME = "ain"
#: Inside a round's folder: its clustering (before training) and its summary (when it is done).
PSEUDO_FILE, ROUND_FILE = "pseudo.json", "round.json"

Log = Callable[[int, dict[str, float]], None]


@dataclass(frozen=True)
class AdaptRound:
    """One finished round: its pseudo-labels (``{id, cluster, size, confidence}`` per target face) and metrics."""

    index: int
    rows: list[dict[str, Any]]
    metrics: dict[str, float | int]


@dataclass(frozen=True)
class AdaptedModel:
    """The adapted model's record (``save_checkpoint(..., kind="model")``), every round, flat metrics."""

    record: dict[str, Any]
    rounds: list[AdaptRound]
    metrics: dict[str, float | int]


def adapt_model(
    cfg: AdaptParams, clustering: ClusterParams, *, seed: int, source_urls: Mapping[str, Sequence[Path]],
    target_urls: Sequence[Path], init_file: Path, workdir: Path, dist: DistInfo, log: Log | None = None,
    progress: Callable[[int], None] | None = None,
) -> AdaptedModel:  # fmt: skip
    """Adapt the model exported at ``init_file`` to the target domain in ``cfg.rounds`` AIN rounds.

    Args:
        cfg: the ``adapt`` params section.
        clustering: the ``cluster`` section (method, GCN and propagation settings; its sets are not read).
        seed: the run's seed; round ``r`` trains and clusters with ``seed + r``.
        source_urls: each labelled source (``cfg.sources``) -> its train-split shards.
        target_urls: the target split's shards (``cfg.target``).
        init_file: the source model (``train``'s export).
        workdir: this run's scratch folder (domain copies, rounds; kept until the caller removes it).
        dist: one process (AIN's rounds embed and cluster between trainings: no torchrun).
        log, progress: the step log (steps counted over all rounds) and the progress bar.

    Raises:
        ValueError: several processes, or a domain without samples.

    Warns:
        UserWarning: a round's clustering gave fewer than 2 pseudo-identities: that round trains on the source
            alone (its metrics say ``target_term: 0``), since AIN's classifier and information need 2 or more.
    """
    if dist.world_size > 1:
        raise ValueError(f"adapt runs in one process (it embeds and clusters between rounds); got world size "
                         f"{dist.world_size}: start it with python -m, not torchrun")  # fmt: skip
    sources = {name: select_by_group(urls, cfg.source_groups) for name, urls in source_urls.items()}
    target = select_by_group(target_urls, cfg.target.groups)
    domain = {name: write_domain(source_urls[name], {key: {} for key in metas}, workdir / "source" / name,
                                 maxcount=cfg.maxcount) for name, metas in sources.items()}  # fmt: skip
    target_domain = write_domain(target_urls, {key: {} for key in target}, workdir / "target", maxcount=cfg.maxcount)
    model_file, rounds = init_file, []
    for index in range(cfg.rounds):
        folder = workdir / f"round-{index}"
        if (folder / ROUND_FILE).is_file():
            done = json.loads((folder / ROUND_FILE).read_text())
            rounds.append(AdaptRound(index, done["rows"], done["metrics"]))
            if progress is not None:
                progress(cfg.steps)
        else:
            plan = _pseudo_plan(index, cfg, clustering, seed, model_file, domain, target_domain, target, folder, dist)
            rounds.append(_train_round(index, cfg, seed, plan, model_file, domain, target_domain, folder, dist,
                                       log, progress))  # fmt: skip
        model_file = folder / MODEL_FILE
    record = {**load_checkpoint(model_file, kind="model"), "step": cfg.rounds * cfg.steps}
    metrics: dict[str, float | int] = {
        "rounds": cfg.rounds, "steps": cfg.rounds * cfg.steps, "source_samples": sum(map(len, sources.values())),
        "target_samples": len(target),
        **{f"round/{r.index}/{key}": value for r in rounds for key, value in r.metrics.items()},
    }  # fmt: skip
    return AdaptedModel(record, rounds, metrics)


def _pseudo_plan(index: int, cfg: AdaptParams, clustering: ClusterParams, seed: int, model_file: Path,
                 domain: Mapping[str, list[Path]], target_domain: list[Path], target: Mapping[str, dict],
                 folder: Path, dist: DistInfo) -> dict[str, Any]:  # fmt: skip
    """The round's clustering of the target (read back when a killed round left it), with the classes and
    centroids its target classifier starts from."""
    if (folder / PSEUDO_FILE).is_file():
        return json.loads((folder / PSEUDO_FILE).read_text())
    model = load_trained_model(model_file, map_location=dist.device)[0].to(dist.device)
    embed = functools.partial(model_embeddings, model, batch_size=cfg.batch_size, device=str(dist.device))
    known = concat_sets([embed(urls) for urls in domain.values()])
    faces = embed(target_domain)
    found = pseudo_identities(known, faces, clustering, seed=seed + index, name=f"{cfg.target.source}_r{index}")
    names = {key: identity_key(target[key]["source"], kept["identity"]) for key, kept in found.kept.items()}
    classes = sorted(set(names.values()))
    if len(classes) < 2:
        warnings.warn(f"adapt round {index}: the clustering gave {len(classes)} pseudo-identities with at least "
                      f"cluster.min_members ({clustering.min_members}) faces among {len(target)} target faces; AIN "
                      "needs 2 or more, so this round trains on the source alone (metrics: target_term 0); lower "
                      "cluster.min_members or cluster.min_score, or start from a better source model", stacklevel=2)
    row = {key: i for i, key in enumerate(faces.ids)}
    centroids = [np.mean([faces.vectors[row[k]] for k, name in names.items() if name == c], axis=0).tolist()
                 for c in classes]  # fmt: skip
    plan = {"rows": found.rows, "kept": found.kept, "classes": classes, "centroids": centroids,
            "metrics": {f"cluster/{k}": v for k, v in found.metrics.items()}}  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / PSEUDO_FILE, json.dumps(plan))
    return plan


def _train_round(index: int, cfg: AdaptParams, seed: int, plan: Mapping[str, Any], model_file: Path,
                 domain: Mapping[str, list[Path]], target_domain: list[Path], folder: Path, dist: DistInfo,
                 log: Log | None, progress: Callable[[int], None] | None) -> AdaptRound:  # fmt: skip
    """Train one round on the source and the plan's pseudo-labelled target; export its model and summary."""
    kept = plan["kept"]
    updates = {row["id"]: {"identity": None, "pseudo_confidence": 0.0} for row in plan["rows"]}
    updates.update({key: dict(value) for key, value in kept.items()})
    shards = write_domain(target_domain, updates, folder / "target", maxcount=cfg.maxcount)
    classes = {name: i for i, name in enumerate(plan["classes"])}
    stream = MixedBatches({"target": shards}, {"target": cfg.target_batch}, seed=seed + index,
                          encode=functools.partial(to_targets, heads=(), identity_to_class=classes),
                          shuffle_buffer=cfg.shuffle_buffer, num_workers=cfg.num_workers, hflip=cfg.hflip,
                          pin_memory=dist.device.type == "cuda")  # fmt: skip

    def make_terms(model: torch.nn.Module) -> list[AdversarialInformationTerm]:
        return [AdversarialInformationTerm(
            stream, torch.tensor(plan["centroids"]), name=TERM_NAME, pseudo_weight=cfg.pseudo_weight,
            mi_weight=cfg.mi_weight, mi_scale=cfg.mi_scale, mi_schedule=linear_ramp(cfg.mi_warmup, cfg.mi_full),
            margin_scale=cfg.margin_scale, margin_cos=cfg.margin_cos,
        )] if len(classes) >= 2 else []  # fmt: skip

    shifted = (lambda step, values: log(index * cfg.steps + step, values)) if log is not None else None
    trained = run_training(cfg, seed=seed + index, shard_urls=domain, resume_file=folder / RESUME_FILE, dist=dist,
                           init_file=model_file, log=shifted, progress=progress, make_terms=make_terms)  # fmt: skip
    save_checkpoint(folder / MODEL_FILE, trained.record, kind="model")
    kept_losses = ("loss/total", "loss/Recognition", f"loss/{TERM_NAME}", "loss/gabn")  # not the 42 analysis heads
    losses = {k: v for k, v in trained.metrics.items() if not k.startswith("loss/") or k.startswith(kept_losses)}
    metrics = {**plan["metrics"], **losses, "pseudo_classes": len(classes), "target_term": int(len(classes) >= 2),
               "target_epochs": cfg.steps * cfg.target_batch / len(plan["rows"])}  # fmt: skip
    (folder / RESUME_FILE).unlink(missing_ok=True)
    atomic_write_text(folder / ROUND_FILE, json.dumps({"rows": plan["rows"], "metrics": metrics}))
    return AdaptRound(index, plan["rows"], metrics)

