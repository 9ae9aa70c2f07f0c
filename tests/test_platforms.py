"""Platform adapters: each dialect syncs from the bundled fake, and pacing follows the budget the platform says.

Real HTTP to the fake platform and the real database, as everywhere; the
configured budgets are time-scaled (2 s windows) so a few windows pass in seconds.
"""
from __future__ import annotations

import pytest

from campaigns.models import ApiClient, AttemptStatus, PlatformKind, RunStatus, SyncAttempt
from syncer.platforms import PLATFORMS, platform_named
from tests.runs import check_invariants, failures, sync

pytestmark = pytest.mark.django_db(transaction=True)


def test_every_platform_an_account_can_name_has_an_adapter_and_no_other():
    assert set(PLATFORMS) == set(PlatformKind.values)
    assert all(platform_named(kind).kind == kind for kind in PLATFORMS)


def test_an_unknown_platform_is_refused_in_one_line_naming_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown platform 'tiktok': expected one of metered, reference"):
        platform_named("tiktok")


def test_a_reference_platform_allowing_less_than_configured_is_learned_from_its_429s(
        fake_platform, make_account, captured_logs):
    """Configured 10/2s, the platform allows 5/2s: the limiter lowers itself a call per throttled window."""
    fake_platform.update(campaigns=40, rate_limit="5/2s")
    account = make_account(rate_limit="10/2s")
    run = sync(account, timeout=120)
    assert run.status == RunStatus.SUCCEEDED, failures(run)
    assert SyncAttempt.objects.filter(run=run, status=AttemptStatus.SUCCEEDED).count() == 40
    learned = ApiClient.objects.get(client_id=account.client_id).learned_calls
    assert 0 < learned < 10, "its 429s lowered the pacing"
    assert f"the platform allows {learned}/2s; configured 10/2s" in run.warnings
    # A lowering per throttled window, each costing the calls that window had in flight beyond the real budget
    # (2 or 3 here), not one 429 after another.
    assert run.rate_limited <= 3 * (10 - learned), run.rate_limited
    check_invariants(run, fake_platform, captured_logs)
