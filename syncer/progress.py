"""Follow a run in the database and print its progress and summary on a terminal or a log.

On a terminal the progress is one bar that tqdm redraws in place; anywhere
else (a pipe, a file, CI) it is plain lines, at most one every few seconds.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import TextIO

from django.core.management.base import OutputWrapper
from django.db.models import Count
from tqdm import tqdm

from campaigns.models import AttemptStatus, SyncRun

LINE_EVERY_SECONDS = 5.0
# A terminal that says it has no width (a pty nobody sized) still gets a bar.
FALLBACK_WIDTH = 100
LISTING_FORMAT = "{desc} [{elapsed}]"
BAR_FORMAT = "{desc} {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt}{postfix} [{elapsed}<{remaining}]"


def _listing_text(run: SyncRun) -> str:
    return f"listing campaigns ({run.pages} pages so far)"


def _counts_text(run: SyncRun) -> str:
    return (f"{run.campaigns_synced} synced, {run.campaigns_failed} failed, {run.retries} retries, "
            f"{run.rate_limited} 429s")


def progress_text(run: SyncRun) -> str:
    if not run.prepared_at:
        return f"run #{run.pk} {run.status}: {_listing_text(run)}"
    return f"run #{run.pk} {run.status}: {run.campaigns_done}/{run.campaigns_listed} done, {_counts_text(run)}"


class _Unterminated:
    """The stream tqdm draws on: Django's OutputWrapper would end each of its redraws with a new line."""

    def __init__(self, out: TextIO) -> None:
        self._out = out

    def write(self, text: str) -> None:
        if isinstance(self._out, OutputWrapper):
            self._out.write(text, ending="")
        else:
            self._out.write(text)

    def __getattr__(self, name: str):  # flush, encoding
        return getattr(self._out, name)


class _BarInPlace:
    """One progress bar that tqdm redraws in place; made at the first update, so it never draws empty."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._bar: tqdm | None = None

    def show(self, run: SyncRun, *, last: bool) -> None:
        looks = {**_bar_looks(run), "ncols": _terminal_width(self._out)}  # the window may have been resized
        if self._bar is None:
            n = looks.pop("n")
            self._bar = tqdm(file=_Unterminated(self._out), mininterval=0, initial=n, **looks)  # draws it
            return
        for name, value in looks.items():
            setattr(self._bar, name, value)
        self._bar.refresh()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()  # leaves the last drawing and ends its line


def _bar_looks(run: SyncRun) -> dict:
    if not run.prepared_at:
        return {"bar_format": LISTING_FORMAT, "desc": progress_text(run), "postfix": "", "total": None, "n": 0}
    return {"bar_format": BAR_FORMAT, "desc": f"run #{run.pk} {run.status}", "postfix": _counts_text(run),
            "total": run.campaigns_listed, "n": run.campaigns_done}


def _terminal_width(out: TextIO) -> int:
    try:
        columns = os.get_terminal_size(out.fileno()).columns
    except (AttributeError, OSError, ValueError):
        columns = 0
    return columns - 1 if columns > 1 else FALLBACK_WIDTH  # not the last column: some terminals wrap there


class _PlainLines:
    """A line when the progress changed, at most one every LINE_EVERY_SECONDS, and always the last one."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._last_line, self._last_print = "", 0.0

    def show(self, run: SyncRun, *, last: bool) -> None:
        line = progress_text(run)
        if line != self._last_line and (time.monotonic() - self._last_print >= LINE_EVERY_SECONDS or last):
            self._out.write(line + "\n")
            self._out.flush()
            self._last_line, self._last_print = line, time.monotonic()

    def close(self) -> None:
        pass


def follow(run_id: int, out: TextIO, *, is_tty: bool, keep_going: Callable[[], bool],
           poll_seconds: float = 0.5) -> SyncRun:
    """Print progress until the run ends or `keep_going` says stop; return the run as last seen."""
    display = _BarInPlace(out) if is_tty else _PlainLines(out)
    try:
        while True:
            run = SyncRun.objects.get(pk=run_id)
            active = run.is_active and keep_going()
            display.show(run, last=not active)
            if not active:
                return run
            time.sleep(poll_seconds)
    finally:
        display.close()  # also on Ctrl-C: what is printed next starts on a line of its own


def summary_lines(run: SyncRun) -> list[str]:
    failures = (run.attempts.filter(status=AttemptStatus.FAILED).values("error_category")
                .annotate(count=Count("id")).order_by("-count"))
    by_category = ", ".join(f"{row['error_category'] or 'other'}: {row['count']}" for row in failures) or "none"
    duration = run.duration.total_seconds() if run.duration else 0.0
    lines = [
        f"Run #{run.pk} {run.status} for account {run.account.slug!r} in {duration:.1f} s",
        f"  campaigns: {run.campaigns_listed} listed, {run.campaigns_synced} synced, {run.campaigns_failed} failed",
        f"  failed by category: {by_category}",
        f"  calls: {run.requests} requests, {run.pages} pages, {run.retries} retries, {run.rate_limited} 429s, "
        f"{run.server_errors} 5xx, {run.timeouts} timeouts",
    ]
    if run.error_message:
        lines.append(f"  stopped: {run.error_message}")
    lines.extend(f"  warning: {line}" for line in run.warnings)
    return lines
