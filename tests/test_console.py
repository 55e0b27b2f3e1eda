"""The console for people (DESIGN §12), in process on SQLite and PostgreSQL: sign-in, sessions,
CSRF, roles, lookup, add and remove, import, the audit trail, jobs, keys and accounts."""

from __future__ import annotations

import io
import json
import logging
import re
from datetime import datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from suppress import clock, users
from suppress.models import AuditEvent, PersonRole
from suppress.runtime import Runtime

from .conftest import bearer, settings

PASSWORD = "correct horse battery"
EMAIL = "Kim.Lind+news@Example.se"
TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


def english(app: Flask) -> FlaskClient:
    """A browser that prefers English (the console's default language is Swedish)."""
    client = app.test_client()
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    return client


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return english(app)


def make_person(rt: Runtime, name: str, role: str, password: str = PASSWORD) -> None:
    with rt.db.begin() as session:
        users.create(session, name, PersonRole(role), password, actor="test", now=clock.utcnow())


def csrf(client: FlaskClient, path: str = "/admin/login") -> str:
    page = client.get(path)
    found = TOKEN.search(page.get_data(as_text=True))
    assert found, page.get_data(as_text=True)[:500]
    return found.group(1)


def sign_in(client: FlaskClient, name: str, password: str = PASSWORD) -> Any:
    token = csrf(client)
    return client.post(
        "/admin/login", data={"username": name, "password": password, "csrf_token": token}
    )


def post(client: FlaskClient, path: str, data: dict[str, Any], **kwargs: Any) -> Any:
    """A console form as a browser sends it: with this session's CSRF token."""
    token = csrf(client, "/admin/password")
    return client.post(path, data={**data, "csrf_token": token}, **kwargs)


def events(rt: Runtime, action: str | None = None) -> list[AuditEvent]:
    with rt.db.begin(write=False) as session:
        query = select(AuditEvent).order_by(AuditEvent.id)
        if action is not None:
            query = query.where(AuditEvent.action == action)
        return list(session.scalars(query))


def count_events(rt: Runtime) -> int:
    with rt.db.begin(write=False) as session:
        return int(session.scalar(select(func.count()).select_from(AuditEvent)) or 0)


@pytest.fixture
def people(rt: Runtime) -> None:
    for name, role in (("ada", "admin"), ("olle", "operator"), ("vera", "viewer")):
        make_person(rt, name, role)


def signed_in(app: Flask, name: str) -> FlaskClient:
    client = english(app)
    assert sign_in(client, name).status_code == 303
    return client


@pytest.fixture
def admin(app: Flask, people: None) -> FlaskClient:
    return signed_in(app, "ada")


@pytest.fixture
def operator(app: Flask, people: None) -> FlaskClient:
    return signed_in(app, "olle")


@pytest.fixture
def viewer(app: Flask, people: None) -> FlaskClient:
    return signed_in(app, "vera")


def session_of(app: Flask, client: FlaskClient) -> dict[str, Any]:
    cookie = client.get_cookie("suppress_console", path="/admin")
    assert cookie is not None
    serializer = app.session_interface.get_signing_serializer(app)  # type: ignore[attr-defined]
    return dict(serializer.loads(cookie.value))


# --- sign-in, sessions, CSRF ---------------------------------------------------------------------

GETS = [
    "/admin/",
    "/admin/requests",
    "/admin/requests/new",
    "/admin/requests/1",
    "/admin/lookup",
    "/admin/add",
    "/admin/remove",
    "/admin/import",
    "/admin/audit",
    "/admin/audit/verify",
    "/admin/jobs",
    "/admin/jobs/1",
    "/admin/keys",
    "/admin/people",
    "/admin/password",
    "/admin/no-such-page",
]


@pytest.mark.parametrize("path", GETS)
def test_anonymous_gets_are_sent_to_the_sign_in_page(client: FlaskClient, path: str) -> None:
    answer = client.get(path)
    assert answer.status_code in (302, 303)
    assert answer.headers["Location"].startswith("/admin/login")


def test_the_sign_in_form_has_the_binding_fields(client: FlaskClient) -> None:
    page = client.get("/admin/login").get_data(as_text=True)
    for field in ('name="username"', 'name="password"', 'type="hidden" name="csrf_token"'):
        assert field in page


def test_signing_in_answers_a_redirect_and_a_strict_http_only_secure_cookie(
    client: FlaskClient, rt: Runtime, people: None
) -> None:
    answer = sign_in(client, "Ada")
    assert answer.status_code == 303 and answer.headers["Location"] == "/admin/"
    cookie = answer.headers["Set-Cookie"]
    assert cookie.startswith("suppress_console=")
    for attribute in ("HttpOnly", "Secure", "SameSite=Strict", "Path=/admin"):
        assert attribute in cookie
    assert client.get("/admin/").status_code == 200
    (login,) = events(rt, "console_login")
    assert login.actor == "console:ada"


def test_the_cookie_is_not_secure_when_the_base_url_is_plain_http(
    db_url: str, tmp_path: Any
) -> None:
    from suppress import create_app

    app = create_app(settings(db_url, tmp_path, base_url="http://127.0.0.1:8000"))
    try:
        make_person(app.extensions["suppress"], "ada", "admin")
        cookie = sign_in(english(app), "ada").headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" not in cookie
    finally:
        app.extensions["suppress"].db.dispose()


def test_sign_in_continues_to_the_page_asked_for_and_nowhere_else(
    client: FlaskClient, people: None
) -> None:
    assert client.get("/admin/jobs").headers["Location"] == "/admin/login?next=/admin/jobs"
    token = csrf(client, "/admin/login?next=/admin/jobs")
    form = {"username": "vera", "password": PASSWORD, "csrf_token": token}
    answer = client.post("/admin/login", data={**form, "next": "/admin/jobs"})
    assert answer.headers["Location"] == "/admin/jobs"
    other = signed_out(client)
    token = csrf(other)
    answer = other.post(
        "/admin/login", data={**form, "csrf_token": token, "next": "https://evil.example/"}
    )
    assert answer.headers["Location"] == "/admin/"


def signed_out(client: FlaskClient) -> FlaskClient:
    client.delete_cookie("suppress_console", path="/admin")
    return client


def test_a_wrong_password_is_refused_with_the_same_words_as_an_unknown_name(
    client: FlaskClient, rt: Runtime, people: None
) -> None:
    wrong = sign_in(client, "ada", "not the password").get_data(as_text=True)
    unknown = sign_in(client, "nobody", "not the password").get_data(as_text=True)
    message = "The name or the password is not right"
    assert message in wrong and message in unknown
    assert client.get("/admin/").status_code == 303
    assert events(rt, "console_login") == []


def test_five_wrong_passwords_lock_the_account_for_fifteen_minutes(
    client: FlaskClient, rt: Runtime, people: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    start = datetime(2030, 3, 1, 9, 0)
    monkeypatch.setattr(clock, "utcnow", lambda: start)
    for _ in range(5):
        assert sign_in(client, "olle", "guess guess guess").status_code == 200
    (lock,) = events(rt, "console_lockout")
    assert lock.detail["user"] == "olle" and lock.detail["attempts"] == 5
    refused = sign_in(client, "olle")  # the right password does not help while locked
    assert refused.status_code == 200 and "is locked for 15 minutes" in refused.get_data(True)
    monkeypatch.setattr(clock, "utcnow", lambda: start + timedelta(minutes=14, seconds=59))
    assert sign_in(client, "olle").status_code == 200
    monkeypatch.setattr(clock, "utcnow", lambda: start + timedelta(minutes=15, seconds=1))
    assert sign_in(client, "olle").status_code == 303
    assert len(events(rt, "console_lockout")) == 1


def test_sign_in_attempts_are_limited_per_client_address(client: FlaskClient, people: None) -> None:
    statuses = [sign_in(client, f"nobody{n}", "no password at all").status_code for n in range(11)]
    assert statuses[:10] == [200] * 10 and statuses[10] == 429
    page = client.post("/admin/login", data={"csrf_token": csrf(client)})
    assert page.status_code == 429 and "Too many attempts" in page.get_data(as_text=True)
    assert page.headers["Retry-After"]


POSTS = [
    "/admin/login",
    "/admin/logout",
    "/admin/lookup",
    "/admin/lookup/download",
    "/admin/add",
    "/admin/remove",
    "/admin/import",
    "/admin/password",
    "/admin/jobs/expire/run",
    "/admin/keys",
    "/admin/keys/1/revoke",
    "/admin/people",
    "/admin/people/olle/disable",
    "/admin/people/olle/enable",
    "/admin/people/olle/password",
]


@pytest.mark.parametrize("path", POSTS)
def test_a_post_without_this_sessions_csrf_token_is_refused(
    admin: FlaskClient, rt: Runtime, path: str
) -> None:
    before = count_events(rt)
    body = {"value": EMAIL, "list": "news", "reason": "unsubscribe", "evidence": "form 12"}
    for token in (None, "forged-token", csrf(english(admin.application))):
        data = dict(body) if token is None else {**body, "csrf_token": token}
        answer = admin.post(path, data=data)
        assert answer.status_code == 403, path
        assert "This form could not be accepted" in answer.get_data(as_text=True)
    assert count_events(rt) == before
    assert admin.get("/admin/").status_code == 200  # still signed in


def test_a_form_sent_from_another_site_is_refused_even_with_the_token(
    admin: FlaskClient, rt: Runtime
) -> None:
    before = count_events(rt)
    token = csrf(admin, "/admin/add")
    answer = admin.post(
        "/admin/add",
        data={"value": EMAIL, "list": "news", "reason": "unsubscribe", "csrf_token": token},
        headers={"Sec-Fetch-Site": "cross-site"},
    )
    assert answer.status_code == 403 and count_events(rt) == before


def test_signing_out_ends_every_session_of_the_account(
    app: Flask, rt: Runtime, people: None
) -> None:
    first, second = signed_in(app, "ada"), signed_in(app, "ada")
    assert second.get("/admin/").status_code == 200
    answer = post(first, "/admin/logout", {})
    assert answer.status_code == 303 and answer.headers["Location"] == "/admin/login"
    assert first.get("/admin/").status_code == 303
    assert second.get("/admin/").status_code == 303
    assert [e.actor for e in events(rt, "console_logout")] == ["console:ada"]


def test_a_session_ends_after_thirty_idle_minutes_and_after_eight_hours(
    app: Flask, people: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [datetime(2030, 3, 1, 8, 0)]
    monkeypatch.setattr(clock, "utcnow", lambda: now[0])
    client = signed_in(app, "vera")
    for _ in range(20):  # busy all day: a request every 25 minutes
        now[0] += timedelta(minutes=25)
        if now[0] - datetime(2030, 3, 1, 8, 0) > timedelta(hours=8):
            break
        assert client.get("/admin/").status_code == 200
    now[0] = datetime(2030, 3, 1, 16, 1)
    answer = client.get("/admin/")
    assert answer.status_code == 303
    page = client.get(answer.headers["Location"]).get_data(as_text=True)
    assert "Your session ended" in page

    client = signed_in(app, "vera")
    now[0] += timedelta(minutes=30, seconds=30)
    assert client.get("/admin/").status_code == 303


def test_disabling_an_account_ends_its_sessions_at_once(
    app: Flask, rt: Runtime, people: None
) -> None:
    client = signed_in(app, "olle")
    with rt.db.begin() as session:
        users.disable(session, "olle", actor="test", now=clock.utcnow())
    assert client.get("/admin/").status_code == 303


def test_console_pages_are_never_cached_nor_framed_and_load_nothing_from_elsewhere(
    admin: FlaskClient,
) -> None:
    for path in ("/admin/login", "/admin/", "/admin/lookup", "/admin/audit", "/admin/people"):
        answer = admin.get(path)
        assert answer.headers["Cache-Control"] == "no-store"
        policy = answer.headers["Content-Security-Policy"]
        assert policy.startswith("default-src 'none'; style-src 'sha256-")
        assert "form-action 'self'; frame-ancestors 'none'; base-uri 'none'" in policy
        assert "script" not in answer.get_data(as_text=True).lower()
        assert answer.headers["X-Robots-Tag"] == "noindex, nofollow"


def test_the_console_speaks_swedish_and_remembers_it(admin: FlaskClient) -> None:
    assert "<h1>Overview</h1>" in admin.get("/admin/", headers={"Accept-Language": "en"}).text
    page = admin.get("/admin/?lang=sv")
    assert '<html lang="sv">' in page.text and "<h1>Översikt</h1>" in page.text
    later = admin.get("/admin/lookup", headers={"Accept-Language": "en"}).text
    assert '<html lang="sv">' in later and "Slå upp en adress" in later


# --- roles ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("who", "path", "data"),
    [
        ("vera", "/admin/lookup", {"value": EMAIL}),
        ("vera", "/admin/add", {"value": EMAIL, "list": "news", "reason": "unsubscribe"}),
        ("vera", "/admin/import", {"list": "news", "reason": "unsubscribe"}),
        ("olle", "/admin/remove", {"value": EMAIL, "list": "news", "reason": "x", "evidence": "y"}),
        ("olle", "/admin/jobs/expire/run", {}),
        ("olle", "/admin/keys", {"name": "job", "role": "admin"}),
        ("olle", "/admin/people", {"name": "eve", "role": "admin", "password": PASSWORD * 2}),
    ],
)
def test_a_role_is_refused_what_it_does_not_include_and_nothing_is_recorded(
    app: Flask, rt: Runtime, people: None, who: str, path: str, data: dict[str, str]
) -> None:
    client = signed_in(app, who)
    before = count_events(rt)
    answer = post(client, path, data)
    assert answer.status_code == 403
    assert "Your role does not allow this" in answer.get_data(as_text=True)
    assert count_events(rt) == before
    if path in ("/admin/lookup", "/admin/remove", "/admin/keys", "/admin/people"):
        assert client.get(path).status_code == 403


def test_the_menu_shows_each_role_what_it_may_do(
    viewer: FlaskClient, operator: FlaskClient, admin: FlaskClient
) -> None:
    def menu(client: FlaskClient) -> set[str]:
        page = client.get("/admin/").get_data(as_text=True)
        nav = page.split('<nav class="sections"', 1)[1].split("</nav>", 1)[0]
        return set(re.findall(r'href="(/admin/[a-z]*)"', nav))

    common = {"/admin/", "/admin/requests", "/admin/audit", "/admin/jobs"}
    assert menu(viewer) == common
    assert menu(operator) == common | {"/admin/lookup", "/admin/add", "/admin/import"}
    assert menu(admin) == menu(operator) | {"/admin/remove", "/admin/keys", "/admin/people"}


# --- lookup, add, remove, import ----------------------------------------------------------------


def test_a_lookup_is_recorded_as_v1_lookup_records_it_with_the_persons_name(
    operator: FlaskClient, client: FlaskClient, rt: Runtime, tokens: dict[str, str]
) -> None:
    client.post(
        "/v1/suppressions",
        json={"email": EMAIL, "list": "news", "reason": "unsubscribe"},
        headers=bearer(tokens["recorder"]),
    )
    api = client.post(
        "/v1/lookup", json={"email": EMAIL, "reference": "DSR-1"}, headers=bearer(tokens["admin"])
    ).get_json()
    page = post(operator, "/admin/lookup", {"value": EMAIL, "reference": "DSR-1"})
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert f"What is kept about {EMAIL}" in text
    assert api["digests"][0]["digest"] in text and "news" in text
    by_api, by_console = events(rt, "lookup")
    assert by_api.actor == "api:test-admin" and by_console.actor == "console:olle"
    for name in ("digest", "kind", "list", "reason", "source"):
        assert getattr(by_api, name) == getattr(by_console, name), name
    # The same facts, and the console's look-up sees the API's among the events.
    assert by_api.detail == {"suppressions": 1, "events": 1, "requests": 0, "reference": "DSR-1"}
    assert by_console.detail == {
        "suppressions": 1,
        "events": 2,
        "requests": 0,
        "reference": "DSR-1",
    }


def test_the_lookup_downloads_as_json_by_post_with_no_address_in_the_file_name(
    operator: FlaskClient, rt: Runtime
) -> None:
    post(operator, "/admin/add", {"value": EMAIL, "list": "global", "reason": "objection"})
    answer = post(operator, "/admin/lookup/download", {"value": EMAIL, "reference": ""})
    assert answer.status_code == 200 and answer.mimetype == "application/json"
    disposition = answer.headers["Content-Disposition"]
    assert disposition.startswith('attachment; filename="lookup-') and "@" not in disposition
    body = json.loads(answer.get_data(as_text=True))
    assert body["email"] == EMAIL
    assert set(body) >= {"digests", "suppressions", "events"}
    assert [(s["list"], s["reason"]) for s in body["suppressions"]] == [("global", "objection")]
    assert answer.headers["Cache-Control"] == "no-store"
    assert events(rt, "lookup")[-1].actor == "console:olle"


def test_a_lookup_of_something_that_is_no_address_says_so_and_records_nothing(
    operator: FlaskClient, rt: Runtime
) -> None:
    before = count_events(rt)
    answer = post(operator, "/admin/lookup", {"value": "not an address"})
    assert answer.status_code == 422
    assert "This is not an e-mail address the list can keep" in answer.get_data(as_text=True)
    assert count_events(rt) == before


def test_add_and_remove_with_evidence_in_the_persons_name(
    operator: FlaskClient,
    admin: FlaskClient,
    client: FlaskClient,
    rt: Runtime,
    tokens: dict[str, str],
) -> None:
    def allowed() -> bool:
        verdict = client.post(
            "/v1/check", json={"email": EMAIL, "list": "news"}, headers=bearer(tokens["mailer"])
        ).get_json()
        return bool(verdict["allowed"])

    form = {"kind": "address", "value": EMAIL, "list": "news", "reason": "unsubscribe"}
    added = post(operator, "/admin/add", {**form, "source": "phone"})
    assert added.status_code == 303 and added.headers["Location"] == "/admin/add"
    assert "Added to the list news" in operator.get("/admin/add").get_data(as_text=True)
    assert not allowed()
    again = post(operator, "/admin/add", {**form, "source": "phone"})
    assert "Already on the list news" in operator.get(again.headers["Location"]).text
    (add,) = events(rt, "add")
    assert (add.actor, add.source, add.reason) == ("console:olle", "phone", "unsubscribe")

    removal = {"kind": "address", "value": EMAIL, "list": "news", "reason": "resubscribed"}
    for evidence, problem in (("", "Fill this in."), ("mail from kim@example.se", "reference")):
        refused = post(admin, "/admin/remove", {**removal, "evidence": evidence})
        assert refused.status_code == 422 and problem in refused.get_data(as_text=True)
    assert not allowed()
    removed = post(admin, "/admin/remove", {**removal, "evidence": "signup form 2026-1142"})
    assert removed.status_code == 303
    assert "Removed from the list news" in admin.get("/admin/remove").text
    assert allowed()
    (remove,) = events(rt, "remove")
    assert remove.actor == "console:ada"
    assert remove.detail["evidence"] == "signup form 2026-1142"
    assert remove.detail["removal_reason"] == "resubscribed"
    missing = post(admin, "/admin/remove", {**removal, "evidence": "signup form 2026-1142"})
    assert missing.status_code == 404 and "Nothing was changed" in missing.text


def test_a_domain_is_added_as_a_domain(operator: FlaskClient, rt: Runtime) -> None:
    form = {"kind": "domain", "value": "Example.org", "list": "global", "reason": "manual"}
    assert post(operator, "/admin/add", {**form, "source": "console"}).status_code == 303
    (add,) = events(rt, "add")
    assert add.kind == "domain" and add.list == "global"


def test_a_reader_source_and_a_bad_list_are_refused_with_the_form_kept(
    operator: FlaskClient, rt: Runtime
) -> None:
    form = {"kind": "address", "value": EMAIL, "reason": "unsubscribe"}
    answer = post(operator, "/admin/add", {**form, "list": "Bad List", "source": "one_click"})
    text = answer.get_data(as_text=True)
    assert answer.status_code == 422
    assert "A list name is 1 to 64 characters" in text
    assert "This source is kept for opt-outs that readers make" in text
    assert f'value="{EMAIL}"' in text  # the form keeps what was typed
    assert events(rt, "add") == []


def test_an_import_shows_its_progress_and_imports_in_the_persons_name(
    operator: FlaskClient, rt: Runtime
) -> None:
    body = b"email,name\nana@example.se,Ana\nnot an address,X\nBo@Example.se,Bo\nana@example.se,A\n"
    answer = post(
        operator,
        "/admin/import",
        {
            "file": (io.BytesIO(body), "event.csv"),
            "format": "csv",
            "list": "news",
            "reason": "unsubscribe",
            "source": "event-2026",
        },
        content_type="multipart/form-data",
    )
    assert answer.status_code == 200 and answer.is_streamed
    text = answer.get_data(as_text=True)
    assert "5 lines read: 2 added, 1 already on the list, 2 not addresses." in text
    assert "Done" in text and "1, 3" in text
    adds = events(rt, "add")
    assert len(adds) == 2 and {e.actor for e in adds} == {"console:olle"}
    assert {e.source for e in adds} == {"event-2026"}


def test_an_import_without_a_file_keeps_the_form(operator: FlaskClient) -> None:
    answer = post(
        operator,
        "/admin/import",
        {"list": "news", "reason": "unsubscribe", "source": "x"},
        content_type="multipart/form-data",
    )
    assert answer.status_code == 422 and "Choose a file." in answer.get_data(as_text=True)


def test_no_address_reaches_a_cookie_a_url_or_a_log_line(
    app: Flask, operator: FlaskClient, admin: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    addresses = ["kim.lind@example.se", "olle.berg@example.se", "dagmar.holm@example.se"]
    seen: list[str] = []
    for email in addresses:
        for client, path, data in (
            (operator, "/admin/lookup", {"value": email}),
            (operator, "/admin/add", {"value": email, "list": "news", "reason": "complaint"}),
            (operator, "/admin/lookup/download", {"value": email}),
            (
                admin,
                "/admin/remove",
                {"value": email, "list": "news", "reason": "r", "evidence": "e"},
            ),
        ):
            answer = post(client, path, {**data, "source": "phone"})
            seen.append(answer.headers.get("Location", ""))
            seen.append(answer.headers.get("Set-Cookie", ""))
            seen.append(json.dumps(session_of(app, client)))
    post(
        operator,
        "/admin/import",
        {
            "file": (io.BytesIO("\n".join(addresses).encode()), "x.txt"),
            "format": "plain",
            "list": "news",
            "reason": "unsubscribe",
            "source": "event",
        },
        content_type="multipart/form-data",
    ).get_data()
    seen += [record.getMessage() for record in caplog.records]
    seen.append(json.dumps(session_of(app, operator)))
    text = "\n".join(seen).lower()
    for email in addresses:
        assert email not in text and email.split("@")[0] not in text


# --- the trail, jobs, keys, people ---------------------------------------------------------------


def test_the_audit_trail_page_shows_events_and_verifies_the_chain(
    viewer: FlaskClient, operator: FlaskClient
) -> None:
    post(operator, "/admin/add", {"value": EMAIL, "list": "news", "reason": "unsubscribe"})
    page = viewer.get("/admin/audit").get_data(as_text=True)
    assert "console:olle" in page and "<code>add</code>" in page
    only = viewer.get("/admin/audit?action=console_login").get_data(as_text=True)
    assert "<code>console_login</code>" in only and "<code>add</code>" not in only
    verified = viewer.get("/admin/audit/verify").get_data(as_text=True)
    assert "The chain is whole" in verified


def test_a_broken_chain_is_shown_as_broken(viewer: FlaskClient, rt: Runtime, backend: str) -> None:
    from sqlalchemy import text

    with rt.db.engine.begin() as conn:
        if backend == "sqlite":
            conn.execute(text("DROP TRIGGER IF EXISTS audit_event_no_update"))
        else:
            conn.execute(text("ALTER TABLE audit_event DISABLE TRIGGER USER"))
        conn.execute(text("UPDATE audit_event SET actor = 'someone else' WHERE id = 1"))
    page = viewer.get("/admin/audit/verify").get_data(as_text=True)
    assert "The chain is broken" in page and "event 1 was edited" in page


def test_job_runs_and_their_reports_and_an_admin_runs_one(
    viewer: FlaskClient, admin: FlaskClient, rt: Runtime
) -> None:
    assert "No job has run yet." in viewer.get("/admin/jobs").get_data(as_text=True)
    assert "Run expire now" not in viewer.get("/admin/jobs").get_data(as_text=True)
    ran = post(admin, "/admin/jobs/expire/run", {})
    assert ran.status_code == 303
    report = admin.get(ran.headers["Location"]).get_data(as_text=True)
    assert "The job expire ran and finished well" in report and "idempotency_purged" in report
    listing = viewer.get("/admin/jobs").get_data(as_text=True)
    assert "expire" in listing and "manual:" in listing
    (job,) = events(rt, "job")
    assert job.detail["requested_by"] == "console:ada"
    assert viewer.get("/admin/jobs/999").status_code == 404


def test_an_admin_creates_a_key_seen_once_and_revokes_it(
    app: Flask, admin: FlaskClient, client: FlaskClient, rt: Runtime
) -> None:
    made = post(admin, "/admin/keys", {"name": "newsletter-job", "role": "mailer"})
    text = made.get_data(as_text=True)
    token = re.search(r'<p class="secret">(sk_[^<]+)</p>', text)
    assert made.status_code == 200 and token is not None
    assert token.group(1) not in json.dumps(session_of(app, admin))
    assert token.group(1) not in admin.get("/admin/keys").get_data(as_text=True)
    check = {"email": EMAIL, "list": "news"}
    assert client.post("/v1/check", json=check, headers=bearer(token.group(1))).status_code == 200
    (created,) = events(rt, "apikey_create")
    assert created.actor == "console:ada"
    key_id = created.detail["key_id"]
    assert post(admin, f"/admin/keys/{key_id}/revoke", {}).status_code == 303
    assert client.post("/v1/check", json=check, headers=bearer(token.group(1))).status_code == 401
    bad = post(admin, "/admin/keys", {"name": "kim@example.se", "role": "mailer"})
    assert bad.status_code == 422


def test_an_admin_manages_people(app: Flask, admin: FlaskClient, rt: Runtime) -> None:
    made = post(admin, "/admin/people", {"name": "Eva", "role": "operator", "password": PASSWORD})
    assert made.status_code == 303
    assert "eva can now sign in" in admin.get("/admin/people").get_data(as_text=True)
    eva = signed_in(app, "eva")
    short = post(admin, "/admin/people", {"name": "finn", "role": "viewer", "password": "short"})
    assert short.status_code == 422 and "at least 12 characters" in short.text
    assert post(admin, "/admin/people/eva/disable", {}).status_code == 303
    assert eva.get("/admin/").status_code == 303
    assert post(admin, "/admin/people/eva/enable", {}).status_code == 303
    new = "another fine passphrase"
    assert post(admin, "/admin/people/eva/password", {"password": new}).status_code == 303
    assert sign_in(english(app), "eva", new).status_code == 303
    own = post(admin, "/admin/people/ada/disable", {})
    assert own.status_code == 422 and "your own account" in own.text
    actions = [(e.action, e.actor) for e in events(rt) if e.action.startswith("user_")]
    assert actions == [
        ("user_create", "test"),
        ("user_create", "test"),
        ("user_create", "test"),
        ("user_create", "console:ada"),
        ("user_disable", "console:ada"),
        ("user_enable", "console:ada"),
        ("user_password_reset", "console:ada"),
    ]


def test_a_person_changes_their_own_password(app: Flask, viewer: FlaskClient, rt: Runtime) -> None:
    other = signed_in(app, "vera")
    new = "my own new passphrase"
    wrong = post(viewer, "/admin/password", {"current": "nope", "new": new, "repeat": new})
    assert wrong.status_code == 400 and "not right" in wrong.get_data(as_text=True)
    differ = post(viewer, "/admin/password", {"current": PASSWORD, "new": new, "repeat": new + "x"})
    assert differ.status_code == 400
    done = post(viewer, "/admin/password", {"current": PASSWORD, "new": new, "repeat": new})
    assert done.status_code == 303
    assert viewer.get("/admin/").status_code == 200  # this session goes on
    assert other.get("/admin/").status_code == 303  # the others end
    assert sign_in(english(app), "vera", new).status_code == 303
    assert events(rt, "user_password_change")[0].actor == "console:vera"


# --- the overview ----------------------------------------------------------------------------


def test_the_overview_draws_opt_outs_gate_verdicts_and_reconcile_drift(
    app: Flask,
    people: None,
    client: FlaskClient,
    rt: Runtime,
    tokens: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from suppress.models import JobRun

    now = datetime(2030, 6, 15, 10, 0)
    for days_ago, email, reason, source in (
        (0, "a@example.se", "unsubscribe", "api"),
        (0, "b@example.se", "complaint", "webhook:sendgrid"),
        (3, "c@example.se", "unsubscribe", "api"),
        (120, "d@example.se", "objection", "api"),  # before the 90 days drawn
    ):
        monkeypatch.setattr(clock, "utcnow", lambda d=days_ago: now - timedelta(days=d))
        client.post(
            "/v1/suppressions",
            json={"email": email, "list": "news", "reason": reason, "source": source},
            headers=bearer(tokens["recorder"]),
        )
    monkeypatch.setattr(clock, "utcnow", lambda: now)
    client.post(
        "/v1/check",
        json={"email": "a@example.se", "list": "news"},
        headers=bearer(tokens["mailer"]),
    )
    with rt.db.begin() as session:
        session.add(
            JobRun(
                job="reconcile",
                run_key="2030-06-15",
                started_at=now - timedelta(hours=8),
                finished_at=now - timedelta(hours=8),
                status="ok",
                summary={
                    "sources": {"sendgrid": {"files": 1, "rows": 9, "added": 7}},
                    "audits": [{"name": "crm", "list": "news", "checked": 50, "remove": 4}],
                    "errors": [],
                },
            )
        )
    viewer = signed_in(app, "vera")
    page = viewer.get("/admin/").get_data(as_text=True)
    assert page.count('<svg class="chart" role="img"') == 4
    assert '<title id="by-reason-title">Opt-outs per day by reason, last 90 days</title>' in page
    assert "3 opt-outs in all" in page  # the one 120 days ago is outside
    assert "<strong>4</strong> suppressions on the list" in page
    assert "webhook:sendgrid" in page and "Spam complaint" in page
    assert '<th scope="row">2030-06-12</th>' in page  # the table behind the chart
    assert "Gate verdicts since the servers started" in page
    assert "Added from the mailing tools" in page and '<td class="num">7</td>' in page
    assert '<td class="num">4</td>' in page
    assert " style=" not in page and "<script" not in page


def test_the_overview_of_an_empty_list_says_so(viewer: FlaskClient) -> None:
    page = viewer.get("/admin/").get_data(as_text=True)
    assert "The list is empty." in page and "No reconcile has run yet." in page
    assert "0 opt-outs in all" in page


# --- guessing through the password page, names by case, what a download records ---------------


def test_wrong_current_passwords_count_toward_the_lockout_and_end_the_session(
    app: Flask, viewer: FlaskClient, rt: Runtime
) -> None:
    other = signed_in(app, "vera")
    new = "my own new passphrase"
    for _ in range(4):
        wrong = post(viewer, "/admin/password", {"current": "guess", "new": new, "repeat": new})
        assert wrong.status_code == 400 and "locked for 15 minutes" in wrong.get_data(True)
    assert viewer.get("/admin/").status_code == 200
    locked = post(viewer, "/admin/password", {"current": "guess", "new": new, "repeat": new})
    assert locked.status_code == 303 and locked.headers["Location"] == "/admin/login"
    page = viewer.get("/admin/login").get_data(as_text=True)
    assert "Too many wrong passwords: your account is locked" in page
    assert viewer.get("/admin/").status_code == 303 and other.get("/admin/").status_code == 303
    (lock,) = events(rt, "console_lockout")
    assert lock.detail["user"] == "vera"
    assert sign_in(english(app), "vera").status_code == 200  # the right password waits too
    assert events(rt, "user_password_change") == []


def test_a_new_password_is_judged_before_the_current_one_is_checked(
    viewer: FlaskClient, rt: Runtime
) -> None:
    from suppress.models import ConsoleUser

    for current in ("guess", PASSWORD):
        short = post(viewer, "/admin/password", {"current": current, "new": "x", "repeat": "x"})
        assert short.status_code == 400 and "at least 12 characters" in short.get_data(True)
    with rt.db.begin(write=False) as session:
        vera = session.scalars(select(ConsoleUser).where(ConsoleUser.name == "vera")).one()
        assert vera.failed_logins == 0


def test_password_changes_share_the_sign_in_budget_of_the_client_address(
    admin: FlaskClient, people: None
) -> None:
    # The admin's own sign-in was the first of the ten a minute; another browser, same address.
    stranger = english(admin.application)
    assert [sign_in(stranger, f"nobody{n}", "x").status_code for n in range(9)] == [200] * 9
    new = "my own new passphrase"
    answer = post(admin, "/admin/password", {"current": "guess", "new": new, "repeat": new})
    assert answer.status_code == 429


def test_a_locked_or_disabled_account_costs_a_password_hash_all_the_same(
    rt: Runtime, people: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    verified: list[str] = []
    real = users._verify

    def counting(password_hash: str, password: str) -> bool:
        verified.append(password_hash)
        return real(password_hash, password)

    monkeypatch.setattr(users, "_verify", counting)
    now, rule = clock.utcnow(), users.Lockout()
    with rt.db.begin() as session:
        users.disable(session, "olle", actor="test", now=now)
    with rt.db.begin() as session:
        assert users.authenticate(session, "olle", PASSWORD, now=now, lockout=rule).refused == (
            "disabled"
        )
    for _ in range(rule.attempts):
        with rt.db.begin() as session:
            users.authenticate(session, "vera", "guess", now=now, lockout=rule)
    with rt.db.begin() as session:
        assert users.authenticate(session, "vera", PASSWORD, now=now, lockout=rule).refused == (
            "locked"
        )
    assert len(verified) == 1 + rule.attempts + 1


def test_a_name_in_another_case_is_still_ones_own_and_a_bad_name_is_no_last_admin(
    admin: FlaskClient, rt: Runtime
) -> None:
    own = post(admin, "/admin/people/ADA/disable", {})
    assert own.status_code == 422 and "your own account" in own.get_data(True)
    assert admin.get("/admin/").status_code == 200
    bad = post(admin, "/admin/people/no%40one/disable", {})
    assert bad.status_code == 400 and "last administrator" not in bad.get_data(True)
    unknown = post(admin, "/admin/people/nobody/disable", {})
    assert unknown.status_code == 404
    assert events(rt, "user_disable") == []


def test_a_download_is_recorded_as_a_download(operator: FlaskClient, rt: Runtime) -> None:
    post(operator, "/admin/lookup", {"value": EMAIL, "reference": "DSR-7"})
    post(operator, "/admin/lookup/download", {"value": EMAIL, "reference": "DSR-7"})
    shown, downloaded = events(rt, "lookup")
    assert "download" not in shown.detail
    assert downloaded.detail["download"] is True and downloaded.detail["reference"] == "DSR-7"


def test_an_import_is_summed_up_in_one_event_and_its_progress_counts_what_it_received(
    operator: FlaskClient, rt: Runtime
) -> None:
    body = b"ana@example.se\n\n\nbo@example.se\nnot an address\n"
    answer = post(
        operator,
        "/admin/import",
        {
            "file": (io.BytesIO(body), "list.txt"),
            "format": "plain",
            "list": "news",
            "reason": "unsubscribe",
            "source": "fair",
        },
        content_type="multipart/form-data",
    )
    text = answer.get_data(as_text=True)
    progress = re.findall(r"<li>(\d+) lines read", text)
    final = re.search(r"(\d+) lines read: 2 added", text.split('id="done"')[1])
    assert final is not None and progress == [final.group(1)] == ["3"]
    (summary,) = events(rt, "console_import")
    assert summary.actor == "console:olle"
    assert summary.detail == {
        "list": "news",
        "reason": "unsubscribe",
        "source": "fair",
        "received": 3,
        "added": 2,
        "existing": 0,
        "invalid": 1,
        "finished": True,
    }
