"""The /u pages: landing page in two languages, one-click and form opt-outs, bad links, headers."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from itsdangerous import Signer
from sqlalchemy import func, select

from suppress import create_app
from suppress.addresses import Digest, active_digest
from suppress.db import Database
from suppress.errors import Unavailable
from suppress.models import AuditEvent, Suppression
from suppress.runtime import Runtime
from suppress.tokens import SALT, TokenSigner

from .conftest import OLD_PEPPER, TEST_PEPPER, TOKEN_SECRET, bearer, settings

EMAIL = "Anna.Berg@example.se"
SV = {"Accept-Language": "sv-SE,sv;q=0.9,en;q=0.5"}
EN = {"Accept-Language": "en-GB,en;q=0.8"}
ONE_CLICK = {"List-Unsubscribe": "One-Click"}
MINTER = 42  # the id of the API key that minted the link


def link(rt: Runtime, email: str = EMAIL, list_name: str = "news", minted_by: int = MINTER) -> str:
    return "/u/" + rt.signer.sign(active_digest(rt.ring, email), list_name, minted_by=minted_by)


def counts(rt: Runtime) -> tuple[int, int]:
    """(suppression rows, audit events)."""
    with rt.db.begin(write=False) as session:
        return (
            session.scalar(select(func.count()).select_from(Suppression)) or 0,
            session.scalar(select(func.count()).select_from(AuditEvent)) or 0,
        )


def allowed(client: FlaskClient, token: str, email: str = EMAIL, list_name: str = "news") -> bool:
    response = client.post(
        "/v1/check", json={"email": email, "list": list_name}, headers=bearer(token)
    )
    assert response.status_code == 200
    return bool(response.get_json()["allowed"])


def html_lang(body: str) -> str:
    found = re.search(r'<html lang="([a-z]+)">', body)
    assert found, body[:200]
    return found.group(1)


def events(rt: Runtime) -> list[AuditEvent]:
    with rt.db.begin(write=False) as session:
        return list(session.scalars(select(AuditEvent).order_by(AuditEvent.id)))


# --- the landing page ----------------------------------------------------------------------


@pytest.mark.db_agnostic
@pytest.mark.parametrize(
    ("headers", "lang", "heading"),
    [
        (SV, "sv", "Avregistrera dig från våra utskick"),
        (EN, "en", "Unsubscribe from our mailings"),
        ({"Accept-Language": "en-US"}, "en", "Unsubscribe from our mailings"),
        ({"Accept-Language": "sv"}, "sv", "Avregistrera dig från våra utskick"),
        ({"Accept-Language": "de-DE,fr;q=0.5"}, "sv", "Avregistrera dig från våra utskick"),
        ({}, "sv", "Avregistrera dig från våra utskick"),
    ],
)
def test_landing_page_speaks_the_visitors_language(
    client: FlaskClient, rt: Runtime, headers: dict[str, str], lang: str, heading: str
) -> None:
    response = client.get(link(rt), headers=headers)
    assert response.status_code == 200
    body = response.get_data(as_text=True)
    assert html_lang(body) == lang
    assert f"<h1>{heading}</h1>" in body
    assert response.headers["Content-Language"] == lang


@pytest.mark.db_agnostic
def test_language_switch_is_visible_and_overrides_accept_language(
    client: FlaskClient, rt: Runtime
) -> None:
    swedish = client.get(link(rt), headers=SV).get_data(as_text=True)
    assert '<a href="?lang=en" lang="en" hreflang="en">English</a>' in swedish
    assert 'hreflang="sv" aria-current="true">Svenska</a>' in swedish
    english = client.get(link(rt) + "?lang=en", headers=SV).get_data(as_text=True)
    assert html_lang(english) == "en"
    assert '<form method="post" action="?lang=en">' in english
    assert html_lang(client.get(link(rt) + "?lang=xx", headers=EN).get_data(as_text=True)) == "en"


@pytest.mark.db_agnostic
def test_landing_page_offers_the_list_or_everything_with_labels(
    client: FlaskClient, rt: Runtime
) -> None:
    body = client.get(link(rt), headers=EN).get_data(as_text=True)
    assert "<legend>What do you want to unsubscribe from?</legend>" in body
    for value in ("list", "global"):
        assert f'id="scope-{value}" name="scope" value="{value}"' in body
        assert f'<label for="scope-{value}">' in body
    assert "Only the list “news”" in body
    assert "All direct marketing from us" in body
    assert '<button type="submit">Unsubscribe</button>' in body
    # The list option comes first and is the default: the least a click can do.
    assert body.index('value="list" checked') < body.index('value="global"')


@pytest.mark.db_agnostic
def test_pages_send_the_privacy_headers(client: FlaskClient, rt: Runtime) -> None:
    for response in (
        client.get(link(rt)),
        client.post(link(rt), data=ONE_CLICK),
        client.get("/u/forged"),
        client.options(link(rt)),
    ):
        assert response.headers["X-Robots-Tag"] == "noindex, nofollow"
        assert response.headers["Referrer-Policy"] == "no-referrer"
        assert response.headers["Cache-Control"] == "no-store"
        csp = response.headers["Content-Security-Policy"]
        assert "default-src 'none'" in csp and "form-action 'self'" in csp
        assert "frame-ancestors 'none'" in csp and "base-uri 'none'" in csp
        assert "unsafe-inline" not in csp and "script-src" not in csp
        assert "Set-Cookie" not in response.headers


@pytest.mark.db_agnostic
def test_pages_load_nothing_from_anywhere(client: FlaskClient, rt: Runtime) -> None:
    response = client.get(link(rt))
    body = response.get_data(as_text=True)
    for banned in ("<script", "<link", "<img", "<iframe", "src=", "http://", "https://", "//"):
        assert banned not in body.replace("<!doctype html>", "")
    # The one inline stylesheet is allowed by its hash, and by nothing broader.
    css = re.search(r"<style>(.*?)</style>", body, re.S)
    assert css is not None
    digest = base64.b64encode(hashlib.sha256(css.group(1).encode()).digest()).decode()
    assert f"style-src 'sha256-{digest}';" in response.headers["Content-Security-Policy"]


# --- GET never writes ----------------------------------------------------------------------


def test_get_head_and_options_change_nothing(
    client: FlaskClient, rt: Runtime, tokens: dict[str, str]
) -> None:
    url = link(rt)
    before = counts(rt)
    # What mail security scanners and link previewers do with every link they see.
    for _ in range(3):
        assert client.get(url).status_code == 200
        assert client.get(url + "?lang=en").status_code == 200
        head = client.head(url)
        assert head.status_code == 200 and head.get_data() == b""
        options = client.options(url)
        assert options.status_code == 200
        assert set(options.headers["Allow"].split(", ")) == {"GET", "HEAD", "POST", "OPTIONS"}
    assert counts(rt) == before
    assert allowed(client, tokens["mailer"])


# --- POST: one-click and the form --------------------------------------------------------------


def test_one_click_suppresses_the_tokens_list(
    client: FlaskClient, rt: Runtime, tokens: dict[str, str]
) -> None:
    response = client.post(link(rt), data=ONE_CLICK, headers=EN)
    assert response.status_code == 200  # RFC 8058: no redirect
    assert "Location" not in response.headers and "Set-Cookie" not in response.headers
    body = response.get_data(as_text=True)
    assert "<h1>You are unsubscribed</h1>" in body
    assert "You will no longer receive mailings from the list “news”." in body
    assert not allowed(client, tokens["mailer"])
    assert not allowed(client, tokens["mailer"], "anna.berg+tag@EXAMPLE.se")
    assert allowed(client, tokens["mailer"], list_name="offers")
    assert allowed(client, tokens["mailer"], email="someone.else@example.se")
    added = [e for e in events(rt) if e.action == "add"]
    assert len(added) == 1
    assert (added[0].list, added[0].reason, added[0].source, added[0].actor) == (
        "news",
        "unsubscribe",
        "one_click",
        "recipient",
    )
    assert added[0].digest == active_digest(rt.ring, EMAIL).value


def test_one_click_works_as_multipart_form_data(
    client: FlaskClient, rt: Runtime, tokens: dict[str, str]
) -> None:
    # RFC 8058 §3.1 allows either form encoding; some mail providers send multipart.
    response = client.post(link(rt), data=ONE_CLICK, content_type="multipart/form-data")
    assert response.status_code == 200
    assert not allowed(client, tokens["mailer"])


FORM = "application/x-www-form-urlencoded"
BOUNDARY = "----suppress-test-boundary"
MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"


def multipart(name: str, value: str) -> bytes:
    """One form field as a raw multipart/form-data body, the way mail providers build it."""
    return (
        f"--{BOUNDARY}\r\n"
        f'Content-Disposition: form-data; name="{name}"\r\n\r\n'
        f"{value}\r\n"
        f"--{BOUNDARY}--\r\n"
    ).encode()


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"List-Unsubscribe=One-Click\r\n", FORM),
        (b"List-Unsubscribe=One-Click\n", FORM),
        (b"  List-Unsubscribe=One-Click  ", FORM),
        (b"\r\nList-Unsubscribe=One-Click\r\n", FORM),
        (b"List-Unsubscribe=One-Click%0D%0A", FORM),
        (b"List-Unsubscribe=One-Click\r\n", FORM + "; charset=UTF-8"),
        (multipart("List-Unsubscribe", "One-Click"), MULTIPART),
        (multipart("List-Unsubscribe", "One-Click\r\n"), MULTIPART),
        (multipart("List-Unsubscribe", " One-Click "), MULTIPART),
    ],
    ids=[
        "form-crlf",
        "form-lf",
        "form-spaces",
        "form-leading-crlf",
        "form-encoded-crlf",
        "form-charset-crlf",
        "multipart",
        "multipart-crlf",
        "multipart-spaces",
    ],
)
def test_one_click_is_accepted_as_mail_clients_send_it(
    client: FlaskClient, rt: Runtime, tokens: dict[str, str], body: bytes, content_type: str
) -> None:
    # RFC 8058 §3.1: the body is "List-Unsubscribe=One-Click", url-encoded or multipart;
    # clients end it with CRLF or pad it, and the form parser keeps that whitespace.
    response = client.post(link(rt), data=body, content_type=content_type, headers=EN)
    assert response.status_code == 200
    assert "<h1>You are unsubscribed</h1>" in response.get_data(as_text=True)
    assert not allowed(client, tokens["mailer"])
    (added,) = [e for e in events(rt) if e.action == "add"]
    assert (added.list, added.reason, added.source) == ("news", "unsubscribe", "one_click")


@pytest.mark.db_agnostic
@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"List-Unsubscribe=One-Click-Later\r\n", FORM),
        (b"List-Unsubscribe=One Click", FORM),
        (b"List-Unsubscribe=\r\n", FORM),
        (b"One-Click\r\n", FORM),
        (b"List-Unsubscribe-Post=One-Click", FORM),
        (multipart("List-Unsubscribe", "One-Click-Later"), MULTIPART),
        (b"List-Unsubscribe=One-Click\r\n", "text/plain"),
        (b"List-Unsubscribe=One-Click\r\n", "application/json"),
    ],
    ids=[
        "other-value",
        "inner-space",
        "empty-value",
        "value-alone",
        "other-name",
        "multipart-other-value",
        "text-plain",
        "json",
    ],
)
def test_anything_else_than_one_click_asks_again_and_records_nothing(
    client: FlaskClient, rt: Runtime, tokens: dict[str, str], body: bytes, content_type: str
) -> None:
    before = counts(rt)
    response = client.post(link(rt), data=body, content_type=content_type, headers=EN)
    assert response.status_code == 400
    assert "Choose one of the options below" in response.get_data(as_text=True)
    assert counts(rt) == before
    assert allowed(client, tokens["mailer"])


@pytest.mark.parametrize(
    ("scope", "list_name", "reason", "other_lists_allowed"),
    [("list", "news", "unsubscribe", True), ("global", "global", "objection", False)],
)
def test_form_suppresses_the_chosen_scope(
    client: FlaskClient,
    rt: Runtime,
    tokens: dict[str, str],
    scope: str,
    list_name: str,
    reason: str,
    other_lists_allowed: bool,
) -> None:
    response = client.post(link(rt) + "?lang=sv", data={"scope": scope})
    assert response.status_code == 200
    body = response.get_data(as_text=True)
    assert html_lang(body) == "sv" and "<h1>Du är avregistrerad</h1>" in body
    assert not allowed(client, tokens["mailer"])
    assert allowed(client, tokens["mailer"], list_name="offers") is other_lists_allowed
    (added,) = [e for e in events(rt) if e.action == "add"]
    assert (added.list, added.reason, added.source) == (list_name, reason, "landing_page")


@pytest.mark.db_agnostic
def test_global_confirmation_says_all_direct_marketing(client: FlaskClient, rt: Runtime) -> None:
    body = client.post(link(rt), data={"scope": "global"}, headers=EN).get_data(as_text=True)
    assert "You will no longer receive any direct marketing from us, on any list." in body


def test_repeating_an_opt_out_is_harmless(client: FlaskClient, rt: Runtime) -> None:
    url = link(rt)
    for data in (ONE_CLICK, ONE_CLICK, {"scope": "list"}, {"scope": "global"}, {"scope": "global"}):
        assert client.post(url, data=data).status_code == 200
    with rt.db.begin(write=False) as session:
        rows = session.scalars(select(Suppression)).all()
        assert sorted(r.list for r in rows) == ["global", "news"]
    assert [e.action for e in events(rt)] == ["add", "add"]


def test_opt_out_is_committed_before_the_answer(client: FlaskClient, rt: Runtime) -> None:
    assert client.post(link(rt), data=ONE_CLICK).status_code == 200
    # Another connection (another instance, in production) sees it at once.
    other = Database(rt.config.database_url)
    try:
        with other.begin(write=False) as session:
            assert session.scalar(select(func.count()).select_from(Suppression)) == 1
    finally:
        other.dispose()


@pytest.mark.db_agnostic
@pytest.mark.parametrize(
    "data",
    [{}, {"scope": "everything"}, {"List-Unsubscribe": "yes"}, {"scope": ""}],
    ids=["empty", "unknown-scope", "not-one-click", "blank-scope"],
)
def test_post_without_a_valid_choice_asks_again_and_records_nothing(
    client: FlaskClient, rt: Runtime, data: dict[str, str]
) -> None:
    before = counts(rt)
    response = client.post(link(rt), data=data, headers=EN)
    assert response.status_code == 400
    body = response.get_data(as_text=True)
    assert 'role="alert"' in body and "Choose one of the options below" in body
    assert 'aria-describedby="choice-error"' in body
    assert counts(rt) == before


def test_a_token_for_the_global_list_offers_only_everything(
    client: FlaskClient, rt: Runtime, tokens: dict[str, str]
) -> None:
    body = client.get(link(rt, list_name="global"), headers=EN).get_data(as_text=True)
    assert 'value="list"' not in body and 'value="global" checked' in body
    assert client.post(link(rt, list_name="global"), data=ONE_CLICK).status_code == 200
    assert not allowed(client, tokens["mailer"], list_name="offers")
    (added,) = [e for e in events(rt) if e.action == "add"]
    assert (added.list, added.reason) == ("global", "objection")


# --- who minted the link -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "source"),
    [
        (ONE_CLICK, "one_click"),
        ({"scope": "list"}, "landing_page"),
        ({"scope": "global"}, "landing_page"),
    ],
    ids=["one-click", "form-list", "form-global"],
)
def test_opt_out_audit_names_the_api_key_that_minted_the_link(
    client: FlaskClient, rt: Runtime, data: dict[str, str], source: str
) -> None:
    # A mailer key can mint a link for any address it has: the trail must say which did.
    assert client.post(link(rt, minted_by=MINTER), data=data).status_code == 200
    (added,) = [e for e in events(rt) if e.action == "add"]
    assert (added.source, added.actor) == (source, "recipient")
    assert added.detail["minted_by"] == MINTER


def test_renewing_an_expired_bounce_by_link_names_the_minter(
    client: FlaskClient, rt: Runtime, tokens: dict[str, str]
) -> None:
    response = client.post(
        "/v1/suppressions",
        json={
            "email": EMAIL,
            "list": "news",
            "reason": "soft_bounce",
            "expires_at": "2999-01-01T00:00:00Z",
        },
        headers=bearer(tokens["recorder"]),
    )
    assert response.status_code == 201
    assert client.post(link(rt, minted_by=MINTER), data=ONE_CLICK).status_code == 200
    changed = events(rt)[-1]
    assert (changed.action, changed.reason, changed.source) == (
        "make_permanent",
        "unsubscribe",
        "one_click",
    )
    assert changed.detail["minted_by"] == MINTER


def first_format_link(rt: Runtime, email: str = EMAIL, list_name: str = "news") -> str:
    """A link as minted before tokens named their API key, built the way that code did."""

    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")

    digest = active_digest(rt.ring, email)
    payload = json.dumps([b64(digest.value), digest.key_id, list_name], separators=(",", ":"))
    signer = Signer(list(reversed([TOKEN_SECRET])), salt=SALT)
    return "/u/" + signer.sign(b64(payload.encode("utf-8"))).decode("ascii")


def test_link_minted_before_tokens_named_their_key_still_suppresses(
    client: FlaskClient, rt: Runtime, tokens: dict[str, str]
) -> None:
    old = first_format_link(rt)
    assert client.get(old, headers=EN).status_code == 200
    response = client.post(old, data=ONE_CLICK, headers=EN)
    assert response.status_code == 200
    assert "<h1>You are unsubscribed</h1>" in response.get_data(as_text=True)
    assert not allowed(client, tokens["mailer"])
    (added,) = [e for e in events(rt) if e.action == "add"]
    assert (added.list, added.source) == ("news", "one_click")
    # Nobody can say which key minted it: the event says so rather than guess.
    assert "minted_by" in added.detail and added.detail["minted_by"] is None


# --- bad links ----------------------------------------------------------------------------


def forged_links(rt: Runtime) -> list[str]:
    good = link(rt)[3:]
    foreign = TokenSigner(["not-our-secret-0123456789abcdefghijk"], rt.ring.key_ids)
    return [
        good[:-1],
        good[: len(good) // 2],
        good[:10] + ("A" if good[10] != "A" else "B") + good[11:],
        good.split(".")[0],
        foreign.sign(active_digest(rt.ring, EMAIL), "news", minted_by=MINTER),
        "x" * 600,
        "%C3%A5" + good,
    ]


@pytest.mark.db_agnostic
@pytest.mark.parametrize(
    ("headers", "lang", "heading"),
    [(SV, "sv", "Länken fungerar inte"), (EN, "en", "This link does not work")],
)
def test_bad_links_get_a_friendly_page_and_change_nothing(
    client: FlaskClient, rt: Runtime, headers: dict[str, str], lang: str, heading: str
) -> None:
    before = counts(rt)
    for bad in forged_links(rt):
        for response in (
            client.get("/u/" + bad, headers=headers),
            client.post("/u/" + bad, data=ONE_CLICK, headers=headers),
            client.post("/u/" + bad, data={"scope": "global"}, headers=headers),
        ):
            assert response.status_code == 400, bad
            assert response.mimetype == "text/html"
            body = response.get_data(as_text=True)
            assert html_lang(body) == lang
            assert f"<h1>{heading}</h1>" in body
    assert counts(rt) == before


@pytest.mark.db_agnostic
def test_link_of_a_retired_pepper_says_so_and_changes_nothing(
    client: FlaskClient, rt: Runtime
) -> None:
    before = counts(rt)
    retired = rt.signer.sign(Digest("gone", bytes(32)), "news", minted_by=MINTER)
    response = client.post("/u/" + retired, data=ONE_CLICK, headers=EN)
    assert response.status_code == 400
    assert "<h1>This link is too old</h1>" in response.get_data(as_text=True)
    assert counts(rt) == before


@pytest.mark.db_agnostic
def test_database_failure_shows_a_retry_page_and_is_not_a_success(
    client: FlaskClient, rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = link(rt)

    def down(*_a: Any, **_k: Any) -> Any:
        raise Unavailable("database unavailable: OperationalError")

    monkeypatch.setattr(rt.db, "begin", down)
    response = client.post(url, data=ONE_CLICK, headers=EN)
    assert response.status_code == 503
    body = response.get_data(as_text=True)
    assert "could not be saved right now" in body and "You are unsubscribed" not in body


# --- rotation --------------------------------------------------------------------------------


def test_link_under_an_older_pepper_is_recorded_there_and_rekeyed_by_the_next_check(
    db_url: str, tmp_path: Any
) -> None:
    old_app: Flask = create_app(settings(db_url, tmp_path, peppers=OLD_PEPPER))
    old_rt: Runtime = old_app.extensions["suppress"]
    mailed_before_rotation = link(old_rt)
    old_rt.db.dispose()

    app: Flask = create_app(settings(db_url, tmp_path, peppers=f"{TEST_PEPPER},{OLD_PEPPER}"))
    rt: Runtime = app.extensions["suppress"]
    client = app.test_client()
    from suppress import apikeys
    from suppress.models import Role

    with rt.db.begin() as session:
        _key, token = apikeys.create(session, "job", Role.mailer, actor="test")
    assert client.post(mailed_before_rotation, data=ONE_CLICK).status_code == 200
    with rt.db.begin(write=False) as session:
        assert list(session.scalars(select(Suppression.key_id))) == ["t0"]
    assert not allowed(client, token)
    with rt.db.begin(write=False) as session:
        row = session.scalars(select(Suppression)).one()
        assert (row.key_id, row.digest) == ("t1", active_digest(rt.ring, EMAIL).value)
    assert client.post(mailed_before_rotation, data=ONE_CLICK).status_code == 200
    assert not allowed(client, token)
    rt.db.dispose()


def test_token_secret_rotation_keeps_old_links_working(db_url: str, tmp_path: Any) -> None:
    fresh = "fresh-secret-for-tests-0123456789abcdef"
    app: Flask = create_app(settings(db_url, tmp_path, token_secrets=f"{fresh},{TOKEN_SECRET}"))
    rt: Runtime = app.extensions["suppress"]
    old_signer = TokenSigner([TOKEN_SECRET], rt.ring.key_ids)
    old_link = "/u/" + old_signer.sign(active_digest(rt.ring, EMAIL), "news", minted_by=MINTER)
    client = app.test_client()
    assert client.get(old_link).status_code == 200
    assert client.post(old_link, data=ONE_CLICK).status_code == 200
    assert counts(rt)[0] == 1
    rt.db.dispose()
