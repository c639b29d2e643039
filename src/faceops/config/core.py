"""What every section shares: the frozen base model, the error type and message, the section loader.

Every section is a frozen model with ``extra="forbid"``, so a misspelt key is an error, not a silently
ignored setting, and the message names the key and what is allowed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

__all__ = ["ParamsError", "Section", "format_errors", "load_sections", "read_params_file"]


class Section(BaseModel):
    """Base of every params section: frozen, unknown keys refused."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class ParamsError(ValueError):
    """params.yaml is invalid; the message names every bad key and what is allowed."""


def format_errors(err: ValidationError, origin: str) -> str:
    """One line per problem, each naming the dotted key (``align.jpeg_quality``) and what is allowed."""
    lines = [f"{origin} is invalid ({err.error_count()} problem{'s' if err.error_count() != 1 else ''}):"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "<root>"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key (misspelt or not supported here)"
        got = e.get("input")
        shown = "" if e["type"] in ("extra_forbidden", "missing") or isinstance(got, dict) else f" (got {got!r})"
        lines.append(f"  - {key}: {msg}{shown}")
    return "\n".join(lines)


def read_params_file(path: str | Path) -> Any:
    """The parsed YAML of a params file.

    Raises:
        FileNotFoundError: the file does not exist.
        ParamsError: YAML syntax error.
    """
    path = Path(path)
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ParamsError(f"{path} is not valid YAML: {err}") from None


def validate(model: type[Section], data: object, origin: str) -> Any:
    """``model`` validated from a mapping (None counts as empty).

    Raises:
        ParamsError: listing every invalid key with its allowed values.
    """
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ParamsError(f"{origin} must be a mapping of sections, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise ParamsError(format_errors(err, origin)) from None


def load_sections(path: str | Path, **sections: type[Section]) -> Any:
    """Read ``path`` and validate only the named sections: ``load_sections(p, align=AlignParams)``.

    What a stage calls: it imports only the sections it reads, so its code dependencies (dvc.yaml) are
    only those modules. Other sections of the file are not looked at here; the flows validate the whole
    file (``faceops.config.params``) before any stage runs.

    Returns:
        A frozen object with one attribute per section (``.align``); a section missing from the file
        takes its defaults.

    Raises:
        FileNotFoundError: the file does not exist.
        ParamsError: YAML syntax error, or invalid keys/values in the named sections.
    """
    data = read_params_file(path)
    if data is not None and not isinstance(data, dict):
        raise ParamsError(f"{path} must be a mapping of sections, got {type(data).__name__}")
    fields: dict[str, Any] = {name: (model, Field(default_factory=model)) for name, model in sections.items()}
    stage_model = create_model("StageParams", __base__=Section, **fields)
    return validate(stage_model, {name: (data or {}).get(name) or {} for name in sections}, str(path))
