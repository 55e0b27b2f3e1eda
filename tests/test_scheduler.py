"""The run ledger and leases: each job runs once per run key, on both databases."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from suppress import addresses, audit, clock, jobs, scheduler, suppressions
from suppress.errors import ConfigError
from suppress.models import AuditEvent, JobRun, Reason
from suppress.runtime import Runtime
from suppress.settings import SchedulerSettings

from .conftest import bearer, settings
from .test_audit import tamper

STOCKHOLM = ZoneInfo("Europe/Stockholm")


@pytest.fixture
def jobs_rt(db_url: str, tmp_path: Path) -> Iterator[Runtime]:
    """A runtime with a short lease and one generic reconcile source."""
    folder = tmp_path / "optouts"
    folder.mkdir()
    (folder / "list.txt").write_text("anna@example.se\nbo@example.se\n")
    runtime = Runtime.load(
        settings(
            db_url,
            tmp_path,
            scheduler={"lease_seconds": 1, "lease_wait_seconds": 30},
            reconcile={
                "reports_folder": str(tmp_path / "reports"),
                "sources": [{"name": "plain", "folder": str(folder), "list": "news"}],
            },
        )
    )
    yield runtime
    runtime.db.dispose()


def local(*args: int) -> datetime:
    return datetime(*args, tzinfo=STOCKHOLM)  # type: ignore[misc]


def ledger(rt: Runtime, job: str = "reconcile") -> dict[str, str]:
    with rt.db.begin(write=False) as session:
        runs = session.scalars(select(JobRun).where(JobRun.job == job)).all()
        return {run.run_key: run.status for run in runs}


def bodies_run(rt: Runtime, job: str = "reconcile") -> Counter[str]:
    """How many times the body ran per run key: each finished run writes one audit event."""
    with rt.db.begin(write=False) as session:
        events = session.scalars(select(AuditEvent).where(AuditEvent.action == "job")).all()
        return Counter(e.detail["run_key"] for e in events if e.detail["job"] == job)


def schedule(rt: Runtime) -> scheduler.Schedule:
    return scheduler.schedule_from(rt.config.settings.scheduler)


def test_defaults_are_nightly_at_0230_stockholm_and_hourly_expire() -> None:
    plan = scheduler.schedule_from(SchedulerSettings())
    assert plan.timezone.key == "Europe/Stockholm"
    assert (plan.reconcile_at.isoformat(), plan.verify_audit_at.isoformat()) == ("02:30:00",) * 2
    assert (plan.expire_minute, plan.lease_seconds, plan.catch_up_minutes) == (5, 300, 15)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"timezone": "Mars/Olympus"}, "[scheduler] timezone: must be an IANA time zone"),
        ({"reconcile_at": "25:00"}, "[scheduler] reconcile_at: must be a local time HH:MM"),
        ({"verify_audit_at": "02:30+01:00"}, "[scheduler] verify_audit_at: must be a local"),
        ({"expire_minute": 60}, "[scheduler] expire_minute: must be at most 59, not 60"),
        ({"lease_seconds": 0}, "[scheduler] lease_seconds: must be at least 1, not 0"),
        ({"catch_up_minutes": "15"}, "[scheduler] catch_up_minutes: must be an integer"),
    ],
)
def test_a_bad_schedule_is_refused_at_start_with_its_key(
    tmp_path: Path, bad: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError) as refused:
        Runtime.load(settings(f"sqlite:///{tmp_path / 'x.db'}", tmp_path, scheduler=bad))
    assert refused.value.problems == (refused.value.message,)
    assert refused.value.message.startswith(message)


@pytest.mark.parametrize(
    ("now", "key"),
    [
        (local(2026, 3, 29, 1, 0), "2026-03-28"),
        # 02:30 does not exist that night: the trigger fires at 03:30 CEST, same date.
        (local(2026, 3, 29, 3, 31), "2026-03-29"),
        (datetime(2026, 10, 25, 0, 31, tzinfo=UTC), "2026-10-25"),  # first 02:30 (CEST)
        (datetime(2026, 10, 25, 1, 31, tzinfo=UTC), "2026-10-25"),  # second 02:30 (CET)
        (local(2026, 11, 25, 2, 29, 59), "2026-11-24"),
        (local(2026, 11, 25, 2, 30), "2026-11-25"),
    ],
)
def test_nightly_run_key_is_the_local_date_of_the_fire(now: datetime, key: str) -> None:
    plan = scheduler.schedule_from(SchedulerSettings())
    assert (
        scheduler.run_key(plan, "reconcile", scheduler.latest_fire(plan, "reconcile", now)) == key
    )


def test_expire_keys_distinguish_the_two_real_hours_of_an_autumn_night() -> None:
    plan = scheduler.schedule_from(SchedulerSettings(expire_minute=5))
    first = scheduler.latest_fire(plan, "expire", datetime(2026, 10, 25, 0, 10, tzinfo=UTC))
    second = scheduler.latest_fire(plan, "expire", datetime(2026, 10, 25, 1, 10, tzinfo=UTC))
    assert scheduler.run_key(plan, "expire", first) == "2026-10-25T02+0200"
    assert scheduler.run_key(plan, "expire", second) == "2026-10-25T02+0100"


def test_a_run_key_runs_once_and_a_second_attempt_exits_quietly(jobs_rt: Runtime) -> None:
    first = jobs.run_job(jobs_rt, "reconcile", "2026-11-25", wait=5)
    second = jobs.run_job(jobs_rt, "reconcile", "2026-11-25", wait=5)
    assert (first.status, second.status) == ("ok", "already_done")
    assert first.run["summary"]["sources"]["plain"]["added"] == 2
    assert bodies_run(jobs_rt) == {"2026-11-25": 1}


def fires(plan: scheduler.Schedule, start: datetime, end: datetime) -> list[datetime]:
    trigger, out, previous, cursor = plan.trigger("reconcile"), [], None, start
    while (fire := trigger.get_next_fire_time(previous, cursor)) and fire < end:
        out.append(fire)
        previous, cursor = fire, fire.astimezone(UTC) + timedelta(microseconds=1)
    return out


def test_dst_nights_in_stockholm_run_once(jobs_rt: Runtime) -> None:
    plan = schedule(jobs_rt)
    times = fires(plan, local(2026, 3, 27, 12), local(2026, 3, 31, 12)) + fires(
        plan, local(2026, 10, 23, 12), local(2026, 10, 27, 12)
    )
    # APScheduler fires twice in the repeated autumn hour.
    assert len(times) == 9
    for fire in times:
        # Each fire as it happens, and again from a second scheduler a minute later.
        for moment in (fire, fire + timedelta(minutes=1)):
            scheduler.run_due(jobs_rt, plan, "reconcile", now=moment.astimezone(UTC))
    expected = {
        "2026-03-28",
        "2026-03-29",
        "2026-03-30",
        "2026-03-31",
        "2026-10-24",
        "2026-10-25",
        "2026-10-26",
        "2026-10-27",
    }
    assert ledger(jobs_rt) == {key: "ok" for key in expected}
    assert bodies_run(jobs_rt) == {key: 1 for key in expected}


def test_a_missed_night_is_caught_up_once(jobs_rt: Runtime) -> None:
    plan = schedule(jobs_rt)
    jobs.run_job(jobs_rt, "reconcile", "2026-11-23", wait=5)
    # The scheduler was down over two nights and starts at noon on the 25th.
    noon = local(2026, 11, 25, 12).astimezone(UTC)
    outcomes = scheduler.catch_up(jobs_rt, plan, now=noon)
    assert {(o.job, o.run_key, o.status) for o in outcomes} == {
        ("reconcile", "2026-11-25", "ok"),
        ("verify-audit", "2026-11-25", "ok"),
        ("expire", "2026-11-25T11+0100", "ok"),  # expire_minute 5
    }
    assert scheduler.catch_up(jobs_rt, plan, now=noon + timedelta(minutes=4)) == []
    assert ledger(jobs_rt) == {"2026-11-23": "ok", "2026-11-25": "ok"}
    assert bodies_run(jobs_rt) == {"2026-11-23": 1, "2026-11-25": 1}


def test_a_killed_run_is_marked_stale_and_re_run_idempotently(jobs_rt: Runtime) -> None:
    plan = schedule(jobs_rt)
    noon = local(2026, 11, 25, 12).astimezone(UTC)
    past = clock.utcnow() - timedelta(minutes=5)
    with jobs_rt.db.begin() as session:
        # What a process killed mid-run leaves behind: a claim whose lease has lapsed.
        for key in ("manual:20261125T100000Z:0a1b2c3d", "2026-11-25"):
            session.add(
                JobRun(
                    job="reconcile",
                    run_key=key,
                    started_at=past,
                    status="running",
                    lease_until=past + timedelta(seconds=1),
                    summary={},
                )
            )
    with jobs_rt.db.begin(write=False) as session:
        assert {r["status"] for r in jobs.list_runs(session)} == {"stale"}
    outcomes = scheduler.catch_up(jobs_rt, plan, now=noon)
    recovered = next(o for o in outcomes if o.job == "reconcile")
    assert recovered.status == "ok"
    assert recovered.run["summary"]["recovered"]["status"] == "stale"
    # The night is re-run; a killed manual run is recorded as stale, not repeated.
    assert ledger(jobs_rt) == {"2026-11-25": "ok", "manual:20261125T100000Z:0a1b2c3d": "stale"}
    assert bodies_run(jobs_rt) == {"2026-11-25": 1}


def test_a_running_claim_with_a_live_lease_is_left_alone(jobs_rt: Runtime) -> None:
    now = clock.utcnow()
    with jobs_rt.db.begin() as session:
        session.add(
            JobRun(
                job="reconcile",
                run_key="2026-11-25",
                started_at=now,
                status="running",
                lease_until=now + timedelta(hours=1),
                summary={},
            )
        )
    outcomes = scheduler.catch_up(
        jobs_rt, schedule(jobs_rt), now=local(2026, 11, 25, 12).astimezone(UTC)
    )
    assert "reconcile" not in {o.job for o in outcomes}


def test_manual_runs_get_their_own_key_and_leave_the_night_alone(jobs_rt: Runtime) -> None:
    manual = jobs.run_manual(jobs_rt, "reconcile")
    assert manual.status == "ok" and manual.run_key.startswith("manual:")
    night = scheduler.run_due(
        jobs_rt, schedule(jobs_rt), "reconcile", now=local(2026, 11, 25, 2, 30).astimezone(UTC)
    )
    assert night.status == "ok" and night.run_key == "2026-11-25"
    # The night found the manual run's files already applied.
    assert night.run["summary"]["sources"]["plain"] == {
        "files": 1,
        "already_applied": 1,
        "rows": 0,
        "added": 0,
        "existing": 0,
        "invalid": 0,
    }


def test_a_manual_run_waits_for_the_lease_rather_than_skip(jobs_rt: Runtime) -> None:
    holder = jobs.Lease(jobs_rt, "reconcile", seconds=60, clock=clock.utcnow)
    assert holder.acquire(wait=0)
    result: list[jobs.Outcome] = []
    worker = threading.Thread(target=lambda: result.append(jobs.run_manual(jobs_rt, "reconcile")))
    worker.start()
    worker.join(timeout=1)
    assert worker.is_alive() and result == []
    holder.release()
    worker.join(timeout=60)
    assert [o.status for o in result] == ["ok"]


def test_a_second_lease_is_refused_while_the_first_is_held(jobs_rt: Runtime) -> None:
    first = jobs.Lease(jobs_rt, "expire", seconds=60, clock=clock.utcnow)
    second = jobs.Lease(jobs_rt, "expire", seconds=60, clock=clock.utcnow)
    other_job = jobs.Lease(jobs_rt, "reconcile", seconds=60, clock=clock.utcnow)
    try:
        assert first.acquire(wait=0)
        assert not second.acquire(wait=0)
        assert other_job.acquire(wait=0)
        first.release()
        assert second.acquire(wait=0)
    finally:
        for lease in (first, second, other_job):
            lease.release()


def test_a_failing_source_fails_the_run_and_says_why(db_url: str, tmp_path: Path) -> None:
    rt = Runtime.load(
        settings(
            db_url,
            tmp_path,
            reconcile={"sources": [{"name": "gone", "folder": str(tmp_path / "no"), "list": "n"}]},
        )
    )
    try:
        outcome = jobs.run_job(rt, "reconcile", "2026-11-25", wait=5)
        assert outcome.status == "failed"
        assert "does not exist" in outcome.run["summary"]["errors"][0]
    finally:
        rt.db.dispose()


def test_expire_job_lifts_lapsed_bounces(jobs_rt: Runtime) -> None:
    now = clock.utcnow()
    with jobs_rt.db.begin() as session:
        suppressions.add(
            session,
            addresses.address_target(jobs_rt.ring, "bounce@example.se"),
            "news",
            Reason.soft_bounce,
            source="test",
            actor="test",
            now=now - timedelta(days=2),
            expires_at=now - timedelta(days=1),
        )
    outcome = jobs.run_job(jobs_rt, "expire", "2026-11-25T12+0100", wait=5)
    assert outcome.run["summary"]["removed"] == 1


def test_verify_audit_fails_on_a_tampered_chain(jobs_rt: Runtime) -> None:
    assert jobs.run_job(jobs_rt, "verify-audit", "2026-11-24", wait=5).status == "ok"
    tamper(jobs_rt, "UPDATE audit_event SET actor = 'someone-else' WHERE id = 1")
    outcome = jobs.run_job(jobs_rt, "verify-audit", "2026-11-25", wait=5)
    assert outcome.status == "failed"
    assert outcome.run["summary"]["ok"] is False


def test_nightly_verify_anchors_on_the_last_good_head_so_a_cut_tail_fails_it(
    jobs_rt: Runtime,
) -> None:
    with jobs_rt.db.begin() as session:
        for i in range(3):
            audit.record(session, "test", actor="test", detail={"i": i})
    first = jobs.run_job(jobs_rt, "verify-audit", "2026-11-24", wait=5)
    assert first.status == "ok" and first.run["summary"]["anchor"] is None
    head, events = first.run["summary"]["head"], first.run["summary"]["events"]
    assert events == 3
    second = jobs.run_job(jobs_rt, "verify-audit", "2026-11-25", wait=5)
    assert second.status == "ok" and second.run["summary"]["anchor"] == head
    assert second.run["summary"]["events"] == 4  # the first run's own job event
    with jobs_rt.db.begin(write=False) as session:
        head_id = session.scalar(
            select(AuditEvent.id).where(AuditEvent.hash == bytes.fromhex(head))
        )
    # Cut every event from the first night's head on: what is left still links.
    tamper(jobs_rt, "DELETE FROM audit_event WHERE id >= :i", i=head_id)
    with jobs_rt.db.begin(write=False) as session:
        assert audit.verify(session).ok
    third = jobs.run_job(jobs_rt, "verify-audit", "2026-11-26", wait=5)
    assert third.status == "failed"
    summary = third.run["summary"]
    assert summary["anchor"] == second.run["summary"]["head"]
    assert (summary["ok"], summary["finding"]) == (False, "anchor_missing")
    assert summary["errors"][0].startswith("audit chain broken: the anchor")


def test_nightly_verify_fails_when_the_last_good_run_lost_its_head(jobs_rt: Runtime) -> None:
    assert jobs.run_job(jobs_rt, "verify-audit", "2026-11-24", wait=5).status == "ok"
    with jobs_rt.db.begin() as session:
        run = session.scalars(select(JobRun).where(JobRun.job == "verify-audit")).one()
        run.summary = {"ok": True}
    outcome = jobs.run_job(jobs_rt, "verify-audit", "2026-11-25", wait=5)
    assert outcome.status == "failed"
    (error,) = outcome.run["summary"]["errors"]
    assert error.startswith("ledger_edited: verify-audit run") and "holds no head" in error


# --- HTTP -----------------------------------------------------------------------------------


def test_jobs_api_runs_and_lists_for_admins_only(
    client: FlaskClient, tokens: dict[str, str]
) -> None:
    assert client.get("/v1/jobs").status_code == 401
    assert client.post("/v1/jobs/expire/run").status_code == 401
    assert client.get("/v1/jobs", headers=bearer(tokens["recorder"])).status_code == 403
    assert (
        client.post("/v1/jobs/verify-audit/run", headers=bearer(tokens["recorder"])).status_code
        == 403
    )
    ran = client.post("/v1/jobs/verify-audit/run", headers=bearer(tokens["admin"]))
    assert ran.status_code == 200
    run: dict[str, Any] = ran.get_json()["run"]
    assert run["status"] == "ok" and run["run_key"].startswith("manual:")
    assert run["summary"]["ok"] is True
    listed = client.get("/v1/jobs?job=verify-audit", headers=bearer(tokens["admin"])).get_json()
    assert [r["id"] for r in listed["runs"]] == [run["id"]]
    missing = client.post("/v1/jobs/nightly/run", headers=bearer(tokens["admin"]))
    assert missing.status_code == 404 and missing.get_json()["error"]["code"] == "not_found"
    bad = client.get("/v1/jobs?limit=0", headers=bearer(tokens["admin"]))
    assert bad.status_code == 400


@pytest.mark.db_agnostic
def test_openapi_lists_the_job_routes(client: FlaskClient) -> None:
    paths = client.get("/v1/openapi.json").get_json()["paths"]
    assert "get" in paths["/v1/jobs"] and "post" in paths["/v1/jobs/{name}/run"]


def test_healthz_reports_reconcile_age_and_readyz_ignores_it(
    client: FlaskClient, rt: Runtime
) -> None:
    never = client.get("/healthz").get_json()
    assert never == {
        "status": "ok",
        "reconcile": {"last_success": None, "age_seconds": None, "stale": True},
        "requests": {"open": 0, "due_this_week": 0, "overdue": 0, "next_due": None, "late": False},
    }
    assert client.get("/readyz").status_code == 200
    finished = clock.utcnow() - timedelta(hours=27)
    with rt.db.begin() as session:
        session.add(
            JobRun(
                job="reconcile",
                run_key="2026-11-24",
                started_at=finished,
                finished_at=finished,
                status="ok",
                summary={},
            )
        )
    old = client.get("/healthz").get_json()["reconcile"]
    assert old["stale"] is True and old["age_seconds"] >= 27 * 3600
    assert client.get("/readyz").status_code == 200
    jobs.run_job(rt, "reconcile", "2026-11-25", wait=5)
    fresh = client.get("/healthz").get_json()["reconcile"]
    assert fresh["stale"] is False and fresh["age_seconds"] < 26 * 3600


def test_lease_and_reconcile_file_tables_match_their_migration(rt: Runtime) -> None:
    assert rt.db.drift() == []
