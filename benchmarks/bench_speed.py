"""python benchmarks/bench_speed.py PART [--n 32] [--model qwen2.5-coder-0.5b] [--no-write]

Ratio benchmarks of issue 14 (each PART measures both sides in one run, on the same prompts):
  dtype    hf label scoring, bf16 vs fp32 weights, zero-shot rotten prompts (target >= 2x, >= 99% identical labels);
           skipped (and said so) on a CPU without AVX512-BF16/AMX
  prefix   few-shot k=16 scoring with shared-prefix KV reuse vs without (target >= 3x, identical labels)
  threads  zero-shot scoring at 1 torch thread vs the cores available (re-measures the `--threads 1` advice)
  sft      one LoRA training step, bf16 autocast vs fp32, same batch (target >= 1.5x)
  llama    our hf backend (bf16 label scoring as prompting/run.py does it; greedy generation) vs llama.cpp
           (llama-cpp-python, in the same process) on the offline GGUF of the same model, the same token ids,
           alternating chunk by chunk: prompt tokens/s for zero-shot label scoring and generated tokens/s for
           zero-shot CoT, at 1 thread and all cores, against the compute ceiling (benchmarks/speed_ceiling.py);
           `--batched-bench PATH` adds llama.cpp's llama-batched-bench. Run it with the python that has
           llama-cpp-python (docs/speed.md, "llama.cpp on this machine")
Writes its section of BENCHMARKS.md between its own markers. The machine is shared: absolute times are inflated,
ratios come from one run (both sides alternate in the same process).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def machine() -> str:
    import torch

    from eval.run.hardware import cpu_flags, describe

    d = describe()
    model = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                  if ln.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else "?"
    simd = sorted(f for f in cpu_flags() if f.startswith(("avx512", "amx", "avx2", "avx_vnni", "fma")))
    load = "/".join(f"{x:.1f}" for x in os.getloadavg())
    return (f"{model}, {d['cpus_available']} usable cores, torch {torch.__version__}, CPU capability "
            f"{d['torch_cpu_capability']}, native bf16: {d['native_bf16'] or 'no'}; flags: {' '.join(simd)}; "
            f"load average {load} (1/5/15 min) at the start: the machine is shared with other jobs")


def prompts_for(model: str, kind: str, n: int, shots: int = 0) -> tuple[object, list[str], list[str], list[str]]:
    """(task, chat-templated prompts, verbalizers, gold labels) for the rotten task."""
    from eval.inputs.data import load_task
    from eval.lm.causal import build_prompt, load_causal_lm
    from eval.lm.prompts import load_prompt

    task = load_task("rotten")
    examples = [(e.text, e.label) for e in task.train(shots, 0)] if shots else []
    prompt = load_prompt(kind, task.scheme, shots=examples)
    test = task.test(n)
    _, tok, _ = load_causal_lm(model, dtype="float32")
    texts = [build_prompt(tok, prompt.render(e.text)) for e in test]
    words = [task.scheme.verbalizer(lab) for lab in task.scheme.labels]
    return task, texts, words, [e.label for e in test]


def timed(fn) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def alternate(sides: dict[str, object], texts: list, chunk: int, swap: bool = False) -> dict[str, tuple[float, list]]:
    """Run each side (fn(texts) -> rows) chunk by chunk, alternating sides, so load from other jobs on a shared
    machine hits both alike (`swap`: which side goes first changes every chunk); returns {side: (seconds, rows)}."""
    out = {name: [0.0, []] for name in sides}
    for k, start in enumerate(range(0, len(texts), chunk)):
        part = texts[start:start + chunk]
        order = list(sides.items())
        for name, fn in (order[::-1] if swap and k % 2 else order):
            t, rows = timed(lambda f=fn, p=part: f(p))
            out[name][0] += t
            out[name][1] += rows
    return {k: (v[0], v[1]) for k, v in out.items()}


def argmax_labels(rows: list[list[float]], words: list[str]) -> list[str]:
    return [words[max(range(len(r)), key=r.__getitem__)] for r in rows]


def part_dtype(args) -> list[str]:
    import torch

    from eval.lm.causal import load_causal_lm, score_labels
    from eval.run.hardware import configure_threads, cpu_native_bf16

    if not cpu_native_bf16():
        return ["This CPU has neither AVX512-BF16 nor AMX: bf16 would be emulated (slower than fp32); skipped."]
    configure_threads(args.threads)
    _, texts, words, gold = prompts_for(args.model, "zeroshot", args.n)
    import copy

    model, tok, _ = load_causal_lm(args.model, dtype="float32")
    half = copy.deepcopy(model).to(torch.bfloat16)
    kw = {"batch_size": args.batch_size, "prefix": ""}
    for m in (model, half):
        score_labels(m, tok, texts[:2], words, **kw)  # warm-up (allocator, oneDNN kernels)
    got = alternate({"fp32": lambda p: score_labels(model, tok, p, words, **kw),
                     "bf16": lambda p: score_labels(half, tok, p, words, **kw)}, texts, args.batch_size)
    (t32, s32), (t16, s16) = got["fp32"], got["bf16"]
    a32, a16 = argmax_labels(s32, words), argmax_labels(s16, words)
    same = sum(x == y for x, y in zip(a32, a16)) / len(texts)
    acc = [sum(w == g for w, g in zip(a, gold)) / len(gold) for a in (a32, a16)]
    return [f"| hf scoring, zero-shot, batch {args.batch_size} | {len(texts)} | fp32 {t32:.1f} s "
            f"({len(texts) / t32:.2f} ex/s) | bf16 {t16:.1f} s ({len(texts) / t16:.2f} ex/s) | **{t32 / t16:.1f}x** "
            f"| {same:.1%} identical labels (accuracy fp32 {acc[0]:.1%}, bf16 {acc[1]:.1%}) | >= 2x, >= 99% |"]


def part_prefix(args) -> list[str]:
    from eval.lm.causal import load_causal_lm, score_labels
    from eval.run.hardware import configure_threads

    configure_threads(args.threads)
    _, texts, words, gold = prompts_for(args.model, "fewshot", args.n, shots=16)
    model, tok, info = load_causal_lm(args.model)
    kw = {"batch_size": args.batch_size, "prefix": ""}
    stats: dict = {}
    score_labels(model, tok, texts[:2], words, **kw, reuse_prefix=False)  # warm-up
    # chunks of two batches: the reuse side computes the prefix once per call, i.e. twice here, not once per run
    got = alternate({"no": lambda p: score_labels(model, tok, p, words, **kw, reuse_prefix=False),
                     "reuse": lambda p: score_labels(model, tok, p, words, **kw, stats=stats)},
                    texts, 2 * args.batch_size)
    (t_no, s_no), (t_re, s_re) = got["no"], got["reuse"]
    a_no, a_re = argmax_labels(s_no, words), argmax_labels(s_re, words)
    same = sum(x == y for x, y in zip(a_no, a_re))
    lens = [len(tok(t)["input_ids"]) for t in texts]
    return [f"| few-shot k=16 scoring ({info['dtype']}, batch {args.batch_size}; prompts {min(lens)}-{max(lens)} "
            f"tokens, shared prefix {stats.get('prefix_tokens', 0)}) | {len(texts)} | no reuse {t_no:.1f} s "
            f"({len(texts) / t_no:.2f} ex/s) | reuse {t_re:.1f} s ({len(texts) / t_re:.2f} ex/s) | "
            f"**{t_no / t_re:.1f}x** | {same}/{len(texts)} identical labels | >= 3x, identical |"]


def part_threads(args) -> list[str]:
    import torch

    from eval.lm.causal import load_causal_lm, score_labels
    from eval.run.hardware import available_cpus

    _, texts, words, _ = prompts_for(args.model, "zeroshot", args.n)
    model, tok, info = load_causal_lm(args.model)
    kw = {"batch_size": args.batch_size, "prefix": ""}
    many = available_cpus()
    times: dict[int, list[float]] = {1: [], many: []}
    for _ in range(2):  # alternate, so load from other jobs hits both alike
        for n in (1, many):
            torch.set_num_threads(n)
            score_labels(model, tok, texts[:2], words, **kw)
            times[n].append(timed(lambda: score_labels(model, tok, texts, words, **kw))[0])
    t1, tm = statistics.median(times[1]), statistics.median(times[many])
    return [f"| zero-shot scoring ({info['dtype']}, batch {args.batch_size}), median of 2 alternating runs | "
            f"{len(texts)} | 1 thread {t1:.1f} s | {many} threads {tm:.1f} s | **{t1 / tm:.2f}x** "
            f"(> 1: more threads faster) | | |"]


def _lora_batch(args) -> tuple[Any, dict, Any]:
    """(LoRA model in fp32, one right-padded chat-templated training batch from rotten, AdamW) for the SFT parts."""
    import torch
    from peft import LoraConfig, get_peft_model

    from eval.inputs.data import load_task
    from eval.lm.causal import load_causal_lm
    from eval.run.hardware import configure_threads
    from finetune.config import DEFAULT_TARGETS
    from finetune.formatting import Formatter, load_template

    configure_threads(args.threads)
    task = load_task("rotten")
    model, tok, _ = load_causal_lm(args.model, dtype="float32")
    model = get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", r=16, lora_alpha=32, lora_dropout=0.0,
                                             target_modules=DEFAULT_TARGETS))
    model.train()
    fmt = Formatter(tok, task.scheme, load_template(), max_seq_length=128)
    rows = fmt.dataset_rows(task.train(args.batch_size, 0))
    enc = [tok(r["prompt"] + r["completion"], add_special_tokens=False)["input_ids"] for r in rows]
    plen = [len(tok(r["prompt"], add_special_tokens=False)["input_ids"]) for r in rows]
    width = max(map(len, enc))
    ids = torch.full((len(enc), width), tok.pad_token_id)
    mask = torch.zeros_like(ids)
    labels = torch.full_like(ids, -100)
    for i, (e, p) in enumerate(zip(enc, plen)):
        ids[i, :len(e)], mask[i, :len(e)] = torch.tensor(e), 1
        labels[i, p:len(e)] = torch.tensor(e[p:])
    batch = {"input_ids": ids, "attention_mask": mask, "labels": labels}
    return model, batch, torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)


def part_sft(args) -> list[str]:
    import torch

    from finetune.trainer import completion_loss

    model, batch, opt = _lora_batch(args)
    enc, width = batch["input_ids"], batch["input_ids"].shape[1]

    def step(bf16: bool) -> float:
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = completion_loss(model, batch, share_prefix=False)
        loss.backward()
        opt.step()
        opt.zero_grad()
        return time.perf_counter() - t0

    step(False), step(True)  # warm-up both
    times: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(args.steps):
        for bf16 in (False, True):
            times[bf16].append(step(bf16))
    t32, t16 = statistics.median(times[False]), statistics.median(times[True])
    return [f"| LoRA step (r 16, 7 projections), batch {len(enc)} x {width} tokens, median of {args.steps} "
            f"alternating steps | {args.steps} | fp32 {t32:.1f} s | bf16 autocast {t16:.1f} s | **{t32 / t16:.1f}x** "
            f"| | >= 1.5x |"]


class LlamaCppSide:
    """llama.cpp (llama-cpp-python) on the offline GGUF, fed the very token ids our side runs (the hf tokenizer is
    the GGUF's own vocabulary, converted), one prompt at a time as llama-cpp-python's Llama serves them. The KV
    cache of the longest common prefix with the previous prompt is kept (what Llama.generate does), so the shared
    system turn and instruction are computed once, as our side's prefix reuse does."""

    def __init__(self, gguf: Path, threads: int, n_ctx: int = 4096) -> None:
        import llama_cpp

        self.lib = llama_cpp
        self.llm = llama_cpp.Llama(model_path=str(gguf), n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads,
                                   verbose=False)
        self.vocab = llama_cpp.llama_model_get_vocab(self.llm._model.model)
        self.n_vocab = self.llm.n_vocab()
        self.computed = 0  # prompt tokens actually evaluated (after the prefix reuse)
        self.prefill_s = self.decode_s = 0.0

    def threads(self, n: int) -> None:
        self.lib.llama_set_n_threads(self.llm._ctx.ctx, n, n)

    def _logits(self):
        import numpy as np

        ptr = self.lib.llama_get_logits_ith(self.llm._ctx.ctx, -1)
        return np.ctypeslib.as_array(ptr, shape=(self.n_vocab,)).astype(np.float64)

    def _logprobs(self):
        import numpy as np

        x = self._logits()
        m = x.max()
        return x - (m + np.log(np.exp(x - m).sum()))

    def _feed(self, ids: list[int]) -> None:
        have = self.llm.input_ids[: self.llm.n_tokens].tolist()
        keep = 0
        for a, b in zip(have, ids):
            if a != b:
                break
            keep += 1
        keep = min(keep, len(ids) - 1)  # at least one token runs, so the last position's logits are fresh
        self.llm.n_tokens = keep  # Llama.eval drops the cache from n_tokens on
        self.llm.eval(ids[keep:])
        self.computed += len(ids) - keep

    def score(self, ids: list[list[int]], cands: list[list[list[int]]]) -> list[list[float]]:
        """Log-probability of each candidate after each prompt (first token; the sum over its tokens when it has
        more, as eval.lm.causal.score_labels' "full")."""
        rows = []
        for row_ids, cand in zip(ids, cands):
            self._feed(row_ids)
            lp = self._logprobs()
            row = []
            for c in cand:
                total = float(lp[c[0]])
                for j in range(1, len(c)):
                    self.llm.eval([c[j - 1]])
                    total += float(self._logprobs()[c[j]])
                self.llm.n_tokens = len(row_ids)  # back to the prompt
                row.append(total)
            rows.append(row)
        return rows

    def generate(self, ids: list[int], max_new: int) -> int:
        """Greedy continuation up to `max_new` tokens, stopping at an end-of-generation token; returns the number
        of tokens generated (the end token not counted, as our side's decoded text does not count it)."""
        import numpy as np

        t0 = time.perf_counter()
        self._feed(ids)
        logits = self._logits()
        t1 = time.perf_counter()
        n = 0
        while n < max_new:
            tok = int(np.argmax(logits))
            if self.lib.llama_vocab_is_eog(self.vocab, tok):
                break
            n += 1
            if n == max_new:
                break
            self.llm.eval([tok])
            logits = self._logits()
        self.prefill_s += t1 - t0
        self.decode_s += time.perf_counter() - t1
        return n


def gemm_gflops(dtype: str, threads: int, m: int = 256, k: int = 896, n: int = 4864, reps: int = 5) -> float:
    """GFLOP/s torch reaches on one linear layer's matmul (m tokens x k in -> n out; Qwen2.5-0.5B's MLP shape),
    median of `reps`: what the kernels torch picks (oneDNN; AMX for bf16 where the CPU has it) do here."""
    import torch

    torch.set_num_threads(threads)
    dt = getattr(torch, dtype)
    x, w = torch.randn(m, k, dtype=dt), torch.randn(n, k, dtype=dt)
    with torch.inference_mode():
        torch.nn.functional.linear(x, w)
        times = [timed(lambda: torch.nn.functional.linear(x, w))[0] for _ in range(reps)]
    return 2 * m * k * n / statistics.median(times) / 1e9


GEN_PROMPT = ("Explain in a short paragraph of about 60 words what this movie review says about the film and why. "
              "Then, on the last line, write the sentiment: positive or negative.\n\nReview: {text}")


def onednn_kernel(dtype: str, m: int = 256, k: int = 896, n: int = 4864) -> str:
    """The oneDNN implementation torch runs for that linear layer (e.g. `brg_matmul:avx10_1_512_amx`: AMX tiles),
    read from oneDNN's verbose log, which goes to the process's stdout (fd 1) and is captured here."""
    import tempfile

    import torch

    dt = getattr(torch, dtype)
    x, w = torch.randn(m, k, dtype=dt), torch.randn(n, k, dtype=dt)
    sys.stdout.flush()
    saved = os.dup(1)
    with tempfile.TemporaryFile(mode="w+") as f:
        os.dup2(f.fileno(), 1)
        try:
            with torch.inference_mode(), torch.backends.mkldnn.verbose(torch.backends.mkldnn.VERBOSE_ON):
                torch.nn.functional.linear(x, w)
        finally:
            sys.stdout.flush()
            os.dup2(saved, 1)
            os.close(saved)
        f.seek(0)
        found = [ln.split(",")[6] for ln in f.read().splitlines() if ",exec," in ln and ",matmul," in ln]
    return found[0] if found else "none reported (not a oneDNN matmul)"


def batched_bench(binary: str, gguf: Path, threads: int, pp: int, tg: int, npl: str) -> list[dict]:
    """llama.cpp's own llama-batched-bench: `npl` parallel sequences of `pp` prompt + `tg` generated tokens in one
    context; rows of its table as dicts (B, S_PP t/s, S_TG t/s, ...)."""
    cmd = [binary, "-m", str(gguf), "-c", str(max(4096, int(npl.split(",")[-1]) * (pp + tg) + 64)), "-b", "2048",
           "-ub", "512", "-npp", str(pp), "-ntg", str(tg), "-npl", npl, "-t", str(threads), "-tb", str(threads)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    rows, head = [], None
    for line in out.stdout.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if "S_PP t/s" in cells:
            head = cells
        elif head and len(cells) == len(head) and cells[0].isdigit():
            rows.append(dict(zip(head, cells)))
    if not rows:
        raise RuntimeError(f"llama-batched-bench gave no table: {out.stderr[-2000:]}")
    return rows


def part_llama(args) -> list[str]:
    try:
        import llama_cpp
    except ImportError:
        return ["llama: needs llama-cpp-python importable: run with the python of the venv it is installed in "
                "(docs/speed.md, \"llama.cpp on this machine\")"]
    import dataclasses

    import torch

    from benchmarks.speed_ceiling import (
        best_peak,
        ceiling_tokens_per_s,
        cpu_ghz,
        cpu_peaks,
        flop_per_token,
        non_embedding_params,
    )
    from eval.inputs.data import load_task
    from eval.lm.causal import answer_prefix, build_prompt, candidate_ids, encode
    from eval.lm.models import resolve
    from eval.lm.packaged import assembled_file
    from eval.lm.prompts import load_prompt
    from eval.run.hardware import available_cpus, cpu_flags
    from prompting.backends import BackendOptions, get_backend

    load_start = os.getloadavg()
    many = available_cpus()
    counts = sorted({many if c == "all" else min(int(c), many) for c in args.thread_counts.split(",")})
    task = load_task("rotten")
    test = task.test(args.n)
    gold = [e.label for e in test]
    words = [task.scheme.verbalizer(lab) for lab in task.scheme.labels]
    raw_score = [load_prompt("zeroshot", task.scheme).render(e.text) for e in test]
    # generation: the project's CoT prompt makes this chat model answer with the label alone (1 token), so the
    # generation rows use a prompt that asks for a paragraph first (~60 tokens); both sides get the same token ids
    raw_gen = [GEN_PROMPT.format(text=e.text) for e in test[: args.gen_n]]

    # our side, as `prompting/run.py --backend hf --mode score|generate` runs it: dtype auto (bf16 here), batch 16,
    # shared-prefix reuse; scoring keeps its canary and fp32 re-scoring of near ties (run once in the warm-up)
    scorer = get_backend("hf")(args.model, BackendOptions(mode="score", batch_size=args.batch_size), task.scheme)
    scorer.ready()
    t_canary = timed(lambda: scorer.answer_all(raw_score[:16], lambda i, a: None))[0]
    scorer.options = dataclasses.replace(scorer.options, batch_check=False)  # the canary ran; not per chunk
    rescore = scorer.run_info["rescore"]
    warm_items, warm_rescored = rescore.get("items", 0), rescore.get("rescored", 0)
    gen = get_backend("hf")(args.model, BackendOptions(mode="generate", max_new_tokens=args.gen_tokens,
                                                       batch_size=args.batch_size, batch_check=False), task.scheme)
    gen.ready()
    gen.answer_all(raw_gen[:2], lambda i, a: None)
    model, tok, info = scorer.lm
    chat = scorer.chat

    def ids_of(raw: list[str]) -> tuple[list[str], list[list[int]]]:
        texts = [build_prompt(tok, p, chat=chat) for p in raw]
        return texts, [encode(tok, t) for t in texts]

    s_texts, s_ids = ids_of(raw_score)
    g_texts, g_ids = ids_of(raw_gen)
    cands = [[candidate_ids(tok, t, w, answer_prefix(s_texts[0])) for w in words] for t in s_texts]

    gguf = assembled_file(args.model, resolve(args.model).offline)
    lc = LlamaCppSide(gguf, many)
    lc.score(s_ids[:2], cands[:2])  # warm-up
    lc.generate(g_ids[0], 4)

    def hf_score(idx: list[int]) -> list[str]:
        got: dict = {}
        scorer.answer_all([raw_score[i] for i in idx], got.__setitem__)
        return [got[j].text for j in range(len(idx))]

    def lc_score(idx: list[int]) -> list[str]:
        rows = lc.score([s_ids[i] for i in idx], [cands[i] for i in idx])
        return argmax_labels(rows, words)

    def hf_gen(idx: list[int]) -> list[int]:
        got: dict = {}
        gen.answer_all([raw_gen[i] for i in idx], got.__setitem__)
        return [int(got[j].meta["output_tokens"]) for j in range(len(idx))]

    def lc_gen(idx: list[int]) -> list[int]:
        return [lc.generate(g_ids[i], args.gen_tokens) for i in idx]

    # label positions: hf answers are verbalizers; map back to labels for accuracy
    to_label = dict(zip(words, task.scheme.labels))
    nemb = model.get_input_embeddings().weight.numel()
    head = model.get_output_embeddings()
    tied = head is not None and head.weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()
    total = sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
    params = non_embedding_params(total, nemb, 0 if head is None else head.weight.numel(), tied)
    ghz = cpu_ghz(Path("/proc/cpuinfo").read_text()) if Path("/proc/cpuinfo").exists() else None
    if ghz is None:
        raise RuntimeError("no clock in /proc/cpuinfo: the ceiling needs one")
    flags = cpu_flags()
    p_tokens = sum(map(len, s_ids))

    table = [f"| threads | what | n | tokens | hf: bf16, batch {args.batch_size} | llama.cpp: Q4_K_M, one prompt "
             "at a time | "
             "hf / llama.cpp | load 1-min at start -> end |", "|---|---|---|---|---|---|---|---|"]
    agree = []
    for t in counts:
        torch.set_num_threads(t)
        lc.threads(t)
        here = cpu_peaks(flags, cores=t, ghz=ghz)
        peak_bf16 = best_peak(here, "bfloat16")
        peak_int8 = best_peak([p for p in here if p.unit != "AMX"], "int8")  # this llama.cpp build: AMX off
        ceil = ceiling_tokens_per_s(peak_bf16.gflops, params) if peak_bf16 else float("nan")
        ceil8 = ceiling_tokens_per_s(peak_int8.gflops, params) if peak_int8 else float("nan")
        l0 = os.getloadavg()[0]
        lc_before = lc.computed
        got = alternate({"hf": hf_score, "llama": lc_score}, list(range(len(s_ids))), args.chunk, swap=True)
        chunks = -(-len(s_ids) // args.chunk)  # our side computes the shared prefix once per call (chunk)
        hf_computed = p_tokens - int(scorer.run_info.get("prefix_tokens", 0)) * (len(s_ids) - chunks)
        lc_computed = lc.computed - lc_before
        (th, lh), (tl, ll) = got["hf"], got["llama"]
        l1 = os.getloadavg()[0]
        table.append(
            f"| {t} | label scoring, zero-shot: prompt tokens/s (computed after prefix reuse: hf {hf_computed}, "
            f"llama.cpp {lc_computed}) | {len(s_ids)} | {p_tokens} | {p_tokens / th:,.0f} tok/s ({th:.1f} s; "
            f"computed {hf_computed / th:,.0f} tok/s = {hf_computed / th / ceil:.1%} of the bf16 ceiling) | "
            f"{p_tokens / tl:,.0f} tok/s ({tl:.1f} s; computed {lc_computed / tl:,.0f} tok/s = "
            f"{lc_computed / tl / ceil8:.1%} of the int8 ceiling) | "
            f"**{tl / th:.2f}x** | {l0:.1f} -> {l1:.1f} |")
        print(table[-1], file=sys.stderr, flush=True)  # as it comes: a long run on a loaded machine
        same = sum(a == b for a, b in zip(lh, ll))
        acc = [sum(to_label.get(a) == g for a, g in zip(x, gold)) / len(gold) for x in (lh, ll)]
        agree.append(f"{t} thread(s): {same}/{len(lh)} same labels (accuracy hf {acc[0]:.1%}, llama.cpp {acc[1]:.1%})")
        l0 = os.getloadavg()[0]
        lc.prefill_s = lc.decode_s = 0.0
        got = alternate({"hf": hf_gen, "llama": lc_gen}, list(range(len(g_ids))), args.batch_size, swap=True)
        (th, nh), (tl, nl) = got["hf"], got["llama"]
        l1 = os.getloadavg()[0]
        gh, gl = sum(nh), sum(nl)
        table.append(
            f"| {t} | generation (a paragraph, then the label), greedy, <= {args.gen_tokens} new tokens: "
            f"generated tokens/s, "
            f"prefill included | {len(g_ids)} | hf {gh}, llama.cpp {gl} | {gh / th:,.1f} tok/s ({th:.1f} s; "
            f"{gh / th / ceil:.2%} of the bf16 ceiling) | {gl / tl:,.1f} tok/s ({tl:.1f} s; decode alone "
            f"{gl / lc.decode_s:,.1f} tok/s = {gl / lc.decode_s / ceil8:.2%} of the int8 ceiling, prefill "
            f"{lc.prefill_s:.1f} s) | **{(gh / th) / (gl / tl):.2f}x** | {l0:.1f} -> {l1:.1f} |")
        print(table[-1], file=sys.stderr, flush=True)
    rescored = rescore.get("rescored", 0) - warm_rescored
    items = rescore.get("items", 0) - warm_items

    # the ceiling: peaks this CPU's flags support, for the dtypes each side computes in
    peaks = cpu_peaks(flags, cores=1, ghz=ghz)
    ceil_rows = ["| dtype (who) | unit (flags) | peak per core: cores x GHz x lanes x ports x 2 | tokens/s ceiling at "
                 + " / ".join(f"{c} core(s)" for c in counts) + " | torch GEMM measured at "
                 + " / ".join(f"{c} thread(s)" for c in counts) + " |", "|---|---|---|---|---|"]
    gemm = {dt: [gemm_gflops(dt, c) for c in counts] for dt in ("bfloat16", "float32")}
    impl = onednn_kernel("bfloat16")
    who = {"bfloat16": "hf side", "float32": "fp32 reference, the canary",
           "int8": "llama.cpp Q4_K x Q8_K dot products"}
    for p in peaks:
        if p.dtype == "int8" and p.unit == "AMX":
            continue  # this llama.cpp build has AMX off
        ceils = " / ".join(f"{ceiling_tokens_per_s(p.gflops * c, params):,.0f}" for c in counts)
        meas = " / ".join(f"{g:,.0f} GFLOP/s" for g in gemm[p.dtype]) if p.dtype in gemm and p == best_peak(
            peaks, p.dtype) else ""
        if meas and p.dtype == "bfloat16":
            meas += f" (oneDNN kernel: `{impl}`)"
        ceil_rows.append(f"| {p.dtype} ({who[p.dtype]}) | {p.unit} ({p.flag}) | {p.arithmetic} | {ceils} | {meas} |")
    torch.set_num_threads(many)

    lines = [
        f"Build: llama-cpp-python {llama_cpp.__version__}, llama.cpp's `llama_print_system_info()`: "
        f"`{llama_cpp.llama_print_system_info().decode().strip()}`  ",
        f"Model: `{args.model}`. hf side: {info['source']} (the GGUF dequantised to safetensors), run in "
        f"{scorer.run_info.get('dtype')}, batch {scorer.run_info.get('batch_size')}, shared prefix "
        f"{scorer.run_info.get('prefix_tokens')} tokens reused (once per call of {args.chunk} prompts); llama.cpp "
        f"side: `{gguf.name}` ({gguf.stat().st_size / 1e6:.0f} MB), n_ctx 4096, n_batch 512, the previous prompt's "
        f"common prefix kept in the KV cache. Parameters: {total:,} total, embedding {nemb:,} "
        f"({'tied with the LM head' if tied else 'untied LM head left out too'}), non-embedding {params:,}: "
        f"{flop_per_token(params) / 1e9:.3f} GFLOP per token (2 x non-embedding).  ",
        f"Load average (1/5/15 min) at the start {'/'.join(f'{x:.1f}' for x in load_start)}, at the end "
        f"{'/'.join(f'{x:.1f}' for x in os.getloadavg())}. Both sides alternate chunk by chunk (scoring chunks of "
        f"{args.chunk}, generation chunks of {args.batch_size}; which side goes first swaps every chunk) in one "
        f"process; the hf canary + calibration ran once before the timing ({t_canary:.1f} s on 16 prompts, not in "
        f"the times); fp32 re-scoring of near ties inside the times: {rescored} of {items} items re-scored.  ",
        f"Labels: {'; '.join(agree)}.", "",
        *table, "",
        f"Compute ceiling (clock: /proc/cpuinfo `cpu MHz` {ghz * 1000:.0f}, the hypervisor's nominal clock; "
        f"2 FMA ports per core is a stated assumption, not in the flags):", "",
        *ceil_rows,
    ]
    lc.llm.close()
    if args.batched_bench:
        pp = int(statistics.median(map(len, g_ids)))
        lines += ["", f"llama.cpp batched: `{Path(args.batched_bench).name}` from the same vendored sources and "
                      f"flags, {pp}-token prompts (the median CoT prompt above) + {args.gen_tokens} generated, "
                      f"N sequences in one batch (run after the side-by-side, alone):", "",
                  "| threads | sequences | prompt tok/s (S_PP) | generation tok/s (S_TG) | generated tok/s, prefill "
                  "included (TG x B / T), as the side-by-side's generation rows | load 1-min |",
                  "|---|---|---|---|---|---|"]
        for t in counts:
            l0 = os.getloadavg()[0]
            for r in batched_bench(args.batched_bench, gguf, t, pp, args.gen_tokens, args.npl):
                lines.append(f"| {t} | {r['B']} | {float(r['S_PP t/s']):,.0f} | {float(r['S_TG t/s']):,.1f} | "
                             f"{int(r['TG']) * int(r['B']) / float(r['T s']):,.1f} | {l0:.1f} |")
                print(lines[-1], file=sys.stderr, flush=True)
    return lines


OWN_TABLES = {"llama"}  # parts whose rows carry their own tables
def part_sft_prefix(args) -> list[str]:
    """One LoRA step (forward + backward) three ways, alternating, in the precision SFT trains in on this CPU
    (eval.run.hardware.sft_precision): the full batch as autocast runs it (every frozen weight cast to bf16 on
    every call), the shared prefix run once (finetune.trainer.completion_loss), and that with the frozen weights
    cast once (finetune.trainer.frozen_linears_cast: the track's training now)."""
    import torch

    from eval.run.hardware import sft_precision
    from finetune.trainer import completion_loss, frozen_linears_cast, shared_prefix_length

    model, batch, opt = _lora_batch(args)
    bf16 = bool(sft_precision("auto")["autocast"])
    first = int((batch["labels"][:, 1:] != -100).any(dim=0).nonzero().min())
    shared = shared_prefix_length(model, batch["input_ids"], batch["attention_mask"], first)
    rows, width = batch["input_ids"].shape
    real = int(batch["attention_mask"].sum())
    sides = {"full batch": (False, False), "shared prefix": (True, False),
             "shared prefix + weights cast once": (True, True)}

    def step(share: bool, cast: bool) -> tuple[float, float]:
        t0 = time.perf_counter()
        with frozen_linears_cast(model, torch.bfloat16, enabled=cast and bf16):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = completion_loss(model, batch, share_prefix=share)
            loss.backward()
        opt.zero_grad()  # no optimizer step: every side times the same weights
        return time.perf_counter() - t0, float(loss)

    for side in sides.values():  # warm-up
        step(*side)
    times: dict[str, list[float]] = {k: [] for k in sides}
    losses: dict[str, float] = {}
    for _ in range(args.steps):
        for name, side in sides.items():
            t, losses[name] = step(*side)
            times[name].append(t)
    med = {k: statistics.median(v) for k, v in times.items()}
    base = med["full batch"]
    what = (f"LoRA forward + backward ({'bf16 autocast' if bf16 else 'fp32'}), batch {rows} x {width} tokens "
            f"({real} real), {shared} shared by every row, median of {args.steps} alternating steps")
    return [f"| {what}: {name} | {args.steps} | full batch {base:.2f} s | {med[name]:.2f} s | "
            f"**{base / med[name]:.2f}x** | loss {losses[name]:.4f} | |" for name in sides if name != "full batch"]


PARTS = {"dtype": part_dtype, "prefix": part_prefix, "threads": part_threads, "sft": part_sft,
         "sft-prefix": part_sft_prefix, "llama": part_llama}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("part", choices=sorted(PARTS))
    ap.add_argument("--model", default="qwen2.5-coder-0.5b")
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--steps", type=int, default=3, help="sft: timed steps per side")
    ap.add_argument("--chunk", type=int, default=32, help="llama: scoring prompts per alternation chunk")
    ap.add_argument("--gen-n", type=int, default=32, help="llama: prompts for the generation rows")
    ap.add_argument("--gen-tokens", type=int, default=64, help="llama: max new tokens per generated answer")
    ap.add_argument("--batched-bench", default=None, help="llama: path of llama.cpp's llama-batched-bench binary")
    ap.add_argument("--thread-counts", default="1,all", help="llama: thread counts to measure (all: usable cores)")
    ap.add_argument("--npl", default="1,4,16", help="llama: parallel sequences for llama-batched-bench")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: eval.run.hardware's choice)")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    head = machine()

    from eval.run.hardware import configure_threads

    if args.part != "threads":
        head += f"; torch threads {configure_threads(args.threads)}"
    rows = PARTS[args.part](args)
    cmd = "python benchmarks/bench_speed.py " + " ".join(sys.argv[1:])
    section = "\n".join([f"<!-- bench_speed_{args.part}:start -->", f"#### `{args.part}`: {args.model}",
                         "", f"`HF_HUB_OFFLINE=1 {cmd}` ({date.today().isoformat()}, one run)  ",
                         f"Machine: {head}", "",
                         *([] if args.part in OWN_TABLES else ["| what | n | baseline | fast path | ratio | labels "
                                                               "| target |", "|---|---|---|---|---|---|---|"]),
                         *rows, f"<!-- bench_speed_{args.part}:end -->"])
    print(section)
    if not args.no_write:
        write_section(ROOT / "BENCHMARKS.md", section, args.part)
    return 0


def write_section(path: Path, section: str, part: str) -> None:
    """Replace this part's section (between its markers), else insert it after the issue-14 heading."""
    start, end = f"<!-- bench_speed_{part}:start -->", f"<!-- bench_speed_{part}:end -->"
    text = path.read_text()
    if start in text and end in text:
        head, rest = text.split(start, 1)
        text = head + section + rest.split(end, 1)[1]
    elif ANCHOR in text:
        text = text.replace(ANCHOR, ANCHOR + "\n\n" + section, 1)
    else:
        text = text.rstrip("\n") + "\n\n" + ANCHOR + "\n\n" + section + "\n"
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


ANCHOR = "<!-- bench_speed:sections -->"


if __name__ == "__main__":
    raise SystemExit(main())
