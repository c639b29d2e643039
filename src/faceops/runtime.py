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
import platform
import re
import sys
from importlib import metadata
from pathlib import Path

__all__ = ["decisive_versions", "jpeg_library", "opencv_build_information", "torch_version"]

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
    photos at ingest; its wheel bundles its own libjpeg-turbo), ``torch`` (with its build tag). Costs a few
    milliseconds: nothing is imported (cv2's build information is read from its library file).
    """
    return dict(_decisive_versions())


@functools.cache
def _decisive_versions() -> tuple[tuple[str, str], ...]:
    versions = {"python": platform.python_version(), "numpy": _distribution_version("numpy") or MISSING}
    versions.update(_opencv())
    versions["pillow"] = _distribution_version("pillow", "Pillow") or MISSING
    versions["torch"] = _torch()
    return tuple(sorted(versions.items()))
