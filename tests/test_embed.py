"""faceops.embed.sets: the embedder the params name, run over every (source, split) of the shard sets."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
import pytest

from faceops.config.embed import EmbedParams
from faceops.embed import embed_splits, make_embedder
from faceops.io.embeddings import EmbeddingSet
from faceops.io.shards import ShardSample, write_index, write_shards
from faceops.labels import sample_id


def _source(shards: Path, source: str, splits: dict[str, int]) -> None:
    """A shard set with ``splits`` (name -> samples) of noise faces, two identities."""
    rng = np.random.default_rng(0)
    folder, index = shards / source, {}
    for split, count in splits.items():
        samples = []
        for k in range(count):
            _, jpeg = cv2.imencode(".jpg", rng.integers(0, 255, (112, 112, 3), dtype=np.uint8))
            key = sample_id(source, f"{split}/{k}.jpg")
            samples.append(ShardSample(key, jpeg.tobytes(), {"id": key, "source": source, "identity": f"p{k % 2}"}))
        infos = write_shards(samples, folder, split=split, maxcount=2)
        index[split] = {"shards": [i.name for i in infos], "samples": count, "identities": min(count, 2)}
    write_index(folder, {"format": 1, "source": source, "samples": sum(splits.values()), "splits": index})


def test_embed_splits_embeds_each_present_split_and_reports_the_missing_ones(tmp_path):
    _source(tmp_path, "faces", {"train": 3, "test": 0})
    _source(tmp_path, "more", {"test": 2})
    seen, bars = [], []

    def fake(urls: list[Path], advance) -> EmbeddingSet:
        seen.append([u.name for u in urls])
        advance(len(urls))
        return EmbeddingSet([u.name for u in urls], np.eye(len(urls), 4, dtype=np.float32), [None] * len(urls))

    @contextmanager
    def bar(description: str, total: int, unit: str):
        bars.append((description, total, unit))
        yield lambda n=1: None

    found = list(embed_splits(tmp_path, ["faces", "more"], ["train", "test"], fake, progress=bar))
    assert [(source, split, s is not None) for source, split, s in found] == [
        ("faces", "train", True), ("faces", "test", False), ("more", "train", False), ("more", "test", True)]
    assert seen == [["train-000000.tar", "train-000001.tar"], ["test-000000.tar"]]
    assert bars == [("embed faces/train", 3, "faces"), ("embed more/test", 2, "faces")]


@pytest.mark.timeout(120)
def test_make_embedder_runs_the_exported_model_in_this_process(tmp_path):
    import torch

    from faceops.io.checkpoint import save_checkpoint
    from faceops.models import create_model
    from faceops.train import model_record

    _source(tmp_path / "shards", "faces", {"train": 3})
    torch.manual_seed(0)
    model = create_model("swinface_cpu", mlff_width=16).eval()
    save_checkpoint(tmp_path / "model.pt", model_record(model, "swinface_cpu", {"mlff_width": 16}, identities=["a"],
                                                         step=7, params={}, init="scratch"), kind="model")  # fmt: skip
    title, embed_split = make_embedder(EmbedParams(batch_size=2), model_file=tmp_path / "model.pt")
    assert title == "embed (swinface_cpu, step 7, cpu)"
    [(_, _, found)] = embed_splits(tmp_path / "shards", ["faces"], ["train"], embed_split)
    assert sorted(found.ids) == sorted(sample_id("faces", f"train/{k}.jpg") for k in range(3))
    assert found.vectors.shape == (3, model.num_features) and found.identities.count("p0") == 2
    np.testing.assert_allclose(np.linalg.norm(found.vectors, axis=1), 1.0, rtol=1e-5)
