"""Fixtures for the people's side: the four kinds of visitor, a private cache, cluster heartbeats, run history."""
from __future__ import annotations

import os
import random
import uuid
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.utils import timezone

from campaigns.models import (
    AdAccount,
    AttemptStatus,
    Campaign,
    ErrorCategory,
    RunStatus,
    SyncAttempt,
    SyncRun,
    SyncStatus,
    Trigger,
)

ROLES = ("anonymous", "non_staff", "staff", "staff_trigger")
VIEW_PERMISSIONS = ("view_adaccount", "view_campaign", "view_syncrun", "view_syncattempt")


@pytest.fixture
def private_cache(settings):
    """A cache of this test's own, so no real cluster's heartbeat (or its absence) leaks in."""
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache",
                                   "LOCATION": f"test-{uuid.uuid4().hex}"}}
    return settings.CACHES


def write_cluster_heartbeat(*, workers: int = 2, ttl: int = 30) -> None:
    """Store a cluster status the way a running django-q2 sentinel does (`Stat.save`)."""
    from django_q.brokers import get_broker
    from django_q.conf import Conf
    from django_q.signing import SignedPackage
    from django_q.status import Stat, Status

    status = Status(pid=os.getpid(), cluster_id=uuid.uuid4())
    status.workers = list(range(1000, 1000 + workers))
    status.status = Conf.IDLE
    get_broker().set_stat(Stat.get_key(status.cluster_id), SignedPackage.dumps(status, True), ttl)


@pytest.fixture
def cluster_heartbeat(private_cache):
    write_cluster_heartbeat()


@pytest.fixture
def make_user(django_user_model):
    def make(role: str):
        """A user of one of ROLES (None for anonymous); staff can view every sync model."""
        if role == "anonymous":
            return None
        # No password: tests log in with force_login, and hashing one costs a quarter of a second.
        user = django_user_model.objects.create_user(username=role, is_staff=role != "non_staff")
        names = VIEW_PERMISSIONS + (("trigger_sync",) if role == "staff_trigger" else ())
        if user.is_staff:
            user.user_permissions.set(Permission.objects.filter(content_type__app_label="campaigns",
                                                                codename__in=names))
        return user

    return make


@pytest.fixture
def client_as(make_user):
    def make(role: str, *, enforce_csrf_checks: bool = False) -> Client:
        client = Client(enforce_csrf_checks=enforce_csrf_checks)
        user = make_user(role)
        if user is not None:
            client.force_login(user)
        return client

    return make


def make_offline_account(slug: str = "offline", rate_limit: str = "10/60s") -> AdAccount:
    """An account that is never called: for pages and history that need no platform."""
    account = AdAccount(name=slug.title(), slug=slug, base_url="http://127.0.0.1:9", email="x@example.test",
                        client_id=f"client-{slug}", rate_limit=rate_limit)
    account.set_password("unused")
    account.save()
    return account


def make_campaigns(account: AdAccount, count: int, *, failed: int = 0, name: str = "Campaign {i}",
                   start: int = 1) -> list[Campaign]:
    """`count` campaigns numbered from `start`; the first `failed` of them failed their last sync."""
    now = timezone.now()
    return Campaign.objects.bulk_create([
        Campaign(account=account, platform_id=f"campaign_{i}", name=name.format(i=i), status="active",
                 last_synced_at=now, last_sync_status=SyncStatus.FAILED if i < start + failed else SyncStatus.SUCCEEDED)
        for i in range(start, start + count)
    ])


def make_finished_run(account: AdAccount, campaigns: list[Campaign], *, failed: int = 0,
                      status: str | None = None, ago_minutes: float = 1) -> SyncRun:
    """A run that ended, with one attempt per campaign: the first `failed` of them failed."""
    finished = timezone.now() - timedelta(minutes=ago_minutes)
    run = SyncRun.objects.create(
        account=account, trigger=Trigger.COMMAND, triggered_by="test",
        status=status or (RunStatus.PARTIAL if failed else RunStatus.SUCCEEDED),
        started_at=finished - timedelta(seconds=30), prepared_at=finished - timedelta(seconds=28),
        finished_at=finished, campaigns_listed=len(campaigns), campaigns_synced=len(campaigns) - failed,
        campaigns_failed=failed, requests=len(campaigns) + 2, retries=failed, rate_limited=1, server_errors=failed,
    )
    rng = random.Random(run.pk)
    SyncAttempt.objects.bulk_create([
        SyncAttempt(run=run, campaign=campaign, platform_id=campaign.platform_id,
                    status=AttemptStatus.FAILED if index < failed else AttemptStatus.SUCCEEDED,
                    error_category=ErrorCategory.SERVER_ERROR if index < failed else "",
                    message="the platform answered 503 five times" if index < failed else "",
                    http_status=503 if index < failed else 200, tries=1, latency_ms=rng.randint(50, 500),
                    started_at=finished, finished_at=finished)
        for index, campaign in enumerate(campaigns)
    ])
    return run


def make_active_run(account: AdAccount, campaigns: list[Campaign], *, done: int = 0) -> SyncRun:
    """A running run, prepared, with `done` of its campaigns synced and the rest pending."""
    now = timezone.now()
    run = SyncRun.objects.create(
        account=account, trigger=Trigger.SCHEDULE, triggered_by="", status=RunStatus.RUNNING,
        started_at=now - timedelta(seconds=20), prepared_at=now - timedelta(seconds=10),
        campaigns_listed=len(campaigns), campaigns_synced=done,
    )
    SyncAttempt.objects.bulk_create([
        SyncAttempt(run=run, campaign=campaign, platform_id=campaign.platform_id,
                    status=AttemptStatus.SUCCEEDED if index < done else AttemptStatus.PENDING,
                    latency_ms=100 if index < done else None)
        for index, campaign in enumerate(campaigns)
    ])
    return run
