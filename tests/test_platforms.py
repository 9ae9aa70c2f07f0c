"""Platform adapters: each dialect syncs from the bundled fake, and pacing follows the budget the platform says.

Real HTTP to the fake platform and the real database, as everywhere; the
configured budgets are time-scaled (2 s windows) so a few windows pass in seconds.
How the metered adapter reads an error answer is pinned on the adapter itself, on answers built here.
"""
from __future__ import annotations

import json

import pytest
from requests.structures import CaseInsensitiveDict

from campaigns.models import AdAccount, ApiClient, AttemptStatus, Campaign, PlatformKind, RunStatus, SyncAttempt
from syncer.answers import Answer
from syncer.errors import CLIENT_ERROR, SERVER_ERROR
from syncer.fake_platform import FAKE_SECRET, FakePlatform, FakePlatformConfig
from syncer.fake_platform.gate import HTML_PAGE
from syncer.fake_platform.metered import TOKEN_INVALID, MeteredErrors, metered_error
from syncer.platforms import PLATFORMS, platform_named
from syncer.platforms.base import OUTAGE, PERMANENT, TOKEN_REFUSED
from tests.conftest import FAKE_EMAIL, FAKE_PASSWORD
from tests.runs import assert_all_synced, check_invariants, failures, sync

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
    # A lowering per throttled window, each costing at most the calls a window sends beyond the real budget
    # (10 - 5: a window's calls go together, and the ones the platform refuses are sent again in the next),
    # not one 429 after another.
    assert run.rate_limited <= (10 - 5) * (10 - learned), run.rate_limited
    check_invariants(run, fake_platform, captured_logs)


# --- the metered dialect ----------------------------------------------------------------------------

@pytest.fixture
def metered_platform():
    """The bundled fake speaking the metered dialect: cursor pages, usage headers, throttles in the body."""
    platform = FakePlatform(FakePlatformConfig(dialect="metered", campaigns=100, rate_limit=None, sync_latency=0.02,
                                               seed=7, email=FAKE_EMAIL, password=FAKE_PASSWORD))
    platform.start()
    yield platform
    platform.stop()


@pytest.fixture
def metered_account(make_account, metered_platform):
    def make(**options) -> AdAccount:
        return make_account(url=metered_platform.url, platform="metered", **options)
    return make


def test_the_metered_dialect_syncs_every_campaign_with_its_faults_on(metered_platform, metered_account, settings,
                                                                    fast_sync, captured_logs):
    settings.SYNC = {**fast_sync, "MAX_ATTEMPTS": 20, "MAX_WAIT": 30.0}
    metered_platform.update(list_fail_rate=0.2, sync_fail_rate=0.2, hang_rate=0.02, reset_rate=0.02,
                            bad_field_rate=0.1, token_lifetime=2)
    run = sync(metered_account(), timeout=240)
    assert_all_synced(run, metered_platform)
    check_invariants(run, metered_platform, captured_logs)
    campaigns = Campaign.objects.filter(account=run.account)
    assert set(campaigns.values_list("status", flat=True)) <= {"active", "paused", "archived", "deleted", ""}
    assert campaigns.filter(impressions__isnull=True).exists(), "rows without insights are stored without counts"
    assert not SyncAttempt.objects.filter(run=run, warnings__contains="insights").exists(), \
        "absent insights are no data yet, not bad data"
    assert metered_platform.stats["responses"].get(503, 0) > 0, "the faults were on"


def test_the_metered_budget_the_headers_say_is_paced_to_and_given_back_when_they_allow_more(
        metered_platform, metered_account, captured_logs):
    """Configured 10/2s, the platform allows 6/2s: its first answer says so, and the run paces to 6."""
    metered_platform.update(campaigns=40, rate_limit="6/2s")
    account = metered_account(rate_limit="10/2s")
    run = sync(account, timeout=120)
    assert_all_synced(run, metered_platform)
    assert ApiClient.objects.get(client_id=account.client_id).learned_calls == 6
    assert "the platform allows 6/2s; configured 10/2s" in run.warnings
    assert metered_platform.stats["throttled"] <= 3
    assert metered_platform.max_calls_in_window(2.0, account.client_id) <= 6
    check_invariants(run, metered_platform, captured_logs)

    metered_platform.update(rate_limit="10/2s")
    again = sync(account, timeout=120)
    assert again.status == RunStatus.SUCCEEDED, failures(again)
    assert ApiClient.objects.get(client_id=account.client_id).learned_calls == 0, "back to the configured budget"
    assert not [line for line in again.warnings if "the platform allows" in line]


def test_a_metered_throttle_is_waited_out_and_never_recorded_as_a_success(metered_platform, metered_account):
    """No configured budget, so nothing paces: the platform throttles with HTTP 200, and every one is sent again."""
    metered_platform.update(campaigns=20, rate_limit="5/1s")
    run = sync(metered_account(rate_limit="none"), timeout=120)
    assert_all_synced(run, metered_platform)
    assert metered_platform.stats["throttled"] > 0
    assert metered_platform.stats["synced_ids"] == {campaign_id: 1 for campaign_id in metered_platform.campaign_ids()}
    assert run.rate_limited == metered_platform.stats["throttled"], "each throttle counted on the run, none a success"


# --- the metered dialect's errors, read by its adapter ----------------------------------------------
# Unit level: the fake sends no 5xx that is not transient and no 401 with a code other than 190, so those
# answers are built here; the outage and token bodies are the fake's own, so its outages stay outages and
# its token refusals stay refusals.

def metered_answer(status: int, body: bytes | dict) -> Answer:
    raw = json.dumps(body).encode() if isinstance(body, dict) else body
    return Answer(status, CaseInsensitiveDict({"Content-Type": "application/json"}), raw)


def metered_error_body(code: object, *, transient: bool) -> dict:
    return {"error": {"code": code, "message": "Unsupported request", "is_transient": transient}}


@pytest.mark.parametrize("status", [500, 503])
def test_a_metered_5xx_the_platform_calls_not_transient_fails_the_campaign_and_is_no_outage(status):
    verdict = platform_named("metered").classify(metered_answer(status, metered_error_body(1, transient=False)),
                                                 data_call=True)
    assert (verdict.kind, verdict.category) == (PERMANENT, SERVER_ERROR)
    assert verdict.message == f"the platform failed with HTTP {status} (code 1, not transient): not retried"


def test_a_metered_error_code_that_is_text_never_reaches_the_message():
    answer = metered_answer(500, metered_error_body(f"STRIPE_KEY={FAKE_SECRET}", transient=False))
    verdict = platform_named("metered").classify(answer, data_call=True)
    assert verdict.kind == PERMANENT
    assert FAKE_SECRET not in verdict.message and "an error code that is not a number" in verdict.message


@pytest.mark.parametrize("answer", [
    metered_answer(503, MeteredErrors.unavailable("The platform is down for maintenance").body),  # down_mode=503
    metered_answer(503, MeteredErrors.unavailable("The service is overloaded, retry later").body),  # *_fail_rate
    metered_answer(500, MeteredErrors.server_error().body),  # server_error_rate
    metered_answer(502, HTML_PAGE.format(code="502 Bad Gateway").encode()),  # html_error_rate
    metered_answer(504, b""),
    metered_answer(502, {"error": "Bad gateway"}),  # an error that is no object: nothing says it is not transient
], ids=["down", "overloaded", "server-error", "html", "empty", "error-text"])
def test_a_metered_5xx_that_is_transient_or_has_no_error_object_is_an_outage(answer):
    verdict = platform_named("metered").classify(answer, data_call=True)
    assert verdict.kind == OUTAGE
    assert verdict.message == f"the platform failed with HTTP {answer.status}"


@pytest.mark.parametrize("answer", [
    metered_answer(401, metered_error(401, TOKEN_INVALID, "the session has expired", False).body),
    metered_answer(401, b""),  # a proxy's bare 401
    metered_answer(401, b"<html><body>401 Authorization Required</body></html>"),
    metered_answer(401, {"error": {"message": "Unauthorized"}}),
], ids=["code-190", "empty", "html", "no-code"])
def test_a_metered_401_with_code_190_or_no_code_takes_a_new_token(answer):
    assert platform_named("metered").classify(answer, data_call=True).kind == TOKEN_REFUSED


@pytest.mark.parametrize("code", [10, 200])
def test_a_metered_401_with_another_code_refuses_the_call_and_names_the_code(code):
    verdict = platform_named("metered").classify(metered_answer(401, metered_error_body(code, transient=False)),
                                                 data_call=True)
    assert (verdict.kind, verdict.category) == (PERMANENT, CLIENT_ERROR)
    assert verdict.message == f"the platform refused the request with HTTP 401 (code {code})"
