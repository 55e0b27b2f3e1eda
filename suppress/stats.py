"""Figures for the console's overview, read from the database: opt-outs per day by reason and
by source, suppressions by reason, reconcile runs and their drift."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from . import jobs
from .models import AuditEvent, Suppression

# The audit actions that put someone on the list (a new row, or an expired one renewed).
OPT_OUT_ACTIONS = ("add", "renew")
UTC = ZoneInfo("UTC")


@dataclass(frozen=True)
class Daily:
    """Opt-outs per local day, by reason and by source, over a run of days."""

    days: tuple[date, ...]
    by_reason: dict[str, list[int]]
    by_source: dict[str, list[int]]

    @property
    def total(self) -> int:
        return sum(sum(counts) for counts in self.by_reason.values())


def _hour(session: Session) -> Any:
    """The hour an event happened, as text 'YYYY-MM-DD HH' (UTC), in either dialect."""
    if session.get_bind().dialect.name == "postgresql":
        return func.to_char(func.date_trunc("hour", AuditEvent.at), "YYYY-MM-DD HH24")
    return func.strftime("%Y-%m-%d %H", AuditEvent.at)


def opt_outs_per_day(session: Session, *, now: datetime, days: int, zone: ZoneInfo) -> Daily:
    """Opt-outs recorded on each of the last `days` local days (today included).

    Counted from the audit trail, not from the list: a suppression lifted later still shows
    on the day it was made. Grouped by UTC hour in the database (a few thousand rows at
    most, however many events an import wrote), then by day in the console's time zone.
    """
    today = now.replace(tzinfo=UTC).astimezone(zone).date()
    first = today - timedelta(days=days - 1)
    since = datetime.combine(first, datetime.min.time(), zone).astimezone(UTC).replace(tzinfo=None)
    hour = _hour(session)
    rows = session.execute(
        select(hour, AuditEvent.reason, AuditEvent.source, func.count())
        .where(AuditEvent.action.in_(OPT_OUT_ACTIONS), AuditEvent.at >= since)
        .group_by(hour, AuditEvent.reason, AuditEvent.source)
    ).all()
    span = tuple(first + timedelta(days=n) for n in range(days))
    index = {day: n for n, day in enumerate(span)}
    by_reason: dict[str, list[int]] = {}
    by_source: dict[str, list[int]] = {}
    for stamp, reason, source, count in rows:
        moment = datetime.strptime(str(stamp), "%Y-%m-%d %H").replace(tzinfo=UTC)
        slot = index.get(moment.astimezone(zone).date())
        if slot is None:
            continue
        by_reason.setdefault(reason or "unknown", [0] * days)[slot] += count
        by_source.setdefault(source or "unknown", [0] * days)[slot] += count
    return Daily(span, by_reason, by_source)


def suppressions_by_reason(session: Session) -> dict[str, int]:
    """Stored suppressions per reason."""
    rows = session.execute(
        select(Suppression.reason, func.count()).group_by(Suppression.reason)
    ).all()
    return {reason.value: count for reason, count in rows}


@dataclass(frozen=True)
class ReconcileRun:
    """One reconcile run as the overview draws it: what the tools had that the list lacked
    (added) and the CRM contacts found still in a marketing segment (to remove)."""

    id: int
    started_at: str
    status: str
    added: int
    to_remove: int
    errors: int


def reconcile_runs(session: Session, *, limit: int = 30) -> list[ReconcileRun]:
    """The latest reconcile runs, oldest first."""
    runs = jobs.list_runs(session, job="reconcile", limit=limit)
    found = []
    for run in reversed(runs):
        summary = run["summary"] or {}
        sources = summary.get("sources") or {}
        audits = summary.get("audits") or []
        found.append(
            ReconcileRun(
                id=run["id"],
                started_at=run["started_at"],
                status=run["status"],
                added=sum(int(s.get("added", 0)) for s in sources.values()),
                to_remove=sum(int(a.get("remove", 0)) for a in audits),
                errors=len(summary.get("errors") or []),
            )
        )
    return found


def top(series: dict[str, list[int]], keep: int, other: str) -> dict[str, list[int]]:
    """The `keep` largest series by total, the rest summed under `other`."""
    ranked = Counter({name: sum(values) for name, values in series.items()}).most_common()
    kept = {name: series[name] for name, _total in ranked[:keep]}
    rest = [series[name] for name, _total in ranked[keep:]]
    if rest:
        kept[other] = [sum(values) for values in zip(*rest, strict=True)]
    return kept
