"""Prometheus metrics: verdicts, latency, suppressions by reason; summed across gunicorn workers.

Counters live for the whole test process, so the tests compare scrapes taken before and after
what they do; gauges are read from the database and compared with what the test wrote.
"""

from __future__ import annotations

import re
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from flask.testing import FlaskClient
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from suppress import jobs
from suppress.errors import Unavailable
from suppress.models import JobRun
from suppress.runtime import Runtime

from .conftest import LiveServer, bearer, settings

CHECK_LATENCY = '{method="POST",route="/v1/check",status="%s"}'


@pytest.fixture
def overrides(db_url: str, tmp_path: Path) -> dict[str, Any]:
    return settings(db_url, tmp_path, metrics={"gauge_ttl_seconds": 0})


def value(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} ([0-9.e+-]+)$", text, re.MULTILINE)
    assert match, f"{name} not in metrics"
    return float(match.group(1))


def value_or_zero(text: str, name: str) -> float:
    """A labelled counter appears only once that label has been counted."""
    return value(text, name) if re.search(rf"^{re.escape(name)} ", text, re.M) else 0.0


def scrape(client: FlaskClient) -> str:
    response = client.get("/metrics")
    assert response.status_code == 200 and response.mimetype == "text/plain"
    return response.get_data(as_text=True)


def deltas(before: str, after: str, names: list[str]) -> dict[str, float]:
    return {n: value_or_zero(after, n) - value_or_zero(before, n) for n in names}


def test_checks_are_counted_by_verdict(client: FlaskClient, tokens: dict[str, str]) -> None:
    mailer, recorder = bearer(tokens["mailer"]), bearer(tokens["recorder"])
    added = {"email": "m@example.se", "list": "news", "reason": "complaint"}
    assert client.post("/v1/suppressions", headers=recorder, json=added).status_code == 201
    names = [
        'suppress_checks_total{verdict="allowed"}',
        'suppress_checks_total{verdict="suppressed"}',
        'suppress_filter_addresses_total{verdict="allowed"}',
        'suppress_filter_addresses_total{verdict="suppressed"}',
    ]
    before = scrape(client)
    for email in ("m@example.se", "free@example.se", "other@example.se"):
        check = client.post("/v1/check", headers=mailer, json={"email": email, "list": "news"})
        assert check.status_code == 200
    # A refused check (bad address) is no verdict.
    bad = client.post("/v1/check", headers=mailer, json={"email": "nope", "list": "news"})
    assert bad.status_code == 422
    assert deltas(before, scrape(client), names) == dict(zip(names, [2, 1, 0, 0], strict=True))


def test_bulk_filters_count_each_address_by_verdict(
    client: FlaskClient, tokens: dict[str, str]
) -> None:
    mailer, recorder = bearer(tokens["mailer"]), bearer(tokens["recorder"])
    for email in ("a@example.se", "b@example.se"):
        added = {"email": email, "list": "news", "reason": "unsubscribe"}
        assert client.post("/v1/suppressions", headers=recorder, json=added).status_code == 201
    emails = ["a@example.se", "b@example.se", "c@example.se", "d@example.se", "e@example.se"]
    names = [
        'suppress_filter_addresses_total{verdict="allowed"}',
        'suppress_filter_addresses_total{verdict="suppressed"}',
        'suppress_checks_total{verdict="allowed"}',
        'suppress_checks_total{verdict="suppressed"}',
    ]
    before = scrape(client)
    as_json = client.post("/v1/filter", headers=mailer, json={"list": "news", "emails": emails})
    assert as_json.status_code == 200
    middle = scrape(client)
    assert deltas(before, middle, names) == dict(zip(names, [3, 2, 0, 0], strict=True))
    streamed = client.post(
        "/v1/filter?list=news",
        headers=mailer,
        data="\n".join(emails[:4]).encode(),
        content_type="text/plain",
    )
    assert streamed.status_code == 200
    assert deltas(middle, scrape(client), names) == dict(zip(names, [2, 2, 0, 0], strict=True))


def test_request_latency_is_observed_by_route_method_and_status(
    client: FlaskClient, tokens: dict[str, str]
) -> None:
    body = {"email": "m@example.se", "list": "news"}
    ok, refused = CHECK_LATENCY % "200", CHECK_LATENCY % "401"
    names = [
        f"suppress_request_duration_seconds_count{ok}",
        f"suppress_request_duration_seconds_count{refused}",
        f'suppress_request_duration_seconds_bucket{{le="+Inf",{ok[1:]}',
    ]
    before = scrape(client)
    for _ in range(3):
        check = client.post("/v1/check", headers=bearer(tokens["mailer"]), json=body)
        assert check.status_code == 200
    assert client.post("/v1/check", headers=bearer("sk_wrong"), json=body).status_code == 401
    after = scrape(client)
    assert deltas(before, after, names) == dict(zip(names, [3, 1, 3], strict=True))
    took = value(after, f"suppress_request_duration_seconds_sum{ok}") - value_or_zero(
        before, f"suppress_request_duration_seconds_sum{ok}"
    )
    assert took > 0


def test_suppressions_gauge_follows_the_table_by_reason(
    client: FlaskClient, tokens: dict[str, str]
) -> None:
    recorder, admin = bearer(tokens["recorder"]), bearer(tokens["admin"])
    assert "suppress_suppressions{" not in scrape(client)  # nothing stored yet
    for email, reason in [
        ("a@example.se", "complaint"),
        ("b@example.se", "unsubscribe"),
        ("c@example.se", "unsubscribe"),
        ("c@example.se", "unsubscribe"),  # the same opt-out again: still one row
    ]:
        body = {"email": email, "list": "news", "reason": reason}
        assert client.post("/v1/suppressions", headers=recorder, json=body).status_code < 300
    text = scrape(client)
    assert value(text, 'suppress_suppressions{reason="complaint"}') == 1
    assert value(text, 'suppress_suppressions{reason="unsubscribe"}') == 2
    assert value(text, "suppress_database_up") == 1
    removal = {
        "email": "b@example.se",
        "list": "news",
        "reason": "resubscribed",
        "evidence": "consent form 2026-77",
    }
    assert client.delete("/v1/suppressions", headers=admin, json=removal).status_code == 200
    assert value(scrape(client), 'suppress_suppressions{reason="unsubscribe"}') == 1


class Clock:
    """suppress.metrics' time module, with a monotonic clock the test moves."""

    def __init__(self, now: float) -> None:
        self.now = now
        self.perf_counter = time.perf_counter

    def monotonic(self) -> float:
        return self.now


def test_database_gauges_are_read_at_once_then_cached_for_their_ttl(
    db_url: str, tmp_path: Path, tokens: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from suppress import create_app, metrics

    clock = Clock(now=5.0)  # a host that booted seconds ago
    monkeypatch.setattr(metrics, "time", clock)
    cached = create_app(settings(db_url, tmp_path, metrics={"gauge_ttl_seconds": 60}))
    client = cached.test_client()
    recorder = bearer(tokens["recorder"])

    def add(email: str) -> None:
        body = {"email": email, "list": "news", "reason": "complaint"}
        assert client.post("/v1/suppressions", headers=recorder, json=body).status_code == 201

    try:
        add("a@example.se")
        assert value(scrape(client), 'suppress_suppressions{reason="complaint"}') == 1
        add("b@example.se")
        clock.now += 59  # within the TTL a scrape does not query the database again
        assert value(scrape(client), 'suppress_suppressions{reason="complaint"}') == 1
        clock.now += 1
        assert value(scrape(client), 'suppress_suppressions{reason="complaint"}') == 2
    finally:
        cached.extensions["suppress"].db.dispose()


def test_a_database_that_does_not_answer_shows_as_down(
    client: FlaskClient, rt: Runtime, tokens: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    body = {"email": "a@example.se", "list": "news", "reason": "complaint"}
    added = client.post("/v1/suppressions", headers=bearer(tokens["recorder"]), json=body)
    assert added.status_code == 201
    assert value(scrape(client), "suppress_database_up") == 1

    def down(*_args: Any, **_kwargs: Any) -> Any:
        raise Unavailable("database unavailable: OperationalError")

    monkeypatch.setattr(rt.db, "begin", down)
    text = scrape(client)
    assert value(text, "suppress_database_up") == 0
    assert "suppress_suppressions{" not in text  # no stale figures beside a down database


def per_worker_checks(metrics_dir: Path, scratch: Path) -> list[float]:
    """Each worker's own count of allowed checks, read from its file in the metrics folder."""
    counts = []
    for db_file in sorted(metrics_dir.glob("counter_*.db")):
        alone = scratch / db_file.stem
        alone.mkdir(parents=True)
        shutil.copy(db_file, alone / db_file.name)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(alone))
        text = generate_latest(registry).decode()
        counts.append(value_or_zero(text, 'suppress_checks_total{verdict="allowed"}'))
    return counts


@pytest.mark.db_agnostic
def test_metrics_are_summed_across_workers(empty_db_url: str, tmp_path: Path) -> None:
    # The server keeps its metrics folder under TMPDIR: here, where the test can read it.
    (tmp_path / "tmp").mkdir()
    env = {"TMPDIR": str(tmp_path / "tmp")}
    server = LiveServer(empty_db_url, tmp_path, workers=2, extra_env=env)
    try:
        (metrics_dir,) = (tmp_path / "tmp").glob("suppress-metrics-*")
        token = server.cli("keys", "create", "--name", "m", "--role", "mailer").stdout.split()[-1]
        admin = server.cli("keys", "create", "--name", "a", "--role", "admin").stdout.split()[-1]
        added = requests.post(
            server.url + "/v1/suppressions",
            headers=bearer(admin),
            json={"email": "gone@example.se", "list": "news", "reason": "complaint"},
            timeout=10,
        )
        assert added.status_code == 201
        # Each request is a connection of its own; go on until both workers have counted.
        sent = 0
        while sent < 400:
            check = requests.post(
                server.url + "/v1/check",
                headers=bearer(token),
                json={"email": f"n{sent}@example.se", "list": "news"},
                timeout=10,
            )
            assert check.status_code == 200 and check.json()["allowed"] is True
            sent += 1
            if sent % 10 == 0 and len(per_worker_checks(metrics_dir, tmp_path / f"s{sent}")) > 1:
                break
        counts = per_worker_checks(metrics_dir, tmp_path / "final")
        assert len(counts) == 2 and all(counts), counts
        for _ in range(2):  # whichever worker answers the scrape sums both
            text = requests.get(server.url + "/metrics", timeout=10).text
            assert value(text, 'suppress_checks_total{verdict="allowed"}') == sent
            assert value(text, 'suppress_suppressions{reason="complaint"}') == 1
            assert value(text, "suppress_database_up") == 1
    finally:
        server.stop()


def test_metrics_show_job_runs_and_last_success(client: FlaskClient, rt: Runtime) -> None:
    def run(day: int, finished_minute: int | None, status: str) -> JobRun:
        return JobRun(
            job="reconcile",
            run_key=f"2026-11-{day}",
            started_at=datetime(2026, 11, day, 1, 30),
            finished_at=None
            if finished_minute is None
            else datetime(2026, 11, day, 1, finished_minute),
            status=status,
            summary={},
        )

    with rt.db.begin() as session:
        # The last run that finished is no success: the last-success gauge must not move to it.
        session.add_all([run(23, 31, "ok"), run(24, 32, "ok"), run(25, 33, "failed")])
        session.add(run(26, None, "running"))
    text = scrape(client)
    assert value(text, 'suppress_job_runs{job="reconcile",status="ok"}') == 2
    assert value(text, 'suppress_job_runs{job="reconcile",status="failed"}') == 1
    assert value(text, 'suppress_job_runs{job="reconcile",status="running"}') == 1
    assert (
        value(text, 'suppress_job_last_success_timestamp_seconds{job="reconcile"}')
        == datetime(2026, 11, 24, 1, 32, tzinfo=UTC).timestamp()
    )


def test_metrics_export_the_last_verified_audit_head_and_its_event_count(
    client: FlaskClient, rt: Runtime
) -> None:
    def heads(text: str) -> list[str]:
        return re.findall(r'^suppress_audit_head_info\{head="([0-9a-f]{64})"\} 1\.0$', text, re.M)

    assert heads(scrape(client)) == []  # nothing verified yet
    assert jobs.run_job(rt, "verify-audit", "2026-11-24", wait=5).status == "ok"
    outcome = jobs.run_job(rt, "verify-audit", "2026-11-25", wait=5)
    summary = outcome.run["summary"]
    assert summary["events"] >= 1
    text = scrape(client)
    assert value(text, "suppress_audit_events") == summary["events"]
    assert heads(text) == [summary["head"]]
