"""Idempotency-Key records: a retry replays the first response and changes nothing."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import delete
from sqlalchemy.orm import Session

from . import audit, clock
from .addresses import KeyRing, contains_address
from .errors import ErrorCode, InvalidRequest, Unprocessable
from .models import IdempotencyKey

MAX_KEY = 255


PURPOSE = "idempotency-fingerprint"
KEY_PURPOSE = "idempotency-key"


class Fingerprinter:
    """Keyed fingerprints of one request under every pepper (the first is stored).

    A request body holds addresses: an unkeyed hash of it would let anyone holding the
    database confirm a guessed address, so the fingerprint is an HMAC under a key derived
    from the pepper. Older peppers still recognise a retry made across a rotation.
    """

    def __init__(self, ring: KeyRing, method: str, path: str):
        head = method.encode() + b" " + path.encode() + b"\n"
        self._macs = [hmac.new(key, head, hashlib.sha256) for _, key in ring.derived_keys(PURPOSE)]

    def update(self, chunk: bytes) -> None:
        """Feed the next part of the body."""
        for mac in self._macs:
            mac.update(chunk)

    def hexdigests(self) -> list[str]:
        """The fingerprints, active pepper first."""
        return [mac.hexdigest() for mac in self._macs]


def fingerprints(ring: KeyRing, method: str, path: str, body: bytes) -> list[str]:
    """What makes two requests "the same" for a key: keyed fingerprints, active first."""
    hasher = Fingerprinter(ring, method, path)
    hasher.update(body)
    return hasher.hexdigests()


def validate_key(key: str) -> str:
    """An Idempotency-Key header value, or InvalidRequest (422 when it holds an address)."""
    if not key or len(key) > MAX_KEY or not key.isascii() or not key.isprintable():
        raise InvalidRequest(f"Idempotency-Key must be 1-{MAX_KEY} printable ASCII characters")
    if "@" in key or contains_address(key):
        # Keys are stored as given: one that names a person would put the address at rest.
        raise Unprocessable(
            "Idempotency-Key must not contain an email address (or '@'); use a random id "
            "such as a UUID",
            code=ErrorCode.invalid_request,
        )
    return key


def stored_keys(ring: KeyRing, key: str) -> list[str]:
    """How a key is kept: keyed hashes (active pepper first), never the key as given.

    A caller may put anything in a key, an address in some encoding included; kept keyed,
    it is useless to whoever reads the database.
    """
    return [
        hmac.new(derived, key.encode(), hashlib.sha256).hexdigest()
        for _, derived in ring.derived_keys(KEY_PURPOSE)
    ]


def replay(
    session: Session, api_key_id: int, keys: Sequence[str], req_hashes: Sequence[str]
) -> tuple[int, str] | None:
    """The stored (status, body) for this key, None if new; 422 if reused for another request.

    keys and req_hashes are the stored forms under every pepper (stored_keys, fingerprints).
    """
    audit.lock(session)  # two concurrent retries must not both miss and both act
    row = None
    for key in keys:
        row = session.get(IdempotencyKey, (key, api_key_id))
        if row is not None:
            break
    if row is None:
        return None
    if not any(hmac.compare_digest(row.request_hash, h) for h in req_hashes):
        raise Unprocessable(
            "this Idempotency-Key was already used with a different request",
            code=ErrorCode.idempotency_key_reused,
        )
    return row.status, row.response


def store(
    session: Session, api_key_id: int, key: str, req_hash: str, status: int, body: str
) -> None:
    """Remember a response in the same transaction as the change it reports."""
    session.add(
        IdempotencyKey(
            key=key,
            api_key_id=api_key_id,
            request_hash=req_hash,
            status=status,
            response=body,
            created_at=clock.utcnow(),
        )
    )
    session.flush()


def purge(session: Session, older_than_hours: int, *, now: datetime) -> int:
    """Forget records older than the retention window (the hourly job); returns how many."""
    cutoff = now - timedelta(hours=older_than_hours)
    result = session.execute(delete(IdempotencyKey).where(IdempotencyKey.created_at < cutoff))
    return int(getattr(result, "rowcount", 0) or 0)
