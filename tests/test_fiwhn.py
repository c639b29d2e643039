"""faceops.models.fiwhn: FIWHN's topology (pinned parameter counts, shared group, fold/unfold, chunked attention)
and faceops.models.importers: the official checkpoints' names load strictly."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from faceops.models import create_model
from faceops.models.fiwhn import (
    DIV2K_MEAN,
    FusionGate,
    InteractionBlock,
    chunked_attention,
    fold_neighbourhoods,
    official_key,
    unfold_neighbourhoods,
)
from faceops.models.importers import import_weights
from faceops.train.export import build_model

OFFICIAL_X4 = json.loads((Path(__file__).parent / "fixtures" / "fiwhn_official_x4.json").read_text())


def _params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("scale, count", [(2, 705_098), (3, 713_768), (4, 725_906)])
def test_parameter_count_at_32_channels_is_the_official_one(scale, count):
    """The official checkpoints hold exactly these many float elements in 455 tensors."""
    model = create_model(f"fiwhn_x{scale}")
    assert _params(model) == count and len(model.state_dict()) == 455


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_output_is_scale_times_the_input(scale):
    model = create_model(f"fiwhn_x{scale}", channels=8).eval()
    with torch.no_grad():
        out = model(torch.rand(2, 3, 8, 12) * 255)
    assert out.shape == (2, 3, 8 * scale, 12 * scale) and torch.isfinite(out).all()


def test_zeroed_upsampling_convs_give_the_constant_mean_image():
    """Both pixel-shuffle branches silent: only the added mean is left (the mean shift's path)."""
    model = create_model("fiwhn_x4", channels=8).eval()
    with torch.no_grad():
        for conv in (model.tail_up[0], model.skip_up[0]):
            conv.weight.zero_()
            conv.bias.zero_()
        out = model(torch.rand(1, 3, 6, 6) * 255)
    expected = (255 * torch.tensor(DIV2K_MEAN)).view(1, 3, 1, 1).expand_as(out)
    torch.testing.assert_close(out, expected)


def test_the_second_group_pass_shares_the_first_ones_weights():
    """The group runs twice, but its three WDIBs (93,528 parameters each at C = 32) exist once."""
    model = create_model("fiwhn_x4")
    calls = []
    model.group.register_forward_hook(lambda module, args, out: calls.append(tuple(args[0].shape)))
    with torch.no_grad():
        model(torch.rand(1, 3, 6, 6) * 255)
    assert calls == [(1, 32, 6, 6)] * 2
    blocks = [m for m in model.modules() if isinstance(m, InteractionBlock)]
    assert len(blocks) == 3 and [_params(b) for b in blocks] == [93_528] * 3


def test_fold_of_unfolded_constant_counts_the_covering_neighbourhoods():
    """Sum, not average: interior pixels are covered 9 times, edges 6, corners 4."""
    x = torch.full((1, 2, 5, 7), 3.0)
    folded = fold_neighbourhoods(unfold_neighbourhoods(x), (5, 7))
    counts = folded[0, 0] / 3.0
    assert torch.equal(counts[1:-1, 1:-1], torch.full((3, 5), 9.0))
    assert counts[0, 0] == counts[0, -1] == counts[-1, 0] == counts[-1, -1] == 4
    assert torch.equal(counts[0, 1:-1], torch.full((5,), 6.0)) and torch.equal(counts[1:-1, 0], torch.full((3,), 6.0))


@pytest.mark.parametrize("tokens", [16, 18])  # 18: four chunks of 4 and a fifth of 2, as the official split
def test_chunked_attention_equals_full_attention_with_a_block_diagonal_mask(tokens):
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, tokens, 5, generator=g) for _ in range(3))
    chunk = torch.arange(tokens) // (tokens // 4)
    mask = chunk[:, None] == chunk[None, :]
    scores = (q @ k.transpose(-1, -2)) * 0.3
    reference = scores.masked_fill(~mask, float("-inf")).softmax(-1) @ v
    torch.testing.assert_close(chunked_attention(q, k, v, chunks=4, scale=0.3), reference)
    with pytest.raises(ValueError, match="at least 4 tokens"):
        chunked_attention(q[..., :3, :], k[..., :3, :], v[..., :3, :], chunks=4, scale=0.3)


def test_fusion_gates_lie_in_half_to_one():
    gate = FusionGate(16)
    with torch.no_grad():
        values = gate(torch.randn(4, 16, 5, 5) * 10)
    assert values.shape == (4, 16, 1, 1) and (values >= 0.5).all() and (values < 1).all()


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_bicubic_start_upsamples_like_bicubic_in_the_interior(scale):
    """skip_init="bicubic" (ours): before training, the output is near bicubic interpolation of a smooth image."""
    model = create_model(f"fiwhn_x{scale}", channels=8, skip_init="bicubic").eval()
    yy, xx = torch.meshgrid(torch.arange(10.0), torch.arange(10.0), indexing="ij")
    image = (100 + 40 * torch.sin(yy / 3) + 30 * torch.cos(xx / 4)).expand(1, 3, 10, 10)
    with torch.no_grad():
        out = model(image)
    bicubic = F.interpolate(image, scale_factor=scale, mode="bicubic", align_corners=False)
    inner = slice(2 * scale, -2 * scale)
    assert (out - bicubic)[..., inner, inner].abs().max() < 1.5


# ---- official names -----------------------------------------------------------------------------


def test_our_names_map_onto_the_official_checkpoint_exactly():
    """Every tensor of ours has an official name with the same shape, and no official tensor is left over."""
    model = create_model("fiwhn_x4")
    mapped = {official_key(name): tuple(t.shape) for name, t in model.state_dict().items()}
    official = {name: tuple(shape) for name, shape in OFFICIAL_X4["tensors"].items()}
    assert mapped == official
    assert sum(math.prod(s) for s in official.values()) == 725_906


def _official_checkpoint(path: Path, *, drop: str | None = None, reshape: str | None = None) -> None:
    g = torch.Generator().manual_seed(0)
    state = {name: torch.randn(*shape, generator=g) for name, shape in OFFICIAL_X4["tensors"].items() if name != drop}
    if reshape:
        state[reshape] = torch.randn(1, 2, 3)
    torch.save(state, path)


def test_import_loads_every_official_tensor_into_its_place(tmp_path):
    _official_checkpoint(tmp_path / "model_best_x4.pt")
    record = import_weights("fiwhn", tmp_path / "model_best_x4.pt")
    official = torch.load(tmp_path / "model_best_x4.pt", weights_only=True)
    assert record["model_name"] == "fiwhn_x4" and record["scale"] == 4 and record["model_args"] == {"channels": 32}
    model = build_model(record)
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, official[official_key(name)]), name
    assert torch.equal(model.group.blocks[0].unit_a1.expand.weight, official["MY1.srb1.body.0.weight"])


@pytest.mark.parametrize(
    "kind, message",
    [
        pytest.param({"drop": "MY2.fuse1.conv.weight"}, "no 'MY2.fuse1.conv.weight'", id="missing-key"),
        pytest.param({"reshape": "attention1.atten.qkv.weight"}, "'attention1.atten.qkv.weight' has shape", id="shape"),
    ],
)
def test_import_names_the_first_key_that_does_not_fit(tmp_path, kind, message):
    _official_checkpoint(tmp_path / "bad.pt", **kind)
    with pytest.raises(ValueError, match=message):
        import_weights("fiwhn", tmp_path / "bad.pt")


def test_import_refuses_unknown_tensors_pickles_and_names(tmp_path):
    state = {name: torch.zeros(shape) for name, shape in OFFICIAL_X4["tensors"].items()}
    torch.save({**state, "extra.weight": torch.zeros(1)}, tmp_path / "extra.pt")
    with pytest.raises(ValueError, match="'extra.weight'"):
        import_weights("fiwhn", tmp_path / "extra.pt")
    torch.save({"weights": state, "hook": print}, tmp_path / "pickle.pt")
    with pytest.raises(ValueError, match="refused"):
        import_weights("fiwhn", tmp_path / "pickle.pt")
    with pytest.raises(ValueError, match="no importer named 'fiwhm'"):
        import_weights("fiwhm", tmp_path / "extra.pt")
