"""Evaluation assembly: predictions from a model, metrics from predictions (metric identities)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from faceops.eval.evaluate import Predictions, predict, score_predictions, verification_pairs
from faceops.labels import CELEBA_ATTRIBUTES


def _metas(n_ids=8, per_id=6, groups=("g0", "g1")):
    metas = []
    for i in range(n_ids):
        for k in range(per_id):
            meta = {"identity": f"id{i}", "group": groups[i % len(groups)], "expression": (i + k) % 7,
                    "age": 20.0 + i, "Male": i % 2}
            meta.update({name: (i + j) % 2 for j, name in enumerate(CELEBA_ATTRIBUTES)})
            metas.append(meta)
    return metas  # fmt: skip


def _perfect(metas, dim=16):
    ids = sorted({m["identity"] for m in metas})
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(len(ids), dim)).astype(np.float32)
    emb = np.stack([centres[ids.index(m["identity"])] for m in metas])
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    onehot = lambda v, k: np.eye(k, dtype=np.float32)[v]  # noqa: E731
    outputs = {
        "Expression": np.stack([onehot(m["expression"], 7) for m in metas]),
        "Age": np.asarray([[m["age"]] for m in metas], np.float32),
        **{name: np.stack([onehot(m[name], 2) for m in metas]) for name in CELEBA_ATTRIBUTES},
    }
    return Predictions(keys=[str(i) for i in range(len(metas))], embeddings=emb, outputs=outputs, metas=metas)


def test_perfect_predictions_score_perfectly():
    metrics, plots = score_predictions(_perfect(_metas()), n_pairs=200, seed=0)
    assert metrics["verif/acc"] == 1.0 and metrics["verif/auc"] == 1.0
    assert metrics["expr/acc"] == 1.0
    assert metrics["age/mae"] == 0.0 and metrics["age/eps"] == 0.0
    assert metrics["attr/mean_acc"] == 1.0 and metrics["gender/acc"] == 1.0
    assert metrics["group/ser"] == 1.0 and metrics["group/std"] == 0.0
    assert sum(c["count"] for c in plots["confusion"]) == len(_metas())
    assert plots["roc"][-1]["tpr"] == 1.0


def test_missing_labels_are_masked_not_negative():
    metas = _metas()
    for m in metas[::2]:
        m["expression"] = None
        m["Eyeglasses"] = None
    pred = _perfect(_metas())
    pred = Predictions(pred.keys, pred.embeddings, pred.outputs, metas)
    metrics, _ = score_predictions(pred, n_pairs=100, seed=0)
    assert metrics["expr/acc"] == 1.0
    assert metrics["expr/n"] == len(metas) // 2
    assert metrics["attr/Eyeglasses/acc"] == 1.0


def test_pairs_stay_within_groups_and_are_deterministic():
    metas = _metas(n_ids=8, per_id=5)
    ids = [m["identity"] for m in metas]
    groups = [m["group"] for m in metas]
    a, b, same = verification_pairs(ids, groups, n_pairs=60, seed=3)
    assert all(groups[i] == groups[j] for i, j in zip(a, b))
    assert all((ids[i] == ids[j]) == s for i, j, s in zip(a, b, same))
    a2, b2, _ = verification_pairs(ids, groups, n_pairs=60, seed=3)
    assert np.array_equal(a, a2) and np.array_equal(b, b2)


def test_pairs_are_capped_by_what_a_tiny_set_allows():
    ids = ["a", "a", "b", "b"]
    a, b, same = verification_pairs(ids, [None] * 4, n_pairs=1000, seed=0)
    assert len(a) == 4 and same.sum() == 2


def test_predict_collects_outputs_in_order():
    class Toy(torch.nn.Module):
        def forward(self, x):
            flat = x.flatten(1)
            return {"Recognition": flat[:, :4] + 1.0, "Age": flat[:, :1]}

    batches = [
        {"image": torch.full((2, 3, 2, 2), v, dtype=torch.uint8), "meta": [{"i": v}] * 2, "key": [f"k{v}a", f"k{v}b"]}
        for v in (10, 20)
    ]
    pred = predict(Toy(), batches, normalize=lambda t: t.float())
    assert pred.keys == ["k10a", "k10b", "k20a", "k20b"]
    assert pred.embeddings.shape == (4, 4)
    assert np.allclose(np.linalg.norm(pred.embeddings, axis=1), 1.0)
    assert pred.outputs["Age"][:, 0].tolist() == [10.0, 10.0, 20.0, 20.0]
    with pytest.raises(ValueError, match="empty"):
        predict(Toy(), [], normalize=lambda t: t.float())


def test_too_few_identities_leave_verification_out_instead_of_failing():
    metas = _metas(n_ids=1, per_id=5)
    metrics, plots = score_predictions(_perfect(metas), n_pairs=100, seed=0)
    assert not any(k.startswith("verif/") for k in metrics)
    assert "roc" not in plots and metrics["expr/acc"] == 1.0
