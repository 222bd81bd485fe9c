"""Data-parallel single runs under `accelerate launch` (or torchrun): which process this is, and the one rule that
keeps records honest — every process trains, only the main process evaluates on the test set and writes the record.

    accelerate launch --num_processes 2 encoders/train.py --model deberta-v3-base --task sst2 ...
    accelerate launch --num_processes 2 finetune/sft.py --model qwen3-4b --task imdb ...
    torchrun --nproc_per_node 2 encoders/train.py ...                      # the same with torch's own launcher

On a machine without GPUs the same `accelerate launch --multi_gpu --num_processes 2 …` (torchrun underneath) runs two
CPU processes over gloo, as the tests do; `accelerate launch --cpu` would pick its MPI launcher instead, which needs
mpirun. The launcher sets WORLD_SIZE / RANK / LOCAL_RANK; without it everything here is a no-op (world size 1).
"""

from __future__ import annotations

import os
from typing import Any


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def is_main() -> bool:
    return rank() == 0


# The main process evaluates alone while the others wait at a barrier: give the process group room for a long
# evaluation (torch's default is 30 minutes).
GROUP_TIMEOUT_S = 4 * 3600


def accelerator() -> Any | None:
    """An accelerate.Accelerator when this process is one of several, else None (single-process runs stay as they
    are). It initialises the process group: NCCL on GPUs, gloo on CPU."""
    if world_size() <= 1:
        return None
    from datetime import timedelta

    import torch
    from accelerate import Accelerator, InitProcessGroupKwargs

    return Accelerator(cpu=not torch.cuda.is_available(),
                       kwargs_handlers=[InitProcessGroupKwargs(timeout=timedelta(seconds=GROUP_TIMEOUT_S))])


def barrier() -> None:
    """Every process waits here (a no-op in a single process). Runs end with it, so the other processes wait until
    the main one has evaluated and written the record instead of exiting under it."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def close() -> None:
    """End of a command: all processes meet, then the process group is closed in order. A process that exits while
    another still holds the group makes gloo abort the whole launch."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def shard(indices: list[int], acc: Any | None) -> list[int]:
    """This process's part of a global batch. Never empty: DDP needs every process in every step, so a batch smaller
    than the world repeats its last example on the processes left without one."""
    if acc is None or acc.num_processes <= 1:
        return indices
    return indices[acc.process_index::acc.num_processes] or indices[-1:]


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def cuda_device_map() -> dict[str, int]:
    """`device_map` for a model that must sit whole on this process's GPU: a 4-bit (bitsandbytes) model cannot be
    moved after loading, so under `accelerate launch` each rank loads straight onto its LOCAL_RANK GPU. `{"": 0}`
    would put every rank on GPU 0, and accelerate then refuses to train a quantized model on another device
    (docs/pitfalls.md#quantized-ddp)."""
    return {"": local_rank()}
