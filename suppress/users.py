"""People's accounts for the console: argon2id passwords, roles, lockout and session epochs.

Apart from API keys: a key is a program's, an account is a person's, and the audit trail names
either (`api:<key>`, `console:<name>`). argon2-cffi lives here and nowhere else.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from . import audit
from .errors import InvalidRequest, NotFound
from .models import ConsoleUser, PersonRole

# Sign-in names: short, lowercase, and never an address (no @), so that a name in the audit
# trail, a log line or a cookie can never be someone's e-mail address.
NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
NAME_RULE = "a name is 1-64 characters of a-z, 0-9 and ._- starting with a letter or digit"
# NIST SP 800-63B: at least 8 characters for a chosen password; we ask for 12, and put no
# rules on its composition. The upper bound keeps one sign-in from hashing a megabyte.
MIN_PASSWORD = 12
MAX_PASSWORD = 1024
RANK = {PersonRole.viewer: 0, PersonRole.operator: 1, PersonRole.admin: 2}


@lru_cache(maxsize=1)
def _hasher() -> PasswordHasher:
    # argon2-cffi's defaults are RFC 9106's second recommended profile (argon2id, 64 MiB,
    # 3 passes, 4 lanes): about 50 ms here. A hash made with older parameters is redone at
    # the next sign-in (check_needs_rehash).
    return PasswordHasher()


@lru_cache(maxsize=1)
def _decoy() -> str:
    """A hash to verify against when no account has the name: the answer then takes as long
    as for a real account, so timing does not tell which names exist."""
    return _hasher().hash("no account has this name")


class PasswordRefused(InvalidRequest):
    """A new password the policy refuses; `problem` says which rule (short, long, name)."""

    def __init__(self, message: str, problem: str):
        super().__init__(message)
        self.problem = problem


class LastAdmin(InvalidRequest):
    """Disabling this account would leave no administrator who can sign in."""


def validate_name(value: str) -> str:
    """A sign-in name, lowercased, or InvalidRequest."""
    name = value.strip().lower()
    if not NAME.fullmatch(name):
        raise InvalidRequest(NAME_RULE)
    return name


def validate_password(password: str, name: str) -> str:
    """The password as given, or PasswordRefused naming the rule it breaks."""
    if len(password) < MIN_PASSWORD:
        raise PasswordRefused(f"a password needs at least {MIN_PASSWORD} characters", "short")
    if len(password) > MAX_PASSWORD:
        raise PasswordRefused(f"a password may have at most {MAX_PASSWORD} characters", "long")
    if name and name in password.lower():
        raise PasswordRefused("a password must not contain the sign-in name", "name")
    return password


def parse_role(value: str) -> PersonRole:
    """A console role by name, or InvalidRequest naming the valid ones."""
    try:
        return PersonRole(value)
    except ValueError:
        raise InvalidRequest(
            f"unknown role {value!r}; use one of: {', '.join(r.value for r in PersonRole)}"
        ) from None


@dataclass(frozen=True)
class Person:
    """Who is signed in: an account's id, name, role and the session epoch it was issued at."""

    id: int
    name: str
    role: PersonRole
    epoch: int

    @property
    def actor(self) -> str:
        """How the audit trail names this person."""
        return f"console:{self.name}"

    def may(self, role: PersonRole) -> bool:
        """Whether this person's role includes `role`."""
        return RANK[self.role] >= RANK[role]


def _person(user: ConsoleUser) -> Person:
    return Person(id=user.id, name=user.name, role=user.role, epoch=user.session_epoch)


@dataclass(frozen=True)
class Login:
    """The outcome of a sign-in: the person, or why not (unknown, wrong, locked, disabled)."""

    person: Person | None
    refused: str | None = None
    locked_now: bool = False


@dataclass(frozen=True)
class Lockout:
    """How many wrong passwords in a row lock an account, and for how long."""

    attempts: int = 5
    duration: timedelta = timedelta(minutes=15)


def _by_name(session: Session, name: str, *, lock: bool = False) -> ConsoleUser | None:
    query = select(ConsoleUser).where(ConsoleUser.name == name)
    if lock:  # concurrent wrong passwords must each count (PostgreSQL; SQLite writers queue)
        query = query.with_for_update()
    return session.scalars(query).one_or_none()


def _get(session: Session, name: str) -> ConsoleUser:
    user = _by_name(session, validate_name(name))
    if user is None:
        raise NotFound(f"no person named {name.strip().lower()!r}")
    return user


def create(
    session: Session, name: str, role: PersonRole, password: str, *, actor: str, now: datetime
) -> ConsoleUser:
    """Create an account with an argon2id hash of its password; the password is not kept."""
    name = validate_name(name)
    validate_password(password, name)
    if _by_name(session, name) is not None:
        raise InvalidRequest(f"a person named {name!r} already exists")
    user = ConsoleUser(
        name=name,
        role=role,
        password_hash=_hasher().hash(password),
        created_at=now,
        password_changed_at=now,
        failed_logins=0,
        session_epoch=0,
    )
    session.add(user)
    session.flush()
    audit.record(
        session,
        "user_create",
        actor=actor,
        detail={"user": name, "role": role.value},
        at=now,
    )
    return user


def list_users(session: Session) -> list[ConsoleUser]:
    """Every account, by name."""
    return list(session.scalars(select(ConsoleUser).order_by(ConsoleUser.name)))


def authenticate(
    session: Session, name: str, password: str, *, now: datetime, lockout: Lockout
) -> Login:
    """Check a sign-in; counts wrong passwords and locks the account after too many.

    Returns rather than raises, so that the caller commits the count of a wrong password.
    A locked or disabled account is refused whatever the password, after the same work.
    """
    try:
        name = validate_name(name)
    except InvalidRequest:
        name = ""
    user = _by_name(session, name, lock=True) if name else None
    if user is None:
        _verify(_decoy(), password)
        return Login(None, "unknown")
    if user.disabled_at is not None:
        # Verify against the decoy all the same: a refusal that came back faster would
        # tell which accounts are disabled or locked.
        _verify(_decoy(), password)
        return Login(None, "disabled")
    if user.locked_until is not None and user.locked_until > now:
        _verify(_decoy(), password)
        return Login(None, "locked")
    if not _verify(user.password_hash, password):
        return _wrong(session, user, now=now, lockout=lockout)
    if _hasher().check_needs_rehash(user.password_hash):
        user.password_hash = _hasher().hash(password)
    user.failed_logins, user.locked_until, user.last_login_at = 0, None, now
    session.flush()
    audit.record(session, "console_login", actor=f"console:{user.name}", at=now)
    return Login(_person(user))


def _wrong(session: Session, user: ConsoleUser, *, now: datetime, lockout: Lockout) -> Login:
    """Count a wrong password; the one that reaches the limit locks the account (audited)."""
    user.failed_logins += 1
    if user.failed_logins < lockout.attempts:
        return Login(None, "wrong")
    user.failed_logins = 0
    user.locked_until = now + lockout.duration
    audit.record(
        session,
        "console_lockout",
        actor="console",
        detail={
            "user": user.name,
            "attempts": lockout.attempts,
            "locked_until": user.locked_until.isoformat(timespec="seconds") + "Z",
        },
        at=now,
    )
    return Login(None, "locked", locked_now=True)


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher().verify(password_hash, password[: MAX_PASSWORD + 1])
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def current(session: Session, user_id: int, epoch: int) -> Person | None:
    """The person a session names, while its epoch is current and the account enabled."""
    user = session.get(ConsoleUser, user_id)
    if user is None or user.disabled_at is not None or user.session_epoch != epoch:
        return None
    return _person(user)


def _end_sessions(user: ConsoleUser) -> None:
    user.session_epoch += 1


def logout(session: Session, person: Person, *, now: datetime) -> None:
    """End every session of this person (each browser signs in again) and record it."""
    user = session.get(ConsoleUser, person.id)
    if user is not None:
        _end_sessions(user)
    audit.record(session, "console_logout", actor=person.actor, at=now)


def disable(session: Session, name: str, *, actor: str, now: datetime) -> ConsoleUser:
    """Disable an account and end its sessions; refuses to leave no admin who can sign in."""
    user = _get(session, name)
    if user.disabled_at is not None:
        return user
    if user.role is PersonRole.admin:
        admins = session.scalar(
            select(func.count())
            .select_from(ConsoleUser)
            .where(ConsoleUser.role == PersonRole.admin, ConsoleUser.disabled_at.is_(None))
        )
        if (admins or 0) <= 1:
            raise LastAdmin(
                f"{user.name!r} is the last admin who can sign in: create another admin first"
            )
    user.disabled_at = now
    _end_sessions(user)
    audit.record(session, "user_disable", actor=actor, detail={"user": user.name}, at=now)
    return user


def enable(session: Session, name: str, *, actor: str, now: datetime) -> ConsoleUser:
    """Let a disabled account sign in again (with its password as it was)."""
    user = _get(session, name)
    if user.disabled_at is None:
        return user
    user.disabled_at = None
    user.failed_logins, user.locked_until = 0, None
    audit.record(session, "user_enable", actor=actor, detail={"user": user.name}, at=now)
    return user


def reset_password(
    session: Session, name: str, password: str, *, actor: str, now: datetime
) -> ConsoleUser:
    """Set a new password (an admin's reset), lift a lock and end the account's sessions."""
    user = _get(session, name)
    validate_password(password, user.name)
    user.password_hash = _hasher().hash(password)
    user.password_changed_at = now
    user.failed_logins, user.locked_until = 0, None
    _end_sessions(user)
    audit.record(session, "user_password_reset", actor=actor, detail={"user": user.name}, at=now)
    return user


def change_password(
    session: Session,
    person: Person,
    current_password: str,
    new_password: str,
    *,
    now: datetime,
    lockout: Lockout,
) -> Login:
    """A person's own change of password, given the current one.

    The new password is checked against the rules first, so that a refusal of it never
    says whether the current one was right. A wrong current password counts toward the
    account's lockout exactly as a wrong sign-in does; the one that locks it also ends every
    session of the account (whoever holds a session cannot go on guessing). On success the
    other sessions end, and the returned Person carries the new epoch for the one that asked.
    """
    validate_password(new_password, person.name)
    user = session.get(ConsoleUser, person.id, with_for_update=True)
    if user is None or user.disabled_at is not None:
        _verify(_decoy(), current_password)
        return Login(None, "disabled")
    if user.locked_until is not None and user.locked_until > now:
        _verify(_decoy(), current_password)
        _end_sessions(user)
        return Login(None, "locked")
    if not _verify(user.password_hash, current_password):
        outcome = _wrong(session, user, now=now, lockout=lockout)
        if outcome.locked_now:
            _end_sessions(user)
        return outcome
    user.password_hash = _hasher().hash(new_password)
    user.password_changed_at = now
    user.failed_logins = 0
    _end_sessions(user)
    session.flush()
    audit.record(session, "user_password_change", actor=person.actor, at=now)
    return Login(_person(user))
