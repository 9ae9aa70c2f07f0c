"""A platform client's bearer token: one for all its threads, replaced when refused, judged when it never works.

Pure Python, no Django. Platforms revoke tokens early (every few calls,
all at once, whenever a new one is issued), so a 401 on a data call means:
take a new token and call again (PLATFORM_API.md, "Authentication"). That
goes on as long as fresh tokens work. Access has been withdrawn when two
tokens issued one after the other were each refused on their first use and
served no call at all: then `AccessWithdrawn`.

A token is judged once every call made with it is answered: with ten calls
in parallel a 401 may come back first (the platform revoked the token as it
served a slower call made with it) while that slower call succeeds. A token
whose first call timed out, or which served any call, made no case for
withdrawn access.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from syncer.logs import forget_secret, register_secret

KEEP = 4  # the newest tokens kept, the current one included: a call may still use one, logs still mask it
REFRESH_MARGIN = 0.1  # of a token's lifetime: replaced this long before it expires (at most a minute)


class AccessWithdrawn(Exception):
    pass


@dataclass(eq=False)
class Issued:
    token: str
    number: int  # in the order of issue
    in_flight: int = 0
    leased: int = 0
    refused_first: bool = False  # its first use was refused
    served: bool = False  # some call made with it was accepted


@dataclass(eq=False)
class Lease:
    """One call's use of a token."""

    issued: Issued
    first: bool

    @property
    def token(self) -> str:
        return self.issued.token


class TokenKeeper:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._current: Issued | None = None
        self._refresh_at = 0.0
        self._issued = 0
        self._recent: deque[Issued] = deque()
        self._dead_on_arrival: set[int] = set()  # tokens every call refused, since the last accepted call
        self._withdrawn_at = float("-inf")

    def lease(self, fetch: Callable[[], tuple[str, float]], *, call_began: float) -> Lease:
        """The token to send now; fetched first (`fetch` returns a token and its lifetime) when there is none.

        The fetch runs under the lock: the other threads wait for it and use
        its token instead of each fetching one. A call that began before
        access was found withdrawn ends with the same error.
        """
        with self._lock:
            if call_began <= self._withdrawn_at:
                raise AccessWithdrawn()
            if self._current is None or time.monotonic() >= self._refresh_at:
                token, lifetime = fetch()
                self._install(token, lifetime)
            issued = self._current
            issued.in_flight, issued.leased = issued.in_flight + 1, issued.leased + 1
            return Lease(issued, first=issued.leased == 1)

    def settle(self, lease: Lease, *, refused: bool | None) -> None:
        """A call made with `lease` ended: refused (401), accepted (any other answer under 500), or None (no verdict).

        Raises AccessWithdrawn when this makes two tokens in a row refused on first use that served nothing.
        """
        issued = lease.issued
        with self._lock:
            issued.in_flight -= 1
            if lease.first:
                issued.refused_first = bool(refused)
            if refused and self._current is issued:
                self._current = None  # the next lease fetches; a call still holding it just uses the new one
            elif refused is False:
                issued.served = True
                self._dead_on_arrival.clear()
            if issued.in_flight or not issued.refused_first or issued.served or issued.number in self._dead_on_arrival:
                return
            self._dead_on_arrival.add(issued.number)
            if {issued.number - 1, issued.number + 1} & self._dead_on_arrival:
                self._withdrawn_at = time.monotonic()
                self._dead_on_arrival.clear()
                raise AccessWithdrawn()

    def forget_all(self) -> None:
        """The client is closed: its tokens leave the secret registry."""
        with self._lock:
            while self._recent:
                forget_secret(self._recent.popleft().token)
            self._current = None

    def _install(self, token: str, lifetime: float) -> None:
        register_secret(token)
        self._issued += 1
        self._current = Issued(token, self._issued)
        self._refresh_at = time.monotonic() + lifetime - min(60.0, lifetime * REFRESH_MARGIN)
        self._recent.append(self._current)
        if len(self._recent) > KEEP:
            forget_secret(self._recent.popleft().token)
