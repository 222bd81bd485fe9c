"""Prompting track: zero-shot, zero-shot chain-of-thought and few-shot prompts against Ollama, OpenAI-compatible
servers and in-process transformers models.

    # the users' experiment (shared/SEEDS.md C): Ollama, zero-shot CoT, accuracy at 16/64/256/512 test examples
    python prompting/run.py --model llama3.1 --task sst2 --n-eval 16 64 256 512 --concurrency 8
    # any OpenAI-compatible server (vLLM, llama.cpp server, LM Studio, Ollama's /v1)
    python prompting/run.py --model openai/qwen3:8b --base-url http://127.0.0.1:11434/v1 --task sst2 --think false
    # offline default, in-process on CPU: zero-shot and few-shot, generated or scored
    python prompting/run.py --model hf/gemma3-270m --task drugs --prompt zeroshot --n-eval 64
    python prompting/run.py --model hf/gemma3-270m --task drugs --shots 4 8 --seeds 0 1 --mode score
    python prompting/run.py --config prompting/configs/sst2_ollama_cot.yaml --model qwen3:8b

One model call per test example, reused across the --n-eval sizes (each size is one record). Answers are cached by
content under <results-dir>/cache/, so an interrupted run resumes where it stopped; --retry-errors re-asks failures.
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from eval.cli import data_kwargs
from eval.data import TaskData, load_task
from eval.labels import INVALID
from eval.records import RunSpec, finish_run, should_run
from eval.sources import DataError
from prompting.backends import Backend, BackendError, BackendOptions, get_backend, split_model
from prompting.cache import Answer, AnswerCache
from prompting.defaults import cost_note, default_max_new_tokens, model_config_values, parse_prompt_config
from prompting.prompts import Prompt, load_prompt, prompt_version


def _opt(default, help: str, **kw):  # noqa: A002 - a field's help, written once
    return field(default=default, metadata={"help": help, **kw}) if not isinstance(default, list) else \
        field(default_factory=lambda: list(default), metadata={"help": help, **kw})


@dataclass
class PromptConfig:
    # what to ask
    model: str = _opt("hf/gemma3-270m", "provider/name (ollama/, openai/, hf/) or a bare name for --backend")
    backend: str | None = _opt(None, "ollama | openai | hf; unset: the model's prefix, else ollama",
                               choices=["ollama", "openai", "hf"])
    prompt: str | None = _opt(None, "unset: fewshot if --shots > 0, else zeroshot for --mode score, else cot",
                              choices=["zeroshot", "cot", "fewshot"])
    shots: list[int] = _opt([0], "few-shot examples from the seed's training subset (recorded as n_train)")
    mode: str = _opt("generate", "generate, or score the verbalizers' last-position logits (hf only)",
                     choices=["generate", "score"])
    think: str | None = _opt(None, "reasoning: true/false/low/medium/high; unset: the model's own")
    format: str | None = _opt(None, "json: constrain answers to a JSON schema of the labels", choices=["json"])
    max_new_tokens: int | None = _opt(None, "answer length limit; unset: 16, or for cot 1024 (256 hf on a CPU)")
    endpoint: str = _opt("generate", "Ollama API: generate (as the seed did) or chat", choices=["generate", "chat"])
    raw: bool = _opt(False, "Ollama generate: send the prompt verbatim, without the model's chat template")
    # the data (same flags as every track)
    task: str | None = _opt("drugs", "a task in eval/tasks/ or a task YAML path")
    data: str | None = _opt(None, "ad-hoc local data file (with --text-column, --label-column)")
    test_data: str | None = _opt(None, "test file for --data")
    text_column: str | None = _opt(None, "text column of --data")
    label_column: str | None = _opt(None, "label column of --data")
    labels: str | None = _opt(None, "comma-separated label names of --data")
    n_eval: list[int] | None = _opt(None, "nested test prefixes to score, e.g. 16 64 256 512; unset: all of it")
    seeds: list[int] = _opt([0], "one run per seed (the seed picks the few-shot examples)")
    results_dir: str = _opt("results", "where records (runs/) and the answer cache (cache/) go")
    overwrite: bool = _opt(False, "rerun runs whose records exist (cached answers are still reused)")
    retry_errors: bool = _opt(False, "re-ask the examples whose request failed last time")
    # how to reach the model (never changes an answer, so not part of the run id)
    host: str | None = _opt(None, "Ollama server; unset: $OLLAMA_HOST, else http://127.0.0.1:11434")
    base_url: str | None = _opt(None, "OpenAI-compatible /v1 root; unset: $OPENAI_BASE_URL (API key: $OPENAI_API_KEY)")
    stream: bool = _opt(False, "Ollama: stream the answer (the timeout then bounds the gap between chunks)")
    concurrency: int = _opt(4, "requests in flight (the server needs OLLAMA_NUM_PARALLEL >= this)")
    timeout: float = _opt(120.0, "seconds per request")
    retries: int = _opt(3, "extra attempts after a timeout or server error, with exponential backoff")
    keep_alive: str | None = _opt(None, "Ollama: keep the model loaded this long, e.g. 10m")
    num_ctx: int | None = _opt(None, "Ollama context; unset: sized to the longest prompt")
    batch_size: int = _opt(16, "hf: prompts per forward pass (left-padded)")
    threads: int | None = _opt(None, "hf: torch CPU threads; 1 is fastest on a shared CPU (BENCHMARKS.md)")


def prompt_kind(cfg: PromptConfig, shots: int) -> str:
    """--prompt, else fewshot with shots, else zeroshot for --mode score, else the seed's cot."""
    kind = cfg.prompt or ("fewshot" if shots else "zeroshot" if cfg.mode == "score" else "cot")
    if shots and kind != "fewshot":
        raise DataError(f"--shots {shots} needs --prompt fewshot (got --prompt {kind})")
    return kind


def method_name(kind: str, mode: str) -> str:
    if mode == "generate":
        return kind
    return "score" if kind == "zeroshot" else f"{kind}-score"


def make_backend(cfg: PromptConfig, scheme) -> Backend:
    name, model = split_model(cfg.model, cfg.backend)
    cot = "cot" in {prompt_kind(cfg, k) for k in cfg.shots}
    kind_default = default_max_new_tokens(cot, name)  # CoT: 1024 on a server/GPU, less in-process on a CPU
    opts = BackendOptions(host=cfg.host, base_url=cfg.base_url, concurrency=cfg.concurrency, timeout=cfg.timeout,
                          retries=cfg.retries, max_new_tokens=cfg.max_new_tokens or kind_default, think=cfg.think,
                          keep_alive=cfg.keep_alive, format=cfg.format, endpoint=cfg.endpoint, raw=cfg.raw,
                          stream=cfg.stream, num_ctx=cfg.num_ctx, mode=cfg.mode, batch_size=cfg.batch_size,
                          threads=cfg.threads)
    if cfg.mode == "score" and name != "hf":
        raise BackendError("--mode score reads logits in-process: use an hf/ model (servers return text only)")
    if cfg.mode == "score" and cot:
        raise BackendError("--mode score scores the label right after the prompt: use --prompt zeroshot or fewshot")
    return get_backend(name)(model, opts, scheme)


def predict(answer: Answer, prompt: Prompt, backend: Backend, scheme) -> str:
    """Extract the label, or INVALID: failed requests and reasoning cut off by the token limit never count."""
    if not answer.ok or answer.text is None:
        return INVALID
    if answer.truncated and prompt.kind == "cot" and "</think>" not in answer.text.lower():
        return INVALID
    raw_prompt = answer.meta.get("raw_prompt", backend.raw_prompt)  # hf: known once the tokenizer is loaded
    return scheme.extract(prompt.cut(answer.text), think_open=prompt.think_open and raw_prompt)


def run_group(cfg: PromptConfig, task: TaskData, backend: Backend, cache: AnswerCache, seed: int, shots: int,
              specs: list[RunSpec]) -> list[Path]:
    """All --n-eval sizes of one (seed, shots): one call per example of the largest prefix, one record per size."""
    from prompting.collect import collect

    kind = prompt_kind(cfg, shots)
    examples = [(e.text, e.label) for e in task.train(shots, seed)] if shots else []
    prompt = load_prompt(kind, task.scheme, shots=examples)
    largest = max(specs, key=lambda s: s.n_eval or len(task.test_all))
    test = task.test(largest.n_eval)
    identity = {**backend.identity(), "prompt_version": prompt.version}
    t0 = time.perf_counter()
    print(cost_note(len(test), backend.options.max_new_tokens, backend.options.batch_size, backend.name, cfg.mode),
          file=sys.stderr)
    got = collect(backend, [prompt.render(e.text) for e in test], cache, identity, cfg.retry_errors,
                  desc=f"{cfg.model} {kind} k={shots} seed={seed}", stop=prompt.stop)
    preds = [predict(a, prompt, backend, task.scheme) for a in got.answers]
    # the per-example log gets the answer as a server with stop strings returns it (reasoning included, a base
    # model's invented continuation cut), so eval/score.py re-extracts the same labels; failures are None there
    raws = [prompt.cut(a.text) if a.ok and a.text is not None else None for a in got.answers]
    paths = []
    for spec in specs:
        n = len(task.test(spec.n_eval))
        answers = got.answers[:n]
        timing = {"eval_s": round(time.perf_counter() - t0, 3), "ask_s": round(got.wall_s, 3),
                  "model_s": round(sum(a.meta.get("seconds", 0.0) for a in answers), 3),
                  "eval_examples_per_s": round(got.asked / got.wall_s, 3) if got.wall_s else None}
        stats = {"errors": sum(not a.ok for a in answers), "truncated": sum(a.truncated for a in answers),
                 "error_examples": [{"id": e.id, "error": a.error} for e, a in zip(test[:n], answers) if not a.ok],
                 "from_cache": got.from_cache, "asked": got.asked, "think_open": prompt.think_open and
                 backend.raw_prompt, "few_shot_ids": [e.id for e in task.train(shots, seed)] if shots else []}
        paths.append(finish_run(
            spec, task, test[:n], preds[:n], results_dir=cfg.results_dir, model_id=backend.model_id,
            backend=backend.name, timing=timing, raws=raws[:n], n_train_examples=shots,
            config={k: v for k, v in asdict(cfg).items() if k not in ("n_eval", "seeds", "shots")},
            versions={"prompt": prompt.version}, extra={"prompting": stats}))
    return paths


def plan(cfg: PromptConfig, task: TaskData, backend: Backend) -> dict[tuple[int, int], list[RunSpec]]:
    """(seed, shots) -> the specs still to run, one per --n-eval size."""
    name, bare = split_model(cfg.model, cfg.backend)
    groups: dict[tuple[int, int], list[RunSpec]] = {}
    for seed in cfg.seeds:
        for shots in cfg.shots:
            kind = prompt_kind(cfg, shots)
            # what changes answers (the cache identity minus what the spec names anyway; unset values dropped)
            options = {**{k: v for k, v in backend.identity().items() if k not in ("backend", "model")
                          and v is not None}, "prompt": prompt_version(kind)}
            for n in cfg.n_eval or [None]:
                spec = RunSpec(track="prompting", task=task.name, model=f"{name}/{bare}",
                               method=method_name(kind, cfg.mode), n_train=shots, seed=seed, n_eval=n,
                               options=options)
                if should_run(spec, cfg.results_dir, cfg.overwrite):
                    groups.setdefault((seed, shots), []).append(spec)
    return groups


def main(cfg: PromptConfig, groups: dict[tuple[int, int], list[RunSpec]] | None = None) -> int:
    """The CLI run; `groups` (from run_one) replaces the planned specs, so a sweep's spec keeps its run id."""
    try:
        task = load_task(**data_kwargs(asdict(cfg)))  # 1. data: fixed test order, nested train subsets
        backend = make_backend(cfg, task.scheme)  # 2. model: lazily imported backend
        groups = groups or plan(cfg, task, backend)  # 3. which records are missing
        if not groups:
            print("nothing to do: every record exists (--overwrite reruns them)", file=sys.stderr)
            return 0
        written: list[Path] = []
        with AnswerCache(Path(cfg.results_dir) / "cache" / "prompting.sqlite") as cache:
            # 4. per (seed, shots): cached answers, then the rest asked (the server is checked before the first
            # request: down, model not pulled, bad URL), extracted, one record per --n-eval size
            for (seed, shots), specs in groups.items():
                written += run_group(cfg, task, backend, cache, seed, shots, specs)
        backend.close()
    except (DataError, BackendError, ImportError) as exc:
        print(f"error: {exc}\n(answers received so far are cached; rerun the same command to resume)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: answers received so far are cached; rerun the same command to resume", file=sys.stderr)
        return 130
    print(f"{len(written)} record(s) written under {cfg.results_dir}/runs/{task.name}/prompting/", file=sys.stderr)
    return 0


# --- the track contract (eval/tracks.py, eval/sweep.py): a RunSpec alone reproduces a run -------------------------

# method and prompt names as sweeps write them -> template kind
KINDS = {"zeroshot": "zeroshot", "zero-shot": "zeroshot", "score": "zeroshot", "cot": "cot", "cot-zeroshot": "cot",
         "cot_zeroshot": "cot", "fewshot": "fewshot", "few-shot": "fewshot"}
SPEC_ONLY = {"backend", "prompt", "mode", "weights", "chat", "dtype", "temperature"}  # recorded, not config fields


def validate_options(options: dict) -> None:
    """Fail on option keys or values run_one cannot honour (eval/sweep.py calls this in its dry run)."""
    fields = {f for f in PromptConfig.__dataclass_fields__} - {"model", "task", "n_eval", "seeds", "shots"}
    unknown = sorted(set(options) - fields - SPEC_ONLY)
    if unknown:
        raise ValueError(f"unknown prompting options {unknown}; known: {sorted(fields | SPEC_ONLY)}")
    prompt = str(options.get("prompt", "cot")).split("@")[0]
    if prompt not in KINDS:
        raise ValueError(f"prompt {options['prompt']!r}: use one of {sorted(set(KINDS.values()))}")
    if options.get("mode", "generate") not in ("generate", "score"):
        raise ValueError(f"mode {options['mode']!r}: use generate or score")


def config_from_spec(spec: RunSpec, results_dir: str, **how: object) -> PromptConfig:
    """The config that reproduces one RunSpec; `how` adds what a spec does not name: where the server is (host,
    base_url, concurrency), or the data flags of an ad-hoc --data task."""
    o = dict(spec.options)
    validate_options(o)
    method = spec.method.removesuffix("-score")
    kind = KINDS.get(str(o.get("prompt", "")).split("@")[0]) or KINDS.get(method)
    if kind is None:
        raise ValueError(f"cannot tell the prompt of method {spec.method!r}: set options.prompt")
    mode = o.get("mode") or ("score" if spec.method.endswith("score") else "generate")
    model = spec.model if "backend" not in o or spec.model.startswith(f"{o['backend']}/") else \
        f"{o['backend']}/{spec.model}"
    values = {k: v for k, v in o.items() if k not in SPEC_ONLY}
    values.update(model=model, prompt=kind, mode=mode, shots=[int(spec.n_train)], task=spec.task,
                  seeds=[spec.seed], n_eval=[spec.n_eval] if spec.n_eval else None, results_dir=results_dir,
                  overwrite=True)
    # the model's own defaults (prompting/configs/<model>.yaml) fill what the spec leaves unset, as on the CLI
    return PromptConfig(**{**model_config_values(model, PromptConfig), **values, **how})  # type: ignore[arg-type]


def run_one(spec: RunSpec, results_dir: str, **how: object) -> Path:
    """Run exactly `spec` (its run id, as a sweep planned it); answers come from the shared cache when known."""
    from eval.records import record_path

    cfg = config_from_spec(spec, results_dir, **how)
    if main(cfg, groups={(spec.seed, int(spec.n_train)): [spec]}) != 0:
        raise RuntimeError(f"prompting run {spec.run_id} failed (see the error above)")
    return record_path(spec, results_dir)


if __name__ == "__main__":
    # prompting/configs/<model>.yaml < --config FILE < command line; --help ends with what the defaults cost
    raise SystemExit(main(parse_prompt_config(PromptConfig, description=__doc__)))
