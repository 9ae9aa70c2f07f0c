"""`manage.py sync_campaigns`: sync an account's campaigns now, in this process."""
from __future__ import annotations

import math
import threading

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError
from django.db import connection

from campaigns.models import ACTIVE_RUN_STATUSES, AdAccount, ListingMode, RunStatus, SyncRun, Trigger
from syncer.accounts import AccountNotFound, account_get
from syncer.api_clients import budget_share
from syncer.keep_fresh import account_plan, keep_fresh_foreground
from syncer.logs import console_for_command
from syncer.progress import follow, summary_lines
from syncer.schedules import schedule_clear, schedule_set
from syncer.services import (
    SyncRefused,
    account_refusal,
    run_cancel,
    run_execute,
    run_fail_internal,
    run_retry_failed,
    sync_run_start,
    sync_runs_start,
)
from syncer.validation import CONCURRENCY_MAX

EXIT_OK, EXIT_SOME_FAILED, EXIT_FATAL = 0, 1, 2


class Command(BaseCommand):
    help = (
        "Sync every campaign of an ad account from the platform into the database. "
        "Exit status: 0 all synced, 1 some campaigns failed (see the summary; retry with "
        "--retry-failed), 2 fatal error (bad credentials, platform unreachable, bad configuration)."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--account", metavar="SLUG", help="the account to sync (default: the AD_PLATFORM_* one)")
        parser.add_argument("--all-accounts", action="store_true",
                            help="with --async: start every account's run in one go, as 'Sync now' on all "
                                 "accounts does; an account already syncing is skipped")
        parser.add_argument("--campaign", metavar="ID", action="append", dest="campaigns",
                            help="sync only this platform campaign id (repeatable)")
        parser.add_argument("--retry-failed", metavar="RUN_ID", nargs="?", const="latest",
                            help="sync again exactly the campaigns that failed in RUN_ID (default: the latest run)")
        parser.add_argument("--concurrency", type=int, metavar="N",
                            help="parallel sync calls (default SYNC_CONCURRENCY)")
        parser.add_argument("--async", action="store_true", dest="background",
                            help="queue the run on the task cluster (manage.py qcluster), print its id and return")
        parser.add_argument("--wait", action="store_true",
                            help="with --async: follow the queued run's progress until it ends")
        parser.add_argument("--schedule", metavar="CRON",
                            help="create or update the account's periodic sync, e.g. '*/30 * * * *', and return")
        parser.add_argument("--unschedule", action="store_true", help="remove the account's periodic sync and return")
        parser.add_argument("--keep-fresh", action="store_true",
                            help="keep the account's campaigns within their freshness targets here: runs of the "
                                 "most overdue ones, one after another, until Ctrl-C (or --for)")
        parser.add_argument("--for", type=float, metavar="SECONDS", dest="for_seconds",
                            help="with --keep-fresh: stop after this many seconds")

    def handle(self, *args, **options) -> None:
        console_for_command(options["verbosity"])
        if options["concurrency"] is not None and not 1 <= options["concurrency"] <= CONCURRENCY_MAX:
            raise CommandError(f"--concurrency must be from 1 to {CONCURRENCY_MAX}", returncode=EXIT_FATAL)
        try:
            if options["schedule"] is not None or options["unschedule"]:
                return self._schedule(options)
            if options["all_accounts"]:
                return self._start_all(options)
            if options["keep_fresh"] or options["for_seconds"] is not None:
                return self._keep_fresh(options)
            run = self._start(options)
        except (AccountNotFound, SyncRefused, ImproperlyConfigured, ValueError) as error:
            raise CommandError(str(error), returncode=EXIT_FATAL) from None
        if options["background"]:
            self.stdout.write(f"Run #{run.pk} queued for account {run.account.slug!r} on the task cluster")
            if not options["wait"]:
                return
            run = self._follow_queued(run)
        else:
            run = self._execute(run, options["concurrency"])
        for line in summary_lines(run):
            self.stdout.write(line)
        code = exit_code(run)
        if code:
            raise CommandError(_failure_line(run, code), returncode=code)

    def _start(self, options) -> SyncRun:
        account = account_get(slug=options["account"])  # the services refuse an account that cannot sync
        who, enqueue = "manage.py sync_campaigns", options["background"]
        if options["retry_failed"]:
            return run_retry_failed(run=_run_to_retry(account, options["retry_failed"]), trigger=Trigger.COMMAND,
                                    triggered_by=who, concurrency=options["concurrency"], enqueue=enqueue)
        return sync_run_start(account=account, trigger=Trigger.COMMAND, triggered_by=who,
                              campaign_ids=options["campaigns"], concurrency=options["concurrency"], enqueue=enqueue)

    def _start_all(self, options) -> None:
        """Queue a run for every account in one transaction; say per account what became of it."""
        clashing = [f"--{name}" for name, given in (
            ("account", options["account"]), ("campaign", options["campaigns"]),
            ("retry-failed", options["retry_failed"]), ("wait", options["wait"])) if given]
        if not options["background"] or clashing:
            raise ValueError("--all-accounts goes with --async (the task cluster runs the syncs)"
                             + (f" and without {', '.join(clashing)}" if clashing else ""))
        accounts = list(AdAccount.objects.order_by("slug"))
        if not accounts:
            raise ValueError("there is no ad account yet: add one in the admin or set AD_PLATFORM_URL")
        started = sync_runs_start(accounts=accounts, trigger=Trigger.COMMAND, triggered_by="manage.py sync_campaigns",
                                  enqueue=True)
        failed = 0
        for account, run in zip(accounts, started, strict=True):
            if isinstance(run, SyncRun):
                self.stdout.write(f"Run #{run.pk} queued for account {account.slug!r} on the task cluster")
            elif run.failed_run is None:
                self.stdout.write(f"Skipped {account.slug!r}: {run}")
            else:
                failed += 1
                self.stderr.write(str(run))
        if failed:
            raise CommandError(f"{failed} of {len(accounts)} runs could not be queued (see above)",
                               returncode=EXIT_FATAL)

    def _keep_fresh(self, options) -> None:
        """Keep-fresh cycles in this process (syncer/keep_fresh.py); Ctrl-C cancels the cycle running and stops."""
        clashing = [f"--{name}" for name, given in (
            ("async", options["background"]), ("campaign", options["campaigns"]),
            ("retry-failed", options["retry_failed"]), ("wait", options["wait"])) if given]
        seconds = options["for_seconds"]
        if not options["keep_fresh"] or clashing or (seconds is not None and not 0 < seconds < math.inf):
            raise ValueError("--for takes a positive number of seconds and goes with --keep-fresh, which runs here "
                             "for one account" + (f", without {', '.join(clashing)}" if clashing else ""))
        account = account_get(slug=options["account"])
        refusal = account_refusal(account)
        if refusal:
            raise SyncRefused(refusal)
        runs = _keep_fresh_here(account, math.inf if seconds is None else seconds, self.stdout, self.stderr)
        failed = [run for run in runs if run.status != RunStatus.SUCCEEDED]
        fatal = next((run for run in failed if exit_code(run) == EXIT_FATAL), None)
        self.stdout.write(f"Kept {account.slug!r} fresh: {len(runs)} runs, "
                          f"{sum(run.campaigns_synced for run in runs)} syncs, {len(failed)} runs not succeeded")
        if fatal is not None:
            raise CommandError(_failure_line(fatal, EXIT_FATAL), returncode=EXIT_FATAL)
        if failed:
            raise CommandError(f"{len(failed)} keep-fresh runs did not succeed; the dead-letter list has their "
                               "failures", returncode=EXIT_SOME_FAILED)

    def _schedule(self, options) -> None:
        account = account_get(slug=options["account"])
        if options["unschedule"]:
            removed = schedule_clear(account=account)
            self.stdout.write(f"Periodic sync of {account.slug!r} {'removed' if removed else 'was not set'}")
            return
        schedule = schedule_set(account=account, cron=options["schedule"])
        self.stdout.write(f"Periodic sync of {account.slug!r} set to {schedule.cron!r}; next run at "
                          f"{schedule.next_run:%Y-%m-%d %H:%M %Z} (the task cluster must be running)")

    def _follow_queued(self, run: SyncRun) -> SyncRun:
        try:
            return follow(run.pk, self.stdout, is_tty=self.stdout.isatty(), keep_going=lambda: True)
        except KeyboardInterrupt:
            self.stderr.write(f"Stopped following; run #{run.pk} goes on in the cluster")
            raise CommandError("interrupted", returncode=EXIT_SOME_FAILED) from None

    def _execute(self, run: SyncRun, concurrency: int | None) -> SyncRun:
        """Run the sync in a worker thread; this thread shows progress and turns Ctrl-C into a cancel."""
        self.stdout.write(f"Run #{run.pk} started for account {run.account.slug!r}")
        worker = threading.Thread(target=_execute_safely, args=(run.pk, concurrency), daemon=True)
        worker.start()
        try:
            return follow(run.pk, self.stdout, is_tty=self.stdout.isatty(), keep_going=worker.is_alive)
        except KeyboardInterrupt:
            run_cancel(run_id=run.pk, who="Ctrl-C")
            self.stderr.write("Cancelling: waiting for the calls in flight to finish...")
            worker.join()
            return SyncRun.objects.get(pk=run.pk)
        finally:
            worker.join()


def _keep_fresh_here(account: AdAccount, seconds: float, out, err) -> list[SyncRun]:
    """The keep-fresh loop in a worker thread; this one reports each cycle and turns Ctrl-C into a stop."""
    stop, done = threading.Event(), []
    def plan_line(prefix: str) -> int:
        current = account_plan(account, budget=budget_share(account))
        out.write(f"{prefix}: {current.load_text()}" + (f"; {current.shortfall_text()}" if current.shortfall_text()
                                                         else ""))
        return sum(current.counts.values())

    stored = plan_line(f"Keeping {account.slug!r} fresh")

    def report(cycle, run: SyncRun) -> None:
        nonlocal stored
        listing = ", listed first" if run.listing == ListingMode.REFRESH else ""
        out.write(f"Run #{run.pk}{listing}: {run.campaigns_synced} synced, {run.campaigns_failed} failed")
        if not stored and listing:  # the plan above knew no campaign yet
            stored = plan_line("With the campaigns listed")

    def loop() -> None:
        try:
            done.extend(keep_fresh_foreground(account=account, seconds=seconds, stop=stop, on_cycle=report))
        finally:
            connection.close()

    worker = threading.Thread(target=loop, daemon=True)
    worker.start()
    try:
        while worker.is_alive():
            worker.join(0.5)
    except KeyboardInterrupt:
        stop.set()
        for run in SyncRun.objects.filter(account=account, status__in=ACTIVE_RUN_STATUSES):
            run_cancel(run_id=run.pk, who="Ctrl-C")
        err.write("Stopping: waiting for the calls in flight to finish...")
        worker.join()
    return [SyncRun.objects.get(pk=run.pk) for run in done]


def _execute_safely(run_id: int, concurrency: int | None) -> None:
    try:
        run_execute(run_id=run_id, threads=concurrency)
    except Exception as error:  # the run must end even on a bug, so the account can sync again
        run_fail_internal(run_id=run_id, step="running", error=error)
    finally:
        connection.close()


def _run_to_retry(account, run_id: str) -> SyncRun:
    runs = SyncRun.objects.filter(account=account)
    run = runs.first() if run_id == "latest" else runs.filter(pk=int(run_id) if run_id.isdigit() else -1).first()
    if run is None:
        raise SyncRefused(f"no run {run_id!r} for account {account.slug!r} to retry")
    return run


def exit_code(run: SyncRun) -> int:
    if run.status == RunStatus.SUCCEEDED:
        return EXIT_OK
    if run.status == RunStatus.FAILED and run.error_message:
        return EXIT_FATAL
    return EXIT_SOME_FAILED


def _failure_line(run: SyncRun, code: int) -> str:
    if code == EXIT_FATAL:
        return f"run #{run.pk} failed: {run.error_message}"
    if run.campaigns_unlisted and not run.campaigns_failed:
        return f"run #{run.pk} {run.status}: the platform's listing was incomplete (see the warning above)"
    return (f"run #{run.pk} {run.status}: {run.campaigns_failed} of {run.campaigns_listed} campaigns failed; "
            f"retry them with: manage.py sync_campaigns --retry-failed {run.pk}")
