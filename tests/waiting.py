"""Wait on a condition with a deadline, never sleep-and-hope."""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(condition: Callable[[], T], *, timeout: float, message: str, poll: float = 0.1) -> T:
    """Return the first truthy value of `condition()`; fail with `message` when the deadline passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting until {message}")
        time.sleep(poll)
