"""Typed tables of the suppression list, the audit trail, API keys, job runs, idempotency,
the register of data-subject requests and the console's people."""

from __future__ import annotations

import enum
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    DateTime,
    Enum,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
LIST_PATTERN = r"^[a-z0-9][a-z0-9._:-]{0,63}$"
GLOBAL_LIST = "global"


class Kind(enum.StrEnum):
    """What a suppression row matches."""

    address = "address"
    domain = "domain"


class Reason(enum.StrEnum):
    """Why someone is suppressed (DESIGN §4)."""

    unsubscribe = "unsubscribe"
    objection = "objection"
    consent_withdrawn = "consent_withdrawn"
    complaint = "complaint"
    hard_bounce = "hard_bounce"
    soft_bounce = "soft_bounce"
    manual = "manual"
    erasure = "erasure"


class RequestKind(enum.StrEnum):
    """What a data subject asks for (DESIGN §11; GDPR art. 7(3), 15-18, 20, 21)."""

    access = "access"
    rectification = "rectification"
    erasure = "erasure"
    portability = "portability"
    objection = "objection"
    restriction = "restriction"
    consent_withdrawal = "consent_withdrawal"


class RequestStatus(enum.StrEnum):
    """Open until closed with an outcome."""

    open = "open"
    closed = "closed"


class Outcome(enum.StrEnum):
    """How a data-subject request ended."""

    fulfilled = "fulfilled"
    refused = "refused"
    withdrawn = "withdrawn"


class Role(enum.StrEnum):
    """What an API key may do; each role includes the ones before it."""

    mailer = "mailer"
    recorder = "recorder"
    admin = "admin"


class PersonRole(enum.StrEnum):
    """What a person may do in the console (DESIGN §12); each includes the ones before it."""

    viewer = "viewer"
    operator = "operator"
    admin = "admin"


def _enum(cls: type[enum.Enum], name: str) -> Enum:
    # Stored by value as plain strings: readable in SQL, no native ENUM type to migrate.
    return Enum(
        cls,
        name=name,
        native_enum=False,
        create_constraint=False,
        length=32,
        values_callable=lambda members: [m.value for m in members],
    )


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Suppression(Base):
    __tablename__ = "suppression"
    __table_args__ = (
        UniqueConstraint("digest", "kind", "list", name="uq_suppression_digest_kind_list"),
        Index("ix_suppression_expires_at", "expires_at"),
        Index("ix_suppression_key_id", "key_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    digest: Mapped[bytes] = mapped_column(
        LargeBinary(32), comment="HMAC-SHA256 of the n1-normalized address or domain"
    )
    key_id: Mapped[str] = mapped_column(String(16), comment="id of the pepper that keyed digest")
    scheme: Mapped[str] = mapped_column(String(8), default="n1", comment="normalization scheme")
    kind: Mapped[Kind] = mapped_column(_enum(Kind, "kind"))
    list: Mapped[str] = mapped_column(String(64), comment="list name; 'global' applies to all")
    reason: Mapped[Reason] = mapped_column(_enum(Reason, "reason"))
    source: Mapped[str] = mapped_column(String(128), comment="where the opt-out came from")
    created_at: Mapped[datetime] = mapped_column(DateTime, comment="UTC")
    expires_at: Mapped[datetime | None] = mapped_column(
        DateTime, nullable=True, comment="UTC; only temporary (bounce) suppressions expire"
    )


class AuditEvent(Base):
    __tablename__ = "audit_event"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime, comment="UTC")
    action: Mapped[str] = mapped_column(String(32))
    digest: Mapped[bytes | None] = mapped_column(LargeBinary(32), nullable=True, index=True)
    kind: Mapped[str | None] = mapped_column(String(16), nullable=True)
    list: Mapped[str | None] = mapped_column(String(64), nullable=True)
    reason: Mapped[str | None] = mapped_column(String(64), nullable=True)
    source: Mapped[str | None] = mapped_column(String(128), nullable=True)
    actor: Mapped[str] = mapped_column(
        String(128), comment="api:<key name>, cli:<user>, job:<name>"
    )
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, comment="structured facts; never PII")
    prev_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    hash: Mapped[bytes] = mapped_column(
        LargeBinary(32), unique=True, comment="SHA-256(prev_hash + canonical event)"
    )


class ApiKey(Base):
    __tablename__ = "api_key"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    role: Mapped[Role] = mapped_column(_enum(Role, "role"))
    token_hash: Mapped[str] = mapped_column(
        String(64), unique=True, comment="SHA-256 hex of the bearer token; the token is not kept"
    )
    created_at: Mapped[datetime] = mapped_column(DateTime, comment="UTC")
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(
        DateTime, nullable=True, comment="UTC; updated at most once a minute"
    )


class JobRun(Base):
    __tablename__ = "job_run"
    __table_args__ = (UniqueConstraint("job", "run_key", name="uq_job_run_job_run_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job: Mapped[str] = mapped_column(String(32))
    run_key: Mapped[str] = mapped_column(
        String(64), comment="local date (hour for expire) or manual:<timestamp>"
    )
    started_at: Mapped[datetime] = mapped_column(DateTime, comment="UTC")
    finished_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    lease_until: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    status: Mapped[str] = mapped_column(String(16), comment="running|ok|failed|stale")
    summary: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class JobLease(Base):
    __tablename__ = "job_lease"

    job: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner: Mapped[str] = mapped_column(String(128), comment="host:pid:nonce of the holder")
    acquired_at: Mapped[datetime] = mapped_column(DateTime, comment="UTC")
    lease_until: Mapped[datetime] = mapped_column(
        DateTime,
        comment="UTC; past it the holder is presumed dead (SQLite; PostgreSQL uses advisory locks)",
    )


class ReconcileFile(Base):
    __tablename__ = "reconcile_file"
    __table_args__ = (
        UniqueConstraint("source", "content_hash", name="uq_reconcile_file_source_content_hash"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source: Mapped[str] = mapped_column(String(64), comment="[[reconcile.sources]] name")
    content_hash: Mapped[bytes] = mapped_column(
        LargeBinary(32), comment="SHA-256 of the file's bytes: a file is applied once"
    )
    name: Mapped[str] = mapped_column(String(255), comment="file name when first applied")
    rows: Mapped[int] = mapped_column(Integer)
    added: Mapped[int] = mapped_column(Integer)
    processed_at: Mapped[datetime] = mapped_column(DateTime, comment="UTC")


class IdempotencyKey(Base):
    __tablename__ = "idempotency_key"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    api_key_id: Mapped[int] = mapped_column(
        ForeignKey("api_key.id", ondelete="CASCADE"), primary_key=True
    )
    request_hash: Mapped[str] = mapped_column(
        String(64),
        comment="HMAC-SHA256 of method, path, body under a key derived from the pepper",
    )
    status: Mapped[int] = mapped_column(Integer)
    response: Mapped[str] = mapped_column(Text, comment="the stored JSON response body")
    created_at: Mapped[datetime] = mapped_column(DateTime, index=True, comment="UTC")


class SecretCheck(Base):
    """A keyed fingerprint of each pepper and token-signing secret any process has used.

    HMAC(secret, a fixed label): it tells whether two processes hold the same secret under
    the same id, and is useless for anything else (it is computed from no address).
    """

    __tablename__ = "secret_check"

    kind: Mapped[str] = mapped_column(String(8), primary_key=True, comment="pepper or token")
    key_id: Mapped[str] = mapped_column(
        String(32), primary_key=True, comment="the pepper id; for a token secret its short id"
    )
    fingerprint: Mapped[bytes] = mapped_column(LargeBinary(32), comment="HMAC(secret, label)")
    created_at: Mapped[datetime] = mapped_column(DateTime, comment="UTC")


class WebhookEvent(Base):
    """A mailing tool's event (or Mailgun signing token) already taken: retries add nothing.

    Kept keyed, never as given: a stand-in event id is computed from the event, address
    included, so it is stored only as an HMAC under a key derived from the pepper.
    """

    __tablename__ = "webhook_event"

    key: Mapped[str] = mapped_column(
        String(64), primary_key=True, comment="HMAC-SHA256 hex of provider and event id"
    )
    provider: Mapped[str] = mapped_column(String(16), comment="sendgrid, mailgun, ...")
    received_at: Mapped[datetime] = mapped_column(DateTime, index=True, comment="UTC")


class SubjectRequest(Base):
    """A data-subject request and its clock (DESIGN §11). The address it names, if any, is
    kept only as its digest, keyed like a suppression's, so a lookup of the address finds it."""

    __tablename__ = "subject_request"
    __table_args__ = (Index("ix_subject_request_status_due", "status", "due"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[RequestKind] = mapped_column(_enum(RequestKind, "request_kind"))
    reference: Mapped[str] = mapped_column(
        String(128), comment="the controller's reference (a ticket number); no address"
    )
    channel: Mapped[str | None] = mapped_column(
        String(128), nullable=True, comment="how it arrived: phone, email, letter, ..."
    )
    note: Mapped[str | None] = mapped_column(
        Text, nullable=True, comment="the officer's note; no address, kept out of the audit"
    )
    digest: Mapped[bytes | None] = mapped_column(
        LargeBinary(32),
        nullable=True,
        index=True,
        comment="HMAC-SHA256 of the n1-normalized address the request is about, if given",
    )
    key_id: Mapped[str | None] = mapped_column(
        String(16), nullable=True, comment="id of the pepper that keyed digest"
    )
    received_at: Mapped[datetime] = mapped_column(DateTime, comment="UTC")
    first_due: Mapped[date] = mapped_column(
        Date, comment="the day of receipt plus one month, in the compliance time zone"
    )
    due: Mapped[date] = mapped_column(
        Date, comment="first_due, or the day of receipt plus three months once extended"
    )
    status: Mapped[RequestStatus] = mapped_column(_enum(RequestStatus, "request_status"))
    identity_verified_at: Mapped[datetime | None] = mapped_column(
        DateTime, nullable=True, comment="UTC"
    )
    identity_method: Mapped[str | None] = mapped_column(String(128), nullable=True)
    extended: Mapped[bool] = mapped_column(Boolean, default=False)
    extension_reason: Mapped[str | None] = mapped_column(
        String(500), nullable=True, comment="why more time is needed, as the reader was told"
    )
    notified_at: Mapped[datetime | None] = mapped_column(
        DateTime, nullable=True, comment="UTC; when the reader was told of the extension"
    )
    outcome: Mapped[Outcome | None] = mapped_column(_enum(Outcome, "outcome"), nullable=True)
    closing_note: Mapped[str | None] = mapped_column(
        Text, nullable=True, comment="no address, kept out of the audit"
    )
    registered_at: Mapped[datetime] = mapped_column(DateTime, comment="UTC")
    closed_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True, comment="UTC")


class ConsoleUser(Base):
    """A person who signs in to the console (DESIGN §12), apart from API keys."""

    __tablename__ = "console_user"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True, comment="the sign-in name")
    role: Mapped[PersonRole] = mapped_column(_enum(PersonRole, "person_role"))
    password_hash: Mapped[str] = mapped_column(
        String(255), comment="argon2id PHC string (salted); the password is not kept"
    )
    created_at: Mapped[datetime] = mapped_column(DateTime, comment="UTC")
    password_changed_at: Mapped[datetime] = mapped_column(DateTime, comment="UTC")
    disabled_at: Mapped[datetime | None] = mapped_column(
        DateTime, nullable=True, comment="UTC; a disabled person cannot sign in"
    )
    failed_logins: Mapped[int] = mapped_column(
        Integer, default=0, comment="wrong passwords in a row since the last sign-in or lock"
    )
    locked_until: Mapped[datetime | None] = mapped_column(
        DateTime, nullable=True, comment="UTC; no sign-in until then (too many wrong passwords)"
    )
    session_epoch: Mapped[int] = mapped_column(
        Integer,
        default=0,
        comment="bumped on logout, disable and password change: older sessions stop working",
    )
    last_login_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True, comment="UTC")
