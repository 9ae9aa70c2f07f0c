"""Encryption at rest for account passwords, keyed from SECRET_KEY and its fallbacks.

The web process and the task cluster must share SECRET_KEY to read them. A
password is always encrypted under the current SECRET_KEY and read under it or
any key in SECRET_KEY_FALLBACKS, so rotating the key loses nothing:
`manage.py rotate_passwords` re-encrypts every password under the current key,
after which the old one can leave the fallbacks.
"""
from __future__ import annotations

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.views.decorators.debug import sensitive_variables

UNREADABLE = ("an account password cannot be decrypted: SECRET_KEY changed since it was saved and no key in "
              "SECRET_KEY_FALLBACKS reads it; put the old key there or enter the password again in the admin")


def _fernet(secret_key: str) -> Fernet:
    digest = hashlib.sha256(b"campaign-sync/account-password/" + secret_key.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def _keys() -> MultiFernet:
    """The current key first (MultiFernet encrypts with it), then every fallback."""
    return MultiFernet([_fernet(key) for key in (settings.SECRET_KEY, *settings.SECRET_KEY_FALLBACKS)])


@sensitive_variables("plain")
def encrypt(plain: str) -> str:
    return _keys().encrypt(plain.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return _keys().decrypt(token.encode()).decode()
    except InvalidToken:
        raise ImproperlyConfigured(UNREADABLE) from None


def is_under_current_key(token: str) -> bool:
    try:
        _fernet(settings.SECRET_KEY).decrypt(token.encode())
    except InvalidToken:
        return False
    return True


def reencrypt(token: str) -> str:
    """The same password encrypted under the current key; raises the one-line error when no key reads it."""
    try:
        return _keys().rotate(token.encode()).decode()
    except InvalidToken:
        raise ImproperlyConfigured(UNREADABLE) from None
