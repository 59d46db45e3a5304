# One entry point for people and CI. `make test` and `make demo` set up .venv on first use.
PY := .venv/bin/python
VENV_STAMP := .venv/.installed

.PHONY: install test demo bench-throughput clean

$(VENV_STAMP): pyproject.toml
	python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	# The reference implementation, only as a test oracle; its own pins (torch 2.0.1) are not wanted.
	$(PY) -m pip install -q --no-deps open-flamingo==2.0.1
	touch $(VENV_STAMP)

install: $(VENV_STAMP)

test: $(VENV_STAMP)
	$(PY) -m pytest -q tests

demo: $(VENV_STAMP)
	$(PY) -m recipe.demo

clean:
	rm -rf .venv demo_out runs
