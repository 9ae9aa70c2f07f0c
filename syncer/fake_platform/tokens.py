"""The fake platform's token store, shared by both dialects: Basic login, issuing, the bearer check, revoking.

A mixin of ``FakePlatform`` (``server.py``); ``self._tokens`` maps a token to (login, monotonic expiry).
"""

from __future__ import annotations

import base64
import binascii
import secrets
import time


class Tokens:
    def _basic_login(self, request):
        """The login the request's ``Authorization: Basic`` credentials prove, or None."""
        cfg = self._cfg
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "basic" or not value.strip():
            return None
        try:
            login, sep, password = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")
        except (binascii.Error, ValueError):
            return None
        ok_login = secrets.compare_digest(login.encode(), cfg.email.encode())
        if not (sep and ok_login and secrets.compare_digest(password.encode(), cfg.password.encode())):
            return None
        return login

    def _issue_token(self, login, prefix):
        """A new token for ``login``; ``revoke_on_issue`` ends the login's older ones."""
        cfg = self._cfg
        token, now = prefix + secrets.token_urlsafe(24), time.monotonic()
        with self._lock:
            if cfg.revoke_on_issue or len(self._tokens) > 10_000:
                for old, (owner, expiry) in list(self._tokens.items()):
                    if expiry <= now or (cfg.revoke_on_issue and owner == login):
                        del self._tokens[old]
                        self._tokens_revoked += expiry > now
            self._tokens[token] = (login, now + cfg.token_lifetime)
            self._issued.append(token)
            self._tokens_issued += 1
        return token

    def _bearer_check(self, request, cfg):
        """``"missing"``, ``"refused"`` (unknown, expired, revoked or ``refuse_tokens``) or ``"ok"``.

        An accepted call counts towards ``token_revoke_every`` / ``revoke_all_every``, which end tokens
        after this call is answered.
        """
        auth = request.headers.get("Authorization", "")
        token = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
        now = time.monotonic()
        with self._lock:
            entry = self._tokens.get(token)
            valid = entry is not None and entry[1] > now
            if entry is not None and not valid:
                del self._tokens[token]
            valid = valid and not cfg.refuse_tokens
            if valid:
                self._authed_calls += 1
                if cfg.revoke_all_every and self._authed_calls % cfg.revoke_all_every == 0:
                    self._tokens_revoked += len(self._tokens)
                    self._tokens.clear()
                elif cfg.token_revoke_every and self._authed_calls % cfg.token_revoke_every == 0:
                    del self._tokens[token]
                    self._tokens_revoked += 1
        if not token:
            return "missing"
        return "ok" if valid else "refused"

    @staticmethod
    def _lifetime_seconds(cfg):
        """``token_lifetime`` as the token answers' ``expires_in``: an int when it is whole."""
        lifetime = cfg.token_lifetime
        return int(lifetime) if float(lifetime).is_integer() else lifetime
