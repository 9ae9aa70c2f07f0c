"""Send the queued deliveries: each claimed by one sender, tried a few times with capped backoff, every try recorded.

A failure is one line on the delivery and in the log; nothing here raises
into its caller, so a dead receiver or mail server stops only its messages.
"""
from __future__ import annotations

import logging
import random
import time
from datetime import timedelta
from urllib.parse import urlsplit

from django.conf import settings
from django.db.models import F, Q
from django.utils import timezone

from campaigns.alert_models import AlertDelivery, DeliveryChannel, DeliveryStatus
from syncer.alerting.channels import SendFailed, email_send, webhook_send
from syncer.alerting.messages import message_of
from syncer.alerting.recipients import email_recipients
from syncer.logs import forget_secret, register_secret

log = logging.getLogger(__name__)

TOKEN_LIKE = 16  # a webhook URL path this long is taken for a token (chat webhooks carry one), and masked
CLAIM_LAPSES = timedelta(minutes=10)  # a sender that died mid-delivery leaves it to the next one after this


def deliveries_send_pending(*, sleep=time.sleep) -> int:
    """Send every pending delivery this process can claim; how many were sent."""
    pending = AlertDelivery.objects.filter(status=DeliveryStatus.PENDING).order_by("id").values_list("pk", flat=True)
    return sum(delivery_send(delivery_id=pk, sleep=sleep) for pk in list(pending))


def delivery_send(*, delivery_id: int, sleep=time.sleep) -> bool:
    if not _claim(delivery_id):
        return False  # another sender has it
    delivery = AlertDelivery.objects.get(pk=delivery_id)
    alerts = list(delivery.alerts.select_related("account").order_by("id"))
    message = message_of(delivery, alerts)
    if delivery.channel == DeliveryChannel.EMAIL:
        recipients = email_recipients(alerts)
        send = lambda: email_send(message, recipients)  # noqa: E731
    else:
        send = lambda: webhook_send(message)  # noqa: E731
    with _secrets_hidden():
        return _with_tries(delivery, send, sleep)


def _claim(delivery_id: int) -> bool:
    now = timezone.now()
    free = Q(claimed_at__isnull=True) | Q(claimed_at__lt=now - CLAIM_LAPSES)
    return AlertDelivery.objects.filter(free, pk=delivery_id, status=DeliveryStatus.PENDING).update(
        claimed_at=now) == 1


def _with_tries(delivery: AlertDelivery, send, sleep) -> bool:
    alerts = settings.ALERTS
    for attempt in range(1, alerts["TRIES"] + 1):
        try:
            send()
        except SendFailed as failed:
            line = f"try {attempt}: {failed.line}"
            last = failed.permanent or attempt == alerts["TRIES"]
            _record(delivery, status=DeliveryStatus.FAILED if last else DeliveryStatus.PENDING, error=line)
            log.warning("alert delivery #%s by %s: %s", delivery.pk, delivery.channel, line)
            if last:
                return False
            sleep(random.uniform(0.5, 1) * min(alerts["BACKOFF_CAP"], alerts["BACKOFF_BASE"] * 2 ** (attempt - 1)))
        else:
            _record(delivery, status=DeliveryStatus.SENT, error="")
            log.info("alert delivery #%s sent by %s (try %s)", delivery.pk, delivery.channel, attempt)
            return True
    return False


def _record(delivery: AlertDelivery, *, status: str, error: str) -> None:
    done = status != DeliveryStatus.PENDING
    AlertDelivery.objects.filter(pk=delivery.pk).update(
        tries=F("tries") + 1, status=status, last_error=error[:300], finished_at=timezone.now() if done else None)


class _secrets_hidden:
    """While sending, the log's redaction also masks the SMTP password, the webhook secret and URL path."""

    def __enter__(self):
        url = urlsplit(settings.ALERTS["WEBHOOK_URL"])
        path = url.path.strip("/") + (f"?{url.query}" if url.query else "")
        self.values = [getattr(settings, "EMAIL_HOST_PASSWORD", ""), settings.ALERTS["WEBHOOK_SECRET"],
                       path if len(path) >= TOKEN_LIKE else ""]
        for value in self.values:
            register_secret(value)

    def __exit__(self, *exc) -> None:
        for value in self.values:
            forget_secret(value)
