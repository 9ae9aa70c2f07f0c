"""What the test process has put on the task queue, whichever broker is configured."""
from __future__ import annotations

from django_q.brokers import get_broker
from django_q.conf import Conf
from django_q.models import OrmQ
from django_q.signing import SignedPackage


def queued_tasks() -> list[dict]:
    """The tasks waiting on this test's queue, oldest first, as django-q2 packs them (func, args, ...)."""
    if Conf.ORM:
        payloads = OrmQ.objects.filter(key=Conf.CLUSTER_NAME).order_by("id").values_list("payload", flat=True)
    else:
        broker = get_broker()
        payloads = broker.connection.lrange(broker.list_key, 0, -1)
    return [SignedPackage.loads(payload) for payload in payloads]


def set_schedules():
    """The schedules people and commands set: every one but those `migrate` makes (the alert check, the keep-fresh
    tick, the daily prune)."""
    from django_q.models import Schedule

    from syncer.schedules import ALERTS_SCHEDULE_NAME, KEEP_FRESH_SCHEDULE_NAME, PRUNE_HISTORY_TASK

    return (Schedule.objects.exclude(name__in=(ALERTS_SCHEDULE_NAME, KEEP_FRESH_SCHEDULE_NAME))
            .exclude(func=PRUNE_HISTORY_TASK))
