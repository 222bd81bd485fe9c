"""python benchmarks/bench_bf16_variants.py --model gemma3-270m --task rotten [--n 96] [--n-cal 64] [--json F]

Where does bf16's label-score error come from, and would a more exact low-precision pass make the near-tie rule
(docs/speed.md, "bf16 with fp32's labels") cheaper? For one offline model and task, the same zero-shot prompts are
scored in fp32 and in several low-precision variants of one loaded model (hooks on the bf16 model of
eval.lm.canary.CastSwitch, or on the fp32 one; set up and removed outside the timed calls):

  bf16               the hf backend's fast side: bf16 weights and activations, candidate logits in fp32
  +fp32 residual     the residual stream stays fp32 (embedding output, every residual add); each linear layer casts
                     its input to bf16, so the matmuls are the same bf16 ones
  +fp32 attention    also q, k, v in fp32 (attention and its softmax in fp32; o_proj casts back to bf16)
  +fp32 mlp          also the gate/up outputs and the activation in fp32 (down_proj casts back)
  bf16 matmuls only  fp32 model; only the linear layers (and the output layer) run bf16 matmuls

For each: the pair_error distribution (eval.lm.infer.pair_error) on --n-cal training items and the --n test items,
the threshold the canary rule would set from the first 16 test items (eval.lm.infer.calibrated_margin), the share
of test items whose margin falls below it (re-scored in fp32), the variant's own speed-up over fp32 (s; both
sides alternate chunk by chunk in one run, each side's shared prefix computed once) and the speed-up of the exact
path that follows, 1 / (1/s + f). Prints a markdown table; --json keeps the numbers.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

VARIANTS = ("bf16", "+fp32 residual", "+fp32 attention", "+fp32 mlp", "bf16 matmuls only")


class _Unpatch:
    def __init__(self, module) -> None:
        self.module = module

    def remove(self) -> None:
        del self.module.forward


class Variant:
    """Hooks that turn the CastSwitch's bf16 model (or, for "bf16 matmuls only", its fp32 model) into a variant."""

    def __init__(self, model, switch, name: str, first_ids: list[int]) -> None:
        self.model, self.switch, self.name, self.handles = model, switch, name, []
        self.first_ids = first_ids  # the candidates' first tokens: their logits stay fp32, as with fp32_head

    def __enter__(self):
        import torch
        import torch.nn.functional as F

        model, name, add = self.model, self.name, self.handles.append
        low = torch.bfloat16
        if name == "bf16 matmuls only":
            self.switch.high()
            head, first = model.get_output_embeddings(), torch.tensor(self.first_ids)

            def linear(m, x, w):
                flat = x.reshape(-1, x.shape[-1])
                y = F.linear(flat.to(low), w).float()
                if m.bias is not None:  # added in fp32 (Qwen2's q/k/v projections have one)
                    y = y + m.bias
                if m is head:  # the candidates' logits from the fp32 head input, as fp32_head does
                    y[:, first] = flat @ m.weight[first].T + (m.bias[first] if m.bias is not None else 0)
                return y.view(*x.shape[:-1], -1)

            for m in model.modules():
                if isinstance(m, torch.nn.Linear):  # an instance forward shadows the class's; removed on exit
                    w = m.weight.detach().to(low)
                    m.forward = lambda x, m=m, w=w: linear(m, x, w)
                    self.handles.append(_Unpatch(m))
            return self
        self.switch.low()
        if name == "bf16":
            return self

        def cast_in(m, args):
            return (args[0].to(m.weight.dtype), *args[1:]) if args[0].dtype != m.weight.dtype else None

        for m in model.modules():
            if isinstance(m, torch.nn.Linear):
                add(m.register_forward_pre_hook(cast_in))
        add(model.get_input_embeddings().register_forward_hook(lambda _m, _a, out: out.float()))
        fp32_attention = name == "+fp32 attention"
        for path, m in model.named_modules():
            leaf = path.rsplit(".", 1)[-1]
            if type(m).__name__.endswith("RotaryEmbedding") and not fp32_attention:  # q and k stay bf16
                add(m.register_forward_hook(lambda _m, _a, out: tuple(o.to(low) for o in out)))
            if (fp32_attention and leaf in ("q_proj", "k_proj", "v_proj")) or \
                    (name == "+fp32 mlp" and leaf in ("gate_proj", "up_proj")):
                add(m.register_forward_hook(lambda _m, _a, out: out.float()))
        return self

    def __exit__(self, *exc) -> None:
        while self.handles:
            self.handles.pop().remove()
        self.switch.low()


def measure(model_name: str, task_name: str, n: int, n_cal: int, bs: int) -> list[dict]:
    from bench_bf16_exact import setup  # noqa: I001 (a sibling script)

    from eval.lm.causal import score_labels, shared_prefix
    from eval.lm.infer import calibrated_margin, margin, pair_error

    from eval.lm.infer import candidate_ids

    task, model, tok, switch, words, render = setup(model_name, task_name)

    def score(texts, ids, reuse=None):
        join = "" if texts[0][-1:].isspace() else " "
        return score_labels(model, tok, texts, words, batch_size=bs, prefix=join, ids=ids, fp32_head=True,
                            reuse_prefix=reuse)

    cal_texts, cal_ids = render(task.train(n_cal, 0))
    texts, ids = render(task.test(n))
    join = "" if texts[0][-1:].isspace() else " "
    first_ids = sorted({candidate_ids(tok, t, w, join)[0] for t in texts[:4] for w in words})
    switch.high()
    ref_cal, ref = score(cal_texts, cal_ids), score(texts, ids)
    pre32 = shared_prefix(model, ids) or False
    out = []
    for name in VARIANTS:
        with Variant(model, switch, name, first_ids):
            cal, rows = score(cal_texts, cal_ids), score(texts, ids)
            pre = shared_prefix(model, ids) or False
        errors = sorted(pair_error(a, b) for a, b in zip(cal + rows, ref_cal + ref, strict=True))
        tau, canary_max = calibrated_margin(rows[:16], ref[:16])
        share = sum(margin(r) < tau for r in rows) / n
        t = {"fp32": 0.0, "low": 0.0}
        for start in range(0, n, bs):  # alternating chunk by chunk, each side with its own prefix
            part, pids = texts[start:start + bs], ids[start:start + bs]
            switch.high()
            t0 = time.perf_counter()
            score(part, pids, pre32)
            t["fp32"] += time.perf_counter() - t0
            with Variant(model, switch, name, first_ids):
                t0 = time.perf_counter()
                score(part, pids, pre)
                t["low"] += time.perf_counter() - t0
        s = t["fp32"] / t["low"]
        out.append({"model": model_name, "task": task_name, "variant": name, "n": n, "n_cal": n_cal,
                    "error_median": round(statistics.median(errors), 4), "error_max": round(errors[-1], 4),
                    "canary_max": round(canary_max, 4), "threshold": round(tau, 4), "covered": errors[-1] < tau,
                    "rescored_share": round(share, 3), "speedup": round(s, 2),
                    "exact_speedup": round(1 / (1 / s + share), 2),
                    "fp32_s": round(t["fp32"], 2), "low_s": round(t["low"], 2)})
        print(json.dumps(out[-1]), flush=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="gemma3-270m")
    ap.add_argument("--task", default="rotten")
    ap.add_argument("--n", type=int, default=96)
    ap.add_argument("--n-cal", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    rows = measure(args.model, args.task, args.n, args.n_cal, args.batch_size)
    print(f"\n{args.model} on {args.task}, {args.n} test + {args.n_cal} training items, batch {args.batch_size}, "
          f"{args.threads} thread(s)\n")
    print("| variant | error median / max (nats) | canary max -> threshold | re-scored | s (plain speed-up) | "
          "exact path 1/(1/s+f) |\n|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['variant']} | {r['error_median']} / {r['error_max']} | {r['canary_max']} -> {r['threshold']}"
              f"{'' if r['covered'] else ' (below max)'} | {r['rescored_share']:.0%} | {r['speedup']}x | "
              f"{r['exact_speedup']}x |")
    if args.json:
        Path(args.json).write_text("".join(json.dumps(r) + "\n" for r in rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
