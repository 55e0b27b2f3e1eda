"""Fail closed: with the database stopped, read-only or slow, nothing is ever "allowed"."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import requests

from suppress.client import Client, ClientError

from .conftest import LiveServer


def admin_token(server: LiveServer) -> dict[str, str]:
    created = server.cli("keys", "create", "--name", "faults", "--role", "admin")
    assert created.returncode == 0, created.stderr
    return {"Authorization": f"Bearer {created.stdout.split()[-1]}"}


def post(
    server: LiveServer, headers: dict[str, str], path: str, body: dict[str, Any]
) -> requests.Response:
    return requests.post(server.url + path, json=body, headers=headers, timeout=30)


@pytest.mark.slow
def test_database_stopped_means_503_everywhere_then_recovers(
    private_pg: Any, tmp_path: Path
) -> None:
    server = LiveServer(private_pg.url, tmp_path, workers=1)
    try:
        headers = admin_token(server)
        assert (
            post(
                server,
                headers,
                "/v1/suppressions",
                {"email": "down@example.se", "list": "news", "reason": "unsubscribe"},
            ).status_code
            == 201
        )
        private_pg.stop("immediate")
        check = post(server, headers, "/v1/check", {"email": "free@example.se", "list": "news"})
        assert check.status_code == 503 and check.json()["error"]["code"] == "unavailable"
        assert "allowed" not in check.json()
        write = post(
            server,
            headers,
            "/v1/suppressions",
            {"email": "x@example.se", "list": "news", "reason": "unsubscribe"},
        )
        assert write.status_code == 503
        assert requests.get(server.url + "/readyz", timeout=30).status_code == 503
        assert requests.get(server.url + "/healthz", timeout=30).status_code == 200
        cli = server.cli("check", "free@example.se", "--list", "news")
        assert cli.returncode == 2 and cli.stdout == ""
        # The mailing-job paths: the client raises, `suppress filter` prints nothing.
        recipients = tmp_path / "recipients.txt"
        recipients.write_text("free@example.se\ndown@example.se\n")
        token = headers["Authorization"].split()[-1]
        bulk = server.cli(
            "filter", "--list", "news", "--url", server.url, "--token", token, str(recipients)
        )
        assert bulk.returncode != 0 and bulk.stdout == ""
        with pytest.raises(ClientError):
            list(
                Client(server.url, token, retries=1, backoff=0).filter(["free@example.se"], "news")
            )
        private_pg.start()
        again = post(server, headers, "/v1/check", {"email": "down@example.se", "list": "news"})
        assert again.status_code == 200 and again.json()["allowed"] is False
        assert requests.get(server.url + "/readyz", timeout=30).status_code == 200
    finally:
        server.stop()


@pytest.mark.slow
def test_read_only_database_refuses_writes_but_checks_tell_the_truth(
    private_pg: Any, tmp_path: Path
) -> None:
    server = LiveServer(private_pg.url, tmp_path, workers=1)
    try:
        headers = admin_token(server)
        post(
            server,
            headers,
            "/v1/suppressions",
            {"email": "ro@example.se", "list": "news", "reason": "objection"},
        )
        server.stop()
        private_pg.sql("ALTER DATABASE postgres SET default_transaction_read_only = on")
        server.start()
        write = post(
            server,
            headers,
            "/v1/suppressions",
            {"email": "new@example.se", "list": "news", "reason": "unsubscribe"},
        )
        assert write.status_code == 503 and write.json()["error"]["code"] == "unavailable"
        check = post(server, headers, "/v1/check", {"email": "ro@example.se", "list": "news"})
        assert check.status_code == 200 and check.json()["allowed"] is False
        after = post(server, headers, "/v1/check", {"email": "new@example.se", "list": "news"})
        assert (
            after.status_code == 200 and after.json()["allowed"] is True
        )  # it was never acknowledged
    finally:
        server.stop()


@pytest.mark.slow
def test_slow_database_answers_503_within_the_statement_timeout(
    private_pg: Any, tmp_path: Path
) -> None:
    import threading

    import psycopg

    server = LiveServer(
        private_pg.url,
        tmp_path,
        workers=1,
        extra_env={"SUPPRESS_DATABASE_STATEMENT_TIMEOUT_MS": "1500"},
    )
    try:
        headers = admin_token(server)
        post(server, headers, "/v1/check", {"email": "warm@example.se", "list": "news"})
        locked = threading.Event()
        release = threading.Event()

        def hold_lock() -> None:
            with psycopg.connect(
                f"host=127.0.0.1 port={private_pg.port} user=postgres dbname=postgres"
            ) as conn:
                conn.execute("LOCK TABLE suppression IN ACCESS EXCLUSIVE MODE")
                locked.set()
                release.wait(30)

        holder = threading.Thread(target=hold_lock)
        holder.start()
        assert locked.wait(10)
        started = time.monotonic()
        check = post(server, headers, "/v1/check", {"email": "slow@example.se", "list": "news"})
        elapsed = time.monotonic() - started
        release.set()
        holder.join()
        assert check.status_code == 503 and check.json()["error"]["code"] == "unavailable"
        assert elapsed < 15
    finally:
        server.stop()


def test_sqlite_read_only_file_refuses_writes(tmp_path: Path) -> None:
    db_file = tmp_path / "ro.db"
    server = LiveServer(f"sqlite:///{db_file}", tmp_path, workers=1)
    headers = admin_token(server)
    post(
        server,
        headers,
        "/v1/suppressions",
        {"email": "ro@example.se", "list": "news", "reason": "objection"},
    )
    server.stop()
    server.env["SUPPRESS_DATABASE_URL"] = f"sqlite:///file:{db_file}?mode=ro&uri=true"
    server.start()
    try:
        write = post(
            server,
            headers,
            "/v1/suppressions",
            {"email": "new@example.se", "list": "news", "reason": "unsubscribe"},
        )
        assert write.status_code == 503
        check = post(server, headers, "/v1/check", {"email": "ro@example.se", "list": "news"})
        assert check.status_code == 200 and check.json()["allowed"] is False
    finally:
        server.stop()


def test_sqlite_file_deleted_under_a_running_server_answers_503(tmp_path: Path) -> None:
    db_file = tmp_path / "vanishing.db"
    server = LiveServer(f"sqlite:///{db_file}", tmp_path, workers=2)
    try:
        headers = admin_token(server)
        add = {"email": "kept@example.se", "list": "news", "reason": "unsubscribe"}
        assert post(server, headers, "/v1/suppressions", add).status_code == 201
        db_file.unlink()
        for _ in range(4):  # requests land on either worker
            ready = requests.get(server.url + "/readyz", timeout=30)
            assert ready.status_code == 503
            assert ready.json()["error"]["code"] == "unavailable"
            check = post(server, headers, "/v1/check", {"email": "free@example.se", "list": "news"})
            assert check.status_code == 503 and check.json()["error"]["code"] == "unavailable"
            assert "allowed" not in check.json()
            late = {**add, "email": "late@example.se"}
            write = post(server, headers, "/v1/suppressions", late)
            assert write.status_code == 503 and write.json()["error"]["code"] == "unavailable"
        # A worker that never opened the file before it went creates an empty one at its
        # first request; it has no schema, so that worker answers 503 as well.
        assert requests.get(server.url + "/healthz", timeout=30).status_code == 200
    finally:
        server.stop()
