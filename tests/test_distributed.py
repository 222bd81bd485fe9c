"""Data-parallel single runs: `accelerate launch --multi_gpu --num_processes 2` on tiny models; without GPUs that is
two CPU processes over gloo.

Every process trains; exactly one record is written, by the main process, and it says how many processes ran."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("accelerate")
pytest.importorskip("peft")

REPO = Path(__file__).resolve().parents[1]


def launch(script: str, *args: str, tmp_path: Path) -> subprocess.CompletedProcess:
    with socket.socket() as s:  # a free port for the process group's rendezvous
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port",
           str(port), script, *args]
    out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return out


def test_encoder_run_on_two_processes_writes_one_record(tiny, tmp_path):
    launch("encoders/train.py", "--data", tiny["csv"], "--text-column", "text", "--label-column", "label",
           "--model", tiny["paths"]["bert"], "--method", "full", "--loss", "weighted-ce", "--n-train", "24",
           "--seeds", "0", "--results-dir", str(tmp_path), "--min-steps", "3", "--max-steps", "3", "--evals", "1",
           "--batch-size", "8", "--max-length", "24", "--no-save-model", tmp_path=tmp_path)
    records = list(tmp_path.glob("runs/*/encoders/*.json"))
    assert len(records) == 1
    rec = json.loads(records[0].read_text())
    assert rec["details"]["processes"] == 2 and rec["details"]["training"]["steps"] == 3
    # three global batches of 8, split across the two processes
    assert rec["details"]["training"]["examples_seen"] == 24
    assert rec["metrics"]["n"] == rec["n_eval"] > 0


def test_sft_run_on_two_processes_writes_one_record(tiny_causal_lm, tmp_path):
    launch("finetune/sft.py", "--model", str(tiny_causal_lm), "--task", "drugs", "--n-train", "12", "--seeds", "0",
           "--n-eval", "4", "--results-dir", str(tmp_path), "--max-seq-length", "64", "--max-steps", "2",
           "--batch-size", "2", "--backend", "hf", "--eval-mode", "score", tmp_path=tmp_path)
    records = list(tmp_path.glob("runs/drugs/finetune/*.json"))
    assert len(records) == 1
    rec = json.loads(records[0].read_text())
    assert rec["config"]["processes"] == 2 and rec["config"]["max_steps"] == 2
    assert rec["before_training"]["n"] == rec["metrics"]["n"] == 4


def test_shard_splits_a_global_batch_and_never_leaves_a_process_empty():
    from eval.run.distributed import shard

    class Acc:
        def __init__(self, index: int, n: int) -> None:
            self.process_index, self.num_processes = index, n

    assert shard([1, 2, 3, 4, 5], Acc(0, 2)) == [1, 3, 5] and shard([1, 2, 3, 4, 5], Acc(1, 2)) == [2, 4]
    assert shard([7], Acc(1, 2)) == [7]
    assert shard([1, 2], None) == [1, 2]
