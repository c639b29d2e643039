"""A killed `faceops run` leaves no process behind, and a rerun ends byte-identical to an uninterrupted run.

The real CLI runs in its own session on a small workspace (sample -> ingest -> keypoints -> align -> shard)
and is SIGKILLed at a named point: while `align` writes its staging folder, while DVC commits `align`'s
output (the stage command has exited, DVC has not yet written dvc.lock), and while `shard` writes. Each
point is killed two ways: the top process only (as an OOM killer or `kill -9 PID` does) and its whole
process group (a closed terminal, Ctrl-C's SIGKILL cousin). Every test proves its kill landed where it
says, checks that no process of the killed run is alive a few seconds later, reruns, and compares every
output byte and dvc.lock with an uninterrupted run of the same params. A seeded chaos run kills at random
moments and does the same after each kill: 4 kills in `make test` (CI's time budget), any number with
``FACEOPS_CHAOS_KILLS=N`` (20 kills take about 5 minutes on 2 cores).

Each killed run uses an `align.jpeg_quality` it has not used before, with DVC's run cache emptied, so
`align` and `shard` really run (DVC would otherwise restore a seen combination from its run cache).
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest
import yaml

from flows.workspace import stale_stages
from tiny_workspace import copy_project, tiny_params

pytestmark = pytest.mark.slow

#: More faces than the other pipeline tests: align's and shard's writing must last long enough to land in.
SAMPLE = {"identities": 12, "images_per_identity": 8}
QUALITIES = (90, 93)  # the two params whose uninterrupted outputs are the references
CHAOS_KILLS = int(os.environ.get("FACEOPS_CHAOS_KILLS", "4"))
CHAOS_SEED = 20
OUTPUTS = ("data", "models", "metrics")


class Workspace:
    """A git + DVC workspace, the env its CLI runs with, and the reference digests per jpeg quality."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root, self.env = root, env
        self.references: dict[int, dict[str, str]] = {}
        self._fresh = iter(range(60, 90))

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run([sys.executable, "-m", "flows.cli", *args], cwd=self.root, env=self.env,
                                capture_output=True, text=True, timeout=600)  # fmt: skip
        if check:
            assert result.returncode == 0, f"faceops {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
        return result

    def start(self) -> subprocess.Popen:
        """`faceops run --stage shard` in its own session (its PID is its process group's ID)."""
        return subprocess.Popen([sys.executable, "-m", "flows.cli", "run", "--stage", "shard"], cwd=self.root,
                                env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)  # fmt: skip

    def set_quality(self, quality: int) -> None:
        params = yaml.safe_load((self.root / "params.yaml").read_text())
        params["align"]["jpeg_quality"] = quality
        (self.root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        shutil.rmtree(self.root / ".dvc" / "cache" / "runs", ignore_errors=True)  # no run-cache restore

    def quality(self) -> int:
        return yaml.safe_load((self.root / "params.yaml").read_text())["align"]["jpeg_quality"]

    def fresh_quality(self) -> int:
        """A quality never used here: `align` must compute (not even its per-image cache has it)."""
        return next(self._fresh)

    def digests(self) -> dict[str, str]:
        files = [p for name in OUTPUTS for p in sorted((self.root / name).rglob("*")) if p.is_file()]
        found = {str(p.relative_to(self.root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}
        found["dvc.lock"] = hashlib.sha256((self.root / "dvc.lock").read_bytes()).hexdigest()
        return found

    def check_matches_reference(self) -> None:
        """After a rerun: every output and dvc.lock equal an uninterrupted run's, and nothing is stale."""
        now, expected = self.digests(), self.reference(self.quality())
        differ = sorted(k for k in now.keys() | expected.keys() if now.get(k) != expected.get(k))
        assert not differ, f"{len(differ)} files differ from an uninterrupted run: {differ[:10]}"
        leftovers = [p.name for p in (self.root / "data").iterdir() if p.name.startswith(".") and p.name != ".gitignore"]
        assert not leftovers, leftovers
        assert stale_stages(self.root, ["shard"]) == {}

    def reference(self, quality: int) -> dict[str, str]:
        if quality not in self.references:
            raise AssertionError(f"no uninterrupted run at quality {quality}")
        return self.references[quality]


def _family(pid: int) -> dict[int, float]:
    """{pid: start time} of a process and all its descendants (forkserver children included)."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return {}
    found = {}
    for proc in procs:
        try:
            found[proc.pid] = proc.create_time()
        except psutil.NoSuchProcess:
            pass
    return found


def _alive(family: dict[int, float]) -> list[str]:
    alive = []
    for pid, started in family.items():
        try:
            proc = psutil.Process(pid)
            if proc.create_time() == started and proc.status() != psutil.STATUS_ZOMBIE:
                alive.append(f"{pid} {' '.join(proc.cmdline())[:80]}")
        except psutil.NoSuchProcess:
            pass
    return alive


def _kill_when(ws: Workspace, point: Callable[[dict[int, float]], bool], how: str, seconds: float = 120) -> dict:
    """Start a run, SIGKILL it (``how``: top or group) as soon as ``point`` holds; its processes then."""
    proc = ws.start()
    family: dict[int, float] = {}
    deadline = time.monotonic() + seconds
    try:
        while True:
            family.update(_family(proc.pid))
            if point(family):
                break
            assert proc.poll() is None, "the run ended before the kill point was reached"
            assert time.monotonic() < deadline, "the kill point was never reached"
            time.sleep(0.002)
        os.kill(proc.pid, signal.SIGKILL) if how == "top" else os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return family


def _no_survivors(family: dict[int, float], seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while _alive(family) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(family), f"processes of the killed run outlived it: {_alive(family)}"


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Iterator[Workspace]:
    from flows.prefect_server import prefect_server
    from flows.workspace import configure_environment

    root = tmp_path_factory.mktemp("crash")
    params = tiny_params(sample=SAMPLE)
    params["align"]["jpeg_quality"] = QUALITIES[0]
    copy_project(root, params)
    env = {**os.environ, "PREFECT_HOME": str(root / ".faceops" / "prefect"), "OMP_NUM_THREADS": "1", "COLUMNS": "400"}
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env["PATH"]
    for cmd in (["git", "init", "-q"], [sys.executable, "-m", "dvc", "init", "-q"],
                [sys.executable, "-m", "dvc", "config", "core.analytics", "false"]):  # fmt: skip
        subprocess.run(cmd, cwd=root, env=env, check=True)
    saved = dict(os.environ)
    os.environ.update(env)
    configure_environment(root)
    try:
        with prefect_server(root, "run") as api_url:  # one server for the module: runs skip its ~7 s start
            env["PREFECT_API_URL"] = api_url
            workspace = Workspace(root, env)
            for quality in QUALITIES:
                workspace.set_quality(quality)
                workspace.cli("run", "--stage", "shard")
                workspace.references[quality] = workspace.digests()
            yield workspace
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _switch(ws: Workspace) -> tuple[int, dict[str, str]]:
    """Move to the other reference quality; (new quality, digests of the state the killed run starts from)."""
    before = ws.digests()
    ws.set_quality(QUALITIES[1] if ws.quality() == QUALITIES[0] else QUALITIES[0])
    return ws.quality(), before


def _staging(ws: Workspace, name: str) -> list[Path]:
    return [p for p in (ws.root / "data").glob(f".tmp-{name}-*") if "-old-" not in p.name]


def _running(family: dict[int, float], module: str) -> bool:
    return any(module in " ".join(cmd) for cmd in (_cmdline(pid) for pid in family))


def _dvc_of(stage_pid: int) -> int:
    """The DVC process that runs a stage command (its parent, or the parent of the shell between them)."""
    parent = psutil.Process(stage_pid).parent()
    if parent is not None and "stages." not in " ".join(parent.cmdline()) and parent.name() in ("sh", "bash", "dash"):
        parent = parent.parent()
    return parent.pid


def _listens(pid: int) -> bool:
    try:
        return any(c.status == psutil.CONN_LISTEN for c in psutil.Process(pid).net_connections(kind="tcp"))
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def _cmdline(pid: int) -> list[str]:
    try:
        return psutil.Process(pid).cmdline()
    except psutil.NoSuchProcess:
        return []


@pytest.mark.parametrize("how", ["top", "group"])
def test_kill_while_align_writes(ws: Workspace, how: str) -> None:
    quality, before = _switch(ws)
    seen: dict[str, object] = {}

    def writing(_family) -> bool:
        for folder in _staging(ws, "aligned"):
            faces = list((folder / "faces").glob("*.jpg")) if (folder / "faces").is_dir() else []
            if faces:
                seen.update(staging=folder.name, faces=len(faces))
                return True
        return False

    family = _kill_when(ws, writing, how)
    # landed mid-write: the staging folder had faces, the final output was not there yet (DVC removes a
    # stage's outputs before running it) or still the old one
    assert seen["faces"] >= 1
    assert ws.digests().get("data/aligned/manifest.jsonl") in (None, before["data/aligned/manifest.jsonl"])
    _no_survivors(family)
    status = ws.cli("status").stdout
    assert "interrupted" in status and "align" in status, status
    ws.cli("run", "--stage", "shard")
    assert ws.quality() == quality
    ws.check_matches_reference()


@pytest.mark.parametrize("how", ["top", "group"])
def test_kill_while_dvc_commits_aligns_output(ws: Workspace, how: str) -> None:
    """The stage command has exited and written its output; DVC is hashing, caching, writing dvc.lock."""
    for _attempt in range(5):
        quality, before = _switch(ws)
        dvc: list[int] = []

        def committing(family) -> bool:
            stage = [pid for pid in family if "stages.align" in " ".join(_cmdline(pid))]
            if stage and not dvc:
                dvc.append(_dvc_of(stage[0]))
            return bool(dvc) and not stage and psutil.pid_exists(dvc[0])

        family = _kill_when(ws, committing, how)
        new_output = ws.digests()["data/aligned/manifest.jsonl"] == ws.reference(quality)["data/aligned/manifest.jsonl"]
        lock_written = ws.digests()["dvc.lock"] != before["dvc.lock"]
        _no_survivors(family)
        if new_output and not lock_written:
            break  # the kill landed between the stage's end and DVC's dvc.lock write
        ws.cli("run", "--stage", "shard")  # too late (or early) this time: settle, try again
    else:
        pytest.fail("in 5 attempts no kill landed between align's end and DVC's dvc.lock write")
    ws.cli("run", "--stage", "shard")
    ws.check_matches_reference()


@pytest.mark.parametrize("how", ["top", "group"])
def test_kill_while_shard_writes(ws: Workspace, how: str) -> None:
    _switch(ws)
    seen = {}

    def writing(_family) -> bool:
        found = _staging(ws, "shards")
        if found:
            seen["staging"] = found[0].name
        return bool(found)

    family = _kill_when(ws, writing, how)
    assert seen["staging"].startswith(".tmp-shards-")
    _no_survivors(family)
    ws.cli("run", "--stage", "shard")
    ws.check_matches_reference()


def test_the_runs_own_prefect_server_dies_with_it(ws: Workspace) -> None:
    """Without PREFECT_API_URL the run starts its own server; a kill of the top process takes it down too."""
    _switch(ws)
    own = {k: v for k, v in ws.env.items() if k != "PREFECT_API_URL"}
    saved, ws.env = ws.env, own
    try:
        servers: set[int] = set()

        def aligning(family) -> bool:
            servers.update(pid for pid in family if _listens(pid))  # the API server: the one listening on TCP
            return _running(family, "stages.align")

        family = _kill_when(ws, aligning, "top", seconds=180)
        assert servers, "the run did not start its own Prefect server"
        _no_survivors(family)
    finally:
        ws.env = saved
    ws.cli("run", "--stage", "shard")
    ws.check_matches_reference()


def test_an_incomplete_output_is_stale_and_rebuilt(ws: Workspace) -> None:
    """What the issue saw: dvc.lock recorded a partial data/aligned. Status says so; a run rebuilds it."""
    faces = sorted((ws.root / "data/aligned/faces").glob("*.jpg"))
    for face in faces[:3]:
        face.unlink()
    reasons = stale_stages(ws.root, ["shard"])["align"]
    assert {"incomplete outs": {"data/aligned/manifest.jsonl": f"lists {len(faces)} files, 3 missing ("
                                + ", ".join(f"faces/{f.name}" for f in faces[:3]) + ")"}} in reasons, reasons
    status = ws.cli("status").stdout
    assert f"incomplete outs: data/aligned/manifest.jsonl (lists {len(faces)} files, 3 missing" in status, status
    ws.cli("run", "--stage", "shard")
    ws.check_matches_reference()


@pytest.mark.parametrize("wait", [0, 600])
def test_two_runs_started_together_never_both_run(ws: Workspace, wait: int) -> None:
    params = yaml.safe_load((ws.root / "params.yaml").read_text())
    params["pipeline"]["lock_wait_seconds"] = wait
    (ws.root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    _switch(ws)
    first, second = ws.start(), ws.start()
    for proc in (first, second):
        proc.wait(600)
    codes = sorted([first.returncode, second.returncode])
    assert codes == ([0, 0] if wait else [0, 2]), codes  # 2: "another faceops run holds ..."
    ws.check_matches_reference()


def test_chaos_kills_at_random_moments_end_byte_identical(ws: Workspace) -> None:
    """CHAOS_KILLS kills at seeded random moments (seed CHAOS_SEED), each followed by a rerun.

    The moment is drawn uniformly over the stages' part of a run: from the first ``dvc repro`` (the run
    writes its journal) to the end an uninterrupted run takes; kills before that only hit Python imports.
    """
    rng = random.Random(CHAOS_SEED)
    _switch(ws)
    proc, started = ws.start(), time.monotonic()
    while not (ws.root / ".faceops" / "journal.json").is_file():
        assert proc.poll() is None, "the calibration run ended without starting a stage"
        time.sleep(0.005)
    first_stage = time.monotonic()
    assert proc.wait(600) == 0
    window = time.monotonic() - first_stage  # the stages' part of a run that recomputes align and shard
    print(f"chaos calibration: stages start {first_stage - started:.1f} s into a run and take {window:.1f} s")
    points: dict[str, int] = {}
    for kill in range(CHAOS_KILLS):
        _switch(ws)
        at, how = rng.uniform(0.0, window), rng.choice(["top", "group"])
        proc = ws.start()
        family: dict[int, float] = {}
        seen: set[str] = set()
        while not (ws.root / ".faceops" / "journal.json").is_file() and proc.poll() is None:
            time.sleep(0.005)
        deadline = time.monotonic() + at
        while time.monotonic() < deadline and proc.poll() is None:
            family.update(_family(proc.pid))
            seen |= {stage for stage in ("align", "shard") if _running(family, f"stages.{stage}")}
            time.sleep(0.005)
        family.update(_family(proc.pid))
        where = _where(ws, family, seen) if proc.poll() is None else "after the run ended"
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL) if how == "top" else os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
        points[where] = points.get(where, 0) + 1
        _no_survivors(family)
        ws.cli("run", "--stage", "shard")
        ws.check_matches_reference()
        print(f"chaos kill {kill + 1}/{CHAOS_KILLS} ({how}) {at:.2f} s into the stages, {where}: rerun byte-identical")
    tally = ", ".join(f"{n} {p}" for p, n in sorted(points.items(), key=lambda item: -item[1]))
    print(f"chaos seed {CHAOS_SEED}: {CHAOS_KILLS} kills ({tally}); {CHAOS_KILLS} reruns, all byte-identical")


def _where(ws: Workspace, family: dict[int, float], seen: set[str]) -> str:
    """Which part of the run a kill lands in, for the chaos run's tally."""
    from flows.workspace import interrupted_stage

    stage = interrupted_stage(ws.root)  # the journal names the stage whose dvc repro is in flight
    if stage is None:
        return "between stages"
    if _staging(ws, {"align": "aligned", "shard": "shards"}.get(stage, stage)):
        return f"{stage}: writing its output"
    if _running(family, f"stages.{stage}"):
        return f"{stage}: computing"
    return f"{stage}: DVC committing" if stage in seen else f"{stage}: DVC starting (or restoring)"
