"""Concurrency: writers, checks and bulk filters at once: no 5xx, no duplicates, no stale answer."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import pytest
import requests
from sqlalchemy import func, select

from suppress import audit
from suppress.db import Database
from suppress.models import Suppression

from .conftest import LiveServer

POOL = [f"c{n}@example.se" for n in range(40)]
LISTS = ["news", "offers", "global"]
SECONDS = 6.0


def run_mixed_load(
    server: LiveServer,
) -> tuple[dict[tuple[str, str], float], list[tuple[str, str, float, bool]], list[int]]:
    tokens = {
        role: server.cli("keys", "create", "--name", role, "--role", role).stdout.split()[-1]
        for role in ("recorder", "mailer")
    }
    acked: dict[tuple[str, str], float] = {}
    checks: list[tuple[str, str, float, bool]] = []
    statuses: list[int] = []
    lock = threading.Lock()
    deadline = time.monotonic() + SECONDS

    def writer(seed: int) -> None:
        rnd = random.Random(seed)
        session = requests.Session()
        headers = {"Authorization": f"Bearer {tokens['recorder']}"}
        while time.monotonic() < deadline:
            email, list_name = rnd.choice(POOL), rnd.choice(LISTS)
            response = session.post(
                server.url + "/v1/suppressions",
                headers=headers,
                timeout=30,
                json={"email": email, "list": list_name, "reason": "unsubscribe"},
            )
            done = time.monotonic()
            with lock:
                statuses.append(response.status_code)
                if response.status_code in (200, 201):
                    acked.setdefault((email, list_name), done)

    def checker(seed: int) -> None:
        rnd = random.Random(seed)
        session = requests.Session()
        headers = {"Authorization": f"Bearer {tokens['mailer']}"}
        while time.monotonic() < deadline:
            email, list_name = rnd.choice(POOL), rnd.choice(["news", "offers"])
            started = time.monotonic()
            response = session.post(
                server.url + "/v1/check",
                headers=headers,
                timeout=30,
                json={"email": email, "list": list_name},
            )
            with lock:
                statuses.append(response.status_code)
                if response.status_code == 200:
                    checks.append((email, list_name, started, response.json()["allowed"]))

    def filterer(seed: int) -> None:
        # Bulk filters run beside the writers: each streamed answer is a set of verdicts
        # that all started when the request did.
        rnd = random.Random(seed)
        session = requests.Session()
        headers = {"Authorization": f"Bearer {tokens['mailer']}", "Content-Type": "text/plain"}
        while time.monotonic() < deadline:
            list_name = rnd.choice(["news", "offers"])
            started = time.monotonic()
            response = session.post(
                server.url + "/v1/filter",
                params={"list": list_name},
                data="\n".join(POOL).encode(),
                headers=headers,
                timeout=30,
            )
            with lock:
                statuses.append(response.status_code)
                if response.status_code == 200:
                    lines = response.text.splitlines()
                    assert lines[-1].startswith("# checked=40 ")
                    allowed = set(lines[:-1])
                    checks.extend((email, list_name, started, email in allowed) for email in POOL)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    threads += [threading.Thread(target=checker, args=(100 + n,)) for n in range(3)]
    threads += [threading.Thread(target=filterer, args=(200 + n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return acked, checks, statuses


def assert_consistent(server: LiveServer, db_url: str) -> None:
    acked, checks, statuses = run_mixed_load(server)
    assert statuses and all(status < 500 for status in statuses), sorted(set(statuses))
    assert len(acked) > 10 and len(checks) > 50
    stale = [
        (email, list_name)
        for email, list_name, started, allowed in checks
        if allowed
        and min(
            acked.get((email, list_name), float("inf")), acked.get((email, "global"), float("inf"))
        )
        < started
    ]
    assert stale == [], "a check that started after an acknowledged opt-out said allowed"
    db = Database(db_url)
    with db.begin(write=False) as session:
        rows = session.scalar(select(func.count()).select_from(Suppression))
        chain = audit.verify(session)
    db.dispose()
    assert rows == len(acked)  # one row per (address, list): no duplicates, nothing lost
    assert chain.ok, chain.to_dict()


@pytest.mark.slow
def test_concurrent_writers_and_checks_on_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'busy.db'}"
    server = LiveServer(url, tmp_path, workers=4)
    try:
        assert_consistent(server, url)
    finally:
        server.stop()


@pytest.mark.slow
def test_concurrent_writers_and_checks_on_postgres(tmp_path: Path) -> None:
    from .conftest import postgres_schema

    with postgres_schema() as url:
        server = LiveServer(url, tmp_path, workers=4)
        try:
            assert_consistent(server, url)
        finally:
            server.stop()
