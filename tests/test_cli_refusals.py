"""The CLI refuses what it cannot do in one line, and leaves nothing behind."""

from __future__ import annotations

import base64
import subprocess
import time
from pathlib import Path

from .conftest import SUPPRESS, TEST_PEPPER, TOKEN_SECRET, outside_tree


def run(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SUPPRESS, *args],
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), **env},
        cwd=outside_tree(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )


def one_line(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    return lines[0]


def test_init_with_a_bad_pepper_in_the_environment_writes_no_secrets_file(tmp_path: Path) -> None:
    line = one_line(run(tmp_path, "init", SUPPRESS_PEPPERS="k1:bad!!"))
    assert "pepper 'k1' is not valid base64" in line
    assert not (outside_tree(tmp_path) / "instance" / "secrets.toml").exists()


def test_an_unreachable_database_is_one_line(tmp_path: Path) -> None:
    secrets = {"SUPPRESS_PEPPERS": TEST_PEPPER, "SUPPRESS_TOKEN_SECRETS": TOKEN_SECRET}
    url = "postgresql+psycopg://postgres@127.0.0.1:1/test?connect_timeout=2"
    line = one_line(run(tmp_path, "db", "upgrade", SUPPRESS_DATABASE_URL=url, **secrets))
    assert line.endswith("[unavailable]") and "postgres@" not in line


def test_jobs_and_the_scheduler_refuse_an_unmigrated_database_at_once(tmp_path: Path) -> None:
    secrets = {
        "SUPPRESS_PEPPERS": "k:" + base64.b64encode(b"k" * 32).decode(),
        "SUPPRESS_TOKEN_SECRETS": TOKEN_SECRET,
        "SUPPRESS_DATABASE_URL": f"sqlite:///{tmp_path / 'empty.db'}",
    }
    for args in (("jobs", "run", "expire"), ("scheduler",)):
        started = time.monotonic()
        line = one_line(run(tmp_path, *args, **secrets))
        assert "run 'suppress db upgrade'" in line, args
        assert time.monotonic() - started < 30, args


def test_init_that_cannot_reach_its_database_leaves_no_secrets_file(tmp_path: Path) -> None:
    url = "postgresql+psycopg://postgres@127.0.0.1:1/test?connect_timeout=2"
    line = one_line(run(tmp_path, "init", SUPPRESS_DATABASE_URL=url))
    assert line.endswith("[unavailable]")
    assert not (outside_tree(tmp_path) / "instance" / "secrets.toml").exists()


def test_a_schema_from_a_newer_release_is_one_line_in_every_command(tmp_path: Path) -> None:
    import sqlite3

    secrets = {
        "SUPPRESS_PEPPERS": TEST_PEPPER,
        "SUPPRESS_TOKEN_SECRETS": TOKEN_SECRET,
        "SUPPRESS_DATABASE_URL": f"sqlite:///{tmp_path / 'newer.db'}",
    }
    assert run(tmp_path, "db", "upgrade", **secrets).returncode == 0
    with sqlite3.connect(tmp_path / "newer.db") as conn:
        conn.execute("UPDATE alembic_version SET version_num = '0099'")
    for args in (("db", "upgrade"), ("jobs", "run", "expire"), ("scheduler",)):
        line = one_line(run(tmp_path, *args, **secrets))
        assert "schema at 0099, which this version does not know" in line, args


def test_the_cli_refuses_a_readers_own_source(tmp_path: Path) -> None:
    env = {
        "SUPPRESS_PEPPERS": TEST_PEPPER,
        "SUPPRESS_TOKEN_SECRETS": TOKEN_SECRET,
        "SUPPRESS_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}",
    }
    assert run(tmp_path, "db", "upgrade", **env).returncode == 0
    add = ("add", "someone@example.com", "--list", "tax", "--reason", "unsubscribe")
    line = one_line(run(tmp_path, *add, "--source", "landing_page", **env))
    assert "kept for opt-outs made by readers through their own links" in line
