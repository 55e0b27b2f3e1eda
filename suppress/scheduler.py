"""APScheduler wiring: the `[scheduler]` section as cron triggers, run keys of scheduled
fires, catch-up after missed fires, and the `suppress scheduler` process.

Running a job (leases, the run ledger) is jobs.py's: this module only decides when.
"""

from __future__ import annotations

import logging
import signal
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from datetime import time as dtime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from sqlalchemy import select

from . import clock, jobs
from .models import JobRun
from .runtime import Runtime
from .settings import SchedulerSettings

if TYPE_CHECKING:
    from apscheduler.schedulers.blocking import BlockingScheduler
    from apscheduler.triggers.cron import CronTrigger

log = logging.getLogger("suppress.scheduler")


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


def run_due(
    rt: Runtime, schedule: Schedule, job: str, *, now: datetime | None = None
) -> jobs.Outcome:
    """Run the job's most recent scheduled occurrence unless the ledger has it done."""
    moment = now or clock.now()
    key = run_key(schedule, job, latest_fire(schedule, job, moment))
    return jobs.run_job(rt, job, key, wait=schedule.lease_wait_seconds, now=clock.naive_utc(moment))


def catch_up(rt: Runtime, schedule: Schedule, *, now: datetime | None = None) -> list[jobs.Outcome]:
    """Run each job's latest due occurrence if it is missing or was killed (once: the
    ledger records it). Runs at start and every few minutes; costs one query when idle."""
    moment = now or clock.now()
    jobs.mark_stale(rt)
    outcomes = []
    for job in jobs.NAMES:
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
    for job in jobs.NAMES:
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
        jobs.stopping.set()
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
