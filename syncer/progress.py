"""Follow a run in the database and print its progress and summary on a terminal or a log."""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO

from django.db.models import Count

from campaigns.models import AttemptStatus, SyncRun

BAR_WIDTH = 30
LINE_EVERY_SECONDS = 5.0


def progress_text(run: SyncRun) -> str:
    done, total = run.campaigns_done, run.campaigns_listed
    if not run.prepared_at:
        return f"run #{run.pk} {run.status}: listing campaigns ({run.pages} pages so far)"
    return (f"run #{run.pk} {run.status}: {done}/{total} done, {run.campaigns_synced} synced, "
            f"{run.campaigns_failed} failed, {run.retries} retries, {run.rate_limited} 429s")


def progress_bar(run: SyncRun) -> str:
    done, total = run.campaigns_done, max(run.campaigns_listed, 1)
    filled = int(BAR_WIDTH * min(done / total, 1.0)) if run.prepared_at else 0
    return f"\r[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {progress_text(run)}   "


def follow(run_id: int, out: TextIO, *, is_tty: bool, keep_going: Callable[[], bool],
           poll_seconds: float = 0.5) -> SyncRun:
    """Print progress until the run ends or `keep_going` says stop; return the run as last seen."""
    last_line, last_print = "", 0.0
    while True:
        run = SyncRun.objects.get(pk=run_id)
        active = run.is_active and keep_going()
        if is_tty:
            out.write(progress_bar(run))
            out.flush()
        else:
            line = progress_text(run)
            if line != last_line and (time.monotonic() - last_print >= LINE_EVERY_SECONDS or not active):
                out.write(line + "\n")
                out.flush()
                last_line, last_print = line, time.monotonic()
        if not active:
            if is_tty:
                out.write("\n")
            return run
        time.sleep(poll_seconds)


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
