"""How many calls an outage may cost: the bound the outage tests hold the breaker to (syncer/breaker.py)."""
from __future__ import annotations

from syncer.breaker import OUTAGE_FAILURES


def probes_while_down(down: float, base: float, cap: float) -> int:
    """Probes that can leave during an outage of `down` s: the n-th leaves the sum of n waits after it opened,
    the waits being base, 2 base, 4 base, ... capped at `cap` (a failed probe's own time only delays the next)."""
    probes, elapsed, wait = 0, base, base
    while elapsed <= down:
        probes, wait = probes + 1, min(wait * 2, cap)
        elapsed += wait
    return probes


def outage_call_bound(down: float, base: float, cap: float, concurrency: int) -> int:
    """The most calls an outage of `down` seconds may receive from one client of `concurrency` threads.

    While the breaker is still closed: the OUTAGE_FAILURES failures that open it, and the calls of the
    other threads in flight at that moment (each thread has one call at most; a call that passed the
    breaker but not its rate slot yet is held when it gets the slot). Once open: the probes, one at a
    time. With the waits doubling and no cap inside the outage, that is log2(down / base + 1): calls
    grow with the log of the outage's length, not with threads x tries.
    """
    return OUTAGE_FAILURES + (concurrency - 1) + probes_while_down(down, base, cap)
