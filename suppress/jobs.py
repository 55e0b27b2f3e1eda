"""The jobs, their leases and the run ledger: each job runs once per run key.

A run first takes the job's lease (a PostgreSQL advisory lock, or a `job_lease` row with an
expiry on SQLite), then claims `(job, run_key)` in `job_run`. Whoever holds the lease and
finds the claim finished exits quietly; a claim still marked running under a lease nobody
holds belonged to a killed run, which is re-run in place (every job is idempotent). The
scheduler (scheduler.py), the CLI and the API all run jobs through `run_job`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, select, text, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from . import audit, clock, idempotency, inbound, reconcile, suppressions
from .errors import ErrorCode, NotFound, SuppressError
from .models import JobLease, JobRun

if TYPE_CHECKING:
    from .runtime import Runtime

log = logging.getLogger("suppress.jobs")
# Every job by name: the scheduler's, the CLI's and the API's (the document lists them).
NAMES = ("reconcile", "expire", "verify-audit")
# Jobs claimed once per local night; expire runs hourly.
NIGHTLY = ("reconcile", "verify-audit")
STALE_RECONCILE = timedelta(hours=26)
# Set on SIGTERM: runs still waiting for a lease give up instead of delaying the exit.
stopping = threading.Event()


class JobBusy(SuppressError):
    """The job's lease stayed taken for as long as we were willing to wait (409)."""

    code = ErrorCode.job_busy
    status = 409


def manual_key(now: datetime) -> str:
    """A manual run's own key, never a night's."""
    return f"manual:{now:%Y%m%dT%H%M%S}Z:{uuid.uuid4().hex[:8]}"


# --- leases ----------------------------------------------------------------------------------


def _owner() -> str:
    return f"{socket.gethostname()[:64]}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


def _pg_key(job: str, schema: str) -> int:
    # Advisory locks are per database: the schema keeps two deployments sharing one apart.
    digest = hashlib.sha256(f"suppress-job:{schema}:{job}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class Lease:
    """Exclusive right to run one job, across processes and hosts."""

    def __init__(self, rt: Runtime, job: str, *, seconds: int, clock: Callable[[], datetime]):
        self.rt, self.job, self.seconds, self.clock = rt, job, seconds, clock
        self.owner = _owner()
        self._conn: Connection | None = None
        self._key = 0
        self.held = False

    def _try(self) -> bool:
        if not self.rt.db.is_sqlite:
            if self._conn is None:
                self._conn = self.rt.db.engine.connect()
                schema = self._conn.execute(text("SELECT current_schema()")).scalar()
                self._key = _pg_key(self.job, str(schema))
            got = bool(
                self._conn.execute(
                    text("SELECT pg_try_advisory_lock(:k)"), {"k": self._key}
                ).scalar()
            )
            self._conn.commit()
            return got
        now = self.clock()
        with self.rt.db.begin() as session:
            row = session.get(JobLease, self.job)
            if row is None:
                session.add(
                    JobLease(
                        job=self.job,
                        owner=self.owner,
                        acquired_at=now,
                        lease_until=now + timedelta(seconds=self.seconds),
                    )
                )
                return True
            if row.owner != self.owner and row.lease_until > now:
                return False
            row.owner, row.acquired_at = self.owner, now
            row.lease_until = now + timedelta(seconds=self.seconds)
            return True

    def acquire(self, wait: float) -> bool:
        """Take the lease, waiting up to `wait` seconds for its holder to finish."""
        deadline = time.monotonic() + wait
        delay = 0.05
        while True:
            try:
                if self._try():
                    self.held = True
                    return True
            except (SuppressError, SQLAlchemyError) as exc:  # busy or a lost connection
                log.warning("lease %s: %s", self.job, type(exc).__name__)
                self._close()
            if time.monotonic() >= deadline or stopping.is_set():
                self._close()
                return False
            stopping.wait(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 2, 1.0)

    def renew(self, run_id: int | None) -> None:
        """Push the expiry forward (SQLite lease row, and the run's lease_until for display)."""
        until = self.clock() + timedelta(seconds=self.seconds)
        with self.rt.db.begin() as session:
            if self.rt.db.is_sqlite:
                row = session.get(JobLease, self.job)
                if row is None or row.owner != self.owner:
                    log.error("lease %s was lost to another process", self.job)
                    return
                row.lease_until = until
            if run_id is not None:
                run = session.get(JobRun, run_id)
                if run is not None and run.status == "running":
                    run.lease_until = until

    def release(self) -> None:
        """Give the lease up (a killed holder's lease lapses by itself)."""
        if not self.held:
            return
        self.held = False
        try:
            if self.rt.db.is_sqlite:
                with self.rt.db.begin() as session:
                    row = session.get(JobLease, self.job)
                    if row is not None and row.owner == self.owner:
                        session.delete(row)
            elif self._conn is not None:
                self._conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self._key})
                self._conn.commit()
        except (SuppressError, SQLAlchemyError) as exc:
            log.warning("lease %s not released (it lapses): %s", self.job, type(exc).__name__)
        finally:
            self._close()

    def _close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None


class _Heartbeat(threading.Thread):
    def __init__(self, lease: Lease, run_id: int):
        super().__init__(name=f"lease-{lease.job}", daemon=True)
        self.lease, self.run_id = lease, run_id
        self.stop = threading.Event()

    def run(self) -> None:
        interval = max(self.lease.seconds / 3, 0.2)
        while not self.stop.wait(interval):
            try:
                self.lease.renew(self.run_id)
            except SuppressError as exc:
                log.warning("lease %s not renewed: %s", self.lease.job, exc.message)


# --- job bodies --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Context:
    """What a job body gets: the runtime, its run key and the injected clock (naive UTC)."""

    rt: Runtime
    run_key: str
    now: datetime


def _reconcile(ctx: Context) -> tuple[bool, dict[str, Any]]:
    settings = reconcile.settings_from(ctx.rt.config.settings.reconcile, ctx.rt.config.instance_dir)
    report = reconcile.reconcile(
        ctx.rt.db.begin, ctx.rt.ring, settings, now=ctx.now, run_key=ctx.run_key
    )
    return report.ok, report.summary()


def _expire(ctx: Context) -> tuple[bool, dict[str, Any]]:
    with ctx.rt.db.begin() as session:
        report = suppressions.expire(session, now=ctx.now)
    with ctx.rt.db.begin() as session:
        purged = idempotency.purge(session, ctx.rt.config.idempotency_hours, now=ctx.now)
        events = inbound.purge(session, now=ctx.now)
    return True, {**report.summary(), "idempotency_purged": purged, "webhook_events_purged": events}


def _verify_audit(ctx: Context) -> tuple[bool, dict[str, Any]]:
    # The previous good run's head anchors this one: a chain cut at its end still links,
    # and only a head seen earlier shows that events are gone.
    with ctx.rt.db.begin(write=False) as session:
        anchor = verified_head(session)
        result = audit.verify(session, anchor=anchor)
    summary = result.to_dict()
    summary["anchor"] = anchor.hex() if anchor is not None else None
    summary["errors"] = [] if result.ok else [f"audit chain broken: {result.problem}"]
    return result.ok, summary


BODIES: dict[str, Callable[[Context], tuple[bool, dict[str, Any]]]] = {
    "reconcile": _reconcile,
    "expire": _expire,
    "verify-audit": _verify_audit,
}


# --- runs -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What became of a request to run a job under a run key."""

    job: str
    run_key: str
    status: str  # ok | failed | already_done | busy
    run: dict[str, Any] = field(default_factory=dict)


def describe(run: JobRun, now: datetime) -> dict[str, Any]:
    """A ledger row as JSON; a running row whose lease lapsed shows as stale."""
    status = run.status
    if status == "running" and run.lease_until is not None and run.lease_until < now:
        status = "stale"

    def iso(moment: datetime | None) -> str | None:
        return moment.isoformat(timespec="seconds") + "Z" if moment else None

    return {
        "id": run.id,
        "job": run.job,
        "run_key": run.run_key,
        "status": status,
        "started_at": iso(run.started_at),
        "finished_at": iso(run.finished_at),
        "lease_until": iso(run.lease_until),
        "summary": run.summary,
    }


def _claim(
    session: Session, job: str, key: str, now: datetime, lease_until: datetime
) -> JobRun | None:
    """Claim (job, key) under the lease; None when a finished run already holds it."""
    run = session.scalars(
        select(JobRun).where(JobRun.job == job, JobRun.run_key == key)
    ).one_or_none()
    if run is None:
        run = JobRun(job=job, run_key=key, started_at=now, status="running", summary={})
        session.add(run)
    elif run.status in ("ok", "failed"):
        return None
    else:  # running or stale
        # We hold the lease, so whoever marked this running is gone: re-run it in place.
        log.warning(
            "%s %s: previous run started %s was killed; re-running", job, key, run.started_at
        )
        run.summary = {"recovered": {"started_at": run.started_at.isoformat(), "status": "stale"}}
        run.started_at, run.status, run.finished_at = now, "running", None
    run.lease_until = lease_until
    session.flush()
    return run


def run_job(
    rt: Runtime,
    job: str,
    key: str,
    *,
    wait: float,
    now: datetime | None = None,
    clock: Callable[[], datetime] = clock.utcnow,
    requested_by: str | None = None,
) -> Outcome:
    """Run `job` under `key` at most once to completion; `now` is the body's clock.
    `requested_by` names who asked for a manual run (e.g. console:anna) in its audit event."""
    if job not in BODIES:
        raise NotFound(f"no job named {job!r}; jobs: {', '.join(NAMES)}")
    lease = Lease(rt, job, seconds=rt.config.settings.scheduler.lease_seconds, clock=clock)
    if not lease.acquire(wait):
        log.info("%s %s: lease still taken after %.0fs; not run", job, key, wait)
        return Outcome(job, key, "busy")
    try:
        started = clock()
        with rt.db.begin() as session:
            run = _claim(session, job, key, started, started + timedelta(seconds=lease.seconds))
            if run is None:
                done = session.scalars(
                    select(JobRun).where(JobRun.job == job, JobRun.run_key == key)
                ).one()
                log.info("%s %s: already done by another run; skipping", job, key)
                return Outcome(job, key, "already_done", describe(done, started))
            run_id, carried = run.id, dict(run.summary)
        log.info("%s %s: running", job, key)
        heartbeat = _Heartbeat(lease, run_id)
        heartbeat.start()
        try:
            ok, summary = BODIES[job](Context(rt, key, now or clock()))
        except SuppressError as exc:
            ok, summary = False, {"errors": [f"{exc.code}: {exc.message}"]}
        except Exception as exc:  # the ledger must say "failed", never stay "running"
            log.exception("%s %s failed", job, key)
            ok, summary = False, {"errors": [f"internal error: {type(exc).__name__}"]}
        finally:
            heartbeat.stop.set()
            heartbeat.join()
        status = "ok" if ok else "failed"
        with rt.db.begin() as session:
            run = session.get(JobRun, run_id)
            assert run is not None
            run.status, run.finished_at, run.lease_until = status, clock(), None
            run.summary = {**carried, **summary}
            detail = {"job": job, "run_key": key, "status": status}
            if requested_by is not None:
                detail["requested_by"] = requested_by
            audit.record(session, "job", actor=f"job:{job}", detail=detail)
            described = describe(run, clock())
        log.info("%s %s: %s", job, key, status)
        return Outcome(job, key, status, described)
    finally:
        lease.release()


def run_manual(
    rt: Runtime, job: str, *, now: datetime | None = None, requested_by: str | None = None
) -> Outcome:
    """A manual run: its own run key, and it waits for the lease rather than skip."""
    if job not in BODIES:
        raise NotFound(f"no job named {job!r}; jobs: {', '.join(NAMES)}")
    wait = rt.config.settings.scheduler.lease_wait_seconds
    outcome = run_job(
        rt, job, manual_key(clock.utcnow()), wait=wait, now=now, requested_by=requested_by
    )
    if outcome.status == "busy":
        raise JobBusy(f"job {job} is still running elsewhere; try again later")
    return outcome


def mark_stale(rt: Runtime) -> int:
    """Record runs whose lease lapsed (their process died) as stale; returns how many."""
    with rt.db.begin() as session:
        result = session.execute(
            update(JobRun)
            .where(JobRun.status == "running", JobRun.lease_until < clock.utcnow())
            .values(status="stale")
        )
        return int(getattr(result, "rowcount", 0) or 0)


# --- the ledger, read ------------------------------------------------------------------------


def list_runs(session: Session, *, job: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
    """The newest runs first, with their summaries."""
    query = select(JobRun).order_by(JobRun.started_at.desc(), JobRun.id.desc()).limit(limit)
    if job is not None:
        query = query.where(JobRun.job == job)
    now = clock.utcnow()
    return [describe(run, now) for run in session.scalars(query).all()]


def run_by_id(session: Session, run_id: int) -> dict[str, Any] | None:
    """One run of the ledger with its summary, or None."""
    run = session.get(JobRun, run_id) if 0 < run_id < 2**31 else None
    return describe(run, clock.utcnow()) if run is not None else None


def last_success(session: Session, job: str) -> JobRun | None:
    """The job's most recent successful run (any run key), or None."""
    return session.scalars(
        select(JobRun)
        .where(JobRun.job == job, JobRun.status == "ok")
        .order_by(JobRun.finished_at.desc(), JobRun.id.desc())
        .limit(1)
    ).first()


def verified_head(session: Session) -> bytes | None:
    """The audit chain head the last successful verify-audit run saw (its summary), or None."""
    run = last_success(session, "verify-audit")
    if run is None:
        return None
    head = run.summary.get("head")
    try:
        return audit.parse_hash(head if isinstance(head, str) else "", "head")
    except SuppressError:
        # Every good run stores its head: a row without one was edited, and then nothing
        # in the ledger can serve as an anchor.
        raise SuppressError(
            f"verify-audit run {run.id} succeeded but its summary holds no head: the job "
            "ledger was edited; check the chain against a head kept outside the database",
            code=ErrorCode.ledger_edited,
        ) from None


def reconcile_health(session: Session, now: datetime) -> dict[str, Any]:
    """Age of the last successful reconcile, flagged stale past 26 hours (or never)."""
    last = session.scalar(
        select(JobRun.finished_at)
        .where(JobRun.job == "reconcile", JobRun.status == "ok")
        .order_by(JobRun.finished_at.desc())
        .limit(1)
    )
    if last is None:
        return {"last_success": None, "age_seconds": None, "stale": True}
    age = now - last
    return {
        "last_success": last.isoformat(timespec="seconds") + "Z",
        "age_seconds": int(age.total_seconds()),
        "stale": age > STALE_RECONCILE,
    }
