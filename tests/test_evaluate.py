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
    assert len(plots["confusion"]) == len(_metas())  # one row per sample: DVC's confusion template counts rows
    assert all(c["actual"] == c["predicted"] for c in plots["confusion"])
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


# ---- the evaluate stage's work: shard splits and insightface .bin sets -------------------------------------


class _MeanColour(torch.nn.Module):
    """A stand-in model: the embedding is each image's mean colour per quadrant (same face, same vector)."""

    def forward(self, x):
        pooled = torch.nn.functional.adaptive_avg_pool2d(x, 2).flatten(1)  # [B, 12]
        return {"Recognition": pooled + 1e-3}


def _encoded(image: np.ndarray, ext: str = ".png") -> bytes:
    """PNG (lossless: exact pixels, as .bin sets may hold) or JPEG (what shards hold)."""
    import cv2

    return cv2.imencode(ext, cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 100])[1].tobytes()


def _faces(n: int, side: int = 112) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [np.repeat(np.repeat(rng.integers(0, 255, (2, 2, 3), dtype=np.uint8), side // 2, 0), side // 2, 1)
            for _ in range(n)]  # fmt: skip


def test_bin_batches_decode_as_the_shards_do_and_bring_faces_to_the_input_size():
    from faceops.eval.bins import bin_batches

    faces = _faces(3)
    batches = list(bin_batches([_encoded(f) for f in faces], image_size=112, batch_size=2))
    assert [b["key"] for b in batches] == [["0", "1"], ["2"]] and batches[0]["meta"] == [{}, {}]
    images = torch.cat([b["image"] for b in batches])
    assert images.shape == (3, 3, 112, 112) and images.dtype == torch.uint8
    assert np.array_equal(images.permute(0, 2, 3, 1).numpy(), np.stack(faces))  # 112 stays pixel for pixel
    small = next(bin_batches([_encoded(f) for f in _faces(1, side=56)], image_size=112, batch_size=4))["image"]
    assert small.shape == (1, 3, 112, 112)  # warped template to template: a plain 2x scale
    with pytest.raises(ValueError, match="must be square"):
        next(bin_batches([_encoded(np.zeros((112, 96, 3), np.uint8))], image_size=112, batch_size=4))


def test_evaluate_model_scores_every_source_and_bin_set(tmp_path):
    import pickle

    from faceops.eval.model import evaluate_model
    from faceops.io.shards import ShardSample, write_shards

    faces = _faces(6)
    metas = [{"identity": f"id{k // 2}"} for k in range(6)]
    samples = [ShardSample(f"s_{k}", _encoded(face, ".jpg"), {"id": f"s_{k}", **meta})
               for k, (face, meta) in enumerate(zip(faces, metas, strict=True))]  # fmt: skip
    urls = [tmp_path / info.name for info in write_shards(samples, tmp_path, split="test", maxcount=4)]
    pairs = [faces[0], faces[0], faces[0], faces[2], faces[3], faces[3], faces[4], faces[5]]
    (tmp_path / "lfw.bin").write_bytes(pickle.dumps(([_encoded(f) for f in pairs], [True, False, True, False])))
    metrics, plots = evaluate_model(_MeanColour(), {"faces": urls}, bins={"lfw": tmp_path / "lfw.bin"}, image_size=112,
                                    n_pairs=20, folds=2, seed=0, batch_size=4)  # fmt: skip
    assert "faces/verif/acc" in metrics and metrics["bin/lfw/verif/acc"] == 1.0  # identical faces: same vectors
    assert set(plots) == {"faces_roc"} and {"fpr", "tpr", "threshold"} <= set(plots["faces_roc"][0])
