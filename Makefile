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

# The browser test drives Debian's chromium.
CHROMIUM := /usr/bin/chromium
CHROMIUM_LOG ?= .run/chromium-install.log
APT_GET ?= apt-get

.PHONY: install run test bench clean

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

$(LOCAL_SECRET_KEY):
	@mkdir -p $(@D)
	@umask 077 && $(PYTHON) -c "import secrets; print(secrets.token_urlsafe(50))" > $@

# Installed once, when missing and the machine allows it (root and apt-get);
# otherwise one line says what to do. The install step brings it where it
# can; only `make test` needs it, so `make run` never fails for want of it.
$(CHROMIUM):
	@if [ "$$(id -u)" != 0 ] || ! command -v $(APT_GET) >/dev/null 2>&1; then \
	    echo "$@ is missing and installing it needs root and apt-get: install Debian's chromium (sudo apt-get install chromium), then run make test again" >&2; \
	    exit 1; fi
	@mkdir -p $(dir $(CHROMIUM_LOG))
	@echo "Installing Debian's chromium for the browser test (once; log in $(CHROMIUM_LOG))"
	@{ $(APT_GET) update -qq && DEBIAN_FRONTEND=noninteractive $(APT_GET) install -y -qq chromium; } \
	    >$(CHROMIUM_LOG) 2>&1 || \
	    { echo "apt-get could not install chromium (see $(CHROMIUM_LOG)): install it, then run make test again" >&2; exit 1; }

install: $(VENV)/.installed
	@if [ ! -x $(CHROMIUM) ] && [ "$$(id -u)" = 0 ] && command -v $(APT_GET) >/dev/null 2>&1; then \
	    $(MAKE) --no-print-directory $(CHROMIUM) || echo "(the browser test in make test needs it)" >&2; fi

# `exec`: the shell gives way to the demo, so the SIGTERM that make passes on
# to its recipe (from a service manager or a CI timeout) reaches the demo.
run: install $(LOCAL_SECRET_KEY)
	$(WITH_KEY) $(PY) manage.py migrate --noinput -v 0
	$(WITH_KEY) AD_PLATFORM_RATE_LIMIT=$${AD_PLATFORM_RATE_LIMIT:-$(DEMO_RATE_LIMIT)} exec $(PY) manage.py run_demo $(ARGS)

test: install $(CHROMIUM) $(LOCAL_SECRET_KEY)
	$(WITH_KEY) $(PY) -m pytest

bench: install $(LOCAL_SECRET_KEY)
	$(WITH_KEY) $(PY) -m tests.benchmarks $(ARGS)

clean:
	rm -rf $(VENV) db.sqlite3* .run tests/artifacts
