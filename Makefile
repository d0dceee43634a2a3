# Two commands on a fresh machine: `make run` and `make test`. Both create and reuse .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 5000
export FLASK_APP := wsgi.py

.PHONY: run test bench lint install clean screenshots dist

$(BIN)/.installed: pyproject.toml engine/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	@# The engine first (its own distribution), then the admin app that depends on it.
	$(BIN)/python -m pip install --quiet -e './engine[database]' -e '.[dev]'
	touch $@

install: $(BIN)/.installed

run: $(BIN)/.installed
	$(BIN)/flask db upgrade
	$(BIN)/flask bootstrap
	@# Once the server listens, say where to sign in and as whom (the last start-up line).
	@$(BIN)/flask sign-in-hint --wait 60 http://127.0.0.1:$(PORT) &
	$(BIN)/flask run --host 127.0.0.1 --port $(PORT)

test: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(BIN)/.installed
	$(BIN)/python -m bench

# The README's screenshots (docs/screenshots/), from a temporary instance; not part of `test`.
screenshots: $(BIN)/.installed
	$(BIN)/python docs/screenshots.py

# The two wheels: the engine (cors-control, engine/) and the admin app (cors-control-admin).
dist: $(BIN)/.installed
	rm -rf dist build engine/build
	$(BIN)/python -m pip wheel --quiet --no-deps --wheel-dir dist ./engine .
	rm -rf build engine/build
	@ls -1 dist

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis dist build engine/build
