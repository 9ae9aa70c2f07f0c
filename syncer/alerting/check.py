"""The minute's alert check: evaluate the conditions, then send what that queued (and anything left pending)."""
from __future__ import annotations

import time
from datetime import datetime

from syncer.alerting.deliveries import deliveries_send_pending
from syncer.alerting.evaluate import Evaluation, alerts_evaluate


def alerts_check(*, now: datetime | None = None, sleep=time.sleep) -> Evaluation:
    evaluation = alerts_evaluate(now=now)
    deliveries_send_pending(sleep=sleep)
    return evaluation
