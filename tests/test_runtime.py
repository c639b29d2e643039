"""faceops.runtime: the versions that decide output bytes, read without importing torch or cv2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import metadata

import pytest

from faceops import runtime

OPENCV_INFO = """
General configuration for OpenCV 5.1.0 =====================================
  Media I/O:
    ZLib:                        /usr/lib64/libz.so (ver 1.2.11)
    JPEG:                        build-libjpeg-turbo (ver 3.1.2-70)
      SIMD Support Request:      YES
    PNG:                         /usr/local/lib/libpng.so (ver 1.6.59)
    JPEG 2000:                   build (ver 2.5.4)
"""


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("build-libjpeg-turbo (ver 3.1.2-70)", ("libjpeg-turbo", "3.1.2-70")),
        ("/usr/lib/x86_64-linux-gnu/libjpeg.so (ver 80)", ("/usr/lib/x86_64-linux-gnu/libjpeg.so", "80")),
        ("build-libjpeg (ver 90)", ("libjpeg", "90")),
        ("libjpeg-turbo", ("libjpeg-turbo", "")),
    ],
)
def test_jpeg_library_parses_the_jpeg_line(line: str, expected: tuple[str, str]) -> None:
    info = OPENCV_INFO.replace("build-libjpeg-turbo (ver 3.1.2-70)", line)
    assert runtime.jpeg_library(info) == expected


def test_jpeg_library_ignores_jpeg_2000_and_a_missing_line() -> None:
    assert runtime.jpeg_library(OPENCV_INFO) == ("libjpeg-turbo", "3.1.2-70")
    without = "\n".join(line for line in OPENCV_INFO.splitlines() if "JPEG:" not in line)
    assert runtime.jpeg_library(without) == ("", "")


def test_decisive_versions_agree_with_the_libraries() -> None:
    import cv2
    import numpy
    import PIL
    import torch

    versions = runtime.decisive_versions()
    assert set(versions) == {"python", "numpy", "opencv", "libjpeg_turbo", "pillow", "torch", "cpu_kernels"}
    assert all(isinstance(v, str) and v for v in versions.values())
    assert versions["numpy"] == numpy.__version__
    assert versions["torch"] == torch.__version__ == runtime.torch_version()
    assert versions["pillow"] == PIL.__version__
    assert versions["python"] == ".".join(map(str, sys.version_info[:2]))  # major.minor: a patch release changes no byte
    assert versions["opencv"].startswith(cv2.__version__)  # the wheel's version adds its build number
    library, version = runtime.jpeg_library(cv2.getBuildInformation())
    assert library == "libjpeg-turbo" and versions["libjpeg_turbo"] == version != ""
    versions["numpy"] = "changed"
    assert runtime.decisive_versions()["numpy"] == numpy.__version__  # callers get a copy


def test_build_information_read_from_the_library_file_is_cv2s() -> None:
    import cv2

    from_file = runtime._library_build_information()
    assert from_file is not None, "cv2's build information was not found in its library file"
    assert from_file.strip() == cv2.getBuildInformation().strip()


def test_reading_the_versions_imports_neither_torch_nor_cv2() -> None:
    """A stage that restores a finished run writes its metrics without paying for either import."""
    code = (
        "import json, sys; from faceops.runtime import decisive_versions; v = decisive_versions(); "
        "print(json.dumps([v, [m for m in ('torch', 'cv2', 'numpy') if m in sys.modules]]))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    versions, imported = json.loads(out)
    assert imported == []
    assert versions == runtime.decisive_versions()


def test_a_missing_library_is_recorded_as_not_installed(monkeypatch) -> None:
    real_version = metadata.version

    def version(name: str) -> str:
        if name.lower() == "pillow":
            raise metadata.PackageNotFoundError(name)
        return real_version(name)

    monkeypatch.setattr(runtime.metadata, "version", version)
    monkeypatch.setattr(runtime.importlib.util, "find_spec", lambda name, *a: None)
    runtime._decisive_versions.cache_clear()
    runtime.torch_version.cache_clear()
    try:
        versions = runtime.decisive_versions()
    finally:
        monkeypatch.undo()
        runtime._decisive_versions.cache_clear()
        runtime.torch_version.cache_clear()
    assert versions["pillow"] == versions["opencv"] == versions["libjpeg_turbo"] == versions["torch"] == "not installed"
    assert versions["numpy"] != "not installed"


def test_stage_metrics_carry_the_versions(tmp_path) -> None:
    from stages._common import write_metrics

    path = tmp_path / "metrics" / "stage.json"
    write_metrics(path, {"count": 3, "a/b": 0.5})
    written = json.loads(path.read_text())
    assert written == {"count": 3, "a/b": 0.5, **{f"env/{k}": v for k, v in runtime.decisive_versions().items()}}
    assert list(written) == sorted(written)  # stable bytes


def test_pin_cpu_kernels_sets_the_fixed_level_where_unset_and_a_users_value_wins() -> None:
    assert runtime.pin_cpu_kernels(native := {}, has_avx2=True) == {} and native == {}  # opt-in
    environ = {"MKL_CBWR": "COMPATIBLE", runtime.CPU_KERNELS_SWITCH: "avx2"}
    assert runtime.pin_cpu_kernels(environ, has_avx2=True) == {**runtime.CPU_KERNELS, "MKL_CBWR": "COMPATIBLE"}
    assert environ["ATEN_CPU_CAPABILITY"] == "avx2" and environ["ONEDNN_MAX_CPU_ISA"] == "AVX2"
    assert runtime.cpu_kernels(environ) == "ATEN_CPU_CAPABILITY=avx2 MKL_CBWR=COMPATIBLE ONEDNN_MAX_CPU_ISA=AVX2"
    # a CPU without AVX2 keeps its own kernels (forcing AVX2 there would stop on an illegal instruction)
    untouched = {runtime.CPU_KERNELS_SWITCH: "avx2"}
    assert runtime.pin_cpu_kernels(untouched, has_avx2=False) == {} and set(untouched) == {runtime.CPU_KERNELS_SWITCH}
    assert runtime.cpu_kernels({}) == "native"


def test_cpu_has_avx2_reads_the_flags_line(tmp_path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx fma avx2 avx512f\n")
    assert runtime._cpu_has_avx2(cpuinfo)
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx\n")
    assert not runtime._cpu_has_avx2(cpuinfo)
    assert not runtime._cpu_has_avx2(tmp_path / "missing")


def test_a_stage_process_runs_torch_at_the_fixed_kernel_level_when_asked() -> None:
    """With the switch, importing stages._common pins the level before torch computes; a set value wins."""
    code = (
        "import stages._common, torch; torch.ones(2) + 1; "
        "print(torch.backends.cpu.get_cpu_capability(), stages._common.decisive_versions()['cpu_kernels'])"
    )
    env = {k: v for k, v in os.environ.items() if k not in (*runtime.CPU_KERNELS, runtime.CPU_KERNELS_SWITCH)}
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, env=env).stdout
    assert out.split()[1] == "native"  # without the switch: the CPU's own kernels
    env[runtime.CPU_KERNELS_SWITCH] = "avx2"
    if not runtime._cpu_has_avx2():
        pytest.skip("this CPU has no AVX2: its own kernels are kept")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, env=env).stdout
    assert out.split(maxsplit=1) == ["AVX2", runtime.cpu_kernels(runtime.CPU_KERNELS) + "\n"]
    env["ATEN_CPU_CAPABILITY"] = "default"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, env=env).stdout
    assert out.split()[0] == "DEFAULT"
