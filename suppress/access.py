"""Access and portability: everything kept about one address, and the whole list as a stream."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from . import audit, clock, rights
from .addresses import SCHEME, Target
from .errors import InvalidRequest, PepperMissing
from .models import Suppression
from .suppressions import describe, require_peppers

FORMATS = ("ndjson", "csv")
EXPORT_FIELDS = (
    "id",
    "digest",
    "key_id",
    "scheme",
    "kind",
    "list",
    "reason",
    "source",
    "created_at",
    "expires_at",
)
# Spreadsheets run a cell that starts with one of these as a formula (CSV injection, OWASP).
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
_BATCH = 1000
_CHUNK = 64 * 1024


def lookup(
    session: Session,
    target: Target,
    *,
    actor: str,
    zone: ZoneInfo,
    reference: str | None = None,
    now: datetime | None = None,
    download: bool = False,
) -> dict[str, Any]:
    """Digests, suppression rows, data-subject requests and audit events about an address,
    for its data subject.

    Domain suppressions that cover the address are included (they decide its verdicts).
    The lookup itself is recorded, with the request's reference (a ticket number), so the
    trail shows who accessed whose data and when a request was answered. `zone` is the
    compliance time zone the requests' deadlines are kept in. `download` marks a lookup
    whose answer left as a file (a copy handed over for a portability request) rather
    than shown on a page.
    """
    now = now or clock.utcnow()
    # An answer that leaves out rows under a pepper we lack would tell a person nothing is
    # kept when something is: refuse instead (503 pepper_missing), as the gate does.
    held = {d.key_id for d in target.digests}
    require_peppers(session, held)
    missing = [k for k in rights.key_ids(session) if k not in held]
    if missing:
        raise PepperMissing(
            f"data-subject requests exist under pepper(s) {', '.join(missing)} that are not "
            "configured: a lookup would miss them; put the pepper(s) back in SUPPRESS_PEPPERS"
        )
    requests = rights.about(session, target, actor=actor, now=now)
    keyed: list[dict[str, Any]] = [
        {"kind": "address", "key_id": d.key_id, "digest": d.value.hex()} for d in target.digests
    ]
    for level, group in enumerate(target.domain_digests):
        # level 0 is the address's own domain, 1 its parent, ...: no domain name in clear.
        keyed += [
            {"kind": "domain", "level": level, "key_id": d.key_id, "digest": d.value.hex()}
            for d in group
        ]
    key_of = {bytes.fromhex(k["digest"]): k["key_id"] for k in keyed}
    rows = session.scalars(
        select(Suppression).where(Suppression.digest.in_(list(key_of))).order_by(Suppression.id)
    ).all()
    events = audit.about(session, list(key_of))
    result = {
        "scheme": SCHEME,
        "active_key_id": target.active.key_id,
        "digests": keyed,
        "suppressions": [describe(row) for row in rows],
        "events": [{**audit.describe(e), "key_id": key_of.get(e.digest or b"")} for e in events],
        "requests": rights.describe_all(requests, rights.today(zone, now)),
    }
    audit.record(
        session,
        "lookup",
        actor=actor,
        digest=target.active.value,
        kind=target.kind,
        detail={
            "suppressions": len(rows),
            "events": len(events),
            "requests": len(requests),
            "reference": reference,
            **({"download": True} if download else {}),
        },
        at=now,
    )
    return result


def parse_format(value: Any) -> str:
    """An export format by name, or InvalidRequest naming the valid ones."""
    if value not in FORMATS:
        raise InvalidRequest(f"format must be one of: {', '.join(FORMATS)}")
    return str(value)


def record_export(session: Session, fmt: str, *, actor: str) -> None:
    """Note in the trail who took a copy of the whole list, before it is streamed."""
    audit.record(session, "export", actor=actor, detail={"format": fmt})


def rows(session: Session) -> Iterator[Any]:
    """Every suppression in id order, streamed from one statement (one consistent snapshot).

    Plain rows with a Suppression's columns, not ORM objects: no identity map to fill, and
    several times faster. yield_per streams them (a server-side cursor on PostgreSQL), so
    memory stays constant however long the list is.
    """
    columns = [getattr(Suppression, name) for name in EXPORT_FIELDS]
    yield from session.execute(
        select(*columns).order_by(Suppression.id).execution_options(yield_per=_BATCH)
    )


def neutralize(cell: str) -> str:
    """A CSV cell that a spreadsheet shows as text, never runs as a formula."""
    return "'" + cell if cell.startswith(FORMULA_PREFIXES) else cell


def _csv_line(values: Iterable[Any]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerow(
        neutralize("" if v is None else str(v)) for v in values
    )
    return buffer.getvalue()


def _lines(suppressions: Iterable[Any], fmt: str) -> Iterator[str]:
    if fmt == "csv":
        yield _csv_line(EXPORT_FIELDS)
    for row in suppressions:
        described = describe(row)
        if fmt == "csv":
            yield _csv_line(described[f] for f in EXPORT_FIELDS)
        else:
            yield json.dumps(described, separators=(",", ":")) + "\n"


def render(suppressions: Iterable[Any], fmt: str) -> Iterator[str]:
    """The export as text chunks of about 64 KiB: NDJSON, or CSV with a header line."""
    chunk: list[str] = []
    size = 0
    for line in _lines(suppressions, fmt):
        chunk.append(line)
        size += len(line)
        if size >= _CHUNK:
            yield "".join(chunk)
            chunk, size = [], 0
    if chunk:
        yield "".join(chunk)
