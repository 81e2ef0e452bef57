# The two Quick start commands (README) live here: `make run` and `make test`.
# Both work on a fresh machine with only python3: they create .venv and install what they need.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# The unit tests run a second time under the distribution's own interpreter (Debian 12: 3.11.2),
# in a venv of its own: an interpreter difference (CPython gh-106052 on 3.11.0-3.11.4 once made
# the lists block nothing) must fail CI, not hide behind the newer python3 of .venv.
SYSTEM_PYTHON := /usr/bin/python3
SYSTEM_VENV   := .venv-system
SYSTEM_STAMP  := $(SYSTEM_VENV)/.installed-stamp

.PHONY: run test test-system-python bench bench-proxy clean install uninstall

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

$(SYSTEM_STAMP): pyproject.toml
	@test -x $(SYSTEM_PYTHON) || { echo "test-system-python: $(SYSTEM_PYTHON) not found" >&2; exit 1; }
	scripts/system-deps
	$(SYSTEM_PYTHON) -m venv $(SYSTEM_VENV)
	$(SYSTEM_VENV)/bin/pip install -q -e '.[test]'
	touch $(SYSTEM_STAMP)

# Tests drive real curl and a real headless Chromium; scripts/system-deps installs them when missing.
test: $(STAMP)
	scripts/system-deps
	$(BIN)/python -m pytest -q
	$(MAKE) test-system-python

# The unit tests (not the e2e ones, which drive the same code through real processes) under
# /usr/bin/python3; scripts/system-deps installs python3-venv when that interpreter lacks it.
test-system-python: $(SYSTEM_STAMP)
	$(SYSTEM_VENV)/bin/python --version
	$(SYSTEM_VENV)/bin/python -m pytest -q -p no:cacheprovider -m "not e2e"

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
	rm -rf $(VENV) $(SYSTEM_VENV) build src/*.egg-info
