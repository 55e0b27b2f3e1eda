"""A real browser (Debian's headless Chromium, driven by Playwright) unsubscribes via the page."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from .conftest import IN_CI, LiveServer

CHROMIUM = "/usr/bin/chromium"
DOCS = Path(__file__).resolve().parent.parent / "docs"
EMAIL = "browser.test@example.se"

# WCAG 2.x relative luminance and contrast ratio of two "rgb(r, g, b)" colours.
CONTRAST_JS = """
([fg, bg]) => {
  const lum = (c) => {
    const [r, g, b] = c.match(/\\d+(\\.\\d+)?/g).slice(0, 3).map(Number).map((v) => {
      v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const [a, b] = [lum(fg), lum(bg)].sort((x, y) => y - x);
  return (a + 0.05) / (b + 0.05);
}
"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not os.access(CHROMIUM, os.X_OK):
        reason = f"{CHROMIUM} is missing (apt-get install chromium): browser test NOT RUN"
        if IN_CI:
            pytest.fail(reason + " (CI=true requires it)")
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        # Debian's browser only: Playwright must never download one of its own.
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield browser
        browser.close()


def screenshot_dir(tmp_path: Path) -> Path:
    """docs/ when asked to refresh the README's pictures (make screenshots), else tmp."""
    return DOCS if os.environ.get("SUPPRESS_SCREENSHOTS") == "docs" else tmp_path


def contrast(page: Any, selector: str, background: str | None = None) -> float:
    colours = page.eval_on_selector(
        selector,
        "(el) => { const s = getComputedStyle(el); return [s.color, s.backgroundColor]; }",
    )
    fg, bg = colours
    if background is not None:
        bg = background
    return float(page.evaluate(CONTRAST_JS, [fg, bg]))


@pytest.mark.db_agnostic
@pytest.mark.e2e
def test_recipient_unsubscribes_from_everything_in_a_real_browser(
    browser: Any, live_server: LiveServer, tmp_path: Path
) -> None:
    created = live_server.cli("keys", "create", "--name", "browser", "--role", "mailer")
    key = {"Authorization": "Bearer " + created.stdout.strip().splitlines()[-1]}
    batch = requests.post(
        live_server.url + "/v1/unsubscribe-links",
        json={"list": "news", "emails": [EMAIL]},
        headers=key,
        timeout=10,
    ).json()
    url = batch["links"][0]["url"]
    shots = screenshot_dir(tmp_path)

    # No JavaScript at all: the page must work without it.
    context = browser.new_context(
        locale="en-GB",
        java_script_enabled=False,
        viewport={"width": 760, "height": 720},
        device_scale_factor=1,
    )
    page = context.new_page()
    requested: list[str] = []
    console: list[str] = []
    page.on("request", lambda r: requested.append(r.url))
    page.on("console", lambda m: console.append(m.text))

    response = page.goto(url)
    assert response is not None and response.status == 200
    assert page.get_attribute("html", "lang") == "en"
    assert page.get_by_role("heading", level=1).inner_text() == "Unsubscribe from our mailings"
    page.screenshot(path=str(shots / "unsubscribe-en.png"), full_page=True)

    # The language switch is a plain link.
    page.get_by_role("link", name="Svenska").click()
    page.wait_for_load_state()
    assert page.get_attribute("html", "lang") == "sv"
    heading = page.get_by_role("heading", level=1).inner_text()
    assert heading == "Avregistrera dig från våra utskick"
    page.screenshot(path=str(shots / "unsubscribe-sv.png"), full_page=True)

    # Keyboard: the switch, then the options, then the button, each visibly focused.
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "English"
    assert page.evaluate("getComputedStyle(document.activeElement).outlineStyle") == "solid"
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Svenska"
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "scope-list"
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.tagName") == "BUTTON"
    assert page.evaluate("getComputedStyle(document.activeElement).outlineStyle") == "solid"

    # Contrast of every kind of text on the page (WCAG AA: 4.5:1).
    for selector in ("h1", "legend", ".hint", ".note", "header a", "button"):
        assert (
            contrast(page, selector, None if selector == "button" else "rgb(255, 255, 255)") >= 4.5
        )

    everything = page.get_by_role("radio", name=re.compile("All direktmarknadsföring"))
    everything.check()
    assert everything.is_checked()
    with page.expect_navigation() as navigation:
        page.get_by_role("button", name="Avregistrera mig").click()
    answer = navigation.value
    assert answer is not None and answer.status == 200 and answer.request.method == "POST"
    assert answer.request.redirected_from is None
    assert page.get_by_role("heading", level=1).inner_text() == "Du är avregistrerad"
    assert "Du får ingen mer direktmarknadsföring från oss" in page.inner_text("main")
    page.screenshot(path=str(shots / "unsubscribe-done-sv.png"), full_page=True)

    assert context.cookies() == []
    assert all(r.startswith(live_server.url + "/") for r in requested), requested
    assert not [m for m in console if "Content Security Policy" in m], console
    context.close()

    verdict = requests.post(
        live_server.url + "/v1/check",
        json={"email": EMAIL, "list": "offers"},
        headers=key,
        timeout=10,
    ).json()
    assert verdict["allowed"] is False
    assert [(s["scope"], s["reason"]) for s in verdict["suppressions"]] == [("global", "objection")]


PREFERENCES_TOML = """
[organisation]
name = "Exempel Juridik AB"
privacy_url = "https://example.se/integritet"

[[lists]]
name = "labour-law"
title = { sv = "Arbetsrätt", en = "Labour law" }
description.sv = "Nyheter och analyser om arbetsrätt."
description.en = "News and analysis on labour law."

[[lists]]
name = "tax"
title = { sv = "Skatt", en = "Tax" }
description.sv = "Beskattning av företag och anställda."
description.en = "Taxation of companies and employees."

[[lists]]
name = "procurement"
title = { sv = "Offentlig upphandling", en = "Public procurement" }
"""


@pytest.fixture
def preference_server(empty_db_url: str, tmp_path: Path) -> Iterator[LiveServer]:
    config = tmp_path / "suppress.toml"
    config.write_text(PREFERENCES_TOML, "utf-8")
    server = LiveServer(empty_db_url, tmp_path, extra_env={"SUPPRESS_CONFIG": str(config)})
    yield server
    server.stop()


@pytest.mark.db_agnostic
@pytest.mark.e2e
def test_a_reader_leaves_two_subject_areas_and_rejoins_one_in_a_real_browser(
    browser: Any, preference_server: LiveServer, tmp_path: Path
) -> None:
    server = preference_server
    created = server.cli("keys", "create", "--name", "browser", "--role", "mailer")
    key = {"Authorization": "Bearer " + created.stdout.strip().splitlines()[-1]}
    url = requests.post(
        server.url + "/v1/unsubscribe-links",
        json={"list": "labour-law", "emails": [EMAIL]},
        headers=key,
        timeout=10,
    ).json()["links"][0]["url"]
    shots = screenshot_dir(tmp_path)
    context = browser.new_context(
        locale="en-GB",
        java_script_enabled=False,
        viewport={"width": 760, "height": 720},
        device_scale_factor=1,
    )
    page = context.new_page()
    requested: list[str] = []
    console: list[str] = []
    page.on("request", lambda r: requested.append(r.url))
    page.on("console", lambda m: console.append(m.text))

    assert page.goto(url) is not None
    main = page.inner_text("main")
    assert "These mailings come from Exempel Juridik AB." in main
    assert "Only the list “Labour law”" in main and "labour-law" not in main
    assert (
        page.get_by_role("link", name="How we handle personal data").get_attribute("href")
        == "https://example.se/integritet"
    )
    page.screenshot(path=str(shots / "preferences-en.png"), full_page=True)

    # Keyboard: from the one-list form's button on to the first subject area's checkbox.
    page.get_by_role("button", name="Unsubscribe").focus()
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "leave-labour-law"
    assert page.evaluate("getComputedStyle(document.activeElement).outlineStyle") == "solid"
    for selector in ("h2", "legend", ".hint", ".sender", ".sender a"):
        assert contrast(page, selector, "rgb(255, 255, 255)") >= 4.5, selector

    page.get_by_role("checkbox", name=re.compile("^Tax")).check()
    page.get_by_role("checkbox", name=re.compile("^Public procurement")).check()
    with page.expect_navigation() as navigation:
        page.get_by_role("button", name="Leave the ticked lists").click()
    assert navigation.value is not None and navigation.value.status == 200
    done = page.inner_text("main")
    assert "You will no longer receive mailings from the list “Tax”." in done
    assert "You will no longer receive mailings from the list “Public procurement”." in done
    assert "Labour law" not in done

    # The same link again, in Swedish: the two areas are now among those left.
    page.get_by_role("link", name="Change your choice").click()
    page.wait_for_load_state()
    page.get_by_role("link", name="Svenska").click()
    page.wait_for_load_state()
    assert page.get_attribute("html", "lang") == "sv"
    assert "Listor du har lämnat" in page.inner_text("main")
    page.screenshot(path=str(shots / "preferences-left-sv.png"), full_page=True)
    page.get_by_role("checkbox", name=re.compile("^Skatt")).check()
    with page.expect_navigation():
        page.get_by_role("button", name="Få de markerade listorna igen").click()
    assert page.get_by_role("heading", level=1).inner_text() == "Ditt val är sparat"
    assert "Din avregistrering från listan ”Skatt” är hävd" in page.inner_text("main")
    page.screenshot(path=str(shots / "preferences-done-sv.png"), full_page=True)

    assert context.cookies() == []
    assert all(r.startswith(server.url + "/") for r in requested), requested
    assert not [m for m in console if "Content Security Policy" in m], console
    context.close()

    def allowed(list_name: str) -> bool:
        return bool(
            requests.post(
                server.url + "/v1/check",
                json={"email": EMAIL, "list": list_name},
                headers=key,
                timeout=10,
            ).json()["allowed"]
        )

    assert allowed("tax") and allowed("labour-law") and not allowed("procurement")
