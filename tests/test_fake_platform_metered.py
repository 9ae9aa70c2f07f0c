"""The bundled fake platform's metered dialect (PLATFORM_API.md's last part), over real HTTP.

No database: nothing here is marked django_db. Rate windows are either long (30 s: nothing leaves them while
a test runs, so the arithmetic is exact) or short and waited out as the platform tells.
"""
from __future__ import annotations

import base64
import functools
import json
import re
import time

import pytest
import requests

from syncer.fake_platform import FAKE_SECRET, FakePlatformConfig
from syncer.fake_platform.data import base_campaign
from tests.test_fake_platform import make_platform  # noqa: F401 (the fixture make_metered builds on)
from tests.waiting import wait_until

EMAIL, PASSWORD = "demo@adplatform.test", "demo-password"
USAGE_HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset", "X-App-Usage")


@pytest.fixture
def make_metered(request):
    """The reference tests' platform factory (fast defaults, all stopped at teardown), speaking metered."""
    return functools.partial(request.getfixturevalue("make_platform"), dialect="metered")


def token_call(platform, auth=(EMAIL, PASSWORD), grant_type="client_credentials", **kwargs):
    return requests.post(f"{platform.url}/oauth/token", auth=auth, data={"grant_type": grant_type}, timeout=5,
                         **kwargs)


def api(platform, client_id=None):
    response = token_call(platform)
    assert response.status_code == 200, response.text
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {response.json()['access_token']}"
    if client_id:
        session.headers["X-Client-ID"] = client_id
    return session


def list_page(session, platform, limit=None, after=None, **kwargs):
    params = {key: value for key, value in (("limit", limit), ("after", after)) if value is not None}
    kwargs.setdefault("timeout", 5)
    return session.get(f"{platform.url}/v2/campaigns", params=params, **kwargs)


def sync_call(session, platform, campaign_id, **kwargs):
    kwargs.setdefault("timeout", 5)
    return session.post(f"{platform.url}/v2/campaigns/{campaign_id}/sync", **kwargs)


def all_rows(session, platform, limit=7):
    """Every row of one listing, following paging.next until it is absent or null."""
    rows, cursor = [], None
    for _ in range(1000):
        response = list_page(session, platform, limit=limit, after=cursor)
        assert response.status_code == 200, response.text
        body = response.json()
        rows.extend(body["data"])
        cursor = body["paging"].get("next")
        if not cursor:
            return rows
    raise AssertionError("the listing never ended")


def error_of(response):
    return response.json()["error"]


def usage(response):
    headers = response.headers
    return (int(headers["X-RateLimit-Limit"]), int(headers["X-RateLimit-Remaining"]),
            int(headers["X-RateLimit-Reset"]), json.loads(headers["X-App-Usage"])["call_count"])


# ------------------------------------------------------------------ token

def test_client_credentials_with_basic_auth_get_a_bearer_token(make_metered):
    platform = make_metered(token_lifetime=123)
    response = token_call(platform)
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "bearer" and body["expires_in"] == 123 and body["access_token"]
    assert body["access_token"] in platform.issued_tokens()
    assert list_page(api(platform), platform).status_code == 200


@pytest.mark.parametrize("auth", [(EMAIL, "wrong"), ("other@example.com", PASSWORD), None])
def test_bad_client_credentials_get_400_invalid_client_without_echoing_them(make_metered, auth):
    platform = make_metered()
    response = token_call(platform, auth=auth)
    assert response.status_code == 400 and response.json() == {"error": "invalid_client"}
    assert platform.stats["tokens_issued"] == 0


def test_a_grant_type_other_than_client_credentials_is_refused(make_metered):
    response = token_call(make_metered(), grant_type="password")
    assert response.status_code == 400 and response.json() == {"error": "unsupported_grant_type"}


def test_unreadable_basic_header_is_invalid_client(make_metered):
    platform = make_metered()
    response = requests.post(f"{platform.url}/oauth/token", headers={"Authorization": "Basic !!!"},
                             data={"grant_type": "client_credentials"}, timeout=5)
    assert response.status_code == 400 and response.json() == {"error": "invalid_client"}


def test_missing_unknown_revoked_and_expired_tokens_are_401_with_code_190(make_metered):
    platform = make_metered(token_revoke_every=2, token_lifetime=2.0)  # 2 s: a slow first call still sees it
    refused = [requests.get(f"{platform.url}/v2/campaigns", timeout=5),
               requests.get(f"{platform.url}/v2/campaigns", headers={"Authorization": "Bearer EAAMnope"}, timeout=5)]
    session = api(platform)
    assert [list_page(session, platform).status_code for _ in range(2)] == [200, 200]
    refused.append(list_page(session, platform))  # the second call revoked its token
    platform.update(token_revoke_every=0)
    session = api(platform)
    wait_until(lambda: list_page(session, platform).status_code == 401, timeout=30,
               message="the token's 2 s lifetime ends")
    refused.append(list_page(session, platform))
    for response in refused:
        assert response.status_code == 401
        assert error_of(response)["code"] == 190 and error_of(response)["is_transient"] is False
    assert platform.stats["tokens_revoked"] == 1


def test_refuse_tokens_issues_tokens_no_call_accepts(make_metered):
    platform = make_metered(refuse_tokens=True)
    response = list_page(api(platform), platform)
    assert response.status_code == 401 and error_of(response)["code"] == 190


# ------------------------------------------------------------------ listing

def test_cursor_pages_list_every_campaign_exactly_once_with_no_total(make_metered):
    platform = make_metered(campaigns=100)
    session = api(platform)
    first = list_page(session, platform, limit=7).json()
    assert set(first) == {"data", "paging"} and "total" not in first["paging"]
    cursor = first["paging"]["next"]
    assert not cursor.isdigit() and base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))  # opaque base64
    ids = [row["id"] for row in all_rows(session, platform, limit=7)]
    assert len(ids) == len(set(ids)) == 100
    assert ids == platform.campaign_ids()
    assert all(re.fullmatch(r"[1-9][0-9]+", campaign_id) for campaign_id in ids)
    assert platform.stats["requests"]["list"] == 1 + 15  # 100 rows at 7 a page: 15 pages


def test_the_last_page_has_no_next(make_metered):
    platform = make_metered(campaigns=10)
    body = list_page(api(platform), platform, limit=10).json()
    assert len(body["data"]) == 10 and body["paging"].get("next") is None


@pytest.mark.parametrize("max_page_size, asked, served", [(500, 300, 200), (100, 150, 100), (100, None, 10)])
def test_limit_is_capped_at_200_and_at_max_page_size(make_metered, max_page_size, asked, served):
    platform = make_metered(campaigns=400, max_page_size=max_page_size)
    assert len(list_page(api(platform), platform, limit=asked).json()["data"]) == served


@pytest.mark.parametrize("params", [{"limit": "0"}, {"limit": "ten"}, {"after": "not-a-cursor"},
                                    {"after": base64.urlsafe_b64encode(b'{"o": -1, "p": 2}').decode()}])
def test_a_bad_limit_or_cursor_is_400_not_transient(make_metered, params):
    platform = make_metered()
    response = api(platform).get(f"{platform.url}/v2/campaigns", params=params, timeout=5)
    assert response.status_code == 400
    assert error_of(response)["code"] == 100 and error_of(response)["is_transient"] is False


def test_rows_come_in_the_metered_shape(make_metered):
    platform = make_metered(campaigns=60, no_insights_rate=0.3, seed=4)
    rows = all_rows(api(platform), platform, limit=60)
    for number, row in enumerate(rows, start=1):
        reference = base_campaign(4, number)
        assert row["name"] == reference["name"]
        assert row["effective_status"] == {"active": "ACTIVE", "paused": "PAUSED",
                                           "completed": "ARCHIVED"}[reference["status"]]
        assert row["daily_budget"] == str(reference["budget"] * 100)  # cents, as a string
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+0000", row["created_time"])
        assert row["created_time"][:19] == reference["created_at"][:19]
        if "insights" in row:
            assert set(row["insights"]) == {"impressions", "clicks", "conversions"}
            assert all(isinstance(value, str) and value.isdigit() for value in row["insights"].values())
    without = sum("insights" not in row for row in rows)
    assert 5 <= without <= 35  # about 30 % of 60 have no data yet


def test_ids_are_stable_per_seed(make_metered):
    def ids(seed):
        platform = make_metered(campaigns=5, seed=seed)
        return [row["id"] for row in all_rows(api(platform), platform)]

    assert ids(1) == ids(1) and ids(1) != ids(2)


def test_deleted_campaigns_are_listed_as_deleted_and_their_sync_is_404(make_metered):
    platform = make_metered(campaigns=50, not_found_rate=0.2, seed=3)
    session = api(platform)
    rows = all_rows(session, platform, limit=50)
    deleted = [row["id"] for row in rows if row["effective_status"] == "DELETED"]
    assert deleted and deleted == platform.deleted_ids()
    response = sync_call(session, platform, deleted[0])
    assert response.status_code == 404
    assert error_of(response)["code"] == 100 and error_of(response)["is_transient"] is False
    assert platform.stats["synced_ids"] == {}


def test_bad_rows_and_bad_fields_stay_bad_in_the_metered_shape(make_metered):
    platform = make_metered(campaigns=100, bad_row_rate=0.2, bad_field_rate=0.3)
    rows = all_rows(api(platform), platform, limit=100)
    real = [row for row in rows if isinstance(row, dict) and row.get("id") in set(platform.campaign_ids())]
    assert len(real) == 100 and len(rows) == 100 + platform.stats["bad_rows_served"]
    huge = [row for row in real if len(row.get("insights", {}).get("impressions", "")) == 5000]
    assert huge and huge[0]["insights"]["impressions"] == "9" * 5000  # more digits than int() reads
    year_one = [row for row in real if str(row.get("created_time")).startswith("0001-")]
    assert year_one and year_one[0]["created_time"] == "0001-01-01T00:30:00+0500"


def test_duplicate_across_pages_repeats_a_row_on_the_next_cursor_page(make_metered):
    platform = make_metered(campaigns=30, duplicate_across_pages=True)
    session = api(platform)
    ids = [row["id"] for row in all_rows(session, platform, limit=10)]
    assert len(ids) == 31 and len(set(ids)) == 30  # page 2 repeats page 1's last row
    assert len(set(row["id"] for row in all_rows(session, platform, limit=10))) == 31  # the newcomer


def test_delete_between_pages_skips_a_campaign_on_cursor_pages(make_metered):
    platform = make_metered(campaigns=30, delete_between_pages=1)
    ids = [row["id"] for row in all_rows(api(platform), platform, limit=10)]
    deleted = platform.deleted_ids()
    assert len(deleted) == 1 and deleted[0] in ids  # page 1 listed it, then it went
    skipped = set(platform.campaign_ids()) - set(ids)
    assert len(ids) == len(set(ids)) == 29 and len(skipped) == 1  # the shift skipped one live campaign


def test_an_oversized_streamed_list_answer_still_carries_the_usage_headers(make_metered):
    platform = make_metered(rate_limit="5/30s", oversized_list_mb=1, oversized_chunked=True)
    response = list_page(api(platform), platform)
    assert "Content-Length" not in response.headers and len(response.json()["padding"]) == 1024 * 1024
    assert usage(response)[:2] == (5, 4)


def test_malformed_list_modes_apply_to_cursor_pages(make_metered):
    platform = make_metered(malformed_list="no_pagination")
    assert set(list_page(api(platform), platform).json()) == {"data"}
    platform = make_metered(malformed_list="truncated_json")
    with pytest.raises(ValueError):
        list_page(api(platform), platform).json()


# ------------------------------------------------------------------ budget and usage headers

def test_every_v2_answer_carries_usage_headers_with_consistent_arithmetic(make_metered):
    platform = make_metered(rate_limit="6/30s")  # nothing leaves a 30 s window during the test
    session = api(platform)
    started = time.monotonic()
    answers = [list_page(session, platform), sync_call(session, platform, platform.campaign_ids()[0]),
               sync_call(session, platform, "1"), requests.get(f"{platform.url}/v2/campaigns", timeout=5),
               session.get(f"{platform.url}/v2/nothing", timeout=5)]
    assert [answer.status_code for answer in answers] == [200, 200, 404, 401, 404]
    for used, answer in enumerate(answers, start=1):
        limit, remaining, reset, percent = usage(answer)
        assert (limit, remaining, percent) == (6, 6 - used, round(100 * used / 6))
        assert 30 - (time.monotonic() - started) - 1 <= reset <= 30  # until the first call leaves the window
    assert "X-RateLimit-Limit" not in token_call(platform).headers  # the token endpoint is not metered


def test_over_the_budget_the_answer_is_http_200_with_code_40100_and_the_wait_in_reset(make_metered):
    platform = make_metered(rate_limit="2/30s")
    session = api(platform, client_id="acct-1")
    campaign = platform.campaign_ids()[0]
    assert [sync_call(session, platform, campaign).status_code for _ in range(2)] == [200, 200]
    throttled = sync_call(session, platform, campaign)
    assert throttled.status_code == 200 and throttled.json() == {"code": 40100, "message": "Too many requests"}
    assert "Retry-After" not in throttled.headers
    limit, remaining, reset, percent = usage(throttled)
    assert (limit, remaining, percent) == (2, 0, 100) and 1 <= reset <= 30
    stats = platform.stats
    assert stats["throttled"] == 1 and stats["throttled_by_client"] == {"acct-1": 1}
    assert stats["rate_limited"] == 1  # every over-budget answer, whatever its status
    assert stats["synced_ids"] == {campaign: 2} and stats["api_calls_by_client"] == {"acct-1": 2}


def test_waiting_out_the_announced_reset_makes_room(make_metered):
    platform = make_metered(rate_limit="2/2s")
    session = api(platform)
    assert [list_page(session, platform).status_code for _ in range(2)] == [200, 200]
    throttled = list_page(session, platform)
    assert throttled.json().get("code") == 40100
    time.sleep(usage(throttled)[2])  # the wait the platform announced, which the test holds it to
    response = list_page(session, platform)
    assert response.status_code == 200 and "data" in response.json()


def test_the_budget_is_per_client_id(make_metered):
    platform = make_metered(rate_limit="1/30s")
    first, second = api(platform, client_id="a"), api(platform, client_id="b")
    assert "data" in list_page(first, platform).json() and "data" in list_page(second, platform).json()
    assert list_page(first, platform).json()["code"] == 40100
    assert platform.stats["throttled_by_client"] == {"a": 1}


def test_a_budget_changed_at_runtime_shows_at_once_and_the_window_keeps_its_calls(make_metered):
    platform = make_metered(rate_limit="10/30s")
    session = api(platform)
    for _ in range(3):
        list_page(session, platform)
    platform.update(rate_limit="4/30s")  # the platform's real budget drops under the configured one
    response = list_page(session, platform)
    assert "data" in response.json() and usage(response)[:2] == (4, 0)  # the 3 earlier calls still count
    throttled = list_page(session, platform)
    assert throttled.json()["code"] == 40100 and usage(throttled)[::3] == (4, 100)
    answer = requests.post(f"{platform.url}/_fake/config", json={"rate_limit": "6/30s"}, timeout=5)
    assert answer.status_code == 200
    response = list_page(session, platform)
    assert "data" in response.json() and usage(response)[:2] == (6, 1)


# ------------------------------------------------------------------ errors and faults

def test_one_server_serves_one_dialect(make_metered):
    metered = make_metered()
    session = api(metered)
    for path in ("/api/campaigns", "/auth/token"):
        response = session.get(f"{metered.url}{path}", timeout=5)
        assert response.status_code == 404 and error_of(response)["is_transient"] is False
    reference = make_metered(dialect="reference")
    assert requests.get(f"{reference.url}/v2/campaigns", timeout=5).status_code == 404
    assert token_call(reference).status_code == 404
    with pytest.raises(ValueError, match="dialect is fixed"):
        metered.update(dialect="reference")


@pytest.mark.parametrize("knobs, path, status, code, transient", [
    ({"list_fail_rate": 1.0}, "list", 503, 2, True),
    ({"sync_fail_rate": 1.0}, "sync", 503, 2, True),
    ({"server_error_rate": 1.0}, "list", 500, 1, True),
])
def test_faults_answer_in_the_metered_error_shape(make_metered, knobs, path, status, code, transient):
    platform = make_metered(rate_limit="100/30s", **knobs)
    session = api(platform)
    campaign = platform.campaign_ids()[0]
    response = list_page(session, platform) if path == "list" else sync_call(session, platform, campaign)
    assert response.status_code == status
    assert set(error_of(response)) >= {"code", "message", "is_transient"}
    assert (error_of(response)["code"], error_of(response)["is_transient"]) == (code, transient)
    assert usage(response)[:2] == (100, 99) and platform.stats["synced_ids"] == {}


def test_a_server_error_carries_the_fakes_secret_a_client_must_not_copy(make_metered):
    response = list_page(api(platform := make_metered(server_error_rate=1.0)), platform)
    assert FAKE_SECRET in response.text and "Traceback" in response.json()["error"]["trace"]


def test_html_hang_and_reset_faults_on_v2(make_metered):
    platform = make_metered(html_error_rate=1.0)
    assert "<html>" in list_page(api(platform), platform).text
    platform = make_metered(hang_rate=1.0)
    with pytest.raises(requests.Timeout):
        list_page(api(platform), platform, timeout=0.3)
    platform = make_metered(reset_rate=1.0)
    with pytest.raises(requests.ConnectionError):
        sync_call(api(platform), platform, platform.campaign_ids()[0])
    assert platform.stats["resets"] == 1


def test_token_fail_rate_answers_a_transient_503(make_metered):
    response = token_call(make_metered(token_fail_rate=1.0))
    assert response.status_code == 503 and error_of(response)["is_transient"] is True


def test_down_mode_503_answers_every_endpoint_in_the_metered_shape(make_metered):
    platform = make_metered(down_mode="503")
    session = api(platform)
    platform.update(down=True)
    answers = [token_call(platform), list_page(session, platform), sync_call(session, platform, "1")]
    assert [answer.status_code for answer in answers] == [503] * 3
    assert all(error_of(answer)["is_transient"] is True for answer in answers)
    assert platform.stats["calls_while_down"] == 3


def test_down_for_resets_calls_then_comes_back(make_metered):
    platform = make_metered()
    session = api(platform)
    platform.down_for(2.0)  # long enough for a busy machine's first call to find it down
    with pytest.raises(requests.ConnectionError):
        list_page(session, platform)

    def answers():
        try:
            return list_page(session, platform).status_code == 200
        except requests.ConnectionError:
            return False

    wait_until(answers, timeout=30, message="the platform comes back after its 2 s down")


def test_a_sync_takes_its_latency_and_only_completed_syncs_count(make_metered):
    platform = make_metered(sync_latency=0.3)
    session = api(platform)
    campaign = platform.campaign_ids()[1]
    started = time.monotonic()
    response = sync_call(session, platform, campaign)
    assert time.monotonic() - started >= 0.3
    assert response.json()["ok"] is True and re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+0000",
                                                            response.json()["synced_time"])
    assert sync_call(session, platform, "campaign_2").status_code == 404  # a reference id is no metered id
    stats = platform.stats
    assert stats["synced_ids"] == {campaign: 1} and stats["requests"] == {"token": 1, "sync": 2}


def test_management_command_has_a_dialect_flag():
    from syncer.management.commands.run_fake_platform import Command, build_config

    parser = Command().create_parser("manage.py", "run_fake_platform")
    assert build_config(vars(parser.parse_args(["--dialect", "metered"]))).dialect == "metered"
    assert build_config(vars(parser.parse_args([]))).dialect == "reference"
    with pytest.raises(ValueError, match="dialect must be one of"):
        FakePlatformConfig(dialect="graphql")


def test_the_status_mix_and_changes_show_in_the_metered_shape(make_metered):
    platform = make_metered(campaigns=6, statuses="active:2,paused:2,completed:2", status_changes="1=paused")
    statuses = [row["effective_status"] for row in all_rows(api(platform), platform)]
    assert statuses == ["PAUSED", "ACTIVE", "PAUSED", "PAUSED", "ARCHIVED", "ARCHIVED"]
