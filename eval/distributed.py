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


def accelerator() -> Any | None:
    """An accelerate.Accelerator when this process is one of several, else None (single-process runs stay as they
    are). It initialises the process group: NCCL on GPUs, gloo on CPU."""
    if world_size() <= 1:
        return None
    import torch
    from accelerate import Accelerator

    return Accelerator(cpu=not torch.cuda.is_available())


def shard(indices: list[int], acc: Any | None) -> list[int]:
    """This process's part of a global batch. Never empty: DDP needs every process in every step, so a batch smaller
    than the world repeats its last example on the processes left without one."""
    if acc is None or acc.num_processes <= 1:
        return indices
    return indices[acc.process_index::acc.num_processes] or indices[-1:]
