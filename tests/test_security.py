"""Nobody let in: start-up refuses what is unsafe, keys rotate without losing a password, a password stays with
its login, only superusers write django-q2 schedules, the password never reaches an error report, and every
concurrency knob has a cap.
"""
from __future__ import annotations

import base64
import io
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from django.contrib.auth.models import Permission
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.views.debug import ExceptionReporter

from campaigns.models import AdAccount
from syncer.accounts import account_default_get
from syncer.schedules import schedule_cron, schedule_set
from tests.conftest import FAKE_EMAIL, FAKE_PASSWORD
from tests.queue import set_schedules

pytest.register_assert_rewrite("tests.people_fixtures")  # it is a plugin too (below): rewrite before importing

from tests.people_fixtures import make_offline_account  # noqa: E402

pytest_plugins = ["tests.people_fixtures"]  # make_user, private_cache

ROOT = Path(__file__).resolve().parent.parent
OLD_KEY, NEW_KEY = "the-old-key-" + "o" * 50, "the-new-key-" + "n" * 50


# --- start-up, through real processes ---------------------------------------------------------------

def run_python(*args: str, tmp_path: Path, timeout: float = 60, **env: str | None) -> subprocess.CompletedProcess:
    """`python *args` in the checkout with none of our variables but these (a key too, as make sets one)."""
    ours = ("AD_PLATFORM_", "SYNC_", "Q_", "SECURE_", "SECRET_KEY", "DEBUG", "ALLOWED_HOSTS", "DATABASE_URL",
            "REDIS_URL", "LOG_")
    environment = {key: value for key, value in os.environ.items() if not key.startswith(ours)}
    environment.update({"DATABASE_URL": f"sqlite:///{tmp_path / 'security.sqlite3'}", "SECRET_KEY": NEW_KEY, **env})
    environment = {key: value for key, value in environment.items() if value is not None}
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=environment, capture_output=True, text=True,
                          timeout=timeout, check=False)


def only_line(result: subprocess.CompletedProcess) -> str:
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize("entry, exit_status", [
    pytest.param(("manage.py", "check"), 2, id="manage.py"),
    pytest.param(("manage.py", "qcluster"), 2, id="qcluster"),
    # What gunicorn does first; 4 is its "App failed to load" (it stops instead of restarting workers).
    pytest.param(("-c", "import config.wsgi"), 4, id="wsgi-import"),
])
def test_production_without_a_secret_key_refuses_to_start_in_one_line_whatever_starts_it(tmp_path, entry,
                                                                                         exit_status):
    # A qcluster that did start would run until the timeout: that fails the test too.
    result = run_python(*entry, tmp_path=tmp_path, timeout=60, DEBUG="0", SECRET_KEY=None)
    assert result.returncode == exit_status, result.stdout + result.stderr
    assert only_line(result).startswith("Configuration error: SECRET_KEY is not set")


PRODUCTION = {"DEBUG": "0", "ALLOWED_HOSTS": "example.com", "SECURE_SSL_REDIRECT": "1",
              "SECURE_HSTS_SECONDS": "31536000", "SECURE_COOKIES": "1"}


def test_hsts_covers_subdomains_and_asks_for_preload_only_when_asked(tmp_path):
    result = run_python("manage.py", "check", "--deploy", tmp_path=tmp_path, **PRODUCTION)
    assert result.returncode == 0, result.stderr
    warned = sorted(line.split(")")[0].split("(")[-1] for line in result.stderr.splitlines() if "(security." in line)
    assert warned == ["security.W005", "security.W021"], result.stderr  # includeSubDomains and preload: off
    asked = run_python("manage.py", "check", "--deploy", tmp_path=tmp_path, SECURE_HSTS_INCLUDE_SUBDOMAINS="1",
                       SECURE_HSTS_PRELOAD="yes", **PRODUCTION)
    assert asked.returncode == 0 and "no issues" in asked.stdout, asked.stdout + asked.stderr


BAD_VALUES = [
    ("SYNC_CONCURRENCY", "101"),
    ("SYNC_THREADS_PER_WORKER", "2001"),
    ("Q_WORKERS", "33"),
    ("AD_PLATFORM_CLIENT_ID", "two words"),
    ("AD_PLATFORM_CLIENT_ID", "café"),
    ("AD_PLATFORM_CLIENT_ID", "x" * 201),
    ("SECURE_HSTS_INCLUDE_SUBDOMAINS", "sometimes"),
    ("SECURE_HSTS_PRELOAD", "maybe"),
]


@pytest.mark.parametrize(("variable", "value"), BAD_VALUES, ids=lambda value: value[:20])
def test_a_value_past_its_cap_or_rule_stops_start_up_with_one_line_naming_it(tmp_path, variable, value):
    result = run_python("manage.py", "check", tmp_path=tmp_path, **{variable: value})
    assert result.returncode == 2, result.stdout + result.stderr
    assert variable in only_line(result)


def test_every_cap_itself_is_allowed(tmp_path):
    result = run_python("manage.py", "check", tmp_path=tmp_path, SYNC_CONCURRENCY="100",
                        SYNC_THREADS_PER_WORKER="2000", Q_WORKERS="32", AD_PLATFORM_CLIENT_ID="x" * 200)
    assert result.returncode == 0, result.stderr


def test_the_command_caps_concurrency_like_the_setting(tmp_path):
    result = run_python("manage.py", "sync_campaigns", "--concurrency", "101", tmp_path=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "--concurrency must be from 1 to 100" in only_line(result)


def manage_shell(code: str, *, tmp_path: Path, **env: str) -> str:
    result = run_python("manage.py", "shell", "--no-imports", "-c", code, tmp_path=tmp_path, **env)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_a_rotation_through_the_environment_keeps_every_password(tmp_path):
    """The operator's steps: the new key with the old as fallback, rotate_passwords, then the old key dropped."""
    assert run_python("manage.py", "migrate", "-v", "0", tmp_path=tmp_path).returncode == 0
    manage_shell("from campaigns.models import AdAccount; a = AdAccount(name='R', slug='r', email='r@example.test', "
                 "base_url='http://127.0.0.1:9', client_id='r'); a.set_password('pw-before-rotation'); a.save()",
                 tmp_path=tmp_path, SECRET_KEY=OLD_KEY)
    read = "from campaigns.models import AdAccount; print(AdAccount.objects.get(slug='r').get_password())"

    rotation = {"SECRET_KEY": NEW_KEY, "SECRET_KEY_FALLBACKS": f" other-key-{'z' * 50} , {OLD_KEY},"}
    assert manage_shell(read, tmp_path=tmp_path, **rotation) == "pw-before-rotation"
    rotated = run_python("manage.py", "rotate_passwords", tmp_path=tmp_path, **rotation)
    assert rotated.returncode == 0 and "1 of 1 account passwords re-encrypted" in rotated.stdout, rotated.stderr
    assert manage_shell(read, tmp_path=tmp_path, SECRET_KEY=NEW_KEY) == "pw-before-rotation"  # old key dropped


# --- rotating the key, in process ------------------------------------------------------------------------

@pytest.fixture
def old_key(settings):
    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = OLD_KEY, []
    return settings


def rotate_to_new_key(settings, *, keep_old: bool) -> None:
    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = NEW_KEY, [OLD_KEY] if keep_old else []


@pytest.mark.django_db
def test_a_password_saved_under_the_old_key_reads_under_the_new_with_the_old_as_fallback(old_key):
    account = make_offline_account()
    account.set_password("pw-old")
    account.save()
    rotate_to_new_key(old_key, keep_old=True)
    assert AdAccount.objects.get(pk=account.pk).get_password() == "pw-old"


@pytest.mark.django_db
def test_a_password_no_key_reads_gives_one_line_saying_what_to_do(old_key):
    account = make_offline_account()
    rotate_to_new_key(old_key, keep_old=False)
    with pytest.raises(ImproperlyConfigured) as refused:
        AdAccount.objects.get(pk=account.pk).get_password()
    message = str(refused.value)
    assert "\n" not in message and "cannot be decrypted" in message and "SECRET_KEY_FALLBACKS" in message


@pytest.mark.django_db
def test_new_passwords_are_encrypted_under_the_current_key_not_a_fallback(old_key):
    rotate_to_new_key(old_key, keep_old=True)
    account = make_offline_account()  # set_password while the old key is still a fallback
    rotate_to_new_key(old_key, keep_old=False)
    assert AdAccount.objects.get(pk=account.pk).get_password() == "unused"


def rotate_passwords() -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("rotate_passwords", stdout=out, stderr=err)
    except CommandError as error:
        return error.returncode, out.getvalue(), err.getvalue() + str(error)
    return 0, out.getvalue(), err.getvalue()


@pytest.mark.django_db
def test_rotate_passwords_re_encrypts_under_the_current_key_and_a_second_run_changes_nothing(old_key):
    first, second = make_offline_account("first"), make_offline_account("second")
    AdAccount.objects.filter(pk=make_offline_account("nopassword").pk).update(encrypted_password="")
    rotate_to_new_key(old_key, keep_old=True)
    code, out, _ = rotate_passwords()
    assert code == 0 and "2 of 2 account passwords re-encrypted" in out, out
    stored = dict(AdAccount.objects.values_list("slug", "encrypted_password"))
    code, out, _ = rotate_passwords()
    assert code == 0 and "0 of 2 account passwords re-encrypted" in out and "2 already were" in out, out
    assert dict(AdAccount.objects.values_list("slug", "encrypted_password")) == stored
    rotate_to_new_key(old_key, keep_old=False)  # the old key can go now
    assert [AdAccount.objects.get(pk=a.pk).get_password() for a in (first, second)] == ["unused", "unused"]


@pytest.mark.django_db
def test_rotate_passwords_names_a_password_no_key_reads_and_rotates_the_rest(old_key):
    make_offline_account("lost")
    rotate_to_new_key(old_key, keep_old=False)
    make_offline_account("fresh")
    code, out, err = rotate_passwords()
    assert code == 2 and "0 of 2 account passwords re-encrypted" in out
    assert "account 'lost': an account password cannot be decrypted" in err and "'fresh'" not in err


# --- a password stays with its login ---------------------------------------------------------------------

CREDENTIAL_CHANGES = {"base_url": "http://attacker.example.test", "email": "someone@else.test",
                      "client_id": "another-client"}


@pytest.mark.django_db
@pytest.mark.parametrize("field", CREDENTIAL_CHANGES)
def test_changing_a_credential_field_in_code_clears_the_password(field):
    account = make_offline_account()
    setattr(account, field, CREDENTIAL_CHANGES[field])
    account.save()
    assert AdAccount.objects.get(pk=account.pk).encrypted_password == ""
    assert account.password_cleared_by and account.encrypted_password == ""


@pytest.mark.django_db
def test_a_new_password_in_the_same_save_is_kept_and_other_edits_keep_the_old_one():
    account = make_offline_account()
    account.base_url, account.rate_limit = CREDENTIAL_CHANGES["base_url"], "5/60s"
    account.set_password("their-own-password")
    account.save()
    assert AdAccount.objects.get(pk=account.pk).get_password() == "their-own-password"
    account.name, account.rate_limit = "Renamed", "none"
    account.save()
    assert AdAccount.objects.get(pk=account.pk).get_password() == "their-own-password"


@pytest.mark.django_db
def test_a_password_set_but_left_out_of_update_fields_does_not_keep_the_old_one():
    account = make_offline_account()
    account.base_url = CREDENTIAL_CHANGES["base_url"]
    account.set_password("never-saved")
    account.save(update_fields=["base_url"])
    assert AdAccount.objects.get(pk=account.pk).encrypted_password == ""


@pytest.mark.django_db
def test_queryset_updates_clear_the_password_of_exactly_the_rows_whose_login_changes():
    moved, stays, renamed = (make_offline_account(slug) for slug in ("moved", "stays", "renamed"))
    AdAccount.objects.filter(slug__in=["moved", "stays"]).update(base_url=stays.base_url.replace("9", "19"))
    AdAccount.objects.filter(slug="renamed").update(name="Renamed", email=renamed.email)
    moved.email = "new@example.test"
    AdAccount.objects.bulk_update([moved], ["email"])
    passwords = dict(AdAccount.objects.values_list("slug", "encrypted_password"))
    assert passwords["moved"] == passwords["stays"] == "" and passwords["renamed"]


@pytest.mark.django_db
def test_the_default_account_follows_the_environment_with_its_password(settings):
    account = account_default_get()
    AdAccount.objects.filter(pk=account.pk).update(base_url="http://attacker.example.test")
    settings.AD_PLATFORM = {**settings.AD_PLATFORM, "URL": "http://127.0.0.1:3999"}
    account = account_default_get()
    assert (account.base_url, account.get_password()) == ("http://127.0.0.1:3999", settings.AD_PLATFORM["PASSWORD"])


# --- the admin ---------------------------------------------------------------------------------------------

@pytest.fixture
def staff_with(make_user):
    """A logged-in staff user (never a superuser) with the view rights of staff plus these permissions."""
    def make(*codenames: str, role: str = "staff") -> Client:
        user = make_user(role)
        user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
        client = Client()
        client.force_login(user)
        return client

    return make


def account_form(account: AdAccount, **changes: str) -> dict[str, str]:
    return {"name": account.name, "slug": account.slug, "base_url": account.base_url, "email": account.email,
            "client_id": account.client_id, "rate_limit": account.rate_limit, "password": "",
            "platform": account.platform, "sync_schedule": "", **changes}


def change_account(client: Client, account: AdAccount, **changes: str):
    return client.post(f"/admin/campaigns/adaccount/{account.pk}/change/", account_form(account, **changes),
                       follow=True)


class CredentialRecorder(BaseHTTPRequestHandler):
    """Someone's own server: it records the Authorization header of every call and refuses them all."""

    seen: list[str] = []

    def do_POST(self):
        self.seen.append(self.headers.get("Authorization", ""))
        self.send_response(401)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def their_server():
    CredentialRecorder.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), CredentialRecorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.mark.django_db
@pytest.mark.usefixtures("private_cache")
def test_pointing_an_account_at_another_server_in_the_admin_never_sends_it_the_password(staff_with, account,
                                                                                        their_server):
    client = staff_with("change_adaccount", "trigger_sync")
    url = f"http://127.0.0.1:{their_server.server_port}"
    response = change_account(client, account, base_url=url)
    warnings = [str(m) for m in response.context["messages"] if m.level_tag == "warning"]
    assert warnings == ["The password of Acme was cleared because its base URL changed: enter it again before "
                        "the next sync."]
    client.post("/admin/campaigns/adaccount/", {"action": "test_connection", "_selected_action": [account.pk],
                                                "index": 0})
    real = base64.b64encode(f"{FAKE_EMAIL}:{FAKE_PASSWORD}".encode()).decode()
    assert not any(real in header for header in CredentialRecorder.seen), CredentialRecorder.seen
    assert AdAccount.objects.get(pk=account.pk).encrypted_password == ""


@pytest.mark.django_db
@pytest.mark.usefixtures("private_cache")
def test_a_login_change_with_its_new_password_keeps_that_password_and_says_nothing_of_clearing(staff_with, account):
    response = change_account(staff_with("change_adaccount"), account, email="other@example.test",
                              client_id="other-client", password="the-new-one")
    assert not [m for m in response.context["messages"] if "cleared" in str(m)]
    assert AdAccount.objects.get(pk=account.pk).get_password() == "the-new-one"


@pytest.mark.django_db
@pytest.mark.usefixtures("private_cache")
@pytest.mark.parametrize("view", ["add", "change"])
def test_an_error_report_of_the_account_forms_shows_the_password_as_stars(admin_client, account, view):
    url = "/admin/campaigns/adaccount/add/" if view == "add" else f"/admin/campaigns/adaccount/{account.pk}/change/"
    form = account_form(account, password="s3cret-in-a-report", slug="reported" if view == "add" else account.slug)
    request = admin_client.post(url, form).wsgi_request
    try:
        raise RuntimeError("something broke while saving")
    except RuntimeError:
        report = ExceptionReporter(request, *sys.exc_info()).get_traceback_text()
    assert "s3cret-in-a-report" not in report
    assert form["email"] in report  # the report does show the other fields


@pytest.mark.django_db
@pytest.mark.usefixtures("private_cache")
def test_the_sync_schedule_field_sets_changes_and_clears_the_accounts_periodic_sync(staff_with, account):
    client = staff_with("change_adaccount", "trigger_sync", role="staff_trigger")
    change_account(client, account, sync_schedule="*/30   * * * *")
    schedule = set_schedules().get()
    assert (schedule.cron, schedule.func, schedule.args) == ("*/30 * * * *", "syncer.tasks.scheduled_sync_task",
                                                             f"({account.pk},)")
    page = client.get(f"/admin/campaigns/adaccount/{account.pk}/change/").content.decode()
    assert 'value="*/30 * * * *"' in page
    change_account(client, account, sync_schedule="0 * * * *", slug="acme-renamed")
    assert list(set_schedules().values_list("cron", "name")) == [("0 * * * *", "sync-acme-renamed")]
    change_account(client, account, slug="acme-renamed", sync_schedule="")
    assert not set_schedules().exists()


@pytest.mark.django_db
@pytest.mark.usefixtures("private_cache")
def test_a_bad_cron_expression_is_a_form_error_in_the_services_words(staff_with, account):
    client = staff_with("change_adaccount", "trigger_sync", role="staff_trigger")
    response = change_account(client, account, sync_schedule="every hour")
    assert response.context["adminform"].form.errors["sync_schedule"] == [
        "'every hour' is not a cron expression with five fields, like '*/30 * * * *'"]
    assert not set_schedules().exists()


@pytest.mark.django_db
@pytest.mark.usefixtures("private_cache")
def test_changing_the_sync_schedule_needs_trigger_sync(staff_with, account):
    schedule_set(account=account, cron="0 3 * * *")
    client = staff_with("change_adaccount")
    response = change_account(client, account, sync_schedule="* * * * *", name="Still editable")
    assert response.status_code == 200 and AdAccount.objects.get(pk=account.pk).name == "Still editable"
    assert schedule_cron(account=account) == "0 3 * * *"
    change_account(client, account, sync_schedule="")
    assert schedule_cron(account=account) == "0 3 * * *"


SCHEDULE_PERMISSIONS = ("add_schedule", "change_schedule", "delete_schedule", "view_schedule")


@pytest.mark.django_db
@pytest.mark.usefixtures("private_cache")
def test_only_superusers_add_change_or_delete_django_q_schedules(staff_with, admin_client, account):
    schedule = schedule_set(account=account, cron="0 3 * * *")
    staff = staff_with(*SCHEDULE_PERMISSIONS)  # every schedule permission there is, yet not a superuser
    anything = {"name": "mine", "func": "os.system", "args": "'id'", "schedule_type": "O", "repeats": "-1",
                "next_run_0": "2030-01-01", "next_run_1": "00:00:00"}
    assert staff.get("/admin/django_q/schedule/").status_code == 200
    page = staff.get(f"/admin/django_q/schedule/{schedule.pk}/change/")
    assert page.status_code == 200 and b'name="_save"' not in page.content
    assert staff.get("/admin/django_q/schedule/add/").status_code == 403
    assert staff.post("/admin/django_q/schedule/add/", anything).status_code == 403
    assert staff.post(f"/admin/django_q/schedule/{schedule.pk}/change/", anything).status_code == 403
    assert staff.post(f"/admin/django_q/schedule/{schedule.pk}/delete/", {"post": "yes"}).status_code == 403
    assert list(set_schedules().values_list("func", flat=True)) == ["syncer.tasks.scheduled_sync_task"]
    assert admin_client.post("/admin/django_q/schedule/add/", anything).status_code == 302
    assert set_schedules().filter(func="os.system").exists()


@pytest.mark.django_db
@pytest.mark.usefixtures("private_cache")
def test_staff_without_the_view_permission_do_not_see_schedules(staff_with):
    assert staff_with().get("/admin/django_q/schedule/").status_code == 403
