"""python benchmarks/bench_speed.py PART [--n 32] [--model qwen2.5-coder-0.5b] [--no-write]

Ratio benchmarks of issue 14 (each PART measures both sides in one run, on the same prompts):
  dtype    hf label scoring, bf16 vs fp32 weights, zero-shot rotten prompts (target >= 2x, >= 99% identical labels);
           skipped (and said so) on a CPU without AVX512-BF16/AMX
  prefix   few-shot k=16 scoring with shared-prefix KV reuse vs without (target >= 3x, identical labels)
  threads  zero-shot scoring at 1 torch thread vs the cores available (re-measures the `--threads 1` advice)
  sft      one LoRA training step, bf16 autocast vs fp32, same batch (target >= 1.5x)
  llama    zero-shot generation, 4 new tokens: our hf backend vs llama-cpp-python's OpenAI-compatible server on
           the same GGUF, driven through our openai/ backend (target: within 2x); needs --server-python
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


def alternate(sides: dict[str, object], texts: list[str], chunk: int) -> dict[str, tuple[float, list]]:
    """Run each side (fn(texts) -> rows) chunk by chunk, alternating sides, so load from other jobs on a shared
    machine hits both alike; returns {side: (seconds, rows)}."""
    out = {name: [0.0, []] for name in sides}
    for start in range(0, len(texts), chunk):
        part = texts[start:start + chunk]
        for name, fn in sides.items():
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


def part_sft(args) -> list[str]:
    import torch
    from peft import LoraConfig, get_peft_model

    from eval.lm.causal import load_causal_lm
    from eval.run.hardware import configure_threads
    from finetune.config import DEFAULT_TARGETS
    from finetune.formatting import Formatter, load_template
    from finetune.trainer import completion_loss

    configure_threads(args.threads)
    from eval.inputs.data import load_task

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
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    def step(bf16: bool) -> float:
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = completion_loss(model, batch)
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


def part_llama(args) -> list[str]:
    import socket

    from eval.inputs.data import load_task
    from eval.lm.models import resolve
    from eval.lm.packaged import assembled_file
    from eval.lm.prompts import load_prompt
    from eval.run.hardware import configure_threads
    from prompting.backends import BackendOptions, get_backend

    if not args.server_python:
        return ["llama: needs --server-python (a venv with llama-cpp-python[server])"]
    threads = configure_threads(args.threads)
    gguf = assembled_file(args.model, resolve(args.model).offline)
    port = 18000 + os.getpid() % 1000
    log = open("/tmp/bench_llama_server.log", "w")  # noqa: SIM115 - the server's lifetime
    server = subprocess.Popen([args.server_python, "-m", "llama_cpp.server", "--model", str(gguf), "--host",
                               "127.0.0.1", "--port", str(port), "--n_threads", str(threads),
                               "--n_ctx", "2048", "--model_alias", args.model], stdout=log, stderr=log)
    try:
        for _ in range(600):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.5)
        task = load_task("rotten")
        prompt = load_prompt("zeroshot", task.scheme)
        texts = [prompt.render(e.text) for e in task.test(args.n)]
        gold = [e.label for e in task.test(args.n)]
        out: dict[str, tuple[float, list[str]]] = {}
        for name, opts in (("hf", BackendOptions(max_new_tokens=4, batch_size=args.batch_size, threads=threads)),
                           ("openai", BackendOptions(max_new_tokens=4, concurrency=1,
                                                     base_url=f"http://127.0.0.1:{port}/v1", timeout=600))):
            backend = get_backend(name)(args.model, opts, task.scheme)
            backend.ready()
            warm: dict = {}
            backend.answer_all(texts[:2], warm.__setitem__)
            got: dict = {}
            t = timed(lambda b=backend, g=got: b.answer_all(texts, g.__setitem__))[0]
            out[name] = (t, [task.scheme.extract(got[i].text or "") for i in range(len(texts))])
            if name == "hf":
                info = backend.run_info
    finally:
        server.terminate()
        server.wait(timeout=30)
    (th, lh), (tl, ll) = out["hf"], out["openai"]
    canary = float(info["canary"].get("seconds", 0.0))
    same = sum(a == b for a, b in zip(lh, ll))
    acc = [sum(a == g for a, g in zip(x, gold)) / len(gold) for x in (lh, ll)]
    return [f"| zero-shot generation, 4 new tokens; hf: {info['dtype']}, batch {info['batch_size']}, prefix "
            f"{info['prefix_tokens']} tokens, canary {info['canary'].get('seconds', 0):.0f} s (inside the time); "
            f"llama.cpp: Q4_K_M GGUF, GGML_NATIVE=OFF build, one request at a time | {len(texts)} | "
            f"hf {th:.1f} s ({len(texts) / th:.2f} ex/s; {len(texts) / (th - canary):.2f} ex/s without the canary) | "
            f"llama.cpp {tl:.1f} s ({len(texts) / tl:.2f} ex/s) | **{tl / th:.2f}x** (> 1: hf faster; "
            f"{tl / (th - canary):.2f}x without the canary) | {same}/{len(texts)} same labels "
            f"(accuracy hf {acc[0]:.1%}, "
            f"llama.cpp {acc[1]:.1%}) | within 2x |"]


PARTS = {"dtype": part_dtype, "prefix": part_prefix, "threads": part_threads, "sft": part_sft, "llama": part_llama}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("part", choices=sorted(PARTS))
    ap.add_argument("--model", default="qwen2.5-coder-0.5b")
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--steps", type=int, default=3, help="sft: timed steps per side")
    ap.add_argument("--server-python", default=None, help="llama: python of a venv with llama-cpp-python[server]")
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
                         "| what | n | baseline | fast path | ratio | labels | target |",
                         "|---|---|---|---|---|---|---|", *rows, f"<!-- bench_speed_{args.part}:end -->"])
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
