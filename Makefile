# `make demo` and `make test` each create .venv if missing, install what they need, and run.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: demo test test-fast lint install install-dev install-vllm train eval-ieb bench bench-quick readme-tables clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip setuptools wheel
	# torch first, pinned, the CPU build: a plain `pip install torch` on Linux is the CUDA build (16 nvidia-*
	# packages and triton). The script installs what pip resolves when that is already a CPU build (a local +cpu
	# wheel, macOS, Windows), else torch from https://download.pytorch.org/whl/cpu (15 s timeout, no retries).
	bash scripts/install_torch_cpu.sh $(PY) 2.13.0

$(VENV)/.core-installed: pyproject.toml | $(PY)
	$(PIP) install -e .
	touch $@

$(VENV)/.dev-installed: pyproject.toml $(VENV)/.core-installed
	# the browser tests' headless Chromium, from Debian's packages (never a browser download); root only
	command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
		{ [ "$$(id -u)" = 0 ] && apt-get update -qq && apt-get install -y -qq chromium chromium-driver; } || \
		echo "WARNING: chromium/chromium-driver not installed (apt-get as root); the browser tests will be skipped"
	$(PIP) install -e ".[langchain,train,bench,serve,parquet,onnx,scale,dspy,llamaindex,downstream,mpnet,dev]"
	touch $@

$(VENV)/.vllm-installed: scripts/install_vllm.sh $(VENV)/.dev-installed
	bash scripts/install_vllm.sh $(PY)
	touch $@

install: $(VENV)/.core-installed
install-dev: $(VENV)/.dev-installed
install-vllm: $(VENV)/.vllm-installed

demo: $(VENV)/.core-installed
	$(VENV)/bin/pie-retriever demo

# Everything, including the heavy `slow` (training, decoder models) and `vllm` (real engine on CPU) tests, and
# `milvus` (Milvus Lite in-process) and `ray` (a local Ray instance) from the `scale` extra, in the first run.
# The vLLM engine tests run in their own process: vLLM 0.32 scans sys.modules when it starts an engine and
# crashes on llvmlite objects that earlier tests may have imported (and it patches torch's thread settings).
test: $(VENV)/.vllm-installed
	$(PY) scripts/machine_info.py
	$(VENV)/bin/ruff check .
	$(PY) scripts/import_graph.py
	$(PY) -m pytest -ra --durations=15 -m "not vllm"
	$(PY) -m pytest -ra --durations=5 -m vllm

# The fast default run only.
test-fast: $(VENV)/.dev-installed
	$(PY) scripts/machine_info.py
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -ra -m "not slow and not vllm and not milvus and not ray and not service and not browser"

# Lint only (ruff: pyflakes, pycodestyle, import order, bugbear) and the one-way import check.
lint: $(VENV)/.dev-installed
	$(VENV)/bin/ruff check .
	$(PY) scripts/import_graph.py

# IEB: the four public files (eft_test.json, intention_similarity_test.json, ift_test.json, eft_train_unsup.json)
# from https://github.com/Yiwei98/instruction-embedding-benchmark, folder data/; `pie-retriever eval ieb --check DIR`
# says whether a folder has them. PIE_IEB_DIR=DIR make train (the default is this workspace's copy).
# The recipes of the shipped models, from scratch: pie-minilm (short instructions, about 16 min on 2 idle cores,
# incl. 31 s of silver labelling), then the default pie-minilm-lc warm-started from it (long-context recipe, about
# 13 min), then both evaluated on IEB next to BM25. Writes runs/pie-minilm and runs/pie-minilm-lc (not tracked);
# copy them over pie_retriever/artifacts/<name> to ship new weights.
PIE_IEB_DIR ?= $(firstword $(wildcard ieb ../shared/ieb) ieb)
train: $(VENV)/.dev-installed
	$(VENV)/bin/pie-retriever train --data $(PIE_IEB_DIR) -o runs/pie-minilm
	$(VENV)/bin/pie-retriever train --data $(PIE_IEB_DIR) --recipe long-context --set init_adapter=runs/pie-minilm \
		-o runs/pie-minilm-lc
	$(VENV)/bin/pie-retriever eval ieb --data $(PIE_IEB_DIR) --model runs/pie-minilm@name=pie-minilm-retrained \
		--model runs/pie-minilm-lc@name=pie-minilm-lc-retrained --bm25 -o runs/pie-minilm-eval.json --force

# The README's IEB table (every row; the four SmolLM2 rows take most of the time).
eval-ieb: $(VENV)/.dev-installed
	$(VENV)/bin/pie-retriever eval ieb --data $(PIE_IEB_DIR) --bm25 --tfidf \
		--model "minilm@name=all-MiniLM-L6-v2 (plain, mean)" \
		--model "minilm@prompt=pie,name=MiniLM + PIE prompt (zero-shot, mean)" \
		--model "smollm2@prompt=plain,pooling=last,name=SmolLM2-135M, no prompt (last)" \
		--model "smollm2@prompt=plain,pooling=last2,name=SmolLM2-135M, no prompt (last2)" \
		--model "smollm2@pooling=last,name=SmolLM2-135M + PIE prompt (zero-shot, last)" \
		--model "smollm2@pooling=last2,name=SmolLM2-135M + PIE prompt (zero-shot, last2)" \
		--model "pie-minilm@name=pie-minilm (short instructions)" \
		--model "pie-minilm-lc@name=pie-minilm-lc (shipped default)" \
		-o results/ieb_eval.json --force

# `pie-retriever bench` + the chart (results/*.png) and the markdown tables, printed; IEB from $PIE_IEB_DIR. `make readme-tables` renders results/bench.json into docs/benchmark.md between the bench markers.
bench: $(VENV)/.vllm-installed
	$(PY) benchmarks/run.py --no-readme

bench-quick: $(VENV)/.dev-installed
	$(PY) benchmarks/run.py --quick

readme-tables: $(VENV)/.dev-installed
	$(PY) benchmarks/render_readme.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
