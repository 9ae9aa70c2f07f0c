"""What must hold after any run, whatever fault it met: the fault suite checks it after every scenario.

1. Every campaign listed in the run ends in exactly one terminal attempt state
   (succeeded, failed or cancelled); nothing is left pending or running.
2. No duplicate campaign rows per (account, platform id).
3. The run's counters equal its attempts; once old attempts of it were pruned
   (`attempts_pruned_at`, syncer/retention.py) they keep what the run did and
   are at least its remaining attempts.
4. No secret in the captured log text, nor in any text column of the run, its
   attempts, the account's campaigns or the account itself.
5. The process never logged a traceback.
"""
from __future__ import annotations

import re

from django.db import models
from django.db.models import Count

from campaigns.models import (
    ACTIVE_RUN_STATUSES,
    TERMINAL_ATTEMPT_STATUSES,
    AdAccount,
    AttemptStatus,
    Campaign,
    SyncAttempt,
    SyncRun,
)
from syncer.fake_platform import FAKE_SECRET

# Any token the fake platform issues looks like this, whichever process fetched it.
TOKEN_SHAPE = re.compile(r"tok_[A-Za-z0-9_\-]{16,}")
TEXT_FIELDS = (models.CharField, models.TextField, models.JSONField)


def assert_run_invariants(run: SyncRun, *, secrets: list[str], log_text: str) -> None:
    run = SyncRun.objects.select_related("account").get(pk=run.pk)
    assert run.status not in ACTIVE_RUN_STATUSES, f"run #{run.pk} is still {run.status}"
    _assert_every_attempt_terminal_once(run)
    _assert_no_duplicate_campaigns(run.account)
    _assert_counters_equal_attempts(run)
    _assert_no_secret(run, [*secrets, FAKE_SECRET], log_text)
    assert "Traceback" not in log_text, "a traceback was logged:\n" + _around(log_text, "Traceback")


def _assert_every_attempt_terminal_once(run: SyncRun) -> None:
    attempts = SyncAttempt.objects.filter(run=run)
    unfinished = list(attempts.exclude(status__in=TERMINAL_ATTEMPT_STATUSES).values_list("platform_id", "status")[:10])
    assert not unfinished, f"attempts not in a terminal state: {unfinished}"
    repeated = list(attempts.values("platform_id").annotate(n=Count("id")).filter(n__gt=1)[:10])
    assert not repeated, f"campaigns with more than one attempt in the run: {repeated}"
    foreign = attempts.filter(campaign__isnull=False).exclude(campaign__account_id=run.account_id)
    assert not foreign.exists(), "an attempt points at another account's campaign"
    mismatched = attempts.filter(campaign__isnull=False).exclude(campaign__platform_id=models.F("platform_id"))
    assert not mismatched.exists(), "an attempt's platform id differs from its campaign's"


def _assert_no_duplicate_campaigns(account: AdAccount) -> None:
    repeated = list(Campaign.objects.filter(account=account).values("platform_id")
                    .annotate(n=Count("id")).filter(n__gt=1)[:10])
    assert not repeated, f"duplicate campaign rows: {repeated}"


def _assert_counters_equal_attempts(run: SyncRun) -> None:
    counts = dict(SyncAttempt.objects.filter(run=run).values_list("status").annotate(n=Count("id")))
    actual = {
        "campaigns_listed": sum(counts.values()),
        "campaigns_synced": counts.get(AttemptStatus.SUCCEEDED, 0),
        "campaigns_failed": counts.get(AttemptStatus.FAILED, 0),
    }
    recorded = {name: getattr(run, name) for name in actual}
    if run.attempts_pruned_at is not None:
        assert all(recorded[name] >= actual[name] for name in actual), \
            f"pruned run #{run.pk} counters {recorded} are below its remaining attempts {actual}"
        return
    assert recorded == actual, f"run #{run.pk} counters {recorded} differ from its attempts {actual}"


def _assert_no_secret(run: SyncRun, secrets: list[str], log_text: str) -> None:
    secrets = [secret for secret in secrets if secret]
    places = {"the captured logs": log_text, **_text_columns(run)}
    for where, text in places.items():
        for secret in secrets:
            assert secret not in text, f"a secret ({secret[:3]}...) appears in {where}"
        token = TOKEN_SHAPE.search(text)
        assert token is None, f"an access token ({token.group()[:7]}...) appears in {where}"


def _text_columns(run: SyncRun) -> dict[str, str]:
    """Every text column the run touched, keyed by where it lives."""
    querysets = {
        "the run": SyncRun.objects.filter(pk=run.pk),
        "the run's attempts": SyncAttempt.objects.filter(run=run),
        "the account's campaigns": Campaign.objects.filter(account_id=run.account_id),
        "the account": AdAccount.objects.filter(pk=run.account_id),
    }
    return {where: _joined_text(queryset) for where, queryset in querysets.items()}


def _joined_text(queryset) -> str:
    names = [field.attname for field in queryset.model._meta.concrete_fields if isinstance(field, TEXT_FIELDS)]
    return "\n".join(str(value) for row in queryset.values_list(*names) for value in row if value is not None)


def _around(text: str, needle: str, width: int = 800) -> str:
    at = text.find(needle)
    return text[max(0, at - 200): at + width]
