# Two entry points for a fresh machine: `make demo` and `make test`.
# Both create .venv when missing and (re)install the project when pyproject.toml changes.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LINT_STAMP := $(VENV)/.lint-installed

.PHONY: demo test test-fast bench lint clean

$(BIN)/python:
	$(PY) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,sandbox]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/gtm-connector demo

# pytest's own exit code is kept in .pytest-exit so .ci/run can tell "no tests collected" (5)
# from a failing suite; make itself would report both as "Error".
test: $(STAMP)
	@$(BIN)/python -m pytest $(PYTEST_ARGS); rc=$$?; echo $$rc > .pytest-exit; \
	  if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests (exit 5)" >&2; fi; exit $$rc

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m 'not slow' $(PYTEST_ARGS)

# Ruff (style, imports, bugbear, pyupgrade, complexity) and mypy (types; strict on
# connector.domain): settings in pyproject.toml. The lint extra is installed on first use.
$(LINT_STAMP): pyproject.toml $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test,sandbox,lint]'
	touch $(LINT_STAMP)

# Both run even when the first fails, so one pass shows every error.
lint: $(LINT_STAMP)
	@rc=0; \
	  $(BIN)/ruff check connector gtm_sandbox tests bench || rc=1; \
	  $(BIN)/mypy connector || rc=1; \
	  exit $$rc

# Every bench/bench_*.py in turn (each starts the sandboxes it needs on 127.0.0.1), printing
# its table and merging its figures into bench/results.json; not part of `make test`. A
# script whose targets are missed does not stop the others; make fails at the end.
# The project's bytecode is compiled first, as installing the package does (pip compiles
# what it installs; the editable install does not, and with PYTHONDONTWRITEBYTECODE set,
# as in the Dockerfile, every command would compile the connector's sources again).
bench: $(STAMP)
	@$(BIN)/python -m compileall -q connector gtm_sandbox
	@rc=0; for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || { echo "$$b: exit $$?"; rc=1; }; done; \
	  echo "figures merged into bench/results.json"; exit $$rc

clean:
	rm -rf $(VENV) .demo .pytest_cache .mypy_cache .ruff_cache build *.egg-info
