"""Settings from the environment: a bad value stops `manage.py check` with exit 2 and one line naming it."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OUR_VARIABLES = ("DEBUG", "SECRET_KEY", "ALLOWED_HOSTS", "DATABASE_URL", "LOG_FORMAT", "LOG_LEVEL", "REDIS_URL")


def manage_check(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    """`manage.py check` with none of our variables set but these (and a SECRET_KEY, as make sets one)."""
    environment = {key: value for key, value in os.environ.items()
                   if key not in OUR_VARIABLES
                   and not key.startswith(("AD_PLATFORM_", "SYNC_", "Q_", "SECURE_", "ALERT_", "EMAIL_"))}
    environment["DATABASE_URL"] = f"sqlite:///{tmp_path / 'check.sqlite3'}"
    environment["SECRET_KEY"] = "a-test-key-" + "x" * 50
    environment.update(env)
    environment = {key: value for key, value in environment.items() if value is not None}
    return subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=environment,
                          capture_output=True, text=True, timeout=60, check=False)


def test_the_embedded_defaults_pass_the_checks(tmp_path):
    result = manage_check(tmp_path)
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


def test_production_without_a_secret_key_refuses_to_start_in_one_line(tmp_path):
    result = manage_check(tmp_path, SECRET_KEY=None)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "SECRET_KEY is not set" in lines[0], result.stderr


def test_a_good_rate_budget_and_numbers_pass_the_checks(tmp_path):
    result = manage_check(tmp_path, AD_PLATFORM_RATE_LIMIT="10/6s", SYNC_CONCURRENCY="4", SYNC_REQUEST_TIMEOUT="2.5",
                          LOG_FORMAT="JSON", LOG_LEVEL="debug", DEBUG="false")
    assert result.returncode == 0, result.stderr


BAD_VALUES = [
    ("AD_PLATFORM_RATE_LIMIT", "abc"),
    ("AD_PLATFORM_RATE_LIMIT", "0/60s"),
    ("AD_PLATFORM_RATE_LIMIT", "10/0s"),
    ("AD_PLATFORM_URL", "localhost:3001"),
    ("AD_PLATFORM_URL", ""),
    ("SYNC_CONCURRENCY", "-3"),
    ("SYNC_CONCURRENCY", "0"),
    ("SYNC_CONCURRENCY", "x"),
    ("SYNC_CONCURRENCY", "2.5"),
    ("SYNC_REQUEST_TIMEOUT", "abc"),
    ("SYNC_REQUEST_TIMEOUT", "0"),
    ("SYNC_CONNECT_TIMEOUT", "-1"),
    ("SYNC_MAX_ATTEMPTS", "0"),
    ("SYNC_MAX_WAIT", "soon"),
    ("SYNC_PAGE_SIZE", "0"),
    ("LOG_FORMAT", "xml"),
    ("LOG_LEVEL", "loud"),
    ("Q_WORKERS", "none"),
    ("SECURE_HSTS_SECONDS", "a year"),
    ("DEBUG", "maybe"),
    ("SECURE_SSL_REDIRECT", "sometimes"),
    ("DATABASE_URL", "nonsense"),
    ("DATABASE_URL", "foo://host/db"),
    ("SYNC_PRUNE_ATTEMPTS_AFTER", "90"),
    ("SYNC_PRUNE_ATTEMPTS_AFTER", "0d"),
    ("SYNC_PRUNE_RUNS_AFTER", "a year"),
    ("SYNC_PRUNE_RUNS_AFTER", "30d"),  # shorter than the attempts' 90d: a run outlives its attempts
    ("SYNC_FRESH_ACTIVE", "an hour"),
    ("SYNC_FRESH_ACTIVE", "5s"),  # under the 10 s a target may be
    ("SYNC_FRESH_PAUSED", "0"),
    ("SYNC_FRESH_OTHER", "400d"),  # over a year
    ("METRICS_TOKEN", "short"),
    ("METRICS_TOKEN", "a token with spaces in it"),

    ("EMAIL_URL", "carrier-pigeon://coop"),
    ("EMAIL_URL", "smtp://user:pw@host:not-a-port"),
    ("ALERT_EMAILS", "ops@example.com, not an address"),
    ("ALERT_WEBHOOK_URL", "hooks.example.com/alerts"),
    ("ALERT_TRIES", "0"),
    ("ALERT_DIGEST_AFTER", "many"),
]


@pytest.mark.parametrize(("variable", "value"), BAD_VALUES)
def test_a_bad_value_stops_start_up_with_one_line_naming_the_variable(tmp_path, variable, value):
    result = manage_check(tmp_path, **{variable: value})
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert variable in lines[0], lines[0]
    assert "no issues" not in result.stdout


def test_freshness_targets_take_seconds_or_a_unit(tmp_path):
    result = manage_check(tmp_path, SYNC_FRESH_ACTIVE="90s", SYNC_FRESH_PAUSED="86400", SYNC_FRESH_OTHER="7d")
    assert result.returncode == 0, result.stderr


def test_a_bad_metrics_token_is_refused_without_showing_it(tmp_path):
    result = manage_check(tmp_path, METRICS_TOKEN="tiny-s3cret")
    assert result.returncode == 2 and "METRICS_TOKEN" in result.stderr
    assert "tiny-s3cret" not in result.stderr + result.stdout


def test_a_bad_postgresql_pool_size_stops_start_up_with_one_line_naming_it(tmp_path):
    result = manage_check(tmp_path, DATABASE_URL="postgres://campaign@127.0.0.1:5432/campaigns",
                          DATABASE_POOL_SIZE="0")
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "DATABASE_POOL_SIZE" in lines[0], result.stderr


def test_good_alert_settings_pass_the_checks(tmp_path):
    result = manage_check(tmp_path, EMAIL_URL="smtp+tls://alerts%40example.com:pw@mail.example.com:587",
                          ALERT_EMAILS="ops@example.com,oncall@example.com", DEFAULT_FROM_EMAIL="sync@example.com",
                          ALERT_WEBHOOK_URL="https://hooks.example.com/alerts", ALERT_WEBHOOK_SECRET="s" * 32)
    assert result.returncode == 0, result.stderr


def test_a_bad_email_url_is_named_without_showing_its_password(tmp_path):
    result = manage_check(tmp_path, EMAIL_URL="smtp://user:Hunter2-MAILPW@host:not-a-port")
    assert result.returncode == 2 and "EMAIL_URL is invalid" in result.stderr
    assert "Hunter2-MAILPW" not in result.stdout + result.stderr


def test_a_webhook_without_its_signing_secret_refuses_to_start_in_one_line(tmp_path):
    result = manage_check(tmp_path, ALERT_WEBHOOK_URL="https://hooks.example.com/T0/B0/route-token-1234")
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and "ALERT_WEBHOOK_SECRET is not set" in lines[0]
    assert "route-token-1234" not in result.stderr
