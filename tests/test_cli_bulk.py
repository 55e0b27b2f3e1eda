"""`suppress filter` (local database) and `suppress import`: exit codes and fail-closed output."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from suppress import cli, suppressions
from suppress.errors import Unavailable
from suppress.runtime import Runtime

from .conftest import TEST_PEPPER, TOKEN_SECRET


@pytest.fixture
def suppress_cli(
    rt: Runtime, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Any]:
    """Run the real click commands in-process against the test database."""
    for name, value in {
        "SUPPRESS_DATABASE_URL": db_url,
        "SUPPRESS_PEPPERS": TEST_PEPPER,
        "SUPPRESS_TOKEN_SECRETS": TOKEN_SECRET,
        "SUPPRESS_INSTANCE_DIR": str(tmp_path / "instance"),
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("SUPPRESS_URL", raising=False)
    monkeypatch.delenv("SUPPRESS_CONFIG", raising=False)
    monkeypatch.setattr(cli, "_runtime", None)
    runner = CliRunner()

    def run(*args: str, input: bytes | None = None) -> Any:
        return runner.invoke(cli.main, list(args), input=input, catch_exceptions=False)

    yield run
    if cli._runtime is not None:
        cli._runtime.db.dispose()


def test_import_then_filter_a_csv_file(suppress_cli: Any, tmp_path: Path) -> None:
    optouts = tmp_path / "optouts.txt"
    optouts.write_bytes(b"a@example.se\n\nA+x@example.se\nnot-an-address\n")
    imported = suppress_cli(
        "import", str(optouts), "--list", "news", "--reason", "unsubscribe", "--source", "crm"
    )
    assert imported.exit_code == 0, imported.output
    assert json.loads(imported.stdout) == {
        "received": 3,
        "added": 1,
        "existing": 1,
        "invalid": 1,
        "invalid_lines": [{"line": 4, "code": "invalid_email"}],
    }
    listing = tmp_path / "recipients.csv"
    listing.write_bytes(b"email,name\na@example.se,Anna\nb@example.se,Bo\n")
    result = suppress_cli("filter", "--list", "news", str(listing))
    assert result.exit_code == 0, result.output
    assert result.stdout == "b@example.se,Bo\n"
    assert "checked=3 allowed=1 suppressed=1 invalid=1" in result.stderr


def test_filter_reads_stdin_as_plain_lines(suppress_cli: Any) -> None:
    suppress_cli("add", "a@example.se", "--list", "global", "--reason", "objection")
    result = suppress_cli("filter", "--list", "news", input=b"a@example.se\nb@example.se\n")
    assert result.exit_code == 0
    assert result.stdout == "b@example.se\n"


def test_filter_failure_prints_nothing_and_exits_non_zero(
    suppress_cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from suppress import bulk

    calls = {"n": 0}
    real = suppressions.rows_for

    def flaky(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] > 1:
            raise Unavailable("database unavailable: OperationalError")
        return real(*args, **kwargs)

    monkeypatch.setattr(bulk, "FILTER_BATCH", 1)
    monkeypatch.setattr(suppressions, "rows_for", flaky)
    result = suppress_cli("filter", "--list", "news", input=b"a@example.se\nb@example.se\n")
    assert result.exit_code != 0
    assert result.stdout == ""
    assert "unavailable" in result.stderr


@pytest.mark.db_agnostic
def test_filter_over_http_needs_a_token(suppress_cli: Any) -> None:
    result = suppress_cli(
        "filter", "--list", "news", "--url", "http://127.0.0.1:9", input=b"a@example.se\n"
    )
    assert result.exit_code != 0 and result.stdout == ""
    assert "token" in result.stderr


@pytest.mark.db_agnostic
def test_filter_over_http_fails_closed_when_nobody_answers(
    suppress_cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SUPPRESS_TOKEN", "sk_test")
    monkeypatch.setenv("SUPPRESS_URL", "http://127.0.0.1:9")
    result = suppress_cli("filter", "--list", "news", input=b"a@example.se\n")
    assert result.exit_code != 0
    assert result.stdout == ""
    assert "nothing was written" in result.stderr


@pytest.mark.db_agnostic
def test_filter_and_import_validate_options(suppress_cli: Any, tmp_path: Path) -> None:
    assert suppress_cli("filter", "--list", "Bad!", input=b"").exit_code != 0
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    leaky = suppress_cli(
        "import", str(empty), "--list", "news", "--reason", "manual", "--source", "x@example.se"
    )
    assert leaky.exit_code != 0
    assert suppress_cli("import", str(empty), "--list", "news", "--reason", "nope").exit_code != 0


def test_import_and_filter_of_a_file_count_overlong_lines_as_one_invalid_line_each(
    suppress_cli: Any, tmp_path: Path
) -> None:
    from suppress import bulk

    hostile = tmp_path / "hostile.csv"
    hostile.write_bytes(
        b"a@example.se,Anna\n"
        + b"x" * (2 * bulk.READ_CHUNK + 7)
        + b"\n"  # line 2: longer than a line may be
        + b'"'
        + b"y" * 200_000
        + b'",z@example.se\n'  # line 3: a field over csv's limit
        + b"nonsense\n"
        + b"b@example.se,Bo\n"
    )
    imported = suppress_cli("import", str(hostile), "--list", "news", "--reason", "unsubscribe")
    assert imported.exit_code == 0, imported.output
    assert json.loads(imported.stdout) == {
        "received": 5,
        "added": 2,
        "existing": 0,
        "invalid": 3,
        "invalid_lines": [
            {"line": 2, "code": "line_too_long"},
            {"line": 3, "code": "line_too_long"},
            {"line": 4, "code": "invalid_email"},
        ],
    }
    hostile.write_bytes(hostile.read_bytes().replace(b"b@example.se", b"c@example.se"))
    filtered = suppress_cli("filter", "--list", "news", str(hostile))
    assert filtered.exit_code == 0, filtered.output
    assert filtered.stdout == "c@example.se,Bo\n"
    assert "checked=5 allowed=1 suppressed=1 invalid=3" in filtered.stderr
