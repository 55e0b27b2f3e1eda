"""Create, verify (constant time) and revoke API keys; only a token's SHA-256 is stored."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, select
from sqlalchemy.orm import Session

from . import audit, clock
from .errors import Forbidden, InvalidRequest, NotFound, Unauthorized
from .models import ApiKey, Role

TOKEN_PREFIX = "sk_"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._:@-]{0,63}$")
ROLE_RANK = {Role.mailer: 0, Role.recorder: 1, Role.admin: 2}
TOUCH_INTERVAL = timedelta(minutes=1)


@dataclass(frozen=True)
class Principal:
    """Who is calling: an API key's id, name and role."""

    id: int
    name: str
    role: Role
    last_used_at: datetime | None = None

    def needs_touch(self, now: datetime) -> bool:
        """True when last use is older than TOUCH_INTERVAL (so most requests write nothing)."""
        return self.last_used_at is None or now - self.last_used_at > TOUCH_INTERVAL

    @property
    def actor(self) -> str:
        """How the audit trail names this caller."""
        return f"api:{self.name}"

    def require(self, role: Role) -> None:
        """Raise Forbidden unless this key's role includes `role`."""
        if ROLE_RANK[self.role] < ROLE_RANK[role]:
            raise Forbidden(f"this API key has role {self.role.value}; {role.value} is required")


def hash_token(token: str) -> str:
    """SHA-256 hex of a bearer token: what the database holds."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def parse_role(value: str) -> Role:
    """A role by name, or InvalidRequest naming the valid ones."""
    try:
        return Role(value)
    except ValueError:
        raise InvalidRequest(
            f"unknown role {value!r}; use one of: {', '.join(r.value for r in Role)}"
        ) from None


def create(session: Session, name: str, role: Role, *, actor: str) -> tuple[ApiKey, str]:
    """Create a key; returns the row and the token, which is shown once and never stored."""
    if not NAME.match(name) or "@" in name:
        raise InvalidRequest("key name: 1-64 letters, digits, space or ._:- (no addresses)")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(name=name, role=role, token_hash=hash_token(token), created_at=clock.utcnow())
    session.add(key)
    session.flush()
    audit.record(
        session,
        "apikey_create",
        actor=actor,
        detail={"key_id": key.id, "name": name, "role": role.value},
    )
    return key, token


def list_keys(session: Session) -> list[ApiKey]:
    """Every key, oldest first."""
    return list(session.scalars(select(ApiKey).order_by(ApiKey.id)))


def revoke(session: Session, key_id: int, *, actor: str) -> ApiKey:
    """Revoke a key by id; revoking twice is harmless."""
    key = session.get(ApiKey, key_id)
    if key is None:
        raise NotFound(f"no API key with id {key_id}")
    if key.revoked_at is None:
        key.revoked_at = clock.utcnow()
        audit.record(
            session, "apikey_revoke", actor=actor, detail={"key_id": key.id, "name": key.name}
        )
    return key


# How long a process trusts a key it verified: a revocation takes effect within this time.
CACHE_SECONDS = 1.0
CACHE_SIZE = 1024


class KeyCache:
    """Keys this process verified in the last CACHE_SECONDS, by token hash.

    Only keys that authenticated are kept: a new key works at once, and a made-up token
    costs its database lookup every time, as before. A revoked key is refused within
    CACHE_SECONDS on every instance.
    """

    def __init__(self, seconds: float = CACHE_SECONDS, size: int = CACHE_SIZE):
        self.seconds = seconds
        self.size = size
        self._keys: dict[str, tuple[float, Principal]] = {}

    def get(self, token_hash: str, now: float) -> Principal | None:
        found = self._keys.get(token_hash)
        if found is None:
            return None
        until, principal = found
        if now >= until:
            del self._keys[token_hash]
            return None
        return principal

    def put(self, token_hash: str, principal: Principal, now: float) -> None:
        if len(self._keys) >= self.size:
            self._keys.clear()  # rare: more live keys than this; start over
        self._keys[token_hash] = (now + self.seconds, principal)

    def forget(self, key_id: int) -> None:
        """Drop a key revoked by this process: here the revocation takes effect at once."""
        for token_hash, (_until, principal) in list(self._keys.items()):
            if principal.id == key_id:
                self._keys.pop(token_hash, None)

    def touched(self, token_hash: str, principal: Principal) -> None:
        """Keep the cached key's last use current, so one touch a minute stays one."""
        found = self._keys.get(token_hash)
        if found is not None:
            self._keys[token_hash] = (found[0], principal)


def authenticate(session: Session | Connection, token: str | None) -> Principal:
    """The Principal for a bearer token, or Unauthorized.

    The lookup is by the token's SHA-256, so timing reveals nothing about the token; the
    final comparison is constant time as well.
    """
    if not token:
        raise Unauthorized("missing bearer token: send 'Authorization: Bearer <token>'")
    wanted = hash_token(token)
    # Columns, not an entity: this runs on every request, and nothing here is modified.
    connection = session.connection() if isinstance(session, Session) else session
    key = connection.execute(
        select(
            ApiKey.id,
            ApiKey.name,
            ApiKey.role,
            ApiKey.token_hash,
            ApiKey.revoked_at,
            ApiKey.last_used_at,
        ).where(ApiKey.token_hash == wanted)
    ).one_or_none()
    if key is None or not hmac.compare_digest(key.token_hash, wanted) or key.revoked_at:
        raise Unauthorized("unknown or revoked API key")
    return Principal(id=key.id, name=key.name, role=key.role, last_used_at=key.last_used_at)


def touch(session: Session, principal: Principal) -> None:
    """Record that a key was used now."""
    key = session.get(ApiKey, principal.id)
    if key is not None:
        key.last_used_at = clock.utcnow()
