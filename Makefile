# runstream — the two commands that matter: `make demo` and `make test`.
# Both bootstrap .venv on a fresh machine that has only python3 (>= 3.11).

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-dev
BENCH_STAMP := $(VENV)/.installed-bench
PYTEST_ARGS ?=
BENCH_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help demo test faults lint typecheck screenshots bench bench-quick cluster-demo up down status clean distclean

help:
	@echo "make demo         start the local stack and run a simulated training (runstream demo)"
	@echo "make test         run the test suite and ruff (PYTEST_ARGS=... to pass pytest options)"
	@echo "make faults       the fault battery (disk full, a lost stream, hostile input, stops, restarts): one table"
	@echo "make lint         ruff + mypy"
	@echo "make screenshots  re-take the README's screenshots (browser tests, needs chromium)"
	@echo "make bench        benchmarks (installs the [bench] extra; BENCH_ARGS=... to pass options)"
	@echo "make bench-quick  a short benchmark run"
	@echo "make cluster-demo a 3-node NATS cluster from deploy/ on loopback, 2 servers, a node killed mid-run"
	@echo "make up|down|status  manage the local stack (nats-server + runstream server)"
	@echo "make clean        remove build outputs and caches; distclean also removes .venv"

# The stamp depends on pyproject.toml: a change of dependencies re-runs the install.
$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "runstream needs Python >= 3.11; found " + sys.version.split()[0] + " (set PYTHON=python3.11 or newer)")'
	@test -x $(PY) || { echo "make: creating $(VENV) (a virtual environment for runstream)"; $(PYTHON) -m venv $(VENV); }
	@echo "make: installing runstream and its dev extra into $(VENV) (about 2 minutes the first time; pip's progress follows)"
	$(PY) -m pip install --progress-bar on -e '.[dev]'
	@echo "make: installed. The runstream command is $(VENV)/bin/runstream; put it on your PATH with: . $(VENV)/bin/activate"
	touch $@

$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install -q -e '.[dev,bench]'
	touch $@

demo: $(STAMP)
	$(VENV)/bin/runstream demo

# pytest exits 5 when it collected no tests: that is a failure here (a typo in PYTEST_ARGS or a
# broken test path must not pass CI), but with its own message. ruff runs even when tests fail,
# so one run reports both; then mypy (make typecheck). The target fails if any of them does.
test: $(STAMP)
	@status=0; \
	$(PY) -m pytest -q $(PYTEST_ARGS) || status=$$?; \
	if [ $$status -eq 5 ]; then echo "make test: pytest collected no tests (exit 5)" >&2; fi; \
	$(PY) -m ruff check . || { rc=$$?; [ $$status -ne 0 ] || status=$$rc; }; \
	$(MAKE) --no-print-directory typecheck || { rc=$$?; [ $$status -ne 0 ] || status=$$rc; }; \
	if [ $$status -ne 0 ]; then echo "make test: FAILED (exit $$status)" >&2; fi; \
	exit $$status

# The fault battery: the tests marked `fault` (make test runs them too, with every other test), and
# at the end one table, fault -> expected -> observed. Disk-full rows need root (a small tmpfs) and
# are skipped elsewhere, saying so.
faults: $(STAMP)
	$(PY) -m pytest -q -m fault $(PYTEST_ARGS)

# the browser tests again, saving their screenshots where the README shows them (needs chromium)
screenshots: $(STAMP)
	RUNSTREAM_SCREENSHOTS=docs/screenshots $(PY) -m pytest -q tests/test_web_ui.py

lint: $(STAMP) typecheck
	$(PY) -m ruff check .

# mypy cannot see through the editable install's import hook, so it checks a tree of symlinks laid
# out like the installed package (runstream/ = sdk/*.py + broker/, projector/, query/).
typecheck: $(STAMP)
	rm -rf build/typecheck && mkdir -p build/typecheck/runstream
	for f in sdk/*.py; do ln -s ../../../$$f build/typecheck/runstream/; done
	for p in broker projector query; do ln -s ../../../$$p build/typecheck/runstream/$$p; done
	cd build/typecheck && ../../$(PY) -m mypy --config-file ../../pyproject.toml -p runstream

bench: $(BENCH_STAMP)
	$(PY) -m tests.bench $(BENCH_ARGS)

bench-quick: $(BENCH_STAMP)
	$(PY) -m tests.bench --quick $(BENCH_ARGS)

# the cluster of deploy/ as local processes: trainers on every node, the event stream's leader
# SIGKILLed mid-run; prints rows logged vs rows in each replica, doubled rows and the longest stall
cluster-demo: $(STAMP)
	$(PY) -m tests.cluster_demo

up: $(STAMP)
	$(VENV)/bin/runstream up

down: $(STAMP)
	$(VENV)/bin/runstream down

status: $(STAMP)
	$(VENV)/bin/runstream status

clean:
	rm -rf build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache bench-results
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
