"""Schedules: a periodic sync per account (a django-q2 cron Schedule, set from the admin or the command),
and the daily history prune that every installation gets.

People set it here, never in django-q2's own Schedule admin: there `func` may
name any importable function, run on the workers, so only superusers edit that.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from croniter import croniter
from django.utils import timezone
from django_q.models import Schedule

from campaigns.models import AdAccount

SCHEDULED_SYNC_TASK = "syncer.tasks.scheduled_sync_task"
PRUNE_HISTORY_TASK = "syncer.tasks.prune_history_task"


def schedule_name(account: AdAccount) -> str:
    return f"sync-{account.slug}"


def _schedules_of(account: AdAccount):
    # Found by what it runs, not by its name: an account whose slug changes keeps its schedule.
    return Schedule.objects.filter(func=SCHEDULED_SYNC_TASK, args=repr((account.pk,)))


def _schedule_of(account: AdAccount) -> Schedule | None:
    return _schedules_of(account).order_by("id").first()


def cron_checked(cron: str) -> str:
    """The expression with its spaces tidied; one that is not five cron fields raises ValueError saying so."""
    cron = " ".join(cron.split())
    if not croniter.is_valid(cron) or len(cron.split()) != 5:
        raise ValueError(f"{cron!r} is not a cron expression with five fields, like '*/30 * * * *'")
    return cron


def schedule_cron(*, account: AdAccount) -> str:
    """The account's cron expression, or "" when it has no periodic sync."""
    schedule = _schedule_of(account)
    return (schedule.cron or "") if schedule else ""


def schedule_set(*, account: AdAccount, cron: str) -> Schedule:
    """Create or update the account's schedule; a bad cron expression raises ValueError."""
    cron = cron_checked(cron)
    fields = {"name": schedule_name(account), "func": SCHEDULED_SYNC_TASK, "args": repr((account.pk,)),
              "schedule_type": Schedule.CRON, "cron": cron, "repeats": -1,
              "next_run": croniter(cron, timezone.now()).get_next(datetime)}
    schedule = _schedule_of(account) or Schedule()
    for name, value in fields.items():
        setattr(schedule, name, value)
    schedule.save()
    return schedule


def schedule_clear(*, account: AdAccount) -> bool:
    deleted, _ = _schedules_of(account).delete()
    return bool(deleted)


def prune_schedule_ensure(**_signal_arguments) -> Schedule:
    """The daily prune's schedule, made after `migrate` when missing (found by what it runs: a rename keeps it).

    Its first run is a day after it is made, so a fresh install prunes nothing in its first hours; a
    superuser may move it in django-q2's Schedule admin, and it stays where they put it.
    """
    schedule = Schedule.objects.filter(func=PRUNE_HISTORY_TASK).order_by("id").first()
    if schedule is None:
        schedule = Schedule.objects.create(name="prune-history", func=PRUNE_HISTORY_TASK, schedule_type=Schedule.DAILY,
                                           repeats=-1, next_run=timezone.now() + timedelta(days=1))
    return schedule


ALERTS_CHECK_TASK = "syncer.tasks.alerts_check_task"
ALERTS_SCHEDULE_NAME = "alerts-check"


def alerts_schedule_ensure() -> Schedule:
    """The every-minute alert check, created once (after each migrate); an operator's changes to it are kept."""
    schedule, _ = Schedule.objects.get_or_create(
        name=ALERTS_SCHEDULE_NAME,
        defaults={"func": ALERTS_CHECK_TASK, "schedule_type": Schedule.MINUTES, "minutes": 1, "repeats": -1,
                  "next_run": timezone.now()})
    return schedule


KEEP_FRESH_TASK = "syncer.tasks.keep_fresh_tick_task"
KEEP_FRESH_SCHEDULE_NAME = "keep-fresh"


def keep_fresh_schedule_ensure() -> Schedule:
    """The every-minute keep-fresh tick, created once (after each migrate): it starts the next run of every
    keep-fresh account that has none (a run's end starts the next one at once; the tick catches the rest)."""
    schedule, _ = Schedule.objects.get_or_create(
        name=KEEP_FRESH_SCHEDULE_NAME,
        defaults={"func": KEEP_FRESH_TASK, "schedule_type": Schedule.MINUTES, "minutes": 1, "repeats": -1,
                  "next_run": timezone.now()})
    return schedule
