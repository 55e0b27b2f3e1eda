"""`suppress users`: people's console accounts from the command line (DESIGN §12)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select

from suppress import clock, users
from suppress.cli import main
from suppress.models import AuditEvent, ConsoleUser, PersonRole
from suppress.runtime import Runtime
from suppress.users import Lockout

from .conftest import TEST_PEPPER, TOKEN_SECRET

PASSWORD = "correct horse battery"


@pytest.fixture
def cli(db_url: str, tmp_path: Path, rt: Runtime):  # type: ignore[no-untyped-def]
    env = {
        "SUPPRESS_DATABASE_URL": db_url,
        "SUPPRESS_PEPPERS": TEST_PEPPER,
        "SUPPRESS_TOKEN_SECRETS": TOKEN_SECRET,
        "SUPPRESS_INSTANCE_DIR": str(tmp_path / "instance"),
    }

    def run(*args: str, stdin: str | None = None) -> Result:
        return CliRunner().invoke(main, list(args), env=env, input=stdin, catch_exceptions=False)

    return run


def login(rt: Runtime, name: str, password: str) -> users.Login:
    with rt.db.begin() as session:
        return users.authenticate(session, name, password, now=clock.utcnow(), lockout=Lockout())


def test_create_reads_the_password_from_stdin_and_keeps_only_an_argon2id_hash(
    cli, rt: Runtime
) -> None:  # type: ignore[no-untyped-def]
    made = cli("users", "create", "Anna", "--role", "admin", "--password-stdin", stdin=PASSWORD)
    assert made.exit_code == 0, made.stderr
    assert "created anna (admin)" in made.stdout and PASSWORD not in made.stdout
    with rt.db.begin(write=False) as session:
        user = session.scalars(select(ConsoleUser)).one()
        event = session.scalars(select(AuditEvent).where(AuditEvent.action == "user_create")).one()
    assert user.name == "anna" and user.role is PersonRole.admin
    assert user.password_hash.startswith("$argon2id$") and PASSWORD not in user.password_hash
    assert event.detail == {"user": "anna", "role": "admin"}
    assert event.actor.startswith("cli:")
    person = login(rt, "anna", PASSWORD).person
    assert person is not None and person.actor == "console:anna"


def test_a_password_line_keeps_its_spaces_and_loses_only_its_line_end(cli, rt: Runtime) -> None:  # type: ignore[no-untyped-def]
    given = "  spaces count too  "
    made = cli(
        "users", "create", "bo", "--role", "viewer", "--password-stdin", stdin=given + "\r\n"
    )
    assert made.exit_code == 0
    assert login(rt, "bo", given).person is not None
    assert login(rt, "bo", given.strip()).person is None


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (("users", "create", "cia", "--role", "admin", "--password-stdin"), "", "empty"),
        (("users", "create", "cia", "--role", "admin", "--password-stdin"), "short", "at least 12"),
        (
            ("users", "create", "cia", "--role", "admin", "--password-stdin"),
            "cia-is-my-password",
            "sign-in name",
        ),
        (
            ("users", "create", "cia@example.se", "--role", "admin", "--password-stdin"),
            PASSWORD,
            "a-z",
        ),
        (("users", "create", "cia", "--role", "admin"), PASSWORD, "--password-stdin"),
        (("users", "disable", "nobody"), None, "no person named 'nobody'"),
        (("users", "reset-password", "nobody", "--password-stdin"), PASSWORD, "no person"),
    ],
)
def test_refusals_are_one_line_and_change_nothing(
    cli, rt: Runtime, args: tuple[str, ...], stdin: str | None, message: str
) -> None:  # type: ignore[no-untyped-def]
    done = cli(*args, stdin=stdin)
    assert done.exit_code != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], done.stderr
    with rt.db.begin(write=False) as session:
        assert users.list_users(session) == []


def test_an_unknown_role_is_a_usage_error(cli, rt: Runtime) -> None:  # type: ignore[no-untyped-def]
    done = cli("users", "create", "cia", "--role", "boss", "--password-stdin", stdin=PASSWORD)
    assert (
        done.exit_code == 2 and "'boss' is not one of 'viewer', 'operator', 'admin'" in done.stderr
    )
    with rt.db.begin(write=False) as session:
        assert users.list_users(session) == []


def test_a_second_person_of_the_same_name_is_refused(cli) -> None:  # type: ignore[no-untyped-def]
    assert (
        cli(
            "users", "create", "dag", "--role", "viewer", "--password-stdin", stdin=PASSWORD
        ).exit_code
        == 0
    )
    again = cli("users", "create", "DAG", "--role", "admin", "--password-stdin", stdin=PASSWORD)
    assert again.exit_code != 0 and "already exists" in again.stderr


def test_list_disable_enable_and_reset_password(cli, rt: Runtime) -> None:  # type: ignore[no-untyped-def]
    for name, role in (("eva", "admin"), ("finn", "operator"), ("gun", "viewer")):
        cli("users", "create", name, "--role", role, "--password-stdin", stdin=PASSWORD)
    listed = cli("users", "list").stdout.splitlines()
    assert [line.split("\t")[:3] for line in listed] == [
        ["eva", "admin", "active"],
        ["finn", "operator", "active"],
        ["gun", "viewer", "active"],
    ]
    assert all(line.endswith("last sign-in never") for line in listed)
    assert PASSWORD not in "\n".join(listed)

    person = login(rt, "finn", PASSWORD).person
    assert person is not None
    assert cli("users", "disable", "finn").stdout.strip() == "disabled finn"
    with rt.db.begin(write=False) as session:
        assert users.current(session, person.id, person.epoch) is None  # the session ended
    assert login(rt, "finn", PASSWORD).refused == "disabled"
    assert "disabled" in cli("users", "list").stdout.splitlines()[1]
    assert cli("users", "enable", "finn").exit_code == 0
    assert login(rt, "finn", PASSWORD).person is not None

    new = "a brand new passphrase"
    reset = cli("users", "reset-password", "gun", "--password-stdin", stdin=new)
    assert reset.exit_code == 0 and new not in reset.stdout
    assert login(rt, "gun", PASSWORD).person is None
    assert login(rt, "gun", new).person is not None
    with rt.db.begin(write=False) as session:
        actions = [e.action for e in session.scalars(select(AuditEvent).order_by(AuditEvent.id))]
    assert actions.count("user_create") == 3
    assert {"user_disable", "user_enable", "user_password_reset"} <= set(actions)


def test_the_last_admin_cannot_be_disabled(cli) -> None:  # type: ignore[no-untyped-def]
    cli("users", "create", "hugo", "--role", "admin", "--password-stdin", stdin=PASSWORD)
    refused = cli("users", "disable", "hugo")
    assert refused.exit_code != 0 and "last admin" in refused.stderr
    cli("users", "create", "ida", "--role", "admin", "--password-stdin", stdin=PASSWORD)
    assert cli("users", "disable", "hugo").exit_code == 0


def test_a_reset_lifts_a_lockout(cli, rt: Runtime) -> None:  # type: ignore[no-untyped-def]
    cli("users", "create", "jon", "--role", "operator", "--password-stdin", stdin=PASSWORD)
    outcomes = [login(rt, "jon", "wrong password!").refused for _ in range(5)]
    assert outcomes == ["wrong"] * 4 + ["locked"]
    assert login(rt, "jon", PASSWORD).refused == "locked"
    assert "locked until" in cli("users", "list").stdout
    cli("users", "reset-password", "jon", "--password-stdin", stdin="another fine passphrase")
    assert login(rt, "jon", "another fine passphrase").person is not None
