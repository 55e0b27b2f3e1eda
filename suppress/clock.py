"""The one clock. Every "now" the service decides by comes from here, so a test that moves
time (clock.utcnow patched) moves it for the gate, the audit trail and the jobs alike.

Durations inside one process (leases' waits, the secrets recheck, rate of progress) use
time.monotonic, which no wall-clock step can disturb.
"""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    """Naive UTC now: every timestamp column holds UTC without a zone."""
    return datetime.now(UTC).replace(tzinfo=None)


def now() -> datetime:
    """Aware UTC now, the same instant as utcnow()."""
    return utcnow().replace(tzinfo=UTC)


def naive_utc(moment: datetime) -> datetime:
    """An aware datetime as the naive UTC the columns hold."""
    return moment.astimezone(UTC).replace(tzinfo=None)
