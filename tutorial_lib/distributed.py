"""Data-parallel training with PyTorch's own engine: ``torchrun`` + ``DistributedDataParallel``.

Introduced in the training appendix. The same training loop runs as one
process or as many::

    python -m tutorial_lib.train denoiser --config full                          # one process
    torchrun --nproc-per-node 2 -m tutorial_lib.train denoiser --config full     # two CPU ranks (gloo)
    torchrun --nproc-per-node 8 -m tutorial_lib.train denoiser --config full     # eight GPUs (nccl)

``torchrun`` starts the processes and sets ``RANK``, ``LOCAL_RANK`` and
``WORLD_SIZE``; :func:`setup` reads them and joins the process group (gloo on
CPU, nccl on CUDA). Data parallelism: every rank holds the whole model, draws
its own share of the global batch, and DDP averages the gradients across
ranks during ``backward()``, so after each optimizer step every rank holds the
same weights (the property ``tests/test_distributed.py`` checks on two CPU
ranks). Rank 0 alone writes checkpoints, logs and the final weights.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from . import _checks

__all__ = ["Distributed", "setup", "teardown", "gather_objects"]


@dataclass(frozen=True)
class Distributed:
    """Where this process stands: ``rank`` of ``world_size`` processes, on ``device``."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def share(self, global_batch: int) -> int:
        """This rank's part of a global batch (which must divide evenly over the ranks)."""
        _checks.that(global_batch % self.world_size == 0, f"batch_size={global_batch} must be divisible by the number of processes ({self.world_size})")
        return global_batch // self.world_size

    def wrap(self, module: torch.nn.Module) -> torch.nn.Module:
        """``DistributedDataParallel(module)`` when there are several processes, else ``module``."""
        if not self.enabled:
            return module
        ids = [self.local_rank] if self.device.type == "cuda" else None
        return torch.nn.parallel.DistributedDataParallel(module, device_ids=ids)

    def mean(self, value: float) -> float:
        """The average of a float over all ranks (for logging the global loss)."""
        if not self.enabled:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return float(t) / self.world_size


def setup(device: str | None = None) -> Distributed:
    """Join the process group if started by ``torchrun`` (``WORLD_SIZE`` > 1), else a single process.

    ``device``: ``None`` picks ``cuda:LOCAL_RANK`` when CUDA is available under
    ``torchrun``, otherwise the CPU; the backend follows (nccl / gloo).
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Distributed(device=torch.device(device or "cpu"))
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device is None:
        device = f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return Distributed(rank=rank, world_size=world_size, local_rank=local_rank, device=dev)


def teardown(ctx: Distributed) -> None:
    """Leave the process group (a no-op for one process)."""
    if ctx.enabled and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def gather_objects(ctx: Distributed, obj) -> list:
    """Every rank's ``obj`` as a list indexed by rank (on every rank); ``[obj]`` for one process.

    Used to checkpoint each rank's random-generator state, so a resumed run draws
    the batches it would have drawn.
    """
    if not ctx.enabled:
        return [obj]
    out = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out
