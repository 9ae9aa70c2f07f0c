"""The two ways an alert leaves: an email through Django's backend, a signed JSON POST through requests.

Each send raises SendFailed with one line of our own (an HTTP status, an
error's type), never a server's answer, a URL or a password.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import smtplib

import requests
from django.conf import settings
from django.core.mail import EmailMessage

from syncer.alerting.messages import Message, webhook_payload

SUBJECT_PREFIX = "[campaign-sync] "


class SendFailed(Exception):
    def __init__(self, line: str, *, permanent: bool = False) -> None:
        super().__init__(line)
        self.line = line
        self.permanent = permanent  # trying again cannot help (e.g. the receiver says 404)


def email_send(message: Message, recipients: list[str]) -> None:
    email = EmailMessage(subject=SUBJECT_PREFIX + message.subject, body=message.text,
                         from_email=settings.DEFAULT_FROM_EMAIL, to=recipients)
    try:
        email.send(fail_silently=False)
    except smtplib.SMTPAuthenticationError as error:
        raise SendFailed(f"the mail server refused EMAIL_URL's login (SMTP {error.smtp_code})",
                         permanent=True) from None
    except smtplib.SMTPResponseException as error:
        raise SendFailed(f"the mail server answered SMTP {error.smtp_code}") from None
    except (smtplib.SMTPException, OSError) as error:
        raise SendFailed(f"could not reach the mail server ({type(error).__name__})") from None


def signature_of(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def webhook_body(message: Message) -> bytes:
    return json.dumps(webhook_payload(message), ensure_ascii=False, separators=(",", ":")).encode()


def webhook_send(message: Message) -> None:
    alerts = settings.ALERTS
    body = webhook_body(message)
    headers = {"Content-Type": "application/json", "User-Agent": "campaign-sync-alerts",
               "X-Signature-256": signature_of(body, alerts["WEBHOOK_SECRET"])}
    timeout = alerts["WEBHOOK_TIMEOUT"]
    try:
        answer = requests.post(alerts["WEBHOOK_URL"], data=body, headers=headers, timeout=(timeout, timeout),
                               allow_redirects=False)
    except requests.Timeout:
        raise SendFailed(f"the webhook receiver did not answer within {timeout:g} s") from None
    except requests.RequestException as error:
        raise SendFailed(f"could not reach the webhook receiver ({type(error).__name__})") from None
    answer.close()  # its body is never read: nothing a receiver says reaches our records
    if not 200 <= answer.status_code < 300:
        # A wrong address or a refused signature stays so; a busy or failing receiver may recover.
        permanent = 400 <= answer.status_code < 500 and answer.status_code not in (408, 425, 429)
        raise SendFailed(f"the webhook receiver answered HTTP {answer.status_code}", permanent=permanent)
