"""Face clustering library: metrics, kNN, propagation, IPS/GCN, baselines (tiny seeded data)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from faceops.cluster import (
    REDUCES, LinkageGCN, agglomerative, bcubed, build_ips, cluster, clustering_scores, gcn_links, knn, make_identities,
    merge_duplicate_edges, nmi, pairwise, predict_links, propagate, pseudo_label_confidence, pseudo_labels,
    threshold_cc, train_linkage_gcn,
)
from faceops.cluster.gcn import _conv, ips_size
from faceops.cluster.select import PROPAGATION_STEPS, tune_gcn_links, tune_propagation


@pytest.fixture(scope="module")
def blobs() -> tuple[np.ndarray, np.ndarray]:
    """Well-separated identities: 30 ids of 3..12 samples, 32-d."""
    return make_identities(300, dim=32, seed=3, min_size=3, max_size=12, overlap=0.0, max_modes=1, nuisance=0,
                           spread=(0.97, 0.99))


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
def test_knn_backends_agree_with_exact(blobs, index):
    if index != "ivf":
        pytest.importorskip("faiss")
    x, _ = blobs
    ref, _ = knn(x, 5, index="exact")
    got, sims = knn(x, 5, index=index, nlist=8, nprobe=8)  # nprobe = nlist: IVF is exhaustive
    recall = np.mean([len(set(a) & set(b)) / 5 for a, b in zip(ref, got)])
    assert recall > 0.98 and np.all(np.diff(sims, axis=1) <= 1e-6)
    assert not (got == np.arange(len(x))[:, None]).any()


def test_ivf_partial_probe_recall():
    # cells searched: 4 of 16, so the search is approximate but must find most true neighbours
    x, _ = make_identities(2000, dim=64, seed=5)
    ref, ref_sims = knn(x, 10, index="exact")
    got, sims = knn(x, 10, index="ivf", nlist=16, nprobe=4, seed=1)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ref, got)])
    assert recall > 0.8
    assert (got >= 0).all() and (sims <= ref_sims + 1e-5).all()  # never better than exact, rank by rank


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


def test_merge_duplicate_edges_max_keeps_the_more_confident_direction():
    raw = np.array([[0, 1], [1, 0], [2, 1], [1, 2], [1, 2], [3, 3]]), np.array([0.2, 0.6, 0.9, 0.1, 0.3, 1.0])
    edges, scores = merge_duplicate_edges(*raw, reduce="max")
    np.testing.assert_array_equal(edges, [[0, 1], [1, 2]])
    np.testing.assert_allclose(scores, [0.6, 0.9])
    # max never scores an edge below the mean, so at any threshold it keeps a superset of the mean's edges
    assert (scores >= merge_duplicate_edges(*raw)[1]).all()
    with pytest.raises(ValueError, match="reduce"):
        merge_duplicate_edges(*raw, reduce="median")


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
    adj = adj.numpy()
    rows = adj.sum(2)
    connected = (adj > 0).any(2)
    np.testing.assert_allclose(rows[connected], 1, atol=1e-6)
    assert (rows[~real] == 0).all() and (adj.sum(1)[~real] == 0).all()  # padding: no row, no column
    # a real node links only to real nodes and only to nodes among its own u nearest neighbours or
    # to nodes that have it among theirs (active connections, symmetrised)
    b, i, j = np.nonzero(adj)
    a, c = nodes[b, i], nodes[b, j]
    assert (a >= 0).all() and (c >= 0).all()
    assert ((nbrs[a, :U] == c[:, None]).any(1) | (nbrs[c, :U] == a[:, None]).any(1)).all()
    # symmetric before normalisation: same sparsity pattern both ways
    np.testing.assert_array_equal(adj > 0, (adj > 0).transpose(0, 2, 1))


def test_pivot_offset_row_is_zero(blobs):
    x, _ = blobs
    nbrs, _ = knn(x, 6, index="exact")
    nodes, _ = build_ips(nbrs, np.arange(8), k1=K1, k2=K2, u=U)
    xt = torch.as_tensor(x)
    xn, xp = LinkageGCN._gather(xt, torch.as_tensor(nodes))
    assert torch.all((xn - xp)[:, 0] == 0)


def _tiny_model() -> LinkageGCN:
    torch.manual_seed(0)
    return LinkageGCN(32, dims=(16, 16, 8, 8), cls_hidden=8, k1=K1, k2=K2, u=U)


def test_projected_forward_equals_direct_forward(blobs):
    x, _ = blobs
    nbrs, _ = knn(x, 6, index="exact")
    model = _tiny_model()
    xt = torch.as_tensor(x)
    nodes, adj = build_ips(nbrs, np.arange(64), k1=K1, k2=K2, u=U)
    nodes = torch.as_tensor(nodes)
    model.train()
    model(xt, nodes, adj)  # move the BN running statistics away from 0/1
    model.eval()
    with torch.no_grad():
        direct = model(xt, nodes, adj)
        folded = model.forward_projected(xt, model.project(xt), nodes, adj)
    assert direct.shape == (64, K1, 2)
    torch.testing.assert_close(direct, folded, atol=1e-4, rtol=1e-4)


def test_split_graph_conv_equals_concatenation():
    # h W_self + A (h W_nbr) is the paper's [h, A h] W, computed without the [B, M, 2d] copy
    torch.manual_seed(0)
    layer = torch.nn.Linear(2 * 6, 4)
    h, adj = torch.randn(3, 5, 6), torch.rand(3, 5, 5)
    ref = torch.relu(layer(torch.cat([h, adj @ h], -1)))
    torch.testing.assert_close(_conv(layer, h, adj), ref)
    torch.testing.assert_close(_conv(layer, h, adj, rows=slice(1, 3)), ref[:, 1:3])


def test_model_record_round_trip(tmp_path, blobs):
    x, _ = blobs
    model = _tiny_model()
    nbrs, _ = knn(x, K1, index="exact")
    model.train()
    nodes, adj = build_ips(nbrs, np.arange(32), k1=K1, k2=K2, u=U)
    model(torch.as_tensor(x), torch.as_tensor(nodes), adj)  # non-trivial BN statistics
    model.eval()
    path = tmp_path / "gcn.pt"
    torch.save(model.to_record(), path)
    loaded = LinkageGCN.from_record(torch.load(path, weights_only=True))
    assert loaded.config == model.config and not loaded.training
    json.dumps(loaded.config)  # plain values only
    ref = predict_links(model, x, nbrs, batch_size=50)
    got = predict_links(loaded, x, nbrs, batch_size=50)
    np.testing.assert_array_equal(ref[0], got[0])
    np.testing.assert_allclose(ref[1], got[1], atol=1e-6)
    with pytest.raises(ValueError, match="record format"):
        LinkageGCN.from_record({**model.to_record(), "format": "other"})


def test_model_rejects_inconsistent_ips_shape():
    with pytest.raises(ValueError, match="k2, u <= k1"):
        LinkageGCN(32, k1=3, k2=5, u=2)


def test_gcn_learns_links_and_clusters(blobs):
    x, y = blobs
    xs, ys = make_identities(300, dim=32, seed=4, min_size=3, max_size=12, overlap=0.0, max_modes=1, nuisance=0,
                             spread=(0.97, 0.99))
    model = train_linkage_gcn(xs, ys, k1=K1, k2=K2, u=U, dims=(16, 16, 8, 8), cls_hidden=8, epochs=3,
                              batch_size=16, lr=1e-2, knn_index="exact")
    edges, scores = gcn_links(x, model, index="exact")
    same = y[edges[:, 0]] == y[edges[:, 1]]
    assert ((scores > 0.5) == same).mean() > 0.9
    labels = cluster(x, method="gcn", model=model, max_size=20, index="exact")
    assert np.bincount(labels).max() <= 20 and bcubed(y, labels)[2] > 0.8
    conf = pseudo_label_confidence(labels, edges, scores)
    assert conf.shape == (len(x),) and (conf >= 0).all() and (conf <= 1).all()
    # the stage's entry point: same labels, and confidence 0 exactly for singletons
    pl, pc = pseudo_labels(x, model, max_size=20, index="exact")
    np.testing.assert_array_equal(pl, labels)
    assert pl.dtype == np.int64 and pc.dtype == np.float32
    singleton = np.bincount(pl)[pl] == 1
    assert (pc[singleton] == 0).all() and (pc[~singleton] > 0).all()
    # reduce="max" reaches gcn_links through pseudo_labels: same edges, each scored >= its mean
    max_edges, max_scores = gcn_links(x, model, index="exact", reduce="max")
    np.testing.assert_array_equal(max_edges, edges)
    assert (max_scores >= scores - 1e-12).all() and (max_scores > scores).any()
    max_labels = pseudo_labels(x, model, max_size=20, index="exact", reduce="max")[0]
    np.testing.assert_array_equal(max_labels, propagate(len(x), max_edges, max_scores, max_size=20))
    # tune_gcn_links (the stage's calibration): its choice gives its F through pseudo_labels, and
    # searching the merge rule too never does worse than tuning the mean-merged links alone
    grid = [(0.5, 20), (0.9, 20), (0.5, 6)]
    chosen, f = tune_gcn_links(x, y, model, grid=grid)
    assert chosen["reduce"] in REDUCES and chosen["step"] in PROPAGATION_STEPS
    again = pseudo_labels(x, model, max_size=chosen["max_size"], min_score=chosen["min_score"], step=chosen["step"],
                          reduce=chosen["reduce"])[0]  # fmt: skip
    assert pairwise(y, again)[2] == pytest.approx(f)
    assert f >= tune_propagation(*gcn_links(x, model), y, grid=grid)[1]


# ---------------------------------------------------------------- synthetic data
def test_make_identities_shapes_sizes_and_determinism():
    x, y = make_identities(3000, dim=64, seed=7, min_size=2, max_size=50)
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1, atol=1e-5)
    sizes = np.bincount(y)
    assert x.shape == (3000, 64) and x.dtype == np.float32 and y.dtype == np.int64
    assert sizes.max() <= 50 and (sizes[:-1] >= 2).all()  # only the last identity may be truncated
    x2, y2 = make_identities(3000, dim=64, seed=7, min_size=2, max_size=50)
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)


def _cross_identity_cos(x: np.ndarray, y: np.ndarray) -> float:
    """Mean cosine between the centroids of different identities."""
    c = np.stack([x[y == i].mean(0) for i in range(y.max() + 1)])
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    g = c @ c.T
    return float(g[~np.eye(len(c), dtype=bool)].mean())


def test_shared_nuisance_directions_make_identities_overlap():
    # shared mode directions pull different identities together (the calibrated difficulty);
    # independent directions leave them nearly orthogonal
    kw = dict(dim=128, seed=2, min_size=20, max_size=20, overlap=0.0, max_modes=1)
    shared = _cross_identity_cos(*make_identities(1000, nuisance=1, **kw))
    independent = _cross_identity_cos(*make_identities(1000, nuisance=0, **kw))
    assert shared > 0.3 and abs(independent) < 0.05


def test_space_seed_fixes_the_shared_directions():
    # one embedding space: the same nuisance directions for every dataset seed
    kw = dict(dim=64, min_size=50, max_size=50, overlap=0.0, max_modes=1, nuisance=1, spread=(0.99, 0.99))
    xa, _ = make_identities(2000, seed=1, **kw)
    xb, _ = make_identities(2000, seed=2, **kw)
    xc, _ = make_identities(2000, seed=2, space_seed=9, **kw)
    same_space = float(xa.mean(0) @ xb.mean(0) / np.linalg.norm(xa.mean(0)) / np.linalg.norm(xb.mean(0)))
    other_space = float(xa.mean(0) @ xc.mean(0) / np.linalg.norm(xa.mean(0)) / np.linalg.norm(xc.mean(0)))
    assert same_space > 0.9 and abs(other_space) < 0.3


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


# ---------------------------------------------------------------- size cap for any method
@pytest.mark.parametrize("path", ["tree", "knn"])
def test_cap_clusters_splits_only_oversize_clusters(blobs, path):
    from faceops.cluster.cap import cap_clusters

    x, y = blobs
    merged = np.where(y == 1, 0, y)  # identities 0 and 1 chained into one cluster, the others intact
    cap = int(max((y == 0).sum(), (y == 1).sum()))
    capped, split = cap_clusters(x, merged, max_size=cap, k=8, max_n=10_000 if path == "tree" else 2)
    assert split == 1 and np.bincount(capped).max() <= cap
    for identity in set(y.tolist()) - {0, 1}:  # clusters within the cap keep exactly their members
        members = capped[y == identity]
        assert len(set(members.tolist())) == 1 and (capped == members[0]).sum() == len(members)
    if path == "tree":  # two separated identities are the root's two subtrees: recovered exactly
        assert pairwise(y, capped)[2] == 1.0
    unchanged, none = cap_clusters(x, y, max_size=int(np.bincount(y).max()))
    assert none == 0 and pairwise(y, unchanged)[2] == 1.0


def test_cap_clusters_on_one_chained_cluster_keeps_faces_together(blobs):
    from faceops.cluster.cap import cap_clusters

    x, y = blobs
    capped, split = cap_clusters(x, np.zeros(len(y), np.int64), max_size=int(np.bincount(y).max()))
    precision, recall, _ = bcubed(y, capped)
    # no identity outgrows the cap, so none is cut (recall 1); two small sibling identities may share a piece
    assert split == 1 and np.bincount(capped).max() <= np.bincount(y).max() and recall == 1.0 and precision > 0.8
    with pytest.raises(ValueError, match="max_size"):
        cap_clusters(x, y, max_size=0)


def test_size_cap_is_a_multiple_of_the_largest_labelled_identity():
    from faceops.cluster.pseudo import size_cap
    from faceops.config.cluster import ClusterParams

    labels = np.repeat([0, 1, 2], [10, 4, 7])
    assert size_cap(labels, ClusterParams()) == 20  # 2 x 10
    assert size_cap(labels, ClusterParams(max_size_ratio=1.5)) == 15
    assert size_cap(labels, ClusterParams(max_size=12)) == 12  # max_size still caps
    assert size_cap(labels, ClusterParams(max_size_ratio=None)) == ClusterParams().max_size


# ---------------------------------------------------------------- pseudo_identities: the cluster stage's work
def _embedding_set(x: np.ndarray, y: np.ndarray, prefix: str, labelled: bool = True):
    from faceops.io.embeddings import EmbeddingSet

    return EmbeddingSet([f"{prefix}_{i:04d}" for i in range(len(x))], x,
                        [f"id{v}" if labelled else None for v in y])  # fmt: skip


@pytest.mark.parametrize("share", [0.0, 0.4], ids=["params-propagation", "calibrated"])
def test_pseudo_identities_cluster_the_target_with_what_the_labelled_set_taught(blobs, share):
    from faceops.cluster.pseudo import pseudo_identities
    from faceops.config.cluster import ClusterParams

    x, y = blobs
    xs, ys = make_identities(200, dim=32, seed=4, min_size=3, max_size=12, overlap=0.0, max_modes=1, nuisance=0,
                             spread=(0.97, 0.99))
    cfg = ClusterParams(k1=8, k2=3, u=3, epochs=8, calibration_share=share, split_step=0.8, compare_baselines=True)
    found = pseudo_identities(_embedding_set(xs, ys, "known"), _embedding_set(x, y, "target"), cfg, seed=0,
                              name="faces")  # fmt: skip
    assert [r["id"] for r in found.rows] == [f"target_{i:04d}" for i in range(len(x))]
    sizes = {r["cluster"]: r["size"] for r in found.rows}
    assert all(name.startswith("faces_c") for name in sizes) and found.metrics["clusters"] == len(sizes)
    assert set(found.kept) == {r["id"] for r in found.rows if r["size"] >= cfg.min_members}
    assert found.metrics["pseudo_identities"] == len({v["identity"] for v in found.kept.values()})
    assert found.propagation["calibrated"] == int(share > 0)
    if share == 0:  # the params' propagation: mean merge and the named split step, no magic number
        assert found.propagation == {"reduce": "mean", "min_score": cfg.min_score, "max_size": cfg.max_size,
                                     "step": 0.8, "calibrated": 0}  # fmt: skip
    assert found.metrics["gcn/bcubed/f"] > 0.8  # the hidden target labels only score
    calibration = {k.split("/")[1]: v for k, v in found.metrics.items() if k.startswith("calibration/")}
    if share == 0:  # auto without calibration identities: the GCN, chosen by nothing
        assert found.metrics["method"] == "gcn" and not calibration
    else:  # auto: the method best on the calibration identities wrote the pseudo-labels
        assert found.metrics["method"] == max(calibration, key=calibration.get)
    assert {"threshold/bcubed/f", "hdbscan/bcubed/f", "agglomerative/bcubed/f"} <= set(found.metrics)
    assert found.metrics["size_cap"] == 2 * int(np.bincount(ys).max()) and max(sizes.values()) <= 2 * 12
    record = found.model.to_record()
    assert LinkageGCN.from_record(record).config == found.model.config  # the stage saves the model it used


@pytest.mark.parametrize("method", ["threshold", "agglomerative"])
def test_no_method_writes_a_pseudo_identity_above_the_cap(blobs, method):
    """A loose threshold chains the target; the cap splits the chains, whatever method drew them."""
    from faceops.cluster.pseudo import pseudo_identities
    from faceops.config.cluster import ClusterParams

    x, y = blobs
    known_x, known_y = make_identities(200, dim=32, seed=4, min_size=3, max_size=6, overlap=0.0, max_modes=1,
                                       nuisance=0, spread=(0.97, 0.99))  # fmt: skip
    chained = x + 5.0 * np.ones_like(x) / np.sqrt(x.shape[1])  # a shared shift: every target face looks alike
    chained /= np.linalg.norm(chained, axis=1, keepdims=True)
    cfg = ClusterParams(method=method, k1=8, k2=3, u=3, epochs=2, calibration_share=0.0, compare_baselines=False)
    found = pseudo_identities(_embedding_set(known_x, known_y, "known"), _embedding_set(chained, y, "target"), cfg,
                              seed=0, name="faces")  # fmt: skip
    cap = 2 * int(np.bincount(known_y).max())
    assert found.metrics["size_cap"] == cap and max(r["size"] for r in found.rows) <= cap
    assert found.metrics["capped_clusters"] >= 1  # it did chain, and was split
    uncapped = pseudo_identities(_embedding_set(known_x, known_y, "known"), _embedding_set(chained, y, "target"),
                                 cfg.model_copy(update={"max_size_ratio": None}), seed=0, name="faces")  # fmt: skip
    assert max(r["size"] for r in uncapped.rows) > cap
    assert found.metrics[f"{method}/pairwise/f"] > uncapped.metrics[f"{method}/pairwise/f"]


def test_pseudo_identities_need_a_labelled_set(blobs):
    from faceops.cluster.pseudo import pseudo_identities
    from faceops.config.cluster import ClusterParams

    x, y = blobs
    with pytest.raises(ValueError, match="without an identity"):
        pseudo_identities(_embedding_set(x, y, "known", labelled=False), _embedding_set(x, y, "t"), ClusterParams(),
                          seed=0, name="faces")  # fmt: skip


def test_split_step_is_a_validated_param():
    from pydantic import ValidationError

    from faceops.config.cluster import ClusterParams

    assert ClusterParams().split_step == 0.6
    for bad in (0.0, 1.0):
        with pytest.raises(ValidationError, match="split_step"):
            ClusterParams(split_step=bad)
