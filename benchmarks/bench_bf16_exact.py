"""python benchmarks/bench_bf16_exact.py [--tasks rotten chnsenti] [--models ...] [--n 96] [--n-cal 96] [--no-write]

bf16 with fp32's labels (issue 24, docs/speed.md): hf zero-shot label scoring, per offline model and task, in one
process:
  calibration  --n-cal items of the task's *training* pool (never the test items), scored in fp32 and in bf16: the
               distribution of eval.lm.infer.pair_error (how far bf16 moves any difference of two label scores) and
               the bf16 margins of the labels that flip. The run's threshold must sit above the largest error seen
               on these other items ("covered").
  benchmark    the first --n test items, chunk by chunk alternating two sides on one model (eval.lm.canary.CastSwitch,
               as the `hf` backend runs): exact fp32, and bf16 + fp32 re-scoring of the near ties
               (eval.lm.infer.NearTieQueue; threshold calibrated on the first 16 items as the backend's canary does,
               or --threshold). Reported: identical labels vs fp32 (plain bf16 and bf16 + re-scoring), how many
               items were re-scored, the speed ratio.
The machine is shared: times are inflated by other jobs (the load average is printed), the ratio comes from one
run with both sides alternating; identical-label rates do not depend on load. Writes its section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MODELS = ("qwen2.5-coder-0.5b", "smollm2-135m", "gemma3-270m")
TASKS = ("rotten", "chnsenti")


def load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def setup(model_name: str, task_name: str):
    from eval.inputs.data import load_task
    from eval.lm.canary import CastSwitch
    from eval.lm.causal import build_prompt, encode, load_causal_lm
    from eval.lm.models import resolve
    from eval.lm.prompts import load_prompt

    task = load_task(task_name)
    prompt = load_prompt("zeroshot", task.scheme)
    model, tok, _ = load_causal_lm(model_name, dtype="float32")
    chat = False if resolve(model_name).base else None  # as the hf backend: base models see the prompt verbatim
    words = [task.scheme.verbalizer(lab) for lab in task.scheme.labels]

    def render(examples):
        texts = [build_prompt(tok, prompt.render(e.text), chat=chat) for e in examples]
        return texts, [encode(tok, t) for t in texts]

    return task, model, tok, CastSwitch(model), words, render


def argmax(rows, words):
    return [words[max(range(len(r)), key=r.__getitem__)] for r in rows]


def measure(model_name: str, task_name: str, args) -> dict:
    from eval.lm.causal import score_labels, shared_prefix
    from eval.lm.infer import NearTieQueue, calibrated_margin, margin, pair_error

    task, model, tok, switch, words, render = setup(model_name, task_name)
    bs = args.batch_size

    def score(texts, ids, reuse=None):  # fp32_head: as the backend scores under the rule (a no-op in fp32)
        join = "" if texts[0][-1:].isspace() else " "
        return score_labels(model, tok, texts, words, batch_size=bs, prefix=join, ids=ids, fp32_head=True,
                            reuse_prefix=reuse)

    # calibration on training items
    cal_texts, cal_ids = render(task.train(args.n_cal, 0))
    switch.high()
    s32 = score(cal_texts, cal_ids)
    switch.low()
    s16 = score(cal_texts, cal_ids)
    errors = sorted(pair_error(a, b) for a, b in zip(s16, s32, strict=True))
    flips = [round(margin(a), 4) for a, b in zip(s16, s32, strict=True) if argmax([a], words) != argmax([b], words)]

    # benchmark on test items: both sides alternate chunk by chunk
    texts, ids = render(task.test(args.n))
    for side in (switch.high, switch.low):  # warm-up (allocator, oneDNN kernels) in both dtypes
        side()
        score(texts[:2], ids[:2])
    t = {"fp32": 0.0, "exact": 0.0, "bf16": 0.0}  # bf16: the exact side's bf16 scoring alone, before re-scoring
    # the prompts' shared prefix, computed once per run and dtype as the hf backend does (timed: the fp32 side's,
    # and for the exact side its bf16 one plus the fp32 one its re-scoring needs, computed once)
    prefix = {}
    for name, side in (("fp32", switch.high), ("bf16", switch.low)):
        side()
        t0 = time.perf_counter()
        prefix[name] = shared_prefix(model, ids) or False
        took = time.perf_counter() - t0
        for k in ("fp32", "exact") if name == "fp32" else ("exact", "bf16"):
            t[k] += took

    def fp32(keys):  # near ties, re-scored a full batch at a time (as the hf backend does)
        switch.high()
        try:
            return score([texts[i] for i in keys], [ids[i] for i in keys], prefix["fp32"])
        finally:
            switch.low()

    queue: NearTieQueue | None = None
    rows32, plain, exact = [], [], {}
    threshold = args.threshold
    for start in range(0, len(texts), bs):
        part, pids = texts[start:start + bs], ids[start:start + bs]
        t0 = time.perf_counter()
        switch.high()
        rows32 += score(part, pids, prefix["fp32"])
        t["fp32"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        switch.low()
        rows = score(part, pids, prefix["bf16"])
        t["bf16"] += time.perf_counter() - t0
        plain += [list(r) for r in rows]
        keys = list(range(start, start + len(part)))
        if queue is None:  # the backend calibrates on its canary: the first 16 items in fp32 and bf16
            if threshold is None:
                threshold = calibrated_margin(rows[:16], rows32[:16])[0]
            queue = NearTieQueue(threshold, bs, fp32)
        exact.update({k: r for k, r, _ in queue.add(keys, rows) + queue.flush()})
        t["exact"] += time.perf_counter() - t0
    t0 = time.perf_counter()
    exact.update({k: r for k, r, _ in queue.flush(True)} if queue else {})
    t["exact"] += time.perf_counter() - t0
    exact = [exact[i] for i in range(len(texts))]
    rescored = queue.rescored
    gold = [e.label for e in task.test(args.n)]
    verb = dict(zip(words, task.scheme.labels, strict=True))
    l32, lplain, lexact = (argmax(r, words) for r in (rows32, plain, exact))
    n = len(texts)
    acc = {k: sum(verb[p] == g for p, g in zip(v, gold, strict=True)) / n
           for k, v in (("fp32", l32), ("exact", lexact))}
    return {"model": model_name, "task": task_name, "n": n, "n_cal": len(cal_texts), "batch_size": bs,
            "threshold": round(threshold, 4), "cal_covered": errors[-1] < threshold,
            "cal_error_max": round(errors[-1], 4),
            "cal_error_p99": round(errors[int(0.99 * (len(errors) - 1))], 4),
            "cal_error_median": round(statistics.median(errors), 4), "cal_flips": len(flips),
            "cal_flip_margins": flips, "same_plain": sum(a == b for a, b in zip(lplain, l32, strict=True)),
            "same_exact": sum(a == b for a, b in zip(lexact, l32, strict=True)), "rescored": rescored,
            "fp32_s": round(t["fp32"], 2), "exact_s": round(t["exact"], 2),
            "ratio": round(t["fp32"] / t["exact"], 2), "bf16_s": round(t["bf16"], 2),
            "plain_ratio": round(t["fp32"] / t["bf16"], 2), "acc": acc, "load_end": load()}


def table(results: list[dict], machine: str, command: str) -> str:
    lines = [
        "<!-- bench_bf16_exact:start -->",
        f"#### bf16 with fp32's labels: near-tie re-scoring ({date.today().isoformat()}, issue 24)",
        "",
        f"Machine: {machine}", "", f"Command: `{command}`", "",
        "Zero-shot label scoring (`--mode score`), batch 16. Calibration: `n_cal` items of the training pool scored "
        "in fp32 and bf16; *error* = eval.lm.infer.pair_error (the largest change bf16 makes to a difference of two "
        "label scores, nats). Benchmark: the first n test items, fp32 and bf16 + fp32 re-scoring of the items whose "
        "bf16 top-two margin is below the threshold, alternating chunk by chunk in one run; *identical* = argmax "
        "labels equal to the fp32 run's. *plain bf16* = the bf16 side before re-scoring (bf16 model, label logits "
        "from an fp32 output layer, `fp32_head`).",
        "",
        "| task | model | n_cal: error median / p99 / max (flips) | n | threshold (vs n_cal max) | "
        "plain bf16 identical | bf16 + re-score identical | re-scored | fp32 s | bf16+re-score s | speed-up | "
        "plain bf16 speed-up | accuracy fp32 / exact | load at end |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        n = r["n"]
        lines.append(
            f"| {r['task']} | {r['model']} | {r['n_cal']}: {r['cal_error_median']} / {r['cal_error_p99']} / "
            f"{r['cal_error_max']} ({r['cal_flips']}) | {n} | {r['threshold']} "
            f"({'covers' if r['cal_covered'] else 'BELOW'} the max) | {r['same_plain']}/{n} "
            f"({r['same_plain'] / n:.1%}) | **{r['same_exact']}/{n} ({r['same_exact'] / n:.1%})** | {r['rescored']} "
            f"({r['rescored'] / n:.0%}) | {r['fp32_s']} | {r['exact_s']} | **{r['ratio']}x** | "
            f"{str(r['plain_ratio']) + 'x' if 'plain_ratio' in r else '-'} | "
            f"{r['acc']['fp32']:.3f} / {r['acc']['exact']:.3f} | {r['load_end']} |")
    lines.append("<!-- bench_bf16_exact:end -->")
    return "\n".join(lines)


def write_section(path: Path, section: str) -> None:
    start, end = "<!-- bench_bf16_exact:start -->", "<!-- bench_bf16_exact:end -->"
    text = path.read_text()
    if start in text and end in text:
        head, rest = text.split(start, 1)
        text = head + section + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", nargs="+", default=list(TASKS))
    ap.add_argument("--models", nargs="+", default=list(MODELS))
    ap.add_argument("--n", type=int, default=96, help="test items per task")
    ap.add_argument("--n-cal", type=int, default=96, help="training items for the calibration")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--threshold", type=float, default=None,
                    help="default: calibrated on the first 16 test items, as the backend's canary does "
                         "(eval.lm.infer.calibrated_margin)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", default=None, help="also write the results here")
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--table-from", nargs="+", metavar="JSON", default=None,
                    help="measure nothing: write the section from --json files of earlier runs (one per model, say)")
    args = ap.parse_args()
    if args.table_from:
        results = [r for f in args.table_from for r in json.loads(Path(f).read_text())]
        info = " / ".join(sorted({r.get("machine", "?") for r in results}))
        command = "`; `".join(dict.fromkeys(r.get("command", "?") for r in results))
    else:
        results, info, command = measure_all(args)
        if results is None:
            return 0
    section = table(results, info, command)
    print(section)
    if args.json and not args.table_from:
        Path(args.json).write_text(json.dumps(results, indent=1))
    if not args.no_write:
        write_section(ROOT / "BENCHMARKS.md", section)
    return 0


def measure_all(args) -> tuple[list[dict] | None, str, str]:
    """(results of every task x model, the machine line, the command); None results when the CPU has no native
    bf16."""
    from eval.run.hardware import configure_threads, cpu_native_bf16

    if not cpu_native_bf16():
        print("This CPU has neither AVX512-BF16 nor AMX: the hf backend runs fp32 there; nothing to measure.")
        return None, "", ""
    threads = configure_threads(args.threads)
    sys.argv[0] = "benchmarks/bench_bf16_exact.py"
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_speed import machine  # the machine line every speed benchmark prints

    info = f"{machine()}; torch threads {threads}"
    command = "python " + " ".join(sys.argv)
    results = []
    for task in args.tasks:
        for model in args.models:
            r = {**measure(model, task, args), "machine": info, "command": command}
            print(json.dumps(r), flush=True)
            results.append(r)
    return results, info, command


if __name__ == "__main__":
    raise SystemExit(main())
