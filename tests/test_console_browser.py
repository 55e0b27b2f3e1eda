"""The console in a real browser (Debian's headless Chromium through Playwright), JavaScript
off, against the installed server: sign in, look up, add, remove with evidence, import, a
viewer refused, CSRF refused; a data-subject request registered, verified and extended, in
English and Swedish; keyboard focus, contrast, nothing loaded from elsewhere."""

from __future__ import annotations

import json
import re
import subprocess
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from .conftest import SUPPRESS, LiveServer
from .test_browser import browser, contrast, screenshot_dir  # noqa: F401  (the fixture)

PASSWORD = "correct horse battery staple"
EMAIL = "Kim.Lind+nyheter@Example.se"


def create_person(server: LiveServer, name: str, role: str) -> None:
    done = subprocess.run(
        [*SUPPRESS, "users", "create", name, "--role", role, "--password-stdin"],
        input=PASSWORD,
        env=server.env,
        cwd=server.cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr


def new_page(chromium: Any, server: LiveServer, requested: list[str], console: list[str]) -> Any:
    context = chromium.new_context(
        locale="en-GB",
        java_script_enabled=False,
        viewport={"width": 1100, "height": 800},
        device_scale_factor=1,
        accept_downloads=True,
    )
    page = context.new_page()
    page.on("request", lambda r: requested.append(r.url))
    page.on("console", lambda m: console.append(m.text))
    return page


def sign_in(page: Any, server: LiveServer, name: str) -> None:
    page.goto(server.url + "/admin/")
    assert page.url == server.url + "/admin/login"
    page.get_by_label("Name").fill(name)
    page.get_by_label("Password").fill(PASSWORD)
    with page.expect_navigation():
        page.get_by_role("button", name="Sign in").click()
    assert page.url == server.url + "/admin/"


def focused_outline(page: Any) -> str:
    return str(page.evaluate("getComputedStyle(document.activeElement).outlineStyle"))


def csrf_of(page: Any) -> str:
    return str(page.get_attribute('input[name="csrf_token"] >> nth=0', "value"))


@pytest.mark.db_agnostic
@pytest.mark.e2e
def test_the_data_protection_officers_day_in_a_real_browser(
    browser: Any,  # noqa: F811
    live_server: LiveServer,
    tmp_path: Path,
) -> None:
    server = live_server
    for name, role in (("ada", "admin"), ("vera", "viewer")):
        create_person(server, name, role)
    for email, reason in (("a@example.se", "unsubscribe"), ("b@example.org", "complaint")):
        server.cli("add", email, "--list", "news", "--reason", reason, "--source", "crm")
    shots = screenshot_dir(tmp_path)
    requested: list[str] = []
    console: list[str] = []
    page = new_page(browser, server, requested, console)

    # Sign in, by keyboard alone: the skip link, the language links, name, password, button.
    page.goto(server.url + "/admin/login")
    assert page.get_attribute("html", "lang") == "en"
    page.screenshot(path=str(shots / "console-login.png"), full_page=True)
    page.get_by_label("Name").focus()
    assert focused_outline(page) == "solid"
    page.keyboard.type("ada")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "password"
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.tagName") == "BUTTON"
    assert focused_outline(page) == "solid"
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert page.url == server.url + "/admin/"
    assert page.get_by_role("heading", level=1).inner_text() == "Overview"
    (cookie,) = page.context.cookies()
    assert cookie["name"] == "suppress_console" and cookie["httpOnly"]
    assert cookie["sameSite"] == "Strict" and cookie["path"] == "/admin"
    for selector in ("h1", "h2", ".sections a", ".figures li", "th"):
        assert contrast(page, selector, "rgb(255, 255, 255)") >= 4.5, selector
    assert contrast(page, ".bar a", "rgb(11, 61, 102)") >= 4.5
    page.screenshot(path=str(shots / "console-overview.png"), full_page=True)

    # A caller asks what is kept about them: the address goes in a POST body only.
    page.get_by_role("link", name="Look up an address").click()
    page.get_by_label("E-mail address").fill(EMAIL)
    page.get_by_label("Reference (optional)").fill("DSR-2026-017")
    with page.expect_navigation():
        page.get_by_role("button", name="Look up", exact=True).click()
    assert page.url == server.url + "/admin/lookup"
    assert "This address is not on the list." in page.inner_text("main")
    with page.expect_download() as download:
        page.get_by_role("button", name=re.compile("Download as JSON")).click()
    saved = download.value
    assert saved.suggested_filename.startswith("lookup-") and "@" not in saved.suggested_filename
    assert json.loads(Path(saved.path()).read_text("utf-8"))["email"] == EMAIL

    # "Stop mailing me": add, then see it in a second look-up.
    page.get_by_role("link", name="Add", exact=True).click()
    page.get_by_label("E-mail address or domain").fill(EMAIL)
    page.get_by_label("List", exact=True).fill("global")
    page.get_by_label("Reason").select_option("objection")
    page.get_by_label("Source").fill("phone")
    with page.expect_navigation():
        page.get_by_role("button", name="Add", exact=True).click()
    assert "Added to the list global: Objection to direct marketing." in page.inner_text("main")
    assert contrast(page, ".notice", "rgb(255, 255, 255)") >= 4.5
    page.get_by_role("link", name="Look up an address").click()
    page.get_by_label("E-mail address").fill(EMAIL)
    with page.expect_navigation():
        page.get_by_role("button", name="Look up", exact=True).click()
    assert "No direct marketing may go to this address" in page.inner_text("main")
    page.screenshot(path=str(shots / "console-lookup.png"), full_page=True)

    # New consent: remove with evidence (a field the form requires).
    page.get_by_role("link", name="Remove", exact=True).click()
    page.get_by_label("E-mail address or domain").fill(EMAIL)
    page.get_by_label("List", exact=True).fill("global")
    page.get_by_label("Why").fill("resubscribed")
    page.get_by_label("Evidence of new consent").fill("signup form 2026-1142")
    with page.expect_navigation():
        page.get_by_role("button", name="Remove", exact=True).click()
    assert "Removed from the list global (1 entries)." in page.inner_text("main")

    # An event's opt-out list: import a CSV, progress and totals on one streamed page.
    csv = tmp_path / "event.csv"
    csv.write_text("email,name\nana@example.se,Ana\nnot an address,X\nbo@example.se,Bo\n")
    page.get_by_role("link", name="Import", exact=True).click()
    page.get_by_label("File", exact=True).set_input_files(str(csv))
    page.get_by_label("List", exact=True).fill("news")
    page.get_by_label("Source").fill("event-2026-05")
    with page.expect_navigation():
        page.get_by_role("button", name="Import", exact=True).click()
    main = page.inner_text("main")
    # The header line is no address either, as for the API and the CLI.
    assert "4 lines read: 2 added, 0 already on the list, 2 not addresses." in main
    assert "4 lines read: 2 added, 0 were already on the list, 2 were not addresses." in main
    page.screenshot(path=str(shots / "console-import.png"), full_page=True)

    # The trail names the person; the chain verifies.
    page.get_by_role("link", name="Audit trail").click()
    assert "console:ada" in page.inner_text("main")
    with page.expect_navigation():
        page.get_by_role("button", name="Verify the chain now").click()
    assert "The chain is whole" in page.inner_text("main")
    page.get_by_role("link", name="Back to the audit trail").click()
    page.screenshot(path=str(shots / "console-audit.png"), full_page=True)

    # In Swedish, remembered from page to page.
    page.get_by_role("link", name="Svenska").click()
    assert page.get_attribute("html", "lang") == "sv"
    page.get_by_role("link", name="Översikt").click()
    assert page.get_by_role("heading", level=1).inner_text() == "Översikt"
    page.screenshot(path=str(shots / "console-overview-sv.png"), full_page=True)

    # A POST without this session's token is refused and changes nothing.
    forged = page.context.request.post(
        server.url + "/admin/add",
        form={"value": "c@example.se", "list": "news", "reason": "manual"},
        max_redirects=0,
    )
    assert forged.status == 403
    page.context.close()

    # A viewer sees no operator's menu and is refused an operator's action.
    viewer = new_page(browser, server, requested, console)
    sign_in(viewer, server, "vera")
    menu = viewer.inner_text("nav.sections")
    assert "Add" not in menu and "Look up an address" not in menu
    refused = viewer.goto(server.url + "/admin/add")
    assert refused is not None and refused.status == 403
    assert viewer.get_by_role("heading", level=1).inner_text() == "Your role does not allow this"
    viewer.screenshot(path=str(shots / "console-refused.png"), full_page=True)
    viewer.goto(server.url + "/admin/")
    answer = viewer.context.request.post(
        server.url + "/admin/add",
        form={
            "value": "c@example.se",
            "list": "news",
            "reason": "manual",
            "csrf_token": csrf_of(viewer),
        },
        max_redirects=0,
    )
    assert answer.status == 403
    viewer.context.close()

    assert all(url.startswith(server.url + "/") for url in requested), requested
    assert not any("@" in url or "%40" in url.lower() for url in requested), requested
    assert not [m for m in console if "Content Security Policy" in m], console
    check = server.cli("check", "c@example.se", "--list", "news")
    assert check.returncode == 0, check.stdout  # neither refused POST added anything
    log = server.log_path.read_text("utf-8").lower()
    for email in ("kim.lind", "ana@example.se", "bo@example.se"):
        assert email not in log


@pytest.mark.db_agnostic
@pytest.mark.e2e
def test_a_request_from_the_phone_call_to_its_extension_in_a_real_browser(
    browser: Any,  # noqa: F811
    live_server: LiveServer,
    tmp_path: Path,
) -> None:
    server = live_server
    create_person(server, "ada", "admin")
    today = datetime.now(ZoneInfo("Europe/Stockholm")).date()
    late = server.cli(
        "requests",
        "add",
        "--kind",
        "erasure",
        "--reference",
        "DSR-2026-009",
        "--received-at",
        (today - timedelta(days=40)).isoformat(),
        "--channel",
        "letter",
    )
    assert late.returncode == 0, late.stderr
    late_id = late.stdout.split()[2]
    shots = screenshot_dir(tmp_path)
    requested: list[str] = []
    console: list[str] = []
    page = new_page(browser, server, requested, console)
    sign_in(page, server, "ada")
    assert "1\nrequest overdue" in page.inner_text(".figures")

    # The phone rings: register the request at once, the address kept only as a fingerprint.
    page.get_by_role("link", name="Requests", exact=True).click()
    page.get_by_role("link", name="Register a request").click()
    page.get_by_label("Kind of request").select_option("access")
    page.get_by_label("Date").fill((today - timedelta(days=3)).isoformat())
    page.get_by_label("Time (optional)").fill("14:05")
    page.get_by_label("Reference", exact=True).fill("DSR-2026-017")
    page.get_by_label("E-mail address (optional)").fill(EMAIL)
    page.get_by_label("Channel (optional)").fill("phone")
    page.get_by_label("Note (optional)").fill("Asked for a copy by post")
    with page.expect_navigation():
        page.get_by_role("button", name="Register", exact=True).click()
    assert re.fullmatch(re.escape(server.url) + r"/admin/requests/\d+", page.url), page.url
    main = page.inner_text("main")
    assert "The request is registered." in main and "Access to their data" in main
    assert "given, kept as the fingerprint" in main

    # Identity checked, then more time needed: the person is told today, then it is recorded.
    page.get_by_label("How the identity was checked").fill("BankID")
    with page.expect_navigation():
        page.get_by_role("button", name="Record the check of identity").click()
    assert "The check of identity is recorded." in page.inner_text("main")
    page.get_by_label("Reason, as the person was told").fill("Records in three archives")
    page.locator("#notified_day").fill(today.isoformat())
    with page.expect_navigation():
        page.get_by_role("button", name=re.compile("^Extend to ")).click()
    main = page.inner_text("main")
    assert "The request is extended." in main
    assert "three calendar months after the day of receipt" in main
    assert "This request was extended already" in main  # and the form is gone
    for selector in ("h1", "h2", "dt", "dd", ".notice"):
        assert contrast(page, selector, "rgb(255, 255, 255)") >= 4.5, selector
    page.screenshot(path=str(shots / "console-request.png"), full_page=True)

    # An extension announced after the original due day is refused, and says why.
    page.goto(f"{server.url}/admin/requests/{late_id}")
    assert "The original due day has passed" in page.inner_text("main")
    page.get_by_label("Reason, as the person was told").fill("Many requests")
    page.locator("#notified_day").fill(today.isoformat())
    with page.expect_navigation():
        page.get_by_role("button", name=re.compile("^Extend to ")).click()
    assert "This day is after the original due day." in page.inner_text("main")
    assert page.get_attribute("#notified_day", "aria-invalid") == "true"

    # The register: the overdue request first among the open ones, in words and highlighted.
    page.get_by_role("link", name="Requests", exact=True).click()
    page.get_by_role("link", name=re.compile(r"^Open \(")).click()
    rows = page.locator("tbody tr")
    assert rows.count() == 2
    assert "Overdue by" in rows.nth(0).inner_text() and "DSR-2026-009" in rows.nth(0).inner_text()
    assert "Extended" in rows.nth(1).inner_text() and "Verified" in rows.nth(1).inner_text()
    assert contrast(page, "tr.overdue .late", "rgb(253, 236, 238)") >= 4.5
    assert contrast(page, "tr.overdue a", "rgb(253, 236, 238)") >= 4.5
    page.screenshot(path=str(shots / "console-requests.png"), full_page=True)

    # The same in Swedish: register, then extend.
    page.get_by_role("link", name="Svenska").click()
    page.get_by_role("link", name="Registrera en begäran").click()
    page.get_by_label("Slag av begäran").select_option("objection")
    page.get_by_label("Datum").fill(today.isoformat())
    page.get_by_label("Hänvisning", exact=True).fill("DSR-2026-018")
    with page.expect_navigation():
        page.get_by_role("button", name="Registrera", exact=True).click()
    assert "Begäran är registrerad." in page.inner_text("main")
    page.get_by_label("Skäl, så som personen fick veta dem").fill("Uppgifter i tre arkiv")
    page.locator("#notified_day").fill(today.isoformat())
    with page.expect_navigation():
        page.get_by_role("button", name=re.compile("^Förläng till ")).click()
    main = page.inner_text("main")
    assert "Begäran är förlängd." in main and "Förlängd förfallodag" in main
    assert "Invändning mot direktmarknadsföring" in main
    page.context.close()

    assert all(url.startswith(server.url + "/") for url in requested), requested
    assert not any("@" in url or "%40" in url.lower() for url in requested), requested
    assert not [m for m in console if "Content Security Policy" in m], console
    listed = server.cli("requests", "list", "--status", "open")
    assert listed.stdout.count("(extended)") == 2, listed.stdout
    log = server.log_path.read_text("utf-8").lower()
    assert "kim.lind" not in log
