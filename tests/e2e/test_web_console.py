"""The web console in a real browser (Debian's chromium, driven by Playwright) against a
real cloud: a control plane, a host agent and a tiny guest. The user signs in with a
password, turns on TOTP, signs in again with both, makes a project and an SSH key,
creates a VM and watches it become `running` without a reload, then deletes it and
sees `deleting` at once and the VM gone. Screenshots of the main pages are kept in
artifacts/web/ (docs/web.md shows two of them)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pyotp
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.e2e import guests
from tests.e2e.cloud import Cloud
from tests.e2e.guests import NEEDS_GUESTS
from tests.e2e.processes import checked

pytestmark = NEEDS_GUESTS

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts" / "web"
EMAIL = "user@example.com"
RUNNING_SECONDS = 120.0
"""From clicking Create to `running` on the page (the host starts QEMU in seconds)."""
GONE_SECONDS = 60.0


@pytest.fixture(scope="module")
def cloud(tiny_image: Path, request: pytest.FixtureRequest) -> Iterator[Cloud]:
    failed_before = request.session.testsfailed
    cloud = Cloud(1)
    cloud.start()
    try:
        checked(cloud.admin("image", "add", str(tiny_image), "--name", guests.IMAGE))
        guests.add_key(cloud)  # its public half is added again, by the browser, to `web`
        yield cloud
    finally:
        cloud.close(show_logs=request.session.testsfailed > failed_before)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        # As root, chromium runs only without its sandbox.
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    yield context.new_page()
    context.close()


def _shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=ARTIFACTS / f"{name}.png", full_page=True)


def _sign_in(page: Page, cloud: Cloud, code: str | None = None) -> None:
    page.goto(f"{cloud.api_url}/")
    expect(page).to_have_title("Sign in · nubis")
    page.get_by_label("Email").fill(EMAIL)
    page.get_by_label("Password").fill(cloud.password)
    page.get_by_role("button", name="Sign in").click()
    if code is not None:
        page.get_by_label("Code from your authenticator app").fill(code)
        page.get_by_role("button", name="Sign in").click()


def _fresh_code(secret: str) -> str:
    """A code of a later step than the last one used: each is accepted once."""
    totp = pyotp.TOTP(secret)
    used = totp.now()
    while (code := totp.now()) == used:
        time.sleep(1.0)
    return code


def test_a_user_signs_in_with_totp_and_sees_a_new_vm_run_and_go_without_a_reload(
    cloud: Cloud, page: Page
) -> None:
    _sign_in(page, cloud)
    expect(page.get_by_role("heading", name="VMs of user-e2e")).to_be_visible()
    page.get_by_role("link", name="user").click()
    page.get_by_role("button", name="Set up TOTP").click()
    secret = page.locator("[data-totp-secret]").inner_text()
    expect(page.locator("figure.qr svg")).to_be_visible()
    _shot(page, "totp-enrolment")
    page.get_by_label("Code").fill(pyotp.TOTP(secret).now())
    page.get_by_role("button", name="Turn TOTP on").click()
    expect(page.locator("[data-totp]")).to_have_text("on")
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_title("Sign in · nubis")

    _sign_in(page, cloud, code=_fresh_code(secret))
    _shot(page, "vm-list-empty")
    page.goto(f"{cloud.api_url}/projects")
    page.get_by_label("Name").fill("web")
    page.get_by_role("button", name="Create project").click()
    expect(page.get_by_role("heading", name="VMs of web")).to_be_visible()
    page.get_by_role("link", name="SSH keys").click()
    page.get_by_label("Name").fill("laptop")
    public_key = Path(f"{guests.key_of(cloud)}.pub").read_text()
    page.get_by_label("Public key").fill(public_key)
    page.get_by_role("button", name="Add key").click()
    expect(page.locator('[data-key="laptop"]')).to_be_visible()

    page.get_by_role("link", name="VMs").click()
    page.get_by_role("link", name="New VM").click()
    page.get_by_label("Name").fill("web1")
    page.get_by_label("Image").select_option("tiny")
    page.get_by_role("button", name="Create VM").click()
    expect(page.get_by_role("heading", name="VM web1")).to_be_visible()
    state = page.locator("#vm-panel [data-state]")
    expect(state).to_have_text(re.compile("creating|starting|running"))
    page.evaluate("window.nubisTestMark = 'not reloaded'")  # gone if the page reloads

    expect(state).to_have_text("running", timeout=RUNNING_SECONDS * 1000)
    assert page.evaluate("window.nubisTestMark") == "not reloaded"
    _shot(page, "vm")
    page.get_by_role("link", name="← VMs of web").click()
    row = page.locator('[data-vm="web1"]')
    expect(row.locator("[data-state]")).to_have_text("running")
    _shot(page, "vm-list")
    page.evaluate("window.nubisTestMark = 'not reloaded'")
    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name="Delete").click()

    expect(row.locator("[data-state]")).to_have_text("deleting", timeout=5000)
    expect(row).to_have_count(0, timeout=GONE_SECONDS * 1000)
    assert page.evaluate("window.nubisTestMark") == "not reloaded"
    listed = checked(cloud.cli("vm", "list", "--project", "web", "--json"))
    assert listed.strip() == "[]"
