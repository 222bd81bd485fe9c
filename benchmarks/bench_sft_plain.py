"""python benchmarks/bench_sft_plain.py [--models M ...] [--tasks T ...] [--seeds 0 1 2] [--n-train 128] [--json F]

Are the SFT track's defaults at least as good as the plain script a user would write first? Both sides train the
same model on the same n-train examples (task.train(n, seed)) and are scored on the same first n-eval test items by
generating and parsing (eval.scoring.labels), with invalid answers counted wrong:

  plain    transformers Trainer + peft, written here in ~40 lines as users do: LoRA r 16 / alpha 32 on all linear
           layers, lr 2e-4, 3 epochs, batch 8, the prompt "Review: <text>\\nSentiment:" and the answer " <label>"
           (loss on the answer tokens only), the review cut to the track's built-in 256 tokens, no chat template, no
           search; greedy, 4 new tokens;
  track    `finetune/sft.py --model M --task T --n-train N --n-eval E --seeds S` with its defaults (--search auto:
           an LR search only when the split carved from the N examples can separate the candidates, else lr 2e-4;
           chat template; docs/speed.md). `--track-args "--search halving"` measures the search as an option.

Every model x task gets a per-seed table and one row of the summary: the paired difference track - plain over all
seeds' items (eval.decide.stats.paired_difference: bootstrap CI, McNemar's p with one seed), whether it is
significantly negative, and the training-time ratio (the track's time includes its search). The issue-24 table is this
summary for the offline models (smollm2-135m, gemma3-270m, qwen2.5-coder-0.5b) x tasks (rotten, chnsenti), >= 3 seeds.

Both run in bf16 autocast on a CPU with AVX512-BF16/AMX (eval.run.hardware.sft_precision), fp32 elsewhere, with the
same torch threads. Prints one markdown table row per side (accuracy with its 95% CI, macro-F1, valid rate, wall time
of training and evaluation); the track's record goes to a temporary results dir.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def plain(model_name: str, task, n_train: int, n_eval: int, seed: int) -> dict:
    """The plain peft script: what a user writes before any tuning."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments

    from eval.lm.causal import load_causal_lm
    from eval.run.hardware import sft_precision
    from finetune.config import SFTArgs

    path = load_causal_lm(model_name, dtype="float32")[2]["model_id"]  # the converted offline GGUF (a folder)
    tok = AutoTokenizer.from_pretrained(path)
    tok.pad_token = tok.pad_token or tok.eos_token
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear",
                                             task_type="CAUSAL_LM"))
    words = {lab: task.scheme.verbalizer(lab) for lab in task.labels}

    def prompt(text: str) -> str:
        return f"Review: {text}\nSentiment:"

    # the track's built-in budget for prompt + answer + EOS (SFTArgs.max_seq_length, 256; a model's config file may
    # set less: smollm2-135m's sets 128), met the way a plain script does it, by cutting the review's tokens; uncut,
    # one batch of 8 long Chinese reviews (chnsenti) took 21 GB
    answer = max(len(tok(" " + w)["input_ids"]) for w in words.values()) + 1
    budget = SFTArgs().max_seq_length - len(tok(prompt(""))["input_ids"]) - answer

    def fit(text: str) -> str:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        return text if len(ids) <= budget else tok.decode(ids[:budget])

    rows = []
    for e in task.train(n_train, seed):
        p, a = tok(prompt(fit(e.text)))["input_ids"], tok(" " + words[e.label])["input_ids"] + [tok.eos_token_id]
        rows.append({"input_ids": p + a, "labels": [-100] * len(p) + a})

    def collate(batch: list[dict]) -> dict:
        n = max(len(b["input_ids"]) for b in batch)
        pad = tok.pad_token_id
        return {"input_ids": torch.tensor([b["input_ids"] + [pad] * (n - len(b["input_ids"])) for b in batch]),
                "labels": torch.tensor([b["labels"] + [-100] * (n - len(b["labels"])) for b in batch]),
                "attention_mask": torch.tensor([[1] * len(b["input_ids"]) + [0] * (n - len(b["input_ids"]))
                                                for b in batch])}

    prec = sft_precision()
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(out, learning_rate=2e-4, num_train_epochs=3, per_device_train_batch_size=8,
                                 logging_steps=10, save_strategy="no", report_to=[], seed=seed, use_cpu=True,
                                 bf16=bool(prec["bf16"]), remove_unused_columns=False)
        t0 = time.perf_counter()
        Trainer(model=model, args=args, train_dataset=rows, data_collator=collate).train()
        train_s = time.perf_counter() - t0
    model.eval()
    tok.padding_side = "left"
    test = task.test(n_eval)
    preds, t0 = [], time.perf_counter()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bool(prec["autocast"])):
        for i in range(0, len(test), 16):
            enc = tok([prompt(fit(e.text)) for e in test[i:i + 16]], return_tensors="pt", padding=True)
            out = model.generate(**enc, max_new_tokens=4, do_sample=False, pad_token_id=tok.pad_token_id)
            preds += [task.scheme.extract(t) for t in tok.batch_decode(out[:, enc["input_ids"].shape[1]:],
                                                                        skip_special_tokens=True)]
    return {**score(task, test, preds, train_s, time.perf_counter() - t0, prec["dtype"]),
            "settings": "lr 2e-4, 3 epochs", "preds": preds}


def score(task, test, preds: list[str], train_s: float, eval_s: float, dtype: str) -> dict:
    from eval.scoring.metrics import compute_metrics

    m = compute_metrics([e.label for e in test], preds, task.labels)
    return {"accuracy": m["accuracy"], "ci": m.get("accuracy_ci"), "macro_f1": m["macro_f1"],
            "valid_rate": m["valid_rate"], "train_s": train_s, "eval_s": eval_s, "dtype": dtype}


def _plain_job(model_name: str, task_name: str, n_train: int, n_eval: int, seed: int, threads: int) -> dict:
    from eval.inputs.data import load_task
    from eval.run.hardware import configure_threads

    configure_threads(threads)
    return plain(model_name, load_task(task_name), n_train, n_eval, seed)


def plain_apart(model_name: str, task, n_train: int, n_eval: int, seed: int, threads: int) -> dict:
    """plain() in a fresh process, as the track side runs: the memory it used goes back to the OS before the
    track's process starts (Qwen2.5-Coder-0.5B on chnsenti: ~13 GB resident after the plain side, which left
    too little for the track on a 24 GB machine when both stayed in one process)."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=1, mp_context=mp.get_context("spawn")) as pool:
        return pool.submit(_plain_job, model_name, task.name, n_train, n_eval, seed, threads).result()


def track(model_name: str, task, n_train: int, n_eval: int, seed: int, extra: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as res:
        cmd = [sys.executable, str(ROOT / "finetune" / "sft.py"), "--model", model_name, "--task", task.name,
               "--n-train", str(n_train), "--n-eval", str(n_eval), "--seeds", str(seed), "--results-dir", res,
               *extra]
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        wall = time.perf_counter() - t0
        path = next(Path(res).rglob("runs/**/*.json"))
        rec = json.loads(path.read_text())
        items = [json.loads(line) for line in path.with_suffix(".jsonl").read_text().splitlines()]
        if [i["gold"] for i in items] != [e.label for e in task.test(n_eval)]:
            raise RuntimeError("the track's per-item file is not in test order: cannot pair it with the plain side")
        preds = [i["pred"] for i in items]
    m, t = rec["metrics"], rec["timing"]
    search = (rec.get("details") or {}).get("search") or {}
    return {"accuracy": m["accuracy"], "ci": m.get("accuracy_ci"), "macro_f1": m["macro_f1"],
            "valid_rate": m["valid_rate"], "train_s": t["train_s"], "eval_s": t.get("eval_s"), "wall_s": wall,
            "dtype": rec["config"].get("precision", {}).get("dtype"), "chosen": search.get("chosen"),
            "before": (rec.get("before_training") or {}).get("accuracy"), "settings": " ".join(extra) or "defaults",
            "search": search or None, "steps": rec["config"].get("max_steps"),
            "formatting": rec["config"].get("formatting"), "preds": preds}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", "--model", nargs="+", default=["smollm2-135m"])
    ap.add_argument("--tasks", "--task", nargs="+", default=["rotten"])
    ap.add_argument("--n-train", type=int, default=128)
    ap.add_argument("--n-eval", type=int, default=200)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--sides", nargs="+", choices=["plain", "track"], default=["plain", "track"])
    ap.add_argument("--track-args", default="", help="extra finetune/sft.py options for the track side, one string "
                    "(e.g. \"--learning-rate 2e-4 --num-train-epochs 3\")")
    ap.add_argument("--json", default=None, help="append every (model, task, seed) result here as it finishes")
    ap.add_argument("--summarize", metavar="JSONL", default=None,
                    help="train nothing: print the tables of the results a --json file holds (runs split over "
                         "several invocations, or one that was stopped)")
    args = ap.parse_args()
    if args.summarize:
        return summarize(Path(args.summarize))

    from eval.inputs.data import load_task
    from eval.run.hardware import configure_threads

    threads = configure_threads()
    extra = shlex.split(args.track_args)
    names = {"plain": "plain peft script", "track": f"track {args.track_args or 'defaults'} (finetune/sft.py)"}
    summary = []
    for model in args.models:
        for task_name in args.tasks:
            task = load_task(task_name)
            rows = []  # (side, seed, result)
            for seed in args.seeds:  # one seed at a time, both sides, so a long batch yields its pairs as it goes
                if "plain" in args.sides:
                    rows.append(("plain", seed, plain_apart(model, task, args.n_train, args.n_eval, seed, threads)))
                if "track" in args.sides:
                    rows.append(("track", seed, track(model, task, args.n_train, args.n_eval, seed, extra)))
                line = json.dumps({"model": model, "task": task_name, "seed": seed, "n_train": args.n_train,
                                   "rows": [[names[n], s, r] for n, s, r in rows if s == seed]})
                print(line, flush=True)
                if args.json:
                    with open(args.json, "a", encoding="utf-8") as f:
                        f.write(line + "\n")
            print(side_table(model, task, args, threads, rows, names))
            if len(args.sides) == 2:
                summary.append(pair_row(model, task, args, rows))
    if summary:
        print(SUMMARY_HEAD + "\n".join(summary))
    return 0


def summarize(path: Path) -> int:
    """The per-seed tables and the summary of a --json file, grouped by model x task x n_train (the last result of a
    repeated seed wins)."""
    from types import SimpleNamespace

    from eval.inputs.data import load_task

    groups: dict[tuple, dict] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            r = json.loads(line)
            groups.setdefault((r["model"], r["task"], r["n_train"]), {})[r["seed"]] = r["rows"]
    names = {"plain": "plain peft script", "track": "track defaults (finetune/sft.py)"}
    summary = []
    for (model, task_name, n_train), by_seed in groups.items():
        rows = [("plain" if name.startswith("plain") else "track", seed, res)
                for seed in sorted(by_seed) for name, seed, res in by_seed[seed]]
        n_eval = len(rows[0][2]["preds"])
        args = SimpleNamespace(n_train=n_train, n_eval=n_eval)
        task = load_task(task_name)
        print(side_table(model, task, args, None, rows, names))
        if {side for side, _, _ in rows} == {"plain", "track"}:
            summary.append(pair_row(model, task, args, rows))
    if summary:
        print(SUMMARY_HEAD + "\n".join(summary))
    return 0


SUMMARY_HEAD = ("\n| model | task | n_train | seeds | test items | plain accuracy | track accuracy | track - plain "
                "[95% CI], p | significantly worse | near-constant seeds plain / track | train-time ratio track / "
                "plain (median of seeds) | track's LR choice |\n"
                "|---|---|---|---|---|---|---|---|---|---|---|---|\n")


def constant_like(support: Counter, r: dict) -> str | None:
    """Why a side's answers are (nearly) a constant predictor (eval.decide.stats.near_collapse), or None: such a
    side is flagged, and a difference against it says only that the other side beat the constant. `support`: the
    gold label counts of the scored items."""
    from eval.decide.stats import near_collapse

    return near_collapse(Counter(r["preds"]), support, r["macro_f1"])


def side_table(model: str, task, args, threads: int | None, rows: list, names: dict) -> str:
    where = f", torch threads {threads}" if threads else ""  # None: results read back from a --json file
    out = [f"\n{model} on {task.name}, n_train {args.n_train}, first {args.n_eval} test items{where}\n",
           "| side | seed | accuracy [95% CI] | macro-F1 | valid | near-constant | train s (with search) | eval s | "
           "precision | settings |", "|---|---|---|---|---|---|---|---|---|---|"]
    support = Counter(e.label for e in task.test(args.n_eval))
    for side, seed, r in rows:
        ci = f" [{r['ci'][0]:.3f}, {r['ci'][1]:.3f}]" if r.get("ci") else ""
        before = f"; before training {r['before']:.3f}" if r.get("before") is not None else ""
        flag = constant_like(support, r)
        out.append(f"| {names[side]} | {seed} | {r['accuracy']:.3f}{ci} | {r['macro_f1']:.3f} | {r['valid_rate']:.3f} "
                   f"| {f'**yes**: {flag}' if flag else 'no'} | {r['train_s']:.0f} | {r['eval_s'] or 0:.0f} | "
                   f"{r['dtype']} | {r.get('chosen') or r['settings']}{before} |")
    return "\n".join(out)


def pair_row(model: str, task, args, rows: list) -> str:
    """One line of the defaults-vs-plain table: mean accuracies, the paired difference over all seeds' items, and
    the training-time ratio (median over seeds; the track's time includes its search)."""
    from eval.decide.stats import encode, paired_difference

    gold = [e.label for e in task.test(args.n_eval)]
    sides = {side: [r for name, _, r in rows if name == side] for side in ("track", "plain")}
    g, a = encode(gold, [r["preds"] for r in sides["track"]], task.labels)
    b = encode(gold, [r["preds"] for r in sides["plain"]], task.labels)[1]
    d = paired_difference(g, a, b, len(task.labels))
    mean = {k: sum(r["accuracy"] for r in v) / len(v) for k, v in sides.items()}
    # the median of the per-seed ratios: one seed trained while the machine was busy (a shared box) moves a ratio of
    # sums, not the median
    per_seed = {seed: {} for _, seed, _ in rows}
    for name, seed, r in rows:
        per_seed[seed][name] = r["train_s"]
    ratios = sorted(t["track"] / max(1e-9, t["plain"]) for t in per_seed.values() if len(t) == 2)
    mid = len(ratios) // 2
    ratio = ratios[mid] if len(ratios) % 2 else (ratios[mid - 1] + ratios[mid]) / 2
    lr = "; ".join(str((r.get("search") or {}).get("reason") or r.get("chosen") or r["settings"])[:80]
                   for r in sides["track"][:1])
    worse = "**yes**" if d.ci[1] < 0 else "no"
    support = Counter(gold)
    flat = {k: sum(constant_like(support, r) is not None for r in v) for k, v in sides.items()}
    return (f"| {model} | {task.name} | {args.n_train} | {len(sides['track'])} | {d.n_items} | {mean['plain']:.3f} | "
            f"{mean['track']:.3f} | {d.diff:+.3f} [{d.ci[0]:+.3f}, {d.ci[1]:+.3f}], p {d.p:.3f} | {worse} | "
            f"{flat['plain']} / {flat['track']} of {len(sides['track'])} | {ratio:.2f}x | {lr} |")


if __name__ == "__main__":
    raise SystemExit(main())
