"""The baseline track: TF-IDF + logistic regression (train.py, the track module and its CLI), and its fitted
model saved without pickle for serving (model.py)."""
