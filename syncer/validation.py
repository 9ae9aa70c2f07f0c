"""Rules for values that both the settings and the models check (settings cannot import models)."""
from __future__ import annotations

import re
from datetime import timedelta

CLIENT_ID_MAX_LENGTH = 200
CLIENT_ID_EXPECTS = "printable ASCII without spaces (it is sent as X-Client-ID)"


def is_valid_client_id(value: str) -> bool:
    """A client id travels in an HTTP header: printable ASCII only, no spaces."""
    return bool(value) and all("!" <= character <= "~" for character in value)

# Caps on concurrency: past them a value is a typo, not a tuning (each bound is
# a thread or a process that costs memory, a connection and a share of the GIL).
CONCURRENCY_MAX = 100  # sync calls in flight per run (SYNC_CONCURRENCY and --concurrency)
THREADS_PER_WORKER_MAX = 2_000  # drain threads one cluster worker process hosts (SYNC_THREADS_PER_WORKER)
Q_WORKERS_MAX = 32  # worker processes per cluster (Q_WORKERS); more hosts scale further

DURATION_EXPECTS = "a whole number and a unit, like 90d, 12h or 3600s"
DURATION_UNITS = {"d": 86_400, "h": 3_600, "m": 60, "s": 1}


def parse_duration(text: str) -> timedelta:
    """"90d", "12h", "30m" or "3600s" as a timedelta; anything else (zero too) raises ValueError saying so."""
    match = re.fullmatch(r"\s*(\d+)\s*([dhms])\s*", text or "")
    if not match or int(match.group(1)) == 0:
        raise ValueError(f"{text!r} is not a duration: expected {DURATION_EXPECTS}")
    return timedelta(seconds=int(match.group(1)) * DURATION_UNITS[match.group(2)])


def email_list(text: str) -> list[str]:
    """The addresses of a comma-, space- or line-separated list, in order, each once."""
    return list(dict.fromkeys(text.replace(",", " ").split()))


def email_list_problem(text: str) -> str | None:
    """What is wrong with a list of addresses, in one line, or None."""
    from django.core.exceptions import ValidationError
    from django.core.validators import validate_email  # Django's rule; importable before settings are read

    for address in email_list(text):
        try:
            validate_email(address)
        except ValidationError:
            return f"{address!r} is not an email address; separate addresses with commas"
    return None
