"""Pepper rotation: rows per key id, key ids nobody can match any more, and safe retirement."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass

from sqlalchemy import Connection, delete, func, select
from sqlalchemy.orm import Session

from . import audit
from .addresses import KeyRing
from .errors import ErrorCode, SuppressError, Unprocessable
from .models import SecretCheck, SubjectRequest, Suppression

log = logging.getLogger("suppress.peppers")
# How an edge hands out transactions: Database.begin (write=False for a read-only one).
Begin = Callable[..., AbstractContextManager[Session]]

# Distinct key ids by walking the key_id index (a "loose index scan"): a handful of index
# probes instead of reading every row, so readiness can ask on every probe.
_KEY_IDS_SQL = """
    WITH RECURSIVE k(id) AS (
        SELECT min(key_id) FROM suppression
        UNION ALL
        SELECT (SELECT min(key_id) FROM suppression WHERE key_id > k.id) FROM k
        WHERE k.id IS NOT NULL
    )
    SELECT id FROM k WHERE id IS NOT NULL
"""


@dataclass(frozen=True)
class KeyStatus:
    """One pepper id: how many rows it keys, and whether this process can compute it."""

    key_id: str
    rows: int
    configured: bool
    active: bool
    # Data-subject requests whose address digest it keys (found by lookups, never by the gate).
    requests: int = 0

    @property
    def orphaned(self) -> bool:
        """Rows under a pepper that is not configured can never match: a fail-open risk."""
        return self.rows > 0 and not self.configured


def key_ids_in_use(session: Session | Connection) -> list[str]:
    """Every key id that keys at least one suppression row."""
    connection = session.connection() if isinstance(session, Session) else session
    return [str(k) for k in connection.exec_driver_sql(_KEY_IDS_SQL).scalars()]


def unconfigured(session: Session, ring: KeyRing) -> list[str]:
    """Key ids with rows but no configured pepper: those rows can never match a check."""
    return [k for k in key_ids_in_use(session) if k not in ring.key_ids]


def status(session: Session, ring: KeyRing) -> list[KeyStatus]:
    """Rows per key id: the configured peppers in ring order, then any unconfigured ids."""
    counts: dict[str, int] = {
        key_id: rows
        for key_id, rows in session.execute(
            select(Suppression.key_id, func.count()).group_by(Suppression.key_id)
        )
    }
    requests: dict[str, int] = {
        str(key_id): rows
        for key_id, rows in session.execute(
            select(SubjectRequest.key_id, func.count())
            .where(SubjectRequest.key_id.is_not(None))
            .group_by(SubjectRequest.key_id)
        )
    }
    known = set(counts) | set(requests)
    ids = list(ring.key_ids) + sorted(k for k in known if k not in ring.key_ids)
    return [
        KeyStatus(
            key_id=k,
            rows=counts.get(k, 0),
            configured=k in ring.key_ids,
            active=k == ring.active_id,
            requests=requests.get(k, 0),
        )
        for k in ids
    ]


def missing_message(key_ids: list[str]) -> str:
    """The one warning for rows under peppers this process does not have."""
    return (
        f"suppressions exist under pepper(s) {', '.join(key_ids)} that are not configured: "
        "they can never match, so people who opted out would be mailed; put the pepper(s) "
        "back in SUPPRESS_PEPPERS"
    )


def retire(session: Session, ring: KeyRing, key_id: str, *, actor: str) -> None:
    """Confirm that no row is keyed with a pepper and record its retirement, or refuse.

    The operator removes the pepper from SUPPRESS_PEPPERS only after this succeeds. Rows
    move off an old pepper only when their address is seen again (lazy re-keying); there
    is no bulk re-key, since that would need the plaintext addresses we do not keep.
    """
    if key_id == ring.active_id:
        raise Unprocessable(
            f"pepper {key_id} is the active one: put a new pepper first in SUPPRESS_PEPPERS",
            code=ErrorCode.pepper_in_use,
        )
    audit.lock(session)
    rows = session.scalar(
        select(func.count()).select_from(Suppression).where(Suppression.key_id == key_id)
    )
    if rows:
        where = "" if key_id in ring.key_ids else " and it is NOT configured (restore it now)"
        raise Unprocessable(
            f"{rows} suppression(s) are still keyed with pepper {key_id}{where}: removing it "
            "would make them unmatchable. Rows move to the active pepper when their address "
            "is checked or filtered again; keep the pepper until 'suppress keys "
            "pepper-status' shows 0 rows for it",
            code=ErrorCode.pepper_in_use,
        )
    requests = session.scalar(
        select(func.count()).select_from(SubjectRequest).where(SubjectRequest.key_id == key_id)
    )
    if requests:
        raise Unprocessable(
            f"{requests} data-subject request(s) are still keyed with pepper {key_id}: removing "
            "it would hide them from lookups of their address. A request moves to the active "
            "pepper when its address is looked up again (suppress lookup, POST /v1/lookup)",
            code=ErrorCode.pepper_in_use,
        )
    # Its fingerprint goes too: the id may one day name a new pepper.
    session.execute(
        delete(SecretCheck).where(SecretCheck.kind == "pepper", SecretCheck.key_id == key_id)
    )
    audit.record(session, "retire_pepper", actor=actor, detail={"key_id": key_id})


def rekey_found(
    begin: Begin, ring: KeyRing, stale: Iterable[tuple[int, bytes]], *, actor: str
) -> None:
    """Lazy re-keying, the one follow-up of every read that found rows under an old pepper
    (check, filter, CLI): they move to the active pepper in a write transaction of their own.
    A failure only postpones it; the verdicts are already made."""
    rows = tuple(stale)
    if not rows:
        return
    from . import suppressions

    try:
        with begin() as session:
            suppressions.rekey(session, rows, ring.active_id, actor=actor)
    except SuppressError as exc:
        log.warning("lazy re-key postponed: %s", exc.message)
