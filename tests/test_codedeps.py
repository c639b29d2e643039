"""Every DVC stage declares the code it runs (flows.codedeps), and its finished-run cache reads the same list.

The walk is a linter's: it parses the imports of ``stages/<name>.py`` and follows them through the
repository (imports inside functions too), without importing anything.
"""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pytest
import yaml

from flows.codedeps import code_closure, generated_code_deps, missing_code_deps, stage_modules, write_code_deps

REPO = Path(__file__).resolve().parents[1]


def _copy_repo(root: Path) -> Path:
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(REPO / name, root / name)
    for folder in ("stages", "src"):
        shutil.copytree(REPO / folder, root / folder, ignore=shutil.ignore_patterns("__pycache__"))
    return root


def test_every_stage_declares_the_code_it_can_import():
    gaps = missing_code_deps(REPO)
    assert not gaps, "dvc.yaml deps miss code the stages import (run `faceops deps --write`):\n" + "\n".join(
        f"  {stage}: {', '.join(files)}" for stage, files in gaps.items()
    )


def test_dvc_yaml_lists_exactly_the_generated_code_deps():
    """Nothing more either: a listed file the stage cannot reach would re-run it for nothing."""
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    for stage, module in stage_modules(REPO).items():
        listed = [d for d in stages[stage]["deps"] if isinstance(d, str) and d.split("/")[0] in ("stages", "src")]
        assert listed == generated_code_deps(REPO, module), f"{stage}: run `faceops deps --write`"


def test_a_removed_dep_is_reported_naming_the_stage_and_the_file(tmp_path):
    root = _copy_repo(tmp_path)
    spec = yaml.safe_load((root / "dvc.yaml").read_text())
    spec["stages"]["align"]["deps"].remove("src/faceops/config/align.py")
    (root / "dvc.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    assert missing_code_deps(root) == {"align": ["src/faceops/config/align.py"]}
    assert write_code_deps(root) == ["align"]
    assert missing_code_deps(root) == {} and write_code_deps(root) == []


def test_imports_inside_functions_and_parent_packages_count(tmp_path):
    (tmp_path / "stages").mkdir()
    (tmp_path / "stages" / "__init__.py").write_text("")
    (tmp_path / "stages" / "probe.py").write_text("def main():\n    from faceops.deep.leaf import x\n")
    leaf = tmp_path / "src" / "faceops" / "deep"
    leaf.mkdir(parents=True)
    (tmp_path / "src" / "faceops" / "__init__.py").write_text("")
    (leaf / "__init__.py").write_text("")
    (leaf / "leaf.py").write_text("from . import sibling\nx = 1\n")
    (leaf / "sibling.py").write_text("")
    (leaf / "unused.py").write_text("")
    (tmp_path / "src" / "faceops" / "other.py").write_text("")
    found = {p.as_posix() for p in code_closure(tmp_path, "stages.probe")}
    assert found == {"stages/__init__.py", "stages/probe.py", "src/faceops/__init__.py",
                     "src/faceops/deep/__init__.py", "src/faceops/deep/leaf.py", "src/faceops/deep/sibling.py"}
    # a folder is listed whole only when every file in it is reached
    assert "src/faceops/deep" not in generated_code_deps(tmp_path, "stages.probe")
    (leaf / "unused.py").unlink()
    assert "src/faceops/deep" in generated_code_deps(tmp_path, "stages.probe")


def _loaded_sections(module_file: Path) -> set[str]:
    """Sections a stage module loads: the keyword names of its ``params_or_exit(...)`` calls."""
    tree = ast.parse(module_file.read_text())
    return {kw.arg for node in ast.walk(tree) if isinstance(node, ast.Call)
            and getattr(node.func, "id", None) == "params_or_exit" for kw in node.keywords if kw.arg}  # fmt: skip


def test_each_stage_declares_the_params_sections_it_loads():
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    for stage, module in stage_modules(REPO).items():
        declared = {p.split(".")[0] for p in stages[stage].get("params", []) if isinstance(p, str)}
        loaded = _loaded_sections(REPO / Path(*module.split(".")).with_suffix(".py"))
        assert loaded, f"{stage} loads no params section"
        assert loaded <= declared, f"{stage} loads {sorted(loaded - declared)} but dvc.yaml's params omit them"




def test_every_single_param_key_in_dvc_yaml_is_written_in_params_yaml():
    """DVC refuses to run a stage naming ``section.key`` that params.yaml leaves to the schema's default."""
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    missing = []
    for stage, spec in stages.items():
        for name in (p for p in spec.get("params", []) if isinstance(p, str) and "." in p):
            node = params
            for part in name.split("."):
                node = node.get(part) if isinstance(node, dict) else None
            if node is None:
                missing.append(f"{stage}: {name}")
    assert not missing, f"named in dvc.yaml but absent from params.yaml (declare the section instead): {missing}"
@pytest.mark.parametrize(("changed", "affects"), [("src/faceops/config/align.py", True),
                                                   ("src/faceops/config/keypoints.py", False),
                                                   ("stages/align.py", True), ("stages/shard.py", False)])  # fmt: skip
def test_the_finished_run_fingerprint_follows_dvc_yaml_deps(tmp_path, changed, affects):
    """stages._finished.code_digest hashes what dvc.yaml lists for the stage: nothing kept by hand."""
    import importlib.util

    root = _copy_repo(tmp_path)
    spec = importlib.util.spec_from_file_location("copied_finished", root / "stages" / "_finished.py")
    finished = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(finished)
    before = finished.code_digest("align")
    with open(root / changed, "a") as handle:
        handle.write("\n# changed\n")
    assert (finished.code_digest("align") != before) is affects
