"""Every process holds the same secrets as every other: keyed fingerprints in the database.

Two instances on one database with different peppers under the same id would each write
rows the other can never match, and answer "allowed" for people who said no; an instance
without the secret that signed a link cannot honour that link's opt-out. Each process
therefore records HMAC(secret, a fixed label) for each pepper it has and for the secret it
signs links with, and compares its own with what is recorded: a pepper id recorded with
another value, or a signing secret recorded that this process lacks, stops it (refused at
start; 503 `secrets_mismatch` on /readyz and on the gate).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from . import audit, clock
from .addresses import KeyRing
from .db import Database
from .errors import ErrorCode, NotFound, SecretsMismatch, Unprocessable
from .models import SecretCheck

PEPPER = "pepper"
TOKEN = "token"
_TOKEN_LABEL = b"suppress:token-secret-check:v1"


def token_fingerprint(secret: str) -> bytes:
    return hmac.new(secret.encode("utf-8"), _TOKEN_LABEL, hashlib.sha256).digest()


def token_id(secret: str) -> str:
    """A short public name for a token secret (16 hex digits of its fingerprint)."""
    return token_fingerprint(secret).hex()[:16]


@dataclass(frozen=True)
class Mine:
    """This process's fingerprints: every pepper, and every token secret (the first signs)."""

    peppers: dict[str, bytes]
    tokens: dict[str, bytes]
    signing: str

    @classmethod
    def of(cls, ring: KeyRing, token_secrets: tuple[str, ...]) -> Mine:
        return cls(
            peppers=dict(ring.fingerprints()),
            tokens={token_id(s): token_fingerprint(s) for s in token_secrets},
            signing=token_id(token_secrets[0]),
        )


def problems(session: Session, mine: Mine) -> tuple[list[str], list[SecretCheck]]:
    """What disagrees with the recorded fingerprints, and what this process has not recorded."""
    recorded = {(r.kind, r.key_id): r.fingerprint for r in session.scalars(select(SecretCheck))}
    found: list[str] = []
    for key_id, value in mine.peppers.items():
        stored = recorded.get((PEPPER, key_id))
        if stored is not None and not hmac.compare_digest(stored, value):
            found.append(
                f"pepper {key_id} here is not the pepper {key_id} already in use with this "
                "database: rows written by one can never be matched by the other. Use the "
                "same SUPPRESS_PEPPERS on every instance"
            )
    for kind, key_id in recorded:
        if kind == TOKEN and key_id not in mine.tokens:
            found.append(
                f"token secret {key_id} has signed unsubscribe links but is not in "
                "SUPPRESS_TOKEN_SECRETS here: those links would be refused. Use the same "
                "SUPPRESS_TOKEN_SECRETS on every instance (old secrets stay, after the new)"
            )
    for key_id, value in mine.tokens.items():
        stored = recorded.get((TOKEN, key_id))
        if stored is not None and not hmac.compare_digest(stored, value):  # 64-bit id clash
            found.append(f"token secret {key_id} does not match the one recorded")
    missing = [
        SecretCheck(kind=PEPPER, key_id=k, fingerprint=v, created_at=clock.utcnow())
        for k, v in mine.peppers.items()
        if (PEPPER, k) not in recorded
    ]
    if (TOKEN, mine.signing) not in recorded:
        missing.append(
            SecretCheck(
                kind=TOKEN,
                key_id=mine.signing,
                fingerprint=mine.tokens[mine.signing],
                created_at=clock.utcnow(),
            )
        )
    return found, missing


def verify(db: Database, mine: Mine) -> None:
    """Record this process's fingerprints where absent; SecretsMismatch on any disagreement.

    A read first (the usual case records nothing); a write only for what is new. Two
    processes recording the same id at once: one wins, the other reads it and compares.
    """
    for _attempt in range(3):
        with db.begin(write=False) as session:
            found, missing = problems(session, mine)
        if found:
            raise SecretsMismatch("; ".join(found))
        if not missing:
            return
        try:
            with db.begin() as session:
                session.add_all(missing)
        except Exception as exc:  # noqa: BLE001 - a concurrent insert of the same id
            if not isinstance(exc.__cause__, IntegrityError):
                raise
    with db.begin(write=False) as session:
        found, _ = problems(session, mine)
    if found:
        raise SecretsMismatch("; ".join(found))


def listing(session: Session, mine: Mine) -> list[dict[str, object]]:
    """The recorded fingerprints by kind and id, and whether this process holds each."""
    out = []
    for row in session.scalars(select(SecretCheck).order_by(SecretCheck.kind, SecretCheck.key_id)):
        held = mine.peppers if row.kind == PEPPER else mine.tokens
        out.append(
            {
                "kind": row.kind,
                "id": row.key_id,
                "since": row.created_at.isoformat(timespec="seconds") + "Z",
                "here": row.key_id in held
                and hmac.compare_digest(held[row.key_id], row.fingerprint),
            }
        )
    return out


def forget_token_secret(session: Session, key_id: str, mine: Mine, *, actor: str) -> None:
    """Stop requiring a token secret everywhere (a compromised one): its links stop working."""
    if key_id in mine.tokens:
        raise Unprocessable(
            f"token secret {key_id} is still in SUPPRESS_TOKEN_SECRETS here: remove it from "
            "every instance's SUPPRESS_TOKEN_SECRETS first, then forget it",
            code=ErrorCode.secret_in_use,
        )
    audit.lock(session)
    gone = session.execute(
        delete(SecretCheck).where(SecretCheck.kind == TOKEN, SecretCheck.key_id == key_id)
    )
    if not gone.rowcount:  # type: ignore[attr-defined]
        raise NotFound(f"no token secret {key_id} is recorded")
    audit.record(session, "forget_token_secret", actor=actor, detail={"token_secret": key_id})
