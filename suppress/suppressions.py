"""The suppression list: add, remove and check; takes a Session, flushes, never commits."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import Connection, delete, select
from sqlalchemy.orm import Session

from . import audit, peppers
from .addresses import SCHEME, Digest, Target, contains_address
from .db import insert_rows
from .errors import ErrorCode, InvalidList, InvalidRequest, NotFound, PepperMissing, Unprocessable
from .models import GLOBAL_LIST, LIST_PATTERN, Kind, Reason, Suppression

_LIST = re.compile(LIST_PATTERN)
TEMPORARY_REASONS = frozenset({Reason.hard_bounce, Reason.soft_bounce})
MAX_TEXT = 128
LIST_RULE = "list names are 1-64 characters of a-z, 0-9 and ._:- starting with a letter or digit"


def validate_list(name: Any) -> str:
    """A list name as DESIGN §4 allows it, or InvalidList."""
    if not isinstance(name, str) or not _LIST.fullmatch(name):
        raise InvalidList(LIST_RULE)
    return name


def unknown_reason() -> Unprocessable:
    """The error for a reason that is none of ours, naming the valid ones."""
    return Unprocessable(
        f"unknown reason; use one of: {', '.join(r.value for r in Reason)}",
        code=ErrorCode.invalid_reason,
    )


def parse_reason(value: Any) -> Reason:
    """A reason by name, or an error naming the valid ones."""
    try:
        return Reason(value)
    except ValueError:
        raise unknown_reason() from None


def validate_text(name: str, value: Any, *, required: bool = True) -> str:
    """Short free text (source, evidence, removal reason): bounded and free of addresses."""
    if value is None and not required:
        return ""
    if not isinstance(value, str) or not value.strip():
        raise InvalidRequest(f"{name} is required and must be a non-empty string")
    if len(value) > MAX_TEXT:
        raise InvalidRequest(f"{name} must be at most {MAX_TEXT} printable characters")
    value = value.strip()
    if not value.isprintable():
        raise InvalidRequest(f"{name} must be at most {MAX_TEXT} printable characters")
    if contains_address(value):
        # The audit trail never holds a plaintext address: refer to evidence, don't paste it.
        raise InvalidRequest(f"{name} must not contain an email address; give a reference instead")
    return value


# Sources only the service itself writes: a reader's own opt-outs through their links. A
# reader may lift exactly those again (suppress.preferences), so no sender may claim them.
READER_SOURCES = frozenset({"one_click", "landing_page"})


def validate_source(value: Any) -> str:
    """A source a sender may give (API, import, CLI): free text, but not a reader's own."""
    source = validate_text("source", value)
    if source.lower() in READER_SOURCES:
        raise Unprocessable(
            f"source {source!r} is kept for opt-outs made by readers through their own links",
            code=ErrorCode.invalid_request,
        )
    return source


def claimed_source(current: str, new: str) -> str:
    """The source a row keeps when `new` records the same opt-out again (nothing stronger).

    A reader may lift only what they alone made through their links (READER_SOURCES): a
    sender recording an opt-out a reader already made takes the row over, so that it is the
    sender's too. Anything else leaves the row's source as it was.
    """
    return new if current in READER_SOURCES and new not in READER_SOURCES else current


def stronger_source(current: str, new: str) -> str:
    """The source a live row takes when `new` strengthens it: the new one, except that a
    reader's opt-out on a row a sender recorded leaves it the sender's."""
    return current if current not in READER_SOURCES and new in READER_SOURCES else new


@dataclass(frozen=True)
class Hit:
    """One active suppression that applies to a check: the reason for a verdict."""

    scope: str
    kind: str
    reason: str
    since: datetime

    def to_dict(self) -> dict[str, str]:
        return {
            "scope": self.scope,
            "kind": self.kind,
            "reason": self.reason,
            "since": self.since.isoformat(timespec="seconds") + "Z",
        }


@dataclass(frozen=True)
class Verdict:
    """The answer to "may we send direct marketing on this list to this address?"."""

    allowed: bool
    hits: tuple[Hit, ...]
    # Rows found under an old pepper: (row id, digest under the active key).
    stale: tuple[tuple[int, bytes], ...] = field(default=(), repr=False)


def _active_digest_map(target: Target) -> dict[bytes, bytes]:
    groups = (target.digests, *target.domain_digests)
    return {d.value: group[0].value for group in groups for d in group}


# Digests per IN list on SQLite (its limit is 32,766 parameters per statement) and per
# array on PostgreSQL: one round trip covers a whole batch of a few thousand recipients.
SQLITE_CHUNK = 10_000
POSTGRES_CHUNK = 50_000
ALLOWED = Verdict(allowed=True, hits=())


class Found(NamedTuple):
    """A suppression row as the batched lookups read it."""

    id: int
    digest: bytes
    key_id: str
    kind: Kind
    list: str
    reason: Reason
    created_at: datetime
    expires_at: datetime | None
    source: str


def _rows_by_digest(
    session: Session | Connection, digests: Iterable[bytes], where: str, *params: Any
) -> dict[bytes, list[Found]]:
    """Suppression rows whose digest is among the given ones (and `where`), a chunk a query.

    Plain SQL on the driver: with thousands of values per statement, building the statement
    through SQLAlchemy would cost more than running it. `where` uses "?" for parameters.
    """
    wanted = list(set(digests))
    connection = session.connection() if isinstance(session, Session) else session
    postgres = connection.dialect.name == "postgresql"
    columns = "id, digest, key_id, kind, list, reason, created_at, expires_at, source"
    if postgres:
        where = where.replace("?", "%s")
        params = tuple(p for p in params)
    else:
        # SQLite holds timestamps as SQLAlchemy's text format, which sorts like the time.
        params = tuple(
            p.strftime("%Y-%m-%d %H:%M:%S.%f") if isinstance(p, datetime) else p for p in params
        )
    chunk = POSTGRES_CHUNK if postgres else SQLITE_CHUNK
    found: dict[bytes, list[Found]] = {}
    for start in range(0, len(wanted), chunk):
        part = wanted[start : start + chunk]
        if postgres:
            # One text parameter of comma-separated hex, made a bytea[] by the server: cheaper
            # to send than a bytea[] parameter, and still one index probe per value.
            sql = (
                f"SELECT {columns} FROM suppression WHERE digest = ANY(ARRAY("
                "SELECT decode(h, 'hex') FROM unnest(string_to_array(%s, ',')) AS h)) "
                f"AND {where}"
            )
            args: tuple[Any, ...] = (",".join(d.hex() for d in part), *params)
        else:
            marks = ",".join("?" * len(part))
            sql = f"SELECT {columns} FROM suppression WHERE digest IN ({marks}) AND {where}"
            args = (*part, *params)
        for row in connection.exec_driver_sql(sql, args):
            created, expires = row[6], row[7]
            if isinstance(created, str):
                created = datetime.fromisoformat(created)
            if isinstance(expires, str):
                expires = datetime.fromisoformat(expires)
            item = Found(
                row[0],
                bytes(row[1]),
                row[2],
                Kind(row[3]),
                row[4],
                Reason(row[5]),
                created,
                expires,
                row[8],
            )
            found.setdefault(item.digest, []).append(item)
    return found


def require_peppers(session: Session | Connection, key_ids: set[str]) -> None:
    """Raise PepperMissing if a suppression row is keyed with a pepper outside key_ids.

    Asked in the same read as the verdict, so a row another instance writes under a pepper
    this one lacks stops this instance's very next check, not only its readiness probe.
    """
    missing = [k for k in peppers.key_ids_in_use(session) if k not in key_ids]
    if missing:
        raise PepperMissing(peppers.missing_message(missing))


def check_many(
    session: Session | Connection, targets: Sequence[Target], list_name: str, *, now: datetime
) -> list[Verdict]:
    """check() for a batch of address targets in a few round trips; verdicts in input order.

    Reads the database every time (no cache), so a suppression committed before the batch is
    read is never missed, on any instance. Refuses to decide (PepperMissing) while any row is
    keyed with a pepper the targets were not hashed under: such a row could be one of them.
    """
    if not targets:
        return []
    wanted: set[bytes] = set()
    for target in targets:
        wanted.update(d.value for d in target.digests)
        for group in target.domain_digests:
            wanted.update(d.value for d in group)
    found = rows_for(session, wanted, {d.key_id for d in targets[0].digests}, list_name, now=now)
    if not found:
        return [ALLOWED] * len(targets)
    return [verdict_of(target, found) for target in targets]


def rows_for(
    session: Session | Connection,
    digests: Iterable[bytes],
    key_ids: set[str],
    list_name: str,
    *,
    now: datetime,
) -> dict[bytes, list[Found]]:
    """The rows in force on the list (or `global`) whose digest is among `digests`, in one
    read; PepperMissing first while any row is keyed with a pepper outside key_ids (the
    digests were not computed under it, so such a row could be one of them)."""
    require_peppers(session, key_ids)
    return _rows_by_digest(
        session,
        digests,
        "list IN (?, ?) AND (expires_at IS NULL OR expires_at > ?)",
        list_name,
        GLOBAL_LIST,
        now,
    )


def verdict_of(target: Target, found: Mapping[bytes, Sequence[Found]]) -> Verdict:
    """The verdict for one target from the rows found by digest (rows_for)."""
    matched = [r for d in target.digests for r in found.get(d.value, ()) if r.kind is Kind.address]
    for group in target.domain_digests:
        matched += [r for d in group for r in found.get(d.value, ()) if r.kind is Kind.domain]
    if not matched:
        return ALLOWED
    matched.sort(key=lambda r: (r.list != GLOBAL_LIST, r.kind is Kind.domain, r.created_at))
    active_id = target.active.key_id
    active = _active_digest_map(target)
    return Verdict(
        allowed=False,
        hits=tuple(Hit(r.list, r.kind.value, r.reason.value, r.created_at) for r in matched),
        stale=tuple((r.id, active[r.digest]) for r in matched if r.key_id != active_id),
    )


# One statement for a single check: the rows that could suppress the target, and every key
# id in use (peppers.key_ids_in_use's walk of the key_id index), read in one snapshot.
_CHECK_ONE = """
WITH RECURSIVE k(id) AS (
    SELECT min(key_id) FROM suppression
    UNION ALL
    SELECT (SELECT min(key_id) FROM suppression WHERE key_id > k.id) FROM k
    WHERE k.id IS NOT NULL
)
SELECT 0, id, digest, key_id, kind, list, reason, created_at, expires_at, source
FROM suppression
WHERE digest IN ({digests}) AND list IN ({p}, {p}) AND (expires_at IS NULL OR expires_at > {p})
UNION ALL
SELECT 1, NULL, NULL, id, NULL, NULL, NULL, NULL, NULL, NULL FROM k WHERE id IS NOT NULL
"""
Query = Callable[[str, Sequence[Any]], list[tuple[Any, ...]]]


def check_one(
    query: Query, postgres: bool, target: Target, list_name: str, *, now: datetime
) -> Verdict:
    """check() in one read-only statement through `query` (Database.query): the gate's hot
    path. Like check_many, it reads the database every time and refuses to decide
    (PepperMissing) while any row is keyed with a pepper the target was not hashed under."""
    digests = [d.value for d in target.digests]
    digests += [d.value for group in target.domain_digests for d in group]
    mark = "%s" if postgres else "?"
    sql = _CHECK_ONE.format(digests=", ".join([mark] * len(digests)), p=mark)
    moment: Any = now if postgres else now.strftime("%Y-%m-%d %H:%M:%S.%f")
    rows = query(sql, (*digests, list_name, GLOBAL_LIST, moment))
    known = {d.key_id for d in target.digests}
    missing = sorted({str(r[3]) for r in rows if r[0] == 1} - known)
    if missing:
        raise PepperMissing(peppers.missing_message(missing))
    found: dict[bytes, list[Found]] = {}
    for row in rows:
        if row[0] != 0:
            continue
        created, expires = row[7], row[8]
        if isinstance(created, str):
            created = datetime.fromisoformat(created)
        if isinstance(expires, str):
            expires = datetime.fromisoformat(expires)
        item = Found(
            row[1],
            bytes(row[2]),
            row[3],
            Kind(row[4]),
            row[5],
            Reason(row[6]),
            created,
            expires,
            row[9],
        )
        found.setdefault(item.digest, []).append(item)
    return verdict_of(target, found) if found else ALLOWED


def check(
    session: Session | Connection, target: Target, list_name: str, *, now: datetime
) -> Verdict:
    """Whether an address may receive marketing on a list, with the reasons if not."""
    return check_many(session, [target], list_name, now=now)[0]


@dataclass(frozen=True)
class ImportCounts:
    """What one import batch did."""

    added: int
    existing: int


def import_batch(
    session: Session,
    targets: Sequence[Target],
    list_name: str,
    reason: Reason,
    *,
    source: str,
    actor: str,
    now: datetime,
    via: str = "import",
) -> ImportCounts:
    """Suppress many addresses on a list (idempotent; never removes or shortens anything).

    New rows go in with one statement and one audit event each; the rare existing row that is
    temporary, weaker (a bounce where an opt-out arrives) or under an old pepper goes through
    add(), which makes it permanent, strengthens or re-keys it. `via` names the path in the
    audit events (import, webhook).
    """
    audit.lock(session)
    found = _rows_by_digest(
        session,
        (d.value for t in targets for d in t.digests),
        "kind = ? AND list = ?",
        Kind.address.value,
        list_name,
    )
    seen: set[bytes] = set()
    fresh: list[Target] = []
    slow: list[Target] = []
    existing = 0
    for target in targets:
        active = target.active
        if active.value in seen:
            existing += 1  # the same mailbox twice in one batch
            continue
        seen.add(active.value)
        rows = [r for d in target.digests for r in found.get(d.value, ())]
        if not rows:
            fresh.append(target)
        elif any(
            r.expires_at is not None
            or r.key_id != active.key_id
            or strength(reason, None) > strength(Reason(r.reason), None)
            or claimed_source(r.source, source) != r.source
            for r in rows
        ):
            slow.append(target)
        else:
            existing += 1
    added = 0
    for target in slow:
        _row, created = add(session, target, list_name, reason, source=source, actor=actor, now=now)
        added += created
        existing += not created
    if fresh:
        insert_rows(
            session,
            Suppression.__table__,  # type: ignore[arg-type]
            ("digest", "key_id", "scheme", "kind", "list", "reason", "source", "created_at"),
            [
                (t.active.value, t.active.key_id, SCHEME, Kind.address, list_name, reason)
                + (source, now)
                for t in fresh
            ],
        )
        audit.record_uniform(
            session,
            [t.active.value for t in fresh],
            action="add",
            actor=actor,
            kind=Kind.address.value,
            list=list_name,
            reason=reason.value,
            source=source,
            detail={"expires_at": None, "via": via},
            at=now,
        )
        added += len(fresh)
    return ImportCounts(added=added, existing=existing)


def strength(reason: Reason, expires_at: datetime | None) -> tuple[bool, bool, datetime]:
    """How strongly a suppression holds, for merges: larger is stronger.

    Permanent beats expiring, an opt-out beats a bounce, a later expiry beats an earlier one.
    A merge keeps the strongest, so no merge can ever shorten or lift an opt-out.
    """
    return (expires_at is None, reason not in TEMPORARY_REASONS, expires_at or datetime.max)


def _terms(row: Suppression) -> dict[str, Any]:
    return {
        "reason": row.reason.value,
        "source": row.source,
        "expires_at": row.expires_at.isoformat() if row.expires_at else None,
    }


def _absorb(keeper: Suppression, other: Suppression) -> dict[str, Any] | None:
    """Give keeper other's terms when they are stronger; the change for the audit, if any."""
    before = _terms(keeper)
    if strength(other.reason, other.expires_at) > strength(keeper.reason, keeper.expires_at):
        keeper.reason, keeper.source = other.reason, stronger_source(keeper.source, other.source)
        keeper.expires_at, keeper.created_at = other.expires_at, other.created_at
    else:
        # The weaker row's sender still recorded it: a reader alone may not lift the merge.
        keeper.source = claimed_source(keeper.source, other.source)
        if keeper.source == before["source"]:
            return None
    return {"previous": before, "now": _terms(keeper)}


def rekey(
    session: Session, stale: tuple[tuple[int, bytes], ...], active_key_id: str, *, actor: str
) -> int:
    """Move rows found under an old pepper to the active one (lazy re-keying, DESIGN §3).

    When the active pepper already has a row for the same address, kind and list (a twin),
    the two merge into the twin with the stronger terms of both, and the event says so.
    """
    audit.lock(session)
    moved = 0
    for row_id, digest in stale:
        row = session.get(Suppression, row_id)
        if row is None or row.key_id == active_key_id:
            continue  # another instance re-keyed it first
        twin = session.scalars(
            select(Suppression).where(
                Suppression.digest == digest,
                Suppression.kind == row.kind,
                Suppression.list == row.list,
            )
        ).one_or_none()
        old_key = row.key_id
        detail: dict[str, Any] = {"from_key": old_key, "to_key": active_key_id}
        if twin is not None:
            detail["merged"] = {"kept": _terms(twin), "rekeyed": _terms(row)}
            change = _absorb(twin, row)
            detail["merged"]["result"] = _terms(twin)
            detail["merged"]["strengthened"] = change is not None
            session.delete(row)
        else:
            row.digest, row.key_id = digest, active_key_id
        session.flush()
        audit.record(
            session,
            "rekey",
            actor=actor,
            digest=digest,
            kind=row.kind.value,
            list=row.list,
            detail=detail,
        )
        moved += 1
    session.flush()
    return moved


def _find(session: Session, target: Target, list_name: str) -> Suppression | None:
    rows = session.scalars(
        select(Suppression).where(
            Suppression.digest.in_([d.value for d in target.digests]),
            Suppression.kind == Kind(target.kind),
            Suppression.list == list_name,
        )
    ).all()
    # Prefer the row under the active key; there is at most one per key.
    order = {d.value: i for i, d in enumerate(target.digests)}
    return min(rows, key=lambda r: order[r.digest]) if rows else None


def add(
    session: Session,
    target: Target,
    list_name: str,
    reason: Reason,
    *,
    source: str,
    actor: str,
    now: datetime,
    expires_at: datetime | None = None,
    detail: Mapping[str, Any] | None = None,
) -> tuple[Suppression, bool]:
    """Suppress a target on a list; idempotent. Returns (row, created).

    An existing temporary suppression is made permanent by a permanent opt-out, and an
    expired one is renewed: an unsubscribe must never lapse with a bounce. `detail` adds
    facts (never an address) to the audit event of a change.
    """
    if expires_at is not None:
        if reason not in TEMPORARY_REASONS:
            raise Unprocessable("expires_at is only allowed for hard_bounce and soft_bounce")
        if expires_at <= now:
            raise Unprocessable("expires_at must be in the future")
    audit.lock(session)
    digest = target.active
    row = _find(session, target, list_name)
    fields: dict[str, Any] = dict(
        kind=target.kind, list=list_name, reason=reason.value, source=source
    )
    if row is None:
        row = Suppression(
            digest=digest.value,
            key_id=digest.key_id,
            scheme=SCHEME,
            kind=Kind(target.kind),
            list=list_name,
            reason=reason,
            source=source,
            created_at=now,
            expires_at=expires_at,
        )
        session.add(row)
        session.flush()
        audit.record(
            session,
            "add",
            actor=actor,
            digest=digest.value,
            **fields,
            detail={
                "expires_at": expires_at.isoformat() if expires_at else None,
                **(detail or {}),
            },
        )
        return row, True
    if row.key_id != digest.key_id:
        rekey(session, ((row.id, digest.value),), digest.key_id, actor=actor)
        row = _find(session, target, list_name) or row
    expired = row.expires_at is not None and row.expires_at <= now
    # The stronger terms win (permanent, opt-out over bounce, later expiry); an expired row
    # is renewed whatever it held: it no longer suppresses anyone.
    if expired or strength(reason, expires_at) > strength(row.reason, row.expires_at):
        previous = _terms(row)
        # A lapsed row is replaced whole; a live one keeps its sender's claim (claimed_source).
        kept_source = source if expired else stronger_source(row.source, source)
        row.reason, row.source, row.expires_at = reason, kept_source, expires_at
        if expired:
            row.created_at = now
        session.flush()
        if expired:
            action = "renew"
        elif row.expires_at is None and previous["expires_at"] is not None:
            action = "make_permanent"
        else:
            action = "strengthen"
        audit.record(
            session,
            action,
            actor=actor,
            digest=row.digest,
            **fields,
            detail={"previous": previous, **(detail or {})},
        )
        return row, expired
    claimed = claimed_source(row.source, source)
    if claimed != row.source:  # a sender records what a reader had made: it is theirs too
        previous = _terms(row)
        row.source = claimed
        session.flush()
        audit.record(
            session,
            "claim",
            actor=actor,
            digest=row.digest,
            **{**fields, "reason": row.reason.value},
            detail={"previous": previous, **(detail or {})},
        )
    return row, False


def add_by_digest(
    session: Session,
    digest: Digest,
    list_name: str,
    reason: Reason,
    *,
    source: str,
    actor: str,
    now: datetime,
    minted_by: int | None,
) -> tuple[Suppression, bool]:
    """Suppress an address known only by one stored digest (an unsubscribe token's); idempotent.

    The unsubscribe page never sees the address, so it cannot compute the digest under the
    active pepper. A digest under an older pepper is recorded under that pepper's key id:
    every check computes digests under all peppers, finds the row, and re-keys it lazily
    (DESIGN §3), exactly as for rows written before a rotation. `minted_by`, the API key
    that minted the link (None for links older than that record), goes into the audit event:
    a key that can mint links can act as any recipient whose address it has.
    """
    target = Target(kind=Kind.address.value, digests=(digest,))
    return add(
        session,
        target,
        list_name,
        reason,
        source=source,
        actor=actor,
        now=now,
        detail={"minted_by": minted_by},
    )


def record_links(
    session: Session, list_name: str, *, minted: int, invalid: int, api_key: int, actor: str
) -> None:
    """Note in the trail that an API key minted unsubscribe links: how many, never for whom."""
    audit.record(
        session,
        "mint_links",
        actor=actor,
        list=list_name,
        detail={"api_key": api_key, "links": minted, "invalid": invalid},
    )


def record_row(
    session: Session,
    action: str,
    row: Suppression,
    *,
    actor: str,
    detail: dict[str, Any],
    at: datetime | None = None,
) -> None:
    """The audit event of a row leaving the list: its digest and terms, never an address."""
    audit.record(
        session,
        action,
        actor=actor,
        digest=row.digest,
        kind=row.kind.value,
        list=row.list,
        reason=row.reason.value,
        source=row.source,
        detail=detail,
        at=at,
    )


def remove(
    session: Session,
    target: Target,
    list_name: str,
    *,
    reason: str,
    evidence: str,
    actor: str,
) -> int:
    """Lift a suppression (every key's row) given a reason and evidence; NotFound if none."""
    audit.lock(session)
    # "None found" is only true when every row could be matched.
    require_peppers(session, {d.key_id for d in target.digests})
    rows = session.scalars(
        select(Suppression).where(
            Suppression.digest.in_([d.value for d in target.digests]),
            Suppression.kind == Kind(target.kind),
            Suppression.list == list_name,
        )
    ).all()
    if not rows:
        raise NotFound(f"no {target.kind} suppression on list {list_name!r} matches")
    for row in rows:
        record_row(
            session,
            "remove",
            row,
            actor=actor,
            detail={"removal_reason": reason, "evidence": evidence, "key_id": row.key_id},
        )
    session.execute(delete(Suppression).where(Suppression.id.in_([r.id for r in rows])))
    return len(rows)


def describe(row: Suppression) -> dict[str, Any]:
    """A suppression row as JSON: digests in hex, never plaintext."""
    return {
        "id": row.id,
        "digest": row.digest.hex(),
        "key_id": row.key_id,
        "scheme": row.scheme,
        "kind": row.kind.value,
        "list": row.list,
        "reason": row.reason.value,
        "source": row.source,
        "created_at": row.created_at.isoformat(timespec="seconds") + "Z",
        "expires_at": row.expires_at.isoformat(timespec="seconds") + "Z"
        if row.expires_at
        else None,
    }


@dataclass(frozen=True)
class ExpireReport:
    """Temporary (bounce) suppressions lifted because they expired."""

    removed: int
    reasons: dict[str, int]

    def summary(self) -> dict[str, Any]:
        return {"removed": self.removed, "reasons": dict(self.reasons), "errors": []}


def expire(session: Session, *, now: datetime, actor: str = "job:expire") -> ExpireReport:
    """Remove bounce suppressions whose expires_at has passed, one audit event each."""
    audit.lock(session)
    rows = session.scalars(
        select(Suppression)
        .where(
            Suppression.expires_at.is_not(None),
            Suppression.expires_at <= now,
            Suppression.reason.in_(list(TEMPORARY_REASONS)),
        )
        .order_by(Suppression.id)
    ).all()
    reasons: Counter[str] = Counter()
    for row in rows:
        record_row(
            session,
            "expire",
            row,
            actor=actor,
            detail={"expires_at": row.expires_at.isoformat() if row.expires_at else None},
            at=now,
        )
        reasons[row.reason.value] += 1
    if rows:
        session.execute(delete(Suppression).where(Suppression.id.in_([r.id for r in rows])))
    return ExpireReport(len(rows), dict(reasons))
