"""How fast the platform answers, as this process has seen it, and the margin that follows from it.

The limiter dates a slot at the latest moment the platform can have read
its call: the answer's time less the fastest answer seen to that kind of
call (syncer/limiter.py). Only successes are noted: a 429 or a 503 comes
back in milliseconds and says nothing of how fast the platform syncs.
That estimate is as good as the answers are steady: the more they vary, the less the fastest one says of this one. So
the margin a slot waits before it is used again is the spread of recent
answers (their 95th percentile less the fastest), never less than this
machine's own slip (MARGIN_FLOOR) and never more than the 1 % of the
window that was once the fixed margin and was always enough.

At the real budget (10/60s) on steady 2 s answers that is 0.1 s a window
instead of 0.6 s: the reference run of 100 campaigns ends ten windows
after its first call plus 1 s instead of 6 s (tests/benchmarks/results.md,
rate-bound-real).
"""
from __future__ import annotations

import threading
from collections import deque

RECENT_ANSWERS = 200  # per kind of call: enough for a stable 95th percentile, and a bounded cache
SPREAD_QUANTILE = 0.95  # a rare slow answer (a retry's, a busy moment's) does not widen every window
SPREAD_EVERY = 10  # answers between two sorts of the recent ones (a fleet answers hundreds a second)
MARGIN_FLOOR = 0.1  # seconds: a busy machine's slip between a slot's date and the call's departure
MARGIN_MOST_SHARE = 0.01  # of the window: the fixed margin before it was measured


class AnswerTimes:
    """The fastest answer per kind of call (GET for a listing page, POST for a sync) and the spread of recent ones.

    The answers of every account in the process count: one account's first
    calls, all slow on a machine busy starting a fleet, would otherwise set
    a fastest answer far above the platform's, and date its slots before
    the platform counted them.
    """

    def __init__(self, recent: int = RECENT_ANSWERS) -> None:
        self._lock = threading.Lock()
        self._recent_size = recent
        self._fastest: dict[str, float] = {}
        self._recent: dict[str, deque[float]] = {}
        self._spreads: dict[str, float] = {}
        self._noted: dict[str, int] = {}

    def note(self, method: str, seconds: float) -> float:
        """Note an answer of `seconds`; the fastest answer seen before it (0 for the first: read as late as it came)."""
        with self._lock:
            fastest = self._fastest.get(method, 0.0)
            self._fastest[method] = min(self._fastest.get(method, seconds), seconds)
            recent = self._recent.setdefault(method, deque(maxlen=self._recent_size))
            recent.append(seconds)
            self._noted[method] = noted = self._noted.get(method, 0) + 1
            if noted <= SPREAD_EVERY or noted % SPREAD_EVERY == 0 or seconds < fastest:  # a new fastest moves it
                ordered = sorted(recent)
                self._spreads[method] = ordered[int(SPREAD_QUANTILE * (len(ordered) - 1))] - self._fastest[method]
            return fastest

    def spread(self) -> float:
        """How much slower than the fastest the recent answers come, at the 95th percentile; 0 before any."""
        with self._lock:
            return max(self._spreads.values(), default=0.0)


ANSWER_TIMES = AnswerTimes()


def answer_noted(method: str, seconds: float) -> float:
    """Note an answer of this process's; the fastest one seen before it (see `AnswerTimes.note`)."""
    return ANSWER_TIMES.note(method, seconds)


def safety_margin(window_seconds: float) -> float:
    """Extra wait per slot for the uncertainty of when the platform read its last call (see the module's note)."""
    return max(MARGIN_FLOOR, min(ANSWER_TIMES.spread(), window_seconds * MARGIN_MOST_SHARE))
