"""Importing the official SwinFace checkpoint (faceops.models.swinface_official + the ``swinface`` importer).

The official layout comes from a committed fixture of tensor names and shapes written down from reading the
authors' code (tests/fixtures/swinface_official_keys.json), filled here with seeded values: the strict import
must succeed, each tensor must land where the official model would use it (checked by recomputing official
subnets from their own tensors with functional ops), and anything that does not fit must be named.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from faceops.io.checkpoint import save_checkpoint
from faceops.models import create_model
from faceops.models.importers import import_weights
from faceops.models.swinface_official import checkpoint_filter_fn, official_output_name, split_checkpoint, to_official
from faceops.models.tasks import ANALYSIS_HEADS, OUTPUT_NAMES
from faceops.train import build_model, init_backbone, load_trained_model

FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "swinface_official_keys.json").read_text())
PARTS = ("state_dict_backbone", "state_dict_fam", "state_dict_tss", "state_dict_om")
WINDOW = 7


def _relative_position_index(w: int = WINDOW) -> torch.Tensor:
    """Swin's index into the (2w-1)^2 bias table for each (query, key) pair of a w x w window."""
    ys, xs = np.divmod(np.arange(w * w), w)
    dy, dx = ys[:, None] - ys[None, :] + w - 1, xs[:, None] - xs[None, :] + w - 1
    return torch.from_numpy(dy * (2 * w - 1) + dx).long()


def _shift_mask(grid: int, w: int = WINDOW) -> torch.Tensor:
    """Swin's shifted-window mask: -100 between tokens of a window that came from different regions."""
    bands = np.where(np.arange(grid) < grid - w, 0, np.where(np.arange(grid) < grid - w // 2, 1, 2))
    region = 3 * bands[:, None] + bands[None, :]  # [grid, grid]
    windows = region.reshape(grid // w, w, grid // w, w).transpose(0, 2, 1, 3).reshape(-1, w * w)
    return torch.from_numpy(np.where(windows[:, :, None] == windows[:, None, :], 0.0, -100.0)).float()


def _seeded(name: str, shape: list[int], gen: torch.Generator) -> torch.Tensor:
    """A plausible value for an official tensor: weights ~ N(0, 0.02), norm scales ~ 1, BN variances > 0."""
    if name.endswith("num_batches_tracked"):
        return torch.tensor(1000, dtype=torch.long)
    if name.endswith("relative_position_index"):
        return _relative_position_index()
    if name.endswith("attn_mask"):
        return _shift_mask(round(shape[0] ** 0.5) * WINDOW)
    if name.endswith("running_var"):
        return 0.5 + torch.rand(shape, generator=gen)
    if "norm" in name and name.endswith("weight") or ".feature.1.weight" in name or ".feature.3.weight" in name:
        return 1.0 + 0.1 * torch.randn(shape, generator=gen)
    return 0.02 * torch.randn(shape, generator=gen)


@pytest.fixture(scope="module")
def official() -> dict[str, dict[str, torch.Tensor]]:
    gen = torch.Generator().manual_seed(0)
    return {part: {k: _seeded(k, shape, gen) for k, shape in FIXTURE[part].items()} for part in PARTS}


@pytest.fixture(scope="module")
def checkpoint(official, tmp_path_factory) -> Path:
    """The fixture as the official training script saves it (plus entries inference ignores)."""
    path = tmp_path_factory.mktemp("official") / "checkpoint_step_79999_gpu_0.pt"
    torch.save({"epoch": 3, "global_step": 79999, "local_step": 10, **official}, path)
    return path


@pytest.fixture(scope="module")
def imported(checkpoint) -> dict:
    return import_weights("swinface", checkpoint)


@pytest.fixture(scope="module")
def faces() -> torch.Tensor:
    return torch.rand(1, 3, 112, 112, generator=torch.Generator().manual_seed(1)) * 2 - 1


def test_fixture_is_our_export_layout():
    """Our export in the official layout has exactly the official tensor names and shapes."""
    exported = to_official(create_model("swinface_swin_t"))
    assert sorted(exported) == sorted(PARTS)
    for part in PARTS:
        assert {k: list(v.shape) for k, v in exported[part].items()} == FIXTURE[part], part
    assert sum(len(FIXTURE[p]) for p in PARTS) == 473  # 454 ours + 17 recomputed buffers + the unused head


def test_output_layer_m_feeds_our_head_of_the_same_name():
    ours = [h.name for h in ANALYSIS_HEADS]
    assert [official_output_name(n) for n in FIXTURE["om_output_names"]] == ours
    assert set(OUTPUT_NAMES) == {"Recognition", *ours}


def test_strict_import_lands_every_tensor(imported, official):
    assert imported["model_name"] == "swinface_swin_t" and imported["step"] == 80000
    assert imported["init"] == "official:checkpoint_step_79999_gpu_0.pt"
    state = imported["state_dict"]
    assert len(state) == 454
    landmarks = {  # ours <- theirs, one per mapping rule
        "trunk.patch_embed.proj.weight": ("state_dict_backbone", "patch_embed.proj.weight"),
        "trunk.stages.2.blocks.5.attn.qkv.weight": ("state_dict_backbone", "layers.2.blocks.5.attn.qkv.weight"),
        "trunk.stages.0.merge.norm.weight": ("state_dict_backbone", "layers.0.downsample.norm.weight"),
        "trunk.stages.2.merge.reduction.weight": ("state_dict_backbone", "layers.2.downsample.reduction.weight"),
        "recognition.norm.bias": ("state_dict_backbone", "norm.bias"),
        "recognition.neck.3.running_var": ("state_dict_backbone", "feature.3.running_var"),
        "subnets.gender.fusion.convs.3.weight": ("state_dict_fam", "nets.0.conv.convs.3.weight"),
        "subnets.neck.gate.mlp.2.weight": ("state_dict_fam", "nets.10.channel_attention.mlp.3.weight"),
        "subnets.hair.norm.running_mean": ("state_dict_fam", "nets.4.norm.running_mean"),
        "subnets.mouth.mlp.3.bias": ("state_dict_tss", "nets.8.feature.3.bias"),
        "subnets.age.heads.Age.weight": ("state_dict_om", "output_fcs.1.weight"),
        "subnets.mouth.heads.5_o_Clock_Shadow.bias": ("state_dict_om", "output_fcs.32.bias"),
    }
    for ours, (part, theirs) in landmarks.items():
        assert torch.equal(state[ours], official[part][theirs]), ours
    by_shape: dict[tuple, list[tuple[str, str]]] = {}
    for part, tensors in official.items():
        for key, value in tensors.items():
            by_shape.setdefault((tuple(value.shape), value.dtype), []).append((part, key))
    sources = set()  # each of our float tensors holds exactly one official tensor, none used twice
    for ours, value in state.items():
        if value.dtype == torch.long:
            continue  # BatchNorm step counters: all 1000 here
        found = [pk for pk in by_shape[(tuple(value.shape), value.dtype)] if torch.equal(official[pk[0]][pk[1]], value)]
        assert len(found) == 1, (ours, found)
        sources.add(found[0])
    assert len(sources) == sum(v.dtype != torch.long for v in state.values())


def _official_subnet(feats: torch.Tensor, official: dict, k: int, m: int) -> torch.Tensor:
    """Output m of official subnet k from their tensors, with functional ops (eval mode)."""
    fam = {n.removeprefix(f"nets.{k}."): v for n, v in official["state_dict_fam"].items() if n.startswith(f"nets.{k}.")}
    tss = official["state_dict_tss"]
    levels = torch.split(feats, [192, 384, 768, 768], dim=1)
    y = torch.cat([F.conv2d(lv, fam[f"conv.convs.{c}.weight"], padding=1) for c, lv in enumerate(levels)], dim=1)

    def mlp(v):
        hidden = F.relu(F.linear(v, fam["channel_attention.mlp.1.weight"], fam["channel_attention.mlp.1.bias"]))
        return F.linear(hidden, fam["channel_attention.mlp.3.weight"], fam["channel_attention.mlp.3.bias"])

    y = F.relu(y * torch.sigmoid(mlp(y.mean(dim=(2, 3))) + mlp(y.amax(dim=(2, 3))))[:, :, None, None])
    v = F.batch_norm(y.amax(dim=(2, 3)), fam["norm.running_mean"], fam["norm.running_var"], fam["norm.weight"],
                     fam["norm.bias"], eps=2e-5)  # fmt: skip
    for layer in (0, 3):
        v = F.relu(F.linear(v, tss[f"nets.{k}.feature.{layer}.weight"], tss[f"nets.{k}.feature.{layer}.bias"]))
    om = official["state_dict_om"]
    return F.linear(v, om[f"output_fcs.{m}.weight"], om[f"output_fcs.{m}.bias"])


def _official_embedding(feats: torch.Tensor, official: dict) -> torch.Tensor:
    """The official recognition path: norm -> token mean -> feature (Linear, BN, Linear, BN)."""
    bb = official["state_dict_backbone"]
    tokens = feats[:, -768:].flatten(2).transpose(1, 2)
    x = F.layer_norm(tokens, (768,), bb["norm.weight"], bb["norm.bias"]).mean(dim=1)
    for lin, bn in ((0, 1), (2, 3)):
        x = F.linear(x, bb[f"feature.{lin}.weight"])
        x = F.batch_norm(x, bb[f"feature.{bn}.running_mean"], bb[f"feature.{bn}.running_var"],
                         bb[f"feature.{bn}.weight"], bb[f"feature.{bn}.bias"], eps=2e-5)  # fmt: skip
    return x


@torch.no_grad()
def test_imported_outputs_follow_the_official_tensors(imported, official, faces):
    model = build_model(imported)
    feats = model.forward_features(faces)
    out = model.forward_head(feats)
    names = FIXTURE["om_output_names"]
    for k, m in ((2, names.index("Expression")), (0, names.index("Gender")), (8, names.index("Mustache"))):
        theirs = _official_subnet(feats, official, k, m)
        assert torch.allclose(out[official_output_name(names[m])], theirs, atol=1e-5), names[m]
    assert torch.allclose(out["Recognition"], _official_embedding(feats, official), atol=1e-5)


@torch.no_grad()
def test_round_trip_through_the_official_layout_is_exact(tmp_path, faces):
    torch.manual_seed(3)
    ours = create_model("swinface_swin_t")
    for module in ours.modules():  # trained-looking BatchNorm statistics
        if isinstance(module, torch.nn.BatchNorm1d):
            module.running_mean.normal_(0, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    ours.eval()
    path = tmp_path / "exported.pt"
    torch.save(to_official(ours), path)
    back = build_model(import_weights("swinface", path))
    before, after = ours(faces), back(faces)
    assert list(after) == list(OUTPUT_NAMES)
    for name in OUTPUT_NAMES:
        assert torch.equal(before[name], after[name]), name


def test_imported_record_loads_and_initialises_training(imported, tmp_path):
    path = tmp_path / "swinface_swin_t.pt"
    save_checkpoint(path, imported, kind="model")
    model, record = load_trained_model(path)
    assert record["embedding_size"] == model.num_features == 512
    fresh = create_model("swinface_swin_t")
    assert len(init_backbone(fresh, record)) == 454
    assert torch.equal(fresh.state_dict()["subnets.cheek.heads.Sideburns.weight"],
                       imported["state_dict"]["subnets.cheek.heads.Sideburns.weight"])  # fmt: skip


def test_backbone_only_checkpoints_give_the_recognition_model(official, tmp_path):
    for saved in ({"state_dict_backbone": official["state_dict_backbone"]}, official["state_dict_backbone"]):
        path = tmp_path / "backbone.pt"
        torch.save(saved, path)
        record = import_weights("swinface", path)
        assert record["model_name"] == "swinface_swin_t_rec" and len(record["state_dict"]) == 183
        assert torch.equal(record["state_dict"]["recognition.neck.0.weight"],
                           official["state_dict_backbone"]["feature.0.weight"])  # fmt: skip


@pytest.fixture(scope="module")
def swin_t() -> torch.nn.Module:
    return create_model("swinface_swin_t")


@pytest.mark.parametrize(
    ("part", "edit", "message"),
    [
        pytest.param("state_dict_fam", lambda d: d.update({"nets.3.norm.weight": torch.ones(256)}),
                     r"'fam.nets.3.norm.weight' has shape \(256,\), our 'subnets.global.norm.weight' needs \(512,\)",
                     id="wrong-shape"),
        pytest.param("state_dict_backbone", lambda d: d.pop("layers.1.downsample.norm.bias"),
                     r"no 'backbone.layers.1.downsample.norm.bias' \(for our 'trunk.stages.1.merge.norm.bias'",
                     id="missing-key"),
        pytest.param("state_dict_om", lambda d: d.update({"output_fcs.42.weight": torch.zeros(2, 512)}),
                     r"does not read, first 'om.output_fcs.42.weight'", id="extra-key"),
        pytest.param("state_dict_backbone", lambda d: d.update({"layers.0.blocks.1.attn_mask": torch.zeros(64, 49, 49)}),
                     r"'backbone.layers.0.blocks.1.attn_mask' differs", id="other-buffer"),
    ],
)  # fmt: skip
def test_what_does_not_fit_is_named(official, swin_t, part, edit, message):
    changed = {p: dict(v) for p, v in official.items()}
    edit(changed[part])
    with pytest.raises(ValueError, match=message):
        checkpoint_filter_fn(split_checkpoint(changed), swin_t)


def test_unsafe_or_foreign_files_are_refused(tmp_path):
    backbone = {"patch_embed.proj.weight": torch.zeros(96, 3, 2, 2)}
    pickled = tmp_path / "pickled.pt"
    torch.save({"state_dict_backbone": backbone, "cfg": Path("x")}, pickled)
    with pytest.raises(ValueError, match="refused to load"):
        import_weights("swinface", pickled)
    partial = tmp_path / "partial.pt"
    torch.save({"state_dict_backbone": backbone, "state_dict_fam": {}}, partial)
    with pytest.raises(ValueError, match=r"lacks \['state_dict_tss', 'state_dict_om'\]"):
        import_weights("swinface", partial)
    other = tmp_path / "other.pt"
    torch.save({"conv.weight": torch.zeros(3)}, other)
    with pytest.raises(ValueError, match="not an official SwinFace checkpoint"):
        import_weights("swinface", other)


def test_train_starts_only_from_the_pinned_import(tmp_path):
    from stages.train import imported_init_file

    folder = tmp_path / "imported"
    folder.mkdir()
    (folder / "swinface_swin_t.pt").write_bytes(b"weights")
    pin = "imported:swinface_swin_t@" + hashlib.sha256(b"weights").hexdigest()[:12]
    assert imported_init_file(pin, folder) == folder / "swinface_swin_t.pt"
    with pytest.raises(SystemExit, match=r"has sha256 [0-9a-f]{12}\.\.\., not 000000000000"):
        imported_init_file("imported:swinface_swin_t@000000000000", folder)
    with pytest.raises(SystemExit, match="faceops import-weights swinface"):
        imported_init_file("imported:swinface_swin_t_rec@000000000000", folder)
