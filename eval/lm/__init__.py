"""Causal-LM inference shared by the SFT and prompting tracks: model aliases (models.py), where weights come from
(weights.py, packaged.py), loading (causal.py, cache.py for GGUF), batched generation and label scoring
(infer.py), the batch and dtype canary (canary.py) and the versioned prompt templates (prompts.py).
"""
