"""SFT track on a tiny random causal LM (tests/conftest.py): end to end in seconds on CPU, no network."""

from __future__ import annotations

import json
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("trl")
pytest.importorskip("peft")

from eval.inputs.data import Example, load_task  # noqa: E402
from eval.lm.models import aliases, resolve  # noqa: E402
from eval.run.cli import load_yaml_config  # noqa: E402
from eval.scoring.labels import INVALID, STATUSES, LabelScheme  # noqa: E402
from finetune import backends  # noqa: E402
from finetune.config import CONFIGS_DIR, SFTArgs  # noqa: E402
from finetune.formatting import Formatter, load_template  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SCHEME = LabelScheme.from_labels(["negative", "neutral", "positive"])
SEED_MODELS = ["mistral-7b", "qwen3-4b", "qwen3-1.7b", "llama3.2-3b", "llama3.2-1b", "gemma3-1b", "gemma3-4b",
               "phi4-mini", "gemma3-270m", "smollm2-135m", "qwen2.5-coder-0.5b"]


def _tiny(path: Path):
    from eval.lm.causal import load_causal_lm

    model, tok, _ = load_causal_lm(str(path))
    return model, tok


# --- configs, prompt, Modelfile ------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", sorted(CONFIGS_DIR.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_config_loads(path: Path) -> None:
    first = path.read_text().splitlines()[0]
    assert first.startswith("# python finetune/sft.py --model ") and path.stem in first, "line 1 = the command"
    SFTArgs(**load_yaml_config(path, SFTArgs))
    assert path.stem in aliases("causal")


def test_configs_cover_the_seed_models() -> None:
    assert sorted(p.stem for p in CONFIGS_DIR.glob("*.yaml")) == sorted(SEED_MODELS)


def test_prompt_is_versioned_and_uses_the_task_verbalizers() -> None:
    t = load_template("sft")
    assert t.version and "{labels}" in t.template and "{text}" in t.template
    assert "positive" not in t.template.lower()  # the label words come from the task, never hard-coded
    assert "negative, neutral, positive" in t.fill(["negative", "neutral", "positive"], "x")


def test_a_template_may_name_what_is_classified(tmp_path: Path) -> None:
    from eval.inputs.data import load_task
    from eval.lm.prompts import label_words

    path = tmp_path / "topic.txt"
    path.write_text("# version: 2\nClassify {subject} as one of: {labels}.\n\nText: {text}\n\nAnswer:\n")
    subject = label_words(load_task("rotten").scheme)["subject"]  # rotten names its topic, as the prompting track says
    assert load_template(str(path)).fill(["negative", "positive"], "x", subject).startswith(
        "Classify the sentiment of the following text as one of: negative, positive.\n\nText: x")
    assert load_template("sft").fill(["a", "b"], "x", subject) == load_template("sft").fill(["a", "b"], "x")


def test_ollama_modelfile() -> None:
    text = backends.ollama_modelfile("model.Q4_K_M.gguf", "<s>user : {{ .Prompt }} assistant :", stop=["</s>"],
                                     num_ctx=320)
    assert text.splitlines()[0] == "FROM ./model.Q4_K_M.gguf"
    assert 'TEMPLATE """<s>user : {{ .Prompt }} assistant :"""' in text
    assert 'PARAMETER stop "</s>"' in text and "PARAMETER num_ctx 320" in text and "temperature 0" in text
    with pytest.raises(ValueError, match="Prompt"):
        backends.ollama_modelfile("m.gguf", "no slot")


# --- backend selection ----------------------------------------------------------------------------------------------

def _fake_unsloth(calls: list, tiny: Path) -> types.ModuleType:
    """The stand-in that mirrors unsloth 2026.10.9 (tests/fake_unsloth.py), recording how it is called."""
    from fake_unsloth import make_fake_unsloth

    return make_fake_unsloth(tiny, calls=calls)


def test_backend_auto_without_cuda_is_hf(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setitem(sys.modules, "unsloth", types.ModuleType("unsloth"))  # importable, but no GPU
    assert backends.select_backend("auto") == "hf"
    assert backends.select_backend("hf") == "hf"
    with pytest.raises(backends.BackendError, match="cannot tell the unsloth version.*--backend hf"):
        backends.select_backend("unsloth")
    # unsloth >= 2026.10 has a CPU backend: asked for by name, it runs (docs/unsloth-cpu.md)
    sys.modules["unsloth"].__version__ = "2026.10.9"
    assert backends.select_backend("unsloth") == "unsloth"
    assert backends.quantize_4bit("auto") is False
    with pytest.raises(backends.BackendError, match="--quantization none"):
        backends.quantize_4bit("4bit")


def test_backend_auto_with_cuda(monkeypatch: pytest.MonkeyPatch, tiny_causal_lm: Path) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setitem(sys.modules, "unsloth", None)  # CUDA but unsloth missing: import fails
    assert backends.select_backend("auto") == "hf"
    with pytest.raises(backends.BackendError, match="does not import.*--backend hf"):
        backends.select_backend("unsloth")
    calls: list = []
    monkeypatch.setitem(sys.modules, "unsloth", _fake_unsloth(calls, tiny_causal_lm))
    assert backends.select_backend("auto") == "unsloth"
    assert backends.quantize_4bit("auto") is True
    lora = SFTArgs().lora()
    loaded = backends.load(resolve("qwen3-4b"), "unsloth", load_in_4bit=True, max_seq_length=256, lora=lora, seed=3)
    backends.for_inference(loaded)
    names = [c[0] for c in calls]
    assert names == ["from_pretrained", "get_peft_model", "for_inference"]
    assert calls[0][1] == {"model_name": "unsloth/Qwen3-4B-unsloth-bnb-4bit", "max_seq_length": 256,
                           "load_in_4bit": True, "dtype": None}
    assert calls[1][1]["use_gradient_checkpointing"] == "unsloth" and calls[1][1]["random_state"] == 3
    assert calls[1][1]["r"] == lora["r"] and calls[1][1]["target_modules"] == lora["target_modules"]
    assert loaded.backend == "unsloth" and loaded.tokenizer.pad_token != loaded.tokenizer.eos_token


# --- formatting: mask, truncation, batching -------------------------------------------------------------------------

@pytest.mark.parametrize("which", ["tiny_causal_lm", "tiny_base_lm"])
def test_completion_mask_is_exactly_the_answer_and_eos(which: str, request: pytest.FixtureRequest,
                                                        tmp_path: Path) -> None:
    from datasets import Dataset
    from trl import SFTTrainer

    from finetune.config import trainer_args

    model, tok = _tiny(request.getfixturevalue(which))
    fmt = Formatter(tok, SCHEME, load_template(), max_seq_length=64)
    assert fmt.chat is (which == "tiny_causal_lm")
    rows = fmt.dataset_rows([Example("a", "the movie was great", "positive"),
                             Example("b", "the plot was bad and boring", "negative")])
    args = trainer_args(SFTArgs(max_seq_length=64), output_dir=str(tmp_path), n_examples=2, seed=0, cuda=False,
                        bf16=False)
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tok)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(2)])
    for i, label in enumerate(["positive", "negative"]):
        ids, labels = batch["input_ids"][i].tolist(), batch["labels"][i].tolist()
        answer = [t for t, lab in zip(ids, labels) if lab != -100]
        assert answer == tok(fmt.completion(label), add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        prompt_ids = [t for t, m in zip(ids, batch["attention_mask"][i].tolist()) if m][: -len(answer)]
        from eval.lm.causal import encode

        assert prompt_ids == encode(tok, rows[i]["prompt"]), "training sees the prompt evaluation sees"
    assert tok.pad_token_id != tok.eos_token_id


def test_truncation_keeps_instruction_and_answer_slot(tiny_base_lm: Path) -> None:
    from eval.lm.causal import encode

    _, tok = _tiny(tiny_base_lm)
    fmt = Formatter(tok, SCHEME, load_template(), max_seq_length=48)
    long_text = " ".join(["the movie was great and the acting was good"] * 40)
    prompt = fmt.prompt(long_text)
    assert len(encode(tok, prompt)) <= fmt.prompt_budget
    assert prompt.rstrip().endswith("Answer:") and "Classify" in prompt
    assert fmt.prompt("short") == fmt.render("short")


# a template that writes a default system text when a prompt has none (as SmolLM2's and Qwen2.5's do), and one that
# folds a system text into the first user turn (as Gemma 3's does), where an empty one only adds a blank line
DEFAULT_SYSTEM_TEMPLATE = ("{% if messages[0]['role'] != 'system' %}<|system|>You are a helpful assistant made "
                           "by a lab.\n{% endif %}{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n"
                           "{% endfor %}"
                           "{% if add_generation_prompt %}<|assistant|>{% endif %}")
FOLDED_SYSTEM_TEMPLATE = ("{% for m in messages %}{% if m['role'] == 'system' %}{{ m['content'] }}\n\n{% else %}"
                          "<|{{ m['role'] }}|>{{ m['content'] }}\n{% endif %}{% endfor %}"
                          "{% if add_generation_prompt %}<|assistant|>{% endif %}")


def test_the_default_system_text_is_dropped_only_where_a_template_writes_one(tiny_causal_lm: Path) -> None:
    _, tok = _tiny(tiny_causal_lm)
    tok.chat_template = DEFAULT_SYSTEM_TEMPLATE
    dropped = Formatter(tok, SCHEME, load_template(), max_seq_length=96, system="")
    kept = Formatter(tok, SCHEME, load_template(), max_seq_length=96, system=None)
    assert "helpful assistant" in kept.render("great") and "helpful assistant" not in dropped.render("great")
    assert dropped.render("great").startswith("<|system|>\n<|user|>Classify")
    assert dropped.describe()["system_turn"].startswith("empty") and kept.describe()["system_turn"].endswith("default")
    assert dropped.prompt_budget == kept.prompt_budget  # the budget is the whole prompt's: more of the input fits
    tok.chat_template = FOLDED_SYSTEM_TEMPLATE
    same = [Formatter(tok, SCHEME, load_template(), max_seq_length=96, system=s).render("great") for s in ("", None)]
    assert same[0] == same[1] == "<|user|>" + same[0].removeprefix("<|user|>")
    assert Formatter(tok, SCHEME, load_template(), max_seq_length=96, system="Be brief.").render("x").startswith(
        "Be brief.\n\n<|user|>")


def test_runs_keep_the_template_system_text_by_default_and_recorded_runs_are_rebuilt_with_theirs() -> None:
    """The default keeps the template's own system text (dropping it cost SmolLM2-135M 0.11 of zero-shot accuracy,
    docs/speed.md); '' is an option. A record from before the option existed has no system_prompt: rebuilt from it
    (serving, --check), it renders the prompts it was evaluated with, the template's default."""
    import dataclasses

    from eval.tracks import DataRef
    from finetune.sft import config_from_spec, make_spec

    spec = make_spec(SFTArgs(model="smollm2-135m"), DataRef("rotten"), 8, 0, 8)
    assert spec.options["system_prompt"] == "template" and config_from_spec(spec).system_turn is None
    dropped = make_spec(SFTArgs(model="smollm2-135m", system_prompt=""), DataRef("rotten"), 8, 0, 8)
    assert config_from_spec(dropped).system_turn == "" and dropped.run_id != spec.run_id
    old = dataclasses.replace(spec, options={k: v for k, v in spec.options.items() if k != "system_prompt"})
    assert config_from_spec(old).system_prompt == "template" and config_from_spec(old).system_turn is None


def test_batched_and_batch1_predictions_agree(tiny_causal_lm: Path) -> None:
    from finetune.predict import evaluate

    model, tok = _tiny(tiny_causal_lm)
    fmt = Formatter(tok, SCHEME, load_template(), max_seq_length=96)
    texts = ["great", "the film was terrible and the plot was bad", "i loved it", "okay",
             "i hated it a boring story with awful music and bad acting"]
    prompts = [fmt.prompt(t) for t in texts]
    one = evaluate(model, tok, prompts, fmt, eval_mode="both", batch_size=1, max_new_tokens=3)
    many = evaluate(model, tok, prompts, fmt, eval_mode="both", batch_size=4, max_new_tokens=3)
    assert one["generate"].raws == many["generate"].raws
    assert one["score"].preds == many["score"].preds


# --- the whole script -----------------------------------------------------------------------------------------------

def test_script_end_to_end(tiny_causal_lm: Path, tmp_path: Path) -> None:
    from finetune.sft import cli

    task = load_task("drugs")
    argv = ["--model", str(tiny_causal_lm), "--task", "drugs", "--n-train", "12", "--seeds", "0", "--n-eval", "6",
            "--results-dir", str(tmp_path), "--max-seq-length", "64", "--max-steps", "3", "--batch-size", "4",
            "--learning-rate", "1e-3", "--backend", "hf", "--merge"]
    assert cli(argv) == 0
    [path] = list((tmp_path / "runs" / "drugs" / "finetune").glob("*.json"))
    rec = json.loads(path.read_text())
    assert rec["backend"] == "hf" and rec["method"] == "lora" and rec["n_eval"] == 6 and rec["n_train"] == 12
    assert set(rec["metrics"]) >= {"accuracy", "valid_rate"} and set(rec["before_training"]) >= {"accuracy"}
    score_mode = rec["details"]["score_mode"]
    assert score_mode["metrics"]["valid_rate"] == 1.0 and len(score_mode["preds"]) == 6
    assert rec["options"]["prompt_version"] == load_template().version and rec["config"]["max_steps"] == 3
    assert rec["versions"]["prompt"].startswith("sft@") and rec["timing"]["train_s"] > 0
    rows = [json.loads(x) for x in path.with_suffix(".jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == [e.id for e in task.test(6)] and "before_pred" in rows[0]
    # parse statuses before and after training, counted in the metrics; the cost names the device and dtype
    assert {r["status"] for r in rows} | {r["before_status"] for r in rows} <= set(STATUSES)
    assert sum(rec["before_training"]["invalid"].values()) == sum(r["before_pred"] == INVALID for r in rows)
    assert rec["cost"]["device"] == "cpu" and rec["cost"]["dtype"] == "float32" and rec["cost"]["peak_rss_mb"] > 0
    assert Path(rec["details"]["artifacts"]["adapter"], "adapter_config.json").exists()
    assert Path(rec["details"]["artifacts"]["merged"]).exists()
    # what ran is recorded: precision (machine-dependent), threads, the canary before each evaluation, prefix reuse
    prec, runtime = rec["config"]["precision"], rec["config"]["eval_runtime"]
    assert prec["dtype"] in {"float32", "bfloat16-autocast"} and int(prec["threads"]) >= 1
    for stage in ("before", "after"):
        assert runtime[stage]["canary"]["ran"] and runtime[stage]["canary"]["k"] == 6
        assert runtime[stage]["batch_size"] in (1, 2, 4, 8, 16) and "prefix_tokens" in runtime[stage]
    assert cli(argv) == 0  # the record exists: skipped, not rerun


def test_search_picks_lr_and_epochs_on_a_carved_split_by_generated_accuracy(tiny_causal_lm: Path,
                                                                           tmp_path: Path) -> None:
    from finetune.sft import cli

    argv = ["--model", str(tiny_causal_lm), "--task", "drugs", "--n-train", "12", "--seeds", "0", "--n-eval", "4",
            "--results-dir", str(tmp_path), "--max-seq-length", "64", "--batch-size", "3", "--num-train-epochs", "2",
            "--min-steps", "1", "--lr-grid", "1e-4", "1e-3", "--eval-mode", "generate", "--backend", "hf",
            "--search", "grid"]
    assert cli(argv) == 0
    rec = json.loads(next((tmp_path / "runs" / "drugs" / "finetune").glob("*.json")).read_text())
    search = rec["details"]["search"]
    assert search["metric"] == "generate-and-parse accuracy" and search["n_fit"] + search["n_val"] == 12
    assert [t["learning_rate"] for t in search["trials"]] == [1e-4, 1e-3]
    # 9 fit examples at batch 3 = 3 steps an epoch: validated after epochs 1 and 2
    assert [c["epochs"] for c in search["trials"][0]["curve"]] == [1.0, 2.0]
    chosen = search["chosen"]
    assert rec["config"]["learning_rate"] == chosen["learning_rate"]
    assert rec["config"]["num_train_epochs"] == chosen["num_train_epochs"]
    assert rec["options"]["learning_rate"] is None  # the run id names the search, not its outcome
    assert rec["timing"]["train_s"] >= rec["timing"]["search_s"] == search["seconds"] > 0


def test_search_breaks_ties_toward_more_epochs_then_the_smaller_lr() -> None:
    from finetune.select import pick

    def trial(lr: float, accs: list[float]) -> dict:
        curve = [{"epochs": float(i + 1), "val_accuracy": a} for i, a in enumerate(accs)]
        return {"learning_rate": lr, "curve": curve}

    # the validation curves of a real search (smollm2-135m, rotten, n 128, seed 1: 32 carved items): four
    # checkpoints tie at 29/32; breaking toward fewer epochs picked 1 epoch, which under-trained on test
    trials = [trial(1e-4, [0.90625, 0.8125, 0.84375]), trial(2e-4, [0.875, 0.84375, 0.90625]),
              trial(5e-4, [0.84375, 0.90625, 0.90625])]
    assert pick(trials) == {"learning_rate": 2e-4, "num_train_epochs": 3.0, "val_accuracy": 0.90625}
    # a strictly better score still wins at any epoch count
    trials.append(trial(1e-3, [0.9375, 0.5, 0.5]))
    assert pick(trials) == {"learning_rate": 1e-3, "num_train_epochs": 1.0, "val_accuracy": 0.9375}


@pytest.mark.parametrize("launcher", [["finetune/sft.py"], ["-m", "finetune.sft"]])
def test_both_launchers_work_from_the_repo_root(launcher: list[str]) -> None:
    out = subprocess.run([sys.executable, *launcher, "--help"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "--lora-r" in out.stdout and "--eval-mode" in out.stdout


def test_bad_backend_is_one_clear_error(capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from finetune.sft import cli

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert cli(["--model", "gemma3-270m", "--task", "drugs", "--backend", "unsloth"]) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and "--backend hf" in err


@pytest.mark.slow
def test_gemma3_270m_format_and_mask() -> None:
    """The real offline base model: plain prompt with one BOS, mask = answer + EOS, prompt fits 256 tokens."""
    from eval.lm.causal import encode, load_causal_lm

    model, tok, _ = load_causal_lm("gemma3-270m")
    task = load_task("drugs")
    fmt = Formatter(tok, task.scheme, load_template(), max_seq_length=256, chat=False)
    ids = encode(tok, fmt.prompt("x"))
    assert ids[0] == tok.bos_token_id and ids[1] != tok.bos_token_id
    longest = max(task.test(), key=lambda e: len(e.text))
    assert len(encode(tok, fmt.prompt(longest.text))) <= fmt.prompt_budget


def test_sparse_logits_loss_equals_trl_loss(tiny_causal_lm: Path, tmp_path: Path) -> None:
    """The hf backend's loss reads only target positions; it must equal TRL's full-logits loss."""
    import torch

    from finetune.config import trainer_args
    from finetune.trainer import completion_loss, make_trainer

    model, tok = _tiny(tiny_causal_lm)
    fmt = Formatter(tok, SCHEME, load_template(), max_seq_length=64)
    rows = fmt.dataset_rows([Example("a", "the movie was great", "positive"),
                             Example("b", "i hated it a boring story with awful music", "negative")])
    args = trainer_args(SFTArgs(max_seq_length=64), output_dir=str(tmp_path), n_examples=2, seed=0, cuda=False,
                        bf16=False)
    trainer = make_trainer(model, tok, args, rows, sparse_logits=True)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(2)])
    with torch.no_grad():
        full = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                     labels=batch["labels"]).loss
        sparse = completion_loss(model, batch, share_prefix=False)  # the shared prefix: its own test (fp32)
    assert torch.allclose(full, sparse, atol=1e-5)


def test_a_resumed_search_trial_trains_as_one_uninterrupted_run(tiny_causal_lm: Path, tmp_path: Path) -> None:
    """finetune.search: a trial scheduled over the whole run, stopped after 2 steps and resumed from its checkpoint in
    a new model and trainer for 3 more, ends where 5 uninterrupted steps end (one batch = the whole data, no
    dropout: the only difference left would be a lost optimizer moment or a restarted LR schedule)."""
    import dataclasses

    import torch
    from peft import LoraConfig, get_peft_model, get_peft_model_state_dict

    from finetune.config import trainer_args
    from finetune.search import _save_trial, _stop_after, resume
    from finetune.trainer import make_trainer

    cfg = SFTArgs(model="m", max_seq_length=64, batch_size=3, lora_dropout=0.0, learning_rate=1e-2, warmup_ratio=0.2)
    examples = [Example("a", "the movie was great", "positive"), Example("b", "a boring story", "negative"),
                Example("c", "it was fine i guess", "neutral")]

    def trainer_for(steps: int, scheduled: int):
        torch.manual_seed(0)
        model, tok = _tiny(tiny_causal_lm)
        lora = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["q_proj", "v_proj"],
                          init_lora_weights="gaussian")  # B != 0: the weights matter at once
        model = get_peft_model(model, lora)
        tok.padding_side = "right"
        rows = Formatter(tok, SCHEME, load_template(), max_seq_length=64).dataset_rows(examples)
        args = trainer_args(dataclasses.replace(cfg, min_steps=scheduled, max_steps=scheduled),
                            output_dir=str(tmp_path / f"t{steps}"), n_examples=3, seed=0, cuda=False, bf16=False)
        trainer = make_trainer(model, tok, args, rows, sparse_logits=True)
        if steps < scheduled:
            trainer.add_callback(_stop_after(steps))
        return trainer, model

    whole, whole_model = trainer_for(5, 5)
    whole.train()
    first, first_model = trainer_for(2, 5)
    first.train()
    assert first.state.global_step == 2
    checkpoint = _save_trial(first, first_model, str(tmp_path / "trial"))
    rest, rest_model = trainer_for(3, 3)
    resume(rest, rest_model, cfg, {"checkpoint": checkpoint, "first_steps": 2, "rest_steps": 3, "total_steps": 5})
    assert rest.lr_scheduler.get_last_lr() == first.lr_scheduler.get_last_lr()  # the schedule goes on at step 2
    rest.train()
    assert rest.state.global_step == 3 and rest.lr_scheduler.get_last_lr() == whole.lr_scheduler.get_last_lr()
    assert set(whole.lr_scheduler.get_last_lr()) == {0.0}  # both ran the schedule to its end
    a, b = get_peft_model_state_dict(whole_model), get_peft_model_state_dict(rest_model)
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    trial = get_peft_model_state_dict(first_model)
    assert not all(torch.allclose(trial[k], b[k], atol=1e-6) for k in a)  # the resumed steps did train


def test_training_on_a_shared_prefix_gives_the_full_batch_loss_and_gradients(tiny_causal_lm: Path,
                                                                             tmp_path: Path) -> None:
    """finetune.trainer.completion_loss: the chat template + instruction every row starts with runs once; the loss
    and every LoRA gradient equal those of the full batch."""
    import torch
    from peft import LoraConfig, get_peft_model

    from finetune.config import trainer_args
    from finetune.trainer import completion_loss, make_trainer, shared_prefix_length

    model, tok = _tiny(tiny_causal_lm)
    lora = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["q_proj", "v_proj", "down_proj"],
                      init_lora_weights="gaussian")
    model = get_peft_model(model.float(), lora)  # fp32 as SFT trains (the loader picks bf16 on some CPUs)
    tok.padding_side = "right"
    rows = Formatter(tok, SCHEME, load_template(), max_seq_length=64).dataset_rows(
        [Example("a", "the movie was great", "positive"), Example("b", "a boring story with awful music", "negative"),
         Example("c", "fine", "neutral")])
    args = trainer_args(SFTArgs(max_seq_length=64), output_dir=str(tmp_path), n_examples=3, seed=0, cuda=False,
                        bf16=False)
    trainer = make_trainer(model, tok, args, rows, sparse_logits=True)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(3)])
    first_target = int((batch["labels"][:, 1:] != -100).any(dim=0).nonzero().min())
    shared = shared_prefix_length(model, batch["input_ids"], batch["attention_mask"], first_target)
    assert shared >= 16 and (batch["attention_mask"] == 0).any()  # a real prefix, and a batch with padding

    def loss_and_grads(share: bool) -> tuple[Any, list]:
        model.zero_grad()
        stats: dict = {}
        loss = completion_loss(model, batch, share_prefix=share, stats=stats)
        loss.backward()
        assert stats == {"batches": 1, "prefix_tokens": shared if share else 0}
        return loss.detach(), [p.grad.clone() for p in model.parameters() if p.requires_grad]

    full, full_grads = loss_and_grads(False)
    shared_loss, shared_grads = loss_and_grads(True)
    assert torch.allclose(full, shared_loss, atol=1e-5)
    assert len(full_grads) == len(shared_grads) > 0
    assert all(torch.allclose(a, b, atol=1e-5, rtol=1e-4) for a, b in zip(full_grads, shared_grads, strict=True))
    assert any(g.abs().sum() > 0 for g in shared_grads)


def test_frozen_weights_cast_once_train_bitwise_as_autocast_casts_them(tiny_causal_lm: Path, tmp_path: Path) -> None:
    """finetune.trainer.frozen_linears_cast: under CPU bf16 autocast, LoRA steps with the frozen linear weights
    cast to bf16 once give exactly the LoRA weights of steps where autocast casts them on every call; on exit the
    model has its fp32 tensors back (and a tied output layer is tied again)."""
    import torch
    from peft import LoraConfig, get_peft_model, get_peft_model_state_dict

    from finetune.config import trainer_args
    from finetune.trainer import completion_loss, frozen_linears_cast, make_trainer

    def trained(cast: bool) -> tuple[dict, Any, int]:
        torch.manual_seed(0)
        model, tok = _tiny(tiny_causal_lm)
        lora = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["q_proj", "v_proj", "down_proj"])
        model = get_peft_model(model.float(), lora)
        tok.padding_side = "right"
        rows = Formatter(tok, SCHEME, load_template(), max_seq_length=64).dataset_rows(
            [Example("a", "the movie was great", "positive"), Example("b", "a boring story", "negative")])
        args = trainer_args(SFTArgs(max_seq_length=64), output_dir=str(tmp_path / str(cast)), n_examples=2, seed=0,
                            cuda=False, bf16=False)
        trainer = make_trainer(model, tok, args, rows, sparse_logits=True)
        batch = trainer.data_collator([trainer.train_dataset[i] for i in range(2)])
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
        before = {n: p for n, p in model.named_parameters()}
        with frozen_linears_cast(model, torch.bfloat16, enabled=cast) as n_cast:
            for _ in range(2):
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    loss = completion_loss(model, batch)
                loss.backward()
                opt.step()
                opt.zero_grad()
        assert all(p is before[n] and p.dtype == torch.float32 for n, p in model.named_parameters())
        return get_peft_model_state_dict(model), model, n_cast

    plain, _, none = trained(False)
    once, model, n_cast = trained(True)
    assert none == 0 and n_cast > 0
    assert plain.keys() == once.keys() and all(torch.equal(plain[k], once[k]) for k in plain)
    base = model.get_base_model()
    if base.config.tie_word_embeddings:
        assert base.lm_head.weight is base.get_input_embeddings().weight


def test_building_the_config_is_the_option_check_for_sweeps() -> None:
    from finetune.sft import config_from_options

    cfg = config_from_options("gemma3-270m", "lora", {"backend": "hf", "learning_rate": 1e-4, "eval_mode": "score"})
    assert cfg.quantization == "none" and cfg.backend == "hf"
    with pytest.raises(ValueError, match="learning_rate"):
        config_from_options("gemma3-270m", "lora", {"lr": 2e-5})
    with pytest.raises(ValueError, match="eval_mode"):
        config_from_options("gemma3-270m", "lora", {"eval_mode": "sample"})


def test_search_gate_states_what_the_split_can_detect() -> None:
    """No search when the carved split cannot separate the candidates: the documented default, and why."""
    from finetune.config import SFTArgs
    from finetune.search import DEFAULT_LR, gate, items_needed, min_detectable_difference

    assert items_needed(0.10) == 393 and items_needed(0.20) == 99  # (1.96 + 0.84)^2 * 0.5 / delta^2, rounded up
    assert min_detectable_difference(32) == pytest.approx(0.350, abs=1e-3)
    assert min_detectable_difference(items_needed(0.1)) <= 0.1
    go, why = gate(32, SFTArgs(model="m"))
    assert not go and "0.35" in why and "393" in why and f"{DEFAULT_LR:g}" in why
    assert gate(400, SFTArgs(model="m"))[0] and gate(100, SFTArgs(model="m", search_delta=0.2))[0]
    assert gate(8, SFTArgs(model="m", search="halving"))[0] and not gate(10_000, SFTArgs(model="m", search="never"))[0]
    with pytest.raises(ValueError, match="search-delta"):
        SFTArgs(model="m", search_delta=0)


def test_search_keeps_the_default_unless_significantly_better() -> None:
    from finetune.search import decide, paired_p

    base = {"learning_rate": 2e-4, "val_gold_logprob": -0.50, "per_item": [-0.5, -0.4, -0.6, -0.5]}
    noisy = {"learning_rate": 5e-4, "val_gold_logprob": -0.45, "per_item": [-0.1, -0.9, -0.2, -0.6]}
    clear = {"learning_rate": 1e-4, "val_gold_logprob": -0.30, "per_item": [-0.3, -0.2, -0.4, -0.3]}
    assert decide([base, noisy], 2e-4)["learning_rate"] == 2e-4  # higher mean, not significant
    assert decide([base, clear], 2e-4)["learning_rate"] == 1e-4 and decide([base, clear], 2e-4)["p_vs_default"] < 0.05
    assert decide([base], 2e-4)["why"] == "the default scored best"
    assert paired_p([1.0, 2.0], [0.0, 1.0]) == 0.0 and paired_p([0.0], [1.0]) == 1.0


def test_halving_search_screens_one_epoch_each_by_gold_likelihood(tiny_causal_lm: Path, tmp_path: Path) -> None:
    from finetune.sft import cli

    argv = ["--model", str(tiny_causal_lm), "--task", "drugs", "--n-train", "12", "--seeds", "0", "--n-eval", "4",
            "--results-dir", str(tmp_path), "--max-seq-length", "64", "--batch-size", "3", "--num-train-epochs", "2",
            "--min-steps", "1", "--lr-grid", "1e-4", "1e-3", "--eval-mode", "score", "--backend", "hf",
            "--search", "halving"]
    assert cli(argv) == 0
    rec = json.loads(next((tmp_path / "runs" / "drugs" / "finetune").glob("*.json")).read_text())
    search = rec["details"]["search"]
    assert search["searched"] and search["n_fit"] == 9 and search["n_val"] == 3
    # the default 2e-4 joins the grid as the baseline; 9 fit examples at batch 3: one epoch is 3 steps
    assert [t["learning_rate"] for t in search["trials"]] == [1e-4, 1e-3, 2e-4]
    assert {t["steps"] for t in search["trials"]} == {3} and all(t["val_gold_logprob"] <= 0 for t in search["trials"])
    assert rec["config"]["learning_rate"] == search["chosen"]["learning_rate"]
    assert rec["config"]["num_train_epochs"] == 2.0  # epochs are not searched
    assert rec["timing"]["search_s"] == search["seconds"] > 0
    # the chosen trial goes on from its checkpoint: a full run is 2 epochs x 4 steps; the trial did its first epoch
    # (3 steps on the fit part), so 8 - 4 = 4 steps remain on all 12 examples, on one 7-step schedule
    assert search["continued"]["first_steps"] == 3 and search["continued"]["rest_steps"] == 4
    assert rec["config"]["max_steps"] == search["continued"]["total_steps"] == 7
    assert rec["timing"]["continued_steps"] == 4 and "resume" not in search  # no scratch path in the record
    shared = rec["config"]["train_shared_prefix"]  # the chat template + instruction ran once per batch
    assert shared["batches"] == 4 and shared["mean_tokens"] >= 16


def test_auto_search_skips_a_split_too_small_and_says_so(tiny_causal_lm: Path, tmp_path: Path) -> None:
    from finetune.sft import cli

    argv = ["--model", str(tiny_causal_lm), "--task", "drugs", "--n-train", "12", "--seeds", "0", "--n-eval", "4",
            "--results-dir", str(tmp_path), "--max-seq-length", "64", "--batch-size", "3", "--num-train-epochs", "1",
            "--min-steps", "1", "--eval-mode", "score", "--backend", "hf"]
    assert cli(argv) == 0
    rec = json.loads(next((tmp_path / "runs" / "drugs" / "finetune").glob("*.json")).read_text())
    search = rec["details"]["search"]
    assert not search["searched"] and search["n_val"] == 3 and "no search" in search["reason"]
    assert rec["config"]["learning_rate"] == 2e-4 and rec["options"]["search"] == "auto"
