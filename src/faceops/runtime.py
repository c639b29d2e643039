"""The versions of the libraries that decide a stage's output bytes, for its metrics.

Why: the same code, params and inputs can give different bytes under another OpenCV (its bundled
libjpeg-turbo encodes the aligned faces and sample photos), numpy, torch (the trained networks) or
Pillow (it decodes the photos at ingest). Recording them beside each stage's metrics lets a changed
hash in ``dvc.lock`` be traced to its cause (``git diff`` of ``metrics/<stage>.json``).

Reading them is cheap (milliseconds): nothing here imports torch (2-4 s) or OpenCV (~0.3 s).
:func:`torch_version` reads torch's own generated version file, package versions come from their
installed metadata, and OpenCV's build information (the only place that names the JPEG library inside
it) is read from its library file unless cv2 is imported already.
"""

from __future__ import annotations

import functools
import importlib.util
import mmap
import os
import platform
import re
import sys
from collections.abc import Mapping, MutableMapping
from importlib import metadata
from pathlib import Path

__all__ = [
    "CPU_KERNELS",
    "CPU_KERNELS_SWITCH",
    "cpu_kernels",
    "decisive_versions",
    "jpeg_library",
    "opencv_build_information",
    "pin_cpu_kernels",
    "torch_version",
]

#: What a missing library is recorded as (a metrics value is never empty).
MISSING = "not installed"

#: The distributions that provide ``cv2`` (one is installed): their version includes the wheel's build
#: number (5.1.0.95), which changes the bundled libraries while ``cv2.__version__`` (5.1.0) stays.
_OPENCV_DISTRIBUTIONS = (
    "opencv-python-headless", "opencv-python", "opencv-contrib-python-headless", "opencv-contrib-python",
)  # fmt: skip

_JPEG_LINE = re.compile(r"^\s*JPEG:\s*(?P<description>.+?)\s*$", re.MULTILINE)
_VERSION = re.compile(r"\(ver\s+(?P<version>[^)\s]+)\)")
#: How OpenCV's build information begins (modules/core/src/system.cpp: "\nGeneral configuration for OpenCV ...").
_BUILD_INFORMATION_START = b"\nGeneral configuration for OpenCV"

#: One CPU kernel level for torch's three kernel libraries, instead of the best each finds on the CPU:
#: ATen's vectorized kernels, MKL's code path (GEMMs) and oneDNN's ISA (convolutions). Measured: each of
#: the three changes a trained network's bytes between an AVX-512 and an AVX2 CPU, and with all three
#: pinned both give the same bytes, at ~24% more CPU time for pretrain (docs/ARCHITECTURE.md,
#: "Reproducibility across machines"). So it is opt-in: ``FACEOPS_CPU_KERNELS=avx2``.
CPU_KERNELS = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
#: The switch :func:`pin_cpu_kernels` reads: ``avx2`` pins :data:`CPU_KERNELS`; unset, the CPU's own kernels.
CPU_KERNELS_SWITCH = "FACEOPS_CPU_KERNELS"


@functools.cache
def torch_version() -> str:
    """``torch.__version__`` (build tag included, e.g. ``2.14.1+cu130``) without importing torch.

    Read from torch's generated ``torch/version.py`` (plain assignments), loaded on its own.
    """
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("torch is not installed; faceops' stages need it")
    path = Path(next(iter(spec.submodule_search_locations))) / "version.py"
    version_spec = importlib.util.spec_from_file_location("_faceops_torch_version", path)
    assert version_spec is not None and version_spec.loader is not None
    module = importlib.util.module_from_spec(version_spec)
    version_spec.loader.exec_module(module)
    return str(module.__version__)


def _cpu_has_avx2(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether this (Linux, x86-64) CPU runs AVX2 and FMA code; False where that cannot be read."""
    try:
        with cpuinfo.open() as file:
            flags = next((line.split(":", 1)[1].split() for line in file if line.startswith("flags")), [])
    except OSError:
        return False
    return "avx2" in flags and "fma" in flags


def pin_cpu_kernels(environ: MutableMapping[str, str] = os.environ, *, has_avx2: bool | None = None) -> dict[str, str]:
    """With ``FACEOPS_CPU_KERNELS=avx2`` in ``environ``, set :data:`CPU_KERNELS` there where unset (a value
    already there wins); returns the kernel settings in force.

    Must run before the process's first torch computation (the three libraries read them once). Only on
    an x86-64 CPU with AVX2 (forcing AVX2 elsewhere would stop on an illegal instruction), so a CPU
    without AVX2, an ARM one or another OS keeps its own kernels and may give other bytes.
    """
    if environ.get(CPU_KERNELS_SWITCH, "").strip().lower() == "avx2":
        if has_avx2 is None:
            has_avx2 = platform.machine().lower() in ("x86_64", "amd64") and _cpu_has_avx2()
        if has_avx2:
            for name, value in CPU_KERNELS.items():
                environ.setdefault(name, value)
    return {name: environ[name] for name in CPU_KERNELS if name in environ}


def cpu_kernels(environ: Mapping[str, str] = os.environ) -> str:
    """The kernel level settings in ``environ``, for a run record: ``"ATEN_CPU_CAPABILITY=avx2 ..."`` or ``"native"``."""
    found = [f"{name}={environ[name]}" for name in CPU_KERNELS if name in environ]
    return " ".join(found) or "native"


def jpeg_library(build_information: str) -> tuple[str, str]:
    """(library, version) of the JPEG codec named by ``cv2.getBuildInformation()``'s ``JPEG:`` line.

    ``"build-libjpeg-turbo (ver 3.1.2-70)"`` -> ``("libjpeg-turbo", "3.1.2-70")``; a system library
    (``"/usr/lib/libjpeg.so (ver 80)"``) keeps its path as the name. ``("", "")`` when the line is missing
    (OpenCV built without JPEG support).
    """
    match = _JPEG_LINE.search(build_information)
    if match is None:
        return "", ""
    description = match["description"]
    version = _VERSION.search(description)
    name = _VERSION.sub("", description).strip()
    name = name.removeprefix("build-")  # OpenCV's bundled copy, built from 3rdparty/
    return name, version["version"] if version else ""


def _distribution_version(*names: str) -> str | None:
    for name in names:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def _library_build_information() -> str | None:
    """The text ``cv2.getBuildInformation()`` returns, read from OpenCV's library file without importing it.

    Why: importing cv2 costs ~0.3 s, and a stage that restores a finished run (pretrain, train) or only
    copies bytes (shard) does not import it otherwise. The text is one string constant in the library;
    None when it cannot be found there (another layout), and the caller imports cv2 instead.
    """
    spec = importlib.util.find_spec("cv2")
    if spec is None or not spec.submodule_search_locations:
        return None
    libraries = sorted(p for folder in spec.submodule_search_locations for p in Path(folder).rglob("cv2*.so"))
    if len(libraries) != 1:
        return None
    with libraries[0].open("rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:
        start = data.rfind(_BUILD_INFORMATION_START)  # near the end of the file: rfind reads little of it
        end = data.find(b"\0", start) if start >= 0 else -1
        if end < 0:
            return None
        return data[start:end].decode("utf-8", errors="replace")


def opencv_build_information() -> str:
    """``cv2.getBuildInformation()``, from the module when cv2 is imported already, else from its library file."""
    cv2 = sys.modules.get("cv2")
    if cv2 is None:
        text = _library_build_information()
        if text is not None:
            return text
        import cv2
    return cv2.getBuildInformation()


def _opencv() -> dict[str, str]:
    if importlib.util.find_spec("cv2") is None:
        return {"opencv": MISSING, "libjpeg_turbo": MISSING}
    library, version = jpeg_library(opencv_build_information())
    if "libjpeg-turbo" in library:
        jpeg = version or "unknown version"
    else:  # another JPEG codec decides the bytes: say which
        jpeg = f"not used: {library} {version}".strip() if library else "not used: no JPEG codec"
    opencv = _distribution_version(*_OPENCV_DISTRIBUTIONS)
    if opencv is None:  # built from source: the module says
        import cv2

        opencv = cv2.__version__
    return {"opencv": opencv, "libjpeg_turbo": jpeg}


def _torch() -> str:
    try:
        return torch_version()
    except ModuleNotFoundError:
        return MISSING


def decisive_versions() -> dict[str, str]:
    """The versions that decide output bytes, as flat strings (a missing library: ``"not installed"``).

    Keys: ``python``, ``numpy``, ``opencv`` (the wheel's version, which also fixes the libraries bundled
    in it), ``libjpeg_turbo`` (inside OpenCV: encodes aligned faces and sample photos), ``pillow`` (decodes
    photos at ingest; its wheel bundles its own libjpeg-turbo), ``torch`` (with its build tag), and
    ``cpu_kernels``: the kernel level torch runs at (:func:`cpu_kernels`; it decides trained bytes too).
    Costs a few milliseconds: nothing is imported (cv2's build information is read from its library file).
    """
    return dict(_decisive_versions())


@functools.cache
def _decisive_versions() -> tuple[tuple[str, str], ...]:
    python = ".".join(platform.python_version_tuple()[:2])  # a patch release changes no output byte
    versions = {"python": python, "numpy": _distribution_version("numpy") or MISSING}
    versions.update(_opencv())
    versions["pillow"] = _distribution_version("pillow", "Pillow") or MISSING
    versions["torch"] = _torch()
    versions["cpu_kernels"] = cpu_kernels()
    return tuple(sorted(versions.items()))
