"""Face clustering library: metrics, kNN, propagation, IPS/GCN, baselines (tiny seeded data)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from faceops.cluster import (
    agglomerative, bcubed, build_ips, cluster, clustering_scores, gcn_links, knn, make_identities,
    merge_duplicate_edges, nmi, pairwise, propagate, pseudo_label_confidence, threshold_cc, train_linkage_gcn,
)
from faceops.cluster.gcn import LinkageGCN, ips_size


@pytest.fixture(scope="module")
def blobs() -> tuple[np.ndarray, np.ndarray]:
    """Well-separated identities: 30 ids of 3..12 samples, 32-d."""
    return make_identities(300, dim=32, seed=3, min_size=3, max_size=12, overlap=0.0, max_modes=1, spread=(0.97, 0.99))


# ---------------------------------------------------------------- metrics
GT = np.array([0, 0, 0, 1, 1, 2])
PRED = np.array([0, 0, 1, 1, 1, 2])


def test_pairwise_hand_computed():
    # predicted pairs: {01, 23, 24, 34} = 4; true pairs: {01, 02, 12, 34} = 4; correct: {01, 34} = 2
    assert pairwise(GT, PRED) == pytest.approx((0.5, 0.5, 0.5))


def test_bcubed_hand_computed():
    # per-sample precision 1,1,1/3,2/3,2/3,1 ; recall 2/3,2/3,1/3,1,1,1
    p = (1 + 1 + 1 / 3 + 2 / 3 + 2 / 3 + 1) / 6
    r = (2 / 3 + 2 / 3 + 1 / 3 + 1 + 1 + 1) / 6
    assert bcubed(GT, PRED) == pytest.approx((p, r, 2 * p * r / (p + r)))


@pytest.mark.parametrize("fn", [pairwise, bcubed])
def test_metric_identities(fn):
    assert fn(GT, GT + 10) == pytest.approx((1, 1, 1))  # label values do not matter
    p, r, _ = fn(GT, np.arange(len(GT)))  # all singletons: nothing wrongly joined
    assert p == 1 and r < 1
    p, r, _ = fn(GT, np.zeros(len(GT)))  # one cluster: everything recalled
    assert r == 1 and p < 1


def test_nmi_identities_and_singleton_removal():
    assert nmi(GT, GT + 3) == pytest.approx(1)
    assert nmi(GT, np.zeros(len(GT))) == pytest.approx(0)
    # dropping the predicted singleton (sample 5) leaves a 5-sample problem
    assert nmi(GT, PRED, drop_singletons=True) == pytest.approx(nmi(GT[:5], PRED[:5]))
    scores = clustering_scores(GT, PRED)
    assert scores["pairwise/f"] == pytest.approx(0.5) and scores["n_clusters"] == 3


def test_metric_length_mismatch():
    with pytest.raises(ValueError, match="differ in length"):
        pairwise(GT, PRED[:-1])


# ---------------------------------------------------------------- kNN
def test_knn_exact_matches_brute_force(blobs):
    x, _ = blobs
    nbrs, sims = knn(x, 5, index="exact", batch_size=64)
    full = x @ x.T.copy()
    np.fill_diagonal(full, -np.inf)
    ref = np.sort(full, axis=1)[:, ::-1][:, :5]
    np.testing.assert_allclose(sims, ref, atol=1e-5)
    assert not (nbrs == np.arange(len(x))[:, None]).any()  # self excluded


@pytest.mark.parametrize("index", ["flat", "ivf", "hnsw"])
def test_knn_faiss_backends_agree_with_exact(blobs, index):
    pytest.importorskip("faiss")
    x, _ = blobs
    ref, _ = knn(x, 5, index="exact")
    got, sims = knn(x, 5, index=index, nlist=8, nprobe=8)  # nprobe = nlist: IVF is exhaustive
    recall = np.mean([len(set(a) & set(b)) / 5 for a, b in zip(ref, got)])
    assert recall > 0.98 and np.all(np.diff(sims, axis=1) <= 1e-6)


def test_knn_rejects_bad_args(blobs):
    with pytest.raises(ValueError, match="unknown kNN index"):
        knn(blobs[0], 3, index="annoy")
    with pytest.raises(ValueError, match="0 < k < N"):
        knn(blobs[0], len(blobs[0]))


# ---------------------------------------------------------------- propagation
def _oracle_edges(nbrs: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    src = np.repeat(np.arange(len(nbrs)), nbrs.shape[1])
    edges = np.stack([src, nbrs.ravel()], 1)
    return edges, (y[edges[:, 0]] == y[edges[:, 1]]).astype(float)


def test_propagation_with_oracle_scores_is_exact(blobs):
    x, y = blobs
    edges, scores = _oracle_edges(knn(x, 8, index="exact")[0], y)
    labels = propagate(len(x), edges, scores, max_size=50, min_score=0.0)  # original: no first threshold
    assert pairwise(y, labels)[2] == 1 and bcubed(y, labels)[2] == 1


@pytest.mark.parametrize("max_size", [1, 4, 7])
def test_propagation_respects_size_cap(blobs, max_size):
    x, y = blobs
    nbrs, sims = knn(x, 8, index="exact")
    src = np.repeat(np.arange(len(x)), 8)
    for scores in (sims.ravel(), np.ones(sims.size)):  # graded scores, and all-certain edges (fallback cut)
        labels = propagate(len(x), np.stack([src, nbrs.ravel()], 1), scores, max_size=max_size, min_score=-1)
        assert np.bincount(labels).max() <= max_size


def test_merge_duplicate_edges_averages_both_directions():
    edges, scores = merge_duplicate_edges(np.array([[0, 1], [1, 0], [2, 1], [3, 3]]), np.array([0.2, 0.6, 0.9, 1.0]))
    np.testing.assert_array_equal(edges, [[0, 1], [1, 2]])
    np.testing.assert_allclose(scores, [0.4, 0.9])


# ---------------------------------------------------------------- IPS and GCN
K1, K2, U = 5, 3, 2


def test_ips_structure(blobs):
    x, _ = blobs
    nbrs, _ = knn(x, 6, index="exact")
    piv = np.arange(40)
    nodes, adj = build_ips(nbrs, piv, k1=K1, k2=K2, u=U)
    m = ips_size(K1, K2)
    assert nodes.shape == (40, m) and adj.shape == (40, m, m)
    real = nodes >= 0
    assert (real.sum(1) <= m).all() and (nodes[:, 0] == piv).all()
    np.testing.assert_array_equal(nodes[:, 1 : K1 + 1], nbrs[piv, :K1])
    for row in nodes:  # no id twice in one subgraph
        ids = row[row >= 0]
        assert len(np.unique(ids)) == len(ids)
    rows = adj.sum(2)
    connected = (adj > 0).any(2)
    np.testing.assert_allclose(rows[connected], 1, atol=1e-6)
    assert (rows[~real] == 0).all() and (adj.sum(1)[~real] == 0).all()  # padding: no row, no column
    # symmetric before normalisation: same sparsity pattern both ways
    np.testing.assert_array_equal(adj > 0, (adj > 0).transpose(0, 2, 1))


def test_pivot_offset_row_is_zero(blobs):
    x, _ = blobs
    nbrs, _ = knn(x, 6, index="exact")
    nodes, _ = build_ips(nbrs, np.arange(8), k1=K1, k2=K2, u=U)
    xt = torch.as_tensor(x)
    xn, xp = LinkageGCN._gather(xt, torch.as_tensor(nodes))
    assert torch.all((xn - xp)[:, 0] == 0)


def test_projected_forward_equals_direct_forward(blobs):
    x, _ = blobs
    nbrs, _ = knn(x, 6, index="exact")
    torch.manual_seed(0)
    model = LinkageGCN(32, dims=(16, 16, 8, 8), cls_hidden=8)
    xt = torch.as_tensor(x)
    nodes, adj = (torch.as_tensor(a) for a in build_ips(nbrs, np.arange(64), k1=K1, k2=K2, u=U))
    model.train()
    model(xt, nodes, adj, K1)  # move the BN running statistics away from 0/1
    model.eval()
    with torch.no_grad():
        direct = model(xt, nodes, adj, K1)
        folded = model.forward_projected(xt, model.project(xt), nodes, adj, K1)
    torch.testing.assert_close(direct, folded, atol=1e-4, rtol=1e-4)


def test_gcn_learns_links_and_clusters(blobs):
    x, y = blobs
    xs, ys = make_identities(300, dim=32, seed=4, min_size=3, max_size=12, overlap=0.0, max_modes=1, spread=(0.97, 0.99))
    model = train_linkage_gcn(xs, ys, k1=K1, k2=K2, u=U, dims=(16, 16, 8, 8), cls_hidden=8, epochs=3,
                              batch_size=16, lr=1e-2, knn_index="exact")
    edges, scores = gcn_links(x, model, k1=K1, k2=K2, u=U, index="exact")
    same = y[edges[:, 0]] == y[edges[:, 1]]
    assert ((scores > 0.5) == same).mean() > 0.9
    labels = cluster(x, method="gcn", model=model, k1=K1, k2=K2, u=U, max_size=20, index="exact")
    assert np.bincount(labels).max() <= 20 and bcubed(y, labels)[2] > 0.8
    conf = pseudo_label_confidence(labels, edges, scores)
    assert conf.shape == (len(x),) and (conf >= 0).all() and (conf <= 1).all()


# ---------------------------------------------------------------- baselines
def test_baselines_recover_separated_identities(blobs):
    x, y = blobs
    assert bcubed(y, threshold_cc(x, k=8, threshold=0.8, index="exact"))[2] > 0.99
    assert bcubed(y, cluster(x, method="agglomerative", distance_threshold=0.2))[2] > 0.99
    assert bcubed(y, cluster(x, method="hdbscan", pca_dim=16, min_cluster_size=3))[2] > 0.9


def test_agglomerative_refuses_large_inputs(blobs):
    with pytest.raises(ValueError, match="max_n"):
        agglomerative(blobs[0], max_n=100)


def test_cluster_dispatch_errors(blobs):
    with pytest.raises(ValueError, match="unknown clustering method"):
        cluster(blobs[0], method="kmeans")
    with pytest.raises(ValueError, match="needs model"):
        cluster(blobs[0], method="gcn")
