"""The register of data-subject requests and the policy's clock (DESIGN §11)."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from suppress import addresses, clock, config, create_app, peppers, rights
from suppress.errors import ConfigError, Unavailable, Unprocessable
from suppress.models import AuditEvent, RequestKind, SubjectRequest, Suppression
from suppress.runtime import Runtime

from .conftest import OLD_PEPPER, TEST_PEPPER, bearer, settings

STOCKHOLM = ZoneInfo("Europe/Stockholm")
SUBJECT = "Anna.Berg+dsr@Example.se"
# Spellings of the subject's address that must never be stored or logged.
PLAINTEXT = ("anna", "berg", "example.se")
# Receipt of most tests: 31 January 2026, 10:00 in Stockholm.
RECEIVED = "2026-01-31T09:00:00Z"


@pytest.fixture
def overrides(db_url: str, tmp_path: Path) -> dict[str, Any]:
    return settings(db_url, tmp_path, metrics={"gauge_ttl_seconds": 0})


@pytest.fixture
def at(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], None]:
    """Move the service's one clock to a UTC moment ("2026-02-28T23:00:00")."""

    def move(moment: str) -> None:
        fixed = datetime.fromisoformat(moment.removesuffix("Z"))
        monkeypatch.setattr(clock, "utcnow", lambda: fixed)

    move("2026-02-01T12:00:00")
    return move


def register(client: FlaskClient, token: str, expect: int = 201, **body: Any) -> dict[str, Any]:
    payload = {"kind": "access", "received_at": RECEIVED, "reference": "DSR-2026-001", **body}
    response = client.post("/v1/requests", json=payload, headers=bearer(token))
    assert response.status_code == expect, response.get_json()
    return response.get_json()  # type: ignore[no-any-return]


def post(
    client: FlaskClient, token: str, path: str, expect: int = 200, **body: Any
) -> dict[str, Any]:
    response = client.post(f"/v1/requests{path}", json=body, headers=bearer(token))
    assert response.status_code == expect, response.get_json()
    return response.get_json()  # type: ignore[no-any-return]


def events(rt: Runtime, prefix: str = "") -> list[AuditEvent]:
    with rt.db.begin(write=False) as session:
        found = session.scalars(select(AuditEvent).order_by(AuditEvent.id)).all()
        session.expunge_all()
    return [e for e in found if e.action.startswith(prefix)]


def count(rt: Runtime, model: Any) -> int:
    with rt.db.begin(write=False) as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def allowed(client: FlaskClient, token: str, email: str, list_name: str = "news") -> bool:
    answer = client.post(
        "/v1/check", json={"email": email, "list": list_name}, headers=bearer(token)
    )
    assert answer.status_code == 200
    return bool(answer.get_json()["allowed"])


# --- the month arithmetic (pure) ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("day", "months", "due"),
    [
        ("2026-01-15", 1, "2026-02-15"),
        ("2026-01-31", 1, "2026-02-28"),  # no 31 February: the month's last day
        ("2028-01-31", 1, "2028-02-29"),  # a leap year
        ("2028-01-30", 1, "2028-02-29"),
        ("2028-01-29", 1, "2028-02-29"),
        ("2028-02-29", 1, "2028-03-29"),
        ("2026-02-28", 1, "2026-03-28"),
        ("2026-03-31", 1, "2026-04-30"),
        ("2026-08-31", 1, "2026-09-30"),
        ("2026-11-30", 1, "2026-12-30"),
        ("2026-12-31", 1, "2027-01-31"),  # into the next year
        ("2026-01-31", 3, "2026-04-30"),
        ("2026-10-31", 3, "2027-01-31"),
        ("2026-11-30", 3, "2027-02-28"),
        ("2027-11-30", 3, "2028-02-29"),
        ("2026-12-31", 3, "2027-03-31"),
        ("2100-01-31", 1, "2100-02-28"),  # divisible by 100: no leap day
        ("2000-01-31", 1, "2000-02-29"),  # divisible by 400: a leap day
    ],
)
def test_a_month_is_a_calendar_month_clamped_to_its_last_day(
    day: str, months: int, due: str
) -> None:
    assert rights.add_months(date.fromisoformat(day), months) == date.fromisoformat(due)


@pytest.mark.parametrize(
    ("received", "zone", "due"),
    [
        # Just before midnight UTC on the year's last day is already 1 January in Stockholm.
        ("2026-12-31T23:30:00", "Europe/Stockholm", "2027-02-01"),
        ("2026-12-31T22:30:00", "Europe/Stockholm", "2027-01-31"),
        ("2026-12-31T23:30:00", "UTC", "2027-01-31"),
        ("2026-01-30T23:30:00", "Europe/Stockholm", "2026-02-28"),  # 31 Jan local
        ("2028-01-30T23:00:00", "Europe/Stockholm", "2028-02-29"),
        # Spring forward, Sunday 29 March 2026 at 01:00 UTC (02:00 CET becomes 03:00 CEST).
        ("2026-03-28T22:59:00", "Europe/Stockholm", "2026-04-28"),
        ("2026-03-28T23:00:00", "Europe/Stockholm", "2026-04-29"),
        ("2026-03-29T00:30:00", "Europe/Stockholm", "2026-04-29"),
        ("2026-03-29T01:30:00", "Europe/Stockholm", "2026-04-29"),
        ("2026-03-29T21:59:00", "Europe/Stockholm", "2026-04-29"),  # 23:59 CEST
        ("2026-03-29T22:00:00", "Europe/Stockholm", "2026-04-30"),  # 00:00 CEST on 30 March
        # Fall back, Sunday 25 October 2026 at 01:00 UTC (03:00 CEST becomes 02:00 CET).
        ("2026-10-24T21:59:00", "Europe/Stockholm", "2026-11-24"),
        ("2026-10-24T22:00:00", "Europe/Stockholm", "2026-11-25"),
        ("2026-10-25T00:30:00", "Europe/Stockholm", "2026-11-25"),  # 02:30 CEST
        ("2026-10-25T01:30:00", "Europe/Stockholm", "2026-11-25"),  # 02:30 CET, again
        ("2026-10-25T22:59:00", "Europe/Stockholm", "2026-11-25"),  # 23:59 CET
        ("2026-10-25T23:00:00", "Europe/Stockholm", "2026-11-26"),
        ("2026-03-01T03:00:00", "America/New_York", "2026-03-28"),  # 28 Feb there
    ],
)
def test_due_is_one_month_from_the_day_of_receipt_in_the_compliance_zone(
    received: str, zone: str, due: str
) -> None:
    moment = datetime.fromisoformat(received)
    assert rights.due_date(moment, ZoneInfo(zone)) == date.fromisoformat(due)


def test_a_deadline_past_year_9999_is_refused() -> None:
    with pytest.raises(Unprocessable, match="outside the years"):
        rights.add_months(date(9999, 11, 30), 3)


def test_the_compliance_zone_is_validated_and_named_in_the_environment(tmp_path: Path) -> None:
    base = {"instance_dir": str(tmp_path)}
    secrets = {"SUPPRESS_PEPPERS": TEST_PEPPER, "SUPPRESS_TOKEN_SECRETS": "s" * 40}
    assert config.load(base, env=secrets).settings.compliance.zone.key == "Europe/Stockholm"
    moved = config.load(base, env={**secrets, "SUPPRESS_COMPLIANCE_TIMEZONE": "Europe/Helsinki"})
    assert moved.settings.compliance.zone.key == "Europe/Helsinki"
    with pytest.raises(ConfigError) as refused:
        config.load(base, env={**secrets, "SUPPRESS_COMPLIANCE_TIMEZONE": "Mars/Olympus"})
    assert refused.value.message == (
        "SUPPRESS_COMPLIANCE_TIMEZONE ([compliance] timezone): must be an IANA time zone such "
        "as Europe/Stockholm, not 'Mars/Olympus'"
    )


# --- registering ---------------------------------------------------------------------------------


def test_a_registered_request_is_open_and_due_one_month_from_receipt(
    client: FlaskClient, tokens: dict[str, str], rt: Runtime, at: Any
) -> None:
    made = register(client, tokens["admin"], channel="phone", note="Called the office.")
    assert made == {
        "id": made["id"],
        "kind": "access",
        "reference": "DSR-2026-001",
        "channel": "phone",
        "note": "Called the office.",
        "digest": None,
        "key_id": None,
        "received_at": "2026-01-31T09:00:00Z",
        "registered_at": "2026-02-01T12:00:00Z",
        "due": "2026-02-28",
        "first_due": "2026-02-28",
        "status": "open",
        "overdue": False,
        "identity_verified_at": None,
        "identity_method": None,
        "extended": False,
        "extension_reason": None,
        "notified_at": None,
        "outcome": None,
        "closing_note": None,
        "closed_at": None,
        "suppression": None,
    }
    shown = client.get(f"/v1/requests/{made['id']}", headers=bearer(tokens["admin"]))
    assert shown.status_code == 200
    assert shown.get_json() == {k: v for k, v in made.items() if k != "suppression"}
    [event] = events(rt, "request_")
    assert (event.action, event.actor, event.digest) == ("request_register", "api:test-admin", None)
    assert event.detail == {
        "request": made["id"],
        "kind": "access",
        "reference": "DSR-2026-001",
        "received_at": "2026-01-31T09:00:00Z",
        "due": "2026-02-28",
        "channel": "phone",
        "with_note": True,
    }


def test_received_at_in_any_offset_counts_by_the_day_in_the_compliance_zone(
    client: FlaskClient, tokens: dict[str, str], at: Any
) -> None:
    at("2027-01-02T00:00:00")
    late = register(client, tokens["admin"], received_at="2026-12-31T23:30:00Z")
    assert late["due"] == "2027-02-01"
    same = register(client, tokens["admin"], received_at="2026-12-31T18:30:00-05:00")
    assert same["due"] == "2027-02-01"
    earlier = register(client, tokens["admin"], received_at="2026-12-31T23:30:00+01:00")
    assert earlier["due"] == "2027-01-31"


def test_the_clock_follows_the_configured_compliance_zone(
    db_url: str, tmp_path: Path, tokens: dict[str, str], at: Any
) -> None:
    at("2027-01-02T00:00:00")
    app = create_app(settings(db_url, tmp_path, compliance={"timezone": "America/New_York"}))
    app.config["TESTING"] = True
    try:
        made = register(app.test_client(), tokens["admin"], received_at="2027-01-01T03:00:00Z")
    finally:
        app.extensions["suppress"].db.dispose()
    assert made["due"] == "2027-01-31"  # 31 December 22:00 in New York


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"reference": "from anna@example.se"}, 422, "reference must not contain an email"),
        ({"note": "She wrote from anna.berg@example.se"}, 422, "note must not contain"),
        ({"channel": "mail to a@b.se"}, 422, "channel must not contain"),
        ({"received_at": "2026-01-31T09:00:00"}, 422, "must include a time zone"),
        ({"received_at": "yesterday"}, 422, "not an ISO 8601 timestamp"),
        ({"received_at": "2026-02-01T12:06:00Z"}, 422, "received_at lies in the future"),
        ({"kind": "deletion"}, 400, "field 'kind'"),
        ({"reference": ""}, 400, "field 'reference'"),
        ({"reference": "   "}, 400, "reference is required"),
        ({"reference": "x" * 129}, 400, "field 'reference'"),
        ({"reference": "tab\there"}, 400, "printable"),
        ({"email": "not an address"}, 422, "not a valid email address"),
    ],
)
def test_a_refused_registration_records_nothing(
    client: FlaskClient,
    tokens: dict[str, str],
    rt: Runtime,
    at: Any,
    body: dict[str, Any],
    status: int,
    words: str,
) -> None:
    before = len(events(rt))
    payload = {"kind": "objection", "email": SUBJECT, **body}
    refused = register(client, tokens["admin"], expect=status, **payload)
    assert refused["error"]["code"] in ("invalid_request", "invalid_email")
    assert words in refused["error"]["message"]
    assert count(rt, SubjectRequest) == count(rt, Suppression) == 0
    assert len(events(rt)) == before
    assert allowed(client, tokens["mailer"], SUBJECT)


def test_a_note_may_break_lines_and_blank_optional_text_is_none(
    client: FlaskClient, tokens: dict[str, str], at: Any
) -> None:
    made = register(client, tokens["admin"], note="Line one\r\nline two", channel=" ")
    assert (made["note"], made["channel"]) == ("Line one\nline two", None)


@pytest.mark.parametrize(
    ("kind", "reason"), [("objection", "objection"), ("consent_withdrawal", "consent_withdrawn")]
)
def test_an_objection_or_withdrawal_with_an_address_suppresses_it_globally_at_once(
    client: FlaskClient, tokens: dict[str, str], rt: Runtime, at: Any, kind: str, reason: str
) -> None:
    made = register(client, tokens["admin"], kind=kind, email=SUBJECT)
    own = rt.ring.address("anna.berg@example.se").hex()
    assert (made["digest"], made["key_id"]) == (own, "t1")
    suppression = made["suppression"]
    assert (suppression["list"], suppression["reason"], suppression["digest"]) == (
        "global",
        reason,
        own,
    )
    assert suppression["source"] == f"request:{made['id']}"
    for list_name in ("news", "offers"):
        assert not allowed(client, tokens["mailer"], "anna.berg@example.se", list_name)
    [add] = [e for e in events(rt) if e.action == "add"]
    assert add.detail["request"] == made["id"] and add.source == f"request:{made['id']}"
    # Registered again (a second request), the suppression is already in place: one row.
    again = register(client, tokens["admin"], kind=kind, email="anna.berg@example.se")
    assert again["suppression"]["id"] == suppression["id"]
    assert count(rt, Suppression) == 1


@pytest.mark.parametrize("kind", [k.value for k in RequestKind if k not in rights.SUPPRESSING])
def test_other_kinds_with_an_address_keep_its_digest_and_suppress_nothing(
    client: FlaskClient, tokens: dict[str, str], rt: Runtime, at: Any, kind: str
) -> None:
    made = register(client, tokens["admin"], kind=kind, email=SUBJECT)
    assert made["suppression"] is None and made["digest"] is not None
    assert count(rt, Suppression) == 0
    assert allowed(client, tokens["mailer"], SUBJECT)


def test_an_objection_without_an_address_suppresses_nothing(
    client: FlaskClient, tokens: dict[str, str], rt: Runtime, at: Any
) -> None:
    made = register(client, tokens["admin"], kind="objection")
    assert made["suppression"] is None and count(rt, Suppression) == 0


def test_the_request_and_its_suppression_are_one_transaction(
    client: FlaskClient,
    tokens: dict[str, str],
    rt: Runtime,
    at: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_add = rights.suppressions.add

    def add_then_fail(*args: Any, **kwargs: Any) -> Any:
        real_add(*args, **kwargs)
        raise Unavailable("database unavailable: OperationalError")

    monkeypatch.setattr(rights.suppressions, "add", add_then_fail)
    failed = register(client, tokens["admin"], expect=503, kind="objection", email=SUBJECT)
    assert failed["error"]["code"] == "unavailable"
    assert count(rt, SubjectRequest) == count(rt, Suppression) == 0
    assert events(rt, "request_") == [] and [e for e in events(rt) if e.action == "add"] == []


def test_a_retry_with_the_same_idempotency_key_registers_once(
    client: FlaskClient, tokens: dict[str, str], rt: Runtime, at: Any
) -> None:
    headers = {**bearer(tokens["admin"]), "Idempotency-Key": "dsr-2026-001"}
    body = {"kind": "objection", "received_at": RECEIVED, "reference": "R1", "email": SUBJECT}
    first = client.post("/v1/requests", json=body, headers=headers)
    again = client.post("/v1/requests", json=body, headers=headers)
    assert first.status_code == again.status_code == 201
    assert first.get_json() == again.get_json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert count(rt, SubjectRequest) == 1


def test_the_register_is_for_admins(client: FlaskClient, tokens: dict[str, str], at: Any) -> None:
    for role in ("mailer", "recorder"):
        refused = client.post(
            "/v1/requests",
            json={"kind": "access", "received_at": RECEIVED, "reference": "R"},
            headers=bearer(tokens[role]),
        )
        assert refused.status_code == 403
        listed = client.get("/v1/requests", headers=bearer(tokens[role]))
        assert listed.status_code == 403
    assert client.get("/v1/requests").status_code == 401


# --- identity, extension, closing ---------------------------------------------------------------


def test_verifying_identity_records_method_and_time(
    client: FlaskClient, tokens: dict[str, str], rt: Runtime, at: Any
) -> None:
    admin = tokens["admin"]
    made = register(client, admin, email=SUBJECT)
    path = f"/{made['id']}/verify-identity"
    done = post(client, admin, path, method="BankID", verified_at="2026-01-31T11:00:00+01:00")
    assert (done["identity_verified_at"], done["identity_method"]) == (
        "2026-01-31T10:00:00Z",
        "BankID",
    )
    assert done["due"] == "2026-02-28"  # the clock runs from receipt, not from verification
    now = post(client, admin, path, method="reply from the registered address")
    assert now["identity_verified_at"] == "2026-02-01T12:00:00Z"  # default: now
    early = post(client, admin, path, 422, method="BankID", verified_at="2026-01-30T22:59:00Z")
    assert "before the request was received" in early["error"]["message"]
    future = post(client, admin, path, 422, method="BankID", verified_at="2026-02-02T00:00:00Z")
    assert "in the future" in future["error"]["message"]
    named = post(client, admin, path, 422, method="sent to anna@example.se")
    assert "must not contain an email address" in named["error"]["message"]
    verified = events(rt, "request_verify")
    assert [e.detail["method"] for e in verified] == ["BankID", "reply from the registered address"]
    assert verified[1].detail["previous"] == {
        "method": "BankID",
        "verified_at": "2026-01-31T10:00:00Z",
    }
    assert all(e.digest == bytes.fromhex(made["digest"]) for e in verified)


def test_an_extension_runs_three_months_from_receipt_once(
    client: FlaskClient, tokens: dict[str, str], rt: Runtime, at: Any
) -> None:
    admin = tokens["admin"]
    made = register(client, admin)
    path = f"/{made['id']}/extend"
    extended = post(
        client,
        admin,
        path,
        reason="Records in three archives",
        notified_at="2026-02-01T10:00:00+01:00",
    )
    assert (extended["due"], extended["first_due"], extended["extended"]) == (
        "2026-04-30",
        "2026-02-28",
        True,
    )
    assert (extended["extension_reason"], extended["notified_at"]) == (
        "Records in three archives",
        "2026-02-01T09:00:00Z",
    )
    again = post(client, admin, path, 409, reason="More", notified_at="2026-02-01T10:00:00Z")
    assert again["error"]["code"] == "already_extended"
    [event] = events(rt, "request_extend")
    assert event.detail == {
        "request": made["id"],
        "kind": "access",
        "reference": "DSR-2026-001",
        "reason": "Records in three archives",
        "notified_at": "2026-02-01T09:00:00Z",
        "first_due": "2026-02-28",
        "due": "2026-04-30",
    }


@pytest.mark.parametrize(
    ("notified_at", "status", "code"),
    [
        ("2026-02-28T22:59:00Z", 200, None),  # 23:59 on the due day in Stockholm
        ("2026-02-28T23:30:00+01:00", 200, None),
        ("2026-02-28T23:00:00Z", 422, "notice_too_late"),  # already 1 March in Stockholm
        ("2026-03-01T09:00:00Z", 422, "notice_too_late"),
        ("2026-01-31T08:59:00Z", 200, None),  # before receipt, but on its day
        ("2026-01-30T22:59:00Z", 422, "invalid_request"),  # the day before receipt
        ("2026-03-10T12:06:00Z", 422, "invalid_request"),  # in the future
    ],
)
def test_an_extension_needs_the_reader_told_by_the_original_due_day(
    client: FlaskClient,
    tokens: dict[str, str],
    rt: Runtime,
    at: Any,
    notified_at: str,
    status: int,
    code: str | None,
) -> None:
    made = register(client, tokens["admin"])
    at("2026-03-10T12:00:00")  # the notice may be recorded after the due day
    answer = post(
        client,
        tokens["admin"],
        f"/{made['id']}/extend",
        status,
        reason="Complex request",
        notified_at=notified_at,
    )
    if code is None:
        assert answer["due"] == "2026-04-30"
    else:
        assert answer["error"]["code"] == code
        assert events(rt, "request_extend") == []


def test_closing_stops_the_clock_and_keeps_the_suppression(
    client: FlaskClient, tokens: dict[str, str], rt: Runtime, at: Any
) -> None:
    admin = tokens["admin"]
    made = register(client, admin, kind="objection", email=SUBJECT)
    at("2026-02-10T08:00:00")
    closed = post(
        client, admin, f"/{made['id']}/close", outcome="withdrawn", note="Changed her mind."
    )
    assert (closed["status"], closed["outcome"], closed["closing_note"]) == (
        "closed",
        "withdrawn",
        "Changed her mind.",
    )
    assert closed["closed_at"] == "2026-02-10T08:00:00Z"
    assert not allowed(client, tokens["mailer"], SUBJECT)  # lifting one needs evidence
    for path, body in (
        ("close", {"outcome": "fulfilled"}),
        ("extend", {"reason": "R", "notified_at": "2026-02-01T00:00:00Z"}),
        ("verify-identity", {"method": "BankID"}),
    ):
        refused = post(client, admin, f"/{made['id']}/{path}", 409, **body)
        assert refused["error"]["code"] == "request_closed"
    [event] = events(rt, "request_close")
    assert event.detail == {
        "request": made["id"],
        "kind": "objection",
        "reference": "DSR-2026-001",
        "outcome": "withdrawn",
        "due": "2026-02-28",
        "with_note": True,
    }
    bad = post(client, admin, f"/{made['id']}/close", 400, outcome="done")
    assert bad["error"]["code"] == "invalid_request"


@pytest.mark.parametrize("request_id", ["999", "0", str(2**31), str(2**63)])
def test_an_unknown_request_is_404(
    client: FlaskClient, tokens: dict[str, str], at: Any, request_id: str
) -> None:
    admin = bearer(tokens["admin"])
    assert client.get(f"/v1/requests/{request_id}", headers=admin).status_code == 404
    closing = client.post(
        f"/v1/requests/{request_id}/close", json={"outcome": "fulfilled"}, headers=admin
    )
    assert closing.status_code == 404 and closing.get_json()["error"]["code"] == "not_found"


# --- the register and its clock -----------------------------------------------------------------


def test_overdue_is_open_and_today_in_the_zone_after_due(
    client: FlaskClient, tokens: dict[str, str], at: Any
) -> None:
    admin = tokens["admin"]
    made = register(client, admin)  # due 2026-02-28
    other = register(client, admin, reference="DSR-2026-002", received_at="2026-02-01T09:00:00Z")

    def listed(status: str) -> list[int]:
        answer = client.get(f"/v1/requests?status={status}", headers=bearer(admin))
        assert answer.status_code == 200
        return [r["id"] for r in answer.get_json()["requests"]]

    at("2026-02-28T22:59:59")  # 23:59:59 on the due day in Stockholm
    assert listed("overdue") == []
    assert listed("open") == [made["id"], other["id"]]  # by due day
    at("2026-02-28T23:00:00")  # midnight in Stockholm: 1 March
    assert listed("overdue") == [made["id"]]
    shown = client.get(f"/v1/requests/{made['id']}", headers=bearer(admin)).get_json()
    assert shown["overdue"] is True
    post(client, admin, f"/{made['id']}/close", outcome="fulfilled")
    assert listed("overdue") == [] and listed("closed") == [made["id"]]
    assert listed("open") == [other["id"]]
    everything = client.get("/v1/requests", headers=bearer(admin)).get_json()["requests"]
    assert [r["id"] for r in everything] == [other["id"], made["id"]]  # newest first
    bad = client.get("/v1/requests?status=late", headers=bearer(admin))
    assert bad.status_code == 400


def test_counts_of_open_due_this_week_and_overdue(
    client: FlaskClient, tokens: dict[str, str], rt: Runtime, at: Any
) -> None:
    admin = tokens["admin"]
    at("2026-04-30T12:00:00")
    for received in (
        "2026-03-20T10:00:00Z",  # due 20 April: overdue
        "2026-03-29T10:00:00Z",  # due 29 April: overdue
        "2026-03-30T10:00:00Z",  # due 30 April: today, this week
        "2026-04-06T10:00:00Z",  # due 6 May: the seventh day, this week
        "2026-04-07T10:00:00Z",  # due 7 May: next week
    ):
        register(client, admin, received_at=received)
    closed = register(client, admin, received_at="2026-03-01T10:00:00Z")
    post(client, admin, f"/{closed['id']}/close", outcome="refused")
    with rt.db.begin(write=False) as session:
        counted = rights.counts(session, date(2026, 4, 30))
    assert counted == rights.Counts(open=5, due_this_week=2, overdue=2, next_due=date(2026, 4, 20))
    with rt.db.begin(write=False) as session:
        assert rights.counts(session, date(2026, 3, 1)) == rights.Counts(5, 0, 0, date(2026, 4, 20))


def metric(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} ([0-9.e+-]+)$", text, re.MULTILINE)
    assert match, f"{name} not in metrics"
    return float(match.group(1))


def test_metrics_and_healthz_show_requests_due_and_overdue(
    client: FlaskClient, tokens: dict[str, str], at: Any
) -> None:
    admin = tokens["admin"]
    health = client.get("/healthz")
    assert health.status_code == 200
    assert health.get_json()["requests"] == {
        "open": 0,
        "due_this_week": 0,
        "overdue": 0,
        "next_due": None,
        "late": False,
    }
    register(client, admin)  # due 28 February
    register(client, admin, received_at="2026-02-01T09:00:00Z")  # due 1 March
    at("2026-02-25T12:00:00")
    text = client.get("/metrics").get_data(as_text=True)
    assert metric(text, "suppress_requests_open") == 2
    assert metric(text, "suppress_requests_due_this_week") == 2
    assert metric(text, "suppress_requests_overdue") == 0
    at("2026-03-01T12:00:00")
    text = client.get("/metrics").get_data(as_text=True)
    assert metric(text, "suppress_requests_due_this_week") == 1
    assert metric(text, "suppress_requests_overdue") == 1
    health = client.get("/healthz")
    assert health.status_code == 200
    assert health.get_json()["requests"] == {
        "open": 2,
        "due_this_week": 1,
        "overdue": 1,
        "next_due": "2026-02-28",
        "late": True,
    }


def test_healthz_stays_200_when_the_register_cannot_be_read(
    client: FlaskClient, rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise Unavailable("database unavailable: OperationalError")

    monkeypatch.setattr(rights, "counts", broken)
    health = client.get("/healthz")
    assert health.status_code == 200
    assert health.get_json()["requests"] == {
        "error": {"code": "unavailable", "message": "Unavailable"}
    }


# --- lookup, audit, privacy ---------------------------------------------------------------------


def test_a_lookup_shows_the_requests_about_the_address(
    client: FlaskClient, tokens: dict[str, str], at: Any
) -> None:
    admin = tokens["admin"]
    access = register(client, admin, email=SUBJECT)
    objection = register(client, admin, kind="objection", email="ANNA.BERG@example.se")
    register(client, admin, kind="erasure", email="olle@example.org")
    register(client, admin, kind="access")
    found = client.post(
        "/v1/lookup", json={"email": "anna.berg@example.se"}, headers=bearer(admin)
    ).get_json()
    assert [r["id"] for r in found["requests"]] == [access["id"], objection["id"]]
    assert found["requests"][1]["kind"] == "objection"
    actions = [e["action"] for e in found["events"]]
    assert actions.count("request_register") == 2 and "add" in actions
    assert found["suppressions"][0]["source"] == f"request:{objection['id']}"


def test_every_change_is_audited_and_nothing_holds_the_address(
    client: FlaskClient, tokens: dict[str, str], rt: Runtime, at: Any
) -> None:
    admin = tokens["admin"]
    made = register(
        client, admin, kind="objection", email=SUBJECT, note="Ring Anna back on Monday."
    )
    ident = f"/{made['id']}"
    post(client, admin, f"{ident}/verify-identity", method="BankID")
    post(client, admin, f"{ident}/extend", reason="Archive", notified_at="2026-02-01T10:00:00Z")
    post(client, admin, f"{ident}/close", outcome="fulfilled", note="Told Anna by phone.")
    trail = [e for e in events(rt) if not e.action.startswith("apikey")]
    assert [e.action for e in trail] == [
        "request_register",
        "add",
        "request_verify_identity",
        "request_extend",
        "request_close",
    ]
    digest = bytes.fromhex(made["digest"])
    assert all(e.digest == digest for e in trail)
    assert all(e.actor == "api:test-admin" for e in trail)
    text = repr([(e.detail, e.source, e.reason) for e in trail])
    assert "Anna" not in text and "Monday" not in text  # notes stay out of the trail
    dump = []
    with rt.db.begin(write=False) as session:
        for row in session.scalars(select(SubjectRequest)):
            dump += [repr(getattr(row, c.key)) for c in SubjectRequest.__table__.columns]
    for fragment in ("example.se", "anna.berg", "anna+"):
        assert fragment not in "\n".join(dump).lower() + text.lower()
    verified = client.get("/v1/audit/verify", headers=bearer(admin)).get_json()
    assert verified["ok"] is True


def test_requests_under_an_old_pepper_are_found_and_move_and_hold_back_its_retirement(
    db_url: str, tmp_path: Path, tokens: dict[str, str], at: Any
) -> None:
    apps: list[Flask] = []

    def app_with(pepper_list: str) -> Flask:
        app = create_app(settings(db_url, tmp_path, peppers=pepper_list))
        app.config["TESTING"] = True
        apps.append(app)
        return app

    try:
        old = app_with(OLD_PEPPER)
        made = register(old.test_client(), tokens["admin"], email=SUBJECT)
        assert made["key_id"] == "t0"
        rotated = app_with(f"{TEST_PEPPER},{OLD_PEPPER}")
        rt: Runtime = rotated.extensions["suppress"]
        with rt.db.begin(write=False) as session:
            status = {k.key_id: k.requests for k in peppers.status(session, rt.ring)}
        assert status == {"t1": 0, "t0": 1}
        with rt.db.begin() as session, pytest.raises(Unprocessable, match="request"):
            peppers.retire(session, rt.ring, "t0", actor="test")
        found = rotated.test_client().post(
            "/v1/lookup", json={"email": SUBJECT}, headers=bearer(tokens["admin"])
        )
        [moved] = found.get_json()["requests"]
        assert (moved["id"], moved["key_id"]) == (made["id"], "t1")
        assert moved["digest"] == rt.ring.address("anna.berg@example.se").hex()
        [rekeyed] = events(rt, "request_rekey")
        assert rekeyed.detail["from_key"] == "t0" and rekeyed.detail["to_key"] == "t1"
        with rt.db.begin() as session:
            peppers.retire(session, rt.ring, "t0", actor="test")
        # A lookup by an instance without the pepper that keys a request would miss it.
        lacking = app_with(OLD_PEPPER)
        missed = lacking.test_client().post(
            "/v1/lookup", json={"email": SUBJECT}, headers=bearer(tokens["admin"])
        )
        assert missed.status_code == 503
        assert missed.get_json()["error"]["code"] == "pepper_missing"
    finally:
        for app in apps:
            app.extensions["suppress"].db.dispose()


def test_addresses_never_reach_the_register_by_the_domain_api(rt: Runtime) -> None:
    target = addresses.address_target(rt.ring, SUBJECT)
    with rt.db.begin() as session, pytest.raises(Unprocessable):
        rights.register(
            session,
            RequestKind.access,
            received_at=datetime(2026, 1, 31, 9),
            reference="DSR-1",
            target=target,
            channel=None,
            note="copy to anna.berg@example.se",
            zone=STOCKHOLM,
            now=datetime(2026, 2, 1),
            actor="test",
        )
    assert count(rt, SubjectRequest) == 0


# --- found by trying to break it -------------------------------------------------------------


@pytest.mark.db_agnostic
@pytest.mark.parametrize(
    "text",
    [
        "leakcheck5eb4a539'@example.se",
        '"leakcheck.x"@example.se',
        "leakcheck.x@example\u3002se",
        "leakcheck.x@example\uff0ese",
        "leakcheck.x\uff20example.se",
    ],
)
def test_every_spelling_of_an_address_is_refused_in_free_text(
    client: FlaskClient, tokens: dict[str, str], rt: Runtime, text: str
) -> None:
    assert addresses.contains_address(text)
    for field in ("reference", "channel", "note"):
        body = {"kind": "access", "received_at": "2026-11-01T10:00:00Z", "reference": "R-1"}
        answer = client.post(
            "/v1/requests", json={**body, field: text}, headers=bearer(tokens["admin"])
        )
        assert answer.status_code == 422, (field, answer.get_json())
    added = client.post(
        "/v1/suppressions",
        json={"email": "a@example.se", "list": "news", "reason": "manual", "source": text},
        headers=bearer(tokens["admin"]),
    )
    assert added.status_code in (400, 422)
    assert count(rt, SubjectRequest) == 0


@pytest.mark.parametrize("text", ["ticket 123", "a @ b", "ref-2026/14", "call at 10:30"])
def test_plain_references_are_no_address(text: str) -> None:
    assert not addresses.contains_address(text)


def test_an_extension_counts_from_the_registered_day_of_receipt_after_a_zone_change() -> None:
    """Registered in Stockholm on 31 January (due 28 February); extended where the zone is
    now one that puts receipt on 1 February: still 30 April, not 1 May."""
    received = datetime(2026, 1, 31, 12, 0)
    stockholm, kiritimati = ZoneInfo("Europe/Stockholm"), ZoneInfo("Pacific/Kiritimati")
    row = SubjectRequest(received_at=received, first_due=rights.due_date(received, stockholm))
    assert row.first_due == date(2026, 2, 28)
    assert rights.local_day(received, kiritimati) == date(2026, 2, 1)
    assert rights.add_months(rights.receipt_day(row, kiritimati), 3) == date(2026, 4, 30)


def test_a_receipt_before_2000_is_refused_and_an_old_row_still_has_a_day() -> None:
    from datetime import date, datetime
    from zoneinfo import ZoneInfo

    from suppress import rights
    from suppress.errors import Unprocessable
    from suppress.models import SubjectRequest

    with pytest.raises(Unprocessable, match="before the year 2000"):
        rights._plausible("received_at", datetime(1999, 12, 31, 23, 0), datetime(2026, 12, 6))
    # A row registered before the bound existed, at the first day there is: its pages
    # still show a day of receipt instead of failing on the day before it.
    row = SubjectRequest(received_at=datetime(1, 1, 1), first_due=date(1, 2, 1))
    assert rights.receipt_day(row, ZoneInfo("Europe/Stockholm")) == date(1, 1, 1)
