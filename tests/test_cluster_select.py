"""Free parameters tuned on a labelled set (faceops.cluster.select)."""

from __future__ import annotations

import numpy as np
import pytest

from faceops.cluster.metrics import pairwise
from faceops.cluster.propagate import propagate
from faceops.cluster.select import baseline_labels, label_confidence, tune_baseline, tune_propagation


def _blobs(seed: int, n_ids: int = 12, per: int = 6, spread: float = 0.15) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_ids, 16))
    x = np.repeat(centres, per, axis=0) + spread * rng.normal(size=(n_ids * per, 16))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32), np.repeat(np.arange(n_ids), per)


@pytest.mark.parametrize("method", ["threshold", "agglomerative", "hdbscan"])
def test_tuned_baseline_recovers_separated_identities(method):
    x, y = _blobs(0)
    value, f = tune_baseline(method, x, y)
    assert f > 0.9
    other, truth = _blobs(1)  # the chosen value transfers to unseen identities from the same process
    found = baseline_labels(method, other, value)
    assert len(np.unique(found)) == pytest.approx(12, abs=2)


def test_tuning_picks_the_best_candidate_of_the_grid():
    x, y = _blobs(0)
    value, f = tune_baseline("threshold", x, y, grid=[0.99, 0.5, -1.0])
    assert value == 0.5  # 0.99 splits everything, -1 merges everything


def test_label_confidence_is_zero_for_singletons_and_high_inside_tight_clusters():
    x, y = _blobs(0, spread=0.05)
    conf = label_confidence(x, y, k=5)
    assert conf.shape == (len(x),) and (conf > 0.9).all()
    alone = label_confidence(x, np.arange(len(x)), k=5)
    assert (alone == 0).all()


def test_unknown_baseline_is_refused():
    with pytest.raises(ValueError, match="unknown baseline"):
        tune_baseline("kmeans", *_blobs(0))


def _scored_pairs(labels: np.ndarray, same: float, other: float) -> tuple[np.ndarray, np.ndarray]:
    """Every pair as an edge, scored ``same`` within an identity and ``other`` across."""
    i, j = np.triu_indices(len(labels), k=1)
    return np.stack([i, j], 1), np.where(labels[i] == labels[j], same, other)


def test_propagation_tuning_keeps_the_score_that_separates_identities():
    labels = np.repeat(np.arange(4), 5)
    edges, scores = _scored_pairs(labels, same=0.9, other=0.4)
    (min_score, max_size, step), f = tune_propagation(edges, scores, labels, grid=[(0.3, 50), (0.5, 50), (0.95, 50)])
    assert (min_score, max_size) == (0.5, 50)  # 0.3 merges everything, 0.95 keeps only singletons
    assert step == 0.6  # no component exceeds the cap: every step ties, the first wins
    assert f == pytest.approx(1.0)


def test_propagation_tuning_breaks_ties_by_grid_order():
    labels = np.repeat(np.arange(4), 5)
    edges, scores = _scored_pairs(labels, same=0.9, other=0.4)
    assert tune_propagation(edges, scores, labels, grid=[(0.6, 50), (0.5, 50)])[0] == (0.6, 50, 0.6)
    assert tune_propagation(edges, scores, labels, grid=[(0.5, 50), (0.6, 50)], steps=(0.9, 0.6))[0] == (0.5, 50, 0.9)


def test_propagation_tuning_picks_the_split_step_that_separates_a_chained_component():
    """Two identities of 5 joined by a bridge edge (0.7), cap 5: the 10-face component must be split.
    The threshold rises from 0.5 to 0.8 with step 0.6 (the bridge goes, the identities stay whole) but
    to 0.95 with step 0.9 (everything goes): the tuner must return the best step and its score."""
    labels = np.repeat(np.arange(2), 5)
    edges, scores = _scored_pairs(labels, same=0.9, other=0.1)
    bridge = np.array([[4, 5]])
    edges, scores = np.concatenate([edges, bridge]), np.concatenate([scores, [0.7]])
    (min_score, max_size, step), f = tune_propagation(edges, scores, labels, grid=[(0.5, 5)], steps=(0.6, 0.8, 0.9))
    direct = {s: pairwise(labels, propagate(10, edges, scores, min_score=0.5, max_size=5, step=s))[2]
              for s in (0.6, 0.8, 0.9)}
    assert f == pytest.approx(max(direct.values())) and direct[step] == pytest.approx(f)
    assert (step, f) == (0.6, pytest.approx(1.0)) and direct[0.9] < 1.0


def test_auto_takes_the_method_with_the_best_calibration_score():
    from faceops.cluster import METHODS
    from faceops.cluster.pseudo import choose_method

    x, y = _blobs(0)
    method, scores = choose_method("auto", x, y, gcn_f=0.3, k=5)
    assert set(scores) == set(METHODS) and all(0.0 <= f <= 1.0 for f in scores.values())
    assert scores[method] == max(scores.values()) > 0.9 and method != "gcn"  # separated blobs: a baseline wins
    assert choose_method("auto", x, y, gcn_f=1.0, k=5)[0] == "gcn"  # a perfect GCN wins every tie by order


def test_a_fixed_method_or_no_calibration_rows_chooses_nothing():
    from faceops.cluster.pseudo import choose_method

    x, y = _blobs(0)
    assert choose_method("hdbscan", x, y, gcn_f=0.9, k=5) == ("hdbscan", {})
    assert choose_method("auto", x[:0], y[:0], gcn_f=None, k=5) == ("gcn", {})
