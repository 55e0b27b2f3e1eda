"""Append chained audit events in the caller's transaction, and verify the chain."""

from __future__ import annotations

import enum
import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from . import clock
from .db import insert_rows
from .errors import InvalidRequest
from .models import AuditEvent

GENESIS = bytes(32)
# An arbitrary constant naming the "audit chain head" lock on PostgreSQL.
_PG_CHAIN_LOCK = 0x5355505052455353  # "SUPPRESS"


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
    # By max(id): answered from the end of the primary key whatever the planner's
    # statistics say (an ORDER BY may be planned as a scan of a covering index).
    last = select(func.max(AuditEvent.id)).scalar_subquery()
    head = session.execute(
        select(AuditEvent.hash).where(AuditEvent.id == last)
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
        at=(at or clock.utcnow()).replace(tzinfo=None),
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
        "at": (at or clock.utcnow()).replace(tzinfo=None),
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


MAX_PAGE = 1000
ACTION_PATTERN = r"^[a-z][a-z_]{0,31}$"
_ACTION = re.compile(ACTION_PATTERN)


_HEX32 = re.compile(r"[0-9a-fA-F]{64}")


def parse_hash(value: str, name: str = "anchor") -> bytes:
    """A SHA-256 given in hex (an anchor), or InvalidRequest."""
    if not _HEX32.fullmatch(value):
        raise InvalidRequest(f"{name} must be 64 hexadecimal characters")
    return bytes.fromhex(value)


def parse_action(value: str | None) -> str | None:
    """An optional action name to filter by (e.g. remove), or InvalidRequest."""
    if value is not None and not _ACTION.fullmatch(value):
        raise InvalidRequest("action must be an action name such as remove, lookup or rekey")
    return value


def describe(event: AuditEvent) -> dict[str, Any]:
    """An event as JSON: digests and hashes in hex (the trail holds no plaintext)."""
    return {
        "id": event.id,
        "at": event.at.isoformat(timespec="microseconds") + "Z",
        "action": event.action,
        "digest": event.digest.hex() if event.digest else None,
        "kind": event.kind,
        "list": event.list,
        "reason": event.reason,
        "source": event.source,
        "actor": event.actor,
        "detail": event.detail,
        "prev_hash": event.prev_hash.hex(),
        "hash": event.hash.hex(),
    }


def page(
    session: Session, *, after: int = 0, limit: int = 100, action: str | None = None
) -> list[AuditEvent]:
    """Events with id > after, oldest first, at most limit (capped at MAX_PAGE)."""
    # ids are 32-bit integers: a larger cursor is simply past the end (and would not bind).
    query = select(AuditEvent).where(AuditEvent.id > min(after, 2**31 - 1))
    if action is not None:
        query = query.where(AuditEvent.action == action)
    return list(session.scalars(query.order_by(AuditEvent.id).limit(max(1, min(limit, MAX_PAGE)))))


def latest(
    session: Session, *, before: int | None = None, limit: int = 50, action: str | None = None
) -> list[AuditEvent]:
    """Events with id < before (or the newest ones), newest first, at most limit."""
    query = select(AuditEvent)
    if before is not None:
        query = query.where(AuditEvent.id < min(before, 2**31 - 1))
    if action is not None:
        query = query.where(AuditEvent.action == action)
    limit = max(1, min(limit, MAX_PAGE))
    return list(session.scalars(query.order_by(AuditEvent.id.desc()).limit(limit)))


def actions(session: Session) -> list[str]:
    """Every action name the trail holds, sorted."""
    return sorted(session.scalars(select(AuditEvent.action).distinct()))


def about(session: Session, digests: list[bytes]) -> list[AuditEvent]:
    """Every event about any of these digests, oldest first."""
    if not digests:
        return []
    return list(
        session.scalars(
            select(AuditEvent).where(AuditEvent.digest.in_(digests)).order_by(AuditEvent.id)
        )
    )


class Finding(enum.StrEnum):
    """What kind of break verify() found."""

    edited = "edited"
    missing = "missing"  # the event the chain links to is gone (deleted, or rewritten)
    reordered = "reordered"
    anchor_missing = "anchor_missing"  # a previously seen head is no longer in the chain
    unchained = "unchained"  # a stored event the walk never reached (an id not above 0)


@dataclass(frozen=True)
class Verification:
    """The outcome of walking the chain; when broken, which event and why."""

    ok: bool
    events: int
    head: bytes
    broken_at: int | None = None
    finding: Finding | None = None
    problem: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"ok": self.ok, "events": self.events, "head": self.head.hex()}
        if not self.ok:
            out["broken_at"] = self.broken_at
            out["finding"] = self.finding.value if self.finding else None
            out["problem"] = self.problem
        return out


def _diagnose(session: Session, event: AuditEvent, prev_id: int | None) -> tuple[Finding, str]:
    """Why event.prev_hash does not link to the event before it in id order."""
    before = f"event {prev_id}" if prev_id is not None else "the start of the chain"
    linked = session.execute(
        select(AuditEvent.id).where(AuditEvent.hash == event.prev_hash)
    ).scalar_one_or_none()
    if linked is not None:
        return (
            Finding.reordered,
            f"event {event.id} is out of order: it links to event {linked}, not to {before}",
        )
    if event.prev_hash == GENESIS:
        return (
            Finding.reordered,
            f"event {event.id} claims to start the chain but follows {before}: "
            "it was inserted or moved",
        )
    return (
        Finding.missing,
        f"event {event.id} does not link to {before} and no stored event has the hash it "
        f"links to: an event between them was deleted, or {before} was rewritten together "
        "with its hash",
    )


def verify(session: Session, *, batch: int = 5000, anchor: bytes | None = None) -> Verification:
    """Walk every event in id order, check each hash and each link, and name the first break.

    Ids must be positive and increasing: a stored event the walk does not reach is a break
    too. A chain that was cut at its end still links; pass an anchor (a head recorded earlier,
    e.g. by the nightly verify) to prove the events up to it are all still there.
    """
    prev = GENESIS
    prev_id: int | None = None
    count = 0
    seen_anchor = anchor is None or anchor == GENESIS
    while True:
        rows = session.scalars(
            select(AuditEvent)
            .where(AuditEvent.id > (prev_id or 0))
            .order_by(AuditEvent.id)
            .limit(batch)
        ).all()
        if not rows:
            break
        for event in rows:
            if chain_hash(event.prev_hash, event) != event.hash:
                return Verification(
                    False,
                    count,
                    prev,
                    event.id,
                    Finding.edited,
                    f"event {event.id} was edited: its hash does not match its content",
                )
            if event.prev_hash != prev:
                finding, problem = _diagnose(session, event, prev_id)
                return Verification(False, count, prev, event.id, finding, problem)
            prev, prev_id = event.hash, event.id
            count += 1
            seen_anchor = seen_anchor or prev == anchor
        session.expunge_all()
    # The walk starts above id 0 and pages by id, so it reaches every event with a positive
    # id up to where it stopped. Counting the rows up to there catches any it did not reach:
    # the application never writes an id of 0 or below, and the triggers refuse one.
    stored, lowest = session.execute(
        select(func.count(), func.min(AuditEvent.id)).where(AuditEvent.id <= (prev_id or 0))
    ).one()
    if stored != count:
        why = (
            f"event {lowest} has an id below 1, which the application never writes: it was "
            "inserted by hand"
            if lowest is not None and lowest < 1
            else "events were inserted out of id order"
        )
        return Verification(
            False,
            count,
            prev,
            lowest,
            Finding.unchained,
            f"{stored - count} stored event(s) are outside the chain (the walk over ids from "
            f"1 up reached {count} of {stored}): {why}",
        )
    if not seen_anchor:
        return Verification(
            False,
            count,
            prev,
            None,
            Finding.anchor_missing,
            f"the anchor {anchor.hex()[:16] if anchor else ''}... is not in the chain: events "
            "were cut from its end, or the chain was rewritten",
        )
    return Verification(ok=True, events=count, head=prev)
