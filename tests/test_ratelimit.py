"""Rate limits: per client IP on the pages, per API key on /v1; 429 with Retry-After, never 5xx.

The limits here are per day: a window starts at its first hit and cannot end during a test,
so every count below is exact however slow the machine.
"""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from suppress import create_app
from suppress.addresses import active_digest
from suppress.errors import ConfigError
from suppress.runtime import Runtime

from .conftest import IN_CI, bearer, settings

REDIS_URL = "redis://127.0.0.1:6379/0"
DAY = 24 * 60 * 60


def limited_app(db_url: str, tmp_path: Path, **ratelimit: Any) -> Flask:
    return create_app(settings(db_url, tmp_path, ratelimit=ratelimit))


@pytest.fixture
def small(db_url: str, tmp_path: Path) -> Iterator[Flask]:
    app = limited_app(db_url, tmp_path, pages="3 per day", api="2 per day")
    yield app
    app.extensions["suppress"].db.dispose()


def page_url(app: Flask, email: str = "a@example.se") -> str:
    rt: Runtime = app.extensions["suppress"]
    return "/u/" + rt.signer.sign(active_digest(rt.ring, email), "news", minted_by=1)


def from_ip(ip: str) -> dict[str, Any]:
    return {"environ_base": {"REMOTE_ADDR": ip}}


def assert_retry_after_the_window(response: Any, started: float) -> None:
    """Retry-After is the time left in the day-long window that began at or after `started`."""
    retry = int(response.headers["Retry-After"])
    assert DAY - (time.time() - started) - 1 <= retry <= DAY, retry


def mailer_token(app: Flask, name: str = "job") -> str:
    from suppress import apikeys
    from suppress.models import Role

    rt: Runtime = app.extensions["suppress"]
    with rt.db.begin() as session:
        return apikeys.create(session, name, Role.mailer, actor="test")[1]


def test_pages_share_one_budget_per_client_ip(small: Flask) -> None:
    client = small.test_client()
    one, other = page_url(small), page_url(small, "b@example.se")
    started = time.time()
    assert client.get(one).status_code == 200
    assert client.post(other, data={"scope": "list"}).status_code == 200
    assert client.get("/u/forged").status_code == 400  # bad links count too
    over = client.get(one, headers={"Accept-Language": "en"})
    assert over.status_code == 429
    assert_retry_after_the_window(over, started)
    body = over.get_data(as_text=True)
    assert over.mimetype == "text/html" and '<html lang="en">' in body
    assert "<h1>Too many attempts</h1>" in body
    assert over.headers["X-Robots-Tag"] == "noindex, nofollow"
    assert over.headers["Cache-Control"] == "no-store"
    # Another visitor is not held back by the first one.
    assert client.get(one, **from_ip("192.0.2.7")).status_code == 200


def test_a_limited_post_records_nothing(small: Flask) -> None:
    client = small.test_client()
    url = page_url(small)
    for _ in range(3):
        client.get(url)
    refused = client.post(url, data={"List-Unsubscribe": "One-Click"})
    assert refused.status_code == 429
    token = mailer_token(small)
    check = client.post(
        "/v1/check", json={"email": "a@example.se", "list": "news"}, headers=bearer(token)
    )
    assert check.get_json()["allowed"] is True


def test_api_budget_is_per_key(small: Flask) -> None:
    client = small.test_client()
    first, second = mailer_token(small, "one"), mailer_token(small, "two")
    body = {"email": "a@example.se", "list": "news"}
    started = time.time()
    for _ in range(2):
        assert client.post("/v1/check", json=body, headers=bearer(first)).status_code == 200
    over = client.post("/v1/check", json=body, headers=bearer(first))
    assert over.status_code == 429
    assert over.get_json()["error"]["code"] == "rate_limited"
    assert_retry_after_the_window(over, started)
    assert client.post("/v1/check", json=body, headers=bearer(second)).status_code == 200
    # The public pages have their own budget.
    assert client.get(page_url(small)).status_code == 200


def made_up() -> dict[str, str]:
    return bearer("sk_" + uuid.uuid4().hex)


def revoked_token(app: Flask) -> str:
    from suppress import apikeys

    token = mailer_token(app, "gone")
    rt: Runtime = app.extensions["suppress"]
    with rt.db.begin() as session:
        apikeys.revoke(session, apikeys.authenticate(session, token).id, actor="test")
    return token


def test_tokens_that_do_not_authenticate_share_the_client_address_budget(small: Flask) -> None:
    client = small.test_client()
    body = {"email": "a@example.se", "list": "news"}
    gone = revoked_token(small)
    assert client.post("/v1/check", json=body, headers=made_up()).status_code == 401
    assert client.post("/v1/check", json=body, headers=bearer(gone)).status_code == 401
    # Each of these would have had a budget of its own if budgets went by the token.
    for headers in (
        made_up(),
        bearer(gone),
        {"Authorization": "Basic dXNlcjpwdw=="},
        {"Authorization": "Bearer"},
        {"Authorization": "x" * 500},
        {},
    ):
        over = client.post("/v1/check", json=body, headers=headers)
        assert over.status_code == 429
        assert over.get_json()["error"]["code"] == "rate_limited"
    # Another client address has a budget of its own...
    elsewhere = client.post("/v1/check", json=body, headers=made_up(), **from_ip("192.0.2.9"))
    assert elsewhere.status_code == 401
    # ...and a key that authenticates is not held back by its address's budget.
    good = mailer_token(small, "job")
    assert client.post("/v1/check", json=body, headers=bearer(good)).status_code == 200


def test_one_budget_spans_every_api_route(small: Flask) -> None:
    client = small.test_client()
    body = {"email": "a@example.se", "list": "news"}
    assert client.post("/v1/check", json=body, headers=made_up()).status_code == 401
    assert client.post("/v1/check", json=body, headers=made_up()).status_code == 401
    # The address's budget is spent: another route must not open a fresh one.
    for method, path in (("get", "/v1/audit"), ("post", "/v1/lookup"), ("get", "/v1/jobs")):
        assert getattr(client, method)(path, headers=made_up()).status_code == 429, path


def test_a_flood_of_made_up_tokens_is_limited(db_url: str, tmp_path: Path) -> None:
    app = limited_app(db_url, tmp_path, api="10 per day")
    client = app.test_client()
    body = {"email": "a@example.se", "list": "news"}
    statuses = [
        client.post("/v1/check", json=body, headers=made_up()).status_code for _ in range(50)
    ]
    assert statuses == [401] * 10 + [429] * 40
    app.extensions["suppress"].db.dispose()


def test_each_request_authenticates_its_token_once(
    small: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    from suppress import apikeys

    client = small.test_client()
    good = mailer_token(small)
    calls: list[str | None] = []
    real = apikeys.authenticate

    def counted(session: Any, token: str | None) -> Any:
        calls.append(token)
        return real(session, token)

    monkeypatch.setattr(apikeys, "authenticate", counted)
    body = {"email": "a@example.se", "list": "news"}
    # The limiter's choice of budget and the route's authentication share one lookup.
    for headers, status in [
        (bearer(good), 200),
        (made_up(), 401),
        (made_up(), 401),
        (made_up(), 429),
    ]:
        calls.clear()
        assert client.post("/v1/check", json=body, headers=headers).status_code == status
        assert len(calls) == 1


@pytest.mark.db_agnostic
def test_health_endpoints_are_not_limited(small: Flask) -> None:
    client = small.test_client()
    assert {client.get("/healthz").status_code for _ in range(10)} == {200}


@pytest.mark.db_agnostic
def test_a_flood_gets_429s_and_never_a_5xx(db_url: str, tmp_path: Path) -> None:
    app = limited_app(db_url, tmp_path, pages="20 per day")
    client = app.test_client()
    url = page_url(app)
    statuses = []
    for i in range(150):
        if i % 3 == 0:
            statuses.append(client.post(url, data={"List-Unsubscribe": "One-Click"}).status_code)
        elif i % 3 == 1:
            statuses.append(client.head(url).status_code)
        else:
            statuses.append(client.get(url[:-4]).status_code)
    assert set(statuses) <= {200, 400, 429}
    assert statuses.count(429) == 130
    app.extensions["suppress"].db.dispose()


@pytest.mark.db_agnostic
def test_an_unreachable_limit_store_falls_back_to_memory(db_url: str, tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port that refuses connections
        sock.bind(("127.0.0.1", 0))
        dead = f"redis://127.0.0.1:{sock.getsockname()[1]}/0"
    app = limited_app(db_url, tmp_path, pages="2 per day", storage_url=dead)
    client = app.test_client()
    url = page_url(app)
    assert [client.get(url).status_code for _ in range(3)] == [200, 200, 429]
    app.extensions["suppress"].db.dispose()


def redis_or_skip() -> None:
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=1).close()
    except OSError:
        reason = "no Redis on 127.0.0.1:6379: shared rate-limit storage NOT TESTED"
        if IN_CI:
            pytest.fail(reason + " (CI=true requires it)")
        pytest.skip(reason)


@pytest.mark.db_agnostic
def test_counters_are_shared_through_redis(db_url: str, tmp_path: Path) -> None:
    redis_or_skip()
    # Two app instances (two hosts, in production) count against one budget.
    first = limited_app(db_url, tmp_path, pages="3 per day", storage_url=REDIS_URL)
    second = limited_app(db_url, tmp_path, pages="3 per day", storage_url=REDIS_URL)
    # A fresh client address per run: no earlier run (or another checkout's) shares its window.
    visitor = from_ip(f"fd00::{uuid.uuid4().hex[:4]}:{uuid.uuid4().hex[:4]}")
    url = page_url(first)
    statuses = [
        first.test_client().get(url, **visitor).status_code,
        second.test_client().get(url, **visitor).status_code,
        first.test_client().get(url, **visitor).status_code,
        second.test_client().get(url, **visitor).status_code,
    ]
    assert statuses == [200, 200, 200, 429]
    for app in (first, second):
        app.extensions["suppress"].db.dispose()


def test_made_up_tokens_count_against_the_address_through_redis(
    db_url: str, tmp_path: Path
) -> None:
    redis_or_skip()
    first = limited_app(db_url, tmp_path, api="3 per day", storage_url=REDIS_URL)
    second = limited_app(db_url, tmp_path, api="3 per day", storage_url=REDIS_URL)
    visitor = from_ip(f"fd00::{uuid.uuid4().hex[:4]}:{uuid.uuid4().hex[:4]}")
    body = {"email": "a@example.se", "list": "news"}
    statuses = [
        app.test_client().post("/v1/check", json=body, headers=made_up(), **visitor).status_code
        for app in (first, second, first, second)
    ]
    assert statuses == [401, 401, 401, 429]
    good = mailer_token(first)
    assert (
        second.test_client()
        .post("/v1/check", json=body, headers=bearer(good), **visitor)
        .status_code
        == 200
    )
    for app in (first, second):
        app.extensions["suppress"].db.dispose()


@pytest.mark.db_agnostic
@pytest.mark.parametrize(
    "bad", [{"pages": "lots"}, {"api": "5 per fortnight"}, {"pages": 120}, {"api": ""}]
)
def test_bad_rates_fail_at_start_up(db_url: str, tmp_path: Path, bad: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        create_app(settings(db_url, tmp_path, ratelimit=bad))


@pytest.mark.db_agnostic
def test_limits_can_be_switched_off(db_url: str, tmp_path: Path) -> None:
    app = limited_app(db_url, tmp_path, pages="1 per day", enabled=False)
    client: FlaskClient = app.test_client()
    assert {client.get(page_url(app)).status_code for _ in range(5)} == {200}
    app.extensions["suppress"].db.dispose()


def test_per_process_counters_expire_when_next_read_and_sweep_old_windows() -> None:
    from suppress.ratelimit import ProcessCounters

    counters = ProcessCounters("suppress-memory://")
    assert counters.incr("k", 60) == 1
    assert counters.incr("k", 60) == 2
    assert counters.get("k") == 2
    counters.expirations["k"] = 0  # the window has passed
    assert counters.incr("k", 60) == 1
    for n in range(3):
        counters.incr(f"old{n}", 60)
        counters.expirations[f"old{n}"] = 0
    counters.SWEEP_AT = 4  # the next new window finds five: the passed ones go
    counters.incr("fresh", 60)
    assert set(counters.expirations) == {"k", "fresh"}
