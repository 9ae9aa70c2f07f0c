"""Encryption at rest for account passwords, keyed from SECRET_KEY.

The web process and the task cluster must share SECRET_KEY to read them;
rotating SECRET_KEY means entering the account passwords again.
"""
from __future__ import annotations

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


def _fernet() -> Fernet:
    digest = hashlib.sha256(b"campaign-sync/account-password/" + settings.SECRET_KEY.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def encrypt(plain: str) -> str:
    return _fernet().encrypt(plain.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken as error:
        raise ImproperlyConfigured(
            "an account password cannot be decrypted: SECRET_KEY changed since it was saved; "
            "enter it again in the admin"
        ) from error
