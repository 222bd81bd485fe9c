"""Prompting track: zero-shot, zero-shot chain-of-thought and few-shot prompts against Ollama, OpenAI-compatible
servers and in-process transformers models.

    # the users' experiment (docs/reference-experiments.md C): Ollama, zero-shot CoT, accuracy at 16/64/256/512 items
    python prompting/run.py --model llama3.1 --task sst2 --n-eval 16 64 256 512 --concurrency 8
    # any OpenAI-compatible server (vLLM, llama.cpp server, LM Studio, Ollama's /v1)
    python prompting/run.py --model openai/qwen3:8b --base-url http://127.0.0.1:11434/v1 --task sst2 --think false
    # offline default, in-process on CPU: zero-shot and few-shot, generated or scored
    python prompting/run.py --model hf/gemma3-270m --task drugs --prompt zeroshot --n-eval 64
    python prompting/run.py --model hf/gemma3-270m --task drugs --shots 4 8 --seeds 0 1 --mode score
    python prompting/run.py --config prompting/configs/sst2_ollama_cot.yaml --model qwen3:8b
    # the few-shot template chosen per run on its own shots (leave-one-out), then used for the test items
    python prompting/run.py --model hf/qwen2.5-coder-0.5b --task rotten --shots 8 --mode score \
        --variants fewshot fewshot_plain

One model call per test example, reused across the --n-eval sizes (each size is one record). Answers are cached by
content under <results-dir>/cache/, so an interrupted run resumes where it stopped; --retry-errors re-asks failures.
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

if __package__ in (None, ""):  # `python prompting/run.py`: import this checkout, not an installed copy
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eval.inputs.data import TaskData, load_task
from eval.inputs.dataref import data_ref, load_ref
from eval.inputs.sources import DataError
from eval.lm.prompts import Prompt, load_prompt, prompt_version
from eval.run.cli import check_choices, data_kwargs, fields_with_role, option, task_help, think_text, values_with_role
from eval.run.records import RunSpec, finish_run, record_path
from eval.run.runner import should_run, track_cli
from eval.scoring.labels import parse_answer
from eval.tracks import DataRef
from prompting.backends import Backend, BackendError, BackendOptions, get_backend, split_model
from prompting.cache import Answer, AnswerCache
from prompting.defaults import cost_note, default_max_new_tokens, model_config_values, parse_prompt_config, thinks

_opt = option  # a field's help and role, written once (eval.run.cli.option)
_RT = "runtime"


@dataclass
class PromptConfig:
    # what to ask
    model: str = _opt("hf/gemma3-270m", "provider/name (ollama/, openai/, hf/) or a bare name for --backend",
                      role="spec")
    backend: str | None = _opt(None, "ollama | openai | hf; unset: the model's prefix, else ollama",
                               choices=["ollama", "openai", "hf"], role="spec")
    prompt: str | None = _opt(None, "unset: fewshot if --shots > 0, else zeroshot for --mode score, else cot",
                              choices=["zeroshot", "cot", "fewshot"], role="spec")
    shots: list[int] = _opt([0], "few-shot examples from the seed's training subset (recorded as n_train)",
                            role="cli")
    mode: str = _opt("generate", "generate, or score the verbalizers' last-position logits (hf only)",
                     choices=["generate", "score"])
    variants: list[str] | None = _opt(None, "few-shot templates in prompts/ to choose from, e.g. fewshot "
                                      "fewshot_plain: with two or more, the one with the best leave-one-out accuracy "
                                      "on the run's own k shots is used (recorded; no test item is seen)")
    think: str | None = _opt(None, "reasoning: true/false/low/medium/high; unset: the model's own")
    format: str | None = _opt(None, "json: constrain answers to a JSON schema of the labels", choices=["json"])
    max_new_tokens: int | None = _opt(None, "answer length limit; unset: 16, or for cot 1024 (256 hf on a CPU)")
    endpoint: str = _opt("generate", "Ollama API: generate (as users did in docs/reference-experiments.md C) or chat",
                         choices=["generate", "chat"])
    raw: bool = _opt(False, "Ollama generate: send the prompt verbatim, without the model's chat template")
    # the data (same flags as every track)
    task: str | None = _opt(None, task_help() + "; neither --task nor --data: drugs", role="cli")
    data: str | None = _opt(None, "ad-hoc local data file (with --text-column, --label-column)", role="cli")
    encoding: str | None = _opt(None, "the encoding of --data, e.g. cp1252, gbk; unset: UTF-8 if valid, else the "
                                "Western rule or detection (docs/encodings.md)", role="cli")
    test_data: str | None = _opt(None, "test file for --data", role="cli")
    text_column: str | None = _opt(None, "text column of --data", role="cli")
    label_column: str | None = _opt(None, "label column of --data", role="cli")
    labels: str | None = _opt(None, "comma-separated label names of --data", role="cli")
    n_eval: list[int] | None = _opt(None, "nested test prefixes to score, e.g. 16 64 256 512; unset: all of it",
                                    role="cli")
    seeds: list[int] = _opt([0], "one run per seed (the seed picks the few-shot examples)", role="cli")
    results_dir: str = _opt("results", "where records (runs/) and the answer cache (cache/) go", role="cli")
    overwrite: bool = _opt(False, "rerun runs whose records exist (cached answers are still reused)", role="cli")
    dry_run: bool = _opt(False, "check every run as the run would, print the plan (run id, done/todo), stop",
                         role="cli")
    debug: bool = _opt(False, "show the full traceback of an error", role="cli")
    retry_errors: bool = _opt(False, "re-ask the examples whose request failed last time", role="runtime")
    # how to reach the model (never changes an answer, so not part of the run id)
    host: str | None = _opt(None, "Ollama server; unset: $OLLAMA_HOST, else http://127.0.0.1:11434", role=_RT)
    base_url: str | None = _opt(None, "OpenAI-compatible /v1 root; unset: $OPENAI_BASE_URL (API key: "
                                "$OPENAI_API_KEY)", role=_RT)
    stream: bool = _opt(False, "Ollama: stream the answer (the timeout then bounds the gap between chunks)", role=_RT)
    concurrency: int = _opt(4, "requests in flight (the server needs OLLAMA_NUM_PARALLEL >= this)", role="runtime")
    timeout: float = _opt(120.0, "seconds per request", role="runtime")
    retries: int = _opt(3, "extra attempts after a timeout or server error, with exponential backoff", role=_RT)
    keep_alive: str | None = _opt(None, "Ollama: keep the model loaded this long, e.g. 10m", role="runtime")
    num_ctx: int | None = _opt(None, "Ollama context; unset: sized to the longest prompt", role="runtime")
    batch_size: int = _opt(16, "hf: prompts per forward pass (left-padded)", role="runtime")
    threads: int | None = _opt(None, "hf: torch CPU threads; unset: the idle cores (BENCHMARKS.md)", role=_RT)
    dtype: str = _opt("auto", "hf: auto = bf16 on CPUs with AVX512-BF16/AMX and CUDA >= sm_80, else fp32/fp16",
                      choices=["auto", "float32", "bfloat16", "float16"], role=_RT)
    reuse_prefix: bool | None = _opt(None, "hf: run the prompts' shared prefix (instruction, shots) once and reuse "
                                     "its KV cache; unset: when it is >= 16 tokens (same labels, docs/speed.md)",
                                     role=_RT)
    batch_check: bool = _opt(True, "hf: compare batch-1 and batch-N labels (and bf16 vs fp32) on the first 16 "
                                   "prompts; on a difference use the batch size / dtype that agrees", role=_RT)
    rescore_margin: float | None = _opt(None, "hf --mode score with bf16 chosen automatically on a CPU: re-score in "
                                        "fp32 the items whose bf16 top-two label margin (nats) is below this; unset: "
                                        "the calibrated default (docs/speed.md); 0: plain bf16. Changes labels, so it "
                                        "is part of the run id")

    def __post_init__(self) -> None:
        check_choices(self)  # a YAML file or a sweep gets the checks argparse does
        self.think = think_text(self.think)  # one spelling per setting: "on" and "true" give one run id
        if self.rescore_margin is not None and self.rescore_margin < 0:
            raise ValueError(f"--rescore-margin must be >= 0 nats (0: plain bf16), got {self.rescore_margin}")
        if self.variants:
            from eval.lm.prompts import variant_problem

            self.variants = [str(v).split("@")[0] for v in self.variants]  # a recorded version names its file
            if self.prompt not in (None, "fewshot"):
                raise ValueError(f"--variants are few-shot templates; they do not apply to --prompt {self.prompt}")
            if len(set(self.variants)) != len(self.variants):
                raise ValueError(f"--variants lists a template twice: {self.variants}")
            bad = [p for v in self.variants if (p := variant_problem(v))]
            if bad:
                raise ValueError("; ".join(bad))


def prompt_kind(cfg: PromptConfig, shots: int) -> str:
    """--prompt, else fewshot with shots, else zeroshot for --mode score, else cot (reference experiment C)."""
    kind = cfg.prompt or ("fewshot" if shots else "zeroshot" if cfg.mode == "score" else "cot")
    if shots and kind != "fewshot":
        raise DataError(f"--shots {shots} needs --prompt fewshot (got --prompt {kind})")
    return kind


def method_name(kind: str, mode: str) -> str:
    if mode == "generate":
        return kind
    return "score" if kind == "zeroshot" else f"{kind}-score"


def max_new_tokens(cfg: PromptConfig, kind: str) -> int:
    """--max-new-tokens, else room to reason for CoT sized to where the model runs (prompting/defaults.py)."""
    return cfg.max_new_tokens or default_max_new_tokens(kind == "cot", split_model(cfg.model, cfg.backend)[0],
                                                        thinking=thinks(cfg.think))


def make_backend(cfg: PromptConfig, scheme, kind: str | None = None) -> Backend:
    """The backend for `cfg` (not connected, no model loaded). Its answer length is that of `kind`'s prompt; a run
    over several kinds sets it per group (run_group)."""
    name, model = split_model(cfg.model, cfg.backend)
    kinds = {kind} if kind else {prompt_kind(cfg, k) for k in cfg.shots}
    opts = BackendOptions.of(cfg, max_new_tokens=max_new_tokens(cfg, next(iter(sorted(kinds)))),
                             reasoning="cot" in kinds)
    if cfg.mode == "score" and name != "hf":
        raise BackendError("--mode score reads logits in-process: use an hf/ model (servers return text only)")
    if cfg.mode == "score" and "cot" in kinds:
        raise BackendError("--mode score scores the label right after the prompt: use --prompt zeroshot or fewshot")
    return get_backend(name)(model, opts, scheme)


def parse_flags(answer: Answer, prompt: Prompt, backend: Backend) -> dict:
    """What eval.scoring.labels.parse_answer needs besides the text; stored in the example's row so that
    eval/scoring/rescore.py re-applies exactly the same rules (only the flags that are set, to keep rows short)."""
    raw_prompt = answer.meta.get("raw_prompt", backend.raw_prompt)  # hf: known once the tokenizer is loaded
    flags = {"truncated": bool(answer.truncated), "reasoning": prompt.kind == "cot",
             "think_open": bool(prompt.think_open and raw_prompt), "error": answer.error}
    return {k: v for k, v in flags.items() if v}


def parse(answer: Answer, prompt: Prompt, backend: Backend, scheme) -> tuple[str, dict]:
    """The label (or INVALID) and the row fields that say why: failed requests and reasoning cut off by the token
    limit never count."""
    flags = parse_flags(answer, prompt, backend)
    text = prompt.cut(answer.text) if answer.ok and answer.text is not None else None
    label, status = parse_answer(text, scheme, **flags)
    return label, {**flags, "status": status}


def predict(answer: Answer, prompt: Prompt, backend: Backend, scheme) -> str:
    """The label of an answer, or INVALID (see `parse` for the reason)."""
    return parse(answer, prompt, backend, scheme)[0]


def run_group(cfg: PromptConfig, task: TaskData, backend: Backend, cache: AnswerCache, seed: int, shots: int,
              specs: list[RunSpec]) -> list[Path]:
    """All --n-eval sizes of one (seed, shots): one call per example of the largest prefix, one record per size."""
    from prompting.collect import collect

    kind = prompt_kind(cfg, shots)
    backend.options.max_new_tokens = max_new_tokens(cfg, kind)  # identity() reads it: the spec's value
    examples = [(e.text, e.label) for e in task.train(shots, seed)] if shots else []
    t0 = time.perf_counter()
    selection, variant = None, None
    if kind == "fewshot" and cfg.variants:  # variants are few-shot templates, as in make_spec
        if len(cfg.variants) > 1:  # chosen on the shots, before any test item
            variant, selection = choose_variant(cfg, task, backend, cache, examples)
        else:
            variant = cfg.variants[0]
    prompt = load_prompt(kind, task.scheme, shots=examples, template=variant)
    largest = max(specs, key=lambda s: s.n_eval or len(task.test_all))
    test = task.test(largest.n_eval)
    identity = {**backend.identity(), "prompt_version": prompt.version}
    print(cost_note(len(test), backend.options.max_new_tokens, backend.options.batch_size, backend.name, cfg.mode),
          file=sys.stderr)
    got = collect(backend, [prompt.render(e.text) for e in test], cache, identity, cfg.retry_errors,
                  desc=f"{cfg.model} {kind} k={shots} seed={seed}", stop=prompt.stop)
    parsed = [parse(a, prompt, backend, task.scheme) for a in got.answers]
    preds, row_fields = [p for p, _ in parsed], [f for _, f in parsed]
    # the per-example log gets the answer as a server with stop strings returns it (reasoning included, a base
    # model's invented continuation cut), so eval/scoring/rescore.py re-extracts the same labels; failures are None
    # there
    raws = [prompt.cut(a.text) if a.ok and a.text is not None else None for a in got.answers]
    paths = []
    for spec in specs:
        n = len(task.test(spec.n_eval))
        answers = got.answers[:n]
        timing = {"eval_s": round(time.perf_counter() - t0, 3), "ask_s": round(got.wall_s, 3),
                  "select_s": selection["seconds"] if selection else None,  # included in eval_s
                  "model_s": round(sum(a.meta.get("seconds", 0.0) for a in answers), 3),
                  "eval_examples_per_s": round(got.asked / got.wall_s, 3) if got.wall_s else None}
        stats = {"errors": sum(not a.ok for a in answers), "truncated": sum(a.truncated for a in answers),
                 # hf bf16 scoring: near ties re-scored in fp32 (docs/speed.md); counted over this record's answers
                 "rescored_fp32": sum(bool(a.meta.get("rescored_fp32")) for a in answers),
                 "prompt_truncated": sum(bool(a.meta.get("prompt_truncated")) for a in answers),
                 "error_examples": [{"id": e.id, "error": a.error} for e, a in zip(test[:n], answers) if not a.ok],
                 "from_cache": got.from_cache, "asked": got.asked, "think_open": prompt.think_open and
                 backend.raw_prompt, "few_shot_ids": [e.id for e in task.train(shots, seed)] if shots else [],
                 "runtime": getattr(backend, "run_info", None),  # hf: dtype, threads, prefix reuse, canary
                 "prompt_selection": selection, "prompt_used": prompt.version}
        paths.append(finish_run(
            spec, task, test[:n], preds[:n], results_dir=cfg.results_dir, model_id=backend.model_id,
            backend=backend.name, timing=timing, raws=raws[:n], n_train_examples=shots,
            config={k: v for k, v in asdict(cfg).items() if k not in ("n_eval", "seeds", "shots")},
            versions={"prompt": prompt.version}, extra={"prompting": stats}, row_fields=row_fields[:n],
            cost={"device": getattr(backend, "device", None) or f"server ({backend.name})",
                  "dtype": getattr(backend, "dtype", None)}))
    return paths


def choose_variant(cfg: PromptConfig, task: TaskData, backend: Backend, cache: AnswerCache,
                   examples: list[tuple[str, str]]) -> tuple[str, dict]:
    """The few-shot template of `cfg.variants` with the best leave-one-out accuracy on the run's own k shots: each
    shot is asked with the other k-1 as its examples, so the choice costs k calls per variant and no label beyond
    the k the run already spends (the encoders' and SFT's validation split is carved from their subset the same
    way). Invalid answers count wrong; a tie goes to the variant listed first. The scores go into the record."""
    from prompting.collect import collect

    t0 = time.perf_counter()
    scores = []
    for name in cfg.variants or []:
        prompts, prompt = [], None
        for i, (text, _) in enumerate(examples):
            prompt = load_prompt("fewshot", task.scheme, shots=examples[:i] + examples[i + 1:], template=name)
            prompts.append(prompt.render(text))
        assert prompt is not None
        got = collect(backend, prompts, cache, {**backend.identity(), "prompt_version": prompt.version},
                      cfg.retry_errors, desc=f"choose the prompt: {name} on {len(examples)} shots", stop=prompt.stop)
        preds = [parse(a, prompt, backend, task.scheme)[0] for a in got.answers]
        correct = sum(p == lab for p, (_, lab) in zip(preds, examples, strict=True))
        valid = sum(p in task.scheme.labels for p in preds)
        scores.append({"variant": prompt.version, "accuracy": round(correct / len(examples), 4),
                       "valid_rate": round(valid / len(examples), 4), "n": len(examples)})
    best = max(range(len(scores)), key=lambda j: (scores[j]["accuracy"], -j))
    chosen = (cfg.variants or [])[best]
    compared = ", ".join(f"{s['variant'].split('@')[0]} {s['accuracy']:.2f}" for s in scores)
    print(f"prompt chosen on the {len(examples)} shots (leave-one-out): {chosen} ({compared})", file=sys.stderr)
    return chosen, {"validation": "leave-one-out over the run's k shots", "scores": scores,
                    "chosen": scores[best]["variant"], "seconds": round(time.perf_counter() - t0, 3)}


def _data(cfg: PromptConfig) -> dict:
    """The data flags; neither --task nor --data: the demo task drugs."""
    d = data_kwargs(asdict(cfg))
    return {**d, "task": "drugs"} if not d["task"] and not d["data"] else d


def all_specs(cfg: PromptConfig, task: TaskData) -> list[RunSpec]:
    """Every run of the command: seeds x shots x --n-eval sizes."""
    data = DataRef(task.name, data_ref(**_data(cfg)))
    return [make_spec(cfg, data, shots, seed, n) for seed in cfg.seeds for shots in cfg.shots
            for n in cfg.n_eval or [None]]


def plan(cfg: PromptConfig, specs: list[RunSpec]) -> dict[tuple[int, int], list[RunSpec]]:
    """(seed, shots) -> the specs still to run, one per --n-eval size."""
    groups: dict[tuple[int, int], list[RunSpec]] = {}
    for spec in specs:
        if should_run(spec, cfg.results_dir, cfg.overwrite):
            groups.setdefault((spec.seed, int(spec.n_train)), []).append(spec)
    return groups


def run_groups(cfg: PromptConfig, groups: dict[tuple[int, int], list[RunSpec]], task: TaskData) -> list[Path]:
    """Run these specs (grouped by (seed, shots)) through one backend and the shared answer cache; raises on the
    first error, keeping what was answered before it (the cache) and the records already written."""
    written: list[Path] = []
    backend = make_backend(cfg, task.scheme)  # lazily imported backend (nothing loaded yet)
    try:
        with AnswerCache(Path(cfg.results_dir) / "cache" / "prompting.sqlite") as cache:
            # per (seed, shots): cached answers, then the rest asked (the server is checked before the first
            # request: down, model not pulled, bad URL), extracted, one record per --n-eval size
            for (seed, shots), group in groups.items():
                written.extend(run_group(cfg, task, backend, cache, seed, shots, group))
    except BackendError as exc:  # the server went away or refused: what it answered is kept
        raise BackendError(f"{exc} (answers received before this are cached: once it is fixed, the same command "
                           "resumes where it stopped)") from exc
    finally:
        backend.close()
    return written


def main(cfg: PromptConfig) -> int:
    """The command for a parsed config (eval/run/runner.py's loop): data, every run preflighted at once
    (eval/run/preflight.py; the same checks with --dry-run), then the plan or the runs still missing."""

    def build() -> tuple[list[RunSpec], TaskData]:
        task = load_task(**_data(cfg))  # fixed test order, nested train subsets
        return all_specs(cfg, task), task

    def run(specs: list[RunSpec], task: TaskData) -> None:
        todo = plan(cfg, specs)  # which records are missing
        if not todo:
            print("nothing to do: every record exists (--overwrite reruns them)", file=sys.stderr)
            return
        written = run_groups(cfg, todo, task)
        print(f"{len(written)} record(s) written under {cfg.results_dir}/runs/{task.name}/prompting/",
              file=sys.stderr)

    return track_cli(build, run, results_dir=cfg.results_dir, dry_run=cfg.dry_run, debug=cfg.debug)


# --- the track contract (eval/tracks.py, eval/run/sweep.py): a RunSpec alone reproduces a run
# -------------------------

Config = PromptConfig
# method and prompt names as sweeps write them -> template kind
KINDS = {"zeroshot": "zeroshot", "zero-shot": "zeroshot", "score": "zeroshot", "cot": "cot", "cot-zeroshot": "cot",
         "cot_zeroshot": "cot", "fewshot": "fewshot", "few-shot": "fewshot"}
# what the backend reports about itself (which weights, dtype, chat template, temperature): recorded in a spec's
# options because they change answers, but decided by the backend on this machine, never set by a config
DERIVED = {"weights", "chat", "dtype", "temperature", "rescore"}


def make_spec(cfg: PromptConfig, data: DataRef, n_train: int | str, seed: int, n_eval: int | None) -> RunSpec:
    """The options are what changes an answer: the backend's identity (model weights, mode, dtype, decoding) and
    the prompt files' versions, so editing prompts/zeroshot.txt changes the run id."""
    shots = int(n_train)
    kind = prompt_kind(cfg, shots)
    backend = make_backend(cfg, None, kind)
    name, bare = split_model(cfg.model, cfg.backend)
    options = {**{k: v for k, v in backend.identity().items() if k not in ("backend", "model") and v is not None},
               "prompt": prompt_version(kind)}
    if cfg.variants and kind == "fewshot":  # one variant is the prompt; several are chosen from per run
        if len(cfg.variants) > 1 and shots < 2:
            raise ValueError(f"choosing among --variants needs at least 2 shots to validate on (got {shots})")
        versions = [prompt_version(kind, template=v) for v in cfg.variants]
        if len(versions) == 1:
            options["prompt"] = versions[0]
        else:
            options["variants"] = versions
    runtime = {k: v for k, v in values_with_role(cfg, "runtime").items()
               if v != PromptConfig.__dataclass_fields__[k].default}
    return RunSpec(track="prompting", task=data.task, model=f"{name}/{bare}", method=method_name(kind, cfg.mode),
                   n_train=shots, seed=seed, n_eval=n_eval, options=options, data=data.ref, runtime=runtime)


def config_from_options(model: str, method: str, options: dict, **cli: object) -> PromptConfig:
    """A sweep block (or a spec's options) as a config: `prompt` may be a kind or a recorded version string."""
    settable = set(fields_with_role(PromptConfig, "result")) | set(fields_with_role(PromptConfig, "runtime"))
    o = {k: v for k, v in options.items() if k not in DERIVED or k in settable}  # a config field wins
    unknown = sorted(set(o) - settable - {"backend", "prompt"})
    if unknown:
        raise ValueError(f"unknown prompting options {unknown}; known: {sorted(settable | {'backend', 'prompt'})}")
    stem = str(o.get("prompt") or "").split("@")[0]
    kind = KINDS.get(stem) or KINDS.get(method.removesuffix("-score"))
    if stem and stem not in KINDS:  # a named template file (prompts/<stem>.txt): a few-shot variant
        o["variants"] = o.get("variants") or [stem]
    if kind is None:
        raise ValueError(f"cannot tell the prompt of method {method!r}: use one of {sorted(KINDS)} or set "
                         "options.prompt")
    mode = o.get("mode") or ("score" if method.endswith("score") else "generate")
    backend = o.pop("backend", None)
    if backend and not model.startswith(f"{backend}/"):
        model = f"{backend}/{model}"
    if o.get("dtype") and model.split("/")[0] == "hf":  # a spec names the dtype that ran
        from eval.run.hardware import pick_dtype

        auto = str(pick_dtype()[1]).removeprefix("torch.")
        o["dtype"] = "auto" if o["dtype"] == auto else o["dtype"]  # auto keeps the bf16-vs-fp32 guard
    o.update(prompt=kind, mode=mode)
    # the model's own defaults (prompting/configs/<model>.yaml) fill what the options leave unset, as on the CLI
    return PromptConfig(**{**model_config_values(model, PromptConfig), "model": model, **o, **cli})  # type: ignore


def config_from_spec(spec: RunSpec, **cli: object) -> PromptConfig:
    ref = spec.data or {}
    data = {"task": spec.task, "data": ref.get("file"), "test_data": ref.get("test_file"),
            "text_column": ref.get("text_column"), "label_column": ref.get("label_column"),
            "labels": ",".join(ref["labels"]) if ref.get("labels") else None, "encoding": ref.get("encoding")}
    return config_from_options(spec.model, spec.method, {**spec.options, **spec.runtime},
                               **{**data, "shots": [int(spec.n_train)], "seeds": [spec.seed],
                                  "n_eval": [spec.n_eval] if spec.n_eval else None, **cli})


def preflight(spec: RunSpec) -> list[str]:
    """Nothing beyond the harness's checks (eval/run/preflight.py): a backend that cannot serve the spec (e.g. --mode
    score on a server) is refused when its spec is built, and a server is checked before its first request."""
    return []


def doctor_checks(facts: dict) -> list:
    """Nothing of its own for `python -m eval.doctor`: the Ollama and OpenAI-compatible servers and the models are
    the doctor's own checks (--host, --base-url, --model)."""
    return []


def command(model: str, method: str, task: str, n: int | str, seeds: str, n_eval: str, options: dict | None) -> str:
    """The arguments of this CLI that add the run: the method names the prompt and mode, n the shots."""
    from eval.run.cli import flags

    kind = method.removesuffix("-score")
    prompt = {"score": "zeroshot"}.get(kind, kind)
    mode = " --mode score" if method.endswith("score") else ""
    rest = flags(options, skip=("prompt", "mode", "shots"))  # these three are said by the command itself
    return f"--task {task} --model {model} --prompt {prompt} --shots {n} --seeds {seeds}{mode}{n_eval}{rest}"


def run_one(spec: RunSpec, results_dir: str, task: TaskData | None = None) -> Path:
    """Run exactly `spec` (its run id, as a sweep planned it); answers come from the shared cache when known. An
    error is raised as it happened (the caller reports it)."""
    cfg = config_from_spec(spec, results_dir=results_dir, overwrite=True)
    run_groups(cfg, {(spec.seed, int(spec.n_train)): [spec]}, task or load_ref(spec.task, spec.data))
    return record_path(spec, results_dir)


def cli(argv: list[str] | None = None) -> int:
    """prompting/configs/<model>.yaml < --config FILE < command line; --help ends with what the defaults cost."""
    return main(parse_prompt_config(PromptConfig, argv, description=__doc__))


if __name__ == "__main__":
    raise SystemExit(cli())
