"""The SFT run configuration: one typed dataclass. `finetune/configs/<model>.yaml` (or --config) sets defaults, the
command line wins, unknown keys fail (eval.run.cli). Fields that change results go into RunSpec.options; the rest
(role "runtime") only change where or how fast it runs."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eval.run.cli import check_choices, values_with_role
from eval.run.cli import option as _f  # one field helper for every track's config

CONFIGS_DIR = Path(__file__).with_name("configs")
DEFAULT_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
_RT = "runtime"  # role of the fields that only change where or how fast a run happens (eval.run.cli.option)


@dataclass
class SFTArgs:
    model: str | None = _f(None, "an alias in eval/models.yaml (e.g. qwen3-4b), any HF id or a local folder",
                           role="spec")
    # --- where it runs (not part of the run id; the method, lora or qlora, says whether it is 4-bit) ---
    backend: str = _f("auto", "auto = unsloth when CUDA is present and unsloth imports, else hf (transformers+peft)",
                      choices=["auto", "unsloth", "hf"], role=_RT)
    quantization: str = _f("auto", "auto = 4-bit (QLoRA) on CUDA, none (LoRA) elsewhere",
                           choices=["auto", "4bit", "none"], role=_RT)
    eval_batch_size: int = _f(16, "batch size of both evaluations (left-padded, length-sorted)", role=_RT)
    dtype: str = _f("auto", "auto = bf16 autocast on CPUs with AVX512-BF16/AMX, bf16 on CUDA >= sm_80, else fp32/fp16",
                    choices=["auto", "float32", "bfloat16", "float16"], role=_RT)
    batch_check: bool = _f(True, "before each evaluation compare batch-1 and batch-N labels (and bf16 vs fp32) on "
                                 "16 prompts; on a difference use the batch size / dtype that agrees", role=_RT)
    gradient_checkpointing: bool | None = _f(None, "default: on with CUDA, off on CPU (it only saves memory)",
                                             role=_RT)
    merge: bool = _f(False, "also save the merged (base + LoRA) weights", role=_RT)
    export_gguf: str | None = _f(None, "unsloth only: write a GGUF with this quantization (e.g. q4_k_m) + a Modelfile",
                                 role=_RT)
    # --- what it computes (part of the run id) ---
    max_seq_length: int = _f(256, "prompt + answer + EOS in tokens; inputs are cut to fit")
    lora_r: int = _f(16, "LoRA rank")
    lora_alpha: int = _f(32, "LoRA alpha")
    lora_dropout: float = _f(0.05, "LoRA dropout")
    target_modules: list[str] = _f(DEFAULT_TARGETS, "module names that get LoRA adapters")
    learning_rate: float | None = _f(None, "peak learning rate. Given: no search. None: --search decides "
                                     "(finetune/search.py): the default 2e-4, or a search on a validation split of "
                                     "the training subset")
    search: str = _f("auto", "auto: search the LR only when the validation split can detect a --search-delta "
                     "accuracy difference, else lr 2e-4; halving: LRs 1 epoch each, by gold-label likelihood, the "
                     "best kept only if significantly better than 2e-4, and the kept trial trains on from its "
                     "checkpoint (~1.4x one run); grid: LR x epochs by generated accuracy "
                     "(finetune/select.py); never", choices=["auto", "halving", "grid", "never"])
    search_delta: float = _f(0.10, "--search auto: the accuracy difference the validation split must be able to "
                             "detect (two-sided 0.05, power 0.8) before a search is worth its cost")
    lr_grid: list[float] = _f([1e-4, 2e-4, 5e-4], "learning rates the search tries (LoRA wants far more than full "
                              "fine-tuning)")
    val_fraction: float = _f(0.25, "share of the training subset held out (stratified) for the search")
    lr_scheduler_type: str = _f("linear", "transformers scheduler name")
    warmup_ratio: float = _f(0.1, "share of steps spent warming up")
    weight_decay: float = _f(0.0, "AdamW weight decay")
    num_train_epochs: float = _f(3.0, "passes over the training subset (with the search: the most it tries) ...")
    min_steps: int = _f(30, "... but at least this many optimizer steps (small n needs enough updates)")
    max_steps: int | None = _f(None, "hard cap on optimizer steps (overrides epochs and min_steps)")
    batch_size: int = _f(8, "per-device training batch size")
    grad_accum: int = _f(1, "gradient accumulation steps")
    eval_mode: str = _f("both", "generate (greedy answer + extraction), score (verbalizer likelihood) or both",
                        choices=["generate", "score", "both"])
    max_new_tokens: int = _f(4, "generate mode: new tokens (the answer is one word + EOS)")
    prompt: str = _f("sft", "prompt file in prompts/ (or a .txt path)")
    chat: bool | None = _f(None, "use the chat template (default: when the tokenizer has one)")
    system_prompt: str = _f("template", "the chat template's system turn. 'template': the template's own default "
                            "(SmolLM2's and Qwen2.5's write one, ~16 tokens, into every prompt that has none); '': "
                            "none, ~16 tokens fewer per example, but SmolLM2-135M's zero-shot accuracy before "
                            "training drops (docs/speed.md); any other text is the system turn")

    def __post_init__(self) -> None:
        check_choices(self)
        if not 0 < self.search_delta < 1:
            raise ValueError(f"--search-delta is an accuracy difference in (0, 1), got {self.search_delta}")
        self.target_modules = list(self.target_modules)

    def options(self) -> dict[str, Any]:
        """What goes into RunSpec.options: every field that changes results."""
        return values_with_role(self, "result")

    @classmethod
    def from_options(cls, options: dict[str, Any], **runtime: Any) -> SFTArgs:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted((set(options) | set(runtime)) - names - {"prompt_version"})
        if unknown:
            raise ValueError(f"unknown SFT options {unknown}; the options are {sorted(names)} (and prompt_version)")
        from eval.run.cli import coerce

        return cls(**coerce(cls, {k: v for k, v in {**options, **runtime}.items() if k in names}))

    @property
    def system_turn(self) -> str | None:
        """What the Formatter (eval.lm.causal.build_prompt) gets as `system`: None lets the template write its own."""
        return None if self.system_prompt == KEEP_TEMPLATE_SYSTEM else self.system_prompt

    def lora(self) -> dict[str, Any]:
        return {"r": self.lora_r, "alpha": self.lora_alpha, "dropout": self.lora_dropout,
                "target_modules": list(self.target_modules)}

    def total_steps(self, n_examples: int) -> int:
        """epochs x steps per epoch, at least min_steps, at most max_steps."""
        per_epoch = math.ceil(n_examples / (self.batch_size * self.grad_accum))
        steps = max(math.ceil(self.num_train_epochs * per_epoch), self.min_steps)
        return min(steps, self.max_steps) if self.max_steps else steps



KEEP_TEMPLATE_SYSTEM = "template"  # system_prompt: let the chat template write its own default
# What a recorded run meant by an option it does not name: the behaviour before the option existed. Read only when a
# run is rebuilt from its record (finetune/sft.py config_from_spec); new runs name every option.
LEGACY_OPTIONS: dict[str, Any] = {"system_prompt": KEEP_TEMPLATE_SYSTEM}


def default_config_file(model: str) -> Path | None:
    path = CONFIGS_DIR / f"{model.replace('/', '_')}.yaml"
    return path if path.exists() else None


def trainer_args(cfg: SFTArgs, *, output_dir: str, n_examples: int, seed: int, cuda: bool, bf16: bool,
                 unsloth: bool = False) -> Any:
    """TRL SFTConfig for LoRA; backend-independent except optimizer/precision, which follow the hardware."""
    from trl import SFTConfig

    from eval.run.distributed import GROUP_TIMEOUT_S
    from finetune.backends import optimizer_name

    gc = cuda if cfg.gradient_checkpointing is None else cfg.gradient_checkpointing
    gc = gc and not unsloth  # unsloth checkpoints itself (get_peft_model(use_gradient_checkpointing="unsloth"))
    steps = cfg.total_steps(n_examples)
    return SFTConfig(
        output_dir=output_dir,
        max_steps=steps,  # explicit, so epochs vs min_steps is decided once, here
        ddp_timeout=GROUP_TIMEOUT_S,  # data-parallel: the others wait while the main process evaluates alone
        per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.lr_scheduler_type,
        warmup_steps=math.ceil(cfg.warmup_ratio * steps),  # steps, not a ratio: same meaning in transformers 4 and 5
        weight_decay=cfg.weight_decay,
        optim=optimizer_name(cuda),  # adamw_8bit needs bitsandbytes; torch AdamW without it
        bf16=bf16,
        use_cpu=not cuda,
        gradient_checkpointing=gc,
        max_length=cfg.max_seq_length,
        completion_only_loss=True,  # prompt/completion data: loss on the answer (+EOS) only
        packing=False,
        padding_free=False,
        seed=seed,
        data_seed=seed,
        logging_steps=max(1, min(5, steps // 4)),  # a short run still logs a loss curve (>= 4 points)
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
