# The two Quick start commands (README) live here: `make run` and `make test`.
# Both work on a fresh machine with only python3: they create .venv and install what they need.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: run test bench bench-proxy clean install uninstall

# `sudo make install`: urlwarden as a system service (docs/home.md, scripts/install). INSTALL_PYTHON
# is the interpreter of the service's virtualenv: the system's own, not the one building .venv.
PREFIX ?= /usr/local
DESTDIR ?=
INSTALL_PYTHON ?= /usr/bin/python3
PURGE ?= 0

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

install:
	PYTHON='$(INSTALL_PYTHON)' PREFIX='$(PREFIX)' DESTDIR='$(DESTDIR)' scripts/install

# Keeps /etc/urlwarden and /var/lib/urlwarden (the CA devices trust); PURGE=1 removes them too.
uninstall:
	PREFIX='$(PREFIX)' DESTDIR='$(DESTDIR)' PURGE='$(PURGE)' scripts/uninstall

clean:
	rm -rf $(VENV) build src/*.egg-info
