"""Training library: schedule, targets/masks, multi-source batches, exact resume, DDP, learning, checkpoints."""

from __future__ import annotations

import functools
import json
import math
import socket
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from faceops.io.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from faceops.io.shards import ShardSample, split_urls, write_index, write_shards
from faceops.labels import sample_id
from faceops.models import create_model, param_groups
from faceops.models.tasks import head_by_name
from faceops.train import (
    IMAGE_MEAN,
    IMAGE_STD,
    TrainingRun,
    batch_counts,
    build_training,
    close_distributed,
    fit,
    flip_images,
    init_backbone,
    init_distributed,
    label_stats,
    load_trained_model,
    make_scheduler,
    model_record,
    normalize_images,
    summarize,
    to_targets,
    warmup_cosine,
)  # fmt: skip
from faceops.train.terms import LossTerm, TermInputs, cosine_ramp, linear_ramp

TINY = {"mlff_width": 16}  # swinface_cpu with 16-wide fusion: same structure, ~4x cheaper subnets
N_IDS, PER_ID, MAXCOUNT = 4, 8, 8  # "blobs": 32 samples in 4 shards (2 per rank with 2 ranks)
COLOURS = [(230, 40, 40), (40, 230, 40), (40, 40, 230), (230, 230, 40)]


def _blob_jpeg(rng: np.random.Generator, colour: tuple[int, int, int]) -> bytes:
    """A dark noisy face-sized image with one coloured disc at a random place."""
    image = rng.integers(0, 50, (112, 112, 3), dtype=np.uint8)
    cx, cy = (int(v) for v in rng.integers(35, 77, 2))
    cv2.circle(image, (cx, cy), 22, colour, -1)
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return buf.tobytes()


def _write_source(root: Path, source: str, metas: list[dict], jpegs: list[bytes], maxcount: int) -> None:
    samples = [ShardSample(m["id"], jpg, m) for m, jpg in zip(metas, jpegs)]
    infos = write_shards(samples, root / source, split="train", maxcount=maxcount)
    identities = len({m.get("identity") for m in metas} - {None})
    write_index(root / source, {"format": 1, "source": source, "samples": len(samples),
                                "splits": {"train": {"shards": [i.name for i in infos], "samples": len(samples),
                                                     "identities": identities}}})  # fmt: skip


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    """Two sources: "blobs" (identity = disc colour, plus age/Male/Smiling) and "expr" (expression only)."""
    root = tmp_path_factory.mktemp("shards")
    rng = np.random.default_rng(0)
    metas, jpegs = [], []
    for i in range(N_IDS):
        for j in range(PER_ID):
            key = sample_id("blobs", f"{i}/{j}.jpg")
            metas.append({"id": key, "source": "blobs", "identity": f"p{i}", "age": 20.0 + 10 * i,
                          "Male": i % 2, "Smiling": None if j % 2 else 1, "group": "g", "landmarks": None})  # fmt: skip
            jpegs.append(_blob_jpeg(rng, COLOURS[i]))
    _write_source(root, "blobs", metas, jpegs, MAXCOUNT)
    metas, jpegs = [], []
    for j in range(16):
        key = sample_id("expr", f"{j}.jpg")
        metas.append({"id": key, "source": "expr", "identity": None, "expression": j % 7})
        jpegs.append(_blob_jpeg(rng, COLOURS[j % 4]))
    _write_source(root, "expr", metas, jpegs, 4)
    return root


def _build(shards: Path, *, model_name: str = "swinface_cpu", sources=(("blobs", 1.0),), batch: int = 8,
           steps: int = 10, lr: float = 2e-3, seed: int = 0, **overrides) -> TrainingRun:  # fmt: skip
    """A training run as the stages build it, on the test shards with small, test-friendly settings."""
    kwargs = dict(
        shard_urls={name: split_urls(shards / name, "train") for name, _ in sources}, shares=dict(sources),
        batch_size=batch, lr=lr, weight_decay=0.05, backbone_lr_scale=0.1, warmup_steps=2, steps=steps,
        final_lr_ratio=0.1, margin_scale=16.0, margin_cos=0.2, sample_rate=1.0, hflip=0.5, shuffle_buffer=8,
        num_workers=0, seed=seed, model_args=TINY,
    )  # fmt: skip
    return build_training(model_name, **{**kwargs, **overrides})


# ---- schedule -------------------------------------------------------------------------------------


def test_warmup_is_linear_and_cosine_hits_its_endpoints():
    kw = dict(warmup_steps=4, total_steps=14, final_ratio=0.1)
    assert [warmup_cosine(s, **kw) for s in range(4)] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert warmup_cosine(4, **kw) == pytest.approx(1.0)
    assert warmup_cosine(9, **kw) == pytest.approx(0.55)  # half-way: (1 + 0.1) / 2
    assert warmup_cosine(14, **kw) == pytest.approx(0.1)
    values = [warmup_cosine(s, **kw) for s in range(4, 15)]
    assert all(a > b for a, b in zip(values, values[1:]))
    with pytest.raises(ValueError, match="warmup_steps"):
        warmup_cosine(0, warmup_steps=5, total_steps=5)


def test_param_group_lrs_follow_the_schedule_with_backbone_at_a_tenth():
    model = create_model("swinface_cpu_rec")
    groups = param_groups(model, 1e-3, backbone_lr_scale=0.1, extra_head_modules=[torch.nn.Linear(2, 2)])
    optimizer = torch.optim.AdamW(groups)
    scheduler = make_scheduler(optimizer, warmup_steps=3, total_steps=10, final_ratio=0.0)
    for step in range(10):
        lrs = {g["name"]: g["lr"] for g in optimizer.param_groups}
        factor = warmup_cosine(step, warmup_steps=3, total_steps=10)
        assert lrs["heads"] == pytest.approx(1e-3 * factor) and lrs["backbone"] == pytest.approx(1e-4 * factor)
        optimizer.step()
        scheduler.step()


# ---- batch assembly ---------------------------------------------------------------------------------


def test_targets_masks_present_labels_and_drop_the_rest():
    heads = (head_by_name("Age"), head_by_name("Male"), head_by_name("Expression"))
    metas = [
        {"id": "a", "source": "s", "identity": "x", "age": 31.5, "Male": True, "expression": None, "group": "g"},
        {"id": "b", "source": "s", "identity": None, "Male": 0, "expression": 3, "landmarks": [[0, 0]] * 5},
    ]
    targets, masks = to_targets(metas, heads, {"s/x": 0, "s/y": 1})
    assert set(targets) == set(masks) == {"identity", "age", "Male", "expression"}  # group/landmarks dropped
    assert masks["identity"].tolist() == [True, False] and targets["identity"][0] == 0
    assert masks["age"].tolist() == [True, False] and targets["age"][0].item() == 31.5
    assert targets["age"].dtype == torch.float32 and targets["Male"].dtype == torch.int64
    assert masks["Male"].tolist() == [True, True] and targets["Male"].tolist() == [1, 0]
    assert masks["expression"].tolist() == [False, True] and targets["expression"][1] == 3
    assert not (targets["expression"] < 0).any()  # missing is masked, never a negative
    only_rec, _ = to_targets(metas, (), {"s/x": 0})
    assert set(only_rec) == {"identity"}


def test_targets_refuse_unknown_identity_and_out_of_range_labels():
    with pytest.raises(ValueError, match=r"identity 's/zed' is not one of the 1 training identities"):
        to_targets([{"id": "a", "source": "s", "identity": "zed"}], (), {"s/x": 0})
    with pytest.raises(ValueError, match=r"'expression' is 9; expected a class index in \[0, 7\)"):
        to_targets([{"id": "a", "expression": 9}], (head_by_name("Expression"),))
    with pytest.raises(ValueError, match="'age' is 'old'"):
        to_targets([{"id": "a", "age": "old"}], (head_by_name("Age"),))


def test_label_stats_prefix_identities_with_their_source(shards):
    stats = label_stats(split_urls(shards / "blobs", "train") + split_urls(shards / "expr", "train"))
    assert stats.identities == [f"blobs/p{i}" for i in range(N_IDS)]
    assert stats.samples == N_IDS * PER_ID + 16
    assert stats.age_mean == pytest.approx(20 + 10 * (N_IDS - 1) / 2)


def test_normalisation_maps_uint8_to_minus_one_one():
    x = torch.tensor([0, 255, 128], dtype=torch.uint8).view(1, 3, 1, 1)
    y = normalize_images(x).flatten()
    assert y.tolist() == pytest.approx([-1.0, 1.0, (128 / 255 - IMAGE_MEAN) / IMAGE_STD], abs=1e-6)


def test_flips_are_seeded_mirror_images():
    images = torch.arange(2 * 3 * 2 * 4, dtype=torch.uint8).view(2, 3, 2, 4).repeat(8, 1, 1, 1)  # [16, 3, 2, 4]
    a = flip_images(images, 0.5, torch.Generator().manual_seed(1))
    b = flip_images(images, 0.5, torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    flipped = [not torch.equal(a[i], images[i]) for i in range(16)]
    assert 0 < sum(flipped) < 16
    assert all(torch.equal(a[i], images[i].flip(-1)) for i in range(16) if flipped[i])


# ---- multi-source mixing ------------------------------------------------------------------------------


def test_batch_counts_use_largest_remainder():
    assert batch_counts({"a": 0.5, "b": 0.25, "c": 0.25}, 8) == {"a": 4, "b": 2, "c": 2}
    assert batch_counts({"a": 0.7, "b": 0.3}, 5) == {"a": 4, "b": 1}  # 3.5 + 1.5
    assert batch_counts({"b": 0.5, "a": 0.5}, 3) == {"b": 2, "a": 1}  # a tie goes to the source listed first
    assert sum(batch_counts({"a": 1 / 3, "b": 1 / 3, "c": 1 / 3}, 10).values()) == 10
    with pytest.raises(ValueError, match="no sample"):
        batch_counts({"a": 0.9, "b": 0.1}, 2)


def test_every_batch_has_each_source_share_and_missing_labels_masked(shards):
    run = _build(shards, sources=(("blobs", 0.75), ("expr", 0.25)), batch=8)
    for _ in range(6):  # crosses an epoch of "blobs" (32 samples = 5 full slices of 6)
        batch = next(run.batches)
        assert Counter(batch.sources) == {"blobs": 6, "expr": 2} and batch.images.shape == (8, 3, 112, 112)
        is_expr = torch.tensor([s == "expr" for s in batch.sources])
        assert not batch.masks["identity"][is_expr].any() and batch.masks["identity"][~is_expr].all()
        assert batch.masks["expression"][is_expr].all() and not batch.masks["expression"][~is_expr].any()
    total, parts = run.loss_fn(run.model(normalize_images(batch.images)), batch.targets, batch.masks, progress=0.0)
    assert torch.isfinite(total) and parts["Expression"] > 0 and parts["Recognition"] > 0


def test_stream_restarts_epochs_and_resumes_mid_epoch(shards):
    batches = _build(shards, batch=8).batches  # 32 samples: an epoch is 4 batches
    for _ in range(6):
        next(batches)
    state = batches.state_dict()
    assert state["sources"]["blobs"] == {"epoch": 1, "position": 2}
    expected = [next(batches).keys for _ in range(3)]
    again = _build(shards, batch=8).batches
    again.load_state_dict(state)
    assert [next(again).keys for _ in range(3)] == expected


# ---- assembling a run -----------------------------------------------------------------------------------


def test_build_training_gives_the_configured_parts(shards):
    run = _build(shards, sources=(("blobs", 0.75), ("expr", 0.25)), lr=1e-3, steps=10, backbone_lr_scale=0.2)
    assert run.identities == [f"blobs/p{i}" for i in range(N_IDS)]
    groups = {g["name"]: g for g in run.optimizer.param_groups}
    grouped = [id(p) for g in groups.values() for p in g["params"]]
    assert len(grouped) == len(set(grouped))  # no parameter trained twice
    assert set(grouped) == {id(p) for p in [*run.model.parameters(), *run.loss_fn.parameters()] if p.requires_grad}
    assert {id(p) for p in run.loss_fn.parameters()} <= {id(p) for p in groups["heads"]["params"]}
    assert all(g["weight_decay"] == 0.05 for g in groups.values())
    schedule = dict(warmup_steps=2, total_steps=10, final_ratio=0.1)
    for step in range(4):  # two warm-up steps, then the cosine
        factor = warmup_cosine(step, **schedule)
        assert groups["heads"]["lr"] == pytest.approx(1e-3 * factor)
        assert groups["backbone"]["lr"] == pytest.approx(2e-4 * factor)
        run.optimizer.step()  # no gradients yet: only the schedule moves
        run.scheduler.step()
    age = [m for name, m in run.model.named_modules() if name.endswith("heads.Age")][0]
    assert age.bias.item() == pytest.approx(np.mean([20.0 + 10 * i for i in range(N_IDS)]))
    batch = next(run.batches)
    assert Counter(batch.sources) == {"blobs": 6, "expr": 2}
    person = {sample_id("blobs", f"{i}/{j}.jpg"): i for i in range(N_IDS) for j in range(PER_ID)}
    has_id = batch.masks["identity"]
    assert batch.targets["identity"][has_id].tolist() == [person[k] for k, m in zip(batch.keys, has_id) if m]


def test_two_builds_with_the_same_seed_start_identical(shards):
    a, b, other = _build(shards, seed=5), _build(shards, seed=5), _build(shards, seed=6)

    def state(run):
        return {**run.model.state_dict(), **{f"loss.{k}": v for k, v in run.loss_fn.state_dict().items()}}

    assert all(torch.equal(v, state(b)[k]) for k, v in state(a).items())
    assert not all(torch.equal(v, state(other)[k]) for k, v in state(a).items())
    assert next(a.batches).keys == next(b.batches).keys


def test_build_training_starts_from_a_pretrained_backbone_and_needs_identities(shards):
    torch.manual_seed(1)
    pretrained = create_model("swinface_cpu_rec")
    run = _build(shards, init={"model_name": "swinface_cpu_rec", "state_dict": pretrained.state_dict()})
    state = run.model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in pretrained.state_dict().items())
    with pytest.raises(ValueError, match="no identity label"):
        _build(shards, model_name="swinface_cpu_rec", sources=(("expr", 1.0),))


def test_fine_tuning_a_promoted_model_starts_from_all_its_weights_age_head_included(shards):
    torch.manual_seed(2)
    promoted = _build(shards, seed=5).model  # stands in for a promoted model of the same variant
    with torch.no_grad():
        promoted.state_dict()["subnets.age.heads.Age.bias"].fill_(-3.0)  # far from the shards' mean age
    run = _build(shards, init={"model_name": "swinface_cpu", "state_dict": promoted.state_dict()})
    state = run.model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in promoted.state_dict().items())  # age bias not re-initialised
    fresh = _build(shards).model.state_dict()["subnets.age.heads.Age.bias"]
    assert float(fresh) > 20.0  # without a trained age head, the bias starts at the mean label age


# ---- fit: exact resume, learning, DDP ------------------------------------------------------------------


class _Killed(RuntimeError):
    pass


def _kill_after(step: int):
    def hook(info):
        if info.step == step:
            raise _Killed(f"simulated kill after step {step}")

    return hook


def test_resumed_run_ends_with_identical_weights(shards, tmp_path):
    steps, path = 9, tmp_path / "last.pt"

    def run(resume=None, hooks=()):
        r = _build(shards, steps=steps, batch=4)
        save = functools.partial(save_checkpoint, path, kind="resume")
        result = fit(r.model, r.loss_fn, r.optimizer, r.scheduler, r.batches, steps=steps, seed=3, grad_clip=1.0,
                     save=save, checkpoint_every=3, resume=resume, hooks=hooks, log_every=2)  # fmt: skip
        return r.model, r.loss_fn, result

    model_a, loss_a, result_a = run()
    with pytest.raises(_Killed):
        run(hooks=[_kill_after(5)])  # checkpoint at 3, killed after 5: steps 4-5 are redone
    resume = load_checkpoint(path, kind="resume")
    assert resume["step"] == 3
    model_b, loss_b, result_b = run(resume=resume)
    for name, tensor in {**model_a.state_dict(), **loss_a.state_dict()}.items():
        other = {**model_b.state_dict(), **loss_b.state_dict()}[name]
        assert torch.equal(tensor, other), name
    assert result_a.history == result_b.history and result_a.step == result_b.step == steps


def test_a_few_dozen_steps_clearly_reduce_the_loss(shards):
    steps = 30
    r = _build(shards, model_name="swinface_cpu_rec", steps=steps)
    result = fit(r.model, r.loss_fn, r.optimizer, r.scheduler, r.batches, steps=steps, seed=0, grad_clip=5.0)
    losses = [entry["loss/total"] for _, entry in result.history]
    start, end = np.mean(losses[:3]), np.mean(losses[-3:])
    print(f"loss {start:.3f} -> {end:.3f}")
    assert end < 0.7 * start, (start, end)
    assert summarize(result.history)["loss/total"] == pytest.approx(np.mean(losses[-3:]))


def _ddp_worker(rank: int, world_size: int, port: int, shards: Path, out: Path) -> None:
    torch.set_num_threads(1)
    env = {"RANK": str(rank), "WORLD_SIZE": str(world_size), "LOCAL_RANK": str(rank),
           "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}  # fmt: skip
    info = init_distributed(env, use_cuda=False)
    try:
        steps, keys = 3, []
        r = _build(shards, steps=steps, batch=4)
        fit(r.model, r.loss_fn, r.optimizer, r.scheduler, r.batches, steps=steps, seed=0, grad_clip=1.0,
            hooks=[lambda info: keys.extend(info.keys)])  # fmt: skip
        params = {k: v for k, v in r.model.named_parameters()}
        params.update({f"loss.{k}": v for k, v in r.loss_fn.named_parameters()})
        torch.save({k: v.detach() for k, v in params.items()}, out / f"rank{info.rank}.pt")
        (out / f"rank{info.rank}.json").write_text(json.dumps(keys))
    finally:
        close_distributed()


def test_ddp_two_ranks_on_cpu_keep_identical_weights_and_split_the_data(shards, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_ddp_worker, args=(2, port, shards, tmp_path), nprocs=2, join=True)
    weights = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    keys = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert weights[0].keys() == weights[1].keys()
    for name in weights[0]:
        assert torch.equal(weights[0][name], weights[1][name]), name
    assert len(keys[0]) == len(keys[1]) == 12 and not set(keys[0]) & set(keys[1])


# ---- checkpoints and the exported model --------------------------------------------------------------


class _Exploit:
    """Unpickling this calls ``Path.touch(marker)``: a stand-in for arbitrary code in a tampered file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_checkpoint_loading_refuses_a_malicious_pickle(tmp_path):
    bad, marker = tmp_path / "bad.pt", tmp_path / "pwned"
    torch.save({"format": 1, "kind": "model", "payload": _Exploit(marker)}, bad)
    with pytest.raises(CheckpointError, match="refused to load"):
        load_checkpoint(bad, kind="model")
    assert not marker.exists()
    torch.load(bad, weights_only=False)  # the same file, loaded unsafely, does run the payload
    assert marker.exists()
    bad.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(bad, kind="model")


def test_checkpoint_kind_is_checked(tmp_path):
    save_checkpoint(tmp_path / "r.pt", {"step": 1}, kind="resume")
    assert load_checkpoint(tmp_path / "r.pt", kind="resume")["step"] == 1
    with pytest.raises(CheckpointError, match="'model' checkpoint"):
        load_checkpoint(tmp_path / "r.pt", kind="model")


def test_exported_model_rebuilds_the_same_network(tmp_path):
    torch.manual_seed(0)
    model = create_model("swinface_cpu", **TINY).eval()
    record = model_record(model, "swinface_cpu", TINY, identities=["s/a", "s/b"], step=7, params={"lr": 1.0},
                          init="scratch")  # fmt: skip
    save_checkpoint(tmp_path / "model.pt", record, kind="model")
    rebuilt, info = load_trained_model(tmp_path / "model.pt")
    x = normalize_images(torch.randint(0, 256, (2, 3, 112, 112), dtype=torch.uint8))
    assert torch.equal(rebuilt(x)["Recognition"], model(x)["Recognition"])
    assert info["identities"] == ["s/a", "s/b"] and info["embedding_size"] == model.num_features
    assert (info["image_mean"], info["image_std"]) == (IMAGE_MEAN, IMAGE_STD)


def test_a_model_exported_under_its_former_name_still_loads(tmp_path):
    """models/*/model.pt written before the rename say ``swinface_tiny``: they load as ``swinface_cpu``."""
    torch.manual_seed(0)
    model = create_model("swinface_cpu", **TINY).eval()
    record = model_record(model, "swinface_tiny", TINY, identities=["s/a"], step=1, params={}, init="scratch")
    save_checkpoint(tmp_path / "model.pt", record, kind="model")
    rebuilt, info = load_trained_model(tmp_path / "model.pt")
    x = normalize_images(torch.randint(0, 256, (2, 3, 112, 112), dtype=torch.uint8))
    with torch.no_grad():
        assert torch.equal(rebuilt(x)["Recognition"], model(x)["Recognition"])
    assert info["model_name"] == "swinface_tiny"  # the record is returned as written


def test_backbone_init_copies_pretrained_weights_and_rejects_other_variants():
    torch.manual_seed(1)
    pretrained = create_model("swinface_cpu_rec")
    record = {"model_name": "swinface_cpu_rec", "state_dict": pretrained.state_dict()}
    torch.manual_seed(2)
    model = create_model("swinface_cpu", **TINY)
    subnet_before = {k: v.clone() for k, v in model.state_dict().items() if k.startswith("subnets.")}
    copied = init_backbone(model, record)
    state = model.state_dict()
    assert copied and all(torch.equal(state[k], pretrained.state_dict()[k]) for k in copied)
    assert all(torch.equal(state[k], v) for k, v in subnet_before.items())
    with pytest.raises(ValueError, match="does not fit"):
        init_backbone(create_model("swinface_cpu", embedding_size=32), record)


# ---- stages ------------------------------------------------------------------------------------------


@pytest.fixture
def restore_determinism():
    """The stages switch on deterministic algorithms process-wide; give other tests the setting back."""
    enabled = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    yield
    torch.use_deterministic_algorithms(enabled, warn_only=warn_only)


@pytest.mark.usefixtures("restore_determinism")
def test_pretrain_then_train_stages_write_loadable_outputs(shards, tmp_path):
    from stages import pretrain, train

    section = {"sources": [{"name": "blobs", "share": 1.0}], "steps": 2, "warmup_steps": 1, "batch_size": 4,
               "checkpoint_every": 1}  # fmt: skip
    params = tmp_path / "params.yaml"
    params.write_text(json.dumps({"pretrain": section, "train": section}))  # JSON is YAML
    common = ["--params", str(params), "--shards", str(shards)]
    pretrain.main([*common, "--out", str(tmp_path / "pre"), "--ckpt", str(tmp_path / "ckpt/pre"),
                   "--metrics", str(tmp_path / "pre.json"), "--live", str(tmp_path / "pre_live")])  # fmt: skip
    train.main([*common, "--pretrained", str(tmp_path / "pre"), "--imported", str(tmp_path / "imported"),
                "--out", str(tmp_path / "sf"),
                "--ckpt", str(tmp_path / "ckpt/train"), "--metrics", str(tmp_path / "train.json"),
                "--live", str(tmp_path / "sf_live")])  # fmt: skip
    model, record = load_trained_model(tmp_path / "sf" / "model.pt")
    pre_model, _ = load_trained_model(tmp_path / "pre" / "model.pt")
    assert record["init"] == "pretrain" and record["identities"] == [f"blobs/p{i}" for i in range(N_IDS)]
    assert model(normalize_images(torch.zeros(1, 3, 112, 112, dtype=torch.uint8)))["Age"].shape == (1, 1)
    assert pre_model.state_dict().keys() < model.state_dict().keys()
    metrics = json.loads((tmp_path / "train.json").read_text())
    assert metrics["steps"] == 2 and math.isfinite(metrics["loss/total"]) and "loss/Age" in metrics
    assert (tmp_path / "sf_live/plots/metrics/loss/total.tsv").is_file()
    assert not any((tmp_path / "ckpt/train").iterdir())  # the resume folder is removed after export


@pytest.mark.usefixtures("restore_determinism")
def test_disabled_pretrain_makes_train_start_from_scratch(shards, tmp_path):
    from stages import pretrain

    params = tmp_path / "params.yaml"
    params.write_text(json.dumps({"pretrain": {"enabled": False}}))
    pretrain.main(["--params", str(params), "--shards", str(shards), "--out", str(tmp_path / "pre"),
                   "--ckpt", str(tmp_path / "ckpt"), "--metrics", str(tmp_path / "m.json"),
                   "--live", str(tmp_path / "live")])  # fmt: skip
    record = load_checkpoint(tmp_path / "pre" / "model.pt", kind="model")
    assert record["enabled"] is False and record["state_dict"] == {}
    with pytest.raises(ValueError, match="disabled stage"):
        load_trained_model(tmp_path / "pre" / "model.pt")


# ---- extra loss terms (faceops.train.terms) -------------------------------------------------------


class _NoisyViewTerm(LossTerm):
    """Appends a noisy copy of the batch (its own seeded generator) and pulls the two embeddings together
    through a small trainable projection: rows, a generator and a parameter, as real terms have."""

    def __init__(self, width: int, weight: float = 1.0, schedule=None):
        super().__init__("noisy_view", weight, schedule)
        self.project = torch.nn.Linear(width, width)
        self.generator = torch.Generator().manual_seed(11)
        self.seen: list[tuple[int, slice, int]] = []

    def extra_rows(self, images, batch):
        noise = torch.randn(images.shape, generator=self.generator) * 0.1
        return images + noise.to(images.device)

    def forward(self, inputs: TermInputs):
        emb = inputs.outputs["Recognition"]
        self.seen.append((inputs.batch_size, inputs.rows, emb.shape[0]))
        own, other = emb[: inputs.batch_size], emb[inputs.rows]
        return (self.project(own) - other).pow(2).mean()


def _run_with_term(shards, steps, *, weight=1.0, path=None, resume=None, hooks=(), schedule=None, **build):
    terms: list[_NoisyViewTerm] = []

    def make(model):
        terms.append(_NoisyViewTerm(model.num_features, weight, schedule))
        return terms

    r = _build(shards, model_name="swinface_cpu_rec", steps=steps, batch=4, make_terms=make, **build)
    save = functools.partial(save_checkpoint, path, kind="resume") if path else None
    result = fit(r.model, r.loss_fn, r.optimizer, r.scheduler, r.batches, steps=steps, seed=3, save=save,
                 checkpoint_every=2 if path else 0, resume=resume, hooks=hooks, terms=r.terms)  # fmt: skip
    return r, terms[0], result


def test_a_term_adds_rows_to_one_forward_and_its_loss_is_logged_and_trained(shards):
    r, term, result = _run_with_term(shards, steps=3)
    assert term.seen == [(4, slice(4, 8), 8)] * 3  # the task loss saw 4 rows, the term all 8, its own 4..8
    assert all("loss/noisy_view" in entry for _, entry in result.history)
    assert any(p in {id(q) for g in r.optimizer.param_groups for q in g["params"]} for p in map(id, term.parameters()))
    total_weight = [e["loss/total"] - e["loss/Recognition"] for _, e in result.history]
    assert total_weight == pytest.approx([e["loss/noisy_view"] for _, e in result.history], rel=1e-5)


def test_a_term_at_weight_zero_is_logged_but_adds_nothing(shards):
    _, _, result = _run_with_term(shards, steps=3, weight=0.0)
    for _, entry in result.history:
        assert entry["loss/noisy_view"] > 0 and entry["loss/total"] == pytest.approx(entry["loss/Recognition"])


def test_a_run_with_a_term_resumes_to_identical_weights(shards, tmp_path):
    path = tmp_path / "last.pt"
    r_a, term_a, result_a = _run_with_term(shards, steps=6)
    with pytest.raises(_Killed):
        _run_with_term(shards, steps=6, path=path, hooks=[_kill_after(3)])
    r_b, term_b, result_b = _run_with_term(shards, steps=6, path=path, resume=load_checkpoint(path, kind="resume"))
    for name, tensor in {**r_a.model.state_dict(), **term_a.state_dict()}.items():
        assert torch.equal(tensor, {**r_b.model.state_dict(), **term_b.state_dict()}[name]), name
    assert result_a.history == result_b.history


def test_term_schedules_and_names_are_checked():
    ramp = linear_ramp(0.2, 0.6)
    assert [ramp(p) for p in (0.0, 0.2, 0.4, 0.6, 0.9)] == pytest.approx([0.0, 0.0, 0.5, 1.0, 1.0])
    smooth = cosine_ramp(0.0, 1.0)
    assert smooth(0.0) == pytest.approx(0.0) and smooth(0.5) == pytest.approx(0.5) and smooth(0.999) > 0.99
    with pytest.raises(ValueError, match="without '/'"):
        _NoisyViewTerm.__mro__[1]("a/b", 1.0)
    with pytest.raises(ValueError, match="weight"):
        _NoisyViewTerm(4, weight=-1.0)
    term = _NoisyViewTerm(4, weight=2.0, schedule=linear_ramp(0.5, 0.5))
    assert term.factor(0.4) == 0.0 and term.factor(0.5) == 2.0
