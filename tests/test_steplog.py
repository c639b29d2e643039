"""faceops.io.steplog: per-step metrics in the files DVC plots read (dvclive's layout, dvclive's bytes)."""

from __future__ import annotations

import json

from faceops.io.steplog import METRICS_JSON, PLOTS_DIR, StepLog


def test_steps_append_rows_and_the_summary_keeps_the_latest_values(tmp_path):
    folder = tmp_path / "live"
    (folder / "stale").mkdir(parents=True)
    (folder / "stale" / "old.tsv").write_text("from another run\n")
    log = StepLog(folder)
    log.log(1, {"grad_norm/backbone": 2.5, "loss/total": 7.0, "lr/heads": 0.001})
    log.log(2, {"grad_norm/backbone": 1.5, "loss/total": float("nan"), "lr/heads": 0.0005})
    assert not (folder / "stale").exists()  # a log describes one run
    assert (folder / PLOTS_DIR / "loss" / "total.tsv").read_text() == "step\ttotal\n1\t7.0\n2\tnan\n"
    assert (folder / PLOTS_DIR / "lr" / "heads.tsv").read_text() == "step\theads\n1\t0.001\n2\t0.0005\n"
    text = (folder / METRICS_JSON).read_text()
    assert json.loads(text) == {"grad_norm": {"backbone": 1.5}, "loss": {"total": "nan"}, "lr": {"heads": 0.0005},
                                "step": 2}  # fmt: skip
    assert text.startswith('{\n    "grad_norm": {\n        "backbone": 1.5\n    },') and text.endswith("}\n")


def test_a_key_first_logged_later_comes_after_step_as_dvclive_orders_it(tmp_path):
    log = StepLog(tmp_path / "live")
    log.log(1, {"loss/total": 1.0})
    log.log(2, {"loss/total": 0.5, "verif/acc": 0.9})
    assert list(json.loads((tmp_path / "live" / METRICS_JSON).read_text())) == ["loss", "step", "verif"]


def test_summary_only_values_have_no_plot_and_no_step(tmp_path):
    StepLog(tmp_path / "live").log_summary({"enabled": 0})
    assert (tmp_path / "live" / METRICS_JSON).read_text() == '{\n    "enabled": 0\n}\n'
    assert not (tmp_path / "live" / PLOTS_DIR).exists()
