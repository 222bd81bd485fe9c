"""SFT track: instruction-tune a causal LM with LoRA to answer with a label word; evaluate before and after training
on the same test items, in one record per (n_train, seed).

    python finetune/sft.py --model qwen3-4b --task imdb --n-train 1024 --seeds 0
    python finetune/sft.py --model gemma3-270m --task drugs --n-train 256 --seeds 0    # offline, CPU, ~20 min
    python -m finetune.sft --model llama3.2-1b --task sst2 --n-train 64 256 --seeds 0 1 --lora-r 32 --backend hf
    python finetune/sft.py --model mistral-7b --task imdb --n-train 1024 --merge --export-gguf q4_k_m   # CUDA

Defaults come from finetune/configs/<model>.yaml when it exists (or --config FILE); the command line wins.
Backends: unsloth (4-bit, CUDA, chosen by --backend auto when it imports) or hf (transformers + peft: bitsandbytes
4-bit on CUDA, full-precision LoRA on CPU). Training is the same TRL SFTTrainer for both.
Stages: data -> model -> evaluate before -> train -> evaluate after -> record (+ adapter under the run's artifacts/).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # `python finetune/sft.py`: import from the repo root, not from finetune/
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from eval.cli import add_data_args, add_run_args, build_config, config_parser, data_kwargs
from eval.data import TaskData, load_task
from eval.distributed import barrier, close, is_main, world_size
from eval.labels import INVALID
from eval.models import resolve
from eval.records import RunSpec, finish_run, iter_specs, output_dir, record_path, run_all
from eval.sources import DataError
from finetune.backends import BackendError, quantize_4bit, select_backend
from finetune.config import RUNTIME_ONLY, SFTArgs, default_config_file, trainer_args
from finetune.formatting import Formatter, load_template
from finetune.predict import ModeResult, evaluate


def run_one(spec: RunSpec, results_dir: str, *, task: TaskData | None = None, runtime: dict | None = None) -> Path:
    """The track contract (eval/tracks.py). spec.options override finetune/configs/<model>.yaml, which overrides
    the built-in defaults; `runtime` (backend, eval batch size, merge/export) may also come in the options.
    Returns the record path; the record's config holds every effective value."""
    cfg = SFTArgs.from_options({**_config_file_values(spec.model), **spec.options}, **(runtime or {}))
    search = None
    if cfg.learning_rate is None:  # the same tuning effort as every training-based track (finetune/select.py)
        from finetune.select import choose

        task = task or load_task(spec.task)
        cfg, search = choose(spec, cfg, task)
    return main(spec, cfg, results_dir, task=task, search=search)


def canonical_options(model: str, method: str, options: dict) -> dict:
    """The options the CLI writes for this run (finetune/configs/<model>.yaml filled in, the prompt's version
    pinned), so a sweep and the CLI give the same run the same id. Runtime-only settings given here are kept."""
    runtime = {k: v for k, v in options.items() if k in RUNTIME_ONLY}
    cfg = SFTArgs.from_options({k: v for k, v in {**_config_file_values(model), **options}.items()
                                if k not in RUNTIME_ONLY and k != "prompt_version"})
    return {**cfg.options(), "prompt_version": options.get("prompt_version", load_template(cfg.prompt).version),
            **runtime}


def validate_options(options: dict) -> None:
    """Called by `eval/sweep.py --dry-run`: an unknown option or a bad choice fails before a sweep starts."""
    cfg = SFTArgs.from_options(options)
    for f in dataclasses.fields(SFTArgs):
        choices = f.metadata.get("choices")
        if choices and getattr(cfg, f.name) not in choices:
            raise ValueError(f"SFT option {f.name} must be one of {choices}, got {getattr(cfg, f.name)!r}")


def _config_file_values(model: str) -> dict:
    from eval.cli import load_yaml_config

    path = default_config_file(model)
    return load_yaml_config(path, SFTArgs) if path else {}


def main(spec: RunSpec, cfg: SFTArgs, results_dir: str, task: TaskData | None = None,
         search: dict | None = None) -> Path:
    import torch
    from transformers import set_seed

    from finetune.backends import for_inference, for_training, load, save
    from finetune.trainer import make_trainer

    # --- data ---
    task = task or load_task(spec.task)
    train = task.train(spec.n_train, spec.seed)
    test = task.test(spec.n_eval)
    template = load_template(cfg.prompt)
    wanted = spec.options.get("prompt_version")
    if wanted is not None and str(wanted) != template.version:
        raise ValueError(f"spec asks for prompt {cfg.prompt} version {wanted}, the file is version "
                         f"{template.version}; rebuild the spec from the current prompt file")

    # --- model (the only backend-specific stage) ---
    backend = select_backend(cfg.backend)
    four_bit = spec.method == "qlora"
    if four_bit and not torch.cuda.is_available():
        raise BackendError("method qlora (4-bit) needs CUDA; rerun with --quantization none (method lora)")
    info = resolve(spec.model)
    set_seed(spec.seed)  # LoRA init, data order, dropout
    loaded = load(info, backend, load_in_4bit=four_bit, max_seq_length=cfg.max_seq_length, lora=cfg.lora(),
                  seed=spec.seed)
    model, tok = loaded.model, loaded.tokenizer
    chat = cfg.chat if cfg.chat is not None else (False if info.base else None)  # base models: plain prompts
    fmt = Formatter(tok, task.scheme, template, cfg.max_seq_length, chat=chat)
    prompts = [fmt.prompt(ex.text) for ex in test]
    eval_kw = {"eval_mode": cfg.eval_mode, "batch_size": cfg.eval_batch_size, "max_new_tokens": cfg.max_new_tokens}

    # --- evaluate before training (fresh LoRA adapters are a no-op: B is initialised to zero) ---
    # Under `accelerate launch` every process trains (TRL/Trainer runs DDP by itself) and only the main process
    # evaluates and writes the record, so a data-parallel run still has one record (eval/distributed.py).
    main_process = is_main()
    _say(f"{spec.run_id}: {backend} backend, {loaded.model_id}, {len(train)} train / {len(test)} test examples"
         + (f", {world_size()} processes" if world_size() > 1 else ""))
    before: dict[str, ModeResult] = {}
    if main_process:
        for_inference(loaded)
        before = evaluate(model, tok, prompts, fmt, **eval_kw)
        _report("before training", before, test)

    # --- train: TRL SFTTrainer on prompt/completion rows (loss on the answer + EOS only), right padding ---
    for_training(loaded)
    tok.padding_side = "right"
    cuda = torch.cuda.is_available()
    bf16 = cuda and torch.cuda.is_bf16_supported()
    out = output_dir(spec, results_dir)
    # batch_size is per process; steps are planned on each process's share, so epochs mean the same at any world size
    args = trainer_args(cfg, output_dir=str(out / "trainer"), n_examples=-(-len(train) // world_size()),
                        seed=spec.seed, cuda=cuda, bf16=bf16, unsloth=backend == "unsloth")
    trainer = make_trainer(model, tok, args, fmt.dataset_rows(train), sparse_logits=backend == "hf")
    _say(f"training: {args.max_steps} steps of {cfg.batch_size} x {cfg.grad_accum}, lr {cfg.learning_rate}")
    t0 = time.perf_counter()
    result = trainer.train()
    train_s = time.perf_counter() - t0
    _say(f"trained in {train_s:.0f} s, final loss {result.training_loss:.4f}")

    if not main_process:
        barrier()  # wait until the main process has evaluated and written the record
        return record_path(spec, results_dir)

    # --- evaluate after training, same prompts ---
    for_inference(loaded)
    after = evaluate(model, tok, prompts, fmt, **eval_kw)
    _report("after training", after, test)

    # --- save and record ---
    saved = save(loaded, out, merge=cfg.merge, gguf=cfg.export_gguf,
                 modelfile_prompt=fmt.prompt_with_slot("{{ .Prompt }}"), stop=[tok.eos_token],
                 num_ctx=cfg.max_seq_length + 64)
    main_mode = "generate" if "generate" in after else "score"
    extra = {"eval_mode": cfg.eval_mode, "main_eval_mode": main_mode, "artifacts": saved, "search": search}
    search_s = search["seconds"] if search else 0.0  # the search's cost is part of what this run paid to train
    if main_mode == "generate" and "score" in after:
        extra["score_mode"] = _mode_summary(test, task, spec.seed, after["score"], before["score"])
    losses = [round(h["loss"], 4) for h in trainer.state.log_history if "loss" in h]
    config = {**dataclasses.asdict(cfg), "backend": backend, "method": spec.method, "load_in_4bit": four_bit,
              "max_steps": args.max_steps, "optim": args.optim, "bf16": bf16, "use_cpu": args.use_cpu,
              "gradient_checkpointing": args.gradient_checkpointing, "formatting": fmt.describe(),
              "model": loaded.info, "train_loss": round(result.training_loss, 4), "loss_log": losses,
              "processes": world_size()}
    timing = {"train_s": round(train_s + search_s, 2), "search_s": round(search_s, 2),
              "eval_s": round(after[main_mode].seconds, 2),
              "before_eval_s": round(before[main_mode].seconds, 2),
              **{f"{m}_eval_s": round(r.seconds, 2) for m, r in after.items()},
              "train_steps_per_s": round(args.max_steps / train_s, 4) if train_s > 0 else None}
    record = finish_run(spec, task, test, after[main_mode].preds, results_dir=results_dir, model_id=loaded.model_id,
                        backend=backend, timing=timing, config=config, raws=after[main_mode].raws,
                        before_preds=before[main_mode].preds, before_raws=before[main_mode].raws,
                        n_train_examples=len(train), versions={"prompt": f"{template.name}@{template.version}"},
                        extra=extra)
    barrier()  # the other processes of a data-parallel run wait for this record
    return record


def _say(msg: str) -> None:
    print(f"[sft] {msg}", file=sys.stderr, flush=True)


def _report(stage: str, results: dict[str, ModeResult], test: list) -> None:
    for mode, r in results.items():
        acc = sum(p == ex.label for p, ex in zip(r.preds, test)) / max(len(test), 1)
        valid = sum(p != INVALID for p in r.preds) / max(len(test), 1)
        _say(f"{stage}, {mode}: accuracy {acc:.3f}, valid {valid:.3f} ({r.seconds:.0f} s)")


def _mode_summary(test: list, task: TaskData, seed: int, after: ModeResult, before: ModeResult) -> dict:
    """The secondary evaluation mode: metrics before/after plus the predictions (labels only, compact)."""
    from eval.records import evaluate as score

    return {"metrics": score(test, after.preds, task.labels, seed=seed),
            "before_training": score(test, before.preds, task.labels, seed=seed),
            "preds": after.preds, "before_preds": before.preds,
            "eval_s": round(after.seconds, 2), "before_eval_s": round(before.seconds, 2)}


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, SFTArgs]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="an alias in eval/models.yaml (e.g. qwen3-4b), any HF id or a "
                                                   "local folder")
    add_data_args(ap)
    add_run_args(ap)
    config_parser(SFTArgs, ap, title="SFT options")
    ns = ap.parse_args(argv)
    if not ns.config:  # finetune/configs/<model>.yaml holds the tuned defaults for a known model
        ns.config = default_config_file(ns.model)
    return ns, build_config(SFTArgs, ns)


def cli(argv: list[str] | None = None) -> int:
    ns, cfg = parse_args(argv)
    try:
        task = load_task(**data_kwargs(ns))
        template = load_template(cfg.prompt)
        select_backend(cfg.backend)  # fail before any run starts
        method = "qlora" if quantize_4bit(cfg.quantization) else "lora"
        options = {**cfg.options(), "prompt_version": template.version}
        specs = iter_specs("finetune", task.name, ns.model, method, ns.n_train, ns.seeds, ns.n_eval, options)
        runtime = {k: getattr(cfg, k) for k in RUNTIME_ONLY}
        run_all(specs, ns.results_dir, ns.overwrite,
                lambda spec: run_one(spec, ns.results_dir, task=task, runtime=runtime), desc=f"{ns.model} SFT runs",
                note=f" (config: {ns.config or 'built-in defaults'})")
        close()
    except (DataError, BackendError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(cli())
