"""Prometheus metrics: verdicts, latency, suppressions by reason; summed across gunicorn workers."""

from __future__ import annotations

import re

import pytest
import requests
from flask.testing import FlaskClient

from suppress import jobs
from suppress.runtime import Runtime

from .conftest import LiveServer, bearer


@pytest.fixture
def overrides(db_url: str, tmp_path) -> dict:  # type: ignore[no-untyped-def, type-arg]
    from .conftest import settings

    return settings(db_url, tmp_path, metrics={"gauge_ttl_seconds": 0})


def value(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} ([0-9.e+]+)$", text, re.MULTILINE)
    assert match, f"{name} not in metrics"
    return float(match.group(1))


def test_metrics_count_verdicts_and_suppressions_by_reason(
    client: FlaskClient, tokens: dict[str, str]
) -> None:
    before = client.get("/metrics").get_data(as_text=True)
    suppressed_before = (
        value(before, 'suppress_checks_total{verdict="suppressed"}')
        if ('suppress_checks_total{verdict="suppressed"}' in before)
        else 0.0
    )
    client.post(
        "/v1/suppressions",
        headers=bearer(tokens["recorder"]),
        json={"email": "m@example.se", "list": "news", "reason": "complaint"},
    )
    client.post(
        "/v1/check",
        headers=bearer(tokens["mailer"]),
        json={"email": "m@example.se", "list": "news"},
    )
    response = client.get("/metrics")
    assert response.status_code == 200 and response.mimetype == "text/plain"
    text = response.get_data(as_text=True)
    assert value(text, 'suppress_checks_total{verdict="suppressed"}') == suppressed_before + 1
    assert value(text, 'suppress_suppressions{reason="complaint"}') == 1
    assert value(text, "suppress_database_up") == 1
    assert (
        'suppress_request_duration_seconds_bucket{le="0.005",method="POST",route="/v1/check",status="200"}'
        in text
    )


def test_metrics_are_summed_across_workers(live_server: LiveServer) -> None:
    token = live_server.cli("keys", "create", "--name", "m", "--role", "mailer").stdout.split()[-1]
    session = requests.Session()
    for n in range(20):
        session.post(
            live_server.url + "/v1/check",
            headers=bearer(token),
            timeout=10,
            json={"email": f"n{n}@example.se", "list": "news"},
        )
    text = requests.get(live_server.url + "/metrics", timeout=10).text
    assert value(text, 'suppress_checks_total{verdict="allowed"}') == 20
    assert "suppress_suppressions" in text or "suppress_database_up 1.0" in text


def test_metrics_show_job_runs_and_last_success(client: FlaskClient, rt) -> None:  # type: ignore[no-untyped-def]
    from datetime import datetime

    from suppress.models import JobRun

    with rt.db.begin() as session:
        session.add(
            JobRun(
                job="reconcile",
                run_key="2026-11-24",
                started_at=datetime(2026, 11, 24, 1, 30),
                finished_at=datetime(2026, 11, 24, 1, 31),
                status="ok",
                summary={},
            )
        )
        session.add(
            JobRun(
                job="reconcile",
                run_key="2026-11-25",
                started_at=datetime(2026, 11, 25, 1, 30),
                status="failed",
                summary={},
            )
        )
    text = client.get("/metrics").get_data(as_text=True)
    assert value(text, 'suppress_job_runs{job="reconcile",status="ok"}') == 1
    assert value(text, 'suppress_job_runs{job="reconcile",status="failed"}') == 1
    assert (
        value(text, 'suppress_job_last_success_timestamp_seconds{job="reconcile"}')
        == datetime(2026, 11, 24, 1, 31, tzinfo=__import__("datetime").UTC).timestamp()
    )


def test_metrics_export_the_last_verified_audit_head_and_its_event_count(
    client: FlaskClient, rt: Runtime
) -> None:

    def heads(text: str) -> list[str]:
        return re.findall(r'^suppress_audit_head_info\{head="([0-9a-f]{64})"\} 1\.0$', text, re.M)

    assert heads(client.get("/metrics").get_data(as_text=True)) == []  # nothing verified yet
    assert jobs.run_job(rt, "verify-audit", "2026-11-24", wait=5).status == "ok"
    outcome = jobs.run_job(rt, "verify-audit", "2026-11-25", wait=5)
    summary = outcome.run["summary"]
    assert summary["events"] >= 1
    text = client.get("/metrics").get_data(as_text=True)
    assert value(text, "suppress_audit_events") == summary["events"]
    assert heads(text) == [summary["head"]]
