"""The model registry and factory: the only way stages and flows build a network.

Modelled on timm's ``_registry.py`` / ``_factory.py`` (shape only): entrypoints register under their
function name, ``create_model`` drops ``None`` kwargs so "not set" means "the variant's default", and
generic backbones pass through to ``timm.create_model`` with a ``timm/`` prefix.
"""

from __future__ import annotations

import difflib
import fnmatch
import warnings
from collections.abc import Callable
from typing import Any

import torch.nn as nn

__all__ = ["register_model", "register_former_name", "current_model_name", "create_model", "list_models", "TIMM_PREFIX"]

#: Names starting with this prefix are built by ``timm.create_model`` (e.g. ``"timm/resnet18"``).
TIMM_PREFIX = "timm/"

_ENTRYPOINTS: dict[str, Callable[..., nn.Module]] = {}
#: Former name -> registered name, for models renamed after records were exported under the old name.
_FORMER_NAMES: dict[str, str] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Register a model entrypoint under its function name (decorator).

    Registering a name twice warns and keeps the newer entrypoint, so a silent shadowing of a
    variant by another module cannot go unnoticed.
    """
    name = fn.__name__
    if name in _ENTRYPOINTS:
        warnings.warn(
            f"model {name!r} is registered twice ({_ENTRYPOINTS[name].__module__} and {fn.__module__}); "
            "the newer entrypoint wins",
            stacklevel=2,
        )
    _ENTRYPOINTS[name] = fn
    return fn


def register_former_name(former: str, current: str) -> None:
    """Record that the model registered as ``current`` was called ``former`` before a rename.

    ``create_model(former)`` then refuses with a message naming ``current``, and
    :func:`current_model_name` maps an exported record's old ``model_name`` to the model to build.
    """
    _FORMER_NAMES[former] = current


def current_model_name(name: str) -> str:
    """The registered name of ``name``: itself, or the new name of a renamed model.

    For reading exported records only (``model_name`` is whatever the writing version called the
    model); new code and params name models by their current names.
    """
    return _FORMER_NAMES.get(name, name)


def list_models(pattern: str | None = None) -> list[str]:
    """Sorted names of the registered models, optionally filtered by a glob (``"swinface_*"``)."""
    names = sorted(_ENTRYPOINTS)
    return names if pattern is None else [n for n in names if fnmatch.fnmatchcase(n, pattern)]


def create_model(name: str, pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """Build a registered model (or a timm model named ``"timm/<name>"``).

    Args:
        name: a registered name (see ``list_models()``) or ``"timm/<timm model name>"``.
        pretrained: load the variant's released weights (the entrypoint raises if it has none).
        **kwargs: constructor overrides; a ``None`` value means "use the variant's default".

    Returns:
        The model, in training mode, on the CPU.

    Raises:
        ValueError: ``name`` is not registered; the message lists the closest registered names, or
            names the model's new name when ``name`` is a former one.

    Example:
        >>> model = create_model("swinface_cpu", embedding_size=128)
    """
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    if name.startswith(TIMM_PREFIX):
        import timm

        return timm.create_model(name[len(TIMM_PREFIX) :], pretrained=pretrained, **kwargs)
    if name in _FORMER_NAMES and name not in _ENTRYPOINTS:
        raise ValueError(
            f"model {name!r} was renamed to {_FORMER_NAMES[name]!r}; use the new name (in params.yaml: "
            "pretrain.model / train.model). Model files exported under the old name still load with "
            "faceops.train.load_trained_model."
        )
    if name not in _ENTRYPOINTS:
        close = difflib.get_close_matches(name, _ENTRYPOINTS, n=5, cutoff=0.4) or sorted(_ENTRYPOINTS)
        raise ValueError(
            f"unknown model {name!r}; closest registered names: {close}. "
            f"Use one of list_models() or '{TIMM_PREFIX}<name>' for a timm backbone."
        )
    return _ENTRYPOINTS[name](pretrained=pretrained, **kwargs)
