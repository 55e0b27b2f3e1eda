"""`suppress requests`: the register of data-subject requests from the command line."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select

from suppress import clock
from suppress.cli import main
from suppress.models import AuditEvent
from suppress.runtime import Runtime

from .conftest import TEST_PEPPER, TOKEN_SECRET

Cli = Callable[..., Result]


@pytest.fixture
def cli(db_url: str, tmp_path: Path, rt: Runtime, monkeypatch: pytest.MonkeyPatch) -> Cli:
    """The command line with the environment a deployment sets, its clock at 1 Feb 2026."""
    env = {
        "SUPPRESS_DATABASE_URL": db_url,
        "SUPPRESS_PEPPERS": TEST_PEPPER,
        "SUPPRESS_TOKEN_SECRETS": TOKEN_SECRET,
        "SUPPRESS_INSTANCE_DIR": str(tmp_path / "instance"),
    }
    monkeypatch.setattr(clock, "utcnow", lambda: datetime(2026, 2, 1, 12))

    def run(*args: str, **extra: str) -> Result:
        return CliRunner().invoke(main, list(args), env={**env, **extra})

    return run


def at(monkeypatch: pytest.MonkeyPatch, moment: str) -> None:
    fixed = datetime.fromisoformat(moment)
    monkeypatch.setattr(clock, "utcnow", lambda: fixed)


def add(cli: Cli, *args: str) -> dict[str, Any]:
    done = cli("requests", "add", "--reference", "DSR-7", "--json", *args)
    assert done.exit_code == 0, done.output
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def refused(result: Result, code: str) -> str:
    """The one stderr line of a refusal, which names its code; exit status 2."""
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and lines[0].endswith(f"[{code}]")
    return lines[0]


@pytest.mark.parametrize(
    ("received_at", "due"),
    [
        ("2026-01-31T23:30", "2026-02-28"),  # no zone: a time in Stockholm
        ("2026-01-31", "2026-02-28"),  # a bare date: that day in Stockholm
        ("2026-01-31T23:30:00Z", "2026-03-01"),  # 00:30 on 1 February in Stockholm
        ("2026-01-31T23:30:00+01:00", "2026-02-28"),
    ],
)
def test_add_counts_from_the_day_of_receipt_in_the_compliance_zone(
    cli: Cli, received_at: str, due: str
) -> None:
    made = add(cli, "--kind", "access", "--received-at", received_at)
    assert made["due"] == due and made["status"] == "open"


def test_a_naive_time_is_read_in_the_configured_zone(cli: Cli) -> None:
    made = cli(
        "requests",
        "add",
        "--kind",
        "access",
        "--reference",
        "R",
        "--received-at",
        "2026-01-31T20:00",
        "--json",
        SUPPRESS_COMPLIANCE_TIMEZONE="Asia/Tokyo",
    )
    assert made.exit_code == 0, made.output
    answer = json.loads(made.stdout)
    assert (answer["received_at"], answer["due"]) == ("2026-01-31T11:00:00Z", "2026-02-28")


def test_add_without_a_time_is_received_now(cli: Cli) -> None:
    made = cli("requests", "add", "--kind", "portability", "--reference", "R-1")
    assert made.exit_code == 0, made.output
    line = made.stdout.strip()
    assert line.startswith("registered request 1\tportability\tR-1\topen\tdue 2026-03-01\t")
    assert "received 2026-02-01T12:00:00Z" in line and "identity not verified" in line


def test_an_objection_with_an_address_suppresses_it_everywhere(cli: Cli) -> None:
    made = cli(
        "requests",
        "add",
        "--kind",
        "objection",
        "--reference",
        "Phone 2026-02-01",
        "--email",
        "Olle+x@Example.se",
        "--channel",
        "phone",
    )
    assert made.exit_code == 0, made.output
    assert made.stdout.splitlines()[1].startswith("suppressed on global (objection, digest ")
    check = cli("check", "olle@example.se", "--list", "news")
    assert check.exit_code == 1 and "objection (address, global)" in check.stdout
    found = cli("lookup", "olle@example.se")
    assert found.exit_code == 0
    assert "1 suppression(s)" in found.stdout and "1 data-subject request(s)" in found.stdout
    assert "  request 1\tobjection\tPhone 2026-02-01\topen\tdue 2026-03-01" in found.stdout
    as_json = json.loads(cli("lookup", "olle@example.se", "--json").stdout)
    assert as_json["requests"][0]["kind"] == "objection"


def test_verify_extend_close_and_list(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    first = add(cli, "--kind", "access", "--received-at", "2026-01-31T10:00")
    second = add(cli, "--kind", "erasure", "--received-at", "2026-01-20T10:00")
    ident = str(first["id"])
    verified = cli("requests", "verify", ident, "--method", "BankID", "--verified-at", "2026-01-30")
    assert verified.exit_code == 2  # the day before receipt
    on_the_day = cli(
        "requests", "verify", ident, "--method", "BankID", "--verified-at", "2026-01-31"
    )
    assert on_the_day.exit_code == 0, on_the_day.output  # a bare date: the day of receipt counts
    verified = cli("requests", "verify", ident, "--method", "BankID")
    assert verified.exit_code == 0, verified.output
    assert "identity verified 2026-02-01T12:00:00Z (BankID)" in verified.stdout
    extended = cli(
        "requests",
        "extend",
        ident,
        "--reason",
        "Records in three archives",
        "--notified-at",
        "2026-02-01T09:00",
    )
    assert extended.exit_code == 0, extended.output
    assert "due 2026-04-30 (extended)" in extended.stdout
    at(monkeypatch, "2026-02-22T12:00:00")
    listed = cli("requests", "list", "--status", "overdue")
    assert listed.exit_code == 0
    assert listed.stdout.splitlines() == [
        line for line in listed.stdout.splitlines() if line.startswith(f"{second['id']}\t")
    ]
    assert "\tOVERDUE\tdue 2026-02-20\t" in listed.stdout
    as_json = json.loads(cli("requests", "list", "--status", "open", "--json").stdout)
    assert [r["id"] for r in as_json] == [second["id"], first["id"]]  # by due day
    closed = cli("requests", "close", ident, "--outcome", "fulfilled", "--note", "Sent by post")
    assert closed.exit_code == 0, closed.output
    assert "\tclosed (fulfilled) 2026-02-22T12:00:00Z\t" in closed.stdout
    assert cli("requests", "list", "--status", "closed").stdout.startswith(f"{ident}\taccess")
    shown = json.loads(cli("requests", "show", ident, "--json").stdout)
    assert (shown["closing_note"], shown["due"]) == ("Sent by post", "2026-04-30")


def test_refusals_are_one_line_and_exit_2(
    cli: Cli, rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = add(cli, "--kind", "access", "--received-at", "2026-01-31T10:00")
    ident = str(made["id"])
    line = refused(
        cli("requests", "add", "--kind", "access", "--reference", "from anna@example.se"),
        "invalid_request",
    )
    assert "reference must not contain an email address" in line and "anna@" not in line
    refused(
        cli("requests", "add", "--kind", "access", "--reference", "R", "--note", "a@b.se"),
        "invalid_request",
    )
    refused(
        cli("requests", "add", "--kind", "access", "--reference", "R", "--received-at", "soon"),
        "invalid_request",
    )
    refused(
        cli(
            "requests", "add", "--kind", "access", "--reference", "R", "--received-at", "2026-03-01"
        ),
        "invalid_request",
    )
    refused(cli("requests", "close", "999", "--outcome", "fulfilled"), "not_found")
    at(monkeypatch, "2026-03-05T12:00:00")  # a notice may be recorded after the due day
    late = cli("requests", "extend", ident, "--reason", "R", "--notified-at", "2026-03-01")
    assert "after the original due day 2026-02-28" in refused(late, "notice_too_late")
    assert (
        cli("requests", "extend", ident, "--reason", "R", "--notified-at", "2026-02-01").exit_code
        == 0
    )
    again = cli("requests", "extend", ident, "--reason", "R", "--notified-at", "2026-02-01")
    refused(again, "already_extended")
    assert cli("requests", "close", ident, "--outcome", "refused").exit_code == 0
    refused(cli("requests", "verify", ident, "--method", "BankID"), "request_closed")
    unknown = cli("requests", "add", "--kind", "deletion", "--reference", "R")
    assert unknown.exit_code == 2 and "deletion" in unknown.stderr
    with rt.db.begin(write=False) as session:
        actions = session.scalars(
            select(AuditEvent.action).where(AuditEvent.action.like("request_%"))
        ).all()
        actors = set(session.scalars(select(AuditEvent.actor)).all())
    assert actions == ["request_register", "request_extend", "request_close"]
    assert any(a.startswith("cli:") for a in actors)
