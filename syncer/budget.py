"""The rate budget notation: `N/Ws`, N calls in any sliding window of W seconds."""
from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

_BUDGET = re.compile(r"^\s*(\d+)\s*/\s*(\d+(?:\.\d+)?|\.\d+)\s*s?\s*$")  # the "s" may be left out

MAX_CALLS = 10_000  # each call of a window is a row the limiter keeps (a rate slot) and reads in order
MIN_WINDOW_SECONDS = 0.1  # the limiter's own margin per slot is 0.1 s: a shorter window it could not pace
MAX_WINDOW_SECONDS = 86_400.0  # a day: a longer window is a typo that would hold a sync for days


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

    The same notation serves the settings, the account form and the fake
    platform. Budgets the limiter cannot honour are refused: more than
    10,000 calls per window (each call is a row in the database), or a
    window shorter than 0.1 s (the limiter's margin per call) or longer
    than 86,400 s (a day). Raises ValueError with one line that says what
    is expected.
    """
    if text is None or text.strip().lower() in ("", "none", "off", "0", "unlimited"):
        return None
    shown = repr(text if len(text) <= 40 else text[:40] + "...")
    match = _BUDGET.match(text)
    digits = match.group(1).lstrip("0") if match else ""  # Python refuses to read over 4,300 digits
    if not digits or float(match.group(2)) <= 0:
        raise ValueError(f"expected a budget like 10/60s (N calls per W seconds) or 'none', got {shown}")
    if len(digits) > len(str(MAX_CALLS)) or int(digits) > MAX_CALLS:
        raise ValueError(f"a budget allows at most {MAX_CALLS:,} calls per window (each is a row in the "
                         f"database), got {shown}")
    window = float(match.group(2))
    if not MIN_WINDOW_SECONDS <= window <= MAX_WINDOW_SECONDS:
        raise ValueError(f"a budget's window must be between {MIN_WINDOW_SECONDS:g} s and "
                         f"{MAX_WINDOW_SECONDS:g} s (a day), got {shown}")
    return RateBudget(calls=int(digits), window_seconds=window)


def budget_shared(budgets: Iterable[RateBudget | None]) -> RateBudget | None:
    """The one budget that keeps each of several safe: the fewest calls over the longest window.

    Accounts on one platform client share its budget, but each may have
    been configured with its own. No single sliding window is both `a/x`
    and `b/y`; `min(a, b)/max(x, y)` sends at most a calls in any x seconds
    and at most b in any y, so every account's promise holds. It can be
    slower than either (10/1s with 100/60s gives 10/60s): the accounts'
    budgets disagree, and too slow costs time where too fast costs 429s.
    An account without a budget does not loosen the others': the calls of
    all of them count on the platform's one window. None when none has one.
    """
    known = [budget for budget in budgets if budget is not None]
    if not known:
        return None
    return RateBudget(calls=min(budget.calls for budget in known),
                      window_seconds=max(budget.window_seconds for budget in known))
