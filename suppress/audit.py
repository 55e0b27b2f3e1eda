"""Append chained audit events in the caller's transaction, and verify the chain."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from .db import insert_rows
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


class _DigestSlot:
    """Stands in for the digest while the shared part of many events is serialized once."""

    def hex(self) -> str:
        return "\x00"


_AUDIT_COLUMNS = (
    "at",
    "action",
    "digest",
    "kind",
    "list",
    "reason",
    "source",
    "actor",
    "detail",
    "prev_hash",
    "hash",
)


def record_uniform(
    session: Session,
    digests: Sequence[bytes],
    *,
    action: str,
    actor: str,
    kind: str | None = None,
    list: str | None = None,
    reason: str | None = None,
    source: str | None = None,
    detail: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> None:
    """Append one event per digest, all else equal (bulk imports): the chain record() makes."""
    if not digests:
        return
    fields = {
        "action": action,
        "actor": actor,
        "at": (at or utcnow()).replace(tzinfo=None),
        "detail": detail or {},
        "digest": _DigestSlot(),
        "kind": kind,
        "list": list,
        "reason": reason,
        "source": source,
    }
    # Only the digest differs between the events: serialize the rest once.
    head, slot, tail = _canonical(fields).partition(b"\\u0000")
    assert slot and b"\\u0000" not in tail
    prev = _lock_head(session)
    rows = []
    for digest in digests:
        link = hashlib.sha256(prev + head + digest.hex().encode() + tail).digest()
        rows.append(
            (fields["at"], action, digest, kind, list, reason, source, actor, fields["detail"])
            + (prev, link)
        )
        prev = link
    insert_rows(session, AuditEvent.__table__, _AUDIT_COLUMNS, rows)  # type: ignore[arg-type]


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
