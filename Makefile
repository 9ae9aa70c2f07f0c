# campaign-sync: `make run` for the demo, `make test` for the suite.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# The demo runs the reference budget (10 calls / 60 s) ten times faster.
DEMO_RATE_LIMIT ?= 10/6s

# Without SECRET_KEY the demo, the tests and the benchmarks use a random key of
# this checkout's own (settings read the same file when DEBUG=1).
LOCAL_SECRET_KEY := .run/secret_key
WITH_KEY = SECRET_KEY="$${SECRET_KEY:-$$(cat $(LOCAL_SECRET_KEY))}"

.PHONY: install run test bench clean

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

$(LOCAL_SECRET_KEY):
	@mkdir -p $(@D)
	@umask 077 && $(PYTHON) -c "import secrets; print(secrets.token_urlsafe(50))" > $@

install: $(VENV)/.installed

# `exec`: the shell gives way to the demo, so the SIGTERM that make passes on
# to its recipe (from a service manager or a CI timeout) reaches the demo.
run: install $(LOCAL_SECRET_KEY)
	$(WITH_KEY) $(PY) manage.py migrate --noinput -v 0
	$(WITH_KEY) AD_PLATFORM_RATE_LIMIT=$${AD_PLATFORM_RATE_LIMIT:-$(DEMO_RATE_LIMIT)} exec $(PY) manage.py run_demo $(ARGS)

test: install $(LOCAL_SECRET_KEY)
	$(WITH_KEY) $(PY) -m pytest

bench: install $(LOCAL_SECRET_KEY)
	$(WITH_KEY) $(PY) -m tests.benchmarks $(ARGS)

clean:
	rm -rf $(VENV) db.sqlite3* .run tests/artifacts
