"""Settings for campaign-sync, read from the environment through django-environ.

Every variable is documented in `.env.example`. The defaults need nothing
installed: SQLite, django-q2's ORM broker and the bundled fake platform.
A bad value stops start-up with one line naming the variable.
"""
import os
import secrets
import tempfile
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

from config.env_readers import (
    env,
    positive,
    read_bool,
    read_bounded,
    read_budget,
    read_choice,
    read_client_id,
    read_duration,
    read_email_url,
    read_emails,
    read_metrics_token,
    read_target,
    read_url,
    read_value,
    read_webhook_url,
)
from syncer.validation import (
    CONCURRENCY_MAX,
    Q_WORKERS_MAX,
    THREADS_PER_WORKER_MAX,
)

BASE_DIR = Path(__file__).resolve().parent.parent


def _local_secret_key(path: Path) -> str:
    """This checkout's own random key for local development, made once (never a key kept in the repo)."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        draft = path.with_name(f"{path.name}.{os.getpid()}")
        draft.write_text(secrets.token_urlsafe(50) + "\n")
        draft.chmod(0o600)
        try:
            os.link(draft, path)  # atomic: when two processes race, the first key wins
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    return path.read_text().strip()


# --- Django -----------------------------------------------------------------
DEBUG = read_bool("DEBUG", False)
# The key signs sessions and cluster tasks and keys the passwords' encryption:
# a key anyone can read would give all of that away, so production has no default.
SECRET_KEY = env.str("SECRET_KEY", default="")
LOCAL_SECRET_KEY_FILE = BASE_DIR / ".run" / "secret_key"  # `make run`, `make test` and `make bench` use it too
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set: give the web server, the cluster and the command the same long random "
            "SECRET_KEY (DEBUG=1 uses a local one in .run/secret_key; make run and make test set it)")
    SECRET_KEY = _local_secret_key(LOCAL_SECRET_KEY_FILE)
# Earlier keys, still accepted while their signatures and encrypted passwords
# are replaced: sessions, and `manage.py rotate_passwords` (see README "Secrets").
SECRET_KEY_FALLBACKS = [key.strip() for key in env.list("SECRET_KEY_FALLBACKS", default=[]) if key.strip()]
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_q",
    "campaigns",
    "syncer",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database ---------------------------------------------------------------
_DATABASE_EXPECTS = "expected a URL like sqlite:///db.sqlite3 or postgres://user@host:5432/dbname"
_DATABASE_SCHEMES = ("sqlite", "postgres", "postgresql", "pgsql")
# Name only the scheme in errors: the rest of the URL may hold a password.
_database_scheme = env.str("DATABASE_URL", default="sqlite://").partition("://")[0]
if _database_scheme not in _DATABASE_SCHEMES:
    raise ImproperlyConfigured(f"DATABASE_URL with scheme {_database_scheme!r} is not supported: {_DATABASE_EXPECTS}")
try:
    DATABASES = {"default": env.db_url("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
except (ValueError, KeyError, environ.ImproperlyConfigured) as error:
    raise ImproperlyConfigured(f"DATABASE_URL is invalid: {_DATABASE_EXPECTS}") from error

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Many threads and processes write at once: WAL lets readers go on, the
    # busy timeout makes writers wait their turn, and IMMEDIATE transactions
    # take the write lock up front so no transaction fails half-way with
    # "database is locked". Our backend hands the write lock over between
    # threads and processes at once, instead of through the busy timeout.
    DATABASES["default"]["ENGINE"] = "syncer.sqlite_backend"
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=30000;",
    }
    # Tests use a file (not memory) so that cluster subprocesses share it;
    # one per test process, so two test runs in one checkout never collide.
    DATABASES["default"].setdefault("TEST", {})
    _test_db = Path(tempfile.gettempdir()) / f"campaign-sync-test-{os.getpid()}.sqlite3"
    DATABASES["default"]["TEST"].setdefault("NAME", str(_test_db))
else:
    # A worker process hosts hundreds of drain threads; each takes a
    # connection from the process's pool for one step and gives it back
    # (syncer/connections.py), so two clusters stay well under the server's
    # max_connections.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True  # the pool checks a connection before lending it
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": 1,
        "max_size": positive("DATABASE_POOL_SIZE", env.int, 8, "a whole number of connections per process, e.g. 8"),
        "timeout": 120,  # as long as a worker waits out a database restart
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Auth, i18n, static -----------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "/admin/login/"
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"

# --- Production hardening (see README "Production") -------------------------
SECURE_SSL_REDIRECT = read_bool("SECURE_SSL_REDIRECT", False)
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = read_bool("SECURE_COOKIES", not DEBUG and SECURE_SSL_REDIRECT)
SECURE_HSTS_SECONDS = read_value("SECURE_HSTS_SECONDS", env.int, 0, "a whole number of seconds")
# Both bind more than this site (every subdomain; browsers' built-in lists, slow
# to leave): only when the operator asks.
SECURE_HSTS_INCLUDE_SUBDOMAINS = read_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = read_bool("SECURE_HSTS_PRELOAD", False)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if read_bool("BEHIND_TLS_PROXY", False) else None
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

# --- The ad platform --------------------------------------------------------
AD_PLATFORM = {
    "URL": read_url("AD_PLATFORM_URL", "http://localhost:3001"),
    "EMAIL": env.str("AD_PLATFORM_EMAIL", default="demo@adplatform.test"),
    "PASSWORD": env.str("AD_PLATFORM_PASSWORD", default="demo-password"),
    "CLIENT_ID": read_client_id("AD_PLATFORM_CLIENT_ID", "campaign-sync"),
    "RATE_LIMIT": read_budget("AD_PLATFORM_RATE_LIMIT", "10/60s"),
    # The dialect (syncer/platforms/); the names are AdAccount.platform's.
    "KIND": read_choice("AD_PLATFORM_KIND", "reference", ("reference", "metered")),
}

SYNC = {
    "CONCURRENCY": read_bounded("SYNC_CONCURRENCY", 10, CONCURRENCY_MAX, "a whole number of parallel calls"),
    "REQUEST_TIMEOUT": positive("SYNC_REQUEST_TIMEOUT", env.float, 10.0, "seconds to wait for one answer, e.g. 10"),
    "CONNECT_TIMEOUT": positive("SYNC_CONNECT_TIMEOUT", env.float, 5.0, "seconds to wait for a connection, e.g. 5"),
    "MAX_ATTEMPTS": positive("SYNC_MAX_ATTEMPTS", env.int, 5, "how many tries one call gets, at least 1"),
    "MAX_WAIT": positive("SYNC_MAX_WAIT", env.float, 120.0, "the most seconds one call may spend waiting to retry"),
    "BACKOFF_BASE": positive("SYNC_BACKOFF_BASE", env.float, 1.0, "seconds of the first backoff, e.g. 1"),
    "BACKOFF_CAP": positive("SYNC_BACKOFF_CAP", env.float, 30.0, "the longest single backoff in seconds"),
    "MAX_OUTAGE": positive("SYNC_MAX_OUTAGE", env.float, 300.0, "seconds the platform may be unreachable"),
    "PAGE_SIZE": positive("SYNC_PAGE_SIZE", env.int, 100, "campaigns asked per list call"),
    "MAX_PAGES": positive("SYNC_MAX_PAGES", env.int, 10_000, "the most pages one listing reads, e.g. 10000"),
    "MAX_BODY_MB": positive("SYNC_MAX_BODY_MB", env.float, 10.0, "the largest answer in MB the platform may send"),
    "MAX_RESUMES": positive("SYNC_MAX_RESUMES", env.int, 5,
                             "how often the watchdog resumes one run before failing it, at least 1"),
    "LEASE_SECONDS": positive("SYNC_LEASE_SECONDS", env.float, 30.0, "seconds a claim lives without a heartbeat"),
    "FAN_OUT": positive("SYNC_FAN_OUT", env.int, 2, "drain tasks a run is split into, at least 1"),
    "THREADS_PER_WORKER": read_bounded("SYNC_THREADS_PER_WORKER", 500, THREADS_PER_WORKER_MAX,
                                   "a whole number of sync threads one cluster worker process may host"),
    # History older than these goes (syncer/retention.py): attempts first, runs later.
    "PRUNE_ATTEMPTS_AFTER": read_duration("SYNC_PRUNE_ATTEMPTS_AFTER", "90d"),
    "PRUNE_RUNS_AFTER": read_duration("SYNC_PRUNE_RUNS_AFTER", "365d"),
    # The default account's freshness targets, in seconds (syncer/freshness.py); other accounts set theirs in the admin.
    "FRESH_ACTIVE": read_target("SYNC_FRESH_ACTIVE", "1h"),
    "FRESH_PAUSED": read_target("SYNC_FRESH_PAUSED", "24h"),
    "FRESH_OTHER": read_target("SYNC_FRESH_OTHER", "7d"),
}
if SYNC["PRUNE_RUNS_AFTER"] < SYNC["PRUNE_ATTEMPTS_AFTER"]:
    raise ImproperlyConfigured("SYNC_PRUNE_RUNS_AFTER is invalid: expected at least SYNC_PRUNE_ATTEMPTS_AFTER "
                               "(a run outlives its attempts)")

# --- Monitoring ---------------------------------------------------------------
# /metrics answers a scraper that sends `Authorization: Bearer <METRICS_TOKEN>`, and staff.
METRICS_TOKEN = read_metrics_token("METRICS_TOKEN")

# --- The task cluster (django-q2) ---------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="")
# django-q2 keeps cluster heartbeats in the cache: it must be one every process sees.
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
    if REDIS_URL else
    {"BACKEND": "django.core.cache.backends.filebased.FileBasedCache", "LOCATION": str(BASE_DIR / ".run" / "cache")},
}
_Q_TIMEOUT = positive("Q_TIMEOUT", env.int, 1800, "seconds a task may run")
Q_CLUSTER = {
    "name": "campaign-sync",  # also the signing salt: the same everywhere; Q_CLUSTER_NAME picks a queue
    "workers": read_bounded("Q_WORKERS", 4, Q_WORKERS_MAX, "a whole number of worker processes"),
    # Tasks are idempotent, but a retry must never fire while the first
    # delivery still runs: retry well above timeout.
    "timeout": _Q_TIMEOUT,
    "retry": _Q_TIMEOUT * 2,
    "max_attempts": 3,
    # Workers host drain threads (see syncer/hosting.py): recycling one stops them.
    "recycle": 100_000,
    "catch_up": False,
    "ack_failures": True,
    # Successful tasks are not kept: runs and attempts are the record, and a
    # task ends as soon as its drain threads start, so its success says
    # nothing about the sync. Keeping 500 cost the monitor a locked read of
    # all 500 per task. Failed tasks are kept.
    "save_limit": -1,
    "poll": 0.2,
    "label": "Task cluster",
    "ALT_CLUSTERS": {},  # django-q2 needs the key when Q_CLUSTER_NAME picks another queue
}
if REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL
else:
    Q_CLUSTER["orm"] = "default"

# --- Logging ----------------------------------------------------------------
LOG_FORMAT = read_choice("LOG_FORMAT", "text", ("text", "json"))
LOG_LEVEL = read_choice("LOG_LEVEL", "info", ("debug", "info", "warning", "error")).upper()
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "context": {"()": "syncer.logs.ContextFilter"},
        "redact": {"()": "syncer.logs.RedactFilter"},
    },
    "formatters": {
        "text": {"()": "syncer.logs.TextFormatter"},
        "json": {"()": "syncer.logs.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["context", "redact"],
        },
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django": {"level": "INFO" if LOG_LEVEL == "DEBUG" else LOG_LEVEL},
        "django_q": {"level": "WARNING" if LOG_LEVEL != "DEBUG" else "INFO"},
        "urllib3": {"level": "WARNING" if LOG_LEVEL != "DEBUG" else "DEBUG"},
    },
}

# --- Alerts (syncer/alerting/) -------------------------------------------------
_email = read_email_url("EMAIL_URL")
globals().update(_email)  # EMAIL_BACKEND, EMAIL_HOST, EMAIL_PORT, EMAIL_HOST_USER, ...
EMAIL_TIMEOUT = positive("EMAIL_TIMEOUT", env.float, 10.0, "seconds to wait for the mail server, e.g. 10")
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="campaign-sync@localhost")
ALERTS = {
    "EMAIL": bool(_email),  # without EMAIL_URL no email is tried; alerts stay records on the admin and status page
    "EMAILS": read_emails("ALERT_EMAILS"),
    "WEBHOOK_URL": read_webhook_url("ALERT_WEBHOOK_URL"),
    "WEBHOOK_SECRET": env.str("ALERT_WEBHOOK_SECRET", default=""),
    "TRIES": read_bounded("ALERT_TRIES", 4, 10, "a whole number of tries per message"),
    "WEBHOOK_TIMEOUT": positive("ALERT_WEBHOOK_TIMEOUT", env.float, 5.0, "seconds to wait for the receiver"),
    "BACKOFF_BASE": positive("ALERT_BACKOFF_BASE", env.float, 1.0, "seconds before the second try, e.g. 1"),
    "BACKOFF_CAP": positive("ALERT_BACKOFF_CAP", env.float, 10.0, "the longest wait between two tries"),
    "DIGEST_AFTER": read_bounded("ALERT_DIGEST_AFTER", 3, 1000, "transitions in a minute sent one by one"),
    "STATUS_URL": env.str("ALERT_STATUS_URL", default="").strip(),  # the status page's address, linked from alerts
}
if ALERTS["WEBHOOK_URL"] and not ALERTS["WEBHOOK_SECRET"]:
    raise ImproperlyConfigured("ALERT_WEBHOOK_SECRET is not set: ALERT_WEBHOOK_URL's messages are signed with it "
                               "(X-Signature-256); set a long random secret the receiver also knows")
