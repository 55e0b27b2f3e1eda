"""The suppression list: add, remove and check; takes a Session, flushes, never commits."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session

from . import audit
from .addresses import SCHEME, Digest, Target, contains_address
from .errors import InvalidList, InvalidRequest, NotFound, Unprocessable
from .models import GLOBAL_LIST, LIST_PATTERN, Kind, Reason, Suppression

_LIST = re.compile(LIST_PATTERN)
TEMPORARY_REASONS = frozenset({Reason.hard_bounce, Reason.soft_bounce})
MAX_TEXT = 128


def validate_list(name: Any) -> str:
    """A list name as DESIGN §4 allows it, or InvalidList."""
    if not isinstance(name, str) or not _LIST.fullmatch(name):
        raise InvalidList(
            "list names are 1-64 characters of a-z, 0-9 and ._:- starting with a letter or digit"
        )
    return name


def parse_reason(value: Any) -> Reason:
    """A reason by name, or an error naming the valid ones."""
    try:
        return Reason(value)
    except ValueError:
        raise Unprocessable(
            f"unknown reason; use one of: {', '.join(r.value for r in Reason)}",
            code="invalid_reason",
        ) from None


def validate_text(name: str, value: Any, *, required: bool = True) -> str:
    """Short free text (source, evidence, removal reason): bounded and free of addresses."""
    if value is None and not required:
        return ""
    if not isinstance(value, str) or not value.strip():
        raise InvalidRequest(f"{name} is required and must be a non-empty string")
    value = value.strip()
    if len(value) > MAX_TEXT or not value.isprintable():
        raise InvalidRequest(f"{name} must be at most {MAX_TEXT} printable characters")
    if contains_address(value):
        # The audit trail never holds a plaintext address: refer to evidence, don't paste it.
        raise InvalidRequest(f"{name} must not contain an email address; give a reference instead")
    return value


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


def _active_rows(
    session: Session, digests: set[bytes], list_name: str, now: datetime
) -> list[Suppression]:
    return list(
        session.scalars(
            select(Suppression).where(
                Suppression.digest.in_(digests),
                Suppression.list.in_({list_name, GLOBAL_LIST}),
                or_(Suppression.expires_at.is_(None), Suppression.expires_at > now),
            )
        ).all()
    )


def _verdict(rows: list[Suppression], target: Target) -> Verdict:
    addresses = {d.value for d in target.digests}
    domains = {d.value for group in target.domain_digests for d in group}
    matched = [
        r
        for r in rows
        if (r.kind is Kind.address and r.digest in addresses)
        or (r.kind is Kind.domain and r.digest in domains)
    ]
    matched.sort(key=lambda r: (r.list != GLOBAL_LIST, r.kind is Kind.domain, r.created_at))
    active_id = target.active.key_id
    active = _active_digest_map(target)
    return Verdict(
        allowed=not matched,
        hits=tuple(Hit(r.list, r.kind.value, r.reason.value, r.created_at) for r in matched),
        stale=tuple((r.id, active[r.digest]) for r in matched if r.key_id != active_id),
    )


def _all_digests(target: Target) -> set[bytes]:
    return {d.value for d in target.digests} | {
        d.value for group in target.domain_digests for d in group
    }


def check(session: Session, target: Target, list_name: str, *, now: datetime) -> Verdict:
    """Whether an address may receive marketing on a list, with the reasons if not."""
    return _verdict(_active_rows(session, _all_digests(target), list_name, now), target)


def check_many(
    session: Session, targets: list[Target], list_name: str, *, now: datetime
) -> list[Verdict]:
    """check() for a batch of addresses with one query per batch (same verdicts, in order)."""
    wanted: set[bytes] = set()
    for target in targets:
        wanted |= _all_digests(target)
    rows = _active_rows(session, wanted, list_name, now) if wanted else []
    by_digest: dict[bytes, list[Suppression]] = {}
    for row in rows:
        by_digest.setdefault(row.digest, []).append(row)
    return [
        _verdict([r for d in _all_digests(t) for r in by_digest.get(d, [])], t) for t in targets
    ]


def rekey(
    session: Session, stale: tuple[tuple[int, bytes], ...], active_key_id: str, *, actor: str
) -> int:
    """Move rows found under an old pepper to the active one (lazy re-keying, DESIGN §3)."""
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
        if twin is not None:
            session.delete(row)
        else:
            row.digest, row.key_id = digest, active_key_id
        audit.record(
            session,
            "rekey",
            actor=actor,
            digest=digest,
            kind=row.kind.value,
            list=row.list,
            detail={"from_key": old_key, "to_key": active_key_id},
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
) -> tuple[Suppression, bool]:
    """Suppress a target on a list; idempotent. Returns (row, created).

    An existing temporary suppression is made permanent by a permanent opt-out, and an
    expired one is renewed: an unsubscribe must never lapse with a bounce.
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
            detail={"expires_at": expires_at.isoformat() if expires_at else None},
        )
        return row, True
    if row.key_id != digest.key_id:
        rekey(session, ((row.id, digest.value),), digest.key_id, actor=actor)
    expired = row.expires_at is not None and row.expires_at <= now
    if expired or (row.expires_at is not None and expires_at is None):
        previous = {
            "reason": row.reason.value,
            "expires_at": row.expires_at.isoformat() if row.expires_at else None,
        }
        row.reason, row.source, row.expires_at = reason, source, expires_at
        if expired:
            row.created_at = now
        session.flush()
        audit.record(
            session,
            "renew" if expired else "make_permanent",
            actor=actor,
            digest=digest.value,
            **fields,
            detail={"previous": previous},
        )
        return row, expired
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
) -> tuple[Suppression, bool]:
    """Suppress an address known only by one stored digest (an unsubscribe token's); idempotent.

    The unsubscribe page never sees the address, so it cannot compute the digest under the
    active pepper. A digest under an older pepper is recorded under that pepper's key id:
    every check computes digests under all peppers, finds the row, and re-keys it lazily
    (DESIGN §3), exactly as for rows written before a rotation.
    """
    target = Target(kind=Kind.address.value, digests=(digest,))
    return add(session, target, list_name, reason, source=source, actor=actor, now=now)


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
        audit.record(
            session,
            "remove",
            actor=actor,
            digest=row.digest,
            kind=row.kind.value,
            list=row.list,
            reason=row.reason.value,
            source=row.source,
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
