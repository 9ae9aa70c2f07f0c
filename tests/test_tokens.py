"""Tokens: churn is refreshed through, withdrawn access fails fast, bad credentials at once; and what the
client keeps: only live secrets in the log registry, one client per account (a replaced one is closed).

Whole runs go through the services against the fake platform (as tests/test_faults.py drives them).
"""
from __future__ import annotations

import pytest

from campaigns.models import RunStatus, SyncRun, Trigger
from syncer.accounts import client_for
from syncer.calls import CallStats
from syncer.logs import live_secret_count, redact
from syncer.services import run_execute, sync_run_start
from syncer.tokens import KEEP
from tests.runs import Background, assert_all_synced, check_invariants, failures, sync
from tests.waiting import wait_until

pytestmark = [pytest.mark.django_db(transaction=True)]

CONCURRENCY = 10
ACCESS_WITHDRAWN = "refused two freshly issued tokens"


def revocations(authed_calls: int, *, revoke_all_every: int = 0, token_revoke_every: int = 0) -> int:
    """How many of the fake's first `authed_calls` accepted calls ended a token (handlers.py `_api_gate`)."""
    def ends_a_token(n: int) -> bool:
        return any(every and n % every == 0 for every in (revoke_all_every, token_revoke_every))

    return sum(1 for n in range(1, authed_calls + 1) if ends_a_token(n))


# --- churn ----------------------------------------------------------------------------------------------

CHURN = [
    pytest.param({"revoke_all_every": 3, "token_revoke_every": 2}, id="all-every-3-and-each-every-2"),
    pytest.param({"token_revoke_every": 2, "revoke_on_issue": True}, id="each-every-2-and-on-issue"),
    pytest.param({"revoke_all_every": 3, "token_revoke_every": 2, "revoke_on_issue": True}, id="all-three"),
]


@pytest.mark.parametrize("tries", [pytest.param(5, id="default-tries"), pytest.param(1, id="one-try")])
@pytest.mark.parametrize("knobs", CHURN)
def test_token_churn_at_concurrency_10_syncs_everything_and_401s_spend_no_tries(fake_platform, account, settings,
                                                                                fast_sync, captured_logs, knobs,
                                                                                tries):
    # One try is enough: a 401 is answered with a new token, not with a try. (Spending tries on them,
    # the old client failed here with "rejected every freshly issued token".) Calls of 0.2 s keep ten
    # in flight across each revocation; the read timeout stays well above them.
    settings.SYNC = {**fast_sync, "MAX_ATTEMPTS": tries, "REQUEST_TIMEOUT": 5.0}
    fake_platform.update(campaigns=60, sync_latency=0.2, **knobs)
    run = sync(account, concurrency=CONCURRENCY, timeout=90)
    check_invariants(run, fake_platform, captured_logs)
    assert_all_synced(run, fake_platform)
    stats = fake_platform.stats
    assert stats["tokens_revoked"] > 0 and stats["responses"][401] > 0
    # The threads share one token: one revocation costs one new token, however many calls it refused.
    authed = stats["requests"]["list"] + stats["requests"]["sync"] - stats["responses"][401]
    ended = revocations(authed, revoke_all_every=knobs.get("revoke_all_every", 0),
                        token_revoke_every=knobs["token_revoke_every"])
    assert stats["tokens_issued"] <= ended + 1, f"{stats['tokens_issued']} tokens for {ended} revocations"
    assert stats["tokens_issued"] < stats["responses"][401], "threads refused together share the new token"


# --- access withdrawn, bad credentials ---------------------------------------------------------------------

def test_tokens_refused_from_the_start_fail_the_run_at_once_with_one_line(fake_platform, account, fast_sync,
                                                                         captured_logs):
    fake_platform.update(campaigns=60, sync_latency=0.1, refuse_tokens=True)
    run = sync(account, concurrency=CONCURRENCY)
    check_invariants(run, fake_platform, captured_logs)
    assert run.status == RunStatus.FAILED
    assert ACCESS_WITHDRAWN in run.error_message and "check the account's credentials" in run.error_message
    assert "\n" not in run.error_message
    assert fake_platform.stats["requests"] == {"token": 2, "list": 2}, "two fresh tokens refused, nothing more"


def test_tokens_refused_mid_run_fail_the_run_fast_from_any_thread(fake_platform, account, fast_sync, captured_logs):
    fake_platform.update(campaigns=60, sync_latency=0.1)
    run = sync_run_start(account=account, trigger=Trigger.COMMAND, triggered_by="token test", concurrency=CONCURRENCY)
    running = Background(lambda: run_execute(run_id=run.pk), name="run")
    wait_until(lambda: fake_platform.stats["synced_total"] >= 10, timeout=30, poll=0.01,
               message="the run syncs some campaigns")
    issued_before = fake_platform.stats["tokens_issued"]
    fake_platform.update(refuse_tokens=True)
    running.result(60)
    run = SyncRun.objects.get(pk=run.pk)
    check_invariants(run, fake_platform, captured_logs)
    assert run.status == RunStatus.FAILED, failures(run)
    assert ACCESS_WITHDRAWN in run.error_message and "\n" not in run.error_message, run.error_message
    # The fatal pair is two tokens issued one after the other. Each token left unjudged in between
    # still has a thread's call in flight, so at most one per thread comes between: 2 x threads.
    fresh = fake_platform.stats["tokens_issued"] - issued_before
    assert 2 <= fresh <= 2 * CONCURRENCY, f"{fresh} tokens fetched after access was withdrawn"


def test_bad_credentials_still_fail_the_run_at_once(fake_platform, make_account, captured_logs):
    account = make_account(password="not-the-password")
    run = sync(account, concurrency=CONCURRENCY)
    check_invariants(run, fake_platform, captured_logs)
    assert run.status == RunStatus.FAILED
    assert "AD_PLATFORM_PASSWORD" in run.error_message and "\n" not in run.error_message
    assert fake_platform.stats["requests"] == {"token": 1}


# --- what the client keeps -------------------------------------------------------------------------------

def test_the_secret_registry_keeps_the_live_tokens_only(fake_platform, make_client):
    before = live_secret_count()
    client = make_client()
    fake_platform.update(token_revoke_every=1)  # every call ends its token: one new token per call
    for _ in range(200):
        client.check_connection()
    assert fake_platform.stats["tokens_issued"] >= 200
    # The password, its Basic credential, and the newest tokens (a call in flight may still use one).
    assert live_secret_count() - before <= 2 + KEEP
    # Glued to a letter, a token escapes the tok_ pattern (it needs a word boundary): only the registry masks it.
    issued = fake_platform.issued_tokens()
    assert redact(f"x{issued[-1]}x") == "x***x", "the live token is still masked in the logs"
    assert redact(f"x{issued[0]}x") == f"x{issued[0]}x", "a token replaced long ago has left the registry"
    client.close()
    assert live_secret_count() == before, "a closed client leaves no secret behind"


def test_an_edited_account_gets_a_new_client_and_the_replaced_one_is_closed(fake_platform, account):
    first = client_for(account)
    assert client_for(account) is first, "one client per account and process"
    first.sync_campaign("campaign_1", stats=CallStats())
    account.rate_limit = "100/1s"
    account.save()
    second = client_for(account)
    assert second is not first and first.closed and not second.closed
    account.email = "someone-else@example.com"
    account.save()
    third = client_for(account)
    assert second.closed and not third.closed and client_for(account) is third
    third.close()


def test_past_its_bound_the_least_recently_used_client_is_closed_with_its_budget_state(make_account, settings):
    """A process's clients are a bounded cache (twice the drain threads it hosts): the least recently used goes,
    closed, and with it what the limiter kept of its platform client; the one used last stays."""
    import gc

    from syncer import limiter

    settings.SYNC = {**settings.SYNC, "THREADS_PER_WORKER": 1}  # a bound of two clients
    first, second, third = (make_account(slug=slug, rate_limit="10/2s") for slug in ("one", "two", "three"))
    clients = [client_for(first), client_for(second)]
    assert client_for(first) is clients[0], "used last: the second is now the least recently used"
    newest = client_for(third)
    assert clients[1].closed and not clients[0].closed and not newest.closed, "closed: its secrets are forgotten"
    assert client_for(first) is clients[0], "the cache kept the one used last"
    dropped_key = next(key for key in limiter._in_process if key[2] == "client-two")
    del clients[1]
    gc.collect()
    assert dropped_key not in limiter._in_process, "the dropped client's budget state went with its limiter"
    assert {key[2] for key in limiter._in_process} >= {"client-one", "client-three"}
    for client in (clients[0], newest):
        client.close()


def test_making_a_client_reads_the_database_outside_the_lock_every_account_shares(account, monkeypatch):
    """The threads queued for that lock may hold every pooled connection: a read under it wedged a fleet."""
    from syncer import accounts

    real, read_under_lock = accounts.limiter_for, []

    def limiter_for(for_account):
        read_under_lock.append(accounts._clients_lock.locked())
        return real(for_account)

    monkeypatch.setattr(accounts, "limiter_for", limiter_for)
    client = client_for(account)
    assert read_under_lock == [False]
    assert client_for(account) is client and read_under_lock == [False], "the second call reads nothing"
    client.close()
