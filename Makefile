# drlmpi: `make run` and `make test` are the whole set-up on a fresh machine.
VENV   ?= .venv
PY     := $(VENV)/bin/python
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTEST := $(PY) -m pytest
RUN_DIR ?= runs/make-run

.PHONY: install run test test-learning bench lint clean

$(STAMP): pyproject.toml CMakeLists.txt $(wildcard csrc/*)
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[test,dev]"
	touch $(STAMP)

install: $(STAMP)

# The default job: the best algorithm available, on CartPole-v1, under the venv's mpiexec.
run: $(STAMP)
	rm -rf $(RUN_DIR)
	$(BIN)/mpiexec -n 4 $(BIN)/drlmpi --algo impala --env CartPole-v1 --run-dir $(RUN_DIR)
	$(BIN)/drlmpi eval $(RUN_DIR) --episodes 20

test: $(STAMP)
	PATH=$(CURDIR)/$(BIN):$$PATH $(PYTEST) -q -ra --durations=15

test-learning: $(STAMP)
	PATH=$(CURDIR)/$(BIN):$$PATH $(PYTEST) -q -ra -m learning -s

bench: $(STAMP)
	cd benchmarks && PATH=$(CURDIR)/$(BIN):$$PATH ../$(PY) sumtree.py
	cd benchmarks && PATH=$(CURDIR)/$(BIN):$$PATH ../$(PY) idle_wait.py
	cd benchmarks && PATH=$(CURDIR)/$(BIN):$$PATH ../$(PY) allreduce.py
	cd benchmarks && PATH=$(CURDIR)/$(BIN):$$PATH $(CURDIR)/$(BIN)/mpiexec -n 9 ../$(PY) reports.py
	cd benchmarks && PATH=$(CURDIR)/$(BIN):$$PATH ../$(PY) apex.py
	cd benchmarks && PATH=$(CURDIR)/$(BIN):$$PATH $(CURDIR)/$(BIN)/mpiexec -n 2 ../$(PY) trajectories.py
	cd benchmarks && PATH=$(CURDIR)/$(BIN):$$PATH ../$(PY) impala.py

# ruff (with McCabe complexity <= 12), function length in algos/ (tests/unit/test_code_shape.py), and the duplicates
# tool where it is installed (a development machine's: it is not on PyPI).
lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(PYTEST) -q tests/unit/test_code_shape.py
	if command -v duplicates >/dev/null; then cd src/drlmpi && duplicates; fi

clean:
	rm -rf build runs $(VENV)
