"""Multi-process training (torchrun + DDP): process-group setup, device choice, cross-rank means.

``torchrun --nproc_per_node N -m stages.train ...`` starts N processes with ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` in their environment. The library never reads the
environment itself: the stage passes ``os.environ`` to :func:`init_distributed`, tests pass a dict.
Backend: NCCL for CUDA devices, gloo for CPU (tests run DDP on CPU with gloo).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["DistInfo", "init_distributed", "close_distributed", "world_info", "mean_across_ranks"]


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job.

    Attributes:
        rank: global rank (0 writes every output).
        world_size: number of processes.
        local_rank: rank on this machine (picks the GPU).
        device: the device this process trains on.
    """

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """True on the process that writes checkpoints, logs and outputs."""
        return self.rank == 0


def _env_int(env: Mapping[str, str], key: str, default: int) -> int:
    value = env.get(key)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {key}={value!r} must be an integer (set by torchrun)") from None


def init_distributed(env: Mapping[str, str], *, use_cuda: bool | None = None) -> DistInfo:
    """Join the torchrun job described by ``env`` (or run alone when ``WORLD_SIZE`` is unset or 1).

    Args:
        env: the process environment (``os.environ``) or an equivalent mapping.
        use_cuda: train on CUDA (device ``cuda:LOCAL_RANK``, NCCL); default: when CUDA is available.

    Returns:
        The rank, world size, local rank and device. With ``world_size > 1`` the default process
        group is initialised (TCP rendezvous at ``MASTER_ADDR:MASTER_PORT``).

    Raises:
        ValueError: a non-integer rank variable, an inconsistent rank, or missing ``MASTER_ADDR`` /
            ``MASTER_PORT`` for a multi-process job.
    """
    use_cuda = torch.cuda.is_available() if use_cuda is None else use_cuda
    world_size = _env_int(env, "WORLD_SIZE", 1)
    rank = _env_int(env, "RANK", 0)
    local_rank = _env_int(env, "LOCAL_RANK", rank)
    if not 0 <= rank < world_size:
        raise ValueError(f"RANK={rank} must be in [0, WORLD_SIZE={world_size}); launch with torchrun")
    device = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    if world_size > 1 and not dist.is_initialized():
        missing = [k for k in ("MASTER_ADDR", "MASTER_PORT") if k not in env]
        if missing:
            raise ValueError(f"WORLD_SIZE={world_size} but {missing} are not set; launch with torchrun")
        dist.init_process_group(
            "nccl" if use_cuda else "gloo",
            init_method=f"tcp://{env['MASTER_ADDR']}:{env['MASTER_PORT']}",
            rank=rank,
            world_size=world_size,
            device_id=device if use_cuda else None,
        )
    return DistInfo(rank, world_size, local_rank, device)


def close_distributed() -> None:
    """Destroy the default process group if one was initialised (safe to call when running alone)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def world_info() -> tuple[int, int]:
    """(rank, world_size) of the initialised process group, or (0, 1) without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def mean_across_ranks(values: torch.Tensor) -> torch.Tensor:
    """Element-wise mean of ``values`` [N] over all ranks (identity without a process group)."""
    if world_info()[1] == 1:
        return values
    total = values.clone()
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total / dist.get_world_size()
