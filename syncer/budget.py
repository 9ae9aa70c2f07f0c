"""The rate budget notation: `N/Ws`, N calls in any sliding window of W seconds."""
from __future__ import annotations

import re
from dataclasses import dataclass

_BUDGET = re.compile(r"^\s*(\d+)\s*/\s*(\d+(?:\.\d+)?|\.\d+)\s*s?\s*$")  # the "s" may be left out


@dataclass(frozen=True)
class RateBudget:
    calls: int
    window_seconds: float

    def __str__(self) -> str:
        return f"{self.calls}/{self.window_seconds:g}s"

    @property
    def seconds_per_call(self) -> float:
        return self.window_seconds / self.calls


def parse_budget(text: str | None) -> RateBudget | None:
    """Parse `10/60s`; `none`, `off` or empty text means no budget.

    Raises ValueError with a message that says what is expected.
    """
    if text is None or text.strip().lower() in ("", "none", "off", "0", "unlimited"):
        return None
    match = _BUDGET.match(text)
    if not match or int(match.group(1)) < 1 or float(match.group(2)) <= 0:
        raise ValueError(f"expected a budget like 10/60s (N calls per W seconds) or 'none', got {text!r}")
    return RateBudget(calls=int(match.group(1)), window_seconds=float(match.group(2)))
