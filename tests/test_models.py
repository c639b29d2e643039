"""faceops.models: registry/factory, SwinFace's architecture contract, task layout and param groups."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from faceops.labels import CELEBA_ATTRIBUTES, EXPRESSIONS
from faceops.losses import MarginSoftmax
from faceops.models import _registry, create_model, current_model_name, list_models, param_groups, register_model
from faceops.models.swinface import ChannelGate, MultiLevelFusion, SwinFace, split_widths
from faceops.models.tasks import (
    ANALYSIS_HEADS,
    OUTPUT_NAMES,
    RECOGNITION,
    SWINFACE_SUBNETS,
    head_by_name,
)

CPU_MODELS = list_models("swinface_cpu*")  # face models only: faceops.keypoints registers heatmap nets too


def _images(batch: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 3, 112, 112, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def tiny() -> SwinFace:
    torch.manual_seed(0)
    return create_model("swinface_cpu").eval()


# -------------------------------------------------------------------------------------------------- tasks


class TestTasks:
    def test_layout_matches_swinface(self):
        """11 subnets, 42 heads, 43 outputs; every CelebA attribute, age and expression has one head."""
        assert len(SWINFACE_SUBNETS) == 11
        assert [len(s.heads) for s in SWINFACE_SUBNETS] == [1, 2, 2, 6, 10, 5, 2, 4, 6, 2, 2]
        assert len(ANALYSIS_HEADS) == 42 and len(OUTPUT_NAMES) == 43 and OUTPUT_NAMES[0] == RECOGNITION
        labels = [h.label for h in ANALYSIS_HEADS]
        assert sorted(labels) == sorted([*CELEBA_ATTRIBUTES, "age", "expression"])

    def test_head_kinds_and_widths(self):
        assert head_by_name("Age").num_outputs == 1 and head_by_name("Age").kind == "regression"
        assert head_by_name("Expression").num_outputs == len(EXPRESSIONS) == 7
        binary = [h for h in ANALYSIS_HEADS if h.label in CELEBA_ATTRIBUTES]
        assert all(h.num_outputs == 2 and h.kind == "classification" and h.name == h.label for h in binary)

    def test_unknown_head_lists_names(self):
        with pytest.raises(KeyError, match="Wearing_Necktie"):
            head_by_name("Gender")


# -------------------------------------------------------------------------------------------------- architecture


class TestShapes:
    def test_tiny_outputs(self, tiny):
        """43 entries with the documented widths; embedding 64 by default."""
        with torch.no_grad():
            out = tiny(_images(2))
        assert list(out) == list(OUTPUT_NAMES)
        assert out[RECOGNITION].shape == (2, 64) and tiny.num_features == 64
        assert out["Age"].shape == (2, 1) and out["Expression"].shape == (2, 7) and out["Male"].shape == (2, 2)
        for head in ANALYSIS_HEADS:
            assert out[head.name].shape == (2, head.num_outputs), head.name

    def test_tiny_widths(self, tiny):
        assert tiny.level_channels == (48, 96, 192, 192)
        assert tiny.forward_features(_images(1)).shape == (1, 528, 7, 7)
        fusion = tiny.subnets["age"].fusion
        assert [c.out_channels for c in fusion.convs] == [6, 12, 23, 23]

    def test_embedding_size_is_a_param(self):
        model = create_model("swinface_cpu", embedding_size=128, mlff_width=32).eval()
        with torch.no_grad():
            out = model(_images(2))
        assert out[RECOGNITION].shape == (2, 128) and model.num_features == 128
        assert sum(c.out_channels for c in model.subnets["hair"].fusion.convs) == 32

    def test_full_size(self):
        """Swin-T SwinFace: pinned parameter counts, 2112-channel "all" taps, 43 outputs for a batch of 1."""
        torch.manual_seed(0)
        model = create_model("swinface_swin_t").eval()
        n_params = sum(p.numel() for p in model.parameters())
        n_backbone = sum(p.numel() for p in model.backbone_parameters())
        print(f"swinface_swin_t parameters: {n_params:,} (backbone incl. recognition subnet {n_backbone:,})")
        # Measured on this implementation (timm 1.0 Swin blocks): 28.5M backbone matches the paper's
        # "backbone 28.5M params"; the 11 MLCA subnets with split 3x3 convs add 38.9M.
        assert n_params == 67_415_538
        assert n_backbone == 28_501_498
        assert model.level_channels == (192, 384, 768, 768)
        assert [c.out_channels for c in model.subnets["gender"].fusion.convs] == [47, 93, 186, 186]
        with torch.no_grad():
            taps = model.trunk(_images(1))
            feats = torch.cat(taps, dim=1)
            out = model.forward_head(feats)
        assert [tuple(t.shape) for t in taps] == [(1, c, 7, 7) for c in (192, 384, 768, 768)]
        assert feats.shape == (1, 2112, 7, 7)
        assert len(out) == 43 and out[RECOGNITION].shape == (1, 512) and out["Expression"].shape == (1, 7)


class TestTaps:
    def test_taps_follow_swinface_layout(self, tiny):
        """FM1..FM3 = stage output *after* merging, avg-pooled to 7x7; FM4 = last stage before any norm."""
        x = _images(2)
        with torch.no_grad():
            taps = tiny.trunk(x)
            tokens = tiny.trunk.patch_embed(x)  # [B, 56, 56, C]
            manual = []
            for stage in tiny.trunk.stages:
                tokens = stage(tokens)
                manual.append(tokens.permute(0, 3, 1, 2))
        assert [m.shape[-1] for m in manual] == [28, 14, 7, 7]
        torch.testing.assert_close(taps[0], F.avg_pool2d(manual[0], 4))
        torch.testing.assert_close(taps[1], F.avg_pool2d(manual[1], 2))
        torch.testing.assert_close(taps[2], manual[2])
        torch.testing.assert_close(taps[3], manual[3])

    def test_recognition_reads_only_last_level(self, tiny):
        """The embedding depends on FM4 alone; perturbing FM1-FM3 leaves it unchanged."""
        with torch.no_grad():
            feats = tiny.forward_features(_images(2))
            changed = feats.clone()
            changed[:, : -tiny.level_channels[-1]] += 1.0
            torch.testing.assert_close(
                tiny.forward_head(changed, pre_logits=True), tiny.forward_head(feats, pre_logits=True)
            )
            changed[:, -1] += 1.0
            moved = tiny.forward_head(changed, pre_logits=True)
            assert not torch.allclose(moved, tiny.forward_head(feats, pre_logits=True))


class TestMLCA:
    def test_split_widths(self):
        assert split_widths(512, (192, 384, 768, 768)) == (47, 93, 186, 186)
        assert split_widths(64, (48, 96, 192, 192)) == (6, 12, 23, 23)
        assert sum(split_widths(100, (3, 5, 7))) == 100
        with pytest.raises(ValueError, match="too small"):
            split_widths(2, (48, 96, 192, 192))

    @pytest.mark.parametrize("level", range(4))
    def test_fusion_levels_are_independent(self, level):
        """Perturbing one level's input changes exactly that level's slice of the fused map."""
        torch.manual_seed(0)
        in_widths, out_widths = (4, 6, 8, 8), (2, 3, 4, 4)
        fusion = MultiLevelFusion(in_widths, out_widths)
        x = torch.randn(2, sum(in_widths), 7, 7)
        y = x.clone()
        start = sum(in_widths[:level])
        y[:, start : start + in_widths[level]] += torch.randn(2, in_widths[level], 7, 7)
        with torch.no_grad():
            delta = (fusion(y) - fusion(x)).abs().amax(dim=(0, 2, 3))  # [sum(out_widths)]
        slices = torch.split(delta, out_widths)
        for i, part in enumerate(slices):
            assert (part > 0).all() if i == level else (part == 0).all(), (i, part)

    def test_channel_gate_shrinks_and_is_spatially_constant(self):
        torch.manual_seed(0)
        gate = ChannelGate(32, reduction=16)
        x = torch.randn(3, 32, 7, 7) * 5
        with torch.no_grad():
            y = gate(x)
        assert (y.abs() <= x.abs()).all()
        ratio = y / x  # x has no zeros (continuous random values)
        torch.testing.assert_close(ratio, ratio[:, :, :1, :1].expand_as(ratio))
        assert ((ratio > 0) & (ratio < 1)).all()


def test_gradient_reaches_backbone_from_every_subnet():
    """Each analysis subnet alone sends gradient into the shared trunk."""
    torch.manual_seed(0)
    model = create_model("swinface_cpu").train()
    x = _images(2)
    for spec in SWINFACE_SUBNETS:
        model.zero_grad()
        model(x)[spec.heads[0].name].sum().backward()
        grad = model.trunk.patch_embed.proj.weight.grad
        assert grad is not None and grad.abs().sum() > 0, spec.name


# -------------------------------------------------------------------------------------------------- param groups


class TestParamGroups:
    def test_backbone_gets_a_tenth_and_every_param_is_in_one_group(self, tiny):
        margin = MarginSoftmax(10, tiny.num_features)
        groups = param_groups(tiny, 1e-3, weight_decay=0.05, extra_head_modules=[margin])
        by_name = {g["name"]: g for g in groups}
        assert by_name["backbone"]["lr"] == pytest.approx(by_name["heads"]["lr"] / 10)
        assert all(g["weight_decay"] == 0.05 for g in groups)
        ids = [id(p) for g in groups for p in g["params"]]
        expected = {id(p) for p in tiny.parameters()} | {id(margin.weight)}
        assert len(ids) == len(set(ids)) == len(expected) and set(ids) == expected
        backbone = {id(p) for p in by_name["backbone"]["params"]}
        assert {id(p) for p in tiny.trunk.parameters()} <= backbone
        assert {id(p) for p in tiny.recognition.parameters()} <= backbone
        assert not backbone & {id(p) for p in tiny.subnets.parameters()}
        torch.optim.AdamW(groups)  # accepted as-is by torch

    def test_recognition_only_model(self):
        model = create_model("swinface_cpu_rec")
        groups = param_groups(model, 1e-3)
        assert [g["name"] for g in groups] == ["backbone"]

    def test_model_without_backbone_is_rejected(self):
        with pytest.raises(TypeError, match="backbone_parameters"):
            param_groups(nn.Linear(2, 2), 1e-3)


# -------------------------------------------------------------------------------------------------- registry


class TestRegistry:
    def test_variants_are_registered(self):
        assert {"swinface_swin_t", "swinface_swin_t_rec", "swinface_cpu", "swinface_cpu_rec"} <= set(list_models())
        assert list_models("swinface_*_rec") == ["swinface_cpu_rec", "swinface_swin_t_rec"]
        assert CPU_MODELS == ["swinface_cpu", "swinface_cpu_rec"]  # the parametrized tests below run on both

    @pytest.mark.parametrize(
        ("former", "current"),
        [("swinface_t", "swinface_swin_t"), ("swinface_t_rec", "swinface_swin_t_rec"),
         ("swinface_tiny", "swinface_cpu"), ("swinface_tiny_rec", "swinface_cpu_rec")],
    )  # fmt: skip
    def test_former_names_are_refused_naming_the_new_one_and_map_for_old_records(self, former, current):
        with pytest.raises(ValueError, match=f"'{former}' was renamed to '{current}'"):
            create_model(former)
        assert former not in list_models()
        assert current_model_name(former) == current and current_model_name(current) == current

    @pytest.mark.parametrize("name", CPU_MODELS)
    def test_finite_outputs_and_all_params_get_grads(self, name):
        torch.manual_seed(0)
        model = create_model(name).train()
        out = model(_images(3))
        assert out[RECOGNITION].shape == (3, model.num_features)
        assert all(torch.isfinite(v).all() for v in out.values()), "output included NaN/inf"
        sum(v.float().pow(2).mean() for v in out.values()).backward()
        for n, p in model.named_parameters():
            assert p.grad is not None, f"no gradient for {n}"

    @pytest.mark.parametrize("name", CPU_MODELS)
    def test_same_seed_same_output(self, name):
        outs = []
        for _ in range(2):
            torch.manual_seed(123)
            model = create_model(name).eval()
            with torch.no_grad():
                outs.append(model(_images(2)))
        for key in outs[0]:
            torch.testing.assert_close(outs[0][key], outs[1][key], rtol=0, atol=0)

    def test_rec_variant_is_the_backbone_of_the_full_one(self, tiny):
        rec = create_model("swinface_cpu_rec")
        with torch.no_grad():
            assert list(rec.eval()(_images(2))) == [RECOGNITION]
        assert sum(p.numel() for p in rec.parameters()) == sum(p.numel() for p in tiny.backbone_parameters())

    def test_unknown_name_lists_close_names(self):
        with pytest.raises(ValueError, match="swinface_cpu") as info:
            create_model("swinface_tinny")
        assert "list_models()" in str(info.value)

    def test_none_kwargs_mean_default_and_pretrained_is_refused(self):
        assert create_model("swinface_cpu_rec", embedding_size=None).num_features == 64
        with pytest.raises(ValueError, match="no pretrained weights"):
            create_model("swinface_cpu", pretrained=True)

    def test_registering_twice_warns(self, monkeypatch):
        monkeypatch.setattr(_registry, "_ENTRYPOINTS", dict(_registry._ENTRYPOINTS))

        def dummy_net(pretrained: bool = False, **kwargs) -> nn.Module:
            return nn.Identity()

        register_model(dummy_net)
        with pytest.warns(UserWarning, match="registered twice"):
            register_model(dummy_net)
        assert isinstance(create_model("dummy_net"), nn.Identity)

    def test_timm_passthrough(self):
        model = create_model("timm/resnet18", num_classes=0)
        assert model.num_features == 512
