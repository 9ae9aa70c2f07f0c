"""Structured logging: a run id on every line, secrets never on any line.

`bind_run(run_id)` sets the run id for the current thread or task; the
filters copy it onto every record and scrub anything that looks like a
credential, whatever logger produced the line.
"""
from __future__ import annotations

import contextvars
import json
import logging
import os
import re
import threading
from collections import Counter
from contextlib import contextmanager
from datetime import UTC, datetime

_run_id: contextvars.ContextVar[str] = contextvars.ContextVar("run_id", default="-")

# Live secrets (passwords, Basic credentials, the tokens clients still hold), each counted by its holders:
# a closed client or a replaced token leaves. The longest-first order for masking is kept beside them and
# rebuilt when they change, not on every line (sorting 50,000 tokens was 6 ms a line).
_live_secrets: Counter[str] = Counter()
_longest_first: tuple[str, ...] = ()
_secrets_lock = threading.Lock()

# Authorization headers, tokens and base64 blobs of the Basic scheme.
_SECRET_PATTERNS = [
    re.compile(r"(?i)\b(basic|bearer)\s+[A-Za-z0-9+/=._\-]+"),
    re.compile(r"\btok_[A-Za-z0-9_\-]+"),
    re.compile(r"(?i)(\"?(?:access_token|password|authorization)\"?\s*[:=]\s*)(\"[^\"]*\"|'[^']*'|\S+)"),
]


def register_secret(value: str) -> None:
    """Remember a secret value (a password, a token) so no log line shows it, until `forget_secret`."""
    if value and len(value) >= 4:
        with _secrets_lock:
            _live_secrets[value] += 1
            if _live_secrets[value] == 1:
                _secrets_changed()


def forget_secret(value: str) -> None:
    """One holder of `value` no longer has it (a closed client, a replaced token)."""
    with _secrets_lock:
        if _live_secrets.get(value, 0) > 1:
            _live_secrets[value] -= 1
        elif _live_secrets.pop(value, None) is not None:
            _secrets_changed()


def live_secret_count() -> int:
    """How many distinct secrets the registry holds now."""
    with _secrets_lock:
        return len(_live_secrets)


def _secrets_changed() -> None:
    global _longest_first
    _longest_first = tuple(sorted(_live_secrets, key=len, reverse=True))


def redact(text: str) -> str:
    """Return `text` with every known secret and credential-shaped string masked."""
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(lambda m: (m.group(1) + " ***") if m.lastindex else "***", text)
    for secret in _longest_first:  # a tuple replaced whole on change: safe to read without the lock
        if secret in text:
            text = text.replace(secret, "***")
    return text


@contextmanager
def bind_run(run_id: int | str):
    token = _run_id.set(str(run_id))
    try:
        yield
    finally:
        _run_id.reset(token)


def console_for_command(verbosity: int) -> None:
    """Commands that draw their own progress keep the console to errors, unless asked.

    `-v 2` shows INFO and `-v 3` DEBUG; an explicit LOG_LEVEL always wins.
    """
    if "LOG_LEVEL" in os.environ:
        return
    level = {0: logging.ERROR, 1: logging.ERROR, 2: logging.INFO}.get(verbosity, logging.DEBUG)
    for handler in logging.getLogger().handlers:
        handler.setLevel(level)


def current_run_id() -> str:
    return _run_id.get()


class ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.run_id = _run_id.get()
        return True


class RedactFilter(logging.Filter):
    """Render the message once, scrub it, and freeze it on the record."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s run=%(run_id)s %(message)s")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "run_id": getattr(record, "run_id", "-"),
            "message": record.getMessage(),
        }
        if record.exc_text:
            line["error"] = record.exc_text
        return json.dumps(line, ensure_ascii=False)
