"""No plaintext address reaches the database file, its WAL, or the server log."""

from __future__ import annotations

from pathlib import Path

import requests
from sqlalchemy import create_engine, inspect, text

from .conftest import LiveServer, postgres_schema

PEOPLE = [
    "Greta.Privat+news@Example.se",
    "privacy.probe@example.com",
    "ÅSA.Hemlig@företag.se",
    "p.r.i.v.a.t.e@gmail.com",
]
NEEDLES = ["greta.privat", "privacy.probe", "hemlig", "p.r.i.v.a.t.e", "private@gmail"]


def exercise(server: LiveServer) -> list[bytes]:
    """Drive success and error paths; return the bodies of every error response."""
    errors: list[bytes] = []
    token = server.cli("keys", "create", "--name", "privacy", "--role", "admin").stdout.split()[-1]
    headers = {"Authorization": f"Bearer {token}"}
    for email in PEOPLE:
        for path, body in (
            ("/v1/suppressions", {"email": email, "list": "news", "reason": "unsubscribe"}),
            ("/v1/check", {"email": email, "list": "news"}),
            ("/v1/suppressions", {"email": email, "list": "bad list!", "reason": "unsubscribe"}),
            ("/v1/suppressions", {"email": email, "list": "news", "reason": "nope"}),
            (
                "/v1/suppressions",
                {"email": email, "list": "news", "reason": "manual", "source": f"pasted {email}"},
            ),
        ):
            response = requests.post(
                server.url + path,
                json=body,
                headers={**headers, "Idempotency-Key": email[:5]},
                timeout=10,
            )
            if response.status_code >= 400:
                errors.append(response.content)
        for args in (
            ("check", email, "--list", "news"),
            ("add", email, "--list", "global", "--reason", "objection"),
            ("add", email, "--list", "x", "--reason", "nope"),
        ):
            result = server.cli(*args)
            if result.returncode == 2:
                errors.append(result.stderr.encode())
    requests.post(
        server.url + "/v1/check",
        json={"email": "broken@@example.se", "list": "news"},
        headers=headers,
        timeout=10,
    )
    return errors


def assert_clean(blob: bytes, where: str) -> None:
    lowered = blob.lower()
    for needle in NEEDLES:
        for encoded in (needle.encode(), needle.encode("utf-16-le")):
            assert encoded not in lowered, f"{needle!r} found in {where}"


def test_no_plaintext_in_sqlite_files_or_log(tmp_path: Path) -> None:
    db_file = tmp_path / "privacy.db"
    server = LiveServer(f"sqlite:///{db_file}", tmp_path)
    try:
        errors = exercise(server)
        assert len(errors) >= 3 * len(PEOPLE)
        for body in errors:
            assert_clean(body, "an error response")
        files = [p for p in tmp_path.rglob("*") if p.is_file() and p.name.startswith("privacy.db")]
        assert any(p.name.endswith("-wal") for p in files), "the WAL should exist while serving"
        for path in files:
            assert_clean(path.read_bytes(), path.name)
    finally:
        server.stop()
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert_clean(path.read_bytes(), str(path.relative_to(tmp_path)))


def test_no_plaintext_in_postgres_tables_or_log(tmp_path: Path) -> None:
    with postgres_schema() as db_url:
        check_postgres(db_url, tmp_path)


def check_postgres(db_url: str, tmp_path: Path) -> None:
    server = LiveServer(db_url, tmp_path)
    try:
        for body in exercise(server):
            assert_clean(body, "an error response")
    finally:
        server.stop()
    engine = create_engine(db_url)
    with engine.connect() as conn:
        for table in inspect(conn).get_table_names():
            rows = conn.execute(text(f'SELECT CAST(t AS text) FROM "{table}" t')).scalars().all()
            assert_clean("\n".join(rows).encode(), f"table {table}")
    engine.dispose()
    assert_clean(server.log_path.read_bytes(), "server log")
