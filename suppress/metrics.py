"""Prometheus metrics: verdicts, request latency, suppressions by reason, the verified audit
head, the data-subject requests' clock; gunicorn-aware."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import UTC
from typing import Any

from flask import Blueprint, Flask, Response, current_app, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import REGISTRY, Collector
from sqlalchemy import func, select

from . import clock, jobs, rights
from .contract import Answer, Operation, operation
from .errors import SuppressError
from .models import JobRun, Suppression

bp = Blueprint("metrics", __name__)

CHECKS = Counter("suppress_checks", "Single checks answered, by verdict.", ["verdict"])
FILTERED = Counter(
    "suppress_filter_addresses", "Addresses answered by bulk filters, by verdict.", ["verdict"]
)
WRITES = Counter("suppress_suppression_writes", "Suppressions added or removed.", ["action"])
WEBHOOK_REQUESTS = Counter(
    "suppress_webhook_requests",
    "Webhook deliveries by provider and outcome: accepted, refused (signature or "
    "credentials), malformed (body), failed (database), confirmed (SNS subscription).",
    ["provider", "outcome"],
)
WEBHOOK_EVENTS = Counter(
    "suppress_webhook_events",
    "What accepted webhook deliveries asked for, by provider and result: received, added, "
    "existing, duplicate, ignored, invalid.",
    ["provider", "result"],
)
LATENCY = Histogram(
    "suppress_request_duration_seconds",
    "Request latency by route and status.",
    ["route", "method", "status"],
    buckets=(0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 60),
)


def verdict(allowed: bool, *, bulk: int = 0) -> None:
    """Count one check verdict (or `bulk` filter answers of one verdict)."""
    label = "allowed" if allowed else "suppressed"
    if bulk:
        FILTERED.labels(label).inc(bulk)
    else:
        CHECKS.labels(label).inc()


def webhook(provider: str, outcome: str, counts: dict[str, int] | None = None) -> None:
    """Count one webhook delivery, and what its events did."""
    WEBHOOK_REQUESTS.labels(provider, outcome).inc()
    for result, number in (counts or {}).items():
        if number:
            WEBHOOK_EVENTS.labels(provider, result).inc(number)


def verdict_totals(registry: CollectorRegistry) -> dict[str, dict[str, int]]:
    """Gate verdicts since the servers started, as /metrics shows them: single checks and
    bulk filter answers, each by verdict (allowed, suppressed)."""
    families = {"suppress_checks": "checks", "suppress_filter_addresses": "filtered"}
    totals = {kind: {"allowed": 0, "suppressed": 0} for kind in families.values()}
    for family in registry.collect():
        kind = families.get(family.name)
        if kind is None:
            continue
        for sample in family.samples:
            verdict = sample.labels.get("verdict")
            if sample.name.endswith("_total") and verdict in totals[kind]:
                totals[kind][verdict] += int(sample.value)
    return totals


class DatabaseCollector(Collector):
    """Gauges read from the database at scrape time (cached): suppressions by reason."""

    def __init__(self, app: Flask, ttl: float):
        self.app = app
        self.ttl = ttl
        # Never read yet: the first scrape queries, however recently the host booted.
        self._cache: tuple[float, list[Any]] = (float("-inf"), [])

    def describe(self) -> list[Any]:
        return []  # nothing to query at registration time

    def collect(self) -> Iterator[Any]:
        stamp, families = self._cache
        if time.monotonic() - stamp >= self.ttl:
            families = self._read()
            self._cache = (time.monotonic(), families)
        yield from families

    def _read(self) -> list[Any]:
        by_reason = GaugeMetricFamily(
            "suppress_suppressions", "Stored suppressions by reason.", labels=["reason"]
        )
        up = GaugeMetricFamily("suppress_database_up", "1 if the database answered the scrape.")
        runs = GaugeMetricFamily(
            "suppress_job_runs",
            "Job runs in the ledger, by job and status.",
            labels=["job", "status"],
        )
        last_ok = GaugeMetricFamily(
            "suppress_job_last_success_timestamp_seconds",
            "When each job last finished successfully (Unix time); alert on its age.",
            labels=["job"],
        )
        # The head is a label that changes once a night (each verify-audit run), not with
        # every event: a new series a day, and Prometheus keeps the heads outside the database.
        audit_events = GaugeMetricFamily(
            "suppress_audit_events",
            "Events in the audit chain when the last successful verify-audit run walked it.",
        )
        audit_head = InfoMetricFamily(
            "suppress_audit_head",
            "The audit chain head (SHA-256 hex) the last successful verify-audit run verified.",
        )
        requests_open = GaugeMetricFamily(
            "suppress_requests_open", "Data-subject requests not yet closed (overdue included)."
        )
        requests_week = GaugeMetricFamily(
            "suppress_requests_due_this_week",
            "Open data-subject requests due today or within the six days after (compliance "
            "time zone); overdue ones are not counted here.",
        )
        requests_overdue = GaugeMetricFamily(
            "suppress_requests_overdue",
            "Open data-subject requests whose due day has passed (compliance time zone): "
            "alert when above 0.",
        )
        rt = self.app.extensions["suppress"]
        today = rights.today(rt.config.settings.compliance.zone, clock.utcnow())
        try:
            with rt.db.begin(write=False) as session:
                rows = session.execute(
                    select(Suppression.reason, func.count()).group_by(Suppression.reason)
                ).all()
                run_counts = session.execute(
                    select(JobRun.job, JobRun.status, func.count()).group_by(
                        JobRun.job, JobRun.status
                    )
                ).all()
                successes = session.execute(
                    select(JobRun.job, func.max(JobRun.finished_at))
                    .where(JobRun.status == "ok")
                    .group_by(JobRun.job)
                ).all()
                verified = jobs.last_success(session, "verify-audit")
                verified_summary = dict(verified.summary) if verified is not None else {}
                register = rights.counts(session, today)
        except SuppressError:
            up.add_metric([], 0)
            return [up]
        for reason, count in rows:
            by_reason.add_metric([reason.value], count)
        for job, status, count in run_counts:
            runs.add_metric([job, status], count)
        for job, finished in successes:
            if finished is not None:
                last_ok.add_metric([job], finished.replace(tzinfo=UTC).timestamp())
        events, head = verified_summary.get("events"), verified_summary.get("head")
        if isinstance(events, int) and isinstance(head, str):
            audit_events.add_metric([], events)
            audit_head.add_metric([], {"head": head})
        requests_open.add_metric([], register.open)
        requests_week.add_metric([], register.due_this_week)
        requests_overdue.add_metric([], register.overdue)
        up.add_metric([], 1)
        return [
            by_reason,
            runs,
            last_ok,
            audit_events,
            audit_head,
            requests_open,
            requests_week,
            requests_overdue,
            up,
        ]


class _ProcessCollector(Collector):
    """This process's own counters (single-process servers, tests)."""

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        yield from REGISTRY.collect()


def _registry(app: Flask) -> CollectorRegistry:
    registry = CollectorRegistry()
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        # gunicorn workers each count on their own; the scrape sums their files.
        MultiProcessCollector(registry, path=directory)
    else:
        registry.register(_ProcessCollector())
    ttl = app.extensions["suppress"].config.settings.metrics.gauge_ttl_seconds
    registry.register(DatabaseCollector(app, ttl))
    return registry


TEXT = {"type": "string"}


@bp.get("/metrics")
@operation(
    Operation(
        "Prometheus metrics",
        {
            200: Answer(
                "Prometheus text format", media={"text/plain": {"schema": {"type": "string"}}}
            )
        },
        limited=False,
        database=False,
    )
)
def metrics() -> Response:
    registry: CollectorRegistry = current_app.extensions["suppress.metrics"]
    return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)


def init_app(app: Flask) -> None:
    """Register /metrics and the latency hooks."""
    app.extensions["suppress.metrics"] = _registry(app)
    app.register_blueprint(bp)

    @app.before_request
    def start_timer() -> None:
        g.metrics_started = time.perf_counter()

    @app.after_request
    def observe(response: Response) -> Response:
        started = g.pop("metrics_started", None)
        if started is not None:
            route = request.url_rule.rule if request.url_rule else "unmatched"
            LATENCY.labels(route, request.method, str(response.status_code)).observe(
                time.perf_counter() - started
            )
        return response
