"""From answers to numbers: label schemes and answer extraction (labels.py), metrics with CIs over gold labels
and predictions (metrics.py), and re-scoring a per-example file without rerunning a model (rescore.py).
"""
