"""Training on several processes with PyTorch's own engine (torchrun + DistributedDataParallel).

`torchrun --nproc_per_node N -m segstudio train PROJECT` starts N copies of the ordinary
command; each finds RANK / WORLD_SIZE / LOCAL_RANK in its environment and `setup()` joins them
into one process group (NCCL on CUDA, gloo otherwise). Without those variables, or with a world
of one, everything here is a pass-through and `train()` runs exactly as a single process.

What differs between ranks, and what must not:
- every rank builds the same model from the same seed; DDP averages the gradients, so the
  weights stay identical; batch-norm buffers are copied from rank 0 at the end;
- each rank draws its own patches (the sampler's seed is mixed with the rank);
- rank 0 alone creates the run folder (its name is broadcast), validates, writes checkpoints
  and the model card; the other ranks receive the outcome of each validation from it;
- stopping (cancel, time budget, a non-finite loss) is agreed by all-reduce, so no rank is
  left waiting in a collective that the others have abandoned.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn

log = logging.getLogger(__name__)

T = TypeVar("T")

# Each rank writes {"rank", "state_sha256", "first_batch_sha256"} to
# <dir>/rank<N>.json at the end of train(); the multi-process test compares them.
RANK_DUMP_ENV = "SEGSTUDIO_TEST_RANK_DUMP"


def env_world_size() -> int:
    """WORLD_SIZE as torchrun sets it; 1 when not launched by torchrun."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def env_rank() -> int:
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


def is_main_process() -> bool:
    """Rank 0 of a torchrun launch, or the only process: the one that prints and writes."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return env_rank() == 0


def quiet_other_ranks() -> None:
    """Only rank 0 logs below ERROR, so N processes do not print every warning N times."""
    if not is_main_process():
        logging.getLogger().setLevel(logging.ERROR)


class DistContext:
    """The process group one train() call runs in; `enabled` is False for a single process."""

    def __init__(self, device: torch.device, rank: int = 0, world_size: int = 1,
                 local_rank: int = 0, owns_group: bool = False) -> None:
        self.device = device
        self.rank, self.world_size, self.local_rank = rank, world_size, local_rank
        self._owns_group = owns_group

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    # -- set-up --------------------------------------------------------------------------------
    def wrap(self, model: nn.Module) -> nn.Module:
        """DistributedDataParallel around `model` (already on this rank's device)."""
        if not self.enabled:
            return model
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [self.device.index] if self.device.type == "cuda" else None
        # gradient_as_bucket_view: gradients live in the all-reduce buckets (one copy fewer)
        return DDP(model, device_ids=ids, output_device=ids[0] if ids else None,
                   gradient_as_bucket_view=True)

    def seed(self, seed: int) -> int | tuple[int, int]:
        """The patch sampler's seed for this rank: rank 0 keeps the single-process seed."""
        return seed if self.rank == 0 else (seed, self.rank)

    # -- agreement -----------------------------------------------------------------------------
    def from_main(self, make: Callable[[], T] | None = None, value: Any = None) -> T:
        """Rank 0's `make()` (or `value`), given to every rank (pickled, so keep it small)."""
        if not self.enabled:
            return make() if make is not None else value
        box = [(make() if make is not None else value) if self.is_main else None]
        dist.broadcast_object_list(box, src=0, device=self._comm_device())
        return box[0]

    def shared_run_dir(self, make: Callable[[], Path]) -> Path:
        """Rank 0 creates the run folder; every rank gets its path (same layout as one process)."""
        return Path(self.from_main(lambda: str(make())))

    def agree_step(self, fraction: float, stop: bool, cancelled: bool
                   ) -> tuple[float, bool, bool]:
        """(mean run fraction, any rank wants to stop, any rank was cancelled): one all-reduce.

        The fraction drives the learning rate; under a time budget each rank's clock gives a
        slightly different one, and different rates would pull identical weights apart.
        """
        if not self.enabled:
            return fraction, stop, cancelled
        total, stops, cancels = self._sum([fraction, float(stop), float(cancelled)])
        return total / self.world_size, stops > 0, cancels > 0

    def mean(self, value: float) -> float:
        """The mean of `value` over ranks (a NaN on any rank makes it NaN everywhere)."""
        if not self.enabled:
            return value
        return self._sum([value])[0] / self.world_size

    def _sum(self, values: list[float]) -> list[float]:
        t = torch.tensor(values, dtype=torch.float64, device=self._comm_device())
        dist.all_reduce(t)
        return t.tolist()

    def sync_buffers(self, model: nn.Module) -> None:
        """Copy rank 0's buffers (batch-norm running statistics) to every rank.

        DDP broadcasts buffers before each forward, but each rank's last forward then updates
        its own copy; after this every rank holds the weights that rank 0 saved.
        """
        if not self.enabled:
            return
        with torch.no_grad():
            for buf in model.buffers():
                dist.broadcast(buf.data, src=0)

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def close(self) -> None:
        """Leave the process group when this context created it."""
        if self._owns_group and dist.is_initialized():
            dist.destroy_process_group()
            self._owns_group = False

    def _comm_device(self) -> torch.device:
        # NCCL moves only CUDA tensors; gloo only CPU ones
        return self.device if dist.get_backend() == "nccl" else torch.device("cpu")


def setup(device: torch.device, timeout_minutes: float = 30.0) -> DistContext:
    """Join torchrun's process group when its environment says so, else a single-process context.

    On CUDA each rank takes GPU LOCAL_RANK and the NCCL backend; otherwise gloo on the CPU
    (also what the tests use). A group someone else already initialised is used, not closed.
    """
    world = env_world_size()
    if world <= 1 or not dist.is_available():
        return DistContext(device)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        if device.index is not None and device.index != local_rank:
            log.warning("device %s ignored under torchrun: rank uses cuda:%d (LOCAL_RANK)",
                        device, local_rank)
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        backend = "nccl"
    elif device.type == "cpu":
        backend = "gloo"
    else:
        raise ValueError(f"distributed training runs on CUDA (nccl) or the CPU (gloo), "
                         f"not on {device.type!r}; pass --device cuda or --device cpu")
    owns = False
    if not dist.is_initialized():
        dist.init_process_group(backend, timeout=timedelta(minutes=timeout_minutes))
        owns = True
    rank, world = dist.get_rank(), dist.get_world_size()
    log.info("distributed training: rank %d of %d, %s, backend %s", rank, world, device,
             dist.get_backend())
    return DistContext(device, rank, world, local_rank, owns)


# -- test hook -----------------------------------------------------------------------------------
def state_hash(model: nn.Module | Mapping[str, torch.Tensor]) -> str:
    """sha256 over every parameter and buffer (a model's or a state dict's), in key order."""
    state = model.state_dict() if isinstance(model, nn.Module) else model
    digest = hashlib.sha256()
    for key, value in state.items():
        digest.update(key.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def batch_hash(xb: Any, yb: Any) -> str:
    digest = hashlib.sha256()
    for a in (xb, yb):
        digest.update(a.numpy().tobytes() if isinstance(a, torch.Tensor) else bytes(a.data))
    return digest.hexdigest()


def dump_rank_state(ctx: DistContext, model: nn.Module,
                    first_batch: Callable[[], tuple[Any, Any]]) -> None:
    """When SEGSTUDIO_TEST_RANK_DUMP names a folder, write this rank's final weights hash there.

    `first_batch` draws again the first batch this rank trained on (a sampler with the same
    seed), so the training loop itself carries no test hook.
    """
    folder = os.environ.get(RANK_DUMP_ENV)
    if not folder:
        return
    path = Path(folder) / f"rank{ctx.rank}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"rank": ctx.rank, "world_size": ctx.world_size,
                                "state_sha256": state_hash(model),
                                "first_batch_sha256": batch_hash(*first_batch())}),
                    encoding="utf-8")
