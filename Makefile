# The two Quick start commands (README) live here: `make run` and `make test`.
# Both work on a fresh machine with only python3: they create .venv and install what they need.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: run test bench bench-proxy clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/urlwarden run

# Tests drive real curl and a real headless Chromium; scripts/system-deps installs them when missing.
test: $(STAMP)
	scripts/system-deps
	$(BIN)/python -m pytest -q

# Benchmarks print figures (docs/performance*.md); they are not tests and CI does not run them.
# bench-proxy needs root and wrk, nginx, haproxy, squid, valgrind from Debian (benchmarks/README.md).
bench: $(STAMP)
	$(BIN)/python benchmarks/bench_matcher.py
	$(BIN)/python benchmarks/bench_coldstart.py --runs 3

bench-proxy: $(STAMP)
	$(BIN)/python benchmarks/bench_proxy.py
	$(BIN)/python benchmarks/bench_bulk.py
	$(BIN)/python benchmarks/bench_reload_stall.py
	$(BIN)/python benchmarks/bench_reload_stall.py --feed
	$(BIN)/python benchmarks/bench_instructions.py
	$(BIN)/python benchmarks/bench_squid.py

clean:
	rm -rf $(VENV) build src/*.egg-info
