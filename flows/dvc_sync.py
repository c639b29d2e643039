"""The DVC side of versions: push outputs to the remote, check them out (pulling what the cache lacks), and
ask which outputs hold work that a checkout would lose.

Git carries a version's pipeline files (dvc.lock, ``.dvc`` pointers); DVC carries the data and models they
pin. DVC is imported inside each function, so the version commands that only read git stay fast.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from flows.gitrepo import VersionError

__all__ = ["cached_outputs", "checkout_outputs", "dirty_outputs", "push_outputs"]


def _dvc_remote(root: Path) -> tuple[str | None, str]:
    """(remote to push to, why not): the default remote, else the only one; None when there is none."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        default = repo.config["core"].get("remote")
        names = sorted(repo.config.get("remote", {}))
    if default:
        return default, ""
    if len(names) == 1:
        return names[0], ""
    if names:
        return None, f"DVC remotes {names} but no default: set one with `dvc remote default NAME`"
    return None, ""


def push_outputs(root: Path) -> tuple[bool | None, str]:
    """``dvc push`` to the workspace's remote so other machines can ``dvc pull`` this version.

    Returns:
        ``(pushed, error)``: pushed is None when no remote is configured, False when the push failed or
        the remote is ambiguous (``error`` says why), True when it succeeded.
    """
    remote, why = _dvc_remote(root)
    if remote is None:
        return (False, why) if why else (None, "")
    cmd = [sys.executable, "-m", "dvc", "push", "--remote", remote]
    result = subprocess.run(cmd, cwd=root, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
        return False, f"`dvc push --remote {remote}` failed (exit {result.returncode}):\n{tail}"
    return True, ""


def dirty_outputs(root: Path) -> list[str]:
    """DVC outputs whose workspace content matches neither dvc.lock nor the cache (work a checkout would lose)."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        status = repo.status()
    dirty = set()
    for entries in status.values():
        for entry in entries:
            if isinstance(entry, dict):
                outs = entry.get("changed outs", {})
                dirty |= {path for path, what in outs.items() if what in ("modified", "not in cache")}
    return sorted(dirty)


def cached_outputs(root: Path) -> set[str]:
    """Paths (relative to ``root``) of the cached outputs of every stage and ``.dvc`` file."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        outs = [out for stage in repo.index.stages for out in stage.outs if out.use_cache]
    return {os.path.relpath(out.fs_path, root) for out in outs}


def _dvc_message(err: Exception) -> str:
    """DVC's message on one line, without colour codes or its help link."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(err))
    return " ".join(line for line in text.splitlines() if line.strip() and "error.dvc.org" not in line)


def checkout_outputs(root: Path, force: bool) -> None:
    """``dvc checkout``; when the cache lacks objects, ``dvc pull`` them (VersionError if that fails)."""
    from dvc.exceptions import CheckoutError, DvcException
    from dvc.repo import Repo

    try:
        with Repo(str(root)) as repo:
            repo.checkout(force=force)
        return
    except CheckoutError as err:
        missing = ", ".join(sorted(os.path.relpath(os.path.abspath(t), root) for t in err.target_infos))
    except DvcException as err:
        raise VersionError(f"dvc checkout refused: {_dvc_message(err)}") from err
    try:
        with Repo(str(root)) as repo:
            repo.pull(force=force)
    except DvcException as err:
        raise VersionError(
            f"the DVC cache lacks {missing} and `dvc pull` failed ({_dvc_message(err)}); configure the remote "
            "that holds them (`dvc remote add -d NAME URL`) or re-run the pipeline for that version"
        ) from err
