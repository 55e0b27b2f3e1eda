"""The register of data-subject requests in the console (DESIGN §11 in §12), on SQLite and
PostgreSQL: register, the filters, verify, extend and its refusals, close, roles, CSRF, the
audit trail in the person's name, no address kept or sent anywhere, the lookup and overview."""

from __future__ import annotations

import json
import logging
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, text
from werkzeug.datastructures import MultiDict

from suppress import clock
from suppress.models import AuditEvent, SubjectRequest, Suppression
from suppress.runtime import Runtime

from .conftest import bearer
from .test_console import count_events, csrf, events, make_person, post, session_of, signed_in

# Tests run on 10 March 2030, 10:00 in Stockholm (09:00 UTC).
NOW = datetime(2030, 3, 10, 9, 0)
EMAIL = "Kim.Lind+dsr@Example.se"
PLAINTEXT = ("kim.lind", "kim.lind+dsr", "example.se")


@pytest.fixture
def fixed(monkeypatch: pytest.MonkeyPatch) -> datetime:
    """The service's one clock stands still at NOW (before anyone signs in)."""
    monkeypatch.setattr(clock, "utcnow", lambda: NOW)
    return NOW


@pytest.fixture
def staff(rt: Runtime, fixed: datetime) -> None:
    for name, role in (("ada", "admin"), ("olle", "operator"), ("vera", "viewer")):
        make_person(rt, name, role)


@pytest.fixture
def ada(app: Flask, staff: None) -> FlaskClient:
    return signed_in(app, "ada")


@pytest.fixture
def olle(app: Flask, staff: None) -> FlaskClient:
    return signed_in(app, "olle")


@pytest.fixture
def vera(app: Flask, staff: None) -> FlaskClient:
    return signed_in(app, "vera")


def register(client: FlaskClient, expect: int = 303, **fields: str) -> Any:
    """Register a request through the console's form; the answer."""
    form = {
        "kind": "access",
        "received_day": "2030-03-02",
        "received_time": "14:05",
        "reference": "DSR-2030-001",
        "email": "",
        "channel": "phone",
        "note": "",
        **fields,
    }
    answer = post(client, "/admin/requests/new", form)
    assert answer.status_code == expect, answer.get_data(as_text=True)[:3000]
    return answer


def registered(client: FlaskClient, **fields: str) -> int:
    """Register a request and return its id (from where the answer sends the browser)."""
    location = register(client, **fields).headers["Location"]
    found = re.fullmatch(r"/admin/requests/(\d+)", location)
    assert found, location
    return int(found.group(1))


def the_request(rt: Runtime, request_id: int) -> SubjectRequest:
    with rt.db.begin(write=False) as session:
        row = session.get(SubjectRequest, request_id)
        assert row is not None
        session.expunge(row)
        return row


def main_text(answer: Any) -> str:
    """The page's main content as text, tags removed and spaces folded."""
    page = answer.get_data(as_text=True)
    body = page.split('<main id="main">', 1)[1].split("</main>", 1)[0]
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", body))


# --- registering ------------------------------------------------------------------------------


def test_an_operator_registers_a_request_with_its_clock_in_the_persons_name(
    olle: FlaskClient, rt: Runtime
) -> None:
    form = olle.get("/admin/requests/new").get_data(as_text=True)
    for field in ("kind", "received_day", "received_time", "reference", "email", "channel"):
        assert f'name="{field}"' in form
    assert '<textarea id="note" name="note"' in form and 'name="csrf_token"' in form
    assert 'value="2030-03-10"' in form and 'value="10:00"' in form  # today, in Stockholm
    assert "Withdrawal of consent" in form and ">consent_withdrawal<" not in form

    request_id = registered(olle, kind="access", reference="DSR-2030-017", note="By post")
    page = olle.get(f"/admin/requests/{request_id}")
    shown = main_text(page)
    assert "The request is registered. It is due April 2, 2030." in shown
    assert "Request DSR-2030-017" in shown and "Access to their data" in shown
    assert "March 2, 2030 (2030-03-02 14:05)" in shown  # received, in the controller's zone
    assert "April 2, 2030 (one calendar month after the day of receipt)" in shown
    assert "It can be extended to June 2, 2030" in shown
    assert "23 days left" in shown and "Not verified" in shown and "By post" in shown
    row = the_request(rt, request_id)
    assert row.received_at == datetime(2030, 3, 2, 13, 5)  # 14:05 in Stockholm, as UTC
    assert (row.reference, row.channel, row.digest) == ("DSR-2030-017", "phone", None)
    (event,) = events(rt, "request_register")
    assert event.actor == "console:olle"
    assert event.detail["reference"] == "DSR-2030-017" and event.detail["due"] == "2030-04-02"


def test_a_request_about_an_address_keeps_only_its_digests_as_the_api_does(
    olle: FlaskClient, client: FlaskClient, rt: Runtime, tokens: dict[str, str]
) -> None:
    request_id = registered(olle, kind="consent_withdrawal", email=EMAIL, reference="DSR-2")
    assert "The address is on the list global at once" in main_text(
        olle.get(f"/admin/requests/{request_id}")
    )
    api = client.post(
        "/v1/requests",
        json={
            "kind": "access",
            "received_at": "2030-03-02T13:05:00Z",
            "reference": "DSR-3",
            "email": EMAIL,
        },
        headers=bearer(tokens["admin"]),
    ).get_json()
    ours = the_request(rt, request_id)
    assert ours.digest is not None and ours.digest.hex() == api["digest"]
    assert ours.key_id == api["key_id"]
    verdict = client.post(
        "/v1/check", json={"email": EMAIL, "list": "news"}, headers=bearer(tokens["mailer"])
    ).get_json()
    assert verdict["allowed"] is False
    with rt.db.begin(write=False) as session:
        (row,) = session.scalars(select(Suppression)).all()
        assert (row.list, row.reason.value, row.source) == (
            "global",
            "consent_withdrawn",
            f"request:{request_id}",
        )
    adds = events(rt, "add")
    assert [e.actor for e in adds] == ["console:olle"]


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"reference": ""}, "Fill this in."),
        ({"reference": "mail from kim@example.se"}, "Do not write an e-mail address here"),
        ({"reference": "kim＠example．se"}, "Do not write an e-mail address here"),
        ({"note": "Wrote from kim.lind@example.se"}, "Do not write an e-mail address here"),
        ({"channel": "kim@example.se"}, "Do not write an e-mail address here"),
        ({"email": "not an address"}, "This is not an e-mail address the list can keep."),
        ({"kind": "complaint"}, "Choose one of the kinds."),
        ({"received_day": ""}, "Fill this in."),
        ({"received_day": "2030-03-31"}, "This lies in the future."),
        ({"received_day": "10 March"}, "Give a date such as 2026-01-31"),
        ({"reference": "x" * 129}, "Use at most 128 characters."),
        ({"reference": "kim.lind @ example.se"}, "Do not write an e-mail address here"),
        ({"channel": "kim.lind%40example.se"}, "Do not write an e-mail address here"),
        ({"note": "kim.lind&#64;example.se"}, "Do not write an e-mail address here"),
        ({"note": "kim.lind\n@example.se"}, "Do not write an e-mail address here"),
        ({"reference": "kim.lind(at)example[dot]se"}, "Do not write an e-mail address here"),
        ({"received_day": "0001-01-01"}, "This date is out of range."),
        ({"received_day": "1999-12-31"}, "This date is out of range."),
        ({"received_time": "00:30+05:00"}, "Give a date such as 2026-01-31"),
        ({"received_time": "14:05Z"}, "Give a date such as 2026-01-31"),
        ({"received_day": "２０３０-03-02"}, "Give a date such as 2026-01-31"),
    ],
)
def test_a_refused_registration_says_why_beside_the_field_and_records_nothing(
    olle: FlaskClient, rt: Runtime, fields: dict[str, str], problem: str
) -> None:
    before = count_events(rt)
    answer = register(olle, expect=422, **fields)
    page = answer.get_data(as_text=True)
    assert problem in page
    assert "Please correct the fields marked below. Nothing was registered." in page
    assert 'aria-invalid="true"' in page
    assert count_events(rt) == before
    with rt.db.begin(write=False) as session:
        assert session.scalars(select(SubjectRequest)).all() == []


def test_refusals_are_in_swedish_on_a_swedish_page(olle: FlaskClient) -> None:
    olle.get("/admin/requests/new?lang=sv")
    answer = register(olle, expect=422, reference="från kim@example.se", received_day="")
    page = answer.get_data(as_text=True)
    assert '<html lang="sv">' in page and "Registrera en begäran" in page
    assert "Skriv ingen e-postadress här" in page and "Fyll i detta." in page
    assert "Do not write" not in page


def test_the_day_of_receipt_is_the_controllers_day(olle: FlaskClient, rt: Runtime) -> None:
    # 00:30 on 1 January in Stockholm is still 31 December in UTC: the clock counts from
    # 1 January.
    request_id = registered(olle, received_day="2030-01-01", received_time="00:30")
    row = the_request(rt, request_id)
    assert row.received_at == datetime(2029, 12, 31, 23, 30)
    assert row.due.isoformat() == "2030-02-01"
    listed = main_text(olle.get("/admin/requests?status=overdue"))
    assert "2030-01-01 2030-02-01 Overdue by 37 days" in listed


# --- the list and its filters -------------------------------------------------------------------


@pytest.fixture
def register_of_four(olle: FlaskClient, ada: FlaskClient) -> dict[str, int]:
    """One request overdue, one due this week, one open for later, one closed."""
    made = {
        "overdue": registered(
            olle, kind="consent_withdrawal", reference="LATE-1", received_day="2030-01-20"
        ),
        "week": registered(olle, kind="erasure", reference="WEEK-1", received_day="2030-02-14"),
        "later": registered(olle, kind="objection", reference="LATER-1", received_day="2030-03-05"),
        "closed": registered(olle, kind="portability", reference="DONE-1"),
    }
    assert (
        post(ada, f"/admin/requests/{made['closed']}/close", {"outcome": "fulfilled"}).status_code
        == 303
    )
    return made


@pytest.mark.parametrize(
    ("status", "shown"),
    [
        ("overdue", ["LATE-1"]),
        ("due_this_week", ["WEEK-1"]),
        ("open", ["LATE-1", "WEEK-1", "LATER-1"]),
        ("closed", ["DONE-1"]),
        ("", ["DONE-1", "LATER-1", "WEEK-1", "LATE-1"]),
        ("no-such-filter", ["DONE-1", "LATER-1", "WEEK-1", "LATE-1"]),
    ],
)
def test_the_list_filters_open_overdue_due_this_week_and_closed(
    vera: FlaskClient, register_of_four: dict[str, int], status: str, shown: list[str]
) -> None:
    answer = vera.get(f"/admin/requests?status={status}")
    assert answer.status_code == 200
    page = answer.get_data(as_text=True)
    assert (
        re.findall(r'<th scope="row"><a href="/admin/requests/\d+">([A-Z]+-1)</a>', page) == shown
    )


def test_the_list_shows_kinds_days_and_overdue_in_words_not_colour_alone(
    vera: FlaskClient, register_of_four: dict[str, int]
) -> None:
    answer = vera.get("/admin/requests?status=open")
    page = answer.get_data(as_text=True)
    rows = {
        found.group(1): re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", found.group(0)))
        for found in re.finditer(
            r"<tr[^>]*>\s*<th scope=\"row\"><a [^>]+>([A-Z]+-1)</a>.*?</tr>", page, re.S
        )
    }
    assert "Withdrawal of consent 2030-01-20 2030-02-20 Overdue by 18 days" in rows["LATE-1"]
    assert "Not verified No Overdue" in rows["LATE-1"]
    assert "Erasure 2030-02-14 2030-03-14 4 days left" in rows["WEEK-1"]
    assert "Objection to direct marketing 2030-03-05 2030-04-05 26 days left" in rows["LATER-1"]
    assert '<tr class="overdue">' in page and page.count('class="overdue"') == 1
    assert "consent_withdrawal" not in main_text(answer)
    assert "Open (3)" in main_text(answer) and "Overdue (1)" in main_text(answer)
    assert "Due this week (1)" in main_text(answer)
    closed = main_text(vera.get("/admin/requests?status=closed"))
    assert "Data portability" in closed and "Answered in time" in closed
    assert "Closed: Fulfilled" in closed


def test_the_overview_counts_requests_due_this_week_and_overdue_with_links(
    vera: FlaskClient, register_of_four: dict[str, int]
) -> None:
    page = vera.get("/admin/").get_data(as_text=True)
    overdue = '<a href="/admin/requests?status=overdue"><strong class="bad">1</strong>'
    assert overdue + " request overdue</a>" in page
    assert (
        '<a href="/admin/requests?status=due_this_week"><strong>1</strong> request due this week'
        in page
    )


def test_the_register_is_in_every_roles_menu(vera: FlaskClient) -> None:
    nav = vera.get("/admin/").get_data(as_text=True).split('<nav class="sections"', 1)[1]
    assert '<a href="/admin/requests">Requests</a>' in nav.split("</nav>", 1)[0]
    assert "Register a request" not in vera.get("/admin/requests").get_data(as_text=True)


# --- verify, extend, close ----------------------------------------------------------------------


def test_an_operator_records_a_check_of_identity(olle: FlaskClient, rt: Runtime) -> None:
    request_id = registered(olle, received_day="2030-03-02")
    path = f"/admin/requests/{request_id}/verify-identity"
    early = post(
        olle, path, {"method": "BankID", "verified_day": "2030-03-01", "verified_time": ""}
    )
    assert early.status_code == 422
    assert "This lies before the day the request was received." in early.get_data(as_text=True)
    done = post(
        olle, path, {"method": "BankID", "verified_day": "2030-03-03", "verified_time": "10:20"}
    )
    assert done.status_code == 303 and done.headers["Location"] == f"/admin/requests/{request_id}"
    shown = main_text(olle.get(done.headers["Location"]))
    assert "The check of identity is recorded." in shown
    assert "Verified 2030-03-03 10:20: BankID" in shown
    row = the_request(rt, request_id)
    assert row.identity_verified_at == datetime(2030, 3, 3, 9, 20)
    (event,) = events(rt, "request_verify_identity")
    assert event.actor == "console:olle" and event.detail["method"] == "BankID"
    # Both fields empty: now.
    post(olle, path, {"method": "Signed letter", "verified_day": "", "verified_time": ""})
    assert the_request(rt, request_id).identity_verified_at == NOW


def test_an_admin_extends_once_with_the_person_told_in_time(
    olle: FlaskClient, ada: FlaskClient, rt: Runtime
) -> None:
    request_id = registered(olle, received_day="2030-02-28")
    path = f"/admin/requests/{request_id}/extend"
    page = main_text(ada.get(f"/admin/requests/{request_id}"))
    assert "the deadline may be extended once, to May 28, 2030" in page
    assert "on or before March 28, 2030 (the original due day)" in page
    done = post(
        ada,
        path,
        {"reason": "Records in three archives", "notified_day": "2030-03-09", "notified_time": ""},
    )
    assert done.status_code == 303
    shown = main_text(ada.get(done.headers["Location"]))
    assert "The request is extended." in shown
    assert "May 28, 2030 (three calendar months after the day of receipt)" in shown
    assert "Records in three archives" in shown and "79 days left" in shown
    row = the_request(rt, request_id)
    assert (row.extended, row.due.isoformat(), row.first_due.isoformat()) == (
        True,
        "2030-05-28",
        "2030-03-28",
    )
    (event,) = events(rt, "request_extend")
    assert event.actor == "console:ada" and event.detail["due"] == "2030-05-28"

    before = count_events(rt)
    again = post(ada, path, {"reason": "More", "notified_day": "2030-03-10", "notified_time": ""})
    assert again.status_code == 409
    text = main_text(again)
    assert "This request was extended already. The policy allows one extension" in text
    assert "Nothing was changed." in text
    assert count_events(rt) == before and the_request(rt, request_id).due == row.due


def test_an_extension_announced_after_the_original_due_day_is_refused(
    olle: FlaskClient, ada: FlaskClient, rt: Runtime
) -> None:
    request_id = registered(olle, received_day="2030-01-20")  # due 20 February, now overdue
    page = main_text(ada.get(f"/admin/requests/{request_id}"))
    assert "The original due day has passed" in page
    before = count_events(rt)
    path = f"/admin/requests/{request_id}/extend"
    late = post(ada, path, {"reason": "Complex", "notified_day": "2030-02-21", "notified_time": ""})
    assert late.status_code == 422
    text = late.get_data(as_text=True)
    assert "This day is after the original due day." in text
    assert "the original deadline stands" in text and 'value="2030-02-21"' in text
    assert count_events(rt) == before
    row = the_request(rt, request_id)
    assert not row.extended and row.due.isoformat() == "2030-02-20"
    # A notice given in time may be recorded later: told on the due day itself.
    in_time = post(
        ada, path, {"reason": "Complex", "notified_day": "2030-02-20", "notified_time": "16:00"}
    )
    assert in_time.status_code == 303
    assert the_request(rt, request_id).due.isoformat() == "2030-04-20"


def test_an_admin_closes_a_request_and_a_closed_one_cannot_change(
    olle: FlaskClient, ada: FlaskClient, rt: Runtime
) -> None:
    request_id = registered(olle)
    path = f"/admin/requests/{request_id}"
    missing = post(ada, path + "/close", {"closing_note": "sent"})
    assert missing.status_code == 422 and "Choose how the request ended." in missing.get_data(True)
    named = post(ada, path + "/close", {"outcome": "refused", "closing_note": "to kim@example.se"})
    assert named.status_code == 422 and "Do not write an e-mail address" in named.get_data(True)
    done = post(
        ada, path + "/close", {"outcome": "fulfilled", "closing_note": "Answer sent by post"}
    )
    assert done.status_code == 303
    shown = main_text(ada.get(path))
    assert "The request is closed." in shown and "Closed: Fulfilled" in shown
    assert "Answer sent by post" in shown and "Answered in time" in shown
    assert "Close the request" not in shown and "Verify identity" not in shown
    (event,) = events(rt, "request_close")
    assert event.actor == "console:ada" and event.detail["outcome"] == "fulfilled"
    before = count_events(rt)
    for action, data in (
        ("/verify-identity", {"method": "BankID", "verified_day": "", "verified_time": ""}),
        ("/extend", {"reason": "x", "notified_day": "2030-03-05", "notified_time": ""}),
        ("/close", {"outcome": "withdrawn"}),
    ):
        refused = post(ada, path + action, data)
        assert refused.status_code == 409, action
        assert "This request is closed: it cannot be verified, extended or closed again" in (
            refused.get_data(as_text=True)
        )
    assert count_events(rt) == before


def test_an_unknown_request_is_not_found(vera: FlaskClient, ada: FlaskClient) -> None:
    for path in ("/admin/requests/999", "/admin/requests/0", f"/admin/requests/{2**40}"):
        assert vera.get(path).status_code == 404
    assert post(ada, "/admin/requests/999/close", {"outcome": "fulfilled"}).status_code == 404


def test_an_id_in_other_digits_names_no_request(olle: FlaskClient, ada: FlaskClient) -> None:
    number = registered(olle)
    assert number == 1
    for digits in ("１", "٣", "१"):  # fullwidth, Arabic-Indic, Devanagari
        assert olle.get(f"/admin/requests/{digits}").status_code == 404
        closing = post(ada, f"/admin/requests/{digits}/close", {"outcome": "fulfilled"})
        assert closing.status_code == 404
    assert olle.get("/admin/requests/1").status_code == 200


def test_a_form_field_given_twice_is_refused_and_nothing_registered(
    olle: FlaskClient, rt: Runtime
) -> None:
    # The page reads the first value: a hand-made form must not slip a second one past it.
    token = csrf(olle, "/admin/password")
    answer = olle.post(
        "/admin/requests/new",
        data=MultiDict(
            [
                ("csrf_token", token),
                ("kind", "objection"),
                ("received_day", "2030-03-02"),
                ("reference", "DSR-2"),
                ("email", ""),
                ("email", EMAIL),
            ]
        ),  # fmt: skip
    )
    assert answer.status_code == 400
    with rt.db.begin(write=False) as session:
        assert session.scalars(select(SubjectRequest)).all() == []
        assert session.scalars(select(Suppression)).all() == []


# --- roles, CSRF --------------------------------------------------------------------------------


def test_viewers_read_the_register_and_see_no_forms(vera: FlaskClient, olle: FlaskClient) -> None:
    request_id = registered(olle)
    listing = vera.get("/admin/requests")
    assert listing.status_code == 200 and "DSR-2030-001" in listing.get_data(as_text=True)
    page = vera.get(f"/admin/requests/{request_id}").get_data(as_text=True)
    assert (
        "Request DSR-2030-001" in page and '<form method="post" action="/admin/requests' not in page
    )
    operator_page = olle.get(f"/admin/requests/{request_id}").get_data(as_text=True)
    assert "Record the check of identity" in operator_page
    assert "Extend the deadline" not in operator_page and "Close the request" not in operator_page


@pytest.mark.parametrize(
    ("who", "action", "data"),
    [
        ("vera", "/new", {"kind": "access", "received_day": "2030-03-02", "reference": "X-1"}),
        ("vera", "/{id}/verify-identity", {"method": "BankID"}),
        ("olle", "/{id}/extend", {"reason": "More time", "notified_day": "2030-03-05"}),
        ("olle", "/{id}/close", {"outcome": "fulfilled"}),
        ("vera", "/{id}/close", {"outcome": "fulfilled"}),
    ],
)
def test_a_role_is_refused_what_it_does_not_include_and_nothing_changes(
    app: Flask,
    olle: FlaskClient,
    rt: Runtime,
    who: str,
    action: str,
    data: dict[str, str],
) -> None:
    request_id = registered(olle)
    client = signed_in(app, who)
    before = count_events(rt)
    path = "/admin/requests" + action.format(id=request_id)
    answer = post(
        client,
        path,
        {"received_time": "", "verified_day": "", "verified_time": "", "notified_time": "", **data},
    )
    assert answer.status_code == 403
    assert "Your role does not allow this" in answer.get_data(as_text=True)
    assert count_events(rt) == before
    row = the_request(rt, request_id)
    assert row.status.value == "open" and not row.extended and row.identity_method is None
    if action == "/new":
        assert client.get(path).status_code == 403


@pytest.mark.parametrize("action", ["/new", "/{id}/verify-identity", "/{id}/extend", "/{id}/close"])
def test_a_post_without_this_sessions_csrf_token_is_refused(
    app: Flask, ada: FlaskClient, rt: Runtime, action: str
) -> None:
    request_id = registered(ada)
    data = {
        "kind": "access",
        "received_day": "2030-03-02",
        "reference": "X-9",
        "method": "BankID",
        "reason": "More time",
        "notified_day": "2030-03-05",
        "outcome": "fulfilled",
    }
    path = "/admin/requests" + action.format(id=request_id)
    other = signed_in(app, "ada")
    before = count_events(rt)
    for token in (
        None,
        "forged",
        re.search(
            r'name="csrf_token" value="([^"]+)"', other.get("/admin/").get_data(as_text=True)
        ).group(1),
    ):  # type: ignore[union-attr]
        answer = ada.post(path, data=data if token is None else {**data, "csrf_token": token})
        assert answer.status_code == 403, (path, token)
        assert "This form could not be accepted" in answer.get_data(as_text=True)
    assert count_events(rt) == before
    assert the_request(rt, request_id).status.value == "open"


# --- no address anywhere ------------------------------------------------------------------------


def database_text(rt: Runtime, db_url: str) -> bytes:
    """Everything the database holds, as bytes: the SQLite file (and its WAL), or every row
    of PostgreSQL's tables as text."""
    if db_url.startswith("sqlite"):
        path = Path(db_url.removeprefix("sqlite:///"))
        return b"".join(p.read_bytes() for p in (path, Path(f"{path}-wal")) if p.exists()).lower()
    with rt.db.engine.connect() as conn:
        tables = conn.execute(
            text("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
        ).scalars()
        rows = [
            str(row)
            for table in list(tables)
            for row in conn.execute(text(f'SELECT * FROM "{table}"'))
        ]
    return "\n".join(rows).lower().encode()


def test_no_address_is_stored_or_sent_in_a_url_a_cookie_or_a_log_line(
    app: Flask,
    olle: FlaskClient,
    ada: FlaskClient,
    rt: Runtime,
    db_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    seen: list[str] = []
    answer = register(olle, kind="objection", email=EMAIL, reference="DSR-9", note="Phoned twice")
    request_id = int(answer.headers["Location"].rsplit("/", 1)[1])
    seen += [answer.headers["Location"], answer.headers.get("Set-Cookie", "")]
    refused = register(olle, expect=422, email=EMAIL, reference="")
    assert EMAIL in refused.get_data(as_text=True)  # kept in the form that answers the POST
    for client, action, data in (
        (olle, "/verify-identity", {"method": "BankID", "verified_day": "", "verified_time": ""}),
        (ada, "/extend", {"reason": "Archives", "notified_day": "2030-03-10", "notified_time": ""}),
        (ada, "/close", {"outcome": "fulfilled", "closing_note": "Sent"}),
    ):
        done = post(client, f"/admin/requests/{request_id}{action}", data)
        assert done.status_code == 303
        seen.append(done.headers["Location"])
        seen.append(json.dumps(session_of(app, client)))
    lookup = post(olle, "/admin/lookup", {"value": EMAIL, "reference": "DSR-9"})
    assert lookup.status_code == 200
    seen.append(json.dumps(session_of(app, olle)))
    seen += [record.getMessage() for record in caplog.records]
    text_seen = "\n".join(seen).lower()
    stored = database_text(rt, db_url)
    for plain in PLAINTEXT:
        assert plain not in text_seen, plain
        assert plain.encode() not in stored, plain
    assert "Phoned twice".lower().encode() in stored  # the file is readable: the check can see


# --- the lookup -------------------------------------------------------------------------------


def test_the_lookup_shows_the_requests_about_the_address_linked_to_each(
    olle: FlaskClient, rt: Runtime
) -> None:
    first = registered(olle, kind="consent_withdrawal", email=EMAIL, reference="DSR-41")
    second = registered(olle, kind="access", email=EMAIL.upper(), reference="DSR-42")
    registered(olle, kind="erasure", email="someone.else@example.org", reference="DSR-43")
    page = post(olle, "/admin/lookup", {"value": EMAIL}).get_data(as_text=True)
    section = page.split("Requests from this person", 1)[1].split("</table>", 1)[0]
    assert f'<a href="/admin/requests/{first}">DSR-41</a>' in section
    assert f'<a href="/admin/requests/{second}">DSR-42</a>' in section
    assert "DSR-43" not in section
    assert "Withdrawal of consent" in section and "Access to their data" in section
    assert "consent_withdrawal" not in section
    swedish = post(olle, "/admin/lookup?lang=sv", {"value": EMAIL}).get_data(as_text=True)
    assert "Återkallat samtycke" in swedish


def test_every_change_is_in_the_audit_trail_under_the_persons_name(
    olle: FlaskClient, ada: FlaskClient, vera: FlaskClient, rt: Runtime
) -> None:
    request_id = registered(olle, email=EMAIL)
    path = f"/admin/requests/{request_id}"
    post(
        olle,
        path + "/verify-identity",
        {"method": "BankID", "verified_day": "", "verified_time": ""},
    )
    post(
        ada,
        path + "/extend",
        {"reason": "Archives", "notified_day": "2030-03-10", "notified_time": ""},
    )
    post(ada, path + "/close", {"outcome": "withdrawn", "closing_note": ""})
    trail = [(e.action, e.actor) for e in events(rt) if e.action.startswith("request_")]
    assert trail == [
        ("request_register", "console:olle"),
        ("request_verify_identity", "console:olle"),
        ("request_extend", "console:ada"),
        ("request_close", "console:ada"),
    ]
    with rt.db.begin(write=False) as session:
        digests = set(
            session.scalars(
                select(AuditEvent.digest).where(AuditEvent.action.startswith("request_"))
            )
        )
    assert digests == {the_request(rt, request_id).digest}
    assert "request_extend" in vera.get("/admin/audit").get_data(as_text=True)
