"""Who an alert email goes to: its accounts' own addresses, then ALERT_EMAILS."""
from __future__ import annotations

from collections.abc import Iterable

from django.conf import settings

from campaigns.alert_models import Alert


def email_recipients(alerts: Iterable[Alert]) -> list[str]:
    """Each address once; a digest reaches every address of every account in it."""
    addresses = [address for alert in alerts for address in alert.account.alert_email_list]
    return list(dict.fromkeys([*addresses, *settings.ALERTS["EMAILS"]]))
