"""Stage one of two-stage training: continue masked-LM pre-training on unlabelled in-domain text, then fine-tune
with layer-wise LR decay (docs/reference-experiments.md D: BERT on IMDB's unlabelled reviews). Returns the folder the
classifier loads."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from encoders.config import EncoderConfig


def mlm_pretrain(base_path: str, texts: Sequence[str], cfg: EncoderConfig, out_dir: Path, *, seed: int, device,
                 progress: bool = True) -> dict:
    """Train `cfg.mlm_steps` MLM steps on `texts`, save to out_dir (safetensors). Returns a summary for the record."""
    import numpy as np
    import torch
    from tqdm.auto import tqdm
    from transformers import AutoModelForMaskedLM, AutoTokenizer, DataCollatorForLanguageModeling

    if not texts:
        raise ValueError("MLM pre-training needs unlabelled text and the task has none")
    texts = list(texts)[: cfg.mlm_max_texts]
    tok = AutoTokenizer.from_pretrained(base_path, trust_remote_code=cfg.trust_remote_code)
    if tok.mask_token is None:
        raise ValueError(f"{cfg.model} has no mask token, so it cannot be MLM pre-trained; drop --mlm-pretrain")
    model = AutoModelForMaskedLM.from_pretrained(base_path, use_safetensors=True,
                                                 trust_remote_code=cfg.trust_remote_code).to(device)
    ids = tok(texts, truncation=True, max_length=cfg.max_length)["input_ids"]
    collator = DataCollatorForLanguageModeling(tok, mlm_probability=cfg.mlm_probability, return_tensors="pt")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.mlm_lr,
                            weight_decay=cfg.weight_decay)
    model.train()
    losses = []
    for _ in tqdm(range(cfg.mlm_steps), desc="mlm steps", leave=False, disable=not progress):
        idx = rng.choice(len(ids), size=min(cfg.batch_size, len(ids)), replace=False)
        batch = {k: v.to(device) for k, v in collator([{"input_ids": ids[i]} for i in idx]).items()}
        loss = model(**batch).loss
        loss.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    tok.save_pretrained(out_dir)
    k = max(1, len(losses) // 10)
    summary = {"texts": len(texts), "steps": cfg.mlm_steps, "loss_first": round(float(np.mean(losses[:k])), 4),
               "loss_last": round(float(np.mean(losses[-k:])), 4)}
    print(f"mlm: {summary}", file=sys.stderr)
    return summary
