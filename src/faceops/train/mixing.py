"""Multi-source training batches: every source contributes a fixed share of every batch.

SwinFace (arXiv:2308.11509) zips four loaders (recognition, age/gender, attributes, expression) and
concatenates their slices into one batch. Here each source is an endless stream of its own slice size
(``batch_counts``); a source that labels only some tasks simply leaves the other labels missing, and
the masked loss ignores them. Each source cycles through its shards on its own: its epoch ``e`` is read
in the order fixed by (seed, e) (``faceops.data.loader.ShardDataset``), split by rank and worker.

Resuming: the stream's position is ``(epoch, batches consumed in that epoch)`` per source plus the
flip generator's state. ``load_state_dict`` re-creates each source's epoch iterator and skips the
consumed batches, so a resumed run sees exactly the batches an uninterrupted run would.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from faceops.data.loader import torch_batches
from faceops.train.batch import flip_images

__all__ = ["Batch", "batch_counts", "MixedBatches"]

Encode = Callable[[list[dict]], tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]]


@dataclass(frozen=True)
class Batch:
    """One training batch.

    Attributes:
        images: uint8 faces [B, 3, 112, 112] (sources concatenated in the order they were given).
        targets: label key -> [B] targets (``faceops.train.batch.to_targets``).
        masks: label key -> [B] bool, True where the label is present.
        keys: sample ids [B].
        sources: source name per sample [B].
    """

    images: torch.Tensor
    targets: dict[str, torch.Tensor]
    masks: dict[str, torch.Tensor]
    keys: list[str]
    sources: list[str]


def batch_counts(shares: Mapping[str, float], batch_size: int) -> dict[str, int]:
    """Samples per source in each batch: shares of ``batch_size`` rounded by largest remainder.

    The counts sum to ``batch_size`` exactly; ties go to the source listed first.

    Raises:
        ValueError: shares not positive or not summing to 1, or a source would get no sample.
    """
    if not shares or any(s <= 0 for s in shares.values()) or abs(sum(shares.values()) - 1.0) > 1e-6:
        raise ValueError(f"shares must be positive and sum to 1, got {dict(shares)}")
    exact = {name: share * batch_size for name, share in shares.items()}
    counts = {name: math.floor(x) for name, x in exact.items()}
    by_remainder = sorted(exact, key=lambda n: -(exact[n] - counts[n]))  # stable: first listed wins ties
    for name in by_remainder[: batch_size - sum(counts.values())]:
        counts[name] += 1
    empty = [name for name, n in counts.items() if n == 0]
    if empty:
        raise ValueError(
            f"batch_size {batch_size} gives sources {empty} no sample at shares {dict(shares)}; "
            "raise batch_size or their share"
        )
    return counts


class MixedBatches:
    """Endless iterator of :class:`Batch` mixing several shard sources at fixed counts per batch.

    Args:
        sources: source name -> its training shard files.
        counts: source name -> samples per batch (``batch_counts``); same keys as ``sources``.
        encode: label dicts of the whole batch -> ``(targets, masks)`` (e.g. a ``functools.partial``
            of ``to_targets``).
        seed: seed of the shard/sample shuffles and of the flips.
        shuffle_buffer: sample shuffle buffer per reader (0 = read in order).
        num_workers: DataLoader workers per source.
        hflip: probability of mirroring each image.
        rank, world_size: node split (default: torch.distributed when initialised).
        pin_memory: pin batches for host-to-GPU copies.
    """

    def __init__(
        self,
        sources: Mapping[str, Sequence[str | Path]],
        counts: Mapping[str, int],
        *,
        encode: Encode,
        seed: int,
        shuffle_buffer: int = 0,
        num_workers: int = 0,
        hflip: float = 0.0,
        rank: int | None = None,
        world_size: int | None = None,
        pin_memory: bool = False,
    ) -> None:
        if set(sources) != set(counts):
            raise ValueError(f"sources {sorted(sources)} and counts {sorted(counts)} must name the same sources")
        self.sources = {name: list(urls) for name, urls in sources.items()}
        self.counts = dict(counts)
        self.encode = encode
        self.seed, self.shuffle_buffer, self.num_workers = seed, shuffle_buffer, num_workers
        self.hflip, self.rank, self.world_size, self.pin_memory = hflip, rank, world_size, pin_memory
        self._flip_generator = torch.Generator().manual_seed(seed)
        self._position = {name: {"epoch": 0, "position": 0} for name in self.sources}
        self._iterators: dict[str, Iterator[dict[str, Any]]] = {}

    def _open(self, name: str) -> Iterator[dict[str, Any]]:
        """This source's iterator for its current epoch, advanced past the batches already consumed."""
        epoch, position = self._position[name]["epoch"], self._position[name]["position"]
        dataset, collate = torch_batches(
            self.sources[name], shuffle_buffer=self.shuffle_buffer, seed=self.seed, epoch=epoch,
            rank=self.rank, world_size=self.world_size,
        )  # fmt: skip
        # An own generator keeps DataLoader's worker-seed draw off the global RNG, which drives dropout
        # and must not depend on when an epoch iterator happens to be created.
        loader = DataLoader(
            dataset, batch_size=self.counts[name], num_workers=self.num_workers, collate_fn=collate,
            drop_last=True, pin_memory=self.pin_memory, generator=torch.Generator().manual_seed(self.seed + epoch),
        )  # fmt: skip
        iterator = iter(loader)
        for _ in itertools.islice(iterator, position):
            pass
        return iterator

    def _next_slice(self, name: str) -> dict[str, Any]:
        """The next ``counts[name]`` samples of one source, starting its next epoch when one ends."""
        for _ in range(2):
            if name not in self._iterators:
                self._iterators[name] = self._open(name)
            batch = next(self._iterators[name], None)
            if batch is not None:
                self._position[name]["position"] += 1
                return batch
            if self._position[name]["position"] == 0:
                break
            del self._iterators[name]
            self._position[name] = {"epoch": self._position[name]["epoch"] + 1, "position": 0}
        raise ValueError(
            f"source {name!r} gives this process no full slice of {self.counts[name]} samples in epoch "
            f"{self._position[name]['epoch']} ({len(self.sources[name])} shards, split over ranks and "
            f"{max(1, self.num_workers)} workers); use more shards (smaller shard.maxcount) or fewer workers"
        )

    def __iter__(self) -> MixedBatches:
        return self

    def __next__(self) -> Batch:
        slices = [self._next_slice(name) for name in self.sources]
        images = torch.cat([s["image"] for s in slices])  # [B, 3, H, W] uint8
        metas = [meta for s in slices for meta in s["meta"]]
        targets, masks = self.encode(metas)
        return Batch(
            images=flip_images(images, self.hflip, self._flip_generator),
            targets=targets,
            masks=masks,
            keys=[key for s in slices for key in s["key"]],
            sources=[name for name, s in zip(self.sources, slices) for _ in s["key"]],
        )

    def state_dict(self) -> dict[str, Any]:
        """Stream position: per source ``{"epoch", "position"}`` and the flip generator state."""
        return {
            "sources": {name: dict(pos) for name, pos in self._position.items()},
            "flip_generator": self._flip_generator.get_state(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from a :meth:`state_dict`; each source re-opens its epoch and skips consumed batches.

        Raises:
            ValueError: the state names other sources than this stream.
        """
        if set(state["sources"]) != set(self.sources):
            raise ValueError(
                f"stream state is for sources {sorted(state['sources'])}, this stream reads {sorted(self.sources)}"
            )
        self._position = {name: {"epoch": int(p["epoch"]), "position": int(p["position"])}
                          for name, p in state["sources"].items()}  # fmt: skip
        self._flip_generator.set_state(state["flip_generator"])
        self._iterators = {}
