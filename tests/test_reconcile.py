"""Reconciliation, CRM audits and expiry as plain functions on both databases."""

from __future__ import annotations

import csv
import io
import json
import shutil
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from suppress import addresses, audit, jobs, suppressions
from suppress.access import neutralize
from suppress.errors import ConfigError
from suppress.models import AuditEvent, Reason, ReconcileFile, Suppression
from suppress.reconcile import (
    AuditSpec,
    Settings,
    SourceSpec,
    audit_contacts,
    reconcile,
    settings_from,
)
from suppress.runtime import Runtime
from suppress.settings import ReconcileSettings
from suppress.suppressions import expire

ESP = Path(__file__).parent / "fixtures" / "esp"
NOW = datetime(2026, 11, 25, 1, 30)


def folder_with(tmp_path: Path, name: str, *files: str) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    for file in files:
        shutil.copy(ESP / file, folder / file)
    return folder


def count(rt: Runtime, model: type) -> int:
    with rt.db.begin(write=False) as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def verdict(rt: Runtime, email: str, list_name: str) -> suppressions.Verdict:
    with rt.db.begin(write=False) as session:
        return suppressions.check(
            session, addresses.address_target(rt.ring, email), list_name, now=NOW
        )


def run(rt: Runtime, settings: Settings, now: datetime = NOW, key: str = "2026-11-25"):  # type: ignore[no-untyped-def]
    return reconcile(rt.db.begin, rt.ring, settings, now=now, run_key=key)


@pytest.mark.parametrize(
    ("fmt", "files", "email", "reason"),
    [
        ("generic", ("sendgrid-global-unsubscribes.csv",), "olle.berg@example.se", "unsubscribe"),
        ("mailchimp", ("mailchimp-unsubscribed.csv",), "olle.berg@example.se", "complaint"),
        ("mailchimp", ("mailchimp-cleaned.csv",), "per.karlsson@example.se", "hard_bounce"),
        ("sendgrid", ("sendgrid-spam-reports.csv",), "spaced.out@example.com", "complaint"),
        ("sendgrid", ("sendgrid-bounces.csv",), "gone@example.com", "hard_bounce"),
        ("ses", ("ses-suppressed-destinations.json",), "manually.added@example.com", "hard_bounce"),
        ("postmark", ("postmark-suppressions-dump.json",), "abuse.trap@example.org", "manual"),
    ],
)
def test_each_format_adds_its_opt_outs_with_a_reconcile_source(
    rt: Runtime, tmp_path: Path, fmt: str, files: tuple[str, ...], email: str, reason: str
) -> None:
    folder = folder_with(tmp_path, "esp", *files)
    settings = Settings(tmp_path / "reports", (SourceSpec("esp", folder, fmt, "news", None),))
    report = run(rt, settings)
    assert report.ok, report.errors
    found = verdict(rt, email, "news")
    assert not found.allowed
    assert found.hits[0].reason == reason
    with rt.db.begin(write=False) as session:
        sources = set(session.scalars(select(Suppression.source)).all())
    assert sources == {"reconcile:esp"}
    assert verdict(rt, email, "offers").allowed


def test_same_folder_twice_adds_nothing(rt: Runtime, tmp_path: Path) -> None:
    folder = folder_with(
        tmp_path, "sg", "sendgrid-bounces.csv", "sendgrid-spam-reports.csv", "sendgrid-blocks.csv"
    )
    settings = Settings(tmp_path / "r", (SourceSpec("sg", folder, "sendgrid", "global", None),))
    first = run(rt, settings).summary()
    rows, events = count(rt, Suppression), count(rt, AuditEvent)
    assert first["sources"]["sg"]["added"] == rows == 15
    # The same content under another name is the same file.
    shutil.copy(folder / "sendgrid-blocks.csv", folder / "sendgrid-blocks-again.csv")
    second = run(rt, settings, NOW + timedelta(days=1), "2026-11-26").summary()
    assert second["sources"]["sg"] == {
        "files": 4,
        "already_applied": 4,
        "rows": 0,
        "added": 0,
        "existing": 0,
        "invalid": 0,
    }
    assert (count(rt, Suppression), count(rt, AuditEvent)) == (rows, events)
    assert count(rt, ReconcileFile) == 3


def test_a_source_never_removes_and_overlapping_files_only_count_existing(
    rt: Runtime, tmp_path: Path
) -> None:
    with rt.db.begin() as session:
        suppressions.add(
            session,
            addresses.address_target(rt.ring, "kept@example.se"),
            "news",
            Reason.objection,
            source="api",
            actor="test",
            now=NOW,
        )
    folder = folder_with(tmp_path, "sg", "sendgrid-global-unsubscribes.csv")
    settings = Settings(tmp_path / "r", (SourceSpec("sg", folder, "sendgrid", "news", None),))
    run(rt, settings)
    (folder / "sendgrid-global-unsubscribes.csv").unlink()
    (folder / "unsubscribes-2.csv").write_text("email,created\r\nANNA.LIND@example.se,1\r\n")
    report = run(rt, settings, NOW + timedelta(days=1), "2026-11-26")
    assert report.files[0].existing == 1 and report.files[0].added == 0
    assert count(rt, Suppression) == 6
    assert not verdict(rt, "kept@example.se", "news").allowed


def test_invalid_and_undecodable_rows_are_reported_by_line_without_addresses(
    rt: Runtime, tmp_path: Path
) -> None:
    folder = folder_with(tmp_path, "inv", "sendgrid-invalid-emails.csv")
    (folder / "unsubscribes-latin1.csv").write_bytes(
        b"email,created\r\nbj\xf6rn@example.se,1\r\nok@example.se,2\r\n"
    )
    settings = Settings(tmp_path / "r", (SourceSpec("inv", folder, "sendgrid", "news", None),))
    summary = run(rt, settings).summary()
    by_file = {f["file"]: f for f in summary["files"]}
    invalid = by_file["sendgrid-invalid-emails.csv"]
    # Only Mixed.Case@Example.ORG is a usable address.
    assert (invalid["added"], invalid["invalid"]) == (1, 4)
    assert [p.split(":")[0] for p in invalid["problems"]] == [
        "line 2",
        "line 3",
        "line 4",
        "line 6",
    ]
    latin1 = by_file["unsubscribes-latin1.csv"]
    assert latin1["added"] == 1
    assert latin1["problems"] == ["line 2: the address is not valid UTF-8; row skipped"]
    assert "@" not in json.dumps(summary)


def test_unreadable_file_fails_alone_and_is_retried(rt: Runtime, tmp_path: Path) -> None:
    folder = folder_with(tmp_path, "pm", "postmark-suppressions-dump.json")
    (folder / "broken.json").write_text('{"Suppressions": [')
    settings = Settings(tmp_path / "r", (SourceSpec("pm", folder, "postmark", "news", None),))
    report = run(rt, settings)
    assert [f.status for f in report.files] == ["failed", "applied"]
    assert report.errors and "line 1" in report.errors[0]
    (folder / "broken.json").write_text('{"Suppressions": []}')
    assert [f.status for f in run(rt, settings).files] == ["applied", "already_applied"]


def test_soft_bounces_expire_and_expire_removes_them_with_audit_events(
    rt: Runtime, tmp_path: Path
) -> None:
    folder = folder_with(tmp_path, "sg", "sendgrid-blocks.csv", "sendgrid-global-unsubscribes.csv")
    settings = Settings(
        tmp_path / "r", (SourceSpec("sg", folder, "sendgrid", "news", None),), soft_bounce_days=7
    )
    run(rt, settings)
    with rt.db.begin() as session:
        assert expire(session, now=NOW + timedelta(days=6)).removed == 0
    with rt.db.begin() as session:
        report = expire(session, now=NOW + timedelta(days=7))
    assert report.removed == 5 and report.reasons == {"soft_bounce": 5}
    assert count(rt, Suppression) == 5
    with rt.db.begin(write=False) as session:
        events = session.scalars(select(AuditEvent).where(AuditEvent.action == "expire")).all()
        assert len(events) == 5 and {e.actor for e in events} == {"job:expire"}
        assert audit.verify(session).ok


def crm_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "crm.csv"
    path.write_text(text, encoding="utf-8")
    return path


def test_crm_audit_names_contacts_by_id_with_reason_and_scope(rt: Runtime, tmp_path: Path) -> None:
    with rt.db.begin() as session:
        for target, list_name, reason in (
            (addresses.address_target(rt.ring, "anna@example.se"), "news", Reason.unsubscribe),
            (addresses.address_target(rt.ring, "bo@example.se"), "global", Reason.objection),
            (addresses.domain_target(rt.ring, "example.org"), "news", Reason.manual),
        ):
            suppressions.add(
                session, target, list_name, reason, source="api", actor="test", now=NOW
            )
    path = crm_file(
        tmp_path,
        "id,name,email\r\n"
        "c1,Anna,Anna+x@Example.se\r\n"
        "c2,Bo,bo@example.se\r\n"
        "c3,Cecilia,cecilia@example.se\r\n"
        "c4,Dan,dan@sub.example.org\r\n"
        "c5,Eva,not-an-address\r\n",
    )
    with rt.db.begin() as session:
        report = audit_contacts(
            session,
            rt.ring,
            AuditSpec("crm-news", path, "news"),
            now=NOW,
            run_key="2026-11-25",
            reports_folder=tmp_path / "reports",
        )
    assert (report.checked, report.remove, report.invalid) == (5, 4, 1)
    csv_text = Path(report.csv_path).read_text()
    rows = list(csv.DictReader(csv_text.splitlines()))
    assert [(r["row"], r["reason"], r["scope"], r["kind"]) for r in rows] == [
        ("c1", "unsubscribe", "news", "address"),
        ("c2", "objection", "global", "address"),
        ("c4", "manual", "news", "domain"),
        ("c5", "invalid_email", "-", "invalid"),
    ]
    document = json.loads(Path(report.json_path).read_text())
    assert [r["row"] for r in document["remove"]] == ["c1", "c2", "c4", "c5"]
    assert Path(report.csv_path).name == "crm-news-2026-11-25.csv"
    for text in (csv_text, Path(report.json_path).read_text()):
        assert "@" not in text


def test_crm_audit_without_id_uses_line_numbers_and_never_adds_an_address(
    rt: Runtime, tmp_path: Path
) -> None:
    with rt.db.begin() as session:
        suppressions.add(
            session,
            addresses.address_target(rt.ring, "anna@example.se"),
            "news",
            Reason.unsubscribe,
            source="api",
            actor="test",
            now=NOW,
        )
    # No id column: the first column holds the addresses and rows are named by line.
    path = crm_file(tmp_path, "kontakt,namn\nbo@example.se,Bo\nANNA@example.se,Anna\n")
    with rt.db.begin() as session:
        report = audit_contacts(
            session,
            rt.ring,
            AuditSpec("crm", path, "news"),
            now=NOW,
            run_key="manual:20261125T013000Z:ab12",
            reports_folder=tmp_path / "reports",
        )
    rows = list(csv.DictReader(Path(report.csv_path).read_text().splitlines()))
    assert [(r["row"], r["line"]) for r in rows] == [("3", "3")]
    assert "@" not in Path(report.json_path).read_text()


@pytest.mark.parametrize(
    "text",
    [
        "id,email\nanna@example.se,anna@example.se\nbo@example.se,bo@example.se\n",
        "id\nanna@example.se\nbo@example.se\n",  # the id column is the address column
        'id,email\nc1,anna@example.se\n=HYPERLINK("mailto:bo@example.se"),bo@example.se\n',
    ],
)
def test_crm_audit_refuses_an_id_column_holding_addresses_and_writes_no_report(
    rt: Runtime, tmp_path: Path, text: str
) -> None:
    with rt.db.begin() as session:
        suppressions.add(
            session,
            addresses.address_target(rt.ring, "bo@example.se"),
            "news",
            Reason.unsubscribe,
            source="api",
            actor="test",
            now=NOW,
        )
    path = crm_file(tmp_path, text)
    report = run(rt, Settings(tmp_path / "reports", (), (AuditSpec("crm", path, "news"),)))
    assert not report.ok and report.audits == ()
    summary = report.summary()
    (error,) = summary["errors"]
    line = 3 if text.startswith("id,email\nc1") else 2
    assert error.startswith(f"audit crm: line {line}: the id column holds an email address")
    assert "no report was written" in error
    assert "@" not in json.dumps(summary)
    assert summary["reports"] == [] and not (tmp_path / "reports").exists()


def test_crm_audit_csv_neutralises_formula_leading_ids_as_the_export_does(
    rt: Runtime, tmp_path: Path
) -> None:
    ids = ["=1+2", "+46701234567", "-2", "@SUM(A1)", "\t=cmd|' /C calc'!A0", "c6"]
    with rt.db.begin() as session:
        suppressions.add(
            session,
            addresses.domain_target(rt.ring, "example.se"),
            "news",
            Reason.manual,
            source="api",
            actor="test",
            now=NOW,
        )
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["id", "email"])
    writer.writerows([ident, f"p{n}@example.se"] for n, ident in enumerate(ids))
    path = crm_file(tmp_path, out.getvalue())
    with rt.db.begin() as session:
        report = audit_contacts(
            session,
            rt.ring,
            AuditSpec("crm", path, "news"),
            now=NOW,
            run_key="2026-11-25",
            reports_folder=tmp_path / "reports",
        )
    assert report.remove == len(ids)
    rows = list(csv.DictReader(Path(report.csv_path).read_text().splitlines()))
    assert [r["row"] for r in rows] == [
        "'=1+2",
        "'+46701234567",
        "'-2",
        "'@SUM(A1)",
        "'=cmd|' /C calc'!A0",  # surrounding whitespace is trimmed on reading
        "c6",
    ]
    assert [r["row"] for r in rows] == [neutralize(r.strip()) for r in ids]
    # The JSON is for programs, which match it against the CRM: the identifiers as given.
    document = json.loads(Path(report.json_path).read_text())
    assert [r["row"] for r in document["remove"]] == [r.strip() for r in ids]


def test_reconcile_runs_audits_after_sources_and_lists_report_paths(
    rt: Runtime, tmp_path: Path
) -> None:
    folder = folder_with(tmp_path, "mc", "mailchimp-unsubscribed.csv")
    path = crm_file(tmp_path, "id,email\n1,lisa.holm@example.se\n2,someone@example.com\n")
    settings = Settings(
        tmp_path / "reports",
        (SourceSpec("mc", folder, "mailchimp", "news", None),),
        (AuditSpec("crm", path, "news"),),
    )
    summary = run(rt, settings).summary()
    assert summary["audits"][0]["remove"] == 1
    assert summary["reports"] == [
        str(tmp_path / "reports" / "crm-2026-11-25.csv"),
        str(tmp_path / "reports" / "crm-2026-11-25.json"),
    ]
    assert summary["reasons"] == {"unsubscribe": 4, "complaint": 1, "manual": 1}


def test_a_new_reports_folder_and_instance_folder_are_private(rt: Runtime, tmp_path: Path) -> None:
    import os
    import stat

    path = crm_file(tmp_path, "id,email\n1,someone@example.com\n")
    reports = tmp_path / "instance" / "reports"
    settings = Settings(reports, (), (AuditSpec("crm", path, "news"),))
    old = os.umask(0o022)
    try:
        assert run(rt, settings).summary()["reports"]
    finally:
        os.umask(old)
    assert stat.S_IMODE(reports.stat().st_mode) == 0o700
    assert stat.S_IMODE(reports.parent.stat().st_mode) == 0o700


def test_settings_resolve_paths_and_reasons(tmp_path: Path) -> None:
    good = settings_from(
        ReconcileSettings.model_validate(
            {
                "reports_folder": str(tmp_path / "r"),
                "sources": [
                    {"name": "sg", "folder": str(tmp_path), "format": "sendgrid", "list": "news"},
                    {"name": "gen", "folder": "rel", "list": "news", "reason": "complaint"},
                ],
                "audits": [{"name": "crm", "file": str(tmp_path / "c.csv"), "list": "news"}],
            }
        ),
        tmp_path,
    )
    assert good.reports_folder == (tmp_path / "r").resolve()
    assert good.sources[0] == SourceSpec("sg", tmp_path.resolve(), "sendgrid", "news", None)
    assert good.sources[1].reason is Reason.complaint
    assert good.sources[1].folder == (Path.cwd() / "rel").resolve()
    assert good.audits[0] == AuditSpec("crm", (tmp_path / "c.csv").resolve(), "news")
    default = settings_from(ReconcileSettings(), tmp_path)
    assert default.reports_folder == (tmp_path / "reports").resolve()
    assert (default.sources, default.audits, default.soft_bounce_days) == ((), (), 30)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (
            {"sources": [{"name": "sg", "folder": "x", "format": "mailgun", "list": "news"}]},
            "[[reconcile.sources]] #1 format: must be 'generic', 'mailchimp', 'sendgrid', 'ses'",
        ),
        (
            {"sources": [{"name": "sg", "folder": "x", "list": "News!"}]},
            "[[reconcile.sources]] #1 list: list names are 1-64 characters",
        ),
        (
            {"sources": [{"name": "sg", "folder": "x", "list": "news", "reason": "bored"}]},
            "[[reconcile.sources]] #1 reason: must be empty or one of unsubscribe,",
        ),
        (
            {"sources": [{"name": "sg", "folder": "", "list": "news"}]},
            "[[reconcile.sources]] #1 folder: must not be empty",
        ),
        (
            {
                "sources": [
                    {"name": "a", "folder": "x", "list": "n"},
                    {"name": "a", "folder": "y", "list": "n"},
                ]
            },
            "[[reconcile.sources]] #2 name: 'a' appears twice",
        ),
        (
            {"audits": [{"name": "crm", "list": "news"}]},
            "[[reconcile.audits]] #1 file: required",
        ),
        (
            {"audits": [{"name": "CRM!", "file": "c.csv", "list": "news"}]},
            "[[reconcile.audits]] #1 name: must be 1-32 characters of a-z",
        ),
        ({"soft_bounce_days": 0}, "[reconcile] soft_bounce_days: must be at least 1, not 0"),
    ],
)
def test_bad_settings_are_refused_at_start_with_the_key_at_fault(
    tmp_path: Path, bad: dict[str, object], message: str
) -> None:
    from .conftest import settings as overrides

    with pytest.raises(ConfigError) as refused:
        Runtime.load(overrides(f"sqlite:///{tmp_path / 'x.db'}", tmp_path, reconcile=bad))
    assert refused.value.problems == (refused.value.message,)
    assert refused.value.message.startswith(message)


NEEDLES = ("lisa.holm", "nosuchuser", "olle.berg", "per.karlsson", "erik.svensson", "gone@")


def test_a_whole_reconcile_run_stores_no_plaintext_address(db_url: str, tmp_path: Path) -> None:
    from sqlalchemy import create_engine, inspect, text

    from .conftest import settings as overrides

    fixtures = sorted(p.name for p in ESP.iterdir() if p.suffix in (".csv", ".json", ".jsonl"))
    sources = []
    for fmt, prefix in (
        ("mailchimp", "mailchimp"),
        ("sendgrid", "sendgrid"),
        ("ses", "ses"),
        ("postmark", "postmark"),
    ):
        folder = folder_with(tmp_path, fmt, *(f for f in fixtures if f.startswith(prefix)))
        sources.append({"name": fmt, "folder": str(folder), "format": fmt, "list": "news"})
    crm = crm_file(tmp_path, "id,email\nc1,lisa.holm@example.se\nc2,bad@@example.se\n")
    runtime = Runtime.load(
        overrides(
            db_url,
            tmp_path,
            reconcile={
                "reports_folder": str(tmp_path / "reports"),
                "sources": sources,
                "audits": [{"name": "crm", "file": str(crm), "list": "news"}],
            },
        )
    )
    try:
        outcome = jobs.run_job(runtime, "reconcile", "2026-11-25", wait=5)
        assert outcome.status == "ok", outcome.run["summary"]["errors"]
        sendgrid = outcome.run["summary"]["sources"]["sendgrid"]
        assert (sendgrid["files"], sendgrid["added"] + sendgrid["existing"]) == (6, 26)
    finally:
        runtime.db.dispose()
    if runtime.db.is_sqlite:
        blobs = [p.read_bytes() for p in tmp_path.glob("suppress.db*")]
    else:
        engine = create_engine(db_url)
        with engine.connect() as conn:
            blobs = [
                "\n".join(
                    conn.execute(text(f'SELECT CAST(t AS text) FROM "{table}" t')).scalars()
                ).encode()
                for table in inspect(conn).get_table_names()
            ]
        engine.dispose()
    assert blobs
    for blob in blobs:
        for needle in NEEDLES:
            assert needle.encode() not in blob.lower()
