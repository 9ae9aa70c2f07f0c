"""Keep-fresh mode: runs of the most overdue campaigns, one after another, so each class stays within its target.

    keep_fresh_cycle_start -> an ordinary run (trigger keep_fresh) of the campaigns most overdue by
                              age / planned interval, listing first when a listing is due
    keep_fresh_foreground  -> cycles in this process for a while (manage.py sync_campaigns --keep-fresh)
    keep_fresh_continue    -> on the cluster, the next cycle as soon as one ends; keep_fresh_tick every minute
                              starts one for a keep-fresh account that has none

The plan (syncer/freshness.py) gives each class its interval from the budget
and the targets; a cycle is a quarter of the shortest interval (at least a
budget window), and takes the campaigns due within it, up to the calls the
budget gives in it: active ones first, then paused, then the others, and
within a class those never synced, then the oldest. So campaigns come round
at regular intervals rather than at random, and none starves: a class is
due only once per its interval, so the one before it cannot take more than
the plan gave it. The cycles are ordinary runs, so
history, retry, cancel and the dead-letter list work on them as on any run;
a cancelled cycle is followed by the next one.
"""
from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from campaigns.models import ACTIVE_RUN_STATUSES, AdAccount, Campaign, ListingMode, RunStatus, SyncRun, Trigger
from syncer import services
from syncer.api_clients import budget_share
from syncer.budget import RateBudget
from syncer.freshness import CLASSES, Plan, freshness_class, plan

log = logging.getLogger(__name__)

CYCLE_SHARE = 0.25  # a cycle is this share of the shortest planned interval ...
CYCLE_WINDOWS = (1, 10)  # ... but at least one budget window and at most ten
UNLIMITED_CYCLE_CALLS = 1000  # without a budget, a cycle's most campaigns
CONTINUE_WAIT = 60.0  # after a run, how long a worker waits for the next campaign to be due (the tick's period)


@dataclass
class Cycle:
    """One turn of keep-fresh: the run it started (None: nothing was due), and when the next campaign is due."""

    run: SyncRun | None
    plan: Plan
    seconds: float  # the cycle's length: what it takes the campaigns due within
    next_due_in: float  # seconds until the next campaign is due, when nothing was (0 otherwise)


def keep_fresh_cycle_start(*, account: AdAccount, enqueue: bool) -> Cycle:
    """Start the account's next keep-fresh run; raises SyncRefused when another run is active."""
    now = timezone.now()
    budget = budget_share(account)
    stored = stored_by_class(account)
    current = account_plan(account, budget=budget, stored=stored)
    seconds = cycle_seconds(current, budget)
    listing_due = account.listed_at is None or (now - account.listed_at).total_seconds() >= current.listing_every
    calls = cycle_calls(budget, seconds) - (current.listing_pages if listing_due else 0)
    chosen, next_due_in = overdue(stored, current, now=now, horizon=seconds, limit=max(calls, 1))
    if not chosen and not listing_due:
        return Cycle(run=None, plan=current, seconds=seconds, next_due_in=min(next_due_in, current.listing_every))
    run = services.sync_run_start(
        account=account, trigger=Trigger.KEEP_FRESH, triggered_by="keep fresh", campaign_ids=chosen or None,
        listing=ListingMode.REFRESH if listing_due else ListingMode.SKIP, enqueue=enqueue)
    log.info("keep fresh: run #%s for %s: %s campaigns%s", run.pk, account.slug, len(chosen),
             ", listing first" if listing_due else "")
    return Cycle(run=run, plan=current, seconds=seconds, next_due_in=0.0)


def keep_fresh_foreground(*, account: AdAccount, seconds: float, stop: threading.Event | None = None,
                          on_cycle=None) -> list[SyncRun]:
    """Run keep-fresh cycles in this process for `seconds` (or until `stop`); the runs, in order."""
    stop = stop or threading.Event()
    deadline = time.monotonic() + seconds
    runs = []
    while not stop.is_set() and time.monotonic() < deadline:
        account.refresh_from_db()
        cycle = keep_fresh_cycle_start(account=account, enqueue=False)
        if cycle.run is None:
            stop.wait(min(max(cycle.next_due_in, 0.1), deadline - time.monotonic()))
            continue
        runs.append(services.run_execute(run_id=cycle.run.pk))
        if on_cycle is not None:
            on_cycle(cycle, runs[-1])
        if runs[-1].status == RunStatus.FAILED and runs[-1].error_message:
            break  # refused credentials, an unreachable platform: the next cycle would fail the same way
    return runs


def account_plan(account: AdAccount, *, budget: RateBudget | None, stored: dict[str, list] | None = None) -> Plan:
    """The plan for the account's campaigns as stored now, under `budget` (its share of its client's)."""
    stored = stored_by_class(account) if stored is None else stored
    return plan(counts={klass: len(rows) for klass, rows in stored.items()}, targets=account.freshness_targets,
                budget=budget, page_size=settings.SYNC["PAGE_SIZE"])


def keep_fresh_tick() -> int:
    """Start the next run of every keep-fresh account that has none; how many started (the cluster's tick)."""
    started = 0
    for account in AdAccount.objects.filter(keep_fresh=True).exclude(runs__status__in=ACTIVE_RUN_STATUSES):
        try:
            started += keep_fresh_cycle_start(account=account, enqueue=True).run is not None
        except services.SyncRefused as refused:
            log.info("keep fresh: %s", refused)
    return started


def keep_fresh_continue(*, run_id: int, stop: threading.Event) -> SyncRun | None:
    """After a keep-fresh run ended on the cluster: start the account's next one at once, or when the next
    campaign is due (waiting here at most CONTINUE_WAIT seconds; past that the tick starts it)."""
    try:
        return _continue(run_id=run_id, stop=stop)
    except Exception as error:  # the run has ended well; the tick starts the next one within a minute
        log.warning("keep fresh: could not start the run after #%s (%s); the next tick will", run_id,
                    type(error).__name__, exc_info=True)
        return None


def _continue(*, run_id: int, stop: threading.Event) -> SyncRun | None:
    run = SyncRun.objects.get(pk=run_id)
    deadline = time.monotonic() + CONTINUE_WAIT
    while run.trigger == Trigger.KEEP_FRESH and not run.is_active and not stop.is_set():
        account = AdAccount.objects.get(pk=run.account_id)
        if not account.keep_fresh:
            return None
        try:
            cycle = keep_fresh_cycle_start(account=account, enqueue=True)
        except services.SyncRefused:
            return None  # another drain of the run, or a person, started one first
        if cycle.run is not None or time.monotonic() + cycle.next_due_in > deadline:
            return cycle.run
        stop.wait(max(cycle.next_due_in, 0.1))
    return None


def cycle_seconds(current: Plan, budget: RateBudget | None) -> float:
    shortest = min(current.intervals[klass] for klass in CLASSES)
    if budget is None:
        return shortest * CYCLE_SHARE
    low, high = (budget.window_seconds * windows for windows in CYCLE_WINDOWS)
    return min(max(shortest * CYCLE_SHARE, low), high)


def cycle_calls(budget: RateBudget | None, seconds: float) -> int:
    if budget is None:
        return UNLIMITED_CYCLE_CALLS
    return max(1, math.floor(budget.calls * seconds / budget.window_seconds))


def stored_by_class(account: AdAccount) -> dict[str, list[tuple]]:
    """The account's campaigns by class (freshness_class): (last synced or None, first seen, id, platform id)."""
    stored: dict[str, list[tuple]] = {klass: [] for klass in CLASSES}
    rows = Campaign.objects.filter(account=account).values_list(
        "status", "pinned_active", "last_synced_at", "first_seen_at", "id", "platform_id")
    for status, pinned, synced, seen, pk, platform_id in rows:
        stored[freshness_class(status, pinned=pinned)].append((synced, seen, pk, platform_id))
    return stored


def overdue(stored: dict[str, list[tuple]], current: Plan, *, now: datetime, horizon: float,
            limit: int) -> tuple[list[str], float]:
    """The campaigns due within `horizon` seconds, at most `limit`, in the order they fall due; and, when none
    is, the seconds until the first one will be.

    When more are due than fit, active ones go first, then paused, then the others, and within a class those
    never synced, then the oldest (the most overdue: a class shares one planned interval).
    """
    chosen: list[tuple[datetime, str]] = []  # (when it fell or falls due, platform id)
    next_due = math.inf
    for klass in CLASSES:
        interval = timedelta(seconds=current.intervals[klass])
        synced = sorted((last, pk, platform_id) for last, _, pk, platform_id in stored[klass] if last is not None)
        never = sorted((seen, pk, platform_id) for last, seen, pk, platform_id in stored[klass] if last is None)
        due = [(last + interval, platform_id) for last, _, platform_id in synced
               if last <= now + timedelta(seconds=horizon) - interval]
        chosen += [(seen, platform_id) for seen, _, platform_id in never][:max(limit - len(chosen), 0)]
        chosen += due[:max(limit - len(chosen), 0)]
        if synced:
            next_due = min(next_due, (synced[0][0] + interval - now).total_seconds() - horizon)
    chosen.sort()
    return [platform_id for _, platform_id in chosen], (0.0 if chosen else max(next_due, 0.0))
