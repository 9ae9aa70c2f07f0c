"""End to end in a real browser: log in, press "Sync now", watch the run progress live, open it in the admin.

Playwright drives Debian's chromium (Playwright's own browser download does
not work here); a real task cluster runs the sync against the fake platform.
Screenshots land in tests/artifacts/. The database is checked through the
pages only: while Playwright's loop runs, Django refuses ORM calls here.
"""
from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
USERNAME, PASSWORD = "operator", "browser-test-password-9f3k"
CAMPAIGNS = 30


@pytest.fixture
def demo(fake_platform, make_account, settings, django_user_model):
    """An account on a fake platform slow enough to watch (30 campaigns, 0.3 s each, 2 at a time), and a login."""
    fake_platform.update(campaigns=CAMPAIGNS, sync_latency=0.3, rate_limit=None)
    settings.SYNC = {**settings.SYNC, "CONCURRENCY": 2}
    django_user_model.objects.create_superuser(USERNAME, "operator@example.test", PASSWORD)
    return make_account(slug="demo")


@pytest.fixture
def browser_page():
    if not CHROMIUM.exists():  # no skip: `make test` installs it (as root), so a missing one is a failure to fix
        pytest.fail("Debian chromium is not installed at /usr/bin/chromium: run make test as root (it installs it) "
                    "or apt-get install chromium", pytrace=False)
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.set_default_timeout(20_000)
        yield page
        browser.close()


def watch_progress(page, *, timeout: float) -> list[int]:
    """Every distinct value the progress bar shows until the run reads Succeeded (or failed, which fails)."""
    seen: list[int] = []
    deadline = time.monotonic() + timeout
    while True:
        # Bar and badge read in one go: the page may update between two separate reads.
        value, status = page.evaluate("""() => {
            const card = document.querySelector("[data-account-id]");
            return [Number(card.querySelector("[role=progressbar]").getAttribute("aria-valuenow")),
                    card.querySelector("[data-run-badge]").textContent.trim()];
        }""")
        if not seen or seen[-1] != value:
            seen.append(value)
            if 0 < value < 100:
                page.screenshot(path=ARTIFACTS / "status-running.png", full_page=True)
        if status in ("Succeeded", "Partial", "Failed", "Cancelled"):
            assert status == "Succeeded", f"the run ended {status}; progress seen: {seen}"
            return seen
        assert time.monotonic() < deadline, f"the run did not finish in {timeout:g} s; progress seen: {seen}"
        page.wait_for_timeout(100)  # the page polls /status.json on its own; this only paces our reading


def test_sync_now_on_the_status_page_shows_live_progress_to_done_and_the_run_opens_in_the_admin(
        live_server, demo, qcluster, browser_page):
    qcluster.start()  # a real cluster takes the queued run
    drive_the_status_page(browser_page, live_server.url)


def test_an_alert_opened_and_resolved_while_the_status_page_is_open_shows_and_goes_without_a_reload(
        live_server, demo, fake_platform, browser_page):
    from playwright.sync_api import expect

    from syncer.alerting.check import alerts_check
    from tests.runs import Background, sync

    def sync_then_check_alerts() -> None:
        sync(demo)
        alerts_check()

    page = browser_page
    log_in(page, live_server.url)
    expect(page.locator("[data-alerts-box]")).not_to_contain_text("alert")
    # Elsewhere (a thread: Playwright's loop refuses the ORM here), the platform refuses the account's password
    # and a run fails on it; the alert check, as the minutely schedule runs it, opens an alert.
    fake_platform.update(refuse_tokens=True)
    Background(sync_then_check_alerts, name="failing-run").result(60)
    expect(page.locator("[data-alerts-box]")).to_contain_text("1 open alert")
    expect(page.locator("[data-alerts-box] li")).to_contain_text("Demo")
    page.screenshot(path=ARTIFACTS / "status-alert.png", full_page=True)
    fake_platform.update(refuse_tokens=False)
    Background(sync_then_check_alerts, name="good-run").result(60)
    expect(page.locator("[data-alerts-box]")).not_to_contain_text("alert")


def log_in(page, url: str) -> None:
    from playwright.sync_api import expect

    page.goto(f"{url}/status/")
    expect(page).to_have_url(f"{url}/admin/login/?next=/status/")
    page.fill("#id_username", USERNAME)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    expect(page.locator("h1")).to_contain_text("Sync status")


def drive_the_status_page(page, url: str) -> None:
    from playwright.sync_api import expect

    log_in(page, url)
    page.screenshot(path=ARTIFACTS / "status-before.png", full_page=True)

    page.get_by_role("button", name="Sync now").click()
    expect(page.locator(".messages li").first).to_contain_text("started for Demo")
    seen = watch_progress(page, timeout=45)

    assert len(seen) >= 2 and seen[-1] == 100, f"the bar did not move to 100%: {seen}"
    card = page.locator("[data-account-id]").first
    expect(card.locator("[data-display=progress]")).to_have_text(f"{CAMPAIGNS} / {CAMPAIGNS} done · {CAMPAIGNS} "
                                                                 "synced · 0 failed")
    expect(card.get_by_role("button", name="Sync now")).to_be_enabled()
    # The history below redraws itself too: the run's row ends Succeeded without a reload.
    expect(page.locator("[data-history-run]").first).to_contain_text("Succeeded")
    expect(page.locator("[data-history-run]").first).to_contain_text(str(CAMPAIGNS))
    # Freshness came in live as well (the account had no campaigns when the page was drawn): each class
    # against its target, and the histogram's bars.
    expect(card.locator("[data-display=fresh_active]")).to_have_text(re.compile(r"^100 % of \d+ within 1h · oldest"))
    expect(card.locator("[data-display=budget_load]")).to_contain_text("the targets need")
    assert page.evaluate("parseFloat(document.querySelector('[data-age-bar=\"0\"]').style.width)") == 100
    page.screenshot(path=ARTIFACTS / "status-done.png", full_page=True)
    page.set_viewport_size({"width": 390, "height": 844})  # a phone: nothing may stick out sideways
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.screenshot(path=ARTIFACTS / "status-phone.png", full_page=True)
    page.set_viewport_size({"width": 1280, "height": 1000})

    card.locator("[data-run-link]").click()
    expect(page.get_by_role("heading", name=re.compile(r"^Run #\d+ \(Demo, succeeded\)"))).to_be_visible()
    expect(page.locator(".field-status_badge")).to_contain_text("Succeeded")
    expect(page.locator(".field-trigger_and_who")).to_contain_text(f"Status page · {USERNAME}")
    expect(page.locator(".field-campaigns_synced .readonly")).to_have_text(str(CAMPAIGNS))
    page.screenshot(path=ARTIFACTS / "admin-run.png", full_page=True)
