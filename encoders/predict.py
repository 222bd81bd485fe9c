"""Classify texts with a trained encoder run (full model or peft adapter, with its label mapping).

    python encoders/predict.py results/runs/drugs/encoders/artifacts/<run_id> reviews.txt     # one text per line
    echo "Worked wonders, no side effects" | python encoders/predict.py results/runs/drugs/encoders/artifacts/<run_id>

Prints one line per text: label<TAB>probability<TAB>text (or JSON lines with --json).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def classify(run_dir: str | Path, texts: list[str], batch_size: int = 32) -> list[tuple[str, float]]:
    """(label, probability) per text."""
    import torch

    from encoders.loop import encode, predict_logits
    from encoders.modeling import load_run_model

    meta_file = Path(run_dir) / "run.json"
    if meta_file.exists() and json.loads(meta_file.read_text()).get("method") == "setfit":
        from encoders.setfit_method import classify as setfit_classify

        return setfit_classify(Path(run_dir), texts, json.loads(meta_file.read_text()), batch_size)
    model, tok, meta = load_run_model(run_dir)
    data = encode(tok, texts, [0] * len(texts), meta["max_length"])
    probs = predict_logits(model, tok, data, batch_size, torch.device("cpu")).softmax(-1)
    best = probs.max(-1)
    return [(meta["labels"][i], float(p)) for p, i in zip(best.values.tolist(), best.indices.tolist())]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", help="a run's artifacts folder (results/runs/<task>/encoders/artifacts/<run_id>)")
    ap.add_argument("file", nargs="?", help="text file, one text per line (default: stdin)")
    ap.add_argument("--json", action="store_true", help="JSON lines: {text, label, probability}")
    args = ap.parse_args(argv)
    try:
        source = Path(args.file).read_text(encoding="utf-8") if args.file else sys.stdin.read()
        texts = [line.strip() for line in source.splitlines() if line.strip()]
        if not texts:
            print("error: no text to classify (give a file with one text per line, or pipe lines in)", file=sys.stderr)
            return 2
        results = classify(args.run_dir, texts)
    except (FileNotFoundError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for text, (label, p) in zip(texts, results):
        if args.json:
            print(json.dumps({"text": text, "label": label, "probability": round(p, 4)}, ensure_ascii=False))
        else:
            print(f"{label}\t{p:.3f}\t{text}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
