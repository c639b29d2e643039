"""The streaming shard reader: exactly-once delivery across workers and ranks, shuffling, errors."""

from __future__ import annotations

import io
import tarfile
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from faceops.data.loader import ShardDataset, collate_samples, decode_jpeg, make_loader
from faceops.io.shards import ShardError, ShardSample, split_urls, write_index, write_shards
from faceops.labels import sample_id

N_SAMPLES = 24
MAXCOUNT = 3  # 8 shards: divisible by 2 ranks x 2 workers


def _face_jpeg(rng: np.random.Generator) -> bytes:
    image = cv2.resize(rng.integers(0, 256, (7, 7, 3), dtype=np.uint8), (112, 112), interpolation=cv2.INTER_CUBIC)
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return buf.tobytes()


@pytest.fixture(scope="module")
def samples() -> dict[str, ShardSample]:
    rng = np.random.default_rng(0)
    out = {}
    for i in range(N_SAMPLES):
        key = sample_id("unit", f"{i}.jpg")
        out[key] = ShardSample(key, _face_jpeg(rng), {"id": key, "source": "unit", "identity": f"p{i % 6}", "age": i})
    return out


@pytest.fixture(scope="module")
def shard_dir(tmp_path_factory, samples) -> Path:
    out = tmp_path_factory.mktemp("shards")
    infos = write_shards(samples.values(), out, split="train", maxcount=MAXCOUNT)
    write_index(out, {"format": 1, "samples": N_SAMPLES,
                      "splits": {"train": {"shards": [i.name for i in infos], "samples": N_SAMPLES, "identities": 6}}})
    return out


@pytest.fixture(scope="module")
def urls(shard_dir) -> list[Path]:
    return split_urls(shard_dir, "train")


def _keys(dataset) -> list[str]:
    return [sample["key"] for sample in dataset]


def test_split_urls(shard_dir, urls):
    assert [u.name for u in urls] == [f"train-{i:06d}.tar" for i in range(N_SAMPLES // MAXCOUNT)]
    with pytest.raises(KeyError, match=r"available: \['train'\]"):
        split_urls(shard_dir, "val")


def test_round_trip_in_order(urls, samples):
    out = list(ShardDataset(urls))
    assert [s["key"] for s in out] == sorted(samples)
    for s in out:
        expected = cv2.cvtColor(cv2.imdecode(np.frombuffer(samples[s["key"]].jpg, np.uint8), cv2.IMREAD_COLOR),
                                cv2.COLOR_BGR2RGB)
        assert s["image"].shape == (3, 112, 112) and s["image"].dtype == torch.uint8
        assert torch.equal(s["image"].permute(1, 2, 0), torch.from_numpy(expected))
        assert s["meta"] == samples[s["key"]].meta


def test_numpy_decode_and_label_fn(urls, samples):
    dataset = ShardDataset(urls[:2], decode="numpy", label_fn=lambda meta: meta["identity"], transform=np.fliplr)
    for image, label in dataset:
        assert image.shape == (112, 112, 3) and image.dtype == np.uint8
        assert label.startswith("p")


@pytest.mark.parametrize("num_workers", [0, 2])
def test_dataloader_sees_every_sample_once(urls, samples, num_workers):
    loader = make_loader(urls, batch_size=5, num_workers=num_workers, shuffle_buffer=8, seed=3)
    keys = []
    for batch in loader:
        n = len(batch["key"])
        assert batch["image"].shape == (n, 3, 112, 112) and batch["image"].dtype == torch.uint8
        assert [m["id"] for m in batch["meta"]] == batch["key"]
        keys += batch["key"]
    assert Counter(keys) == Counter(list(samples))


@pytest.mark.parametrize("shards", [8, 7], ids=["divisible", "uneven"])
def test_simulated_ranks_partition_the_samples(urls, shards, samples):
    per_rank = [
        [k for batch in make_loader(urls[:shards], batch_size=4, num_workers=2, shuffle_buffer=5, seed=1,
                                    rank=rank, world_size=2) for k in batch["key"]]
        for rank in range(2)
    ]  # fmt: skip
    both = per_rank[0] + per_rank[1]
    assert len(both) == len(set(both)) == shards * MAXCOUNT  # disjoint and complete
    if shards == 8:
        assert len(per_rank[0]) == len(per_rank[1])
    else:  # 7 shards over 2 ranks: rank 0 reads 4, rank 1 reads 3 (documented)
        assert sorted(map(len, per_rank)) == [3 * MAXCOUNT, 4 * MAXCOUNT]


def test_shuffle_is_deterministic_per_seed_and_epoch(urls, samples):
    ordered = _keys(ShardDataset(urls))
    a = _keys(ShardDataset(urls, shuffle_buffer=10, seed=7, epoch=0))
    assert a != ordered and sorted(a) == ordered
    assert _keys(ShardDataset(urls, shuffle_buffer=10, seed=7, epoch=0)) == a
    other_epoch = ShardDataset(urls, shuffle_buffer=10, seed=7, epoch=0)
    other_epoch.set_epoch(1)
    assert _keys(other_epoch) != a
    assert _keys(ShardDataset(urls, shuffle_buffer=10, seed=8, epoch=0)) != a


def test_collate_keeps_pixels_and_layout(urls):
    batch = [s for _, s in zip(range(4), ShardDataset(urls))]
    stacked = collate_samples(batch)["image"]
    assert torch.equal(stacked, torch.stack([s["image"].contiguous() for s in batch]))
    assert stacked.is_contiguous(memory_format=torch.channels_last)
    images, labels = collate_samples([(s["image"], s["meta"]["age"]) for s in batch])
    assert torch.equal(images, stacked) and labels.tolist() == [s["meta"]["age"] for s in batch]


def test_truncated_shard_names_the_file(urls, tmp_path):
    data = Path(urls[1]).read_bytes()
    broken = tmp_path / "train-000001.tar"
    broken.write_bytes(data[: len(data) // 2])
    with pytest.raises(ShardError, match=f"{broken}.*truncated"):
        list(ShardDataset([urls[0], broken]))
    # a skipping handler drops the rest of the broken shard and goes on with the next one
    skipped = []
    kept = _keys(ShardDataset([broken, urls[2]], handler=lambda exn: skipped.append(exn) is None))
    assert len(skipped) == 1 and len(kept) >= MAXCOUNT


def test_malicious_member_refused(tmp_path):
    path = tmp_path / "evil.tar"
    with tarfile.open(path, "w") as tf:
        info = tarfile.TarInfo("../x.jpg")
        info.size = 3
        tf.addfile(info, io.BytesIO(b"\xff\xd8\xff"))
    with pytest.raises(ShardError, match=r"evil.tar.*'\.\.'"):
        list(ShardDataset([path]))


def test_undecodable_sample_names_key_and_shard(tmp_path):
    key = sample_id("unit", "broken.jpg")
    (info,) = write_shards([ShardSample(key, b"\xff\xd8\xff" + b"junk", {"id": key})], tmp_path, split="test",
                           maxcount=1)
    with pytest.raises(ShardError, match=f"test-000000.tar: sample '{key}'.*cannot decode"):
        list(ShardDataset([tmp_path / info.name]))


def test_transform_errors_keep_their_type_with_a_note(urls):
    def bad_transform(image):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom") as caught:
        list(ShardDataset(urls[:1], transform=bad_transform))
    assert any(str(urls[0]) in note for note in caught.value.__notes__)


def test_bad_arguments(urls):
    with pytest.raises(ValueError, match="at least one"):
        ShardDataset([])
    with pytest.raises(ValueError, match="rank"):
        ShardDataset(urls, rank=2, world_size=2)
    with pytest.raises(ValueError, match="decode"):
        ShardDataset(urls, decode="pil")
    with pytest.raises(ValueError, match="cannot decode"):
        decode_jpeg(b"not a jpeg")
