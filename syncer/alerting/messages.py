"""What one delivery says: its alerts, each in the state the delivery reports, as email text or webhook JSON."""
from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings

from campaigns.alert_models import Alert, AlertDelivery, DeliveryKind
from syncer.alerting import texts


@dataclass(frozen=True)
class Message:
    subject: str
    text: str
    items: list[dict]
    kind: str


def message_of(delivery: AlertDelivery, alerts: list[Alert]) -> Message:
    states = [(alert, _state(delivery, alert)) for alert in alerts]
    status_url = settings.ALERTS["STATUS_URL"]
    if delivery.kind == DeliveryKind.DIGEST:
        subject = texts.digest_headline(len(alerts))
        lines = [texts.line_of(alert, state) for alert, state in states]
    else:
        alert, state = states[0]
        subject, lines = texts.headline(alert, state), [texts.line_of(alert, state)]
    return Message(subject=subject, text=texts.with_status_link(lines, status_url),
                   items=[_item(alert, state) for alert, state in states], kind=delivery.kind)


def _state(delivery: AlertDelivery, alert: Alert) -> str:
    if delivery.kind == DeliveryKind.DIGEST:
        return texts.state_of(alert, at=delivery.created_at)
    return "resolved" if delivery.kind == DeliveryKind.RESOLVED else "opened"


def _item(alert: Alert, state: str) -> dict:
    return {
        "account": {"slug": alert.account.slug, "name": alert.account.name},
        "condition": alert.condition,
        "state": state,
        "message": alert.message,
        "opened_at": alert.opened_at.isoformat(),
        "resolved_at": alert.resolved_at.isoformat() if state == "resolved" and alert.resolved_at else None,
        "run_id": alert.run_id,
        "alert_id": alert.pk,
    }


def webhook_payload(message: Message) -> dict:
    """Slack-compatible `text`, and the same facts as fields; a single alert's fields also at the top."""
    payload = {"text": f"{message.subject}\n{message.text}", "kind": message.kind, "alerts": message.items,
               "status_url": settings.ALERTS["STATUS_URL"] or None}
    if message.kind != DeliveryKind.DIGEST:
        payload.update(message.items[0])
    return payload
