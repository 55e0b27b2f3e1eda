"""Idempotency-Key records: a retry replays the first response and changes nothing."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Any

from sqlalchemy import delete
from sqlalchemy.orm import Session

from . import audit
from .errors import InvalidRequest, Unprocessable
from .models import IdempotencyKey

MAX_KEY = 255


def request_hasher(method: str, path: str) -> Any:
    """An incremental request hash: feed it the body with update(), then hexdigest()."""
    return hashlib.sha256(method.encode() + b" " + path.encode() + b"\n")


def request_hash(method: str, path: str, body: bytes) -> str:
    """What makes two requests "the same" for a key."""
    hasher = request_hasher(method, path)
    hasher.update(body)
    return str(hasher.hexdigest())


def validate_key(key: str) -> str:
    """An Idempotency-Key header value, or InvalidRequest."""
    if not key or len(key) > MAX_KEY or not key.isascii() or not key.isprintable():
        raise InvalidRequest(f"Idempotency-Key must be 1-{MAX_KEY} printable ASCII characters")
    return key


def replay(session: Session, api_key_id: int, key: str, req_hash: str) -> tuple[int, str] | None:
    """The stored (status, body) for this key, None if new; 422 if reused for another request."""
    audit.lock(session)  # two concurrent retries must not both miss and both act
    row = session.get(IdempotencyKey, (key, api_key_id))
    if row is None:
        return None
    if row.request_hash != req_hash:
        raise Unprocessable(
            "this Idempotency-Key was already used with a different request",
            code="idempotency_key_reused",
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
            created_at=audit.utcnow(),
        )
    )
    session.flush()


def purge(session: Session, older_than_hours: int) -> int:
    """Forget records older than the retention window; returns how many."""
    cutoff = audit.utcnow() - timedelta(hours=older_than_hours)
    result = session.execute(delete(IdempotencyKey).where(IdempotencyKey.created_at < cutoff))
    return int(getattr(result, "rowcount", 0) or 0)
