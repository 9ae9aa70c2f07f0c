"""The one error a platform call ends with, and its categories (the same words as ErrorCategory)."""
from __future__ import annotations

import time

TIMEOUT, RATE_LIMITED, SERVER_ERROR = "timeout", "rate_limited", "server_error"
AUTH, CLIENT_ERROR, NETWORK, BAD_RESPONSE = "auth", "client_error", "network", "bad_response"


class PlatformError(Exception):
    """A failed call: `category` says what kind, `message` is safe to show anyone."""

    def __init__(self, category: str, message: str, *, http_status: int | None = None,
                 retryable: bool = False, retry_after: float | None = None, fatal: bool = False) -> None:
        super().__init__(message)
        self.category = category
        self.message = message
        self.http_status = http_status
        self.retryable = retryable
        self.retry_after = retry_after
        self.fatal = fatal  # no later call of this run can succeed either
        self.at = time.monotonic()
