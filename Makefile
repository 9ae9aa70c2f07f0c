# campaign-sync: `make run` for the demo, `make test` for the suite.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# The demo runs the reference budget (10 calls / 60 s) ten times faster.
DEMO_RATE_LIMIT ?= 10/6s

.PHONY: install run test bench clean

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

install: $(VENV)/.installed

run: install
	$(PY) manage.py migrate --noinput -v 0
	AD_PLATFORM_RATE_LIMIT=$${AD_PLATFORM_RATE_LIMIT:-$(DEMO_RATE_LIMIT)} $(PY) manage.py run_demo $(ARGS)

test: install
	$(PY) -m pytest

bench: install
	$(PY) -m tests.benchmarks $(ARGS)

clean:
	rm -rf $(VENV) db.sqlite3* .run tests/artifacts
