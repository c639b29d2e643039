"""What every bench result records about where it ran (shared by the scripts in bench/).

Bench figures are only comparable between runs on the same machine, load and library versions, so
each result JSON carries this block. The load average matters on shared machines: a timing taken
while other processes kept the cores busy is not the code's speed.
"""

from __future__ import annotations

import importlib
import os
import platform
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

_REPO = Path(__file__).resolve().parent.parent
#: Exit status of a bench that cannot run on this machine (no GPU, an optional data set absent): neither
#: goal met nor missed; ``make bench`` reports it as "not run" (77 is the automake convention for a skip).
NOT_RUN = 77


def environment(*packages: str, **extra: Any) -> dict[str, Any]:
    """Machine, Python, git commit, load average and the version of each named package.

    Args:
        packages: import names (``"cv2"``, ``"numpy"``, ``"torch"``); each is imported here and its
            ``__version__`` recorded under that name.
        extra: further entries to record as given (e.g. ``torch_threads=4``).

    Returns:
        A JSON-ready dict.
    """
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=_REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    info: dict[str, Any] = {
        "device": f"cpu: {platform.processor() or platform.machine()}",
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
        "commit": commit,
    }
    for name in packages:
        info[name] = getattr(importlib.import_module(name), "__version__", "unknown")
    info.update(extra)
    return info


def _cpu_model() -> str:
    """The CPU's model name (Linux: /proc/cpuinfo), else the platform's processor string."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def sized_results(default: Path, identities: int, images: int, default_size: tuple[int, int],
                  *, tags: Sequence[str] = ()) -> Path:  # fmt: skip
    """``default`` for the bench's default data size (identities, images per identity) and no ``tags``; another
    size writes ``<stem>_<identities>x<images>.json`` beside it, and ``tags`` (other non-default settings, such
    as ``400steps``) are appended as ``_<tag>``, so a study never replaces the default's committed result."""
    if (identities, images) == default_size and not tags:
        return default
    return default.with_name("_".join([default.stem, f"{identities}x{images}", *tags]) + default.suffix)
