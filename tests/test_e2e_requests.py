"""End to end: the register of data-subject requests on the installed server, over HTTP, with
the CLI on the same database; its clock shown in /healthz and /metrics."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import requests

from .conftest import LiveServer


def gauge(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} ([0-9.e+-]+)$", text, re.MULTILINE)
    assert match, f"{name} not in metrics"
    return float(match.group(1))


def test_served_register_keeps_the_clock_and_shows_what_is_overdue(
    live_server: LiveServer,
) -> None:
    created = live_server.cli("keys", "create", "--name", "dpo", "--role", "admin")
    assert created.returncode == 0, created.stderr
    headers = {"Authorization": f"Bearer {created.stdout.strip().splitlines()[-1]}"}
    url = live_server.url + "/v1"
    now = datetime.now(UTC)
    long_ago = (now - timedelta(days=70)).isoformat(timespec="seconds")

    objection = requests.post(
        url + "/requests",
        headers=headers,
        timeout=10,
        json={
            "kind": "objection",
            "received_at": long_ago,
            "reference": "DSR-E2E-1",
            "email": "Karin.Lund+news@Example.se",
            "channel": "phone",
            "note": "Called the switchboard.",
        },
    )
    assert objection.status_code == 201, objection.text
    made = objection.json()
    assert made["overdue"] is True and made["suppression"]["list"] == "global"
    access = requests.post(
        url + "/requests",
        headers=headers,
        timeout=10,
        json={"kind": "access", "received_at": now.isoformat(), "reference": "DSR-E2E-2"},
    )
    assert access.status_code == 201 and access.json()["overdue"] is False

    verdict = requests.post(
        url + "/check",
        headers=headers,
        timeout=10,
        json={"email": "karin.lund@example.se", "list": "news"},
    ).json()
    assert verdict["allowed"] is False and verdict["suppressions"][0]["reason"] == "objection"

    health = requests.get(live_server.url + "/healthz", timeout=10)
    assert health.status_code == 200
    register = health.json()["requests"]
    assert (register["open"], register["overdue"], register["late"]) == (2, 1, True)
    metrics = requests.get(live_server.url + "/metrics", timeout=10).text
    assert gauge(metrics, "suppress_requests_open") == 2
    assert gauge(metrics, "suppress_requests_overdue") == 1

    overdue = requests.get(url + "/requests?status=overdue", headers=headers, timeout=10).json()
    assert [r["id"] for r in overdue["requests"]] == [made["id"]]
    too_late = requests.post(
        url + f"/requests/{made['id']}/extend",
        headers=headers,
        timeout=10,
        json={"reason": "Archive search", "notified_at": now.isoformat()},
    )
    assert too_late.status_code == 422
    assert too_late.json()["error"]["code"] == "notice_too_late"

    listed = live_server.cli("requests", "list", "--status", "open")
    assert listed.returncode == 0, listed.stderr
    assert "\tOVERDUE\t" in listed.stdout and "DSR-E2E-2\topen\t" in listed.stdout
    closed = live_server.cli("requests", "close", str(made["id"]), "--outcome", "fulfilled")
    assert closed.returncode == 0, closed.stderr
    health = requests.get(live_server.url + "/healthz", timeout=10).json()["requests"]
    assert (health["open"], health["overdue"], health["late"]) == (1, 0, False)

    found = requests.post(
        url + "/lookup", headers=headers, timeout=10, json={"email": "karin.lund@example.se"}
    ).json()
    assert [(r["id"], r["status"]) for r in found["requests"]] == [(made["id"], "closed")]
    assert live_server.stop() == 0
    log = live_server.log_path.read_text().lower()
    assert "karin" not in log and "example.se" not in log
