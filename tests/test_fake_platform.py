"""The bundled fake ad platform itself, over real HTTP to an in-process instance.

No database: nothing here is marked django_db. Latencies and rate windows are
scaled down so the whole file runs in seconds.
"""
from __future__ import annotations

import base64
import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from syncer.fake_platform import (
    BAD_FIELD_KINDS,
    BAD_ROW_KINDS,
    FAKE_SECRET,
    FakePlatform,
    FakePlatformConfig,
    parse_rate_limit,
)
from syncer.fake_platform.server import _reuse_gap
from tests.waiting import wait_until

EMAIL, PASSWORD = "demo@adplatform.test", "demo-password"


def healthy(platform) -> bool:
    try:
        return requests.get(f"{platform.url}/health", timeout=5).status_code == 200
    except requests.ConnectionError:
        return False


@pytest.fixture
def make_platform():
    """Start platforms with fast defaults (no rate limit, 10 ms syncs); all stopped at teardown."""
    started = []

    def make(**knobs):
        knobs.setdefault("rate_limit", None)
        knobs.setdefault("sync_latency", 0.01)
        platform = FakePlatform(FakePlatformConfig(**knobs))
        platform.start()
        started.append(platform)
        return platform

    yield make
    for platform in started:
        platform.stop()


def get_token(platform):
    response = requests.post(f"{platform.url}/auth/token", auth=(EMAIL, PASSWORD), timeout=5)
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


def api(platform, client_id=None):
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {get_token(platform)}"
    if client_id:
        session.headers["X-Client-ID"] = client_id
    return session


def sync_call(session, platform, campaign_id, **kwargs):
    kwargs.setdefault("timeout", 5)
    return session.post(f"{platform.url}/api/campaigns/{campaign_id}/sync", json={"campaign_id": campaign_id},
                        **kwargs)


def list_page(session, platform, page=1, limit=None, **kwargs):
    params = {"page": page}
    if limit is not None:
        params["limit"] = limit
    kwargs.setdefault("timeout", 5)
    return session.get(f"{platform.url}/api/campaigns", params=params, **kwargs)


# ------------------------------------------------------------------ auth

def test_token_issued_for_valid_basic_credentials(make_platform):
    platform = make_platform(token_lifetime=123)
    body = requests.post(f"{platform.url}/auth/token", auth=(EMAIL, PASSWORD), timeout=5).json()
    assert body["access_token"].startswith("tok_")
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 123
    assert abs(body["issued_at"] - time.time()) < 5


@pytest.mark.parametrize("header", [
    None,
    "Basic !!!not-base64!!!",
    "Basic " + base64.b64encode(b"demo@adplatform.test:wrong").decode(),
    "Basic " + base64.b64encode(b"other@example.com:demo-password").decode(),
    "Basic " + base64.b64encode(b"no-colon-here").decode(),
    "Bearer tok_something",
])
def test_token_refused_with_401_json_for_missing_or_bad_credentials(make_platform, header):
    platform = make_platform()
    headers = {"Authorization": header} if header else {}
    response = requests.post(f"{platform.url}/auth/token", headers=headers, timeout=5)
    assert response.status_code == 401
    assert response.json()["error"] == "Invalid credentials"


def test_api_call_without_or_with_unknown_token_is_401(make_platform):
    platform = make_platform()
    assert requests.get(f"{platform.url}/api/campaigns", timeout=5).status_code == 401
    response = requests.get(f"{platform.url}/api/campaigns", headers={"Authorization": "Bearer tok_nope"},
                            timeout=5)
    assert response.status_code == 401
    assert response.json()["error"] == "Token expired"


def test_token_expires_after_its_lifetime(make_platform):
    platform = make_platform(token_lifetime=2.0)  # long enough for a busy machine's first call
    issued = time.monotonic()
    session = api(platform)
    assert list_page(session, platform).status_code == 200
    wait_until(lambda: list_page(session, platform).status_code == 401, timeout=30,
               message="the token's lifetime ends and a call is refused")
    assert time.monotonic() - issued >= 2.0
    response = list_page(session, platform)
    assert response.status_code == 401
    assert response.json()["error"] == "Token expired"


def test_token_revoke_every_kth_call_revokes_the_token_it_used(make_platform):
    platform = make_platform(token_revoke_every=3)
    session = api(platform)
    assert [list_page(session, platform).status_code for _ in range(4)] == [200, 200, 200, 401]
    session.headers["Authorization"] = f"Bearer {get_token(platform)}"
    assert list_page(session, platform).status_code == 200
    assert platform.stats["tokens_revoked"] == 1


def test_revoke_all_every_kth_call_ends_every_live_token_and_new_ones_work(make_platform):
    platform = make_platform(revoke_all_every=3)
    first, second = api(platform), api(platform)
    assert [list_page(s, platform).status_code for s in (first, second, first, first, second)] == [200, 200, 200,
                                                                                                   401, 401]
    assert platform.stats["tokens_revoked"] == 2
    assert list_page(api(platform), platform).status_code == 200


def test_refuse_tokens_issues_tokens_that_no_call_accepts(make_platform):
    platform = make_platform(refuse_tokens=True)
    session = api(platform)
    assert [list_page(session, platform).status_code for _ in range(2)] == [401, 401]
    platform.update(refuse_tokens=False)
    assert list_page(session, platform).status_code == 200


def test_revoke_on_issue_ends_previous_tokens_of_same_credentials(make_platform):
    platform = make_platform(revoke_on_issue=True)
    old, new = api(platform), api(platform)
    assert list_page(old, platform).status_code == 401
    assert list_page(new, platform).status_code == 200


def test_token_fail_rate_answers_503(make_platform):
    platform = make_platform(token_fail_rate=1.0)
    response = requests.post(f"{platform.url}/auth/token", auth=(EMAIL, PASSWORD), timeout=5)
    assert response.status_code == 503


# ------------------------------------------------------------------ listing

def test_pagination_100_campaigns_at_10_a_page_gives_10_pages(make_platform):
    platform = make_platform(campaigns=100)
    session = api(platform)
    ids, page = [], 1
    while True:
        body = list_page(session, platform, page=page).json()
        assert body["pagination"] == {"page": page, "limit": 10, "total": 100, "has_more": page < 10}
        ids += [row["id"] for row in body["data"]]
        if not body["pagination"]["has_more"]:
            break
        page += 1
    assert page == 10
    assert ids == [f"campaign_{i}" for i in range(1, 101)]
    assert list_page(session, platform, page=11).json()["data"] == []


def test_limit_is_capped_at_max_page_size(make_platform):
    platform = make_platform(campaigns=100, max_page_size=30)
    body = list_page(api(platform), platform, limit=100).json()
    assert body["pagination"]["limit"] == 30
    assert len(body["data"]) == 30
    assert body["pagination"]["has_more"] is True


@pytest.mark.parametrize("params", [{"page": 0}, {"page": "abc"}, {"limit": 0}, {"limit": -1}, {"limit": "x"},
                                    {"page": "1.5"}])
def test_bad_page_or_limit_is_400_json(make_platform, params):
    platform = make_platform()
    response = api(platform).get(f"{platform.url}/api/campaigns", params=params, timeout=5)
    assert response.status_code == 400
    assert "must be an integer" in response.json()["message"]


def test_campaign_fields_are_seeded_and_metrics_change_between_calls(make_platform):
    first, same_seed, other_seed = make_platform(seed=1), make_platform(seed=1), make_platform(seed=2)
    rows = [list_page(api(p), p, limit=100).json()["data"] for p in (first, same_seed, other_seed)]
    stable = ("id", "name", "status", "budget", "created_at")
    assert [{k: r[k] for k in stable} for r in rows[0]] == [{k: r[k] for k in stable} for r in rows[1]]
    assert [r["name"] for r in rows[0]] != [r["name"] for r in rows[2]]
    assert {r["status"] for r in rows[0]} == {"active", "paused", "completed"}
    again = list_page(api(first), first, limit=100).json()["data"]
    assert all(a["impressions"] > b["impressions"] for a, b in zip(again, rows[0], strict=False))


def test_has_more_lies_keeps_true_past_total_with_phantom_items(make_platform):
    platform = make_platform(campaigns=25, has_more_lies=True)
    session = api(platform)
    last = list_page(session, platform, page=3).json()
    assert last["pagination"] == {"page": 3, "limit": 10, "total": 25, "has_more": True}
    assert [r["id"] for r in last["data"]][-5:] == [f"campaign_{i}" for i in range(26, 31)]
    past = list_page(session, platform, page=4).json()
    assert past["pagination"]["has_more"] is True and len(past["data"]) == 10
    assert sync_call(session, platform, "campaign_26").status_code == 404  # phantoms are not real


def test_total_drift_changes_total_from_page_2(make_platform):
    platform = make_platform(campaigns=30, total_drift=1)
    session = api(platform)
    assert list_page(session, platform, page=1).json()["pagination"]["total"] == 30
    assert list_page(session, platform, page=2).json()["pagination"]["total"] == 31


def test_duplicate_across_pages_shifts_pages_and_total_without_losing_any(make_platform):
    platform = make_platform(campaigns=30, duplicate_across_pages=True)
    session = api(platform)
    bodies = [list_page(session, platform, page=p).json() for p in (1, 2, 3, 4)]
    pages = [[r["id"] for r in body["data"]] for body in bodies]
    assert pages[1][0] == pages[0][-1] == "campaign_10"  # one front insert: one repeat, later pages shifted
    assert pages[2][0] == "campaign_20"
    assert [body["pagination"]["total"] for body in bodies] == [30, 31, 31, 31]
    assert [body["pagination"]["has_more"] for body in bodies] == [True, True, True, False]
    assert pages[3] == ["campaign_30"] and all(len(ids) <= 10 for ids in pages)
    assert {platform_id for page in pages for platform_id in page} == {f"campaign_{i}" for i in range(1, 31)}
    again = list_page(session, platform, page=1).json()["data"]
    assert again[0]["id"] == "campaign_31", "the inserted campaign is real: a later listing finds it at the front"
    assert sync_call(session, platform, "campaign_31").status_code == 200
    assert platform.campaign_ids()[-1] == "campaign_31"


def test_overlap_pages_repeat_the_last_row_and_keep_total_so_the_tail_lies_past_page_times_limit(make_platform):
    platform = make_platform(campaigns=30, overlap_pages=True)
    session = api(platform)
    bodies = [list_page(session, platform, page=p).json() for p in (1, 2, 3, 4)]
    pages = [[r["id"] for r in body["data"]] for body in bodies]
    assert pages[1][0] == pages[0][-1] == "campaign_10" and pages[2][0] == pages[1][-1] == "campaign_19"
    assert [body["pagination"]["total"] for body in bodies] == [30, 30, 30, 30]
    # Up to page * limit >= total (page 3) the pages hold 28 distinct campaigns; the last two are on page 4.
    assert len({i for page in pages[:3] for i in page}) == 28 and pages[3] == ["campaign_28", "campaign_29",
                                                                               "campaign_30"]


def test_delete_between_pages_deletes_a_listed_campaign_and_skips_one_on_the_next_page(make_platform):
    platform = make_platform(campaigns=30, delete_between_pages=1)
    session = api(platform)
    bodies = [list_page(session, platform, page=p).json() for p in (1, 2, 3)]
    seen = [r["id"] for body in bodies for r in body["data"]]
    assert "campaign_1" in seen and "campaign_11" not in seen, "page 2 starts one row later: campaign_11 skipped"
    assert bodies[1]["pagination"]["total"] == 29 and bodies[2]["pagination"]["has_more"] is False
    assert platform.deleted_ids() == ["campaign_1"] and sync_call(session, platform, "campaign_1").status_code == 404
    again = [r["id"] for p in (1, 2, 3) for r in list_page(session, platform, page=p).json()["data"]]
    assert again == [f"campaign_{i}" for i in range(2, 31)], "a second listing sees every live campaign once"
    platform.update(delete_between_pages=0)
    assert sync_call(session, platform, "campaign_1").status_code == 200, "changing the knob brings it back"


def test_bad_fields_are_served_in_rows_with_a_good_id(make_platform):
    platform = make_platform(campaigns=18, bad_field_rate=1.0)
    response = list_page(api(platform), platform, limit=100)
    with pytest.raises(ValueError, match="digits"):
        response.json()  # a 5,000-digit integer: more than Python parses by default
    assert ": " + "9" * 5000 + "," in response.text
    rows = json.loads(response.text.replace("9" * 5000, '"huge"'))["data"]
    assert [row["id"] for row in rows] == [f"campaign_{i}" for i in range(1, 19)]
    by_kind = {kind: rows[i - 1][field] for i in range(1, 19) for field, kind in [BAD_FIELD_KINDS[i % 9]]}
    assert by_kind["empty_name"] == "" and isinstance(by_kind["name_not_text"], dict)
    assert "\ud800" in by_kind["surrogate_name"] and "\\ud800" in response.text, "a lone surrogate, escaped"
    assert by_kind["year_one_created_at"] == "0001-01-01T00:30:00+05:00" and by_kind["huge_integer"] == "huge"
    assert (by_kind["budget_out_of_range"], by_kind["status_not_text"], by_kind["fractional_clicks"]) == (1e300, 42,
                                                                                                         12.5)
    assert platform.stats["bad_fields_served"] == 18


def test_list_latency_slows_every_list_call(make_platform):
    platform = make_platform(list_latency=0.3)
    session = api(platform)
    started = time.monotonic()
    assert list_page(session, platform).status_code == 200
    assert time.monotonic() - started >= 0.3


def test_oversized_list_answers_carry_the_padding_asked_for(make_platform):
    platform = make_platform(oversized_list_mb=1.5)
    response = list_page(api(platform), platform)
    assert len(response.content) > 1.5 * 1024 * 1024 and response.json()["data"]


def test_oversized_chunked_answers_come_without_a_length_and_count_what_was_written(make_platform):
    platform = make_platform(oversized_list_mb=1.5, oversized_chunked=True)
    response = list_page(api(platform), platform)
    assert "Content-Length" not in response.headers and response.headers.get("Transfer-Encoding") == "chunked"
    assert len(response.content) > 1.5 * 1024 * 1024 and response.json()["data"]
    assert platform.stats["oversized_bytes_sent"] == len(response.content)


@pytest.mark.parametrize("mode", ["truncated_json", "data_not_list", "no_pagination", "no_total", "html"])
def test_malformed_list_modes(make_platform, mode):
    platform = make_platform(malformed_list=mode)
    response = list_page(api(platform), platform)
    assert response.status_code == 200
    if mode in ("truncated_json", "html"):
        with pytest.raises(ValueError):
            json.loads(response.text)
        assert ("text/html" in response.headers["Content-Type"]) == (mode == "html")
    elif mode == "data_not_list":
        assert isinstance(response.json()["data"], dict)
    elif mode == "no_total":
        assert response.json()["pagination"] == {"page": 1, "limit": 10, "has_more": True}
    else:
        assert "pagination" not in response.json()


def all_rows(session, platform, limit=100):
    """Every row of the listing, page by page, checking that no page exceeds the limit."""
    rows, page = [], 1
    while True:
        body = list_page(session, platform, page=page, limit=limit).json()
        assert len(body["data"]) <= limit
        rows += body["data"]
        if not body["pagination"]["has_more"] or page * limit >= body["pagination"]["total"]:
            return rows, body["pagination"]["total"]
        page += 1


def is_real(row):
    return (isinstance(row, dict) and isinstance(row.get("id"), str) and row["id"].startswith("campaign_")
            and isinstance(row.get("name"), str))


def test_bad_rows_are_extra_items_in_total_and_every_real_campaign_is_still_listed(make_platform):
    platform = make_platform(campaigns=100, bad_row_rate=0.5, seed=3)
    session = api(platform)
    rows, total = all_rows(session, platform)
    assert [r["id"] for r in rows if is_real(r)] == [f"campaign_{i}" for i in range(1, 101)]
    bad = [r for r in rows if not is_real(r)]
    assert 20 < len(bad) < 80 and total == len(rows) == 100 + len(bad)
    assert platform.stats["bad_rows_served"] == len(bad)
    assert any(not isinstance(r, dict) for r in bad)
    assert any(isinstance(r, dict) and "id" not in r for r in bad)
    assert any(isinstance(r, dict) and isinstance(r.get("id"), int) for r in bad)
    # the same rows are bad on every call (seeded), and a bad row's id is never syncable
    again, _ = all_rows(session, platform, limit=7)
    assert [r.get("id") if isinstance(r, dict) else r for r in again] == \
        [r.get("id") if isinstance(r, dict) else r for r in rows]
    str_ids = [r["id"] for r in bad if isinstance(r, dict) and isinstance(r.get("id"), str) and r["id"]]
    assert any(len(i) > 255 for i in str_ids) and any("\x00" in i for i in str_ids), "long and NUL ids"
    assert any("\ud800" in i for i in str_ids), "an id holding a lone surrogate"
    printable = [i for i in str_ids if i.isprintable() and len(i) < 100]
    assert printable and sync_call(session, platform, printable[0]).status_code == 404
    assert len(BAD_ROW_KINDS) == 11


def test_hostile_values_are_served_on_real_campaigns(make_platform):
    platform = make_platform(campaigns=100, hostile_values=True)
    session = api(platform)
    rows = {r["id"]: r for r in list_page(session, platform, limit=100).json()["data"]}
    assert len(rows) == 100
    names = [r["name"] for r in rows.values()]
    assert any("\U0001F680" in n for n in names)
    assert any("DROP TABLE" in n for n in names)
    assert any("<script>" in n for n in names)
    assert any(len(n) > 10_000 for n in names)
    assert any(isinstance(r["budget"], str) for r in rows.values())
    assert any(isinstance(r["impressions"], int) and r["impressions"] > 2**53 for r in rows.values())
    assert sync_call(session, platform, "campaign_5").status_code == 200


# ------------------------------------------------------------------ sync

def test_sync_answers_success_after_latency(make_platform):
    platform = make_platform(sync_latency=0.3)
    session = api(platform)
    started = time.monotonic()
    response = sync_call(session, platform, "campaign_7")
    assert time.monotonic() - started >= 0.3
    body = response.json()
    assert response.status_code == 200
    assert body["success"] is True and body["campaign_id"] == "campaign_7"
    assert body["message"] == "Campaign data synced successfully" and body["synced_at"].endswith("Z")
    assert platform.stats["synced_ids"] == {"campaign_7": 1}


@pytest.mark.parametrize("campaign_id", ["campaign_101", "campaign_0", "nope", "campaign_01"])
def test_sync_of_unknown_campaign_is_404(make_platform, campaign_id):
    platform = make_platform(campaigns=100)
    assert sync_call(api(platform), platform, campaign_id).status_code == 404


@pytest.mark.parametrize("body", [None, {}, {"campaign_id": "campaign_2"}, ["campaign_1"], "garbage"])
def test_sync_with_missing_or_mismatched_body_is_400(make_platform, body):
    platform = make_platform()
    session = api(platform)
    kwargs = {"data": body} if isinstance(body, str) else {"json": body}
    response = session.post(f"{platform.url}/api/campaigns/campaign_1/sync", timeout=5, **kwargs)
    assert response.status_code == 400


def test_not_found_rate_deletes_the_same_campaigns_every_time(make_platform):
    platform = make_platform(campaigns=100, not_found_rate=0.1, seed=5)
    deleted = platform.deleted_ids()
    assert 2 <= len(deleted) <= 25
    assert deleted == make_platform(campaigns=100, not_found_rate=0.1, seed=5).deleted_ids()
    session = api(platform)
    listed = [r["id"] for r in list_page(session, platform, limit=100).json()["data"]]
    assert set(deleted) <= set(listed)
    assert sync_call(session, platform, deleted[0]).status_code == 404
    alive = next(i for i in platform.campaign_ids() if i not in deleted)
    assert sync_call(session, platform, alive).status_code == 200


def test_100_parallel_syncs_overlap_instead_of_queueing(make_platform):
    platform = make_platform(campaigns=100, sync_latency=0.5)
    token = get_token(platform)

    def one(i):
        return requests.post(f"{platform.url}/api/campaigns/campaign_{i}/sync", json={"campaign_id": f"campaign_{i}"},
                             headers={"Authorization": f"Bearer {token}"}, timeout=20).status_code

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=100) as pool:
        codes = list(pool.map(one, range(1, 101)))
    assert codes == [200] * 100
    assert time.monotonic() - started < 10  # sequential would be 50 s
    stats = platform.stats
    assert stats["synced_total"] == 100 and stats["concurrent_max"] >= 20


# ------------------------------------------------------------------ rate limit

@pytest.mark.parametrize("mode, in_header, in_body", [("header", True, False), ("body", False, True),
                                                      ("both", True, True), ("neither", False, False)])
def test_rate_limit_429_tells_the_wait_per_retry_after_mode(make_platform, mode, in_header, in_body):
    platform = make_platform(rate_limit="3/1s", retry_after_mode=mode)
    session = api(platform)
    assert [list_page(session, platform).status_code for _ in range(3)] == [200] * 3
    response = list_page(session, platform)
    assert response.status_code == 429
    assert response.json()["error"] == "Rate limit exceeded"
    assert ("Retry-After" in response.headers) == in_header
    assert ("retry_after" in response.json()) == in_body
    if in_header:
        assert response.headers["Retry-After"] == "1"
    if in_body:
        assert response.json()["retry_after"] == 1


def test_rejected_calls_do_not_count_and_the_window_slides(make_platform):
    platform = make_platform(rate_limit="2/3s")  # five calls fit in one window even on a busy machine
    session = api(platform)
    codes = [list_page(session, platform).status_code for _ in range(5)]
    assert codes == [200, 200, 429, 429, 429]
    time.sleep(3.05)  # one window from the last 200, whatever the 429s after it
    assert list_page(session, platform).status_code == 200  # 429s did not extend the window
    stats = platform.stats
    assert stats["rate_limited"] == 3 and stats["rate_limited_by_client"] == {"default": 3}
    assert stats["max_calls_in_any_window"] == {"default": 2}
    assert stats["responses"][429] == 3


def test_rate_limit_counts_unauthenticated_calls_too(make_platform):
    platform = make_platform(rate_limit="2/5s")
    for _ in range(2):
        assert requests.get(f"{platform.url}/api/campaigns", timeout=5).status_code == 401
    assert list_page(api(platform), platform).status_code == 429


def test_rate_limit_is_per_client_id(make_platform):
    platform = make_platform(rate_limit="2/5s")
    a, b, default = api(platform, "acct-a"), api(platform, "acct-b"), api(platform)
    assert [list_page(a, platform).status_code for _ in range(3)] == [200, 200, 429]
    assert [list_page(b, platform).status_code for _ in range(2)] == [200, 200]
    assert list_page(default, platform).status_code == 200
    assert platform.stats["rate_limited_by_client"] == {"acct-a": 1}


def test_retry_after_override_announces_absurd_waits(make_platform):
    platform = make_platform(rate_limit="1/5s", retry_after_override=86400)
    session = api(platform)
    list_page(session, platform)
    response = list_page(session, platform)
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "86400" and response.json()["retry_after"] == 86400


def test_no_rate_limit_when_none(make_platform):
    platform = make_platform(rate_limit=None)
    session = api(platform)
    assert {list_page(session, platform).status_code for _ in range(30)} == {200}


def test_max_calls_in_any_window_is_the_budget_ground_truth(make_platform):
    platform = make_platform(rate_limit=None)
    session = api(platform, "acct")
    for _ in range(4):
        list_page(session, platform)
    time.sleep(2.1)  # the next two calls fall outside any 2 s window holding the first four
    for _ in range(2):
        list_page(session, platform)
    assert platform.max_calls_in_window(2, "acct") == 4
    assert platform.max_calls_in_window(60, "acct") == 6
    platform.update(rate_limit="100/2s")
    assert platform.stats["max_calls_in_any_window"] == {"acct": 4}
    assert platform.stats["api_calls_by_client"] == {"acct": 6}


def test_the_stats_say_when_each_client_first_called_and_how_soon_its_slots_were_used_again(make_platform):
    platform = make_platform(rate_limit="100/60s")
    session = api(platform, "acct")
    before = time.monotonic()
    for _ in range(3):
        list_page(session, platform)
    stats = platform.stats
    assert before <= stats["first_call_by_client"]["acct"] <= time.monotonic()
    assert stats["reuse_gap_by_client"] == {"acct": None}  # 3 calls: no slot of 100 was used twice
    assert stats["first_window_by_client"] == {}  # nor were a window's 100 calls made
    # three calls a window: each call to the third after it, at the median
    assert _reuse_gap([0.0, 1.0, 2.0, 60.5, 61.0, 63.0], 3) == 60.5


@pytest.mark.parametrize("text, expected", [("10/60s", (10, 60.0)), ("10/6s", (10, 6.0)), ("10/2.5s", (10, 2.5)),
                                            ("3/1", (3, 1.0)), (" 5 / 0.5s ", (5, 0.5)), ("none", None),
                                            ("", None), (None, None)])
def test_parse_rate_limit_accepts_n_per_w_seconds(text, expected):
    assert parse_rate_limit(text) == expected


@pytest.mark.parametrize("text", ["10", "ten/60s", "10/0s", "0/60s", "10/60m", "-1/5s", "10/s"])
def test_parse_rate_limit_rejects_bad_text_with_clear_message(text):
    with pytest.raises(ValueError, match="rate limit"):
        parse_rate_limit(text)


# ------------------------------------------------------------------ faults

@pytest.mark.parametrize("knob, path", [("list_fail_rate", "list"), ("sync_fail_rate", "sync")])
def test_fail_rates_answer_503(make_platform, knob, path):
    platform = make_platform(**{knob: 1.0})
    session = api(platform)
    response = list_page(session, platform) if path == "list" else sync_call(session, platform, "campaign_1")
    assert response.status_code == 503
    assert response.json()["error"] == "Service temporarily unavailable"


def test_list_fail_rate_is_roughly_the_share_of_503s(make_platform):
    platform = make_platform(list_fail_rate=0.2, seed=11)
    session = api(platform)
    failures = sum(list_page(session, platform).status_code == 503 for _ in range(200))
    assert 20 <= failures <= 60


def test_hanging_call_ends_only_by_client_timeout(make_platform):
    platform = make_platform(hang_rate=1.0)
    session = api(platform)
    started = time.monotonic()
    with pytest.raises(requests.Timeout):
        list_page(session, platform, timeout=0.3)
    assert time.monotonic() - started >= 0.3
    assert platform.stats["hung"] == 1
    platform.update(hang_rate=0.0)
    assert list_page(session, platform).status_code == 200


def test_stop_ends_hanging_calls_promptly(make_platform):
    platform = make_platform(hang_rate=1.0)
    session = api(platform)
    with ThreadPoolExecutor(max_workers=1) as pool:
        future = pool.submit(list_page, session, platform, timeout=30)
        time.sleep(0.3)
        started = time.monotonic()
        platform.stop()
        with pytest.raises(requests.ConnectionError):
            future.result(timeout=10)
    assert time.monotonic() - started < 15  # the call would hang for 30 s
    platform.stop()  # safe twice


def test_reset_rate_closes_the_connection_without_response(make_platform):
    platform = make_platform(reset_rate=1.0)
    with pytest.raises(requests.ConnectionError):
        list_page(api(platform), platform)
    assert platform.stats["resets"] == 1


def test_server_error_has_stack_trace_and_secret_in_body(make_platform):
    platform = make_platform(server_error_rate=1.0)
    response = list_page(api(platform), platform)
    assert response.status_code == 500
    assert "Traceback (most recent call last)" in response.text and FAKE_SECRET in response.text


def test_html_error_answers_an_html_page(make_platform):
    platform = make_platform(html_error_rate=1.0)
    session = api(platform)
    responses = [sync_call(session, platform, "campaign_1") for _ in range(12)]
    assert {r.status_code for r in responses} <= {200, 502} and len({r.status_code for r in responses}) == 2
    assert all("<html>" in r.text and "text/html" in r.headers["Content-Type"] for r in responses)


def test_down_refuses_every_endpoint_and_counts_calls(make_platform):
    platform = make_platform()
    session = api(platform)
    platform.update(down=True)
    for call in (lambda: requests.get(f"{platform.url}/health", timeout=5),
                 lambda: requests.post(f"{platform.url}/auth/token", auth=(EMAIL, PASSWORD), timeout=5),
                 lambda: list_page(session, platform)):
        with pytest.raises(requests.ConnectionError):
            call()
    assert platform.stats["calls_while_down"] == 3
    assert requests.get(f"{platform.url}/_fake/stats", timeout=5).json()["calls_while_down"] == 3
    platform.update(down=False)
    assert list_page(session, platform).status_code == 200


def test_down_mode_503_answers_every_endpoint_with_503(make_platform):
    platform = make_platform(down_mode="503")
    session = api(platform)
    platform.update(down=True)
    assert requests.get(f"{platform.url}/health", timeout=5).status_code == 503
    assert requests.post(f"{platform.url}/auth/token", auth=(EMAIL, PASSWORD), timeout=5).status_code == 503
    assert list_page(session, platform).status_code == 503
    assert sync_call(session, platform, "campaign_1").status_code == 503
    assert platform.stats["calls_while_down"] == 4


def test_down_mode_hang_never_answers(make_platform):
    platform = make_platform(down_mode="hang", down=True)
    with pytest.raises(requests.Timeout):
        requests.get(f"{platform.url}/health", timeout=0.3)
    assert platform.stats["calls_while_down"] == 1


def test_down_for_comes_back_by_itself(make_platform):
    platform = make_platform()
    platform.down_for(2.0)  # long enough for a busy machine's first call to find it down
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{platform.url}/health", timeout=5)
    wait_until(lambda: healthy(platform), timeout=30, message="the platform comes back after its 2 s down")


# ------------------------------------------------------------------ control

def test_health_answers_without_auth(make_platform):
    body = requests.get(f"{make_platform().url}/health", timeout=5).json()
    assert body["status"] == "ok" and body["timestamp"].endswith("Z") and body["uptime"] >= 0


def test_fake_config_changes_knobs_over_http_and_rejects_bad_ones(make_platform):
    platform = make_platform()
    session = api(platform)
    response = requests.post(f"{platform.url}/_fake/config", json={"list_fail_rate": 1.0}, timeout=5)
    assert response.status_code == 200 and response.json()["list_fail_rate"] == 1.0
    assert response.json()["password"] == "***"
    assert list_page(session, platform).status_code == 503
    assert platform.config.list_fail_rate == 1.0
    for bad in ({"no_such_knob": 1}, {"rate_limit": "fast"}, {"hang_rate": 2}):
        response = requests.post(f"{platform.url}/_fake/config", json=bad, timeout=5)
        assert response.status_code == 400 and response.json()["error"] == "Bad config"
    assert requests.get(f"{platform.url}/_fake/config", timeout=5).json()["list_fail_rate"] == 1.0


def test_fake_stats_and_reset_over_http(make_platform):
    platform = make_platform(rate_limit="1/30s")
    session = api(platform)
    list_page(session, platform)
    assert list_page(session, platform).status_code == 429
    stats = requests.get(f"{platform.url}/_fake/stats", timeout=5).json()
    assert stats["requests"]["list"] == 2 and stats["responses"]["429"] == 1 and stats["requests"]["token"] == 1
    assert requests.post(f"{platform.url}/_fake/reset", timeout=5).status_code == 200
    assert platform.stats["requests"] == {} and platform.stats["rate_limited"] == 0
    assert list_page(session, platform).status_code == 429  # a plain reset keeps the limiter window
    requests.post(f"{platform.url}/_fake/reset", json={"rate_limits": True}, timeout=5)
    assert list_page(session, platform).status_code == 200


def test_update_rejects_unknown_or_invalid_knobs(make_platform):
    platform = make_platform()
    with pytest.raises(ValueError, match="unknown knob"):
        platform.update(nonsense=1)
    with pytest.raises(ValueError, match="retry_after_mode"):
        platform.update(retry_after_mode="sometimes")
    assert platform.config.retry_after_mode == "both"


def test_defaults_match_the_contract_with_faults_off():
    config = FakePlatformConfig()
    assert (config.campaigns, config.default_page_size, config.max_page_size) == (100, 10, 100)
    assert config.parsed_rate_limit == (10, 60.0) and config.sync_latency == 2.0
    assert (config.token_lifetime, config.email, config.password, config.seed) == \
        (3600, "demo@adplatform.test", "demo-password", 0)
    assert config.list_fail_rate == config.hang_rate == config.bad_row_rate == 0 and not config.down
    assert "demo-password" not in repr(config) and "demo-password" not in config.describe()


def test_context_manager_starts_and_stops():
    with FakePlatform(FakePlatformConfig(rate_limit=None)) as platform:
        assert requests.get(f"{platform.url}/health", timeout=5).status_code == 200
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{platform.url}/health", timeout=2)


def test_management_command_flags_build_the_config():
    from syncer.management.commands.run_fake_platform import Command, build_config

    parser = Command().create_parser("manage.py", "run_fake_platform")
    options = vars(parser.parse_args(["--port", "0", "--preset", "demo", "--rate-limit", "5/3s", "--fail-rate", "0.1",
                                      "--no-hostile-values", "--has-more-lies", "--retry-after-override", "86400",
                                      "--malformed-list", "none", "--seed", "42", "--token-lifetime", "2.5"]))
    config = build_config(options)
    assert config.parsed_rate_limit == (5, 3.0) and config.sync_latency == 0.2  # demo preset kept
    assert config.list_fail_rate == config.sync_fail_rate == 0.1
    assert config.hostile_values is False and config.has_more_lies is True
    assert config.retry_after_override == 86400 and config.malformed_list is None
    assert config.seed == 42 and config.token_lifetime == 2.5
    assert build_config(vars(parser.parse_args([]))) == FakePlatformConfig()


def test_demo_preset_keeps_every_good_campaign_syncable(make_platform):
    config = FakePlatformConfig.preset("demo")
    platform = make_platform(**{**config.as_dict(hide_password=False), "rate_limit": None, "sync_latency": 0.0,
                                "sync_latency_jitter": 0.0, "list_fail_rate": 0.0, "sync_fail_rate": 0.0,
                                "hang_rate": 0.0})
    session = api(platform)
    rows, total = all_rows(session, platform)
    ids = [r["id"] for r in rows if is_real(r)]
    assert ids == [f"campaign_{i}" for i in range(1, 101)] and platform.deleted_ids() == []
    assert total > 100  # the demo serves a few bad rows
    assert {sync_call(session, platform, i).status_code for i in ids} == {200}


def test_statuses_come_as_a_mix_in_id_order_and_a_status_changes_while_the_platform_runs(make_platform):
    platform = make_platform(campaigns=12, statuses="active:3,paused:5")
    rows, _ = all_rows(api(platform), platform)
    statuses = [row["status"] for row in rows]
    assert statuses[:8] == ["active"] * 3 + ["paused"] * 5
    assert set(statuses[8:]) <= {"active", "paused", "completed"}  # the rest: the seed's draw
    platform.update(status_changes="2=paused,9=completed")  # a person pauses one and ends another
    changed = {row["id"]: row["status"] for row in all_rows(api(platform), platform)[0]}
    assert changed["campaign_2"] == "paused" and changed["campaign_9"] == "completed"
    assert changed["campaign_1"] == "active"
    response = requests.post(f"{platform.url}/_fake/config", json={"status_changes": "2=active"}, timeout=5)
    assert response.status_code == 200, response.text
    assert {row["id"]: row["status"] for row in all_rows(api(platform), platform)[0]}["campaign_2"] == "active"


@pytest.mark.parametrize(("knobs", "message"), [
    ({"statuses": "active:ten"}, "is not status:count"),
    ({"statuses": "running:10"}, "unknown status 'running'"),
    ({"status_changes": "seven=paused"}, "is not number=status"),
])
def test_a_bad_status_knob_is_refused_saying_what_it_expects(knobs, message):
    with pytest.raises(ValueError, match=message):
        FakePlatformConfig(**knobs)
