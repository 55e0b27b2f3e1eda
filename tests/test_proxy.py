"""Behind a proxy (DESIGN §13): forwarded headers count only from [server] proxy_hops proxies."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask

from suppress import config, create_app
from suppress.addresses import active_digest
from suppress.errors import ConfigError
from suppress.runtime import Runtime

from .conftest import TEST_PEPPER, TOKEN_SECRET, LiveServer, settings

PROXY = {"REMOTE_ADDR": "10.0.0.2"}  # every request reaches the app from the one proxy


def proxied_app(db_url: str, tmp_path: Path, hops: int) -> Flask:
    return create_app(
        settings(
            db_url,
            tmp_path,
            server={"proxy_hops": hops},
            # Per day: no window can end during a test, so the counts are exact.
            ratelimit={"pages": "2 per day", "api": "2 per day"},
        )
    )


@pytest.fixture
def direct(db_url: str, tmp_path: Path) -> Iterator[Flask]:
    app = proxied_app(db_url, tmp_path, 0)
    yield app
    app.extensions["suppress"].db.dispose()


@pytest.fixture
def one_hop(db_url: str, tmp_path: Path) -> Iterator[Flask]:
    app = proxied_app(db_url, tmp_path, 1)
    yield app
    app.extensions["suppress"].db.dispose()


def page(app: Flask) -> str:
    rt: Runtime = app.extensions["suppress"]
    return "/u/" + rt.signer.sign(active_digest(rt.ring, "a@example.se"), "news", minted_by=1)


def get(app: Flask, url: str, forwarded_for: str, proto: str = "http") -> Any:
    return app.test_client().get(
        url,
        environ_base=PROXY,
        headers={"X-Forwarded-For": forwarded_for, "X-Forwarded-Proto": proto},
    )


def test_with_no_hops_a_forged_forwarded_for_buys_no_fresh_budget(direct: Flask) -> None:
    url = page(direct)
    answers = [get(direct, url, f"203.0.113.{n}").status_code for n in range(4)]
    assert answers == [200, 200, 429, 429]


def test_with_one_hop_each_client_address_has_its_own_budget(one_hop: Flask) -> None:
    url = page(one_hop)
    assert [get(one_hop, url, "203.0.113.1").status_code for _ in range(3)] == [200, 200, 429]
    # Another client behind the same proxy is not held back by the first one's flood.
    assert get(one_hop, url, "203.0.113.2").status_code == 200


def test_a_client_cannot_choose_its_address_by_prepending_entries(one_hop: Flask) -> None:
    # The proxy appends the address it saw; only that last entry is trusted with one hop.
    url = page(one_hop)
    answers = [get(one_hop, url, f"198.51.100.{n}, 203.0.113.9").status_code for n in range(3)]
    assert answers == [200, 200, 429]


def test_the_scheme_comes_from_a_trusted_proxy_only(direct: Flask, one_hop: Flask) -> None:
    https = get(one_hop, "/healthz", "203.0.113.1", proto="https")
    assert https.headers["Strict-Transport-Security"] == "max-age=31536000"
    assert "Strict-Transport-Security" not in get(one_hop, "/healthz", "203.0.113.1").headers
    forged = get(direct, "/healthz", "203.0.113.1", proto="https")
    assert "Strict-Transport-Security" not in forged.headers


def base_env() -> dict[str, str]:
    return {"SUPPRESS_PEPPERS": TEST_PEPPER, "SUPPRESS_TOKEN_SECRETS": TOKEN_SECRET}


def test_proxy_hops_from_the_environment(tmp_path: Path) -> None:
    env = {**base_env(), "SUPPRESS_INSTANCE_DIR": str(tmp_path)}
    assert config.load(env=env).proxy_hops == 0
    assert config.load(env={**env, "SUPPRESS_PROXY_HOPS": "2"}).proxy_hops == 2
    assert config.load(env={**env, "SUPPRESS_SERVER_PROXY_HOPS": "1"}).proxy_hops == 1
    both = {**env, "SUPPRESS_SERVER_PROXY_HOPS": "1", "SUPPRESS_PROXY_HOPS": "3"}
    assert config.load(env=both).proxy_hops == 3  # the contract's name wins


@pytest.mark.parametrize("bad", ["-1", "11", "two", "1.5", "", "1_0", "+1", " 2 ", "\u0663", "0x1"])
def test_a_bad_proxy_hops_is_refused_at_start(tmp_path: Path, bad: str) -> None:
    env = {**base_env(), "SUPPRESS_INSTANCE_DIR": str(tmp_path), "SUPPRESS_PROXY_HOPS": bad}
    with pytest.raises(ConfigError, match="PROXY_HOPS|proxy_hops"):
        config.load(env=env)


@pytest.mark.e2e
@pytest.mark.parametrize("hops", [0, 1])
def test_the_real_server_trusts_forwarded_headers_only_with_hops(tmp_path: Path, hops: int) -> None:
    """gunicorn itself must not take X-Forwarded-Proto from a local peer when hops is 0."""
    server = LiveServer(
        f"sqlite:///{tmp_path / 'suppress.db'}",
        tmp_path,
        extra_env={"SUPPRESS_PROXY_HOPS": str(hops)},
    )
    try:
        headers = {"X-Forwarded-For": "203.0.113.77", "X-Forwarded-Proto": "https"}
        answer = requests.get(server.url + "/healthz", headers=headers, timeout=10)
        assert answer.status_code == 200
        assert ("Strict-Transport-Security" in answer.headers) is bool(hops)
    finally:
        server.stop()
    remotes = [
        json.loads(line)["remote"]
        for line in server.log_path.read_text().splitlines()
        if line.startswith('{"time"') and '"GET /healthz' in line
    ]
    assert remotes == (["203.0.113.77"] if hops else ["127.0.0.1"])


@pytest.mark.parametrize(
    ("name", "bad"),
    [
        ("SUPPRESS_SERVER_WORKERS", "0"),
        ("SUPPRESS_SERVER_WORKERS", "100000"),  # would fork until memory runs out
        ("SUPPRESS_SERVER_PORT", "70000"),
        ("SUPPRESS_SERVER_TIMEOUT", "0"),
    ],
)
def test_server_numbers_out_of_range_are_refused_at_start(
    tmp_path: Path, name: str, bad: str
) -> None:
    env = {**base_env(), "SUPPRESS_INSTANCE_DIR": str(tmp_path), name: bad}
    with pytest.raises(ConfigError, match=name.removeprefix("SUPPRESS_SERVER_").lower()):
        config.load(env=env)
