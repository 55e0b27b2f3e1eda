"""APScheduler wiring, leases and the run ledger: each job runs once per run key.

A run first takes the job's lease (a PostgreSQL advisory lock, or a `job_lease` row with an
expiry on SQLite), then claims `(job, run_key)` in `job_run`. Whoever holds the lease and
finds the claim finished exits quietly; a claim still marked running under a lease nobody
holds belonged to a killed run, which is re-run in place (every job is idempotent).
"""

from __future__ import annotations

import hashlib
import logging
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from datetime import time as dtime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, select, text, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from . import audit, clock, idempotency, jobs, reconcile, suppressions
from .errors import ErrorCode, NotFound, SuppressError
from .models import JobLease, JobRun
from .runtime import Runtime
from .settings import SchedulerSettings

if TYPE_CHECKING:
    from apscheduler.schedulers.blocking import BlockingScheduler
    from apscheduler.triggers.cron import CronTrigger

log = logging.getLogger("suppress.scheduler")
JOBS = jobs.NAMES
NIGHTLY = jobs.NIGHTLY
STALE_RECONCILE = timedelta(hours=26)
# Set on SIGTERM: runs still waiting for a lease give up instead of delaying the exit.
stopping = threading.Event()


class JobBusy(SuppressError):
    """The job's lease stayed taken for as long as we were willing to wait (409)."""

    code = ErrorCode.job_busy
    status = 409


# --- configuration -------------------------------------------------------------------------


@dataclass(frozen=True)
class Schedule:
    """The `[scheduler]` section as the jobs use it."""

    timezone: ZoneInfo
    reconcile_at: dtime
    verify_audit_at: dtime
    expire_minute: int
    misfire_grace_seconds: int = 6 * 3600
    lease_seconds: int = 300
    lease_wait_seconds: int = 900
    catch_up_minutes: int = 15

    def trigger(self, job: str) -> CronTrigger:
        """The cron trigger of a job (APScheduler's own DST handling applies)."""
        # Imported here: web workers use the ledger, not APScheduler, and boot faster.
        from apscheduler.triggers.cron import CronTrigger

        if job == "expire":
            return CronTrigger(minute=self.expire_minute, second=0, timezone=self.timezone)
        at = self.reconcile_at if job == "reconcile" else self.verify_audit_at
        return CronTrigger(hour=at.hour, minute=at.minute, second=at.second, timezone=self.timezone)


def schedule_from(section: SchedulerSettings) -> Schedule:
    """The schedule of the `[scheduler]` section (validated with the configuration)."""
    return Schedule(
        timezone=section.zone,
        reconcile_at=section.reconcile_time,
        verify_audit_at=section.verify_audit_time,
        expire_minute=section.expire_minute,
        misfire_grace_seconds=section.misfire_grace_seconds,
        lease_seconds=section.lease_seconds,
        lease_wait_seconds=section.lease_wait_seconds,
        catch_up_minutes=section.catch_up_minutes,
    )


# --- run keys ------------------------------------------------------------------------------


def latest_fire(schedule: Schedule, job: str, now: datetime) -> datetime:
    """The job's most recent scheduled fire time at or before `now` (aware)."""
    trigger = schedule.trigger(job)
    cursor = now.astimezone(UTC) - timedelta(days=3)
    previous: datetime | None = None
    latest = cursor
    while True:
        fire = trigger.get_next_fire_time(previous, cursor)
        if fire is None or fire > now:
            return latest
        # Step in UTC: wall-clock arithmetic on the second 02:30 of an autumn night (fold=1)
        # would land back on the first one.
        latest, previous = fire, fire
        cursor = fire.astimezone(UTC) + timedelta(microseconds=1)


def run_key(schedule: Schedule, job: str, fire: datetime) -> str:
    """The ledger key of a scheduled fire: its local date; for `expire` its local hour.

    A DST night that repeats 02:30 fires twice with one date, so it runs once; the hour key
    carries the UTC offset, so each of the two real 02:xx hours of that night expires once.
    """
    local = fire.astimezone(schedule.timezone)
    if job == "expire":
        return local.strftime("%Y-%m-%dT%H%z")
    return local.date().isoformat()


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
    return True, {**report.summary(), "idempotency_purged": purged}


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
) -> Outcome:
    """Run `job` under `key` at most once to completion; `now` is the body's clock."""
    if job not in BODIES:
        raise NotFound(f"no job named {job!r}; jobs: {', '.join(JOBS)}")
    schedule = schedule_from(rt.config.settings.scheduler)
    lease = Lease(rt, job, seconds=schedule.lease_seconds, clock=clock)
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
            audit.record(
                session,
                "job",
                actor=f"job:{job}",
                detail={"job": job, "run_key": key, "status": status},
            )
            described = describe(run, clock())
        log.info("%s %s: %s", job, key, status)
        return Outcome(job, key, status, described)
    finally:
        lease.release()


def run_manual(rt: Runtime, job: str, *, now: datetime | None = None) -> Outcome:
    """A manual run: its own run key, and it waits for the lease rather than skip."""
    if job not in BODIES:
        raise NotFound(f"no job named {job!r}; jobs: {', '.join(JOBS)}")
    schedule = schedule_from(rt.config.settings.scheduler)
    outcome = run_job(
        rt, job, manual_key(clock.utcnow()), wait=schedule.lease_wait_seconds, now=now
    )
    if outcome.status == "busy":
        raise JobBusy(f"job {job} is still running elsewhere; try again later")
    return outcome


def run_due(rt: Runtime, schedule: Schedule, job: str, *, now: datetime | None = None) -> Outcome:
    """Run the job's most recent scheduled occurrence unless the ledger has it done."""
    moment = now or clock.now()
    key = run_key(schedule, job, latest_fire(schedule, job, moment))
    return run_job(rt, job, key, wait=schedule.lease_wait_seconds, now=clock.naive_utc(moment))


def mark_stale(rt: Runtime) -> int:
    """Record runs whose lease lapsed (their process died) as stale; returns how many."""
    with rt.db.begin() as session:
        result = session.execute(
            update(JobRun)
            .where(JobRun.status == "running", JobRun.lease_until < clock.utcnow())
            .values(status="stale")
        )
        return int(getattr(result, "rowcount", 0) or 0)


def catch_up(rt: Runtime, schedule: Schedule, *, now: datetime | None = None) -> list[Outcome]:
    """Run each job's latest due occurrence if it is missing or was killed (once: the
    ledger records it). Runs at start and every few minutes; costs one query when idle."""
    moment = now or clock.now()
    mark_stale(rt)
    outcomes = []
    for job in JOBS:
        key = run_key(schedule, job, latest_fire(schedule, job, moment))
        with rt.db.begin(write=False) as session:
            run = session.scalars(
                select(JobRun).where(JobRun.job == job, JobRun.run_key == key)
            ).one_or_none()
            if run is not None and (
                run.status in ("ok", "failed")
                or run.lease_until is None
                # Leases run on the real clock, whatever `now` the jobs are given.
                or run.lease_until >= clock.utcnow()
            ):
                continue
        log.info("%s %s: missed or killed; catching up", job, key)
        outcomes.append(run_due(rt, schedule, job, now=moment))
    return outcomes


# --- the ledger, read ------------------------------------------------------------------------


def list_runs(session: Session, *, job: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
    """The newest runs first, with their summaries."""
    query = select(JobRun).order_by(JobRun.started_at.desc(), JobRun.id.desc()).limit(limit)
    if job is not None:
        query = query.where(JobRun.job == job)
    now = clock.utcnow()
    return [describe(run, now) for run in session.scalars(query).all()]


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


# --- the process --------------------------------------------------------------------------------


def build(rt: Runtime, schedule: Schedule) -> BlockingScheduler:
    """A BlockingScheduler with the three cron jobs and the catch-up check."""
    from apscheduler.schedulers.blocking import BlockingScheduler

    scheduler = BlockingScheduler(timezone=schedule.timezone)
    options: dict[str, Any] = {
        "coalesce": True,
        "max_instances": 1,
        "misfire_grace_time": schedule.misfire_grace_seconds,
    }
    for job in JOBS:
        scheduler.add_job(
            run_due, schedule.trigger(job), args=(rt, schedule, job), id=job, name=job, **options
        )
    scheduler.add_job(
        catch_up,
        "interval",
        minutes=schedule.catch_up_minutes,
        args=(rt, schedule),
        id="catch-up",
        name="catch-up",
        next_run_time=datetime.now(schedule.timezone),
        **options,
    )
    return scheduler


def serve(rt: Runtime) -> None:
    """Run the scheduler until SIGTERM or SIGINT; running jobs finish first."""
    schedule = schedule_from(rt.config.settings.scheduler)
    scheduler = build(rt, schedule)

    def stop(signum: int, _frame: Any) -> None:
        log.info("signal %d: stopping after running jobs finish", signum)
        stopping.set()
        scheduler.shutdown(wait=False)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info(
        "scheduler started (%s): reconcile %s, verify-audit %s, expire at minute %d",
        schedule.timezone.key,
        schedule.reconcile_at.isoformat(),
        schedule.verify_audit_at.isoformat(),
        schedule.expire_minute,
    )
    scheduler.start()
