"""The official SwinFace checkpoint layout, mapped by name onto faceops' :class:`~faceops.models.swinface.SwinFace`.

Paper: Qin et al., "SwinFace: A Multi-task Transformer for Face Recognition, Expression Recognition, Age
Estimation and Attribute Estimation", arXiv preprint 2308.11509, 2023 (https://arxiv.org/abs/2308.11509).
The layout facts below (tensor names, the order of subnets and output layers, the output names) come from
reading the authors' code (github.com/lxq1000/SwinFace, ``swinface_project/backbones/swin.py``,
``analysis/subnets.py``, ``train.py``, ``inference.py``; MIT license). Nothing is copied from it: this module
only says which of their tensor names holds which of ours.

The official training checkpoint (``checkpoint_step_79999_gpu_0.pt``) is a dict of four state dicts, one per
part of their model: ``state_dict_backbone`` (Swin-T plus the recognition neck), ``state_dict_fam`` (11
feature-attention nets: split 3x3 convs, CBAM channel gate, BatchNorm), ``state_dict_tss`` (11 two-layer
MLPs) and ``state_dict_om`` (42 output Linears), next to optimizer, scheduler and Partial-FC states that
inference does not need. A backbone-only file (their pre-training's ``state_dict_backbone``, or that dict
saved bare) holds the first part alone and maps onto the recognition-only model.

Ours <- theirs (by name, never by position: timm's ``PatchMerging`` registers ``norm`` before
``reduction`` where theirs does the opposite, so position-only matching fails at the first merge):

- ``trunk.patch_embed.*`` <- ``backbone.patch_embed.*``; ``trunk.stages.i.blocks.*`` <-
  ``backbone.layers.i.blocks.*``; ``trunk.stages.i.merge.*`` <- ``backbone.layers.i.downsample.*``;
- ``recognition.norm.*`` <- ``backbone.norm.*``; ``recognition.neck.*`` <- ``backbone.feature.*``;
- the subnet that holds the k-th official group of outputs (:data:`OFFICIAL_OUTPUTS`): ``fusion.convs.*``
  <- ``fam.nets.k.conv.convs.*``; ``gate.mlp.0`` / ``gate.mlp.2`` <- ``fam.nets.k.channel_attention.mlp.1``
  / ``.mlp.3`` (their MLP starts with a Flatten); ``norm.*`` <- ``fam.nets.k.norm.*``; ``mlp.*`` <-
  ``tss.nets.k.feature.*``; the head named after official output m <- ``om.output_fcs.m.*``.

Dropped: ``backbone.head`` (a Linear 768 -> 512 that their forward never calls) and the saved
``attn.relative_position_index`` / ``attn_mask`` buffers, which timm recomputes; :func:`checkpoint_filter_fn`
checks that the saved ones equal timm's before dropping them. Output names: their ``"Gender"`` is our
``"Male"``, ``"Five O'Clock Shadow"`` our ``"5_o_Clock_Shadow"``, spaces become underscores
(:func:`official_output_name`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

from faceops.models.swinface import SwinFace

__all__ = [
    "PARTS",
    "OFFICIAL_OUTPUTS",
    "DROPPED",
    "official_output_name",
    "official_key",
    "split_checkpoint",
    "checkpoint_filter_fn",
    "to_official",
]

#: The parts of the official model, each saved as ``state_dict_<part>``.
PARTS = ("backbone", "fam", "tss", "om")

#: Official output names per subnet, in the order of their ``fam.nets`` / ``tss.nets`` and, flattened, of
#: ``om.output_fcs`` (42 Linears; "Recognition" is the backbone's embedding).
OFFICIAL_OUTPUTS: tuple[tuple[str, ...], ...] = (
    ("Gender",),
    ("Age", "Young"),
    ("Expression", "Smiling"),
    ("Attractive", "Blurry", "Chubby", "Heavy Makeup", "Oval Face", "Pale Skin"),
    ("Bald", "Bangs", "Black Hair", "Blond Hair", "Brown Hair", "Gray Hair", "Receding Hairline", "Straight Hair",
     "Wavy Hair", "Wearing Hat"),
    ("Arched Eyebrows", "Bags Under Eyes", "Bushy Eyebrows", "Eyeglasses", "Narrow Eyes"),
    ("Big Nose", "Pointy Nose"),
    ("High Cheekbones", "Rosy Cheeks", "Wearing Earrings", "Sideburns"),
    ("Five O'Clock Shadow", "Big Lips", "Mouth Slightly Open", "Mustache", "Wearing Lipstick", "No Beard"),
    ("Double Chin", "Goatee"),
    ("Wearing Necklace", "Wearing Necktie"),
)  # fmt: skip

#: Official tensors with no counterpart here: a Linear their forward never calls.
DROPPED = ("backbone.head.weight", "backbone.head.bias")

_RENAMED_OUTPUTS = {"Gender": "Male", "Five O'Clock Shadow": "5_o_Clock_Shadow"}
_GATE_LAYERS = {"0": "1", "2": "3"}  # ours (Linear, ReLU, Linear) <- theirs (Flatten, Linear, ReLU, Linear)


def official_output_name(name: str) -> str:
    """Our output name of an official one: ``"Gender"`` -> ``"Male"``, ``"Heavy Makeup"`` -> ``"Heavy_Makeup"``."""
    return _RENAMED_OUTPUTS.get(name, name.replace(" ", "_"))


def _official_slots(model: SwinFace) -> tuple[dict[str, int], dict[str, int]]:
    """``({our subnet: official net index k}, {our head: official output index m})``, matched by output names;
    both empty for the recognition-only model.

    Raises:
        ValueError: the model has no subnet whose heads are exactly one official group's outputs.
    """
    subnet_of_head = {head: name for name, subnet in model.subnets.items() for head in subnet.heads}
    nets: dict[str, int] = {}
    fcs: dict[str, int] = {}
    m = 0
    for k, group in enumerate(OFFICIAL_OUTPUTS if model.subnets else ()):
        heads = [official_output_name(n) for n in group]
        owners = {subnet_of_head.get(h) for h in heads}
        owner = owners.pop() if len(owners) == 1 else None
        if owner is None or set(model.subnets[owner].heads) != set(heads):
            raise ValueError(f"no subnet of this model has exactly the official outputs {list(group)} (ours: "
                             f"{heads}); its task layout differs from SwinFace's")  # fmt: skip
        nets[owner] = k
        for head in heads:
            fcs[head], m = m, m + 1
    return nets, fcs


def official_key(name: str, nets: Mapping[str, int], fcs: Mapping[str, int]) -> str:
    """The official ``<part>.<key>`` of our tensor ``name`` (a state-dict key or a timm buffer).

    Args:
        name: our tensor's name, e.g. ``"subnets.expression.gate.mlp.0.weight"``.
        nets, fcs: where our subnets and heads sit in the official layout (from the model's output names).

    Raises:
        ValueError: ``name`` has no official counterpart.
    """
    rules = (
        (r"trunk\.patch_embed\.(.+)", lambda g: f"backbone.patch_embed.{g[0]}"),
        (r"trunk\.stages\.(\d+)\.blocks\.(.+)", lambda g: f"backbone.layers.{g[0]}.blocks.{g[1]}"),
        (r"trunk\.stages\.(\d+)\.merge\.(.+)", lambda g: f"backbone.layers.{g[0]}.downsample.{g[1]}"),
        (r"recognition\.norm\.(.+)", lambda g: f"backbone.norm.{g[0]}"),
        (r"recognition\.neck\.(.+)", lambda g: f"backbone.feature.{g[0]}"),
        (r"subnets\.(\w+)\.fusion\.convs\.(.+)", lambda g: f"fam.nets.{nets[g[0]]}.conv.convs.{g[1]}"),
        (r"subnets\.(\w+)\.gate\.mlp\.([02])\.(.+)",
         lambda g: f"fam.nets.{nets[g[0]]}.channel_attention.mlp.{_GATE_LAYERS[g[1]]}.{g[2]}"),
        (r"subnets\.(\w+)\.norm\.(.+)", lambda g: f"fam.nets.{nets[g[0]]}.norm.{g[1]}"),
        (r"subnets\.(\w+)\.mlp\.(.+)", lambda g: f"tss.nets.{nets[g[0]]}.feature.{g[1]}"),
        (r"subnets\.\w+\.heads\.(\w+)\.(.+)", lambda g: f"om.output_fcs.{fcs[g[0]]}.{g[1]}"),
    )  # fmt: skip
    for pattern, official in rules:
        match = re.fullmatch(pattern, name)
        if match:
            return official(match.groups())
    raise ValueError(f"our tensor {name!r} has no counterpart in the official SwinFace layout")


def _tables(model: SwinFace) -> tuple[dict[str, str], dict[str, str]]:
    """``({official: our state-dict key}, {official: our recomputed timm buffer})``."""
    nets, fcs = _official_slots(model)
    own = model.state_dict()
    weights = {official_key(name, nets, fcs): name for name in own}
    buffers = {official_key(name, nets, fcs): name for name, _ in model.named_buffers() if name not in own}
    return weights, buffers


def split_checkpoint(loaded: object) -> dict[str, dict[str, torch.Tensor]]:
    """The official parts in a loaded checkpoint: ``{"backbone": {...}, "fam": ..., "tss": ..., "om": ...}``.

    Accepts the training checkpoint (``state_dict_<part>`` for all four parts, other entries ignored), a
    backbone-only one (``state_dict_backbone`` alone) and a bare backbone state dict.

    Raises:
        ValueError: none of these layouts, or only some of the analysis parts.
    """
    if isinstance(loaded, Mapping) and isinstance(loaded.get("state_dict_backbone"), Mapping):
        present = [p for p in PARTS[1:] if isinstance(loaded.get(f"state_dict_{p}"), Mapping)]
        if present and len(present) != len(PARTS) - 1:
            missing = [f"state_dict_{p}" for p in PARTS[1:] if p not in present]
            raise ValueError(f"the checkpoint has analysis parts {present} but lacks {missing}; an official "
                             "SwinFace checkpoint holds all of fam, tss and om, or none (backbone only)")  # fmt: skip
        return {p: dict(loaded[f"state_dict_{p}"]) for p in ("backbone", *present)}
    tensors = isinstance(loaded, Mapping) and loaded and all(isinstance(v, torch.Tensor) for v in loaded.values())
    if tensors and any(k.startswith("patch_embed.") for k in loaded):
        return {"backbone": dict(loaded)}
    keys = sorted(loaded)[:6] if isinstance(loaded, Mapping) else type(loaded).__name__
    raise ValueError(f"not an official SwinFace checkpoint: expected 'state_dict_backbone' (with 'state_dict_fam', "
                     f"'state_dict_tss', 'state_dict_om') or a backbone state dict, found {keys}")  # fmt: skip


def checkpoint_filter_fn(parts: Mapping[str, Mapping[str, torch.Tensor]], model: SwinFace) -> dict[str, torch.Tensor]:
    """Official parts (:func:`split_checkpoint`) renamed to ``model``'s state-dict keys, strictly.

    Every tensor of ``model`` must be in the checkpoint with its shape; every official tensor must be read,
    dropped (:data:`DROPPED`) or a saved timm buffer equal to the one timm computes.

    Raises:
        ValueError: naming the first of our tensors whose official tensor is missing or has another shape,
            the first saved buffer that differs from timm's, or the first official tensor nothing reads.
    """
    weights, buffers = _tables(model)
    own, own_buffers = model.state_dict(), dict(model.named_buffers())
    flat = {f"{part}.{key}": value for part, state in parts.items() for key, value in state.items()}
    for theirs, ours in weights.items():
        if theirs not in flat:
            raise ValueError(f"the checkpoint has no {theirs!r} (for our {ours!r}, shape {tuple(own[ours].shape)})")
        if tuple(flat[theirs].shape) != tuple(own[ours].shape):
            raise ValueError(f"{theirs!r} has shape {tuple(flat[theirs].shape)}, our {ours!r} needs "
                             f"{tuple(own[ours].shape)}")  # fmt: skip
    for theirs, ours in buffers.items():
        saved, computed = flat.get(theirs), own_buffers[ours]
        if saved is not None and (saved.shape != computed.shape or not torch.equal(saved.to(computed), computed)):
            raise ValueError(f"the saved buffer {theirs!r} differs from the {ours!r} timm computes; the checkpoint "
                             "was made for another window size or input size")  # fmt: skip
    unread = [k for k in flat if k not in weights and k not in buffers and k not in DROPPED]
    if unread:
        raise ValueError(f"the checkpoint holds {len(unread)} tensors this model does not read, first {unread[0]!r}")
    return {ours: flat[theirs] for theirs, ours in weights.items()}


def to_official(model: SwinFace) -> dict[str, dict[str, torch.Tensor]]:
    """``model``'s weights in the official layout: ``{"state_dict_<part>": {key: tensor}}``.

    Includes what the official model's strict ``load_state_dict`` asks for besides the weights: the timm
    buffers, and ``backbone.head`` as zeros (never called in its forward, so its values change nothing).
    """
    weights, buffers = _tables(model)
    tensors = {**model.state_dict(), **dict(model.named_buffers())}
    flat = {theirs: tensors[ours].detach().clone() for theirs, ours in {**weights, **buffers}.items()}
    width, embedding = model.level_channels[-1], model.num_features
    flat.update({DROPPED[0]: torch.zeros(embedding, width), DROPPED[1]: torch.zeros(embedding)})
    parts: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in flat.items():
        part, rest = key.split(".", 1)
        parts.setdefault(f"state_dict_{part}", {})[rest] = value
    return parts
