"""Append chained audit events in the caller's transaction, and verify the chain."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert, select, text
from sqlalchemy.orm import Session

from .models import AuditEvent

GENESIS = bytes(32)
# An arbitrary constant naming the "audit chain head" lock on PostgreSQL.
_PG_CHAIN_LOCK = 0x5355505052455353  # "SUPPRESS"


def utcnow() -> datetime:
    """Naive UTC now: every timestamp column holds UTC without a zone."""
    return datetime.now(UTC).replace(tzinfo=None)


def naive_utc(moment: datetime) -> datetime:
    """An aware datetime as the naive UTC the columns hold."""
    return moment.astimezone(UTC).replace(tzinfo=None)


def canonical(event: AuditEvent) -> bytes:
    """The bytes an event's hash covers: every field but id and the hashes, in fixed order."""
    return _canonical(
        {name: getattr(event, name) for name in _HASHED},
    )


_HASHED = ("action", "actor", "at", "detail", "digest", "kind", "list", "reason", "source")


def _canonical(fields: dict[str, Any]) -> bytes:
    body = {
        "action": fields["action"],
        "actor": fields["actor"],
        "at": fields["at"].isoformat(timespec="microseconds"),
        "detail": fields["detail"],
        "digest": fields["digest"].hex() if fields["digest"] else None,
        "kind": fields["kind"],
        "list": fields["list"],
        "reason": fields["reason"],
        "source": fields["source"],
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def chain_hash(prev_hash: bytes, event: AuditEvent) -> bytes:
    """SHA-256(prev_hash + canonical event)."""
    return hashlib.sha256(prev_hash + canonical(event)).digest()


def lock(session: Session) -> None:
    """Serialize writers to the end of the transaction (re-entrant).

    The chain must stay linear, and read-then-insert must not race: on PostgreSQL an
    advisory transaction lock does it; SQLite writers already hold the write lock
    (BEGIN IMMEDIATE).
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_CHAIN_LOCK})


def _lock_head(session: Session) -> bytes:
    lock(session)
    head = session.execute(
        select(AuditEvent.hash).order_by(AuditEvent.id.desc()).limit(1)
    ).scalar_one_or_none()
    return head or GENESIS


def record(
    session: Session,
    action: str,
    *,
    actor: str,
    digest: bytes | None = None,
    kind: str | None = None,
    list: str | None = None,
    reason: str | None = None,
    source: str | None = None,
    detail: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> AuditEvent:
    """Append one event to the chain in the caller's transaction (flushed, not committed)."""
    event = AuditEvent(
        at=(at or utcnow()).replace(tzinfo=None),
        action=action,
        digest=digest,
        kind=kind,
        list=list,
        reason=reason,
        source=source,
        actor=actor,
        detail=detail or {},
    )
    event.prev_hash = _lock_head(session)
    event.hash = chain_hash(event.prev_hash, event)
    session.add(event)
    session.flush()
    return event


def record_many(session: Session, events: list[dict[str, Any]]) -> None:
    """Append many events in order in one statement (bulk imports); same chain as record().

    Each event is a mapping of action, actor, digest, kind, list, reason, source, detail and
    optionally at; missing fields are None (detail: {}).
    """
    if not events:
        return
    prev = _lock_head(session)
    now = utcnow()
    rows = []
    for event in events:
        fields = {name: event.get(name) for name in _HASHED}
        fields["at"] = (fields["at"] or now).replace(tzinfo=None)
        fields["detail"] = fields["detail"] or {}
        digest = hashlib.sha256(prev + _canonical(fields)).digest()
        rows.append({**fields, "prev_hash": prev, "hash": digest})
        prev = digest
    session.execute(insert(AuditEvent), rows)


@dataclass(frozen=True)
class Verification:
    """The outcome of walking the chain."""

    ok: bool
    events: int
    head: bytes
    broken_at: int | None = None
    problem: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"ok": self.ok, "events": self.events, "head": self.head.hex()}
        if not self.ok:
            out["broken_at"] = self.broken_at
            out["problem"] = self.problem
        return out


def verify(session: Session, *, batch: int = 5000) -> Verification:
    """Walk every event in id order and check each link and each hash."""
    prev = GENESIS
    count = 0
    last_id = 0
    while True:
        rows = session.scalars(
            select(AuditEvent).where(AuditEvent.id > last_id).order_by(AuditEvent.id).limit(batch)
        ).all()
        if not rows:
            return Verification(ok=True, events=count, head=prev)
        for event in rows:
            if event.prev_hash != prev:
                return Verification(
                    False,
                    count,
                    prev,
                    event.id,
                    "prev_hash does not match the previous event: an event was deleted, "
                    "inserted or reordered before this one",
                )
            if chain_hash(prev, event) != event.hash:
                return Verification(
                    False, count, prev, event.id, "hash does not match the content: edited"
                )
            prev = event.hash
            count += 1
            last_id = event.id
        session.expunge_all()
