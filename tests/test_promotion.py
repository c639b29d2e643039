"""Promotion: the pure rule both ways (max/min, margin, missing metric), tags in a real repository, the CLI.

Metric values are written by the test-double pipeline of test_versioning (stub.yaml -> metrics/evaluate.json),
so "better" and "worse" evaluations are chosen by the test, never trained.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import pytest
import typer
import yaml
from test_versioning import V1, V2, git, make_workspace, run_pipeline  # shared test-double workspace
from typer.testing import CliRunner

from faceops.config.ops import PromotionParams
from flows import promotion, runlog
from flows.cli_versions import register
from flows.promotion import PromotionError, decide_promotion, promote_if_better, promoted_model, train_from_promoted
from flows.versioning import record_version

ACC = "sample/verif/acc"
MAE = "sample/age/mae"


@pytest.fixture(scope="module", autouse=True)
def git_identity():
    with pytest.MonkeyPatch.context() as mp:
        for who in ("AUTHOR", "COMMITTER"):
            mp.setenv(f"GIT_{who}_NAME", "Test")
            mp.setenv(f"GIT_{who}_EMAIL", "test@example.com")
        yield


# ------------------------------------------------------------------------------------- pure rule


def test_first_model_is_promoted():
    decision = decide_promotion(V1, None, PromotionParams())
    assert decision.promote and decision.new_tag == "model@v1" and decision.promoted_value is None


@pytest.mark.parametrize(
    ("candidate", "margin", "promote"),
    [(0.9, 0.0, True), (0.85, 0.049, True), (0.85, 0.05, False), (0.8, 0.0, False), (0.7, 0.0, False)],
)
def test_max_mode_needs_a_gain_above_the_margin(candidate, margin, promote):
    cfg = PromotionParams(metric=ACC, mode="max", margin=margin)
    decision = decide_promotion({**V1, ACC: candidate}, V1, cfg, promoted_tag="model@v3")
    assert decision.promote is promote
    assert decision.new_tag == ("model@v4" if promote else None)
    assert decision.candidate_value == candidate and decision.promoted_value == V1[ACC]


def test_min_mode_prefers_lower_values():
    cfg = PromotionParams(metric=MAE, mode="min", margin=0.5)
    assert decide_promotion(V2, V1, cfg, promoted_tag="model@v1").promote  # 5.0 < 6.0 - 0.5
    assert not decide_promotion(V1, V2, cfg, promoted_tag="model@v1").promote  # higher error
    assert not decide_promotion({**V1, MAE: 5.6}, V1, cfg, promoted_tag="model@v1").promote  # within margin


def test_missing_metric_names_the_available_keys():
    expected = r"'sample/verif/tar'.*available: \['sample/age/mae', 'sample/verif/acc'\]"
    with pytest.raises(PromotionError, match=expected):
        decide_promotion(V1, None, PromotionParams(metric="sample/verif/tar"))


def test_nan_candidate_is_never_promoted():
    assert not decide_promotion({ACC: float("nan")}, None, PromotionParams()).promote


def test_markdown_shows_both_metric_sets_side_by_side():
    text = decide_promotion(V2, V1, PromotionParams(), promoted_tag="model@v1").markdown()
    assert "promoted as model@v2" in text and "| metric | candidate | model@v1 | difference |" in text
    assert f"| **{ACC}** | 0.9 | 0.8 | +0.1 |" in text
    assert f"| {MAE} | 5 | 6 | -1 |" in text
    assert text.index(ACC) < text.index(MAE)  # the promotion metric comes first


# ------------------------------------------------------------------------------- in a repository


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    root = make_workspace(tmp_path_factory.mktemp("template") / "ws")
    run_pipeline(root, "one\n", V1)
    record_version(root, "first", push=False)
    return root


@pytest.fixture
def ws(template, tmp_path):
    copy = tmp_path / "ws"
    shutil.copytree(template, copy, symlinks=True)
    return copy


def _new_version(root, acc: float, data: str) -> None:
    run_pipeline(root, data, {**V1, ACC: acc})
    assert record_version(root, f"acc {acc}", push=False) is not None


def test_promotion_both_ways_with_tags(ws, caplog):
    cfg = PromotionParams(metric=ACC, mode="max", margin=0.02)
    with caplog.at_level(logging.INFO, logger="faceops.promotion"):
        assert promote_if_better(ws, cfg).new_tag == "model@v1"
    assert "promoted as model@v1" in caplog.text
    _new_version(ws, 0.9, "two\n")
    decision = promote_if_better(ws, cfg)
    assert decision.promote and decision.new_tag == "model@v2" and decision.promoted_tag == "model@v1"
    assert promoted_model(ws) == ("model@v2", git(ws, "rev-parse", "HEAD").strip())
    assert "Model promotion: promoted as model@v2" in git(ws, "tag", "-n99", "-l", "model@v2")
    _new_version(ws, 0.91, "three\n")  # better, but within the margin
    assert not promote_if_better(ws, cfg).promote
    _new_version(ws, 0.5, "four\n")  # worse
    decision = promote_if_better(ws, cfg)
    assert not decision.promote and decision.promoted_value == 0.9 and decision.candidate_value == 0.5
    assert git(ws, "tag", "-l", "model@*").split() == ["model@v1", "model@v2"]
    assert not promote_if_better(ws, PromotionParams(metric=ACC, margin=0.0)).promote  # still worse than v2


def test_head_already_promoted_is_not_tagged_again(ws):
    assert promote_if_better(ws, PromotionParams()).promote
    again = promote_if_better(ws, PromotionParams(metric=MAE, mode="min"))
    assert not again.promote and git(ws, "tag", "-l").split() == ["model@v1"]


def test_refuses_uncommitted_metrics(ws):
    (ws / "metrics" / "evaluate.json").write_text(json.dumps({ACC: 0.99}))
    with pytest.raises(PromotionError, match=r"metrics/evaluate\.json has uncommitted changes"):
        promote_if_better(ws, PromotionParams())
    assert git(ws, "tag", "-l") == ""


def test_artifact_and_run_logger_inside_a_prefect_run(ws, monkeypatch):
    import prefect
    import prefect.artifacts

    artifacts, lines = [], []
    monkeypatch.setattr(promotion, "in_prefect_run", lambda: True)
    monkeypatch.setattr(runlog, "in_prefect_run", lambda: True)
    monkeypatch.setattr(prefect.artifacts, "create_markdown_artifact", lambda **kw: artifacts.append(kw))
    logger = logging.getLogger("test-run-logger")
    monkeypatch.setattr(logger, "info", lambda fmt, *args: lines.append(fmt % args))
    monkeypatch.setattr(prefect, "get_run_logger", lambda: logger)
    decision = promote_if_better(ws, PromotionParams())
    assert artifacts[0]["key"] == "faceops-promotion" and artifacts[0]["markdown"] == decision.markdown()
    assert lines == [decision.summary()]


# ------------------------------------------------------------------------------------------ CLI


@pytest.fixture
def cli(ws):
    """A small app with the version commands registered, run in-process; the environment is restored after."""
    app = typer.Typer()
    register(app)
    saved = dict(os.environ)
    yield lambda *args: CliRunner().invoke(app, [*args, "--root", str(ws)])
    os.environ.clear()
    os.environ.update(saved)


def test_history_promote_checkout_commands(ws, cli):
    promoted = cli("promote")
    assert promoted.exit_code == 0 and "promoted as model@v1" in promoted.output, promoted.output
    _new_version(ws, 0.6, "two\n")
    refused = cli("promote")
    assert refused.exit_code == 0 and "not promoted" in refused.output
    history = cli("history")
    assert history.exit_code == 0, history.output
    rows = [line for line in history.output.splitlines() if line.startswith("│ v")]
    assert rows[0].split("│")[1].strip() == "v2" and "0.6" in rows[0]
    assert "model@v1" in rows[1] and "0.8" in rows[1]
    header = next(line for line in history.output.splitlines() if "version" in line)
    assert header.index("verif/acc") < header.index("age/mae") and "metrics under 'sample/'" in history.output
    back = cli("checkout", "v1")
    assert back.exit_code == 0 and "restored data and models of v1" in back.output, back.output
    (ws / "params.yaml").write_text(yaml.safe_dump({"ops": {"promotion": {"metric": MAE}}}))
    dirty = cli("checkout", "2")
    assert dirty.exit_code == 2 and "uncommitted changes" in dirty.output
    unknown = cli("checkout", "v7", "--force")
    assert unknown.exit_code == 2 and "unknown version 'v7'" in unknown.output


# ------------------------------------------------------------------------- fine-tuning the promoted model


def test_train_from_promoted_points_params_at_the_newest_tag(ws):
    before = (ws / "params.yaml").read_text()
    assert train_from_promoted(ws) is None and (ws / "params.yaml").read_text() == before  # nothing promoted
    assert promote_if_better(ws, PromotionParams()).new_tag == "model@v1"
    _new_version(ws, 0.9, "two\n")
    assert promote_if_better(ws, PromotionParams()).new_tag == "model@v2"
    assert train_from_promoted(ws) == "model@v2"
    raw = yaml.safe_load((ws / "params.yaml").read_text())
    assert raw["train"]["init"] == "model@v2" and raw["ops"]["promotion"]["metric"] == ACC  # other keys kept


def test_promoted_init_file_reads_the_tagged_model_not_the_working_tree(ws, tmp_path, monkeypatch):
    from stages.train import promoted_init_file

    assert promote_if_better(ws, PromotionParams()).new_tag == "model@v1"  # weights.txt = "one\n"
    _new_version(ws, 0.5, "two\n")  # the working tree now holds the model of "two"
    monkeypatch.chdir(ws)  # DVC runs stage commands from the repository root
    got = promoted_init_file("model@v1", Path("models/model/weights.txt"), tmp_path / "scratch")
    assert got.read_text() == "one\n" and (ws / "models/model/weights.txt").read_text() == "two\n"
    with pytest.raises(SystemExit, match=r"train.init 'model@v7'.*git tag -l"):
        promoted_init_file("model@v7", Path("models/model/weights.txt"), tmp_path / "scratch")
