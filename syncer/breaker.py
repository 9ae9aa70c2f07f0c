"""An outage breaker for one platform client: hold every call while the platform is down, probe one at a time.

Pure Python, no Django. One `Breaker` per `PlatformClient`, shared by all
its threads. After `threshold` consecutive outage-like failures (5xx,
timeouts, refused or reset connections) the breaker opens: every call of
the client waits, one call at a time goes as a probe, the first after
`backoff_base` seconds, each next one after twice the wait before (at most
`backoff_cap`), and the first probe that gets an answer which is not
outage-like closes it: every held call goes on. A failure that opened the
breaker or met it open, and a failed probe, are held: they spend none of
their call's tries. An outage that lasts `max_outage` seconds makes every
held call raise `OutageTooLong`.

A held call given a `stop` event raises `Stopped` (syncer/stops.py) once it is set
(its worker exiting, its run cancelled), as a wait for the budget does.

So the calls an outage costs are the few that opened it and the calls in
flight when it began, then one probe per doubling of its length, whatever
the number of threads.

A call goes through three steps, all under one lock:
`enter()` (waits while open, unless it is the probe), `admit()` right before
it leaves (the breaker may have opened while it waited for its rate slot),
and `failed()` or `answered()` with what came back.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from syncer.stops import Stopped

log = logging.getLogger(__name__)

OUTAGE_FAILURES = 5  # consecutive outage-like failures that open the breaker: a few, so random 5xx do not
STOP_POLL_SECONDS = 0.5  # how soon a held call notices its stop


class OutageTooLong(Exception):
    def __init__(self, seconds: float) -> None:
        super().__init__(f"outage longer than {seconds:g} s")
        self.seconds = seconds


class Held(Exception):
    """The call did not go, or failed in an outage: try it again through `enter()`; no try is spent."""


@dataclass(eq=False)
class Pass:
    probe: bool
    outage: int  # the number of the outage it was given in (the count of openings so far)


class Breaker:
    def __init__(self, *, name: str, backoff_base: float, backoff_cap: float, max_outage: float,
                 on_change: Callable[[float | None], None] | None = None, threshold: int = OUTAGE_FAILURES) -> None:
        self.name, self.threshold = name, threshold
        self.backoff_base, self.backoff_cap, self.max_outage = backoff_base, backoff_cap, max_outage
        self._on_change = on_change  # called with the wall time the outage began, or None once it is over
        self._cond = threading.Condition()
        self._failures = 0  # consecutive outage-like failures while closed
        self._streak_sent = 0.0  # when the first of them left
        self._last_answer_sent = float("-inf")  # when the newest call the platform answered left
        self._began: float | None = None  # monotonic time the outage began; None while closed
        self._began_wall = 0.0
        self._outages = 0
        self._given_up = 0  # the last outage that outlasted max_outage
        self._probe: Pass | None = None
        self._next_probe_at = 0.0
        self._delay = backoff_base
        self._report_lock = threading.Lock()
        self._reported: float | None = None

    # --- the three steps of a call ------------------------------------------------

    def enter(self, stop: threading.Event | None = None) -> Pass:
        """Wait while the breaker is open, unless this call becomes the probe; Stopped once `stop` is set."""
        waited_in, gave_up = None, False  # the outage this call waited in, if any
        with self._cond:
            while self._began is not None:
                if stop is not None and stop.is_set():
                    raise Stopped()
                waited_in, now = self._outages, time.monotonic()
                if now - self._began >= self.max_outage:
                    self._give_up()
                    gave_up = True
                    break
                if now >= self._next_probe_at and self._probe is None:
                    self._probe = Pass(probe=True, outage=self._outages)
                    return self._probe
                self._wait(now, polling=stop is not None)
            too_long = waited_in is not None and self._given_up == waited_in
            ticket = Pass(probe=False, outage=self._outages)
        if gave_up:
            self._report()
        if too_long:
            raise OutageTooLong(self.max_outage)
        return ticket

    def admit(self, ticket: Pass) -> bool:
        """May the call leave now? False: it is held (the breaker opened meanwhile, or another took the probe)."""
        with self._cond:
            if not ticket.probe:
                return self._began is None
            if ticket is self._probe:
                return True
            if self._given_up == ticket.outage:
                raise OutageTooLong(self.max_outage)
            return False

    def answered(self, ticket: Pass, *, sent_at: float) -> None:
        """The platform answered a call that left at `sent_at` (monotonic) with something not outage-like."""
        with self._cond:
            self._last_answer_sent = max(self._last_answer_sent, sent_at)
            closing = ticket is self._probe
            if closing:
                self._close()
            elif self._began is None and sent_at >= self._streak_sent:
                self._failures = 0  # an answer to a call older than the failures says nothing of now
        if closing:
            self._report()

    def failed(self, ticket: Pass, *, sent_at: float) -> bool:
        """An outage-like failure of a call that left at `sent_at`; True when it is held (spends no try)."""
        with self._cond:
            was_open = self._began is not None
            held = self._failure(ticket, sent_at)
            opened = self._began is not None and not was_open
            too_long = ticket.probe and self._given_up == ticket.outage
        if opened:
            self._report()
        if too_long:
            raise OutageTooLong(self.max_outage)
        return held

    def abandon(self, ticket: Pass) -> None:
        """The call ended without a verdict (an unexpected error): free the probe for another."""
        with self._cond:
            if ticket is self._probe:
                self._probe = None
                self._cond.notify_all()

    # --- inside the lock --------------------------------------------------------------

    def _wait(self, now: float, *, polling: bool) -> None:
        deadline = self._began + self.max_outage
        # Until the next probe is due; once it is due and not ours, until someone notifies (or the deadline).
        wake = self._next_probe_at if now < self._next_probe_at else deadline
        if polling:  # a stop sets no condition: look at it every STOP_POLL_SECONDS (only while the platform is down)
            wake = min(wake, now + STOP_POLL_SECONDS)
        self._cond.wait(max(0.001, min(wake, deadline) - now))

    def _failure(self, ticket: Pass, sent_at: float) -> bool:
        if ticket is self._probe:
            self._probe = None
            self._delay = min(self._delay * 2, self.backoff_cap)
            self._next_probe_at = time.monotonic() + self._delay
            log.debug("probe of %s failed; next probe in %.2f s", self.name, self._delay)
            self._cond.notify_all()
            return True
        if self._began is not None:
            return True  # in flight when it opened
        # Calls are judged by when they left, not when they came back: an answer to a call that left before
        # the failures does not restart their count, and a failure of a call older than an answer is not
        # news of an outage. Otherwise each call in flight as an outage begins, answered during it, could
        # let threshold - 1 more failures through (measured with 1 s syncs: 11-13 calls while down without
        # this, 11-12 with it); with it, the calls before opening are the threshold plus those in flight.
        if ticket.probe or sent_at < self._last_answer_sent:
            return False  # a probe of an outage given up, or older than an answer: not news of an outage
        if not self._failures:
            self._streak_sent = sent_at
        self._failures += 1
        if self._failures < self.threshold:
            return False
        self._open()
        return True

    def _open(self) -> None:
        self._outages += 1
        self._began, self._began_wall = time.monotonic(), time.time()
        self._probe, self._delay, self._failures = None, self.backoff_base, 0
        self._next_probe_at = self._began + self._delay
        log.warning("the platform at %s is unavailable (%s outage-like failures in a row: 5xx, timeouts or refused "
                    "connections); holding its calls and probing one at a time", self.name, self.threshold)

    def _close(self) -> None:
        log.warning("the platform at %s answers again after %.1f s; resuming its calls", self.name,
                    time.monotonic() - self._began)
        self._began, self._probe, self._failures = None, None, 0
        self._cond.notify_all()

    def _give_up(self) -> None:
        self._given_up = self._outages
        self._began, self._probe, self._failures = None, None, 0  # the next run starts afresh
        self._cond.notify_all()

    # --- telling people ---------------------------------------------------------------

    def _report(self) -> None:
        """Tell `on_change` the state as it is now: threads that change it report in any order, the last is right."""
        if self._on_change is None:
            return
        with self._report_lock:
            with self._cond:
                since = self._began_wall if self._began is not None else None
            if since != self._reported:
                self._reported = since
                self._on_change(since)
