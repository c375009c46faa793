"""Distributed data parallel under torchrun: which process this is, and joining and leaving the group."""

from __future__ import annotations

import os


def ranks() -> tuple[int, int, int]:
    """(world size, rank, local rank) from torchrun's environment; (1, 0, 0) for a plain run."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return world, int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))


def join(device: str, world: int, local_rank: int) -> str:
    """Join the process group (NCCL on CUDA, gloo otherwise); returns this process's device."""
    if world == 1:
        return device
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if device == "cuda" else "gloo")
    if device == "cuda":
        torch.cuda.set_device(local_rank)
        return f"cuda:{local_rank}"
    return device


def wrap(network, device: str, world: int, local_rank: int):
    """The network the optimisation steps run (DDP averages its gradients across processes)."""
    if world == 1:
        return network
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(network, device_ids=[local_rank] if device.startswith("cuda") else None)


def barrier(world: int) -> None:
    if world > 1:
        import torch.distributed as dist

        dist.barrier()


def leave(world: int) -> None:
    """Wait for every process, then leave the group."""
    if world > 1:
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()
