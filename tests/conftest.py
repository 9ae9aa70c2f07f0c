"""Shared fixtures: a real fake platform on a free port, accounts pointing at it, fast retry settings."""
from __future__ import annotations

import io
import logging
import uuid

import environ
import pytest

from campaigns.models import AdAccount
from syncer.calls import ClientSettings
from syncer.client import PlatformClient
from syncer.fake_platform import FakePlatform, FakePlatformConfig
from syncer.logs import ContextFilter, RedactFilter, TextFormatter
from tests.alert_receivers import WEBHOOK_SECRET, SmtpServer, WebhookReceiver

FAKE_EMAIL = "demo@adplatform.test"
FAKE_PASSWORD = "demo-password"  # the fake platform's test credentials


@pytest.fixture(autouse=True)
def private_task_queue(monkeypatch) -> str:
    """Each test enqueues on a queue of its own and sees only its own cluster heartbeats.

    (The database is emptied between tests, but Redis keeps queues and heartbeats.)
    """
    from django_q.conf import Conf

    name = f"cs-test-{uuid.uuid4().hex[:8]}"
    monkeypatch.setattr(Conf, "CLUSTER_NAME", name)
    monkeypatch.setattr(Conf, "Q_STAT", f"django_q:{name}:cluster")
    return name


@pytest.fixture(autouse=True)
def fresh_answer_times(monkeypatch) -> None:
    """Each test starts as a fresh process: the answers an earlier test saw do not set this one's margin."""
    from syncer import answer_times
    from syncer.answer_times import AnswerTimes

    monkeypatch.setattr(answer_times, "ANSWER_TIMES", AnswerTimes())


@pytest.fixture
def fake_platform():
    """A fast, well-behaved platform; tests switch faults on with `fake_platform.update(...)`."""
    platform = FakePlatform(FakePlatformConfig(campaigns=100, rate_limit=None, sync_latency=0.02, seed=7,
                                               email=FAKE_EMAIL, password=FAKE_PASSWORD))
    platform.start()
    yield platform
    platform.stop()


@pytest.fixture
def fast_sync(settings):
    """Retry and timeout settings scaled down so faults resolve in seconds."""
    settings.SYNC = {**settings.SYNC, "REQUEST_TIMEOUT": 0.5, "CONNECT_TIMEOUT": 0.5, "MAX_ATTEMPTS": 5,
                     "MAX_WAIT": 10.0, "MAX_OUTAGE": 20.0, "BACKOFF_BASE": 0.05, "BACKOFF_CAP": 0.5,
                     "LEASE_SECONDS": 30.0,
                     "CONCURRENCY": 10, "PAGE_SIZE": 100}
    return settings.SYNC


@pytest.fixture
def make_account(fake_platform, fast_sync):
    def make(*, slug: str = "acme", rate_limit: str = "none", client_id: str | None = None,
             password: str = FAKE_PASSWORD, url: str | None = None, platform: str = "reference") -> AdAccount:
        account = AdAccount(name=slug.title(), slug=slug, base_url=url or fake_platform.url, email=FAKE_EMAIL,
                            client_id=client_id or f"client-{slug}", rate_limit=rate_limit, platform=platform)
        account.set_password(password)
        account.save()
        return account

    return make


@pytest.fixture
def account(make_account) -> AdAccount:
    return make_account()


@pytest.fixture
def qcluster(settings, fast_sync, transactional_db, monkeypatch):
    """Start real `manage.py qcluster` processes on the test database: `qcluster.start()`.

    The test process enqueues on a queue name of its own, so only these clusters take its tasks.
    """
    from django_q.conf import Conf

    from tests.cluster import CLUSTER_ENV, ClusterFactory

    factory = ClusterFactory()
    monkeypatch.setattr(Conf, "CLUSTER_NAME", factory.queue)
    monkeypatch.setattr(Conf, "Q_STAT", f"django_q:{Conf.PREFIX}:cluster")  # where real clusters report
    settings.SYNC = {**settings.SYNC, "LEASE_SECONDS": float(CLUSTER_ENV["SYNC_LEASE_SECONDS"])}
    yield factory
    factory.stop_all()


@pytest.fixture
def make_client(fake_platform):
    """Clients on the fake with fast retries and no rate limiter of their own; closed at teardown."""
    clients = []

    def make(*, on_outage=None, **overrides) -> PlatformClient:
        options = {"base_url": fake_platform.url, "email": FAKE_EMAIL, "password": FAKE_PASSWORD,
                   "client_id": "client-test", "connect_timeout": 0.5, "read_timeout": 0.5, "max_attempts": 5,
                   "max_wait": 10.0, "backoff_base": 0.01, "backoff_cap": 0.1, "pool_size": 4}
        client = PlatformClient(ClientSettings(**{**options, **overrides}), on_outage=on_outage)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def captured_logs():
    """Every line logged at DEBUG, through the project's own filters: what the console would show."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(ContextFilter())
    handler.addFilter(RedactFilter())
    handler.setFormatter(TextFormatter())
    loggers = [logging.getLogger(), logging.getLogger("urllib3"), logging.getLogger("syncer")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.DEBUG)
    loggers[0].addHandler(handler)
    yield stream
    loggers[0].removeHandler(handler)
    for logger, level in zip(loggers, levels, strict=False):
        logger.setLevel(level)


@pytest.fixture
def smtp_server():
    server = SmtpServer().start()
    yield server
    server.stop()


@pytest.fixture
def webhook_receiver():
    receiver = WebhookReceiver().start()
    yield receiver
    receiver.stop()


OPS_EMAIL = "ops@example.com"


@pytest.fixture
def alert_channels(settings, smtp_server, webhook_receiver):
    """Alerts by email (EMAIL_URL at the SMTP server, ALERT_EMAILS=ops@) and by webhook, with fast retries."""
    for name, value in environ.Env.email_url_config(smtp_server.url).items():
        setattr(settings, name, value)
    settings.ALERTS = {**settings.ALERTS, "EMAIL": True, "EMAILS": [OPS_EMAIL], "WEBHOOK_URL": webhook_receiver.url,
                       "WEBHOOK_SECRET": WEBHOOK_SECRET, "WEBHOOK_TIMEOUT": 2.0, "TRIES": 4,
                       "BACKOFF_BASE": 0.01, "BACKOFF_CAP": 0.05, "STATUS_URL": "https://sync.example.com/status/"}
    return smtp_server, webhook_receiver
