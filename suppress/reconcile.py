"""The nightly jobs as plain functions with an injected clock: reconcile, audit, expire.

Each returns a frozen report. Reconciliation adds what the mailing tools know and never
removes anything; a file is remembered by the SHA-256 of its bytes so it is applied once.
CRM audits write reports that name contacts only by the input file's row identifiers.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from . import addresses, files, sources, suppressions
from .access import neutralize
from .addresses import KeyRing
from .errors import ConfigError, InvalidEmail, SuppressError
from .models import Reason, ReconcileFile
from .settings import ReconcileSettings

Transactions = Callable[[], AbstractContextManager[Session]]
# Rows per write transaction: short enough that API writers on SQLite never wait long for
# the write lock; adds are idempotent, so a run killed between chunks loses nothing.
CHUNK = 500
CHECK_BATCH = 500
IGNORED_SUFFIXES = (".tmp", ".part", ".partial", ".crdownload", "~")
MAX_ERRORS = 50


@dataclass(frozen=True)
class SourceSpec:
    """One `[[reconcile.sources]]` entry."""

    name: str
    folder: Path
    format: str
    list: str
    reason: Reason | None


@dataclass(frozen=True)
class AuditSpec:
    """One `[[reconcile.audits]]` entry: a CRM export checked against a list."""

    name: str
    file: Path
    list: str


@dataclass(frozen=True)
class Settings:
    """The validated `[reconcile]` section."""

    reports_folder: Path
    sources: tuple[SourceSpec, ...] = ()
    audits: tuple[AuditSpec, ...] = ()
    soft_bounce_days: int = 30


def _path(value: str) -> Path:
    return Path(value).expanduser().resolve()


def settings_from(section: ReconcileSettings, instance_dir: Path) -> Settings:
    """The `[reconcile]` section (validated with the configuration) with its paths resolved
    from the current working directory, and reports in <instance_dir>/reports by default."""
    return Settings(
        reports_folder=_path(section.reports_folder or str(instance_dir / "reports")),
        sources=tuple(
            SourceSpec(
                name=item.name,
                folder=_path(item.folder),
                format=item.format,
                list=item.list,
                reason=Reason(item.reason) if item.reason else None,
            )
            for item in section.sources
        ),
        audits=tuple(
            AuditSpec(name=item.name, file=_path(item.file), list=item.list)
            for item in section.audits
        ),
        soft_bounce_days=section.soft_bounce_days,
    )


# --- reports ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class FileReport:
    """What one source file contributed."""

    source: str
    file: str
    sha256: str
    status: str  # applied | already_applied | ignored | failed
    flavour: str = ""
    rows: int = 0
    added: int = 0
    existing: int = 0
    invalid: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    problems: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "problems": list(self.problems)}


@dataclass(frozen=True)
class AuditReport:
    """The outcome of checking one CRM export against a list."""

    name: str
    list: str
    checked: int
    remove: int
    invalid: int
    csv_path: str
    json_path: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "list": self.list,
            "checked": self.checked,
            "remove": self.remove,
            "invalid": self.invalid,
            "reports": [self.csv_path, self.json_path],
        }


@dataclass(frozen=True)
class ReconcileReport:
    """A whole reconcile run: files per source, audits, and errors (no addresses)."""

    files: tuple[FileReport, ...]
    audits: tuple[AuditReport, ...]
    errors: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.errors

    def summary(self) -> dict[str, Any]:
        """Counts per source and per reason, report paths and errors: stored in job_run."""
        per_source: dict[str, Counter[str]] = {}
        per_reason: Counter[str] = Counter()
        for report in self.files:
            counts = per_source.setdefault(report.source, Counter())
            counts["files"] += 1
            counts[report.status] += 1
            for key in ("rows", "added", "existing", "invalid"):
                counts[key] += getattr(report, key)
            per_reason.update(report.reasons)
        return {
            "sources": {name: dict(counts) for name, counts in per_source.items()},
            "reasons": dict(per_reason),
            "files": [r.to_dict() for r in self.files if r.status != "already_applied"],
            "audits": [a.to_dict() for a in self.audits],
            "reports": [p for a in self.audits for p in (a.csv_path, a.json_path)],
            "errors": list(self.errors),
        }


# --- sources -----------------------------------------------------------------------------


def source_files(folder: Path) -> list[Path]:
    """The files of a source folder in name order, skipping hidden and partial downloads."""
    if not folder.is_dir():
        raise ConfigError(f"source folder {folder} does not exist or is not a folder")
    return sorted(
        p
        for p in folder.iterdir()
        if not p.name.startswith(".") and not p.name.endswith(IGNORED_SUFFIXES) and not p.is_dir()
    )


def _safe_name(name: str) -> str:
    # File names go into the database and reports: never one that looks like an address.
    return "(file name withheld)" if addresses.contains_address(name) else name[:255]


def _chunks(items: tuple[sources.Entry, ...], size: int) -> Iterator[tuple[sources.Entry, ...]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def apply_file(
    begin: Transactions,
    ring: KeyRing,
    spec: SourceSpec,
    path: Path,
    *,
    now: datetime,
    actor: str,
    soft_bounce_days: int = 30,
) -> FileReport:
    """Apply one source file once: its opt-outs are added, the file remembered by hash."""
    data = path.read_bytes()
    digest = hashlib.sha256(data).digest()
    name = _safe_name(path.name)

    def report(status: str, **counts: Any) -> FileReport:
        return FileReport(spec.name, name, digest.hex(), status, **counts)

    with begin() as session:
        if _already(session, spec.name, digest):
            return report("already_applied")
    try:
        parsed = sources.parse(spec.format, path.name, data, reason=spec.reason)
    except SuppressError as exc:
        return report("failed", problems=(exc.message,))
    problems = [str(p) for p in parsed.problems]
    counts = {"added": 0, "existing": 0, "invalid": 0}
    reasons: Counter[str] = Counter()
    source = f"reconcile:{spec.name}"
    entries = parsed.entries
    chunks = list(_chunks(entries, CHUNK)) or [()]
    for index, chunk in enumerate(chunks):
        with begin() as session:
            if index == 0 and _already(session, spec.name, digest):
                return report("already_applied")
            for entry in chunk:
                try:
                    target = addresses.address_target(ring, entry.address)
                except InvalidEmail:
                    counts["invalid"] += 1
                    if len(problems) < sources.MAX_PROBLEMS:
                        problems.append(f"line {entry.line}: not a valid address; row skipped")
                    continue
                expires = (
                    now + timedelta(days=soft_bounce_days)
                    if entry.reason is Reason.soft_bounce
                    else None
                )
                _row, created = suppressions.add(
                    session,
                    target,
                    spec.list,
                    entry.reason,
                    source=source,
                    actor=actor,
                    now=now,
                    expires_at=expires,
                )
                counts["added" if created else "existing"] += 1
                reasons[entry.reason.value] += 1
            if index == len(chunks) - 1:
                session.add(
                    ReconcileFile(
                        source=spec.name,
                        content_hash=digest,
                        name=name,
                        rows=len(entries),
                        added=counts["added"],
                        processed_at=now,
                    )
                )
    return report(
        "ignored" if parsed.ignored else "applied",
        flavour=parsed.flavour,
        rows=len(entries),
        reasons=dict(reasons),
        problems=tuple(problems),
        **counts,
    )


def _already(session: Session, source: str, digest: bytes) -> bool:
    return (
        session.scalar(
            select(ReconcileFile.id).where(
                ReconcileFile.source == source, ReconcileFile.content_hash == digest
            )
        )
        is not None
    )


# --- audits ----------------------------------------------------------------------------------


def _write_atomically(path: Path, text: str) -> None:
    files.private_dir(path.parent)  # by default inside the instance folder, which it may create
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8", newline="")
    os.replace(tmp, path)


def report_stem(name: str, run_key: str) -> str:
    """A report's file name without suffix: audit name and run key, safe for any filesystem."""
    return f"{name}-{re.sub(r'[^A-Za-z0-9_.-]+', '-', run_key).strip('-')}"


def audit_contacts(
    session: Session,
    ring: KeyRing,
    spec: AuditSpec,
    *,
    now: datetime,
    run_key: str,
    reports_folder: Path,
) -> AuditReport:
    """Check a CRM export against a list; write CSV and JSON reports of contacts to remove.

    Contacts are named by the input's row identifiers only, and a file whose id column holds
    addresses is refused whole (SourceError, no report): a report never holds an address.
    """
    try:
        data = spec.file.read_bytes()
    except OSError as exc:
        raise sources.SourceError(f"audit {spec.name}: cannot read file ({exc.strerror})") from None
    contacts, problems = sources.contacts(data)
    for contact in contacts:
        if addresses.contains_address(contact.row):
            raise sources.SourceError(
                f"line {contact.line}: the id column holds an email address, and reports never "
                "hold one; no report was written for this file: export a CRM id that is not "
                "an address, or no id column (contacts are then named by line)"
            )
    remove: list[dict[str, Any]] = []
    invalid = 0
    for start in range(0, len(contacts), CHECK_BATCH):
        batch = contacts[start : start + CHECK_BATCH]
        targets: list[tuple[sources.Contact, addresses.Target]] = []
        for contact in batch:
            try:
                targets.append((contact, addresses.address_target(ring, contact.address)))
            except InvalidEmail:
                # Fail closed: an address we cannot check must not stay in a marketing segment.
                invalid += 1
                remove.append(_removal(contact, "invalid_email", "-", "invalid"))
        verdicts = suppressions.check_many(session, [t for _, t in targets], spec.list, now=now)
        for (contact, _target), verdict in zip(targets, verdicts, strict=True):
            if not verdict.allowed:
                hit = verdict.hits[0]
                remove.append(_removal(contact, hit.reason, hit.scope, hit.kind))
    remove.sort(key=lambda r: r["line"])
    stem = report_stem(spec.name, run_key)
    csv_path = Path(reports_folder) / f"{stem}.csv"
    json_path = Path(reports_folder) / f"{stem}.json"
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(["row", "line", "reason", "scope", "kind"])
    for item in remove:
        # The identifier is the CRM's text; the other cells are ours.
        cells = [neutralize(item["row"]), item["line"], item["reason"], item["scope"], item["kind"]]
        writer.writerow(cells)
    _write_atomically(csv_path, out.getvalue())
    document = {
        "audit": spec.name,
        "list": spec.list,
        "file": _safe_name(spec.file.name),
        "sha256": hashlib.sha256(data).hexdigest(),
        "generated_at": now.isoformat(timespec="seconds") + "Z",
        "run_key": run_key,
        "checked": len(contacts),
        "remove": remove,
        "problems": [str(p) for p in problems[:MAX_ERRORS]],
    }
    _write_atomically(json_path, json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    return AuditReport(
        spec.name, spec.list, len(contacts), len(remove), invalid, str(csv_path), str(json_path)
    )


def _removal(contact: sources.Contact, reason: str, scope: str, kind: str) -> dict[str, Any]:
    return {
        "row": contact.row,
        "line": contact.line,
        "reason": reason,
        "scope": scope,
        "kind": kind,
    }


# --- the job -------------------------------------------------------------------------------------


def reconcile(
    begin: Transactions,
    ring: KeyRing,
    settings: Settings,
    *,
    now: datetime,
    run_key: str,
    actor: str = "job:reconcile",
) -> ReconcileReport:
    """Pull every source folder in, then audit every CRM export; one source failing
    does not stop the others (its error is in the report)."""
    files: list[FileReport] = []
    audits: list[AuditReport] = []
    errors: list[str] = []
    for spec in settings.sources:
        try:
            paths = source_files(spec.folder)
        except SuppressError as exc:
            errors.append(f"source {spec.name}: {exc.message}")
            continue
        for path in paths:
            try:
                report = apply_file(
                    begin,
                    ring,
                    spec,
                    path,
                    now=now,
                    actor=actor,
                    soft_bounce_days=settings.soft_bounce_days,
                )
            except OSError as exc:
                report = FileReport(
                    spec.name, _safe_name(path.name), "", "failed", problems=(str(exc.strerror),)
                )
            files.append(report)
            if report.status == "failed":
                errors.append(f"source {spec.name}, file {report.file}: {report.problems[0]}")
    for audit_spec in settings.audits:
        try:
            with begin() as session:
                audits.append(
                    audit_contacts(
                        session,
                        ring,
                        audit_spec,
                        now=now,
                        run_key=run_key,
                        reports_folder=settings.reports_folder,
                    )
                )
        except SuppressError as exc:
            errors.append(f"audit {audit_spec.name}: {exc.message}")
    return ReconcileReport(tuple(files), tuple(audits), tuple(errors[:MAX_ERRORS]))
