"""Data-parallel training under ``torchrun``: process group set-up, device choice, collectives.

When ``WORLD_SIZE > 1`` (``torchrun --nproc_per_node=N ...``) the Trainer joins the process
group from the environment variables torchrun sets (``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``) with NCCL on GPUs and gloo on CPUs; a
group the caller initialised already is used as is. Gradients are averaged over ranks with
one coalesced all-reduce per optimizer group before unscaling / clipping / stepping — the
arithmetic of ``DistributedDataParallel`` — which also serves models with several
optimizers and ``train_step`` hooks (GANs) that DDP's forward wrapper does not.
"""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

__all__ = [
    "agree_on_signal",
    "amp_dtype",
    "DistInfo",
    "setup_distributed",
    "resolve_device",
    "all_reduce_mean_",
    "global_mean",
    "rank0_float",
    "broadcast_module_",
    "all_gather_tensors",
    "barrier",
    "is_main_process",
]


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the data-parallel group (``world_size == 1`` without one)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def enabled(self) -> bool:
        """Whether a process group is in use (collectives run, even for one process)."""
        return self.backend is not None

    @property
    def is_main(self) -> bool:
        """Rank 0 writes logs, checkpoints and plots."""
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} must be an integer") from None


def resolve_device(device: str, local_rank: int = 0) -> torch.device:
    """``"auto"`` -> ``cuda:LOCAL_RANK`` if a GPU is visible, else ``cpu``; checks the rest.

    A bare ``"cuda"`` also becomes ``cuda:LOCAL_RANK`` so each torchrun process takes its GPU.
    """
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ValueError(
            f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}"
        ) from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} was requested but no CUDA GPU is visible; use cpu")
        if dev.index is None:
            dev = torch.device("cuda", local_rank % torch.cuda.device_count())
    return dev


def setup_distributed(device: str) -> tuple[DistInfo, torch.device]:
    """Join (or reuse) the process group and pick this rank's device.

    Returns ``(info, device)``. Without ``WORLD_SIZE > 1`` and without an initialised group
    this is single-process training.
    """
    if dist.is_available() and dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
        local_rank = _env_int("LOCAL_RANK", rank)
        dev = resolve_device(device, local_rank)
        backend = str(dist.get_backend())
        if backend == "nccl" and dev.type != "cuda":
            raise ValueError("the process group uses NCCL, which needs device='cuda'")
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        return DistInfo(rank, world, local_rank, backend), dev
    world = _env_int("WORLD_SIZE", 1)
    local_rank = _env_int("LOCAL_RANK", 0)
    dev = resolve_device(device, local_rank)
    if world <= 1:
        return DistInfo(local_rank=local_rank), dev
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but this PyTorch build has no torch.distributed")
    rank = _env_int("RANK", 0)
    backend = "nccl" if dev.type == "cuda" else "gloo"
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    dist.init_process_group(backend=backend, init_method="env://", rank=rank, world_size=world)
    atexit.register(_destroy)
    return DistInfo(rank, world, local_rank, backend), dev


def _destroy() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def is_main_process() -> bool:
    """Rank 0 of the group (or of ``torchrun``'s ``RANK``), or a single process."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return _env_int("RANK", 0) == 0


def all_reduce_mean_(tensors: list[torch.Tensor], info: DistInfo) -> None:
    """Average ``tensors`` over ranks in place (one all-reduce per dtype)."""
    if not info.enabled or not tensors:
        return
    by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
    for t in tensors:
        by_dtype.setdefault(t.dtype, []).append(t)
    for group in by_dtype.values():
        flat = torch.cat([t.reshape(-1) for t in group])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        flat /= info.world_size
        offset = 0
        for t in group:
            t.copy_(flat[offset : offset + t.numel()].view_as(t))
            offset += t.numel()


def global_mean(value: torch.Tensor, info: DistInfo) -> float:
    """The mean over ranks of a scalar tensor, as a Python float (NaN propagates)."""
    v = value.detach().reshape(1).to(torch.float64)
    if info.enabled:
        dist.all_reduce(v, op=dist.ReduceOp.SUM)
        v = v / info.world_size
    return float(v.item())


def rank0_float(value: float, info: DistInfo, device: torch.device) -> float:
    """Rank 0's ``value`` on every rank (e.g. its clock, so that every rank stops and sets
    its learning rate from the same number)."""
    if not info.enabled:
        return float(value)
    t = torch.tensor([float(value)], dtype=torch.float64, device=device)
    dist.broadcast(t, src=0)
    return float(t.item())


@torch.no_grad()
def broadcast_module_(module: nn.Module, info: DistInfo, *, buffers_only: bool = False) -> None:
    """Copy rank 0's parameters (and buffers) to every rank."""
    if not info.enabled:
        return
    tensors = [] if buffers_only else list(module.parameters())
    tensors += list(module.buffers())
    for t in tensors:
        dist.broadcast(t.data, src=0)


def all_gather_tensors(
    tensors: dict[str, torch.Tensor], info: DistInfo, device: torch.device
) -> list[dict[str, torch.Tensor]]:
    """Every rank's ``tensors`` (same keys and shapes on all ranks), on the CPU, by rank."""
    if not info.enabled:
        return [{k: v.cpu() for k, v in tensors.items()}]
    out: list[dict[str, torch.Tensor]] = [{} for _ in range(info.world_size)]
    for key in sorted(tensors):
        local = tensors[key].to(device).contiguous()
        parts = [torch.empty_like(local) for _ in range(info.world_size)]
        dist.all_gather(parts, local)
        for r, part in enumerate(parts):
            out[r][key] = part.cpu()
    return out


def barrier(info: DistInfo) -> None:
    """Wait for every rank (no-op without a group)."""
    if info.enabled:
        dist.barrier()


def amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``TrainConfig.amp`` on ``device`` (``None``: full precision)."""
    if amp == "off":
        return None
    if device.type != "cuda":
        if amp == "auto":
            return None
        raise ValueError(
            f"amp={amp!r} needs a CUDA device (mixed precision runs on GPUs only); use "
            "amp='off' or amp='auto' on the CPU"
        )
    if amp == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    return torch.bfloat16 if amp == "bf16" else torch.float16


_SIGNAL_NAMES = ("SIGINT", "SIGTERM")


def agree_on_signal(name: str | None, info: DistInfo, device: torch.device) -> str | None:
    """The signal any rank has received (``None``: none), the same on every rank.

    Under torchrun a Ctrl-C or ``kill`` may reach one rank, or all at different steps; the
    ranks stop together only if they decide on the same step: each calls this after every
    step (one all-reduce of one integer, MAX: SIGTERM wins over SIGINT). One process:
    ``name`` as it is.
    """
    if not info.enabled:
        return name
    code = 0 if name is None else 1 + _SIGNAL_NAMES.index(name)
    t = torch.tensor([code], dtype=torch.int64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    value = int(t.item())
    return None if value == 0 else _SIGNAL_NAMES[value - 1]
