# Two commands do all the set-up: `make demo` and `make test`. Both build .venv themselves.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test chaos lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev,postgres,redis,quantlib,aws]'
	touch $(STAMP)

demo: $(STAMP)  ## start a grid, run HTC-Grid's example client, print results and throughput
	$(PY) scripts/demo.py

test: $(STAMP) lint  ## the suite CI runs (PostgreSQL and Redis on loopback; skipped locally when absent)
	$(PY) -m pytest -q -p no:cacheprovider -n 2 --dist loadfile -m "not long"

chaos: $(STAMP)  ## the chaos suite's long runs on every backend, then its table (docs/reliability.md)
	rm -f chaos-report.jsonl
	HTCGRID_CHAOS=long HTCGRID_CHAOS_REPORT=chaos-report.jsonl $(PY) -m pytest -q -p no:cacheprovider \
		-m chaos -o timeout=1800 tests/chaos
	$(PY) tests/chaos/table.py chaos-report.jsonl

lint: $(STAMP)
	$(VENV)/bin/ruff check htcgrid tests examples benchmarks scripts
	$(VENV)/bin/ruff format --check htcgrid tests examples benchmarks scripts
	$(VENV)/bin/mypy

bench: $(STAMP)  ## throughput and round trip of `htcgrid up`
	$(PY) benchmarks/grid_bench.py

.PHONY: bench-peers
BENCH_STAMP := $(VENV)/.installed-bench
$(BENCH_STAMP): pyproject.toml $(STAMP)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[bench]'
	touch $(BENCH_STAMP)

bench-peers: $(BENCH_STAMP)  ## htcgrid side by side with Ray, Dask, Celery, RQ, a process pool (PEERS_ARGS=--quick)
	mkdir -p .htcgrid
	PYTHONPATH=benchmarks $(PY) -m peers --json .htcgrid/peers-$$(date -u +%Y%m%d-%H%M).jsonl $(PEERS_ARGS)

clean:
	rm -rf $(VENV) .htcgrid .mypy_cache .ruff_cache
