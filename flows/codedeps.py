"""Which repository files each DVC stage can import, and whether dvc.yaml's ``deps`` say so.

Why: DVC re-runs a stage when a listed dependency changes, and only then. A file the stage imports but
its ``deps`` do not list can change without DVC noticing, and the old outputs stay (a stale cache). So
the code part of every stage's ``deps`` is *derived* from the imports: :func:`code_closure` follows
``stages/<name>.py``'s imports through the repository (``import`` and ``from ... import`` anywhere in a
module, so the imports inside functions too, and the parent packages' ``__init__`` that Python runs on
the way), like a linter, without running anything. ``faceops deps`` reports the gaps and ``faceops deps
--write`` rewrites the code entries of every stage's ``deps`` from it (data entries stay as written).

A folder is listed instead of its files when the stage reaches every ``.py`` file in it, so a stage
re-runs for a change in code it can reach and for nothing else. The stages' own finished-run caches
fingerprint the same entries (``stages._finished.code_digest``): one list, read by both.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable
from pathlib import Path

__all__ = ["CODE_ROOTS", "code_closure", "generated_code_deps", "missing_code_deps", "stage_modules", "write_code_deps"]

#: Where a stage's code can live: the stage modules and the library (under src/).
CODE_ROOTS = ("stages", "src")
#: Top-level packages that belong to the repository (anything else is an installed library).
_REPO_PACKAGES = ("faceops", "stages", "flows")
_STAGE_CMD = re.compile(r"python -m (stages\.\w+)")


def _module_file(root: Path, name: str) -> Path | None:
    """The file of module ``name`` inside the repository (package ``__init__.py`` or ``.py``), if any."""
    parts = name.split(".")
    for base in (root, root / "src"):
        candidate = base.joinpath(*parts)
        if (candidate / "__init__.py").is_file():
            return candidate / "__init__.py"
        if candidate.with_suffix(".py").is_file():
            return candidate.with_suffix(".py")
    return None


def _imported_names(path: Path, module: str) -> set[str]:
    """Every module name an ``import`` in ``path`` may load (``from a import b`` gives ``a`` and ``a.b``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            names.add(source)
            names.update(f"{source}.{alias.name}" for alias in node.names)
    return names


def code_closure(root: Path, module: str) -> set[Path]:
    """Repository files (relative to ``root``) that importing ``module`` can execute."""
    seen: set[str] = set()
    todo = [module]
    files: set[Path] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = _module_file(root, name)
        if path is None:
            continue
        files.add(path.relative_to(root))
        parts = name.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]  # parent packages run first
        todo += [n for n in _imported_names(path, name) if n.split(".")[0] in _REPO_PACKAGES]
    return files


def stage_modules(root: Path) -> dict[str, str]:
    """``{stage: "stages.<name>"}`` for every dvc.yaml stage whose command runs a stage module."""
    import yaml

    stages = yaml.safe_load((root / "dvc.yaml").read_text())["stages"]
    found = {}
    for name, spec in stages.items():
        match = _STAGE_CMD.search(" ".join(spec["cmd"]) if isinstance(spec["cmd"], list) else spec["cmd"])
        if match:
            found[name] = match.group(1)
    return found


def _is_code(dep: str) -> bool:
    return dep.split("/", 1)[0] in CODE_ROOTS


def _covered(path: Path, deps: Iterable[str]) -> bool:
    return any(path == Path(dep) or Path(dep) in path.parents for dep in deps)


def missing_code_deps(root: Path) -> dict[str, list[str]]:
    """``{stage: [files it can import that its deps do not cover]}``, only stages with gaps."""
    import yaml

    stages = yaml.safe_load((root / "dvc.yaml").read_text())["stages"]
    gaps = {}
    for stage, module in stage_modules(root).items():
        deps = [d if isinstance(d, str) else next(iter(d)) for d in stages[stage].get("deps", [])]
        missing = sorted(p.as_posix() for p in code_closure(root, module) if not _covered(p, deps))
        if missing:
            gaps[stage] = missing
    return gaps


def _python_files(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*.py") if "__pycache__" not in p.parts}


def generated_code_deps(root: Path, module: str) -> list[str]:
    """The code entries for a stage running ``module``: its closure, a folder where every file of it is in.

    ``stages`` and ``src`` themselves are never listed whole (no stage runs every stage module).
    """
    closure = code_closure(root, module)
    absolute = {root / p for p in closure}
    entries: list[str] = []
    for top in (root / r for r in CODE_ROOTS):
        entries += _compress(root, top, absolute, whole_allowed=False)
    return sorted(entries)


def _compress(root: Path, folder: Path, wanted: set[Path], whole_allowed: bool) -> list[str]:
    files = _python_files(folder)
    if not files & wanted:
        return []
    if whole_allowed and files <= wanted:
        return [folder.relative_to(root).as_posix()]
    entries = [p.relative_to(root).as_posix() for p in sorted(folder.glob("*.py")) if p in wanted]
    for child in sorted(p for p in folder.iterdir() if p.is_dir() and p.name != "__pycache__"):
        entries += _compress(root, child, wanted, whole_allowed=True)
    return entries


def write_code_deps(root: Path) -> list[str]:
    """Rewrite the code entries of every stage module's ``deps`` in dvc.yaml; the stages that changed.

    Comments, order of stages and the data entries (kept after the code entries, in their order) stay.
    """
    from ruamel.yaml import YAML

    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.width = 120
    yaml.indent(mapping=2, sequence=4, offset=2)
    path = root / "dvc.yaml"
    document = yaml.load(path.read_text())
    changed = []
    for stage, module in stage_modules(root).items():
        spec = document["stages"][stage]
        deps = list(spec.get("deps", []))
        data = [d for d in deps if not (isinstance(d, str) and _is_code(d))]
        wanted = generated_code_deps(root, module) + data
        if deps != wanted:
            spec["deps"] = wanted
            changed.append(stage)
    if changed:
        from faceops.io.atomic import atomic_file

        with atomic_file(path) as handle:
            yaml.dump(document, handle)
    return changed
