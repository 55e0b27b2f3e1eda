"""The `suppress` command line against a real database, with the environment a deployment sets."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select

from suppress.apikeys import hash_token
from suppress.cli import main
from suppress.models import ApiKey
from suppress.runtime import Runtime

from .conftest import TEST_PEPPER, TOKEN_SECRET


@pytest.fixture
def cli(db_url: str, tmp_path: Path, rt: Runtime):  # type: ignore[no-untyped-def]
    env = {
        "SUPPRESS_DATABASE_URL": db_url,
        "SUPPRESS_PEPPERS": TEST_PEPPER,
        "SUPPRESS_TOKEN_SECRETS": TOKEN_SECRET,
        "SUPPRESS_INSTANCE_DIR": str(tmp_path / "instance"),
    }

    def run(*args: str) -> Result:
        return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)

    return run


def test_keys_create_prints_the_token_alone_on_the_last_line(cli, rt: Runtime) -> None:  # type: ignore[no-untyped-def]
    result = cli("keys", "create", "--name", "newsletter", "--role", "mailer")
    assert result.exit_code == 0
    token = result.stdout.strip().splitlines()[-1]
    assert token.startswith("sk_") and " " not in token
    with rt.db.begin(write=False) as session:
        key = session.scalars(select(ApiKey)).one()
    assert key.token_hash == hash_token(token) and token not in key.token_hash
    listed = cli("keys", "list")
    assert (
        "newsletter" in listed.stdout and "mailer" in listed.stdout and token not in listed.stdout
    )
    revoked = cli("keys", "revoke", str(key.id))
    assert revoked.exit_code == 0 and "revoked" in revoked.stdout
    assert "revoked" in cli("keys", "list").stdout


def test_add_check_remove_round_trip_with_exit_codes(cli) -> None:  # type: ignore[no-untyped-def]
    assert cli("check", "olle@example.se", "--list", "news").exit_code == 0
    added = cli("add", "Olle+x@Example.se", "--list", "global", "--reason", "objection")
    assert added.exit_code == 0 and added.stdout.startswith("added")
    assert cli(
        "add", "olle@example.se", "--list", "global", "--reason", "objection"
    ).stdout.startswith("already suppressed")
    suppressed = cli("check", "olle@example.se", "--list", "news")
    assert suppressed.exit_code == 1 and "objection" in suppressed.stdout
    as_json = cli("check", "olle@example.se", "--list", "news", "--json")
    assert '"allowed": false' in as_json.stdout
    removed = cli(
        "remove",
        "olle@example.se",
        "--list",
        "global",
        "--reason",
        "resubscribed",
        "--evidence",
        "form 2026-11",
    )
    assert removed.exit_code == 0
    assert cli("check", "olle@example.se", "--list", "news").exit_code == 0


def test_domain_add_and_check(cli) -> None:  # type: ignore[no-untyped-def]
    assert (
        cli("add", "--domain", "example.org", "--list", "news", "--reason", "manual").exit_code == 0
    )
    assert cli("check", "a@sub.example.org", "--list", "news").exit_code == 1


@pytest.mark.db_agnostic
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("check", "not-an-address", "--list", "news"), "invalid_email"),
        (("check", "a@example.se", "--list", "Bad List"), "invalid_list"),
        (
            ("remove", "a@example.se", "--list", "news", "--reason", "x", "--evidence", "y"),
            "not_found",
        ),
        (
            (
                "add",
                "a@example.se",
                "--list",
                "news",
                "--reason",
                "manual",
                "--source",
                "b@example.se",
            ),
            "invalid_request",
        ),
        (("keys", "revoke", "999"), "not_found"),
    ],
)
def test_errors_are_one_line_and_non_zero(cli, args: tuple[str, ...], message: str) -> None:  # type: ignore[no-untyped-def]
    result = cli(*args)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]


def test_init_creates_a_private_instance_folder_whatever_the_umask(tmp_path: Path) -> None:
    import os
    import stat

    instance = tmp_path / "instance"
    env: dict[str, str | None] = {
        "SUPPRESS_INSTANCE_DIR": str(instance),
        "SUPPRESS_DATABASE_URL": None,
        "SUPPRESS_PEPPERS": None,
        "SUPPRESS_TOKEN_SECRETS": None,
        "SUPPRESS_CONFIG": None,
    }
    old = os.umask(0)
    try:
        result = CliRunner().invoke(main, ["init"], env=env, catch_exceptions=False)
    finally:
        os.umask(old)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().splitlines()[-1].startswith("sk_")
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in [instance, *instance.iterdir()]}
    assert modes.pop("instance") == 0o700
    assert modes.pop("secrets.toml") == 0o600
    assert modes.pop("suppress.db") == 0o600
    assert set(modes.values()) <= {0o600}  # -wal and -shm, if SQLite left them


def test_init_writes_no_secrets_file_when_the_environment_holds_the_secrets(
    tmp_path: Path,
) -> None:
    from .conftest import TEST_PEPPER, TOKEN_SECRET

    instance = tmp_path / "instance"
    env: dict[str, str | None] = {
        "SUPPRESS_INSTANCE_DIR": str(instance),
        "SUPPRESS_DATABASE_URL": None,
        "SUPPRESS_PEPPERS": TEST_PEPPER,
        "SUPPRESS_TOKEN_SECRETS": TOKEN_SECRET,
        "SUPPRESS_CONFIG": None,
    }
    result = CliRunner().invoke(main, ["init"], env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "come from the environment" in result.stderr
    assert not (instance / "secrets.toml").exists()
    assert (instance / "suppress.db").exists()


@pytest.mark.parametrize("command", [["serve"], ["scheduler"], ["jobs", "run", "expire"]])
def test_a_mistyped_setting_stops_the_command_with_one_line_naming_it(
    tmp_path: Path, command: list[str]
) -> None:
    extra = tmp_path / "suppress.toml"
    extra.write_text("[server]\nwokers = 4\n")
    env: dict[str, str | None] = {
        "SUPPRESS_CONFIG": str(extra),
        "SUPPRESS_INSTANCE_DIR": str(tmp_path / "instance"),
        "SUPPRESS_DATABASE_URL": None,
        "SUPPRESS_PEPPERS": TEST_PEPPER,
        "SUPPRESS_TOKEN_SECRETS": TOKEN_SECRET,
    }
    result = CliRunner().invoke(main, command, env=env, catch_exceptions=False)
    assert result.exit_code == 2
    assert result.stderr == (
        "error: [server] wokers: unknown setting (did you mean workers?) [config_error]\n"
    )
    assert not (tmp_path / "instance").exists()  # nothing was started or created


def test_init_refuses_a_wrong_configuration_before_writing_secrets(tmp_path: Path) -> None:
    extra = tmp_path / "suppress.toml"
    extra.write_text("[server]\nworkers = 0\n[ratelimit]\npages = 'lots'\n")
    env: dict[str, str | None] = {
        "SUPPRESS_CONFIG": str(extra),
        "SUPPRESS_INSTANCE_DIR": str(tmp_path / "instance"),
        "SUPPRESS_DATABASE_URL": None,
        "SUPPRESS_PEPPERS": None,
        "SUPPRESS_TOKEN_SECRETS": None,
    }
    result = CliRunner().invoke(main, ["init"], env=env, catch_exceptions=False)
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: 2 configuration problems: ")
    assert "[server] workers: must be at least 1, not 0" in lines[0]
    assert "[ratelimit] pages: must be a rate such as '120 per minute', not 'lots'" in lines[0]
    assert not (tmp_path / "instance").exists()


@pytest.mark.parametrize(
    ("option", "bad", "allowed"),
    [("--workers", "65", "1<=x<=64"), ("--port", "0", "1<=x<=65535")],
)
def test_serve_options_have_the_ranges_of_the_settings(option: str, bad: str, allowed: str) -> None:
    result = CliRunner().invoke(main, ["serve", option, bad])
    assert result.exit_code == 2
    assert f"Invalid value for '{option}'" in result.stderr and allowed in result.stderr
