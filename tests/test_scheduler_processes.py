"""`suppress scheduler` as real processes: two at once run each job body once; a SIGKILL'd
run is recovered by the next scheduler. On SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from suppress import addresses, clock, suppressions
from suppress.models import AuditEvent, JobRun, ReconcileFile
from suppress.runtime import Runtime

from .conftest import SUPPRESS, TEST_PEPPER, TOKEN_SECRET, outside_tree, settings

pytestmark = pytest.mark.e2e
STOCKHOLM = ZoneInfo("Europe/Stockholm")


class Processes:
    """Scheduler (and CLI) subprocesses against one database and one config file."""

    def __init__(self, db_url: str, tmp_path: Path, config: str):
        self.tmp_path = tmp_path
        config_path = tmp_path / "suppress.toml"
        config_path.write_text(config)
        self.env = {
            **os.environ,
            "SUPPRESS_DATABASE_URL": db_url,
            "SUPPRESS_PEPPERS": TEST_PEPPER,
            "SUPPRESS_TOKEN_SECRETS": TOKEN_SECRET,
            "SUPPRESS_BASE_URL": "https://suppress.example.com",
            "SUPPRESS_INSTANCE_DIR": str(tmp_path / "instance"),
            "SUPPRESS_CONFIG": str(config_path),
        }
        self.procs: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(self) -> subprocess.Popen[bytes]:
        log = self.tmp_path / f"scheduler-{len(self.procs)}.log"
        with log.open("wb") as out:  # the child keeps its own descriptor
            proc = subprocess.Popen(
                [*SUPPRESS, "scheduler"],
                cwd=outside_tree(self.tmp_path),
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.procs.append((proc, log))
        return proc

    def logs(self) -> str:
        return "\n".join(log.read_text() for _, log in self.procs)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*SUPPRESS, *args],
            env=self.env,
            cwd=outside_tree(self.tmp_path),
            capture_output=True,
            text=True,
            timeout=120,
        )

    def stop(self, proc: subprocess.Popen[bytes]) -> int:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
        return proc.returncode

    def close(self) -> None:
        for proc, _ in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.fixture
def rt(db_url: str, tmp_path: Path) -> Iterator[Runtime]:
    """The test's own view of the database the processes share."""
    runtime = Runtime.load(settings(db_url, tmp_path))
    yield runtime
    runtime.db.dispose()


def wait_for(
    what: str, condition: Callable[[], Any], processes: Processes, limit: float = 90
) -> Any:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}; logs:\n{processes.logs()}")


def runs(rt: Runtime, job: str) -> dict[str, str]:
    with rt.db.begin(write=False) as session:
        found = session.scalars(select(JobRun).where(JobRun.job == job)).all()
        return {r.run_key: r.status for r in found}


def bodies_run(rt: Runtime) -> Counter[tuple[str, str]]:
    with rt.db.begin(write=False) as session:
        events = session.scalars(select(AuditEvent).where(AuditEvent.action == "job")).all()
        return Counter((e.detail["job"], e.detail["run_key"]) for e in events)


def config(folder: Path, reconcile_at: str, *, lease: int = 2) -> str:
    return f"""
[scheduler]
timezone = "Europe/Stockholm"
reconcile_at = "{reconcile_at}"
verify_audit_at = "{reconcile_at}"
lease_seconds = {lease}
lease_wait_seconds = 120

[reconcile]
[[reconcile.sources]]
name = "plain"
folder = "{folder}"
format = "generic"
list = "news"
"""


@pytest.mark.slow
def test_two_schedulers_started_together_run_each_job_body_once(
    rt: Runtime, tmp_path: Path
) -> None:
    folder = tmp_path / "optouts"
    folder.mkdir()
    (folder / "list.csv").write_text("email\r\nanna@example.se\r\nbo@example.se\r\n")
    fire = datetime.now(STOCKHOLM).replace(microsecond=0) + timedelta(seconds=12)
    tonight = fire.date().isoformat()
    before = (fire.date() - timedelta(days=1)).isoformat()
    processes = Processes(
        rt.config.database_url, tmp_path, config(folder, fire.strftime("%H:%M:%S"))
    )
    try:
        first, second = processes.start(), processes.start()
        # Both catch up the previous night at start, then both reach the forced fire time.
        wait_for(
            "tonight's runs",
            lambda: (
                runs(rt, "reconcile").get(tonight) == "ok"
                and runs(rt, "verify-audit").get(tonight) == "ok"
            ),
            processes,
        )
        assert processes.stop(first) == 0 and processes.stop(second) == 0
    finally:
        processes.close()
    assert runs(rt, "reconcile") == {before: "ok", tonight: "ok"}
    counted = bodies_run(rt)
    assert counted[("reconcile", tonight)] == counted[("reconcile", before)] == 1
    assert counted[("verify-audit", tonight)] == counted[("verify-audit", before)] == 1
    assert set(counted.values()) == {1}, counted
    logs = processes.logs()
    assert logs.count(f"reconcile {tonight}: running") == 1, logs
    with rt.db.begin(write=False) as session:
        target = addresses.address_target(rt.ring, "bo@example.se")
        assert not suppressions.check(session, target, "news", now=clock.utcnow()).allowed

    # The CLI sees the same ledger, and a manual run takes a key of its own.
    listed = processes.cli("jobs", "list", "--json", "--job", "reconcile")
    assert listed.returncode == 0, listed.stderr
    assert {r["run_key"] for r in json.loads(listed.stdout)} == {before, tonight}
    manual = processes.cli("jobs", "run", "reconcile")
    assert manual.returncode == 0, manual.stderr
    assert json.loads(manual.stdout)["run_key"].startswith("manual:")


def test_a_run_killed_with_sigkill_is_recovered_by_the_next_scheduler(
    rt: Runtime, tmp_path: Path
) -> None:
    folder = tmp_path / "optouts"
    folder.mkdir()
    (folder / "a.txt").write_text("anna@example.se\n")
    # Reading a named pipe blocks until someone writes: the run stops mid-way, lease held.
    os.mkfifo(folder / "b.txt")
    # A fire time hours away: only the catch-up of the last night runs.
    later = (datetime.now(STOCKHOLM) + timedelta(hours=6)).strftime("%H:%M")
    processes = Processes(rt.config.database_url, tmp_path, config(folder, later))
    try:
        victim = processes.start()

        def mid_run() -> bool:
            with rt.db.begin(write=False) as session:
                applied = session.scalar(select(func.count()).select_from(ReconcileFile))
            return "running" in runs(rt, "reconcile").values() and applied == 1

        wait_for("the run to block mid-way", mid_run, processes)
        (key,) = runs(rt, "reconcile")
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)
        (folder / "b.txt").unlink()
        (folder / "b.txt").write_text("bo@example.se\n")

        def lapsed() -> bool:
            with rt.db.begin(write=False) as session:
                run = session.scalars(select(JobRun).where(JobRun.job == "reconcile")).one()
                return run.lease_until is not None and run.lease_until < clock.utcnow()

        wait_for("the killed run's lease to lapse", lapsed, processes)
        survivor = processes.start()
        wait_for("the recovery", lambda: runs(rt, "reconcile").get(key) == "ok", processes)
        assert processes.stop(survivor) == 0
    finally:
        processes.close()
    with rt.db.begin(write=False) as session:
        run = session.scalars(select(JobRun).where(JobRun.job == "reconcile")).one()
        assert run.summary["recovered"]["status"] == "stale"
        assert run.summary["sources"]["plain"]["already_applied"] == 1
        assert run.summary["sources"]["plain"]["added"] == 1
        assert session.scalar(select(func.count()).select_from(ReconcileFile)) == 2
        for email in ("anna@example.se", "bo@example.se"):
            target = addresses.address_target(rt.ring, email)
            assert not suppressions.check(session, target, "news", now=clock.utcnow()).allowed
    assert bodies_run(rt)[("reconcile", key)] == 1
