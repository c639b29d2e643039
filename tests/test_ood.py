"""faceops.ood: AUROC identities, the OOD scores' ordering, Gscore's label-free interface and its degenerate
cases, Gbench-mini's assembly, the monitor's verdicts and history."""

from __future__ import annotations

import inspect
import itertools

import numpy as np
import pytest
from scipy.stats import mannwhitneyu

from faceops.eval.evaluate import Predictions
from faceops.ood import (
    GSCORE_METHODS,
    ScoreInputs,
    auroc,
    energy,
    fit_linear,
    fit_mixture,
    fit_score,
    gscore,
    max_logit,
    meta_scores,
    msp,
    ood_share,
)
from faceops.ood.collect import CALIBRATION, FIT, SampleRoles
from faceops.ood.gbench import evaluate_gbench, gbench_images, gscore_estimators, mix_sets
from faceops.ood.history import monitor_history
from faceops.ood.monitor import MonitorRule, assess_incoming, monitor_metrics

RNG = np.random.default_rng(0)


# ------------------------------------------------------------------------------------------------ AUROC


@pytest.mark.parametrize("seed", range(3))
def test_auroc_is_the_mann_whitney_statistic_with_ties_as_half(seed):
    rng = np.random.default_rng(seed)
    pos, neg = rng.integers(0, 6, 40), rng.integers(0, 5, 30)  # small integers: many ties
    pairs = [1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg)]
    assert auroc(pos, neg) == pytest.approx(np.mean(pairs), abs=1e-12)
    u = mannwhitneyu(pos, neg, alternative="two-sided", method="asymptotic").statistic
    assert auroc(pos, neg) == pytest.approx(u / (len(pos) * len(neg)), abs=1e-12)


def test_auroc_bounds_and_errors():
    assert auroc([2, 3], [0, 1]) == 1.0 and auroc([0, 1], [2, 3]) == 0.0 and auroc([1, 1], [1]) == 0.5
    with pytest.raises(ValueError, match="non-empty"):
        auroc([], [1.0])
    with pytest.raises(ValueError, match="non-finite"):
        auroc([np.nan], [1.0])


def test_linear_fit_and_meta_scores_on_an_exact_line():
    x = np.linspace(0, 1, 20)
    line = fit_linear(x, 0.5 * x + 0.4)
    assert (line.slope, line.intercept) == pytest.approx((0.5, 0.4))
    scores = meta_scores(line.predict(x), 0.5 * x + 0.4, x)
    assert scores["rmse"] == pytest.approx(0.0, abs=1e-12) and scores["spearman"] == pytest.approx(1.0)
    assert fit_linear(np.ones(3), [1.0, 2.0, 3.0]).slope == 0.0  # constant estimate: the mean, no slope


# ------------------------------------------------------------------------------------------------ scores


def test_logit_scores_order_and_bounds():
    logits = np.array([[5.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    assert msp(logits)[0] > msp(logits)[1] == pytest.approx(1 / 3)
    assert np.all(energy(logits) >= max_logit(logits))  # logsumexp >= max
    assert energy(logits)[1] == pytest.approx(1.0 + np.log(3))
    with pytest.raises(ValueError, match=r"\[N, C\]"):
        msp(np.ones(3))


def test_feature_scores_rank_points_near_the_reference_above_far_ones():
    centres = np.eye(8)[:4] * 5
    train = np.concatenate([c + RNG.normal(0, 0.3, (30, 8)) for c in centres])
    labels = np.repeat(np.arange(4), 30)
    near = centres + RNG.normal(0, 0.3, (4, 8))
    far = RNG.normal(0, 0.3, (4, 8)) + np.eye(8)[4:] * 5  # directions no class uses
    for name in ("knn", "mahalanobis"):
        score = fit_score(name, ScoreInputs(features=train), labels, k=5)
        assert score(ScoreInputs(features=near)).min() > score(ScoreInputs(features=far)).max(), name
    with pytest.raises(ValueError, match="unknown OOD score"):
        fit_score("nope")
    with pytest.raises(ValueError, match="reads logits"):
        fit_score("energy")(ScoreInputs(features=train))


# ------------------------------------------------------------------------------------------------ Gscore


def test_gscore_takes_no_labels():
    params = list(inspect.signature(gscore).parameters)
    assert params == ["scores", "reference_scores", "method", "tpr"]
    with pytest.raises(TypeError):
        gscore(np.zeros(10), labels=np.zeros(10, bool))  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="unknown gscore method"):
        gscore(np.zeros(10), method="oracle")  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", range(5))
def test_identical_distributions_give_mixture_gscore_one_half(seed):
    rng = np.random.default_rng(seed)
    same = np.concatenate([rng.normal(0, 1, 300), rng.normal(0, 1, 300)])  # "ID" and "OOD" drawn alike
    assert gscore(same, method="mixture") == pytest.approx(0.5, abs=0.02)
    assert gscore(same, rng.normal(0, 1, 300), method="pseudo_label") == pytest.approx(0.5, abs=0.05)
    assert gscore(same, rng.normal(0, 1, 300), method="threshold") == pytest.approx(0.05, abs=0.03)


def test_separated_populations_give_high_gscores_and_the_right_share():
    ref = RNG.normal(5, 1, 400)
    incoming = np.concatenate([RNG.normal(5, 1, 300), RNG.normal(-3, 1, 100)])  # 25% OOD, far below
    for method in GSCORE_METHODS:
        value = gscore(incoming, ref, method)
        assert value > (0.2 if method == "threshold" else 0.95), (method, value)
    assert ood_share(incoming, ref) == pytest.approx(0.25, abs=0.04)
    assert ood_share(RNG.normal(5, 1, 400), ref) < 0.05
    with pytest.raises(ValueError, match="needs reference_scores"):
        gscore(incoming, method="threshold")


def test_mixture_recovers_two_components_and_keeps_one_for_one():
    x = np.concatenate([RNG.normal(-2, 0.5, 700), RNG.normal(3, 1.0, 300)])
    fit = fit_mixture(x)
    assert fit.components == 2
    assert fit.means == pytest.approx((-2, 3), abs=0.15) and fit.weights == pytest.approx((0.7, 0.3), abs=0.03)
    assert fit.low_posterior(np.array([-2.0, 3.0])) == pytest.approx([1.0, 0.0], abs=1e-3)
    assert fit_mixture(RNG.normal(0, 1, 1000)).components == 1


# ------------------------------------------------------------------------------------------------ Gbench-mini


def test_mix_sets_draw_the_requested_shares_and_the_fit_recovers_a_known_relation():
    id_scores = RNG.normal(0, 1, 400)
    pools = {f"shift@{d}": RNG.normal(-d, 1, 400) for d in (0.25, 0.5, 1.0, 2.0, 3.0)}
    sets = mix_sets(id_scores, pools, shares=(0.2, 0.5, 0.8), size=100, seed=0)
    assert len(sets) == 15 and {s.ood_share for s in sets} == {0.2, 0.5, 0.8}
    assert all(len(s.scores) == 100 and s.is_ood.sum() == round(100 * s.ood_share) for s in sets)
    deeper = [s.true_auroc() for s in sets if s.ood_share == 0.5]
    assert deeper == sorted(deeper)  # pools sorted by name: a larger shift separates better
    result = evaluate_gbench(sets, RNG.normal(0, 1, 400), estimators=gscore_estimators(), seed=0)
    assert set(result) == {*GSCORE_METHODS, "constant"}
    assert all(r["train_sets"] + r["test_sets"] == 15 for r in result.values())
    assert result["threshold"]["spearman"] > 0.5 and result["constant"]["spearman"] == 0.0
    with pytest.raises(ValueError, match="needs 80 shifted"):
        mix_sets(id_scores, {"small": np.zeros(10)}, shares=(0.8,), size=100, seed=0)


# ------------------------------------------------------------------------------------------------ monitor


def _predictions(features: np.ndarray, prefix: str) -> Predictions:
    n = len(features)
    unit = features / np.linalg.norm(features, axis=1, keepdims=True)
    metas = [{"identity": f"{prefix}{i % 5}"} for i in range(n)]
    return Predictions([f"{prefix}_{i:03d}" for i in range(n)], unit.astype(np.float32), {}, metas)


def _cloud(n: int, directions: np.ndarray) -> np.ndarray:
    return directions[RNG.integers(0, len(directions), n)] + RNG.normal(0, 0.1, (n, directions.shape[1]))


def test_monitor_says_retrain_for_a_shifted_source_and_ok_for_a_familiar_one():
    known, unknown = np.eye(16)[:5], np.eye(16)[8:12]
    outputs = {FIT: _predictions(_cloud(200, known), "f"), CALIBRATION: _predictions(_cloud(80, known), "c"),
               "same": _predictions(_cloud(60, known), "s"),
               "shifted": _predictions(np.concatenate([_cloud(30, known), _cloud(30, unknown)]), "x"),
               "few": _predictions(_cloud(3, unknown), "w")}  # fmt: skip
    verdicts = {v.source: v for v in assess_incoming(outputs, MonitorRule(score="knn", gscore_method="threshold"))}
    assert verdicts["same"].recommendation == "ok" and verdicts["same"].ood_share < 0.1
    shifted = verdicts["shifted"]
    assert shifted.recommendation == "retrain" and shifted.ood_share == pytest.approx(0.5, abs=0.1)
    assert all(int(key.split("_")[1]) >= 30 for key in shifted.most_ood[:24])  # the unknown half comes first
    assert verdicts["few"].recommendation == "ok" and "fewer than min_incoming" in verdicts["few"].reason
    metrics = monitor_metrics(list(verdicts.values()), fit=200, calibration=80)
    assert metrics["retrain"] == 1 and metrics["shifted/retrain"] == 1 and metrics["same/retrain"] == 0
    assert {f"shifted/gscore_{m}" for m in GSCORE_METHODS} <= set(metrics)
    history = monitor_history([("v2", metrics), ("v1", {"same/incoming": 5})])
    assert [(r["version"], r["source"]) for r in history] == [("v2", "few"), ("v2", "same"), ("v2", "shifted"),
                                                               ("v1", "same")]  # fmt: skip
    assert history[-1]["gscore"] is None and history[2]["retrain"] == 1


def test_monitor_refuses_without_calibration_photos():
    with pytest.raises(ValueError, match="role 'calibration'"):
        assess_incoming({FIT: _predictions(_cloud(20, np.eye(4)), "f")}, MonitorRule())


def test_roles_split_reference_by_identity_and_skip_the_baseline():
    roles = SampleRoles(frozenset({"sample"}), frozenset({"cam_old", "sample_a"}), 0.5)
    reference = {roles.role("sample", "train", "sample_a", f"id_{i}") for i in range(40)}
    assert reference == {FIT, CALIBRATION}
    assert roles.role("sample", "train", "sample_new", "id_1") == "sample"  # trained on after the baseline: new
    assert roles.role("sample", "test", "sample_a", "id_1") is None  # in the baseline: not new
    assert roles.role("cam", "unlabeled", "cam_old", None) is None
    assert roles.role("cam", "unlabeled", "cam_new", None) == "cam"
    no_baseline = SampleRoles(frozenset({"sample"}), None, 0.5, monitored=frozenset({"sample"}))
    assert (
        no_baseline.role("sample", "test", "k", "id_1") == "sample" and no_baseline.role("cam", "x", "k", None) is None
    )


def test_gbench_images_give_every_shift_at_every_severity_and_in_distribution_parts_of_the_planned_sizes():
    images = gbench_images(seed=0, size=16, identities=12, photos=20, known=4, severities=(0.1, 0.8))
    assert set(images.shifted) == {"identities", "group"} | {f"{k}@{s:.2f}" for k in
                                                             ("blur", "low_resolution", "noise", "occlusion",
                                                              "other_domain") for s in (0.1, 0.8)}  # fmt: skip
    assert images.train.shape[1:] == (16, 16, 3) and sorted(set(images.train_labels.tolist())) == [0, 1, 2, 3]
    assert [len(images.train), len(images.reference), len(images.in_distribution)] == [4 * 5, 4 * 3, 4 * 6]
    assert all(len(pool) > 0 for pool in images.shifted.values())
    # 27 pools at the bench's severities x 4 shares: the >= 100 sets Gbench-mini promises
    assert (2 + 5 * 5) * 4 >= 100
    with pytest.raises(ValueError, match="raise identities"):
        gbench_images(seed=0, size=16, identities=3, photos=4, known=4)
