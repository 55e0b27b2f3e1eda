"""The privacy policy's promises, each stated as a test (docs/privacy.md maps them)."""

from __future__ import annotations

from datetime import datetime, timedelta

from flask.testing import FlaskClient
from sqlalchemy import inspect, select

from suppress import addresses, audit, suppressions
from suppress.models import AuditEvent, Suppression
from suppress.runtime import Runtime

from .conftest import bearer


def allowed(rt: Runtime, email: str, list_name: str, now: datetime) -> bool:
    target = addresses.address_target(rt.ring, email)
    with rt.db.begin(write=False) as session:
        return suppressions.check(session, target, list_name, now=now).allowed


def test_withdrawn_consent_stops_marketing_on_that_list_at_once(
    client: FlaskClient, tokens: dict[str, str], rt: Runtime
) -> None:
    body = {"email": "kim@example.se", "list": "offers", "reason": "consent_withdrawn"}
    response = client.post("/v1/suppressions", json=body, headers=bearer(tokens["recorder"]))
    assert response.status_code == 201
    now = audit.utcnow()
    assert allowed(rt, "Kim@Example.se", "offers", now) is False
    assert allowed(rt, "kim@example.se", "news", now) is True


def test_objection_covers_every_list_and_outlives_a_bounce(
    client: FlaskClient, tokens: dict[str, str], rt: Runtime
) -> None:
    rec = bearer(tokens["recorder"])
    objection = {"email": "kim@example.se", "list": "global", "reason": "objection"}
    assert client.post("/v1/suppressions", json=objection, headers=rec).status_code == 201
    bounce = {
        "email": "kim@example.se",
        "list": "news",
        "reason": "soft_bounce",
        "expires_at": "2030-01-01T00:00:00Z",
    }
    assert client.post("/v1/suppressions", json=bounce, headers=rec).status_code == 201
    for years in (0, 10, 50):
        later = audit.utcnow() + timedelta(days=365 * years)
        for list_name in ("news", "offers", "global"):
            assert allowed(rt, "kim@example.se", list_name, later) is False


def test_erasure_keeps_only_the_keyed_hash_needed_to_honour_the_objection(
    client: FlaskClient, tokens: dict[str, str], rt: Runtime
) -> None:
    erasure = {"email": "Kim.Doe+x@example.se", "list": "global", "reason": "erasure"}
    response = client.post("/v1/suppressions", json=erasure, headers=bearer(tokens["recorder"]))
    assert response.status_code == 201
    # The table has no column that could hold anything but the digest and its bookkeeping.
    columns = {c["name"] for c in inspect(rt.db.engine).get_columns("suppression")}
    assert columns == {
        "id", "digest", "key_id", "scheme", "kind", "list", "reason", "source", "created_at",
        "expires_at",
    }  # fmt: skip
    with rt.db.begin(write=False) as session:
        (row,) = session.scalars(select(Suppression)).all()
        assert row.digest == rt.ring.address("kim.doe@example.se")
    assert allowed(rt, "kim.doe@example.se", "news", audit.utcnow()) is False


def test_an_access_request_is_answered_from_one_call_and_its_date_is_kept(
    client: FlaskClient, tokens: dict[str, str], rt: Runtime
) -> None:
    rec, admin = bearer(tokens["recorder"]), bearer(tokens["admin"])
    body = {"email": "kim@example.se", "list": "news", "reason": "unsubscribe"}
    assert client.post("/v1/suppressions", json=body, headers=rec).status_code == 201
    before = audit.utcnow()
    request = {"email": "kim@example.se", "reference": "DSR-2026-031"}
    answer = client.post("/v1/lookup", json=request, headers=admin).get_json()
    after = audit.utcnow()
    assert [r["reason"] for r in answer["suppressions"]] == ["unsubscribe"]
    with rt.db.begin(write=False) as session:
        (event,) = session.scalars(select(AuditEvent).where(AuditEvent.action == "lookup")).all()
    assert before <= event.at <= after
    assert event.detail["reference"] == "DSR-2026-031"
