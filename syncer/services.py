"""The one path for a sync, whoever starts it: command, admin, status page, schedule.

    sync_run_start -> run_prepare -> run_drain (any number, anywhere) -> run_finish_if_done

`run_execute` does all three in this process (the command without --async);
the cluster tasks call the same functions one step at a time.
"""
from __future__ import annotations

import logging
import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from campaigns.models import (
    ACTIVE_RUN_STATUSES,
    AdAccount,
    AttemptStatus,
    ListingMode,
    RunStatus,
    SyncRun,
    Trigger,
    validate_client_id,
)
from syncer import drain, janitor
from syncer.accounts import DEFAULT_SLUG, client_for, client_settings_for
from syncer.calls import CallStats
from syncer.client import PlatformClient, PlatformError
from syncer.cluster_keys import foreign_cluster_refusal, key_fingerprint
from syncer.connections import patiently
from syncer.heartbeat import heartbeat
from syncer.limiter import limiter_for, slots_ensure
from syncer.logs import bind_run
from syncer.prepare import attempts_queue, attempts_queue_stored, listing_fetch
from syncer.queueing import run_enqueue
from syncer.run_end import run_cancel as run_cancel
from syncer.run_end import run_fail, run_fail_internal, run_finish_if_done, run_note_budget
from syncer.stops import Stop

log = logging.getLogger(__name__)


class SyncRefused(Exception):
    """A sync that cannot start; the message says why and what to do.

    `active_run` is the run in the way; `failed_run` the run that was
    created but failed at once (its task could not be queued).
    """

    def __init__(self, message: str, *, active_run: SyncRun | None = None,
                 failed_run: SyncRun | None = None) -> None:
        super().__init__(message)
        self.active_run = active_run
        self.failed_run = failed_run


CYCLES_GIVING_WAY = 3  # how often a new run cancels a keep-fresh cycle in its way before it is refused


def sync_run_start(*, account: AdAccount, trigger: str, triggered_by: str = "",
                   campaign_ids: list[str] | None = None, retry_of: SyncRun | None = None,
                   concurrency: int | None = None, enqueue: bool = False,
                   listing: str = ListingMode.FULL) -> SyncRun:
    """Create a queued run; refuse when the account already has one queued or running.

    With `enqueue` the run goes to the task cluster; without it the caller
    runs it (`run_execute`). A run whose task could not be queued is
    refused too, with the run it failed. `listing` is what its first step
    reads (ListingMode: keep-fresh runs list only when a listing is due).
    """
    refusal = (enqueue and foreign_cluster_refusal()) or account_refusal(account)
    if refusal:
        raise SyncRefused(refusal)
    slots_ensure([account])  # here, not in the worker: its first call should not wait for them
    run = _run_create(account=account, trigger=trigger, triggered_by=triggered_by, campaign_ids=campaign_ids,
                      retry_of=retry_of, concurrency=concurrency, enqueue=enqueue, listing=listing)
    if run.status == RunStatus.FAILED:  # its enqueue failed when the run was committed (syncer/queueing.py)
        raise _not_queued(run)
    return run


def sync_runs_start(*, accounts, trigger: str, triggered_by: str = "",
                    enqueue: bool = False) -> list[SyncRun | SyncRefused]:
    """Start one run per account in one transaction; each gets its run or the reason it was refused.

    One commit instead of one per account, and the cluster sees every run
    at once: for a hundred accounts that is a tenth of a second, not two,
    and the last account's calls start as soon as the first one's.
    """
    accounts = list(accounts)
    cluster_refusal = enqueue and foreign_cluster_refusal()
    if cluster_refusal:
        return [SyncRefused(cluster_refusal) for _ in accounts]
    refusals = {account.pk: account_refusal(account) for account in accounts}
    slots_ensure([account for account in accounts if not refusals[account.pk]])
    started: list[SyncRun | SyncRefused] = []
    with transaction.atomic():  # each start is a savepoint in it: a refused one undoes only itself
        for account in accounts:
            try:
                if refusals[account.pk]:
                    raise SyncRefused(refusals[account.pk])
                started.append(_run_create(account=account, trigger=trigger, triggered_by=triggered_by,
                                           enqueue=enqueue))
            except SyncRefused as refused:
                started.append(refused)
    # Each run's enqueue ran on its own at the commit: one that failed does not keep the others from the cluster.
    return [_not_queued(run) if isinstance(run, SyncRun) and run.status == RunStatus.FAILED else run
            for run in started]


def account_refusal(account: AdAccount) -> str | None:
    """Why this account cannot sync as it is, in one line that says what to fix; None when it can."""
    try:
        password = account.get_password()
    except ImproperlyConfigured:
        return (f"account {account.slug!r}: its stored password cannot be decrypted with this process's "
                "SECRET_KEY: enter the password again in the admin, or run with the SECRET_KEY it was saved under")
    if not password:
        default = " (or set AD_PLATFORM_PASSWORD)" if account.slug == DEFAULT_SLUG else ""
        return f"account {account.slug!r} has no password: enter it in the admin{default}"
    try:
        validate_client_id(account.client_id)
    except ValidationError as invalid:
        return f"account {account.slug!r}: {invalid.messages[0]}; correct it in the admin"
    return None


def _not_queued(run: SyncRun) -> SyncRefused:
    return SyncRefused(f"run #{run.pk} for {run.account.slug!r} failed: {run.error_message}", failed_run=run)


def _run_create(*, account: AdAccount, trigger: str, triggered_by: str, enqueue: bool,
                campaign_ids: list[str] | None = None, retry_of: SyncRun | None = None,
                concurrency: int | None = None, listing: str = ListingMode.FULL) -> SyncRun:
    """Create the run, or refuse while the account has an active one; a keep-fresh cycle under way gives way
    (cancelled) to any other run: a person's "Sync now", a schedule. Its campaigns are in that run or the next
    cycle after it, so a full sync of a keep-fresh account needs no switching the mode off and on."""
    active = None
    for _ in range(CYCLES_GIVING_WAY):  # the cycle's worker may start its next one meanwhile: it gives way too
        try:
            with transaction.atomic():
                run = SyncRun.objects.create(
                    account=account, trigger=trigger, triggered_by=triggered_by[:150],
                    campaign_filter=_filter_of(campaign_ids, listing) if campaign_ids else None, retry_of=retry_of,
                    concurrency=concurrency or settings.SYNC["CONCURRENCY"],
                    queued_at=timezone.now() if enqueue else None, queued_key=key_fingerprint() if enqueue else "",
                    listing=listing,
                )
                if enqueue:
                    run_enqueue(run)
                return run
        except IntegrityError:
            active = SyncRun.objects.filter(account=account, status__in=ACTIVE_RUN_STATUSES).first()
            if active is None or active.holds_account or trigger == Trigger.KEEP_FRESH:
                break
            run_cancel(run_id=active.pk, who=f"a sync started by {triggered_by or trigger}")
    label = f"run #{active.pk} is {active.status}" if active else "another run is active"
    raise SyncRefused(f"account {account.slug!r} is already syncing ({label}); wait for it or cancel it",
                      active_run=active)


def _filter_of(campaign_ids: list[str], listing: str) -> list[str]:
    """The run's campaigns, each once: a keep-fresh cycle's in its order (its attempts are claimed in it, the
    most overdue first), any other run's sorted."""
    return sorted(set(campaign_ids)) if listing == ListingMode.FULL else list(dict.fromkeys(campaign_ids))


def run_retry_failed(*, run: SyncRun, trigger: str, triggered_by: str = "",
                     concurrency: int | None = None, enqueue: bool = False) -> SyncRun:
    """Start a new run for exactly the campaigns that failed in `run`."""
    failed_ids = list(
        run.attempts.filter(status=AttemptStatus.FAILED, campaign__isnull=False).values_list("platform_id", flat=True)
    )
    if not failed_ids:
        raise SyncRefused(f"run #{run.pk} has no failed campaigns to retry")
    return sync_run_start(account=run.account, trigger=trigger, triggered_by=triggered_by,
                          campaign_ids=failed_ids, retry_of=run, concurrency=concurrency, enqueue=enqueue)


def account_retry_dead_letter(*, account: AdAccount, trigger: str, triggered_by: str = "",
                              enqueue: bool = False) -> SyncRun:
    """Start a run for every campaign of the account whose last sync failed, whichever run that was."""
    failed_ids = list(account.campaigns.filter(last_sync_status="failed").values_list("platform_id", flat=True))
    if not failed_ids:
        raise SyncRefused(f"account {account.slug!r} has no failed campaigns to retry")
    return sync_run_start(account=account, trigger=trigger, triggered_by=triggered_by, campaign_ids=failed_ids,
                          enqueue=enqueue)


def run_prepare(*, run_id: int) -> bool:
    """List and store every campaign, queue one attempt each; False when there is nothing to do.

    Safe to run twice (a task may be delivered twice): attempts are unique per run.
    An unexpected error fails the run at once.
    """
    try:
        return _run_prepare(run_id=run_id)
    except Exception as error:
        run_fail_internal(run_id=run_id, step="listing", error=error)
        return False


def _run_begin(*, run_id: int) -> tuple[SyncRun, bool]:
    """Mark a queued run running; the run, and whether starting it was this step (a beat of its heartbeat)."""
    now = timezone.now()
    begun = SyncRun.objects.filter(pk=run_id, status=RunStatus.QUEUED).update(
        status=RunStatus.RUNNING, started_at=now, heartbeat_at=now)
    return SyncRun.objects.select_related("account").get(pk=run_id), bool(begun)


def _run_prepare(*, run_id: int) -> bool:
    with bind_run(run_id):
        # The database steps either side of the listing are patient: the first one is where a connection the
        # pool checked just before a database restart breaks, and a broken step there would fail the run.
        run, begun = patiently(_run_begin, run_id=run_id)
        if run.status != RunStatus.RUNNING:
            return False
        if run.prepared_at:
            return True
        if run.listing == ListingMode.SKIP:  # a keep-fresh run of stored campaigns: no listing call
            waiting = patiently(attempts_queue_stored, run=run)
            log.info("run prepared without a listing: %s campaigns to sync", waiting)
            return True
        stats = CallStats()
        try:
            with heartbeat(run_id=run_id, beat_now=not begun):  # starting it was a beat
                listing = listing_fetch(run=run, client=client_for(run.account, pool_size=run.concurrency),
                                        page_size=settings.SYNC["PAGE_SIZE"], stats=stats)
        except PlatformError as error:
            drain.calls_count(run_id, stats)
            run_fail(run_id=run_id, reason=f"listing campaigns failed: {error.message}")
            return False
        drain.calls_count(run_id, stats)
        run_note_budget(run_id=run_id)  # the listing's answers may have said what the platform allows
        waiting = patiently(attempts_queue, run=run, listing=listing)
        log.info("run prepared: %s campaigns listed, %s to sync, %s bad rows", len(listing.good), waiting,
                 len(listing.bad))
        return True


def run_drain(*, run_id: int, threads: int, max_seconds: float | None = None,
              stop: Stop | None = None, beat_now: bool = True) -> int:
    """Sync the run's pending attempts with `threads` parallel workers in this process.

    Ends when no work is left, after `max_seconds`, or once `stop` is set
    or the run is cancelled: the calls in flight finish, and calls still
    waiting (for a rate slot, a retry, an outage's end) go back unsent.
    `beat_now=False` when the caller has just shown the run alive (it
    prepared it).
    """
    run = SyncRun.objects.select_related("account").get(pk=run_id)
    if run.status != RunStatus.RUNNING:
        janitor.attempts_close_abandoned(run_id=run_id)  # e.g. stored by a listing that ended after the run did
        return 0
    client = client_for(run.account, pool_size=run.concurrency)  # one client for all of this process's drains
    deadline = time.monotonic() + (max_seconds if max_seconds is not None else math.inf)
    name, watch = drain.worker_name(), threading.Lock()
    halt = stop.linked() if stop is not None else Stop()  # this drain's: set by `stop`, or by a cancel of the run

    def work(index: int) -> int:
        try:
            with bind_run(run_id):
                return drain.drain_loop(run_id=run_id, client=client, worker=f"{name}/{index}", deadline=deadline,
                                        stop=halt, watch=watch,
                                        on_fatal=lambda error: run_fail(run_id=run_id, reason=error.message,
                                                                        category=error.category))
        except Exception as error:  # the other threads see the run failed and stop claiming
            run_fail_internal(run_id=run_id, step="syncing", error=error)
            return 0

    with heartbeat(run_id=run_id, beat_now=beat_now, on_cancel=halt), \
            ThreadPoolExecutor(max_workers=threads, thread_name_prefix=f"run{run_id}") as pool:
        done = sum(pool.map(work, range(threads)))
    # This drain's threads have all ended: a claim of theirs still open in an ended run is abandoned.
    patiently(janitor.attempts_close_abandoned, run_id=run_id, claim_prefix=f"{name}/")
    patiently(run_finish_if_done, run_id=run_id)
    return done


def run_execute(*, run_id: int, threads: int | None = None) -> SyncRun:
    """Prepare and drain a run in this process, to the end."""
    if run_prepare(run_id=run_id):
        run = SyncRun.objects.get(pk=run_id)
        run_drain(run_id=run_id, threads=threads or run.concurrency)  # ends by finishing the run
    else:
        patiently(run_finish_if_done, run_id=run_id)
    return patiently(SyncRun.objects.get, pk=run_id)


def account_test_connection(*, account: AdAccount) -> tuple[bool, str]:
    """Get a token and the first page; say plainly what works or what to fix (never the secret)."""
    refusal = account_refusal(account)
    if refusal:
        return False, f"{account.name}: {refusal}"
    client = PlatformClient(client_settings_for(account, pool_size=1),
                            limiter_for(account))
    try:
        page = client.check_connection()
    except PlatformError as error:
        return False, f"{account.name}: {error.message}"
    finally:
        client.close()
    total = "an unknown number of" if page.total is None else page.total
    return True, f"{account.name}: connected to {account.base_url}; the platform lists {total} campaigns"
