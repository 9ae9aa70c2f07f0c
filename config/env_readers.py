"""Readers of the environment for the settings: each reads one variable and stops start-up with one line
naming it when its value is bad (never echoing a value that may be a secret)."""
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

from syncer.budget import parse_budget
from syncer.freshness import parse_target
from syncer.validation import (
    CLIENT_ID_EXPECTS,
    CLIENT_ID_MAX_LENGTH,
    email_list,
    email_list_problem,
    is_valid_client_id,
    parse_duration,
)

BASE_DIR = Path(__file__).resolve().parent.parent
env = environ.Env()
if (BASE_DIR / ".env").exists():
    environ.Env.read_env(BASE_DIR / ".env")


def read_value(name: str, cast, default, expects: str):
    """Read one variable; a value that does not parse names the variable."""
    try:
        return cast(name, default=default)
    except (ValueError, TypeError, environ.ImproperlyConfigured) as error:
        raise ImproperlyConfigured(f"{name}={env.str(name, default='')!r} is invalid: expected {expects}") from error


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off", "")


def read_bool(name: str, default: bool) -> bool:
    """A strict boolean: an unknown word is a mistake to report, not a silent False."""
    value = env.str(name, default="1" if default else "0").strip().lower()
    if value not in _TRUE + _FALSE:
        raise ImproperlyConfigured(f"{name}={value!r} is invalid: expected true or false (1/0, yes/no, on/off)")
    return value in _TRUE


def positive(name: str, cast, default, expects: str):
    value = read_value(name, cast, default, expects)
    if value <= 0:
        raise ImproperlyConfigured(f"{name}={value!r} is invalid: expected {expects}")
    return value


def read_bounded(name: str, default: int, maximum: int, expects: str) -> int:
    """A whole number from 1 to `maximum`: past the cap a value is a typo, not a tuning."""
    value = read_value(name, env.int, default, f"{expects} from 1 to {maximum}")
    if not 1 <= value <= maximum:
        raise ImproperlyConfigured(f"{name}={value!r} is invalid: expected {expects} from 1 to {maximum}")
    return value


def read_client_id(name: str, default: str) -> str:
    value = env.str(name, default=default)
    if not is_valid_client_id(value) or len(value) > CLIENT_ID_MAX_LENGTH:
        raise ImproperlyConfigured(f"{name}={value!r} is invalid: expected {CLIENT_ID_EXPECTS}, "
                                   f"at most {CLIENT_ID_MAX_LENGTH} characters")
    return value


def read_budget(name: str, default: str):
    text = env.str(name, default=default)
    try:
        return str(parse_budget(text) or "none")
    except ValueError as error:
        raise ImproperlyConfigured(f"{name} is invalid: {error}") from error


def read_duration(name: str, default: str):
    try:
        return parse_duration(env.str(name, default=default))
    except ValueError as error:
        raise ImproperlyConfigured(f"{name} is invalid: {error}") from error


def read_target(name: str, default: str) -> int:
    """A freshness target in seconds ("3600", "90s", "1h", "24h", "7d")."""
    try:
        return parse_target(env.str(name, default=default))
    except ValueError as error:
        raise ImproperlyConfigured(f"{name} is invalid: {error}") from error


def read_metrics_token(name: str) -> str:
    """A bearer token for /metrics, or "" (then only staff scrape); never echoed in the error."""
    value = env.str(name, default="")
    if value and (len(value) < 16 or not all("!" <= character <= "~" for character in value)):
        raise ImproperlyConfigured(f"{name} is invalid: expected at least 16 printable ASCII characters "
                                   "without spaces (e.g. from `openssl rand -hex 32`), or nothing")
    return value


def read_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = env.str(name, default=default).strip().lower()
    if value not in choices:
        raise ImproperlyConfigured(f"{name}={value!r} is invalid: expected one of {', '.join(choices)}")
    return value


def read_url(name: str, default: str) -> str:
    value = env.str(name, default=default).strip().rstrip("/")
    if not value.startswith(("http://", "https://")):
        raise ImproperlyConfigured(f"{name}={value!r} is invalid: expected an http:// or https:// URL")
    return value



EMAIL_URL_EXPECTS = "expected a URL like smtp://user:password@host:587 or smtp+tls://... (or smtp+ssl://...)"


def read_email_url(name: str) -> dict:
    """The email backend's settings from one URL; empty when unset. Errors never show it: it holds a password."""
    if not env.str(name, default="").strip():
        return {}
    try:
        config = env.email_url(name)
    except (ValueError, KeyError, environ.ImproperlyConfigured) as error:
        raise ImproperlyConfigured(f"{name} is invalid: {EMAIL_URL_EXPECTS}") from error
    if config.get("EMAIL_BACKEND", "").endswith("smtp.EmailBackend") and not config.get("EMAIL_HOST"):
        raise ImproperlyConfigured(f"{name} is invalid: {EMAIL_URL_EXPECTS}")
    return config


def read_emails(name: str) -> list[str]:
    text = env.str(name, default="")
    problem = email_list_problem(text)
    if problem:
        raise ImproperlyConfigured(f"{name} is invalid: {problem}")
    return email_list(text)


def read_webhook_url(name: str) -> str:
    # Never echoed: a chat's webhook URL is itself a credential.
    value = env.str(name, default="").strip()
    if value and (not value.startswith(("http://", "https://")) or " " in value):
        raise ImproperlyConfigured(f"{name} is invalid: expected an http:// or https:// URL")
    return value
