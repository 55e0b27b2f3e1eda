"""Idempotency records: no address in a key, keyed fingerprints, purged after the window."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select

from suppress import apikeys, clock, create_app, idempotency, jobs
from suppress.models import IdempotencyKey, Role, Suppression
from suppress.runtime import Runtime

from .conftest import OLD_PEPPER, TEST_PEPPER, bearer, settings

BODY = {"email": "idem.person@example.se", "list": "news", "reason": "unsubscribe"}


def rows(rt: Runtime) -> list[IdempotencyKey]:
    with rt.db.begin(write=False) as session:
        found = list(session.scalars(select(IdempotencyKey)))
        session.expunge_all()
        return found


@pytest.mark.db_agnostic
@pytest.mark.parametrize(
    "key", ["idem.person@example.se", "retry-idem.person@example.se-1", "anna@x", "@"]
)
def test_a_key_that_looks_like_an_address_is_refused_and_changes_nothing(
    client: FlaskClient, tokens: dict[str, str], rt: Runtime, key: str
) -> None:
    headers = {**bearer(tokens["recorder"]), "Idempotency-Key": key}
    added = client.post("/v1/suppressions", json=BODY, headers=headers)
    assert added.status_code == 422
    assert added.get_json()["error"]["code"] == "invalid_request"
    assert "idem.person" not in added.get_data(as_text=True)
    imported = client.post(
        "/v1/imports?list=news&reason=unsubscribe",
        data=b"idem.person@example.se\n",
        headers={**headers, "Content-Type": "text/plain"},
    )
    assert imported.status_code == 422
    with rt.db.begin(write=False) as session:
        assert session.scalar(select(func.count()).select_from(Suppression)) == 0
    assert rows(rt) == []


def test_the_stored_fingerprint_is_keyed_not_a_plain_hash_of_the_body(
    client: FlaskClient, tokens: dict[str, str], rt: Runtime
) -> None:
    headers = {**bearer(tokens["recorder"]), "Idempotency-Key": "fp-1"}
    body = json.dumps(BODY).encode()
    response = client.post(
        "/v1/suppressions", data=body, headers={**headers, "Content-Type": "application/json"}
    )
    assert response.status_code == 201
    (row,) = rows(rt)
    plain = hashlib.sha256(b"POST /v1/suppressions?\n" + body).hexdigest()
    # Anyone holding the database could confirm a guessed address against a plain hash.
    assert row.request_hash != plain
    assert (
        row.request_hash == idempotency.fingerprints(rt.ring, "POST", "/v1/suppressions?", body)[0]
    )
    assert "idem.person" not in row.response and "idem.person" not in row.key


def test_a_retry_across_a_pepper_rotation_still_replays(db_url: str, tmp_path: Path) -> None:
    before = create_app(settings(db_url, tmp_path, peppers=OLD_PEPPER))
    rt_before: Runtime = before.extensions["suppress"]
    with rt_before.db.begin() as session:
        _key, token = apikeys.create(session, "retry", Role.recorder, actor="test")
    headers = {**bearer(token), "Idempotency-Key": "across-rotation"}
    first = before.test_client().post("/v1/suppressions", json=BODY, headers=headers)
    assert first.status_code == 201
    rt_before.db.dispose()

    after = create_app(settings(db_url, tmp_path, peppers=f"{TEST_PEPPER},{OLD_PEPPER}"))
    rt_after: Runtime = after.extensions["suppress"]
    retry = after.test_client().post("/v1/suppressions", json=BODY, headers=headers)
    assert retry.status_code == 201 and retry.headers["Idempotent-Replayed"] == "true"
    assert retry.get_json() == first.get_json()
    other = after.test_client().post(
        "/v1/suppressions", json={**BODY, "list": "offers"}, headers=headers
    )
    assert other.status_code == 422
    rt_after.db.dispose()


def test_the_hourly_job_purges_records_older_than_the_window(
    client: FlaskClient, tokens: dict[str, str], rt: Runtime
) -> None:
    headers = bearer(tokens["recorder"])
    for key in ("old-1", "new-1"):
        response = client.post(
            "/v1/suppressions", json=BODY, headers={**headers, "Idempotency-Key": key}
        )
        assert response.status_code in (200, 201)
    hours = rt.config.idempotency_hours
    with rt.db.begin() as session:
        stored_old = idempotency.stored_keys(rt.ring, "old-1")[0]
        old = session.get(IdempotencyKey, (stored_old, rows(rt)[0].api_key_id))
        assert old is not None
        old.created_at = clock.utcnow() - timedelta(hours=hours, minutes=1)
    outcome = jobs.run_manual(rt, "expire")
    assert outcome.status == "ok"
    assert outcome.run is not None and outcome.run["summary"]["idempotency_purged"] == 1
    assert [r.key for r in rows(rt)] == idempotency.stored_keys(rt.ring, "new-1")[:1]


def test_a_key_holding_an_address_in_an_encoding_is_refused_like_one_with_an_at(
    client: FlaskClient, tokens: dict[str, str], rt: Runtime
) -> None:
    for key in ("leakcheck.idem%40example.se", "leakcheck.idem&#64;example.se"):
        headers = {**bearer(tokens["recorder"]), "Idempotency-Key": key}
        response = client.post("/v1/suppressions", json=BODY, headers=headers)
        assert response.status_code == 422
        assert "must not contain an email address" in response.get_json()["error"]["message"]
    assert rows(rt) == []


@pytest.mark.parametrize("key", ["leakcheck.idem at example.se", "leakcheck.idem"])
def test_keys_are_kept_only_keyed_whatever_they_hold(
    client: FlaskClient, tokens: dict[str, str], rt: Runtime, key: str
) -> None:
    headers = {**bearer(tokens["recorder"]), "Idempotency-Key": key}
    first = client.post("/v1/suppressions", json=BODY, headers=headers)
    again = client.post("/v1/suppressions", json=BODY, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    (row,) = rows(rt)
    assert "leakcheck" not in row.key and len(row.key) == 64
    assert row.key == idempotency.stored_keys(rt.ring, key)[0]
