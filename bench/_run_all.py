"""``make bench``: run every benchmark, keep each one's output, and fail when any misses its goal.

Each ``bench/<name>.py`` (not the ``_``-prefixed helpers) runs in its own process with the current
Python; its whole output goes to ``bench/results/<name>.log`` next to the JSON figures it writes itself,
and ``bench/results/SUMMARY.md`` gets one row per bench: met, NOT MET, or not run here (exit status
:data:`_env.NOT_RUN`: no GPU, an optional data set absent), the commit, CPU and day it ran on (rows of
benches not re-run keep theirs), and its final summary line. These committed
files are where the documentation's figures come from. Exit status 1 when any bench missed its goal or
failed to run, else 0.

Usage: ``python bench/_run_all.py [name ...]`` (all benches by default; named ones replace their rows).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from _env import NOT_RUN, environment

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"


def _verdict(code: int) -> str:
    return {0: "met", NOT_RUN: "not run here"}.get(code, "NOT MET" if code == 1 else f"FAILED (exit {code})")


def _summary(output: str) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    marked = [line for line in lines if line.startswith("SUMMARY")]
    return (marked or lines or ["(no output)"])[-1]


def _previous_rows() -> dict[str, str]:
    """The rows of the existing SUMMARY.md, by bench file name."""
    path = RESULTS / "SUMMARY.md"
    lines = path.read_text().splitlines() if path.is_file() else []
    return {line.split("`")[1]: line for line in lines if line.startswith("| `")}


def main(names: list[str]) -> int:
    scripts = [BENCH / f"{n}.py" for n in names] or sorted(p for p in BENCH.glob("*.py") if not p.name.startswith("_"))
    RESULTS.mkdir(exist_ok=True)
    rows, failed = {}, []
    machine = environment()
    ran_on = f"{machine['commit'][:7]}, {machine['cpu_count']}x {machine['cpu_model']}, {time.strftime('%Y-%m-%d')}"
    for script in scripts:
        print(f"== {script.name}", flush=True)
        start = time.monotonic()
        done = subprocess.run([sys.executable, str(script)], cwd=BENCH, capture_output=True, text=True,
                              env={**os.environ, "PYTHONUNBUFFERED": "1"})  # fmt: skip
        seconds = time.monotonic() - start
        output = done.stdout + done.stderr
        (RESULTS / f"{script.stem}.log").write_text(output)
        summary = _summary(output).replace("|", "/")
        print(f"   {_verdict(done.returncode)} in {seconds:.0f} s: {summary}", flush=True)
        rows[script.name] = f"| `{script.name}` | {_verdict(done.returncode)} | {seconds:.0f} | {ran_on} | {summary} |"
        if done.returncode not in (0, NOT_RUN):
            failed.append(script.name)
    if names:  # read now, not at the start: a bench chain run beside this one may have written its rows meanwhile
        rows = {**_previous_rows(), **rows}
    header = [
        "# Benchmark results (`make bench`)", "",
        f"Written {time.strftime('%Y-%m-%d %H:%M')}; each row says the commit and machine its bench ran on.",
        "Each bench's full output is in `<name>.log` beside this file, its figures (with the machine's description)"
        " in `<name>.json`.", "",
        "| bench | goal | seconds | ran on | summary |", "|---|---|---|---|---|",
    ]  # fmt: skip
    (RESULTS / "SUMMARY.md").write_text("\n".join(header + [rows[name] for name in sorted(rows)]) + "\n")
    if failed:
        print(f"goal missed or bench failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
