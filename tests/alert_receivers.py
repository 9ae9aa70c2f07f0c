"""Real receivers for alerts: an SMTP server (aiosmtpd) with a login, and an HTTP server that checks signatures."""
from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
import warnings
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

SMTP_USER = "alerts@mail.test"
SMTP_PASSWORD = "Smtp-PW-9f3k-SECRET"
WEBHOOK_SECRET = "whsec-7Hq2-SECRET-signing"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Mail:
    sender: str
    recipients: list[str]
    text: str


class SmtpServer:
    """Accepts mail only after a login with SMTP_USER / SMTP_PASSWORD (over plain SMTP: it is a test)."""

    def __init__(self) -> None:
        self.mails: list[Mail] = []
        self.logins: list[tuple[str, str]] = []
        self.port = free_port()
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port, auth_required=True,
                                     auth_require_tls=False, authenticator=self._authenticate)

    @property
    def url(self) -> str:
        return f"smtp://{SMTP_USER.replace('@', '%40')}:{SMTP_PASSWORD}@127.0.0.1:{self.port}"

    def _authenticate(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        login, password = auth_data.login.decode(), auth_data.password.decode()
        self.logins.append((login, password))
        return AuthResult(success=(login, password) == (SMTP_USER, SMTP_PASSWORD))

    async def handle_DATA(self, server, session, envelope) -> str:
        text = envelope.content.decode("utf-8", "replace")
        self.mails.append(Mail(envelope.mail_from, list(envelope.rcpt_tos), text))
        return "250 OK"

    def start(self) -> SmtpServer:
        with warnings.catch_warnings():  # plain-text AUTH: this server only ever listens on 127.0.0.1
            warnings.filterwarnings("ignore", "Requiring AUTH while not requiring TLS")
            self.controller.start()
        return self

    def stop(self) -> None:
        if self.controller.loop.is_running():
            self.controller.stop()


@dataclass
class Post:
    body: bytes
    signature: str
    signed_right: bool

    @property
    def json(self) -> dict:
        return json.loads(self.body)


@dataclass
class WebhookReceiver:
    """Records every POST and whether its X-Signature-256 is the body's HMAC; answers from `statuses`, then 200."""

    secret: str = WEBHOOK_SECRET
    statuses: list[int] = field(default_factory=list)
    posts: list[Post] = field(default_factory=list)

    def start(self) -> WebhookReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                signature = self.headers.get("X-Signature-256", "")
                expected = "sha256=" + hmac.new(receiver.secret.encode(), body, hashlib.sha256).hexdigest()
                receiver.posts.append(Post(body, signature, hmac.compare_digest(signature, expected)))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/T0123/B0456/xoxb-route-token"

    def stop(self) -> None:
        if self.server.socket.fileno() != -1:  # once only: shutdown() waits forever on a stopped server
            self.server.shutdown()
            self.server.server_close()
