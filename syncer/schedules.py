"""A periodic sync per account: one django-q2 cron Schedule, editable in the admin."""
from __future__ import annotations

from datetime import datetime

from croniter import croniter
from django.utils import timezone
from django_q.models import Schedule

from campaigns.models import AdAccount


def schedule_name(account: AdAccount) -> str:
    return f"sync-{account.slug}"


def schedule_set(*, account: AdAccount, cron: str) -> Schedule:
    """Create or update the account's schedule; a bad cron expression raises ValueError."""
    cron = " ".join(cron.split())
    if not croniter.is_valid(cron) or len(cron.split()) != 5:
        raise ValueError(f"{cron!r} is not a cron expression with five fields, like '*/30 * * * *'")
    next_run = croniter(cron, timezone.now()).get_next(datetime)
    schedule, _ = Schedule.objects.update_or_create(
        name=schedule_name(account),
        defaults={"func": "syncer.tasks.scheduled_sync_task", "args": repr((account.pk,)),
                  "schedule_type": Schedule.CRON, "cron": cron, "repeats": -1, "next_run": next_run},
    )
    return schedule


def schedule_clear(*, account: AdAccount) -> bool:
    deleted, _ = Schedule.objects.filter(name=schedule_name(account)).delete()
    return bool(deleted)
