"""The gate's hot path keeps its promises while it skips work: a key this process verified is
trusted for at most a second, and no opt-out committed elsewhere is ever missed."""

from __future__ import annotations

import time

from flask.testing import FlaskClient
from sqlalchemy import text

from suppress import addresses, apikeys, clock, suppressions
from suppress.apikeys import KeyCache
from suppress.db import Database
from suppress.models import Reason
from suppress.runtime import Runtime

from .conftest import bearer


def check(client: FlaskClient, token: str, email: str = "hot@example.se") -> int:
    return client.post(
        "/v1/check", json={"email": email, "list": "news"}, headers=bearer(token)
    ).status_code


def test_a_revoked_key_is_refused_within_the_cache_time(
    client: FlaskClient, tokens: dict[str, str], rt: Runtime, db_url: str
) -> None:
    rt.keys = KeyCache(seconds=0.5)
    assert check(client, tokens["mailer"]) == 200  # verified and kept
    other = Database(db_url)  # another instance revokes it
    try:
        with other.begin() as session:
            key = apikeys.authenticate(session, tokens["mailer"])
            apikeys.revoke(session, key.id, actor="test")
    finally:
        other.dispose()
    started = time.monotonic()
    while check(client, tokens["mailer"]) == 200:
        assert time.monotonic() - started < 0.5 + 0.25, "still accepted past the cache time"
        time.sleep(0.02)
    assert check(client, tokens["mailer"]) == 401


def test_an_unknown_token_is_never_cached(client: FlaskClient, rt: Runtime) -> None:
    assert check(client, "sk_made_up") == 401
    assert rt.keys.get(apikeys.hash_token("sk_made_up"), time.monotonic()) is None


def test_an_opt_out_committed_on_another_connection_is_seen_by_the_next_check(
    client: FlaskClient, tokens: dict[str, str], rt: Runtime, db_url: str
) -> None:
    for n in range(5):
        email = f"between{n}@example.se"
        verdict = client.post(
            "/v1/check", json={"email": email, "list": "news"}, headers=bearer(tokens["mailer"])
        ).get_json()
        assert verdict["allowed"] is True
        other = Database(db_url)
        try:
            with other.begin() as session:
                suppressions.add(
                    session,
                    addresses.address_target(rt.ring, email),
                    "news",
                    Reason.unsubscribe,
                    source="api",
                    actor="test",
                    now=clock.utcnow(),
                )
        finally:
            other.dispose()
        again = client.post(
            "/v1/check", json={"email": email, "list": "news"}, headers=bearer(tokens["mailer"])
        ).get_json()
        assert again["allowed"] is False, n


def test_a_check_connection_the_server_closed_is_replaced_and_the_verdict_kept(
    client: FlaskClient, tokens: dict[str, str], rt: Runtime, db_url: str, backend: str
) -> None:
    # The single check's connections are not pinged before use: one the server has closed
    # (a restart, an idle timeout) is dropped and the statement run again on a new one, so
    # the answer is still the verdict, never a 503 and never "allowed" by mistake.
    add = client.post(
        "/v1/suppressions",
        json={"email": "gone@example.se", "list": "news", "reason": "unsubscribe"},
        headers=bearer(tokens["recorder"]),
    )
    assert add.status_code == 201
    for _ in range(3):
        if backend == "postgresql":
            raw = rt.db._query_engine.raw_connection()
            try:
                cursor = raw.cursor()
                cursor.execute("SELECT pg_backend_pid()")
                (pid,) = cursor.fetchone()
            finally:
                raw.close()
            killer = Database(db_url)
            try:
                with killer.begin() as session:
                    session.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
            finally:
                killer.dispose()
            time.sleep(0.05)
        response = client.post(
            "/v1/check",
            json={"email": "gone@example.se", "list": "news"},
            headers=bearer(tokens["mailer"]),
        )
        assert response.status_code == 200, response.get_json()
        assert response.get_json()["allowed"] is False
