"""Open an alert when a condition starts, resolve it when it ends, and queue the messages saying so.

One alert per account and condition while it lasts (the database's partial
unique index decides between two evaluators), one "resolved" when it clears.
When more than ALERT_DIGEST_AFTER messages would go on one channel within a
minute, this evaluation's transitions go as one digest instead.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from campaigns.alert_models import Alert, AlertDelivery, DeliveryChannel, DeliveryKind
from syncer.alerting.conditions import Firing, conditions_now
from syncer.alerting.recipients import email_recipients

log = logging.getLogger(__name__)

DIGEST_WINDOW = timedelta(minutes=1)


@dataclass
class Evaluation:
    opened: list[Alert] = field(default_factory=list)
    resolved: list[Alert] = field(default_factory=list)
    deliveries: list[AlertDelivery] = field(default_factory=list)


def alerts_evaluate(*, now: datetime | None = None) -> Evaluation:
    """Compare the conditions that hold now with the open alerts; open, resolve and queue in one transaction."""
    now = now or timezone.now()
    firing = {(item.account_id, item.condition): item for item in conditions_now(now=now)}
    with transaction.atomic():
        still_open = {(alert.account_id, alert.condition): alert
                      for alert in Alert.objects.filter(resolved_at__isnull=True).select_related("account")}
        evaluation = Evaluation()
        evaluation.opened = [alert for key, item in firing.items() if key not in still_open
                             if (alert := _open(item, now))]
        evaluation.resolved = [alert for key, alert in still_open.items() if key not in firing
                               if _resolve(alert, now)]
        evaluation.deliveries = _queue(evaluation.opened, evaluation.resolved, now)
    _log_transitions(evaluation)
    return evaluation


def _log_transitions(evaluation: Evaluation) -> None:
    """A line per transition, or one line in all when there are more than a digest's worth."""
    if len(evaluation.opened) + len(evaluation.resolved) > settings.ALERTS["DIGEST_AFTER"]:
        log.warning("%s alerts opened, %s resolved (see the admin's alerts)", len(evaluation.opened),
                    len(evaluation.resolved))
        return
    for alert in evaluation.opened:
        log.warning("alert opened: %s", alert.message)
    for alert in evaluation.resolved:
        log.info("alert resolved: %s", alert.message)


def _open(item: Firing, now: datetime) -> Alert | None:
    try:
        with transaction.atomic():
            return Alert.objects.create(account_id=item.account_id, condition=item.condition, opened_at=now,
                                        message=item.message, run_id=item.run_id)
    except IntegrityError:
        return None  # another evaluator opened it first: it sends the message


def _resolve(alert: Alert, now: datetime) -> bool:
    won = Alert.objects.filter(pk=alert.pk, resolved_at__isnull=True).update(resolved_at=now)
    alert.resolved_at = now
    return bool(won)


def _channels() -> list[str]:
    alerts = settings.ALERTS
    return [channel for channel, on in ((DeliveryChannel.EMAIL, alerts["EMAIL"]),
                                        (DeliveryChannel.WEBHOOK, bool(alerts["WEBHOOK_URL"]))) if on]


def _queue(opened: list[Alert], resolved: list[Alert], now: datetime) -> list[AlertDelivery]:
    transitions = [(DeliveryKind.OPENED, alert) for alert in opened] + [(DeliveryKind.RESOLVED, alert)
                                                                         for alert in resolved]
    if not transitions:
        return []
    queued = []
    for channel in _channels():
        reaching = [(kind, alert) for kind, alert in transitions
                    if channel != DeliveryChannel.EMAIL or email_recipients([alert])]
        if not reaching:
            continue
        recent = AlertDelivery.objects.filter(channel=channel, created_at__gte=now - DIGEST_WINDOW).count()
        if len(reaching) + recent > settings.ALERTS["DIGEST_AFTER"]:
            queued.append(_delivery(channel, DeliveryKind.DIGEST, [alert for _, alert in reaching], now))
        else:
            queued += [_delivery(channel, kind, [alert], now) for kind, alert in reaching]
    return queued


def _delivery(channel: str, kind: str, alerts: list[Alert], now: datetime) -> AlertDelivery:
    delivery = AlertDelivery.objects.create(channel=channel, kind=kind, created_at=now)
    delivery.alerts.set(alerts)
    return delivery
