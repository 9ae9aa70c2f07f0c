"""PlatformClient against the bundled fake platform over real HTTP: paging, retries, 429s, tokens, bad bodies.

No database: the client is built from plain settings with small timeouts and backoffs.
"""
from __future__ import annotations

import socket

import pytest

from syncer.client import (
    AUTH,
    BAD_RESPONSE,
    CLIENT_ERROR,
    NETWORK,
    RATE_LIMITED,
    SERVER_ERROR,
    CallStats,
    PlatformClient,
    PlatformError,
)
from syncer.fake_platform import FAKE_SECRET


def list_all(client: PlatformClient, *, page_size: int = 100, stats: CallStats | None = None) -> list:
    stats = stats if stats is not None else CallStats()
    return [row for page in client.iter_pages(page_size=page_size, stats=stats) for row in page.rows]


def closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"  # nothing listens once the probe is closed


def ids_of(rows: list) -> list[str]:
    return [row["id"] for row in rows]


def all_ids(count: int = 100) -> list[str]:
    return [f"campaign_{i}" for i in range(1, count + 1)]


# --- pagination ------------------------------------------------------------------


def test_100_campaigns_over_10_pages_are_all_listed_with_one_call_per_page(fake_platform, make_client):
    stats = CallStats()
    rows = list_all(make_client(), page_size=10, stats=stats)
    assert ids_of(rows) == all_ids()
    assert stats.pages == 10
    assert fake_platform.stats["requests"]["list"] == 10


@pytest.mark.parametrize("page_size", [10, 30])
def test_has_more_lying_past_total_stops_at_total_without_phantom_rows(fake_platform, make_client, page_size):
    fake_platform.update(has_more_lies=True)
    stats = CallStats()
    rows = list_all(make_client(), page_size=page_size, stats=stats)
    assert ids_of(rows) == all_ids()  # page 4 of 30 carries 20 phantoms past total: all dropped
    expected_pages = -(-100 // page_size)
    assert stats.pages == expected_pages
    assert fake_platform.stats["requests"]["list"] == expected_pages


# --- transient failures ------------------------------------------------------------


def test_list_503s_are_retried_until_every_page_is_read(fake_platform, make_client):
    fake_platform.update(list_fail_rate=0.4, seed=3)
    stats = CallStats()
    rows = list_all(make_client(max_attempts=8), page_size=10, stats=stats)
    assert ids_of(rows) == all_ids()
    assert stats.server_errors > 0 and stats.retries == stats.server_errors
    assert fake_platform.stats["responses"][503] == stats.server_errors


def test_sync_503s_are_retried_until_the_platform_confirms(fake_platform, make_client):
    fake_platform.update(sync_fail_rate=0.4, seed=3)
    client, stats = make_client(max_attempts=8), CallStats()
    for platform_id in all_ids(10):
        client.sync_campaign(platform_id, stats=stats)
    assert stats.server_errors > 0 and stats.retries == stats.server_errors
    assert set(fake_platform.stats["synced_ids"]) == set(all_ids(10))


def test_a_hang_is_ended_by_the_client_timeout_and_retried(fake_platform, make_client):
    fake_platform.update(hang_rate=0.3, seed=5)
    stats = CallStats()
    # 1.5 s: long enough that only a hang times out, even on a busy machine
    rows = list_all(make_client(read_timeout=1.5, max_attempts=8), page_size=10, stats=stats)
    assert ids_of(rows) == all_ids()
    assert stats.timeouts > 0 and stats.retries >= stats.timeouts
    assert fake_platform.stats["hung"] == stats.timeouts


def test_a_reset_connection_is_retried(fake_platform, make_client):
    fake_platform.update(reset_rate=0.3, seed=5)
    stats = CallStats()
    rows = list_all(make_client(max_attempts=8), page_size=10, stats=stats)
    assert ids_of(rows) == all_ids()
    assert fake_platform.stats["resets"] > 0 and stats.retries >= fake_platform.stats["resets"]


def test_503s_from_the_token_endpoint_are_retried(fake_platform, make_client):
    fake_platform.update(token_fail_rate=0.6, seed=1)
    rows = list_all(make_client(max_attempts=8))
    assert ids_of(rows) == all_ids()
    assert fake_platform.stats["requests"]["token"] > 1


def test_an_unreachable_platform_is_tried_max_attempts_times_then_a_network_error(make_client):
    url = closed_port_url()
    stats = CallStats()
    with pytest.raises(PlatformError) as caught:
        list_all(make_client(base_url=url, max_attempts=3), stats=stats)
    assert caught.value.category == NETWORK and url in caught.value.message
    assert stats.requests == 3


def test_retries_of_the_token_call_are_counted(make_client):
    url = closed_port_url()
    stats = CallStats()
    with pytest.raises(PlatformError):
        list_all(make_client(base_url=url, max_attempts=3), stats=stats)
    assert stats.retries == stats.requests - 1 == 2


# --- 429s ---------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["header", "body", "both"])
def test_a_429_waits_as_the_platform_tells_then_succeeds(fake_platform, make_client, mode):
    # One call a second: the second page is told to wait 1 s. Our own backoff (at most
    # 0.01+0.02+0.04+0.08 s over 5 tries) is far too short, so a single 429 followed by
    # success proves the client waited as told.
    fake_platform.update(rate_limit="1/1s", retry_after_mode=mode)
    stats = CallStats()
    rows = list_all(make_client(), page_size=50, stats=stats)
    assert ids_of(rows) == all_ids()
    assert stats.rate_limited == 1 and stats.retries == 1
    assert fake_platform.stats["rate_limited"] == 1


def test_a_429_costs_no_try_even_with_one_try_a_call(fake_platform, make_client):
    fake_platform.update(rate_limit="1/1s", retry_after_mode="header")
    stats = CallStats()
    rows = list_all(make_client(max_attempts=1), page_size=50, stats=stats)
    assert ids_of(rows) == all_ids()
    assert stats.rate_limited == 1, "page 2 was throttled, waited out and sent again on the call's only try"


def test_a_429_without_a_wait_backs_off_and_succeeds(fake_platform, make_client):
    fake_platform.update(rate_limit="1/1s", retry_after_mode="neither")
    stats = CallStats()
    rows = list_all(make_client(backoff_base=0.3, backoff_cap=1.0, max_attempts=12), page_size=50, stats=stats)
    assert ids_of(rows) == all_ids()
    assert stats.rate_limited >= 1 and stats.retries == stats.rate_limited


def test_an_absurd_retry_after_fails_at_once_naming_the_cap(fake_platform, make_client):
    fake_platform.update(rate_limit="1/60s", retry_after_override=86400)
    client = make_client(max_wait=10.0)
    list_all(client, page_size=100)  # spends the budget
    stats = CallStats()
    with pytest.raises(PlatformError) as caught:
        list_all(client, page_size=100, stats=stats)
    error = caught.value
    assert error.category == RATE_LIMITED and error.http_status == 429
    assert not error.retryable
    assert "86400" in error.message and "cap" in error.message
    assert stats.requests == 1 and stats.retries == 0  # told once, never tried again


# --- tokens -------------------------------------------------------------------------


def test_a_token_expiring_mid_run_is_replaced_and_calls_go_on(fake_platform, make_client):
    fake_platform.update(token_lifetime=0.5, sync_latency=0.2)
    client, stats = make_client(), CallStats()
    for platform_id in all_ids(8):  # ~1.6 s of calls on 0.5 s tokens
        client.sync_campaign(platform_id, stats=stats)
    assert set(fake_platform.stats["synced_ids"]) == set(all_ids(8))
    assert fake_platform.stats["tokens_issued"] >= 3


def test_a_revoked_token_is_refreshed_once_and_the_call_retried(fake_platform, make_client):
    fake_platform.update(token_revoke_every=3)
    client, stats = make_client(), CallStats()
    for platform_id in all_ids(9):
        client.sync_campaign(platform_id, stats=stats)
    platform_stats = fake_platform.stats
    assert set(platform_stats["synced_ids"]) == set(all_ids(9))
    assert platform_stats["responses"][401] >= 2  # the revoked token was refused...
    assert platform_stats["tokens_issued"] == 1 + platform_stats["responses"][401]  # ...and replaced each time


def test_two_fresh_tokens_refused_on_first_use_are_fatal_whatever_the_tries(fake_platform, make_client):
    fake_platform.update(token_lifetime=1e-6)  # every token is dead on arrival
    stats = CallStats()
    with pytest.raises(PlatformError) as caught:
        list_all(make_client(max_attempts=5), stats=stats)
    error = caught.value
    assert error.category == AUTH and error.fatal and error.http_status == 401
    assert "credentials" in error.message
    platform_stats = fake_platform.stats
    # 401s spend no tries: the rule is two tokens in a row refused on their first use (PLATFORM_API.md).
    assert platform_stats["requests"] == {"token": 2, "list": 2} and platform_stats["responses"][401] == 2


def test_wrong_credentials_are_a_fatal_auth_error_saying_what_to_fix(fake_platform, make_client):
    with pytest.raises(PlatformError) as caught:
        list_all(make_client(password="not-the-password"))
    error = caught.value
    assert error.category == AUTH and error.fatal and not error.retryable
    assert "AD_PLATFORM_PASSWORD" in error.message and "email or password" in error.message
    assert "not-the-password" not in error.message
    assert fake_platform.stats["requests"] == {"token": 1}  # not retried, no data call made


# --- permanent and malformed answers --------------------------------------------------


def test_a_404_is_not_retried(fake_platform, make_client):
    fake_platform.update(not_found_rate=0.2)
    deleted = fake_platform.deleted_ids()[0]
    stats = CallStats()
    with pytest.raises(PlatformError) as caught:
        make_client().sync_campaign(deleted, stats=stats)
    error = caught.value
    assert error.category == CLIENT_ERROR and error.http_status == 404 and not error.retryable
    assert stats.retries == 0
    assert fake_platform.stats["requests"]["sync"] == 1


@pytest.mark.parametrize("mode", ["truncated_json", "data_not_list", "html"])
def test_a_malformed_list_body_is_a_bad_response_error(fake_platform, make_client, mode):
    fake_platform.update(malformed_list=mode)
    with pytest.raises(PlatformError) as caught:
        list_all(make_client(max_attempts=2))
    assert caught.value.category == BAD_RESPONSE
    assert "<html" not in caught.value.message.lower()


def test_a_list_without_pagination_is_read_until_a_short_page(fake_platform, make_client):
    fake_platform.update(malformed_list="no_pagination")
    assert ids_of(list_all(make_client(), page_size=30)) == all_ids()


def test_html_error_pages_are_retried_and_never_crash_the_client(fake_platform, make_client):
    fake_platform.update(html_error_rate=0.4, seed=2)
    client, stats = make_client(max_attempts=8), CallStats()
    assert ids_of(list_all(client, page_size=10, stats=stats)) == all_ids()
    for platform_id in all_ids(5):
        client.sync_campaign(platform_id, stats=stats)
    assert stats.retries > 0


def test_html_error_pages_on_every_call_end_in_a_platform_error(fake_platform, make_client):
    fake_platform.update(html_error_rate=1.0, seed=2)
    with pytest.raises(PlatformError) as caught:
        list_all(make_client(max_attempts=4))
    assert caught.value.category in (BAD_RESPONSE, SERVER_ERROR)
    assert "nginx" not in caught.value.message


def test_a_500_stack_trace_and_its_secret_never_reach_the_error_message(fake_platform, make_client):
    fake_platform.update(server_error_rate=1.0)
    with pytest.raises(PlatformError) as caught:
        make_client(max_attempts=2).sync_campaign("campaign_1", stats=CallStats())
    error = caught.value
    assert error.category == SERVER_ERROR and error.http_status == 500
    for text in (error.message, str(error), repr(error)):
        assert FAKE_SECRET not in text
        assert "Traceback" not in text and "Pa55w0rd" not in text


def test_a_refresh_refused_for_a_changed_password_names_the_credentials(fake_platform, make_client):
    client = make_client()
    client.sync_campaign("campaign_1", stats=CallStats())
    fake_platform.update(password="rotated-elsewhere", token_revoke_every=1)
    client.sync_campaign("campaign_2", stats=CallStats())  # spends (and revokes) the current token
    with pytest.raises(PlatformError) as caught:
        client.sync_campaign("campaign_3", stats=CallStats())
    assert caught.value.category == AUTH and caught.value.fatal
    assert "AD_PLATFORM_PASSWORD" in caught.value.message
