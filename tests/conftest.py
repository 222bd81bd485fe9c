"""Shared fixtures. `tiny_causal_lm` is a real (random) Llama-architecture causal LM with a word-level tokenizer
and a chat template, saved to a folder once per session: every LM-using track (eval/lm/causal.py, SFT, prompting hf
backend) runs end to end on it in well under a second, on CPU, without network."""

from __future__ import annotations

from pathlib import Path

import pytest

TINY_SENTENCES = [
    "the movie was great and the acting was good",
    "the film was terrible and the plot was bad",
    "i loved it a wonderful story with great music",
    "i hated it a boring story with awful music",
    "review sentiment positive negative neutral answer",
    "it was fine nothing special very good very bad okay",
    "user assistant system you are a helpful classifier",
]
# A minimal template in the common shape: BOS in the text, role-tagged turns, an open assistant turn.
TINY_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}{{ m['role'] }} : {{ m['content'] }} {{ eos_token }} {% endfor %}"
    "{% if add_generation_prompt %}assistant :{% endif %}"
)


def build_tiny_causal_lm(folder: Path, *, chat_template: str | None = TINY_CHAT_TEMPLATE, seed: int = 0) -> Path:
    """Write a tiny LlamaForCausalLM + fast tokenizer to `folder` and return it (deterministic for a seed)."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<pad>", "<unk>", "<s>", "</s>"]
    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(TINY_SENTENCES, trainers.WordLevelTrainer(special_tokens=specials))
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 2)])
    assert tok.token_to_id("<s>") == 2
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>",
                                        bos_token="<s>", eos_token="</s>")
    if chat_template:
        tokenizer.chat_template = chat_template
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=tok.get_vocab_size(), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256,
        pad_token_id=0, bos_token_id=2, eos_token_id=3, tie_word_embeddings=False,
        initializer_range=0.5,  # large weights give peaked logits, so greedy ties (float noise) cannot flip tokens
    )
    model = LlamaForCausalLM(config).eval()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_causal_lm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder of a tiny causal LM with a chat template (load with eval.lm.causal.load_causal_lm(str(path))).

    Also pins torch to one thread for the session: on a shared 2-core machine, multi-threaded kernels on 32-wide
    matrices spin-wait and ran ~90x slower than one thread (measured), which made this file take minutes.
    """
    import torch

    torch.set_num_threads(1)
    return build_tiny_causal_lm(tmp_path_factory.mktemp("tiny-causal-lm"))


@pytest.fixture(scope="session")
def tiny_base_lm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same tiny causal LM without a chat template (a base model: plain prompts)."""
    return build_tiny_causal_lm(tmp_path_factory.mktemp("tiny-base-lm"), chat_template=None)


# --- tiny encoders (the encoder track and its data-parallel test) --------------------------------------------------
WORDS = {"a": ["great", "good", "love", "fine", "happy"], "b": ["okay", "meh", "average", "plain", "so"],
         "c": ["bad", "awful", "hate", "poor", "sad"]}
TINY = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 37,
        "max_position_embeddings": 128}


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Tiny models (saved with an MLM head, so the MLM stage can load them) and a 3-class CSV task."""
    import torch
    from transformers import (
        BertConfig,
        BertForMaskedLM,
        BertTokenizerFast,
        DebertaV2Config,
        DebertaV2ForMaskedLM,
        DistilBertConfig,
        DistilBertForMaskedLM,
        RobertaConfig,
        RobertaForMaskedLM,
    )

    root = tmp_path_factory.mktemp("tiny")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "drug", "was", "it", "very"]
    vocab += sorted({w for ws in WORDS.values() for w in ws})
    (root / "vocab.txt").write_text("\n".join(vocab) + "\n")
    # transformers 5 builds the fast tokenizer from `vocab=` and silently ignores `vocab_file=` (every word became
    # [UNK], so the encoder tests trained on nothing); 4.x takes the file
    import inspect

    if "vocab" in inspect.signature(BertTokenizerFast.__init__).parameters:
        tok = BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)})
    else:
        tok = BertTokenizerFast(vocab_file=str(root / "vocab.txt"))
    assert tok.unk_token_id not in tok("the drug was great it was very bad")["input_ids"], "tiny vocab not loaded"
    v = len(vocab)
    builders = {
        "bert": (BertForMaskedLM, BertConfig(vocab_size=v, **TINY)),
        "roberta": (RobertaForMaskedLM, RobertaConfig(vocab_size=v, **{**TINY, "max_position_embeddings": 130},
                                                      pad_token_id=0)),
        "deberta": (DebertaV2ForMaskedLM, DebertaV2Config(vocab_size=v, **TINY, pad_token_id=0,
                                                          relative_attention=True, pos_att_type=["p2c", "c2p"],
                                                          pooler_hidden_size=32)),
        "distilbert": (DistilBertForMaskedLM, DistilBertConfig(vocab_size=v, dim=32, n_layers=2, n_heads=2,
                                                               hidden_dim=37, max_position_embeddings=128)),
    }
    paths = {}
    for name, (model_cls, config) in builders.items():
        torch.manual_seed(0)
        model_cls(config).save_pretrained(root / name, safe_serialization=True)
        tok.save_pretrained(root / name)
        paths[name] = str(root / name)
    rows = ["text,label"]
    for i in range(20):
        for label, ws in WORDS.items():
            rows.append(f"the drug was {ws[i % 5]} it was very {ws[(i // 5) % 5]} {i},{label}")
    (root / "task.csv").write_text("\n".join(rows) + "\n")
    return {"paths": paths, "csv": str(root / "task.csv"), "root": root}
