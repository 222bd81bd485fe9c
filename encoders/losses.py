"""Training losses for the encoder track: ce, weighted-ce, rdrop, supcon.

Each loss is `loss(model, batch) -> scalar tensor`, so the training loop never branches on the loss name; R-Drop
needs two forward passes and SupCon the pooled representation, which a loss-on-logits signature could not give.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

LossFn = Callable[[torch.nn.Module, dict], torch.Tensor]


def balanced_class_weights(labels: Sequence[int], num_classes: int) -> list[float]:
    """n / (k · n_c), sklearn's "balanced" rule, from the training subset. A class absent from the subset gets 0
    (it never appears as a target, so its weight cannot matter; 0 avoids dividing by zero)."""
    n = len(labels)
    counts = [sum(1 for y in labels if y == c) for c in range(num_classes)]
    return [n / (num_classes * c) if c else 0.0 for c in counts]


def symmetric_kl(logits_a: torch.Tensor, logits_b: torch.Tensor) -> torch.Tensor:
    """(KL(p||q) + KL(q||p)) / 2, averaged over the batch (R-Drop, Liang et al. 2021)."""
    la, lb = F.log_softmax(logits_a.float(), -1), F.log_softmax(logits_b.float(), -1)
    kl_ab = F.kl_div(lb, la, log_target=True, reduction="batchmean")  # KL(p_a || p_b)
    kl_ba = F.kl_div(la, lb, log_target=True, reduction="batchmean")
    return (kl_ab + kl_ba) / 2


def supcon_loss(features: torch.Tensor, labels: torch.Tensor, temperature: float = 0.07) -> torch.Tensor:
    """Supervised contrastive loss (Khosla et al. 2020, L_out) on L2-normalised features. Anchors without a
    positive in the batch are skipped; a batch without any positive pair gives 0."""
    z = F.normalize(features.float(), dim=-1)
    sim = z @ z.T / temperature
    n = z.shape[0]
    self_mask = torch.eye(n, dtype=torch.bool, device=z.device)
    pos = (labels[:, None] == labels[None, :]) & ~self_mask
    sim = sim.masked_fill(self_mask, float("-inf"))
    log_prob = sim - torch.logsumexp(sim, dim=1, keepdim=True)
    n_pos = pos.sum(1)
    has_pos = n_pos > 0
    if not has_pos.any():
        return sim.new_zeros(())
    mean_log_prob_pos = log_prob.masked_fill(~pos, 0.0).sum(1)[has_pos] / n_pos[has_pos]
    return -mean_log_prob_pos.mean()


def _forward(model: torch.nn.Module, batch: dict, hidden: bool = False):
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    return model(**inputs, output_hidden_states=hidden)


def pooled(outputs) -> torch.Tensor:
    """The representation the head reads: the first position of the last layer ([CLS] / <s>)."""
    return outputs.hidden_states[-1][:, 0]


def make_loss(name: str, *, class_weights: Sequence[float] | None = None, rdrop_alpha: float = 1.0,
              supcon_weight: float = 0.1, supcon_temperature: float = 0.07) -> LossFn:
    """The loss function for a config's `loss` name."""
    if name in ("ce", "weighted-ce"):
        if name == "weighted-ce" and class_weights is None:
            raise ValueError("weighted-ce needs class weights from the training subset")

        def ce(model, batch):
            logits = _forward(model, batch).logits
            w = torch.tensor(class_weights, device=logits.device) if name == "weighted-ce" else None
            return F.cross_entropy(logits.float(), batch["labels"], weight=w)
        return ce
    if name == "rdrop":
        def rdrop(model, batch):
            # one forward on the doubled batch: two independent dropout masks, one pass through the kernels
            doubled = {k: torch.cat([v, v]) for k, v in batch.items()}
            logits = _forward(model, doubled).logits.float()
            a, b = logits.chunk(2)
            ce = (F.cross_entropy(a, batch["labels"]) + F.cross_entropy(b, batch["labels"])) / 2
            return ce + rdrop_alpha * symmetric_kl(a, b)
        return rdrop
    if name == "supcon":
        def supcon(model, batch):
            out = _forward(model, batch, hidden=True)
            ce = F.cross_entropy(out.logits.float(), batch["labels"])
            return (1 - supcon_weight) * ce + supcon_weight * supcon_loss(pooled(out), batch["labels"],
                                                                         supcon_temperature)
        return supcon
    raise ValueError(f"unknown loss {name!r}; losses are ce, weighted-ce, rdrop, supcon")
