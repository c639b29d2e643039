"""The stage side of the finished-run cache (:mod:`faceops.runcache`): ``--cache`` and the code digest.

The code a stage runs is what its dvc.yaml ``deps`` list (derived from its imports and checked by a test:
``flows.codedeps``), so a cached run never outlives a change to that code and no second list is kept.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from faceops import runcache
from faceops.io.digest import sha256_file
from stages._common import console

#: The repository this module belongs to: its dvc.yaml lists the code each stage runs.
_REPO = Path(__file__).resolve().parents[1]
#: Top-level folders of a dvc.yaml dep that is code (everything else a stage lists is data).
_CODE_ROOTS = ("stages", "src")


def code_digest(stage: str) -> str:
    """sha256 over the code files that dvc.yaml's ``deps`` of ``stage`` list (a folder: every .py below it)."""
    import yaml

    spec = yaml.safe_load((_REPO / "dvc.yaml").read_text())["stages"].get(stage)
    if spec is None:
        raise KeyError(f"dvc.yaml in {_REPO} has no stage {stage!r}")
    digest = hashlib.sha256()
    for dep in sorted(d for d in spec.get("deps", []) if isinstance(d, str) and d.split("/", 1)[0] in _CODE_ROOTS):
        path = _REPO / dep
        files = sorted(p for p in path.rglob("*.py") if "__pycache__" not in p.parts) if path.is_dir() else [path]
        for file in files:
            digest.update(f"{file.relative_to(_REPO).as_posix()}:{sha256_file(file)}".encode())
    return digest.hexdigest()


def cache_folder(values: list[Path]) -> Path | None:
    """The ``--cache`` argument (zero or one folder; ``parse_args`` gives optional paths as lists)."""
    if len(values) > 1:
        raise SystemExit(f"--cache takes one folder, got {len(values)}: {[str(v) for v in values]}; pass one")
    return values[0] if values else None


def restored(stage: str, entry: Path, outputs: Mapping[str, Path]) -> bool:
    """Restore ``outputs`` from ``entry`` if a finished run is kept there (saying so); whether it was."""
    if not runcache.is_finished(entry, outputs):
        return False
    runcache.restore_finished(entry, outputs)
    console.print(f"{stage}: same inputs as the finished run {entry.name}: restored its outputs from {entry}")
    return True


def reuse_or_run(
    stage: str, cache: Path | None, parts: Sequence[object], outputs: Mapping[str, Path], run: Callable[[], None],
    *, device: str = "cpu",
) -> bool:  # fmt: skip
    """``run`` (which writes ``outputs``) unless ``cache`` keeps a finished run with the same fingerprint
    (``parts``, this stage's code, ``device`` and torch's version: :func:`faceops.runcache.fingerprint`).

    Returns:
        True when the outputs were restored, False when ``run`` ran (always, without ``cache``).
    """
    if cache is None:
        run()
        return False
    entry = cache / runcache.fingerprint(stage, parts, code=code_digest(stage), device=device)
    if restored(stage, entry, outputs):
        return True
    return runcache.reuse_or_run(entry, outputs, run)
