"""faceops.eval: hand-computed verification, task and per-group metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest

from faceops.eval import (
    DEFAULT_AGE_SIGMA,
    age_metrics,
    attribute_metrics,
    auc,
    balanced_accuracy,
    confusion_matrix,
    cosine_scores,
    epsilon_error,
    expression_metrics,
    far_key,
    gender_metrics,
    group_metrics,
    group_verification_metrics,
    kfold_accuracy,
    make_pairs,
    merge_metrics,
    roc,
    tar_at_far,
    verification_metrics,
)
from faceops.labels import CELEBA_ATTRIBUTES, EXPRESSIONS


def _identities(counts: dict[str, int]) -> list[str]:
    return [name for name, n in counts.items() for _ in range(n)]


class TestMakePairs:
    def test_pairs_are_valid_balanced_distinct_and_deterministic(self):
        ids = _identities({"a": 5, "b": 3, "c": 1, "d": 4, "e": 2})
        idx_a, idx_b, same = make_pairs(ids, n_pairs=20, seed=3)
        again = make_pairs(ids, n_pairs=20, seed=3)
        for x, y in zip((idx_a, idx_b, same), again):
            np.testing.assert_array_equal(x, y)
        assert len(idx_a) == 20 and same.sum() == 10
        np.testing.assert_array_equal(same, np.arange(20) % 2 == 0)  # interleaved: folds stay balanced
        assert (idx_a < idx_b).all()
        assert len(set(zip(idx_a.tolist(), idx_b.tolist()))) == 20
        for a, b, s in zip(idx_a, idx_b, same):
            assert (ids[a] == ids[b]) == s

    def test_other_seed_gives_other_pairs(self):
        ids = _identities({f"p{i}": 4 for i in range(10)})
        first = make_pairs(ids, n_pairs=30, seed=0)
        second = make_pairs(ids, n_pairs=30, seed=1)
        assert not np.array_equal(first[0], second[0]) or not np.array_equal(first[1], second[1])

    def test_dense_request_enumerates_every_genuine_pair(self):
        ids = _identities({"a": 3, "b": 2, "c": 1})  # C(3,2) + C(2,2) = 4 genuine pairs exist
        idx_a, idx_b, same = make_pairs(ids, n_pairs=8, seed=0)
        genuine = {(a, b) for a, b, s in zip(idx_a.tolist(), idx_b.tolist(), same) if s}
        assert genuine == {(0, 1), (0, 2), (1, 2), (3, 4)}

    def test_too_many_pairs_is_an_error_that_names_the_limit(self):
        with pytest.raises(ValueError, match="only 4 distinct"):
            make_pairs(_identities({"a": 3, "b": 2, "c": 1}), n_pairs=10, seed=0)


def test_cosine_scores_hand_computed():
    emb = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 3.0], [-5.0, 0.0]])
    scores = cosine_scores(emb, np.array([0, 0, 0, 2]), np.array([1, 2, 3, 2]))
    np.testing.assert_allclose(scores, [0.0, 1 / math.sqrt(2), -1.0, 1.0])


def test_cosine_scores_refuses_zero_embeddings():
    with pytest.raises(ValueError, match="zero norm"):
        cosine_scores(np.array([[1.0, 0.0], [0.0, 0.0]]), np.array([0]), np.array([1]))


class TestKFoldAccuracy:
    def test_four_pairs_two_folds_by_hand(self):
        # fold 1 = pairs 0,1; fold 2 = pairs 2,3. Train on fold 2 (0.6 genuine, 0.7 impostor): every
        # candidate scores <= 1/2, the lowest one (-0.4) wins, so fold 1 predicts "same" for both: 1/2.
        # Train on fold 1 (0.9 genuine, 0.2 impostor): t = 0.55, fold 2 gets 0.6 right, 0.7 wrong: 1/2.
        scores = np.array([0.9, 0.2, 0.6, 0.7])
        same = np.array([True, False, True, False])
        mean, std, thresholds = kfold_accuracy(scores, same, folds=2)
        assert mean == pytest.approx(0.5) and std == pytest.approx(0.0)
        np.testing.assert_allclose(thresholds, [-0.4, 0.55])

    def test_threshold_is_chosen_on_the_other_nine_folds(self):
        # 10 folds of one genuine + one impostor pair. Fold 0 is hard (0.5 vs 0.4); the others are easy
        # (0.9 vs 0.1). A threshold chosen on all pairs (0.45) would score 100 %. Fold 0's training data
        # holds only 0.1 and 0.9, so its threshold is their midpoint 0.5 and its genuine pair (0.5) fails.
        scores = np.array([0.5, 0.4] + [0.9, 0.1] * 9)
        same = np.array([True, False] * 10)
        mean, std, thresholds = kfold_accuracy(scores, same, folds=10)
        assert mean == pytest.approx(0.95)
        assert std == pytest.approx(0.15)  # population std of [0.5, 1 x 9]
        assert thresholds[0] == pytest.approx(0.5)
        np.testing.assert_allclose(thresholds[1:], 0.45)
        assert np.mean((scores > 0.45) == same) == 1.0  # the "tuned on everything" answer differs

    def test_matches_brute_force_on_random_scores(self):
        rng = np.random.default_rng(7)
        same = rng.random(60) < 0.5
        scores = np.round(rng.normal(same.astype(float), 1.0), 1)  # rounding creates ties
        mean, _, thresholds = kfold_accuracy(scores, same, folds=5)
        accs = []
        for k, test in enumerate(np.array_split(np.arange(60), 5)):
            train = np.setdiff1d(np.arange(60), test)
            candidates = np.append(np.unique(scores) - 1e-6, scores.max() + 1)
            best = max(np.mean((scores[train] > t) == same[train]) for t in candidates)
            assert np.mean((scores[train] > thresholds[k]) == same[train]) == pytest.approx(best)
            accs.append(np.mean((scores[test] > thresholds[k]) == same[test]))
        assert mean == pytest.approx(np.mean(accs))

    def test_perfect_separation(self):
        same = np.tile([True, False], 50)
        scores = np.where(same, 0.8, 0.2) + np.linspace(0, 0.1, 100)
        mean, std, _ = kfold_accuracy(scores, same)
        assert (mean, std) == (1.0, 0.0)
        assert auc(scores, same) == 1.0

    @pytest.mark.parametrize("folds", [1, 11])
    def test_fold_count_is_checked(self, folds):
        with pytest.raises(ValueError, match="folds"):
            kfold_accuracy(np.zeros(10), np.zeros(10, dtype=bool), folds=folds)


def test_roc_ends_at_corners_and_integrates_to_auc():
    rng = np.random.default_rng(0)
    same = rng.random(200) < 0.5
    scores = rng.normal(same * 1.5, 1.0)
    fpr, tpr, _ = roc(scores, same)
    assert (np.diff(fpr) >= 0).all() and (np.diff(tpr) >= 0).all()
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, 1.0, 1.0)
    assert np.trapezoid(tpr, fpr) == pytest.approx(auc(scores, same))
    assert 0.5 < auc(scores, same) < 1.0


def test_auc_hand_computed():
    # genuine {0.8, 0.4}, impostor {0.6, 0.2}: 3 of the 4 genuine/impostor orderings are right.
    assert auc(np.array([0.8, 0.4, 0.6, 0.2]), np.array([True, True, False, False])) == pytest.approx(0.75)


class TestTarAtFar:
    scores = np.array([0.95, 0.85, 0.75, 0.05] + [i / 10 for i in range(10)])
    same = np.array([True] * 4 + [False] * 10)

    def test_hand_computed_and_unmeasurable_fars_omitted(self):
        result = tar_at_far(self.scores, self.same, fars=(0.1, 0.2, 0.01, 1.0))
        # 10 impostors 0.0..0.9. FAR 0.1 allows 1 above the threshold 0.8: genuine 0.95, 0.85 pass.
        # FAR 0.2 -> threshold 0.7: three pass. FAR 0.01 < 1/10 cannot be measured and is left out.
        assert result == {0.1: pytest.approx(0.5), 0.2: pytest.approx(0.75), 1.0: pytest.approx(1.0)}

    def test_realised_far_never_exceeds_target_with_ties(self):
        scores = np.array([0.9, 0.5, 0.5, 0.5, 0.5, 0.1])
        same = np.array([True, True, False, False, False, False])
        # 4 impostors, 3 tied at 0.5: FAR 0.25 allows one, but any threshold letting one tied 0.5 pass
        # lets all three pass, so the threshold stays at 0.5 and only the 0.9 genuine is accepted.
        assert tar_at_far(scores, same, fars=(0.25,)) == {0.25: pytest.approx(0.5)}

    def test_metric_keys(self):
        metrics = verification_metrics(self.scores, self.same, folds=2, fars=(1e-1, 1e-4))
        assert "verif/tar@far=1e-1" in metrics and "verif/tar@far=1e-4" not in metrics
        assert {"verif/acc", "verif/acc_std", "verif/auc"} <= metrics.keys()
        assert (metrics["verif/n_pairs"], metrics["verif/n_genuine"], metrics["verif/n_impostor"]) == (14, 4, 10)
        assert far_key(1e-4) == "1e-4" and far_key(0.05) == "5e-2"


class TestClassification:
    def test_expression_accuracy_masks_missing_labels(self):
        metrics = expression_metrics(np.array([0, 1, 2, 3]), [0, 1, 0, None])
        # balanced: class 0 recalled 1 of 2, class 1 recalled 1 of 1 -> (0.5 + 1) / 2
        assert metrics == {"expr/acc": pytest.approx(2 / 3), "expr/majority_acc": pytest.approx(2 / 3),
                           "expr/balanced_acc": pytest.approx(0.75), "expr/n": 3, "expr/n_missing": 1}  # fmt: skip

    def test_a_missing_label_changes_nothing(self):
        base = expression_metrics(np.array([0, 1, 2]), [0, 1, 0])
        more = expression_metrics(np.array([0, 1, 2, 6]), [0, 1, 0, None])  # wrong prediction, no label
        assert more["expr/acc"] == base["expr/acc"] and more["expr/n"] == base["expr/n"]

    def test_scores_are_argmaxed(self):
        scores = np.eye(len(EXPRESSIONS))[[3, 3, 5]] + 0.01
        assert expression_metrics(scores, [3, 4, 5])["expr/acc"] == pytest.approx(2 / 3)

    def test_all_missing_reports_counts_only(self):
        assert gender_metrics(np.array([0, 1]), [None, None]) == {"gender/n": 0, "gender/n_missing": 2}

    def test_gender(self):
        scores = np.array([[0.9, 0.1], [0.2, 0.8], [0.3, 0.7]])
        assert gender_metrics(scores, [0, 1, 0])["gender/acc"] == pytest.approx(2 / 3)

    def test_out_of_range_label_is_an_error(self):
        with pytest.raises(ValueError, match=r"\[0, 7\)"):
            expression_metrics(np.array([0]), [7])

    def test_confusion_matrix(self):
        cm = confusion_matrix(np.array([0, 1, 1, 2, 0]), [0, 1, 2, 2, None], num_classes=3)
        np.testing.assert_array_equal(cm, [[1, 0, 0], [0, 1, 0], [0, 1, 1]])


class TestAge:
    def test_epsilon_error_zero_at_mu_monotone_and_bounded(self):
        assert epsilon_error(np.array([30.0]), np.array([30.0]), 4.0) == 0.0
        errors = [epsilon_error(np.array([30.0 + d]), np.array([30.0]), 4.0) for d in (0, 1, 2, 4, 8, 40)]
        assert all(a < b for a, b in zip(errors, errors[1:]))
        assert errors[-1] == pytest.approx(1.0)
        assert errors[3] == pytest.approx(1 - math.exp(-0.5))  # one sigma off

    def test_epsilon_error_is_symmetric_and_uses_per_image_sigma(self):
        mu = np.array([20.0, 50.0])
        sigma = np.array([2.0, 10.0])
        assert epsilon_error(mu + 2, mu, sigma) == epsilon_error(mu - 2, mu, sigma)
        expected = 1 - (math.exp(-4 / 8) + math.exp(-4 / 200)) / 2
        assert epsilon_error(mu + 2, mu, sigma) == pytest.approx(expected)

    def test_age_metrics_by_hand(self):
        metrics = age_metrics(np.array([[20.0], [30.0], [40.0]]), [22.0, None, 40.0], sigma=[None, 5.0, 4.0])
        assert metrics["age/mae"] == pytest.approx(1.0)
        assert metrics["age/median_mae"] == pytest.approx(9.0)  # median of 22 and 40 is 31
        expected_eps = 1 - (math.exp(-4 / (2 * DEFAULT_AGE_SIGMA**2)) + 1.0) / 2
        assert metrics["age/eps"] == pytest.approx(expected_eps)
        assert (metrics["age/n"], metrics["age/n_missing"], metrics["age/n_default_sigma"]) == (2, 1, 1)

    def test_sigma_must_be_positive(self):
        with pytest.raises(ValueError, match="sigma"):
            age_metrics(np.array([20.0]), [20.0], sigma=0.0)


class TestAttributes:
    def test_by_hand_with_missing_cells(self):
        labels = [[1, 0, None], [None, 1, None], [0, None, None]]
        pred = np.array([[1, 1, 0], [0, 1, 1], [0, 0, 1]])
        metrics = attribute_metrics(pred, labels, names=("a", "b", "c"))
        # a: rows 0, 2 -> both right; b: rows 0, 1 -> one right; c: never labelled -> not in the mean.
        # Majority classes: a has one 1 and one 0 (0.5), b one 0 and one 1 (0.5); only a beats its 0.5.
        # Balanced: a recalls both classes (1.0); b recalls its 1 but not its 0 (0.5).
        assert metrics == {
            "attr/a/acc": 1.0,
            "attr/a/majority_acc": 0.5,
            "attr/a/balanced_acc": 1.0,
            "attr/b/acc": 0.5,
            "attr/b/majority_acc": 0.5,
            "attr/b/balanced_acc": 0.5,
            "attr/mean_acc": 0.75,
            "attr/mean_majority_acc": 0.5,
            "attr/mean_balanced_acc": 0.75,
            "attr/n_above_majority": 1,
            "attr/n_attrs": 2,
            "attr/n": 4,
            "attr/n_missing": 5,
        }

    def test_forty_celeba_attributes_and_two_class_scores(self):
        rng = np.random.default_rng(0)
        labels = rng.integers(0, 2, size=(6, 40))
        scores = np.stack([1 - labels, labels], axis=2).astype(float)  # perfect two-class scores
        metrics = attribute_metrics(scores, labels)
        assert metrics["attr/mean_acc"] == 1.0 and metrics["attr/n_attrs"] == 40
        assert f"attr/{CELEBA_ATTRIBUTES[0]}/acc" in metrics


def test_merge_metrics_refuses_duplicate_keys():
    merged = merge_metrics({"expr/acc": 0.5}, {"age/mae": 2.0})
    assert merged == {"expr/acc": 0.5, "age/mae": 2.0}
    with pytest.raises(ValueError, match="expr/acc"):
        merge_metrics({"expr/acc": 0.5}, {"expr/acc": 0.6})


class TestGroups:
    def test_hand_computed_accuracy_std_and_ser(self):
        correct = [1, 1, 1, 0] + [1, 0] + [1] * 9 + [0] + [0]
        groups = ["A"] * 4 + ["B"] * 2 + ["C"] * 10 + [None]
        metrics = group_metrics(np.array(correct, dtype=bool), groups)
        accs = np.array([0.75, 0.5, 0.9])
        assert metrics["group/A/acc"] == 0.75 and metrics["group/B/acc"] == 0.5
        assert metrics["group/C/acc"] == pytest.approx(0.9)
        assert (metrics["group/A/n"], metrics["group/B/n"], metrics["group/C/n"]) == (4, 2, 10)
        assert metrics["group/mean"] == pytest.approx(accs.mean())
        assert metrics["group/std"] == pytest.approx(math.sqrt(np.mean((accs - accs.mean()) ** 2)))
        assert metrics["group/ser"] == pytest.approx(0.5 / 0.1)  # worst error / best error
        assert (metrics["group/n_groups"], metrics["group/n_missing"]) == (3, 1)

    def test_ser_when_best_group_is_perfect(self):
        assert group_metrics([1, 1, 1, 0], ["A", "A", "B", "B"])["group/ser"] == math.inf
        assert group_metrics([1, 1, 1, 1], ["A", "A", "B", "B"])["group/ser"] == 1.0

    def test_per_sample_scores_and_bad_names(self):
        assert group_metrics([0.5, 1.0], ["x", "x"])["group/x/acc"] == 0.75
        with pytest.raises(ValueError, match="without '/'"):
            group_metrics([1], ["a/b"])
        with pytest.raises(ValueError, match=r"\[0, 1\]"):
            group_metrics([2.0], ["a"])

    def test_verification_per_group_uses_only_within_group_pairs(self):
        rng = np.random.default_rng(1)
        groups = ["A"] * 40 + ["B"] * 40 + ["C"] * 4 + [None] * 2
        n = 30
        idx_a = np.concatenate([rng.integers(0, 40, n), rng.integers(40, 80, n), [80, 81, 0, 84]])
        idx_b = np.concatenate([rng.integers(0, 40, n), rng.integers(40, 80, n), [82, 83, 45, 85]])
        same = np.tile([True, False], len(idx_a) // 2)
        scores = np.where(same, 0.7, 0.3)
        scores[n : 2 * n] = rng.random(n)  # group B: uninformative scores
        metrics = group_verification_metrics(scores, same, idx_a, idx_b, groups, folds=10)
        assert metrics["group/A/acc"] == 1.0
        b_acc, _, _ = kfold_accuracy(scores[n : 2 * n], same[n : 2 * n], folds=10)
        assert metrics["group/B/acc"] == pytest.approx(b_acc)
        # C has 2 within-group pairs: too few for 10 folds; the A-B and None-None pairs are not scored.
        assert metrics["group/C/n"] == 2 and "group/C/acc" not in metrics
        assert (metrics["group/n_skipped"], metrics["group/n_cross_pairs"], metrics["group/n_groups"]) == (1, 2, 2)


def test_trivial_predictors_score_exactly_their_baselines():
    """A constant prediction of the commonest class / the median age scores its own baseline."""
    expr = [3, 3, 3, 1, 0, None]
    metrics = expression_metrics(np.full(6, 3), expr)
    assert metrics["expr/acc"] == metrics["expr/majority_acc"] == pytest.approx(3 / 5)
    ages = [20.0, 25.0, 40.0, None]
    assert age_metrics(np.full(4, 25.0), ages)["age/mae"] == age_metrics(np.zeros(4), ages)["age/median_mae"]
    labels = np.array([[1, 0], [1, 1], [1, 0], [0, 0]])
    constant = attribute_metrics(np.array([[1, 0]] * 4), labels, names=("a", "b"))
    assert constant["attr/mean_acc"] == constant["attr/mean_majority_acc"] == pytest.approx(0.75)
    assert constant["attr/n_above_majority"] == 0
    # a constant recalls one class and misses the other: balanced accuracy 1/K = 0.5 on each attribute
    balanced = [constant[f"attr/{key}"] for key in ("a/balanced_acc", "b/balanced_acc", "mean_balanced_acc")]
    assert balanced == [0.5, 0.5, 0.5]
    assert metrics["expr/balanced_acc"] == pytest.approx(1 / 3)


def test_balanced_accuracy_weighs_every_class_alike():
    """Hand-computed: 9 negatives all right, 1 positive missed -> accuracy 0.9 but balanced 0.5."""
    truth = np.array([0] * 9 + [1])
    assert balanced_accuracy(np.zeros(10, np.int64), truth) == 0.5
    assert balanced_accuracy(truth, truth) == 1.0
    assert balanced_accuracy(np.ones(3, np.int64), np.ones(3, np.int64)) == 1.0  # one class present: K = 1
    pred = truth.copy()
    pred[0] = 1  # one false positive: recall 8/9 on class 0, 1 on class 1
    assert balanced_accuracy(pred, truth) == pytest.approx((8 / 9 + 1) / 2)
    metrics = gender_metrics(np.zeros(10, np.int64), truth.tolist())
    assert (metrics["gender/acc"], metrics["gender/balanced_acc"]) == (pytest.approx(0.9), 0.5)
