"""A run never wedges its account: unexpected errors, refused starts, broker trouble, resumes, abandoned attempts.

Every run here goes through the services against the real fake platform, or
on real `manage.py qcluster` processes where the cluster is what is tested;
`assert_run_invariants` is checked after each scenario. Where a test makes a
step raise through a monkeypatch, it is because no real part reaches that
corner any more (the bad inputs that once did are refused or stored as bad
fields); the comment says so.
"""
from __future__ import annotations

import functools
import io
import secrets
import threading
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from campaigns.models import (
    AdAccount,
    AttemptStatus,
    Campaign,
    ErrorCategory,
    RunStatus,
    SyncAttempt,
    SyncRun,
    Trigger,
)
from syncer import drain, queueing, services, tasks
from syncer.cluster_keys import MISMATCH, key_fingerprint
from syncer.failures import not_queued_reason
from syncer.services import SyncRefused, run_retry_failed, sync_run_start, sync_runs_start
from tests.queue import queued_tasks
from tests.runs import check_invariants, finished, free_port, sync
from tests.waiting import wait_until

pytest.register_assert_rewrite("tests.people_fixtures")  # it is a plugin too (below): rewrite before importing

pytest_plugins = ["tests.people_fixtures"]  # client_as

pytestmark = [pytest.mark.django_db(transaction=True)]  # real commits: enqueues run at them, as in production

TRACEBACK = "Traceback (most recent call last):"
PLATFORM_BODY = "<html>platform body with tok_abcdefghijklmnopqrstu</html>"  # never to be copied anywhere


def check_ended_cleanly(run: SyncRun, platform, logs: io.StringIO | str, *, provoked: str,
                        logged_by_now: bool = True) -> None:
    """The invariants, where every traceback logged is the one of the error the test provoked.

    The log keeps that traceback on purpose (the run's own line does not say more than the error's type);
    `logged_by_now=False` where another process logs it in its own time.
    """
    text = logs if isinstance(logs, str) else logs.getvalue()
    blocks = text.split(TRACEBACK)
    assert len(blocks) > 1 or not logged_by_now, "the log keeps the traceback of the unexpected error"
    chained = ("During handling of the above exception", "The above exception was the direct cause")
    unexpected = [block for block in blocks[1:] if provoked not in block and not any(c in block for c in chained)]
    assert not unexpected, f"another traceback was logged:\n{unexpected[0][:3000]}"
    check_invariants(run, platform, io.StringIO(text.replace(TRACEBACK, "(the provoked error's traceback)")))
    assert PLATFORM_BODY not in run.error_message and "tok_" not in text


def raise_on_call(number: int, error: Exception, real):
    """`real`, except that its `number`th call raises `error` (calls are counted across threads)."""
    calls, lock = [0], threading.Lock()

    def step(*args, **kwargs):
        with lock:
            calls[0] += 1
            mine = calls[0]
        if mine == number:
            raise error
        return real(*args, **kwargs)

    return step


def surrogate_error() -> UnicodeEncodeError:
    return UnicodeEncodeError("utf-8", f"caf\udce9 {PLATFORM_BODY}", 3, 4, "surrogates not allowed")


# --- point 5: an unexpected error fails the run at once, with one line --------------------------

def test_an_unexpected_error_while_listing_fails_the_run_at_once_and_the_account_can_sync_again(
        fake_platform, account, captured_logs, monkeypatch):
    # A lone surrogate in a name once raised this while storing; such fields are now stored empty, so the
    # error is provoked here: no real part reaches this corner any more.
    with monkeypatch.context() as patch:
        patch.setattr(services, "listing_fetch", raise_on_call(1, surrogate_error(), services.listing_fetch))
        run = sync(account)
    assert (run.status, run.error_message) == (
        RunStatus.FAILED, "internal error while listing: UnicodeEncodeError (see the log)")
    check_ended_cleanly(run, fake_platform, captured_logs, provoked="UnicodeEncodeError")

    again = sync(account)
    assert again.status == RunStatus.SUCCEEDED, again.error_message


def test_a_drain_thread_that_dies_fails_the_run_and_leaves_no_attempt_open(fake_platform, account, captured_logs,
                                                                            monkeypatch):
    # A thread dying between its claim and its outcome: provoked, since no real part raises there.
    fake_platform.update(sync_latency=0.05)
    monkeypatch.setattr(drain, "attempt_sync", raise_on_call(5, RuntimeError(PLATFORM_BODY), drain.attempt_sync))
    run = sync(account)
    assert (run.status, run.error_message) == (
        RunStatus.FAILED, "internal error while syncing: RuntimeError (see the log)")
    check_ended_cleanly(run, fake_platform, captured_logs, provoked="RuntimeError")
    abandoned = SyncAttempt.objects.get(run=run, message__startswith="its worker stopped before recording")
    assert (abandoned.status, abandoned.error_category) == (AttemptStatus.FAILED, ErrorCategory.INTERNAL)
    assert abandoned.message.endswith("the run failed: internal error while syncing: RuntimeError (see the log)")
    assert Campaign.objects.get(pk=abandoned.campaign_id).last_sync_status == "failed"
    assert sync(account).status == RunStatus.SUCCEEDED, "the account syncs again at once"


def test_the_command_fails_its_run_in_one_line_on_an_unexpected_error(fake_platform, account, monkeypatch):
    # Prepare and drain threads catch their own errors (above); this provokes one outside them.
    monkeypatch.setattr(services, "run_drain", raise_on_call(1, RuntimeError(PLATFORM_BODY), services.run_drain))
    with pytest.raises(CommandError) as failed:
        call_command("sync_campaigns", "--account", account.slug, stdout=io.StringIO(), stderr=io.StringIO())
    run = SyncRun.objects.get(account=account)
    assert failed.value.returncode == 2
    assert str(failed.value) == f"run #{run.pk} failed: internal error while running: RuntimeError (see the log)"
    assert not SyncAttempt.objects.filter(run=run, status=AttemptStatus.PENDING).exists()
    assert set(SyncAttempt.objects.filter(run=run).values_list("error_category", flat=True)) == {"internal"}
    assert sync(account).status == RunStatus.SUCCEEDED, "the account syncs again at once"


def test_a_foreground_drain_slice_that_meets_an_unexpected_error_fails_its_run(fake_platform, account, settings,
                                                                               monkeypatch):
    # A worker with no room to host threads drains in the foreground (syncer/hosting.py); the error is provoked.
    settings.SYNC = {**settings.SYNC, "THREADS_PER_WORKER": 1}
    run = sync_run_start(account=account, trigger=Trigger.COMMAND, triggered_by="test")
    assert services.run_prepare(run_id=run.pk)
    monkeypatch.setattr(services, "run_drain", raise_on_call(1, RuntimeError(PLATFORM_BODY), services.run_drain))
    tasks.run_drain_task(run.pk, 4)
    run = SyncRun.objects.get(pk=run.pk)
    assert (run.status, run.error_message) == (
        RunStatus.FAILED, "internal error while syncing: RuntimeError (see the log)")
    assert not SyncAttempt.objects.filter(run=run, status__in=[AttemptStatus.PENDING, AttemptStatus.RUNNING]).exists()


# --- point 5: an account that cannot sync is refused at the door ------------------------------------

def no_password(account: AdAccount) -> None:
    AdAccount.objects.filter(pk=account.pk).update(encrypted_password="")


def password_of_another_key(account: AdAccount, settings) -> None:
    """The password as a process on another SECRET_KEY stored it (a rotated key, say)."""
    ours = settings.SECRET_KEY
    settings.SECRET_KEY = secrets.token_urlsafe(50)
    account.set_password("demo-password")
    settings.SECRET_KEY = ours
    AdAccount.objects.filter(pk=account.pk).update(encrypted_password=account.encrypted_password)


def non_ascii_client_id(account: AdAccount) -> None:
    # The admin's form refuses it; a change of client id clears the password unless one comes with it.
    AdAccount.objects.filter(pk=account.pk).update(client_id="client-\u00e4cme",
                                                   encrypted_password=account.encrypted_password)


def start_one(account: AdAccount) -> SyncRun:
    return sync_run_start(account=account, trigger=Trigger.ADMIN, triggered_by="test", enqueue=True)


def start_many(account: AdAccount) -> SyncRun:
    [started] = sync_runs_start(accounts=[account], trigger=Trigger.ADMIN, triggered_by="test", enqueue=True)
    if isinstance(started, SyncRefused):
        raise started
    return started


def retry(account: AdAccount) -> SyncRun:
    earlier = SyncRun.objects.create(account=account, trigger=Trigger.COMMAND, status=RunStatus.PARTIAL,
                                     finished_at=timezone.now(), campaigns_listed=1, campaigns_failed=1)
    campaign = Campaign.objects.create(account=account, platform_id="campaign_1", name="One")
    SyncAttempt.objects.create(run=earlier, campaign=campaign, platform_id="campaign_1", status=AttemptStatus.FAILED)
    return run_retry_failed(run=earlier, trigger=Trigger.ADMIN, triggered_by="test", enqueue=True)


@pytest.mark.parametrize("start", [start_one, start_many, retry], ids=["sync_run_start", "sync_runs_start", "retry"])
@pytest.mark.parametrize("breakage, says", [
    (lambda account, settings: no_password(account), "has no password: enter it in the admin"),
    (password_of_another_key, "its stored password cannot be decrypted with this process's SECRET_KEY"),
    (lambda account, settings: non_ascii_client_id(account), "the client id must be printable ASCII"),
], ids=["no-password", "undecryptable-password", "non-ascii-client-id"])
def test_an_account_that_cannot_sync_is_refused_at_the_door_in_one_line(account, settings, start, breakage, says):
    breakage(account, settings)
    account = AdAccount.objects.get(pk=account.pk)
    with pytest.raises(SyncRefused) as refused:
        start(account)
    line = str(refused.value)
    assert says in line and "\n" not in line and line.startswith(f"account {account.slug!r}")
    assert not SyncRun.objects.filter(account=account, status__in=[RunStatus.QUEUED, RunStatus.RUNNING]).exists()
    assert queued_tasks() == []


def test_test_connection_names_what_to_fix_on_an_account_that_cannot_sync(account, settings):
    password_of_another_key(account, settings)
    ok, message = services.account_test_connection(account=AdAccount.objects.get(pk=account.pk))
    assert not ok and "its stored password cannot be decrypted with this process's SECRET_KEY" in message


# --- point 10: a task the broker will not take fails its run at once -------------------------------

NOT_QUEUED = "could not queue the run on the task broker (ConnectionError): check REDIS_URL and that the broker runs"


@pytest.fixture
def broker_down(monkeypatch):
    """django-q2 pointed at a Redis port where nothing listens, and this process's broker forgotten."""
    from django_q.conf import Conf

    def down(patch) -> None:
        patch.setattr(Conf, "ORM", None)
        patch.setattr(Conf, "REDIS", f"redis://127.0.0.1:{free_port()}/0")
        patch.setattr(queueing, "broker_for", functools.lru_cache(maxsize=8)(queueing.get_broker))

    return down


def test_a_run_the_broker_will_not_take_fails_at_once_saying_so_and_the_account_can_sync_again(
        fake_platform, account, broker_down, monkeypatch, captured_logs):
    with monkeypatch.context() as patch:
        broker_down(patch)
        with pytest.raises(SyncRefused) as refused:
            start_one(account)
    run = refused.value.failed_run
    assert str(refused.value) == f"run #{run.pk} for 'acme' failed: {NOT_QUEUED}"
    stored = SyncRun.objects.get(pk=run.pk)
    assert (stored.status, stored.error_message) == (RunStatus.FAILED, NOT_QUEUED)
    check_ended_cleanly(stored, fake_platform, captured_logs, provoked="ConnectionError")

    again = start_one(account)
    assert [task["args"][0] for task in queued_tasks()] == [again.pk], "the account is queued again at once"


def test_the_status_page_says_which_run_the_broker_would_not_take(fake_platform, account, client_as, broker_down,
                                                                  monkeypatch):
    staff = client_as("staff_trigger")
    with monkeypatch.context() as patch:
        broker_down(patch)
        response = staff.post(f"/status/accounts/{account.pk}/sync/", follow=True)
    run = SyncRun.objects.get(account=account)
    assert run.status == RunStatus.FAILED
    [message] = response.context["messages"]
    assert message.level_tag == "error"
    assert str(message) == (f"run #{run.pk} for &#x27;acme&#x27; failed: {NOT_QUEUED}: see "
                            f'<a href="/admin/campaigns/syncrun/{run.pk}/change/">Run #{run.pk}</a>.')


def test_sync_now_on_many_accounts_queues_the_others_when_one_enqueue_fails(make_account, client_as, monkeypatch):
    accounts = [make_account(slug=slug) for slug in ("alpha", "bravo", "charlie")]
    runs_of_bravo = SyncRun.objects.filter(account=accounts[1])
    real_async_task = queueing.async_task

    def broker_refusing_bravo(func, run_id, *args, **kwargs):
        # A mock: one broker that fails for one task of several is no state a real broker can be put in.
        if runs_of_bravo.filter(pk=run_id).exists():
            raise ConnectionError("Error 111 connecting to redis:6379. Connection refused.")
        return real_async_task(func, run_id, *args, **kwargs)

    monkeypatch.setattr(queueing, "async_task", broker_refusing_bravo)
    not_queued = not_queued_reason(ConnectionError())  # its hint names the broker this suite runs on
    response = client_as("staff_trigger").post(
        "/admin/campaigns/adaccount/", {"action": "sync_now", "_selected_action": [a.pk for a in accounts],
                                        "index": 0}, follow=True)
    alpha, bravo, charlie = (SyncRun.objects.get(account=account) for account in accounts)
    assert [task["args"][0] for task in queued_tasks()] == [alpha.pk, charlie.pk]
    assert (alpha.status, bravo.status, charlie.status) == (RunStatus.QUEUED, RunStatus.FAILED, RunStatus.QUEUED)
    assert bravo.error_message == not_queued
    levels = {message.level_tag: str(message) for message in response.context["messages"]}
    assert f"run #{bravo.pk} for &#x27;bravo&#x27; failed: {not_queued}" in levels["error"]
    assert len(response.context["messages"]) == 3


# --- on real clusters: a step that fails there, another SECRET_KEY, silent workers, abandoned claims -----

def stale_prepared_run(account: AdAccount) -> SyncRun:
    """A run prepared here whose worker then fell silent (its heartbeat an hour old): a watchdog resumes it."""
    run = sync_run_start(account=account, trigger=Trigger.COMMAND, triggered_by="test")
    assert services.run_prepare(run_id=run.pk)
    SyncRun.objects.filter(pk=run.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))
    return run


@pytest.mark.cluster
def test_a_cluster_that_cannot_decrypt_the_password_fails_the_run_at_once_instead_of_resuming_it(
        qcluster, fake_platform, account, captured_logs):
    """Its hosted drain meets ImproperlyConfigured; it once only logged it, and the watchdog resumed it every lease."""
    run = stale_prepared_run(account)
    cluster = qcluster.start(SECRET_KEY=secrets.token_urlsafe(50))
    run = wait_until(lambda: finished(run.pk), timeout=60, message="the cluster ends the run it cannot sync")
    assert (run.status, run.error_message, run.resumes) == (
        RunStatus.FAILED, "internal error while syncing: ImproperlyConfigured (see the cluster log)", 1)
    assert set(SyncAttempt.objects.filter(run=run).values_list("error_category", flat=True)) == {"internal"}
    check_ended_cleanly(run, fake_platform, cluster.log(), provoked="ImproperlyConfigured")
    assert "cannot be decrypted: SECRET_KEY changed" in cluster.log(), "the cluster log says what went wrong"
    assert sync(account).status == RunStatus.SUCCEEDED, "the account syncs again at once"


@pytest.mark.cluster
def test_a_client_id_the_platform_cannot_be_sent_fails_the_run_in_the_cluster_at_once(
        qcluster, fake_platform, account, captured_logs):
    run = start_one(account)  # queued with a good client id, then changed behind the admin's back
    # Not even Latin-1: no header can carry it (the password kept: a changed client id would clear it).
    AdAccount.objects.filter(pk=account.pk).update(client_id="\u5ba2\u6237-acme",
                                                   encrypted_password=account.encrypted_password)
    cluster = qcluster.start()
    run = wait_until(lambda: finished(run.pk), timeout=60, message="the cluster ends the run")
    # The client refuses to send it, in one line that says what to fix (no UnicodeEncodeError from requests).
    assert run.status == RunStatus.FAILED and run.error_message.startswith("listing campaigns failed: the account's "
                                                                           "client id is not printable ASCII")
    check_invariants(run, fake_platform, captured_logs, extra_log_text=cluster.log())

    AdAccount.objects.filter(pk=account.pk).update(client_id="client-acme",
                                                   encrypted_password=account.encrypted_password)
    again = start_one(AdAccount.objects.get(pk=account.pk))
    again = wait_until(lambda: finished(again.pk), timeout=60, message="the cluster syncs the account again")
    assert again.status == RunStatus.SUCCEEDED, again.error_message


def foreign_cluster_seen() -> bool:
    from syncer.cluster_keys import foreign_cluster_refusal

    return bool(foreign_cluster_refusal())


@pytest.mark.cluster
def test_a_sync_is_refused_while_the_live_cluster_runs_on_another_secret_key(qcluster, make_account):
    accounts = [make_account(slug="alpha"), make_account(slug="bravo")]
    qcluster.start(SECRET_KEY=secrets.token_urlsafe(50))
    wait_until(foreign_cluster_seen, timeout=60, message="the cluster publishes its key fingerprint")
    with pytest.raises(SyncRefused, match=f"^{MISMATCH}$"):
        start_one(accounts[0])
    refusals = sync_runs_start(accounts=accounts, trigger=Trigger.ADMIN, triggered_by="test", enqueue=True)
    assert [str(refused) for refused in refusals] == [MISMATCH, MISMATCH]
    assert not SyncRun.objects.exists() and queued_tasks() == []


@pytest.mark.cluster
def test_a_run_queued_under_another_secret_key_is_failed_by_the_cluster_saying_why(qcluster, fake_platform, account,
                                                                                 captured_logs):
    run = start_one(account)  # no cluster is up yet to say its key differs
    assert SyncRun.objects.get(pk=run.pk).queued_key == key_fingerprint()
    cluster = qcluster.start(SECRET_KEY=secrets.token_urlsafe(50))
    run = wait_until(lambda: finished(run.pk), timeout=60, message="the cluster fails the run it cannot verify")
    assert (run.status, run.error_message) == (RunStatus.FAILED, f"its task could not be verified: {MISMATCH}")
    # django-q2's pusher logs the task it drops when it gets to it, which may be after the watchdog failed the run.
    check_ended_cleanly(run, fake_platform, cluster.log(), provoked="BadSignature", logged_by_now=False)
    assert key_fingerprint() not in cluster.log() and "SECRET_KEY=" not in cluster.log()
    assert sync(account).status == RunStatus.SUCCEEDED, "the account syncs again at once"


def synced(run: SyncRun) -> int:
    return SyncRun.objects.get(pk=run.pk).campaigns_synced


def open_attempts(run: SyncRun):
    return SyncAttempt.objects.filter(run=run, status__in=[AttemptStatus.PENDING, AttemptStatus.RUNNING])


@pytest.mark.cluster
def test_a_run_whose_workers_fall_silent_again_and_again_is_failed_after_its_resumes(qcluster, fake_platform,
                                                                                    account, captured_logs):
    fake_platform.update(campaigns=60, sync_latency=0.3)
    run = sync_run_start(account=account, trigger=Trigger.COMMAND, triggered_by="test", concurrency=2, enqueue=True)
    env = {"SYNC_MAX_RESUMES": "1"}
    first = qcluster.start(**env)
    wait_until(lambda: synced(run) >= 3, timeout=60, message="the first cluster syncs some campaigns")
    first.kill()
    before = synced(run)
    second = qcluster.start(**env)
    wait_until(lambda: synced(run) >= before + 2, timeout=60, message="a second cluster resumes the run")
    second.kill()
    assert SyncRun.objects.get(pk=run.pk).resumes == 1
    assert SyncAttempt.objects.filter(run=run, status=AttemptStatus.RUNNING).exists(), "the killed one held claims"

    third = qcluster.start(**env)
    run = wait_until(lambda: finished(run.pk), timeout=60, message="the third cluster gives the run up")
    assert run.status == RunStatus.FAILED and run.resumes == 1
    assert run.error_message == ("its workers fell silent 2 times (the watchdog resumes a run 1 time at most, "
                                 "SYNC_MAX_RESUMES); see the cluster log for why")
    wait_until(lambda: not open_attempts(run).exists(), timeout=30,
               message="the watchdog closes the claims of the killed workers")
    abandoned = SyncAttempt.objects.filter(run=run, message__startswith="its worker stopped before recording")
    assert abandoned.exists() and set(abandoned.values_list("status", flat=True)) == {AttemptStatus.FAILED}
    check_invariants(run, fake_platform, captured_logs, extra_log_text=third.log())


@pytest.mark.cluster
def test_the_watchdog_closes_the_claims_a_killed_cluster_left_in_a_cancelled_run(qcluster, fake_platform, account,
                                                                                captured_logs):
    fake_platform.update(campaigns=60, sync_latency=0.3)
    run = sync_run_start(account=account, trigger=Trigger.COMMAND, triggered_by="test", concurrency=4, enqueue=True)
    first = qcluster.start()
    wait_until(lambda: synced(run) >= 3, timeout=60, message="the cluster syncs some campaigns")
    first.kill()
    assert services.run_cancel(run_id=run.pk, who="test")
    held = list(SyncAttempt.objects.filter(run=run, status=AttemptStatus.RUNNING).values_list("pk", flat=True))
    assert held, "the killed cluster held claims"

    second = qcluster.start()
    wait_until(lambda: not open_attempts(run).exists(), timeout=60,
               message="the new cluster's watchdog closes the claims nobody will finish")
    closed = SyncAttempt.objects.filter(pk__in=held)
    assert set(closed.values_list("status", flat=True)) == {AttemptStatus.CANCELLED}
    assert set(closed.values_list("message", flat=True)) == {
        "cancelled by test; its worker stopped before recording the outcome"}
    check_invariants(SyncRun.objects.get(pk=run.pk), fake_platform, captured_logs, extra_log_text=second.log())
