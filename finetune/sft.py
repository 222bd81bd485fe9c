"""SFT track: instruction-tune a causal LM with LoRA to answer with a label word; evaluate before and after training
on the same test items, in one record per (n_train, seed).

    python finetune/sft.py --model qwen3-4b --task imdb --n-train 1024 --seeds 0
    python finetune/sft.py --model gemma3-270m --task drugs --n-train 256 --seeds 0 --n-eval 80
        # offline, CPU: ~32 min on 2 loaded cores (BENCHMARKS.md: 1,476 s training + 460 s for two evaluations)
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
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python finetune/sft.py`: import from the repo root, not from finetune/
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from eval.inputs.data import TaskData, load_task
from eval.inputs.dataref import data_ref, load_ref
from eval.lm.models import resolve
from eval.run.cli import add_data_args, add_run_args, data_kwargs, parse_track_args, values_with_role
from eval.run.distributed import barrier, close, is_main, world_size
from eval.run.records import RunSpec, finish_run, output_dir, record_path
from eval.run.runner import one_by_one, track_cli
from eval.scoring.labels import INVALID
from eval.tracks import DataRef
from finetune.backends import BackendError, cuda_available, optimizer_name, select_backend
from finetune.config import LEGACY_OPTIONS, SFTArgs, default_config_file, trainer_args
from finetune.formatting import Formatter, load_template
from finetune.predict import ModeResult, evaluate

# --- the track contract (eval/tracks.py) ----------------------------------------------------------------------------

Config = SFTArgs


def config_from_options(model: str, method: str, options: dict) -> SFTArgs:
    """A sweep block: built-in defaults < finetune/configs/<model>.yaml < the options; the method (lora, qlora)
    sets the quantization unless the options do."""
    if method not in ("lora", "qlora"):
        raise ValueError(f"SFT methods are lora and qlora (4-bit, CUDA), got {method!r}")
    values = {**_config_file_values(model), "quantization": "4bit" if method == "qlora" else "none", **options}
    return SFTArgs.from_options({**values, "model": model})


def make_spec(cfg: SFTArgs, data: DataRef, n_train: int | str, seed: int, n_eval: int | None) -> RunSpec:
    """The prompt file's version is part of the options: editing prompts/sft.txt changes the run id."""
    if not cfg.model:
        raise ValueError("name the model to fine-tune: --model ALIAS (e.g. gemma3-270m)")
    # what the run asks for, feasible here or not (a sweep plans runs for a GPU machine; preflight checks CUDA)
    method = "qlora" if cfg.quantization == "4bit" or (cfg.quantization == "auto" and cuda_available()) else "lora"
    options = {**cfg.options(), "prompt_version": load_template(cfg.prompt).version}
    return RunSpec(track="finetune", task=data.task, model=cfg.model, method=method, n_train=n_train, seed=seed,
                   n_eval=n_eval, options=options, data=data.ref, runtime=values_with_role(cfg, "runtime"))


def config_from_spec(spec: RunSpec) -> SFTArgs:
    options = {**LEGACY_OPTIONS, **{k: v for k, v in spec.options.items() if k != "prompt_version"}}
    runtime = {**spec.runtime, "quantization": "4bit" if spec.method == "qlora" else "none"}  # the method decides
    return SFTArgs.from_options({**options, "model": spec.model}, **runtime)


def run_one(spec: RunSpec, results_dir: str, task: TaskData | None = None) -> Path:
    """Run one spec; returns the record path (the record's config holds every effective value). Without a
    learning rate, finetune/search.py decides: the documented default LR, or (when the split carved from the run's own
    training subset can separate the candidates, or --search asks) a search on that split."""
    cfg = config_from_spec(spec)
    if cfg.learning_rate is None:
        from finetune.search import plan  # the default LR unless the validation split can separate candidates

        task = task or load_ref(spec.task, spec.data)
        with tempfile.TemporaryDirectory(prefix="sft-search-") as scratch:  # the trials' checkpoints
            cfg, search = plan(spec, cfg, task, scratch=scratch)
            return train_and_record(spec, cfg, results_dir, task=task, search=search)
    return train_and_record(spec, cfg, results_dir, task=task)


def _config_file_values(model: str) -> dict:
    from eval.run.cli import load_yaml_config

    path = default_config_file(model)
    return load_yaml_config(path, SFTArgs) if path else {}


def train_and_record(spec: RunSpec, cfg: SFTArgs, results_dir: str, task: TaskData | None = None,
                     search: dict | None = None) -> Path:
    backend = select_backend(cfg.backend)  # first: unsloth imports before torch/transformers (it patches them)
    resume = search.pop("resume", None) if search else None  # finetune/search.py: the chosen trial goes on
    import torch
    from transformers import set_seed

    from finetune.backends import follow_loaded_dtype, for_inference, for_training, load, model_type_of
    from finetune.export import export_after_record, save_adapter
    from finetune.trainer import frozen_linears_cast, make_trainer, unwrap_training_forward

    # --- data ---
    task = task or load_ref(spec.task, spec.data)
    train = task.train(spec.n_train, spec.seed)
    test = task.test(spec.n_eval)
    template = load_template(cfg.prompt)
    wanted = spec.options.get("prompt_version")
    if wanted is not None and str(wanted) != template.version:
        raise ValueError(f"this run was planned with prompt {cfg.prompt} version {wanted}, the file is now version "
                         f"{template.version}; plan it again (rerun the command) to get its current run id")

    # --- model (the only backend-specific stage) ---
    four_bit = spec.method == "qlora"
    if four_bit and not torch.cuda.is_available():
        raise BackendError("method qlora (4-bit) needs CUDA; rerun with --quantization none (method lora)")
    info = resolve(spec.model)
    from eval.run.hardware import configure_threads, sft_precision

    # one decision (docs/speed.md); the model family matters only where float16 would be picked (a GPU)
    model_type = model_type_of(info) if torch.cuda.is_available() else None
    precision = {**sft_precision(cfg.dtype, model_type), "threads": configure_threads()}
    set_seed(spec.seed)  # LoRA init, data order, dropout
    loaded = load(info, backend, load_in_4bit=four_bit, max_seq_length=cfg.max_seq_length, lora=cfg.lora(),
                  seed=spec.seed, dtype=precision["weights"], gradient_checkpointing=cfg.gradient_checkpointing)
    precision = follow_loaded_dtype(precision, loaded.model)
    model, tok = loaded.model, loaded.tokenizer
    fmt = Formatter.for_run(tok, task.scheme, template, cfg, info.base)  # base models: plain prompts
    prompts = [fmt.prompt(ex.text) for ex in test]
    eval_kw = {"eval_mode": cfg.eval_mode, "batch_size": cfg.eval_batch_size, "max_new_tokens": cfg.max_new_tokens,
               "batch_check": cfg.batch_check, "autocast": precision["autocast"]}

    # --- evaluate before training (fresh LoRA adapters are a no-op: B is initialised to zero) ---
    # Under `accelerate launch` every process trains (TRL/Trainer runs DDP by itself) and only the main process
    # evaluates and writes the record, so a data-parallel run still has one record (eval/run/distributed.py).
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
    bf16 = precision["bf16"]  # CPU: torch.autocast bf16 over fp32 weights; CUDA: native bf16 only
    out = output_dir(spec, results_dir)
    # batch_size is per process; steps are planned on each process's share, so epochs mean the same at any world size
    steps_cfg = dataclasses.replace(cfg, min_steps=resume["rest_steps"], max_steps=resume["rest_steps"]) if resume \
        else cfg
    args = trainer_args(steps_cfg, output_dir=str(out / "trainer"), n_examples=-(-len(train) // world_size()),
                        seed=spec.seed, cuda=cuda, bf16=bf16, unsloth=backend == "unsloth")
    asked_optim = optimizer_name(cuda)
    trainer = make_trainer(model, tok, args, fmt.dataset_rows(train), sparse_logits=backend == "hf")
    if resume:
        from finetune.search import resume as resume_trial

        resume_trial(trainer, model, cfg, resume)
        _say(f"continuing the search's lr {cfg.learning_rate:g} trial from step {resume['first_steps']} of "
             f"{resume['total_steps']}")
    _say(f"training: {args.max_steps} steps of {cfg.batch_size} x {cfg.grad_accum}, lr {cfg.learning_rate}")
    t0 = time.perf_counter()
    with frozen_linears_cast(model, torch.bfloat16, enabled=backend == "hf" and precision["autocast"]) as cast:
        result = trainer.train()  # under CPU bf16 autocast: the frozen weights cast once, not every step
    train_s = time.perf_counter() - t0
    optimizer = used_optimizer(trainer, asked_optim)
    _say(f"trained in {train_s:.0f} s, final loss {result.training_loss:.4f}")

    if not main_process:
        barrier()  # wait until the main process has evaluated and written the record
        return record_path(spec, results_dir)

    # --- evaluate after training, same prompts, with the forward the record names (no training-time autocast) ---
    model = unwrap_training_forward(model)
    for_inference(loaded)
    after = evaluate(model, tok, prompts, fmt, **eval_kw)
    _report("after training", after, test)

    # --- save the adapter, record, then the optional exports (a failed export is recorded, the run is kept) ---
    saved = save_adapter(loaded, out)
    main_mode = "generate" if "generate" in after else "score"
    extra = {"eval_mode": cfg.eval_mode, "main_eval_mode": main_mode, "artifacts": saved, "search": search}
    search_s = search["seconds"] if search else 0.0  # the search's cost is part of what this run paid to train
    if main_mode == "generate" and "score" in after:
        extra["score_mode"] = _mode_summary(test, task, spec.seed, after["score"], before["score"])
    losses = [round(h["loss"], 4) for h in trainer.state.log_history if "loss" in h]
    steps = resume["total_steps"] if resume else args.max_steps
    config = {**dataclasses.asdict(cfg), "backend": backend, "method": spec.method, "load_in_4bit": four_bit,
              "max_steps": steps, "optim": optimizer["optim"], "optimizer": optimizer, "bf16": bf16,
              "use_cpu": args.use_cpu,
              "gradient_checkpointing": args.gradient_checkpointing, "formatting": fmt.describe(),
              "model": loaded.info, "train_loss": round(result.training_loss, 4), "loss_log": losses,
              "processes": world_size(),
              "train_shared_prefix": _prefix_summary(getattr(trainer, "prefix_stats", None)),
              "train_frozen_linears_bf16": cast,  # finetune.trainer.frozen_linears_cast: layers cast once
              "precision": {k: str(v).removeprefix("torch.") for k, v in precision.items()},
              "eval_runtime": {"before": before[main_mode].run, "after": after[main_mode].run},
              "eval_forward": "unwrapped"}  # finetune/serve.py: records without it evaluated under the bf16 wrapper
    timing = {"train_s": round(train_s + search_s, 2), "search_s": round(search_s, 2),
              "eval_s": round(after[main_mode].seconds, 2),
              "before_eval_s": round(before[main_mode].seconds, 2),
              **{f"{m}_eval_s": round(r.seconds, 2) for m, r in after.items()},
              "train_steps_per_s": round(args.max_steps / train_s, 4) if train_s > 0 else None,
              **({"continued_steps": args.max_steps} if resume else {})}
    record = finish_run(spec, task, test, after[main_mode].preds, results_dir=results_dir, model_id=loaded.model_id,
                        backend=backend, timing=timing, config=config, raws=after[main_mode].raws,
                        before_preds=before[main_mode].preds, before_raws=before[main_mode].raws,
                        n_train_examples=len(train), versions={"prompt": f"{template.name}@{template.version}"},
                        extra=extra, row_fields=[{**a, "before_status": b["status"]} for a, b in
                                                 zip(after[main_mode].row_fields(), before[main_mode].row_fields())],
                        cost={"device": getattr(model, "device", None), "dtype": getattr(model, "dtype", None)})
    export_after_record(loaded, out, record, merge=cfg.merge, gguf=cfg.export_gguf,
                        modelfile_prompt=fmt.prompt_with_slot("{{ .Prompt }}"), stop=[tok.eos_token],
                        num_ctx=cfg.max_seq_length + 64)
    barrier()  # the other processes of a data-parallel run wait for this record
    return record


def _prefix_summary(stats: dict | None) -> dict | None:
    """finetune.trainer: how many tokens per training batch ran once for all its rows (None: the backend's own
    loss, e.g. unsloth's)."""
    if not stats or not stats.get("batches"):
        return None
    return {"batches": stats["batches"], "mean_tokens": round(stats["prefix_tokens"] / stats["batches"], 1)}


def used_optimizer(trainer: Any, asked: str) -> dict:
    """The optimizer that trained, next to the one the run asked for. A library imported into the process can
    change it behind the run's back (unsloth 2026.10.9 on CPU, `unsloth_zoo/cpu/trainer.py`: adamw_torch ->
    adamw_torch_fused in TrainingArguments.__post_init__), so the record reads it from the trainer."""
    opt = getattr(trainer, "optimizer", None)
    inner = getattr(opt, "optimizer", opt)  # accelerate wraps it in an AcceleratedOptimizer
    defaults = getattr(inner, "defaults", {}) or {}
    name = getattr(trainer.args, "optim", asked)
    return {"asked": asked, "optim": str(getattr(name, "value", name)), "class": type(inner).__name__,
            "fused": defaults.get("fused"), "foreach": defaults.get("foreach")}


def _say(msg: str) -> None:
    print(f"[sft] {msg}", file=sys.stderr, flush=True)


def _report(stage: str, results: dict[str, ModeResult], test: list) -> None:
    for mode, r in results.items():
        acc = sum(p == ex.label for p, ex in zip(r.preds, test)) / max(len(test), 1)
        valid = sum(p != INVALID for p in r.preds) / max(len(test), 1)
        _say(f"{stage}, {mode}: accuracy {acc:.3f}, valid {valid:.3f} ({r.seconds:.0f} s)")


def _mode_summary(test: list, task: TaskData, seed: int, after: ModeResult, before: ModeResult) -> dict:
    """The secondary evaluation mode: metrics before/after plus the predictions (labels only, compact)."""
    from eval.run.records import evaluate as score

    return {"metrics": score(test, after.preds, task.labels, seed=seed),
            "before_training": score(test, before.preds, task.labels, seed=seed),
            "preds": after.preds, "before_preds": before.preds,
            "eval_s": round(after.seconds, 2), "before_eval_s": round(before.seconds, 2)}


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, SFTArgs]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_args(ap)
    add_run_args(ap)
    # finetune/configs/<model>.yaml holds the tuned defaults for a known model
    cfg, ns = parse_track_args(SFTArgs, ap, argv, "SFT options",
                               lambda known: default_config_file(known.model) if known.model else None)
    if not cfg.model:
        ap.error("the following arguments are required: --model (an alias such as gemma3-270m, an HF id or a folder)")
    return ns, cfg


def cli(argv: list[str] | None = None) -> int:
    ns, cfg = parse_args(argv)

    def build() -> tuple[list[RunSpec], TaskData]:
        task = load_task(**data_kwargs(ns))
        data = DataRef(task.name, data_ref(**data_kwargs(ns)))
        return [make_spec(cfg, data, n, seed, ns.n_eval) for n in ns.n_train for seed in ns.seeds], task

    run = one_by_one(lambda spec, task: run_one(spec, ns.results_dir, task), ns.results_dir, ns.overwrite,
                     desc=f"{cfg.model} SFT runs", note=f" (config: {ns.config or 'built-in defaults'})",
                     debug=ns.debug)
    return track_cli(build, run, results_dir=ns.results_dir, dry_run=ns.dry_run, debug=ns.debug, done=close)


def doctor_checks(facts: dict) -> list:
    """Which SFT backends can run here (finetune/doctor.py)."""
    from finetune.doctor import doctor_checks as checks

    return checks(facts)


def command(model: str, method: str, task: str, n: int | str, seeds: str, n_eval: str, options: dict | None) -> str:
    """The arguments of this CLI that add the run; `options` (those that differ from the model's defaults) as flags.
    The method is the quantization (qlora: 4-bit)."""
    from eval.run.cli import flags

    quant = " --quantization 4bit" if method == "qlora" else ""
    return f"--task {task} --model {model} --n-train {n} --seeds {seeds}{n_eval}{quant}{flags(options)}"


def preflight(spec: RunSpec) -> list[str]:
    """What can be known before loading the model: the backend, 4-bit and the GGUF export can run here."""
    cfg = config_from_spec(spec)
    problems = []
    try:
        backend = select_backend(cfg.backend)
    except BackendError as exc:
        return [str(exc)]
    if spec.method == "qlora" and not cuda_available():
        problems.append("method qlora (4-bit) needs CUDA and none is visible: rerun with --quantization none (LoRA)")
    if cfg.export_gguf and backend != "unsloth":
        problems.append(f"--export-gguf needs the unsloth backend on CUDA (here the {backend} backend would run): "
                        "drop --export-gguf, or add --merge and convert the merged folder with llama.cpp's "
                        "convert_hf_to_gguf.py")
    elif cfg.export_gguf and not cuda_available():
        from finetune.backends import llama_cpp_missing

        missing = llama_cpp_missing()  # on a CPU unsloth would clone and build llama.cpp (docs/unsloth-cpu.md)
        if missing:
            problems.append(f"--export-gguf with unsloth on a CPU: {missing}, and unsloth would clone and build it "
                            "from GitHub; build it there first (or set UNSLOTH_LLAMA_CPP_PATH), or drop "
                            "--export-gguf and add --merge")
    return problems


if __name__ == "__main__":
    raise SystemExit(cli())
