"""Privacy: no plaintext address in the database files, WAL or log; and the privacy
policy's promises, each stated as a test (docs/privacy.md maps them)."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest
import requests
from flask.testing import FlaskClient
from sqlalchemy import create_engine, inspect, select, text

from suppress import addresses, clock, suppressions
from suppress.models import AuditEvent, Suppression
from suppress.runtime import Runtime

from .conftest import LiveServer, bearer, postgres_schema

PEOPLE = [
    "Greta.Privat+news@Example.se",
    "privacy.probe@example.com",
    "ÅSA.Hemlig@företag.se",
    "p.r.i.v.a.t.e@gmail.com",
]
NEEDLES = ["greta.privat", "privacy.probe", "hemlig", "p.r.i.v.a.t.e", "private@gmail"]


def exercise(server: LiveServer) -> list[bytes]:
    """Drive success and error paths; return the bodies of every error response."""
    errors: list[bytes] = []
    token = server.cli("keys", "create", "--name", "privacy", "--role", "admin").stdout.split()[-1]
    headers = {"Authorization": f"Bearer {token}"}
    for email in PEOPLE:
        for path, body in (
            ("/v1/suppressions", {"email": email, "list": "news", "reason": "unsubscribe"}),
            ("/v1/check", {"email": email, "list": "news"}),
            ("/v1/unsubscribe-links", {"list": "offers", "emails": [email, f"x {email}"]}),
            ("/v1/suppressions", {"email": email, "list": "bad list!", "reason": "unsubscribe"}),
            ("/v1/suppressions", {"email": email, "list": "news", "reason": "nope"}),
            (
                "/v1/suppressions",
                {"email": email, "list": "news", "reason": "manual", "source": f"pasted {email}"},
            ),
        ):
            response = requests.post(
                server.url + path,
                json=body,
                headers={**headers, "Idempotency-Key": email[:5]},
                timeout=10,
            )
            if response.status_code >= 400:
                errors.append(response.content)
        for args in (
            ("check", email, "--list", "news"),
            ("add", email, "--list", "global", "--reason", "objection"),
            ("add", email, "--list", "x", "--reason", "nope"),
        ):
            result = server.cli(*args)
            if result.returncode == 2:
                errors.append(result.stderr.encode())
    requests.post(
        server.url + "/v1/check",
        json={"email": "broken@@example.se", "list": "news"},
        headers=headers,
        timeout=10,
    )
    return errors


def assert_clean(blob: bytes, where: str) -> None:
    lowered = blob.lower()
    for needle in NEEDLES:
        for encoded in (needle.encode(), needle.encode("utf-16-le")):
            assert encoded not in lowered, f"{needle!r} found in {where}"


@pytest.mark.slow
def test_no_plaintext_in_sqlite_files_or_log(tmp_path: Path) -> None:
    db_file = tmp_path / "privacy.db"
    server = LiveServer(f"sqlite:///{db_file}", tmp_path)
    try:
        errors = exercise(server)
        assert len(errors) >= 3 * len(PEOPLE)
        for body in errors:
            assert_clean(body, "an error response")
        files = [p for p in tmp_path.rglob("*") if p.is_file() and p.name.startswith("privacy.db")]
        assert any(p.name.endswith("-wal") for p in files), "the WAL should exist while serving"
        for path in files:
            assert_clean(path.read_bytes(), path.name)
    finally:
        server.stop()
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert_clean(path.read_bytes(), str(path.relative_to(tmp_path)))


@pytest.mark.slow
def test_no_plaintext_in_postgres_tables_or_log(tmp_path: Path) -> None:
    with postgres_schema() as db_url:
        check_postgres(db_url, tmp_path)


def check_postgres(db_url: str, tmp_path: Path) -> None:
    server = LiveServer(db_url, tmp_path)
    try:
        for body in exercise(server):
            assert_clean(body, "an error response")
    finally:
        server.stop()
    engine = create_engine(db_url)
    with engine.connect() as conn:
        for table in inspect(conn).get_table_names():
            rows = conn.execute(text(f'SELECT CAST(t AS text) FROM "{table}" t')).scalars().all()
            assert_clean("\n".join(rows).encode(), f"table {table}")
    engine.dispose()
    assert_clean(server.log_path.read_bytes(), "server log")


# --- the privacy policy's promises -------------------------------------------------------


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
    now = clock.utcnow()
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
        later = clock.utcnow() + timedelta(days=365 * years)
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
    assert allowed(rt, "kim.doe@example.se", "news", clock.utcnow()) is False


def test_an_access_request_is_answered_from_one_call_and_its_date_is_kept(
    client: FlaskClient, tokens: dict[str, str], rt: Runtime
) -> None:
    rec, admin = bearer(tokens["recorder"]), bearer(tokens["admin"])
    body = {"email": "kim@example.se", "list": "news", "reason": "unsubscribe"}
    assert client.post("/v1/suppressions", json=body, headers=rec).status_code == 201
    before = clock.utcnow()
    request = {"email": "kim@example.se", "reference": "DSR-2026-031"}
    answer = client.post("/v1/lookup", json=request, headers=admin).get_json()
    after = clock.utcnow()
    assert [r["reason"] for r in answer["suppressions"]] == ["unsubscribe"]
    with rt.db.begin(write=False) as session:
        (event,) = session.scalars(select(AuditEvent).where(AuditEvent.action == "lookup")).all()
    assert before <= event.at <= after
    assert event.detail["reference"] == "DSR-2026-031"


def test_an_opt_out_cannot_land_on_a_list_nobody_checks(
    client: FlaskClient, tokens: dict[str, str]
) -> None:
    # "news\n" once passed the list pattern ($ matches before a final newline) and was stored
    # as a list of its own, which no check for "news" would ever find.
    for name in ("news\n", "news\r\n", " news"):
        body = {"email": "kim@example.se", "list": name, "reason": "unsubscribe"}
        response = client.post("/v1/suppressions", json=body, headers=bearer(tokens["recorder"]))
        assert response.status_code == 422, name
        assert response.get_json()["error"]["code"] == "invalid_list"
