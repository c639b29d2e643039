"""What the stages that start from official weights share: the imported file a params pin names.

``faceops import-weights <importer> CHECKPOINT`` writes ``models/imported/<model>.pt``; a stage's ``init``
param ``imported:<model>@<sha256 prefix>`` names that file and pins its bytes, so params and dvc.lock say
which weights a run started from.
"""

from __future__ import annotations

from pathlib import Path

from faceops.io.digest import sha256_file


def imported_init_file(init: str, folder: Path, *, key: str = "train.init", importer: str = "swinface") -> Path:
    """``folder/<model>.pt`` of ``init`` = ``imported:<model>@<sha256 prefix>``, once its bytes are the pinned ones.

    Args:
        init: the param's value; key: its dotted name (``train.init``); importer: the ``import-weights`` name.

    Raises:
        SystemExit: no such file, or it holds other bytes than the params pin (the message gives the fix).
    """
    name, pin = init.removeprefix("imported:").split("@")
    path = folder / f"{name}.pt"
    if not path.is_file():
        raise SystemExit(f"{key} {init!r}: no {path}; write it with `faceops import-weights {importer} CHECKPOINT`")
    digest = sha256_file(path)
    if not digest.startswith(pin):
        raise SystemExit(f"{key} {init!r}: {path} has sha256 {digest[:12]}..., not {pin}...; to start from this "
                         f"file set {key} to imported:{name}@{digest[:12]}")  # fmt: skip
    return path
