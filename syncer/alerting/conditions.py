"""Which alert conditions hold now, per account, read from the runs in a few queries (no query per account).

- run_failed: the latest decided run (succeeded, partial or failed; a cancel
  decides nothing) failed or ended partial;
- credentials_refused: instead, when that failure was the platform refusing
  the account's login, until a later run gets past authentication;
- stale: no successful run for longer than the account's limit (a never
  synced account counts from its creation);
- platform_unavailable: its active run has found the platform unavailable
  for longer than the account's limit.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Exists, F, OuterRef, Subquery

from campaigns.alert_models import AlertCondition
from campaigns.models import ACTIVE_RUN_STATUSES, AdAccount, ErrorCategory, RunStatus, SyncAttempt, SyncRun
from syncer.alerting import texts

DECIDED_RUN_STATUSES = (RunStatus.SUCCEEDED, RunStatus.PARTIAL, RunStatus.FAILED)
# How the engine words a refused login on the run (the adapters' `credentials_refused`, and two fresh tokens
# refused): a listing that fails has no attempt to carry the `auth` category, only the run's error text.
CREDENTIALS_WORD = "credentials"
LATEST_ENDED = F("finished_at").desc(nulls_last=True)  # PostgreSQL sorts NULLs first in a descending order


@dataclass(frozen=True)
class Firing:
    """A condition that holds for an account now, with the run it comes from and our one-line message."""

    account_id: int
    condition: str
    message: str
    run_id: int | None = None


def conditions_now(*, now: datetime) -> list[Firing]:
    accounts = list(_accounts_with_their_runs())
    decided = _decided_runs([account.decided_run_id for account in accounts if account.decided_run_id])
    firing = []
    for account in accounts:
        firing += _run_conditions(account, decided.get(account.decided_run_id))
        firing += _stale(account, now)
        firing += _unavailable(account, now)
    return firing


def _accounts_with_their_runs():
    runs = SyncRun.objects.filter(account=OuterRef("pk"))
    active = runs.filter(status__in=ACTIVE_RUN_STATUSES)
    return AdAccount.objects.annotate(
        decided_run_id=Subquery(runs.filter(status__in=DECIDED_RUN_STATUSES)
                                .order_by(LATEST_ENDED, "-id").values("pk")[:1]),
        last_success_at=Subquery(runs.filter(status=RunStatus.SUCCEEDED)
                                 .order_by(LATEST_ENDED).values("finished_at")[:1]),
        active_run_id=Subquery(active.values("pk")[:1]),
        unavailable_since=Subquery(active.values("platform_unavailable_since")[:1]),
    ).only("pk", "name", "created_at", "stale_after_minutes", "outage_alert_after_minutes")


def _decided_runs(run_ids: list[int]) -> dict[int, SyncRun]:
    auth_attempts = SyncAttempt.objects.filter(run=OuterRef("pk"), error_category=ErrorCategory.AUTH)
    authenticated_later = SyncRun.objects.filter(account=OuterRef("account"), created_at__gt=OuterRef("created_at"),
                                                 prepared_at__isnull=False)
    runs = SyncRun.objects.filter(pk__in=run_ids, status__in=(RunStatus.PARTIAL, RunStatus.FAILED)).annotate(
        refused=Exists(auth_attempts), authenticated_later=Exists(authenticated_later),
    ).only("pk", "account_id", "status", "error_message", "campaigns_listed", "campaigns_synced",
           "campaigns_failed", "created_at")
    return {run.pk: run for run in runs}


def _run_conditions(account: AdAccount, run: SyncRun | None) -> list[Firing]:
    if run is None:
        return []  # its latest decided run succeeded, or it has none
    if _credentials_refused(run):
        if run.authenticated_later:
            return []
        return [Firing(account.pk, AlertCondition.CREDENTIALS_REFUSED, texts.credentials_refused(account, run), run.pk)]
    return [Firing(account.pk, AlertCondition.RUN_FAILED, texts.run_failed(account, run), run.pk)]


def _credentials_refused(run: SyncRun) -> bool:
    return run.status == RunStatus.FAILED and (run.refused or CREDENTIALS_WORD in run.error_message)


def _stale(account: AdAccount, now: datetime) -> list[Firing]:
    since = account.last_success_at or account.created_at
    if now - since <= timedelta(minutes=account.stale_after_minutes):
        return []
    return [Firing(account.pk, AlertCondition.STALE, texts.stale(account, since=since, now=now))]


def _unavailable(account: AdAccount, now: datetime) -> list[Firing]:
    since = account.unavailable_since
    if since is None or now - since <= timedelta(minutes=account.outage_alert_after_minutes):
        return []
    return [Firing(account.pk, AlertCondition.PLATFORM_UNAVAILABLE,
                   texts.platform_unavailable(account, since=since, now=now, run_id=account.active_run_id),
                   account.active_run_id)]



