"""End to end: `suppress serve` as a subprocess, real HTTP, the CLI against the same database."""

from __future__ import annotations

import requests

from .conftest import LiveServer


def test_served_gate_records_and_checks_over_http(live_server: LiveServer) -> None:
    created = live_server.cli("keys", "create", "--name", "e2e", "--role", "admin")
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip().splitlines()[-1]
    assert token.startswith("sk_")
    headers = {"Authorization": f"Bearer {token}"}
    url = live_server.url

    health = requests.get(url + "/healthz", timeout=5).json()
    assert health["status"] == "ok" and health["reconcile"]["stale"] is True
    ready = requests.get(url + "/readyz", timeout=5)
    assert ready.status_code == 200 and ready.json()["ready"] is True

    add = requests.post(
        url + "/v1/suppressions",
        headers=headers,
        timeout=5,
        json={"email": "E2E.Person+x@Example.se", "list": "news", "reason": "unsubscribe"},
    )
    assert add.status_code == 201
    verdict = requests.post(
        url + "/v1/check",
        headers=headers,
        timeout=5,
        json={"email": "e2e.person@example.se", "list": "news"},
    ).json()
    assert verdict["allowed"] is False

    # The CLI sees the same database the server wrote.
    cli = live_server.cli("check", "e2e.person@example.se", "--list", "news")
    assert cli.returncode == 1 and "suppressed" in cli.stdout

    bad = requests.post(
        url + "/v1/check", headers=headers, timeout=5, data="{", params=None, json=None
    )
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_request"
    assert bad.headers["X-Content-Type-Options"] == "nosniff"

    # Over the 1 MiB cap: 413 whether the body says its length or comes chunked.
    big = b'{"email": "' + b"a" * (2 << 20) + b'@example.se", "list": "news"}'
    chunked = (big[i : i + 65536] for i in range(0, len(big), 65536))
    for body in (big, chunked):
        refused = requests.post(
            url + "/v1/check",
            headers={**headers, "Content-Type": "application/json"},
            data=body,
            timeout=30,
        )
        assert refused.status_code == 413
        assert refused.json()["error"]["code"] == "payload_too_large"
    # A chunked body of exactly the cap is taken, as it is with its length given.
    head = b'{"email": "e2e.person@example.se", "list": "news", "pad": "'
    exact = head + b"x" * ((1 << 20) - len(head) - 2) + b'"}'
    assert len(exact) == 1 << 20
    taken = requests.post(
        url + "/v1/check",
        headers={**headers, "Content-Type": "application/json"},
        data=(exact[i : i + 65536] for i in range(0, len(exact), 65536)),
        timeout=30,
    )
    assert taken.status_code == 200 and taken.json()["allowed"] is False
    assert live_server.stop() == 0
