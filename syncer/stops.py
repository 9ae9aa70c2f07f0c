"""Stop signals for a drain's waits: its worker process exiting, or its run cancelled.

Every wait of a call (for a rate slot, a retry, a throttle, an outage)
waits on one event, so a drain gets one `Stop` that either cause sets: the
process's stop sets every stop linked to it, and the process heartbeat
sets a run's stops when it sees the run cancelled (syncer/heartbeat.py).
A stopped wait raises `Stopped`; the drain puts its claim back unsent.
"""
from __future__ import annotations

import threading
import time
import weakref


class Stopped(Exception):
    """A wait ended because its stop was set: the call goes no further, and sends nothing more."""


class Stop(threading.Event):
    """An event that also sets the stops linked to it (a worker's exit stops each of its drains)."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._linked: weakref.WeakSet[Stop] = weakref.WeakSet()  # bounded: the drains alive in this process

    def linked(self) -> Stop:
        """A new stop, set when this one is (at once, if it already is)."""
        child = Stop()
        with self._lock:
            self._linked.add(child)
            if self.is_set():
                child.set()
        return child

    def set(self) -> None:
        with self._lock:
            super().set()
            linked = list(self._linked)
        for child in linked:
            child.set()


def pause(seconds: float, stop: threading.Event | None) -> None:
    """Sleep `seconds`; raise Stopped as soon as `stop` is set."""
    if stop is None:
        time.sleep(seconds)
    elif stop.wait(seconds):
        raise Stopped()
