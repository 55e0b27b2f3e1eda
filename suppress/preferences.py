"""The preference centre's domain: where one reader stands on the declared lists, and
coming back to the lists they left themselves (DESIGN §10). Takes a Session, never commits.

A reader is known here only by the digest their link carries; the page never sees an
address, so it can only ever read or lift rows under that digest.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from . import audit
from .addresses import Digest
from .models import GLOBAL_LIST, Kind, Reason, Suppression
from .suppressions import READER_SOURCES, record_row

RESUBSCRIBED = "resubscribed_by_recipient"


@dataclass(frozen=True)
class Standing:
    """One list as this reader stands on it."""

    name: str
    off: bool  # a suppression on this list holds for the reader
    own: bool  # ... and the reader made it themselves, so they may come back


@dataclass(frozen=True)
class Standings:
    lists: dict[str, Standing]
    everything_off: bool  # a `global` suppression: no list reaches the reader


def _active(
    session: Session, digest: Digest, names: Iterable[str], now: datetime
) -> list[Suppression]:
    return list(
        session.scalars(
            select(Suppression).where(
                Suppression.digest == digest.value,
                Suppression.kind == Kind.address,
                Suppression.list.in_([*names, GLOBAL_LIST]),
                or_(Suppression.expires_at.is_(None), Suppression.expires_at > now),
            )
        )
    )


def _own(row: Suppression) -> bool:
    return row.source in READER_SOURCES and row.reason == Reason.unsubscribe


def standings(
    session: Session, digest: Digest, names: Sequence[str], *, now: datetime
) -> Standings:
    """Where the reader of `digest` stands on each of `names`, and on all direct marketing."""
    rows = {row.list: row for row in _active(session, digest, names, now)}
    return Standings(
        lists={
            name: Standing(name, off=name in rows, own=name in rows and _own(rows[name]))
            for name in names
        },
        everything_off=GLOBAL_LIST in rows,
    )


def come_back(
    session: Session,
    digest: Digest,
    names: Sequence[str],
    *,
    actor: str,
    evidence: str,
    now: datetime,
) -> tuple[list[str], list[str]]:
    """Lift the reader's own opt-outs from `names` (never `global`, never what a sender
    recorded); returns (lifted, kept). Each lift is audited as a removal whose evidence is
    the reader's signed request."""
    audit.lock(session)
    rows = {
        row.list: row for row in _active(session, digest, names, now) if row.list != GLOBAL_LIST
    }
    lifted: list[str] = []
    kept: list[str] = []
    for name in names:
        row = rows.get(name)
        if row is None:
            continue  # not off: nothing to do
        if not _own(row):
            kept.append(name)
            continue
        record_row(
            session,
            "remove",
            row,
            actor=actor,
            detail={"removal_reason": RESUBSCRIBED, "evidence": evidence, "key_id": row.key_id},
        )
        session.delete(row)
        lifted.append(name)
    session.flush()
    return lifted, kept
