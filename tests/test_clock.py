"""One clock: every "now" the service records or decides by comes from suppress.clock."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from suppress import clock
from suppress.models import AuditEvent, Suppression
from suppress.runtime import Runtime

from .conftest import bearer

PACKAGE = Path(clock.__file__).resolve().parent
# Wall-clock reads allowed outside clock.py: APScheduler's first fire time in the
# scheduler's own zone, and the rate limiter's reset time (its storage counts in epoch s).
ALLOWED = {
    ("scheduler.py", "datetime.now(schedule.timezone)"),
    ("ratelimit.py", "time.time()"),
}
READS = re.compile(r"datetime\.now\([^)]*\)|datetime\.utcnow\(\)|time\.time\(\)|date\.today\(\)")


def test_nothing_but_the_clock_reads_the_wall_clock() -> None:
    found = {
        (path.name, match.group(0))
        for path in PACKAGE.rglob("*.py")
        if path.name != "clock.py"
        for match in READS.finditer(path.read_text("utf-8"))
    }
    assert found == ALLOWED


def test_the_gate_and_the_trail_read_the_same_clock(
    client: FlaskClient, tokens: dict[str, str], rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    moment = datetime(2031, 5, 17, 8, 30, 0)
    monkeypatch.setattr(clock, "utcnow", lambda: moment)
    body = {"email": "kim@example.se", "list": "news", "reason": "unsubscribe"}
    added = client.post("/v1/suppressions", json=body, headers=bearer(tokens["recorder"]))
    assert added.status_code == 201
    assert added.get_json()["suppression"]["created_at"] == "2031-05-17T08:30:00Z"
    check = client.post(
        "/v1/check",
        json={"email": "kim@example.se", "list": "news"},
        headers=bearer(tokens["mailer"]),
    )
    assert check.get_json()["suppressions"][0]["since"] == "2031-05-17T08:30:00Z"
    with rt.db.begin(write=False) as session:
        row = session.scalars(select(Suppression)).one()
        event = session.scalars(select(AuditEvent).where(AuditEvent.action == "add")).one()
    assert row.created_at == moment and event.at == moment
