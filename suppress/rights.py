"""The register of data-subject requests and the policy's clock (DESIGN §11); takes a Session,
flushes, never commits.

A request is due on the day of receipt, in the controller's time zone, plus one calendar
month; an extension makes it the day of receipt plus three. The month arithmetic is a pure
function (add_months), so the clock can be tested without a database.
"""

from __future__ import annotations

import calendar
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from . import audit, clock, suppressions
from .addresses import Target, contains_address
from .errors import (
    Conflict,
    ErrorCode,
    InvalidRequest,
    NotFound,
    Unprocessable,
)
from .models import (
    GLOBAL_LIST,
    Outcome,
    Reason,
    RequestKind,
    RequestStatus,
    SubjectRequest,
    Suppression,
)

# DESIGN §11: one month to answer, extendable by two further months (GDPR art. 12(3)).
MONTHS = 1
EXTENDED_MONTHS = 3
# "Due this week": due today or on one of the six days after it.
WEEK_DAYS = 7
# A timestamp this far ahead of our clock is a typo, not a clock difference between hosts.
CLOCK_SKEW = timedelta(minutes=5)
# Requests that stop marketing at once, on every list, when they name an address.
SUPPRESSING: dict[RequestKind, Reason] = {
    RequestKind.objection: Reason.objection,
    RequestKind.consent_withdrawal: Reason.consent_withdrawn,
}
# Free text: short single lines (reference, channel, identity method), longer notes.
MAX_LINE = 128
MAX_REASON = 500
MAX_NOTE = 2000
# Request ids are 32-bit integers in the database; a larger one names no request.
MAX_ID = 2**31 - 1
STATUSES = ("open", "overdue", "closed")
# The listings: the API's and the CLI's statuses, and open requests due within the week.
LISTINGS = (*STATUSES, "due_this_week")


# --- the clock ------------------------------------------------------------------------------


def add_months(day: date, months: int) -> date:
    """The same day `months` calendar months later, or that month's last day if it has no
    such day (31 January + 1 month = 28 or 29 February)."""
    index = day.month - 1 + months
    year, month = day.year + index // 12, index % 12 + 1
    if not 1 <= year <= 9999:
        raise Unprocessable(
            "the deadline would lie outside the years 1 to 9999",
            code=ErrorCode.invalid_request,
            problem="out_of_range",
        )
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def local_day(moment: datetime, zone: ZoneInfo) -> date:
    """The calendar day in `zone` of a naive UTC moment."""
    try:
        return moment.replace(tzinfo=UTC).astimezone(zone).date()
    except (OverflowError, ValueError):
        raise Unprocessable(
            "the time lies outside the years 1 to 9999 in the compliance time zone",
            code=ErrorCode.invalid_request,
            problem="out_of_range",
        ) from None


def due_date(received_at: datetime, zone: ZoneInfo, months: int = MONTHS) -> date:
    """The day of receipt in `zone` plus `months` calendar months (DESIGN §11)."""
    return add_months(local_day(received_at, zone), months)


def local_moment(value: str, name: str, zone: ZoneInfo) -> datetime:
    """An ISO 8601 time as naive UTC; one without an offset (or a bare date) is a time in
    `zone`, as the officer's calendar shows it (the CLI's options, the console's forms)."""
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise Unprocessable(
            f"{name} is not an ISO 8601 time such as 2026-01-31T14:05 or 2026-01-31",
            code=ErrorCode.invalid_request,
            field=name,
            problem="not_a_time",
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=zone)
    try:
        return clock.naive_utc(parsed)
    except OverflowError:
        raise Unprocessable(
            f"{name} lies outside the years 1 to 9999 in UTC",
            code=ErrorCode.invalid_request,
            field=name,
            problem="out_of_range",
        ) from None


def receipt_day(row: SubjectRequest, zone: ZoneInfo) -> date:
    """The day of receipt the request was registered with, as its first due day shows it.

    Recomputed in the zone configured now, it could be another day if the zone changed since
    registration; the registered day is within a day of it, and the one whose month later
    is the recorded first due day.
    """
    here = local_day(row.received_at, zone)
    for shift in (0, -1, 1):
        try:  # a row from before the earliest receipt was enforced may sit at date.min
            candidate = here + timedelta(days=shift)
            if add_months(candidate, MONTHS) == row.first_due:
                return candidate
        except OverflowError:
            continue
    return here


def extended_due(row: SubjectRequest, zone: ZoneInfo) -> date:
    """The due day an extension gives: the day of receipt plus three calendar months."""
    return add_months(receipt_day(row, zone), EXTENDED_MONTHS)


def today(zone: ZoneInfo, now: datetime) -> date:
    """Today in the compliance zone, for a naive UTC now."""
    return local_day(now, zone)


def is_overdue(row: SubjectRequest, today: date) -> bool:
    """Open, and today (in the compliance zone) is after the due day."""
    return row.status is RequestStatus.open and today > row.due


def week_end(today: date) -> date:
    """The last due day that counts as "due this week": today and the six days after."""
    return today + timedelta(days=WEEK_DAYS - 1)


@dataclass(frozen=True)
class Counts:
    """The register at a glance: for /metrics and /healthz."""

    open: int
    due_this_week: int  # open, due today or within the six days after (not yet overdue)
    overdue: int  # open, and today is after the due day
    next_due: date | None  # the earliest due day of an open request (past when overdue)

    def to_dict(self) -> dict[str, Any]:
        return {
            "open": self.open,
            "due_this_week": self.due_this_week,
            "overdue": self.overdue,
            "next_due": self.next_due.isoformat() if self.next_due else None,
        }


def counts(session: Session, today: date) -> Counts:
    """Open, due-this-week and overdue requests as of `today` (in the compliance zone)."""
    due = SubjectRequest.due
    total, overdue, this_week, first = session.execute(
        select(
            func.count(),
            func.sum(case((due < today, 1), else_=0)),
            func.sum(case((due.between(today, week_end(today)), 1), else_=0)),
            func.min(due),
        ).where(SubjectRequest.status == RequestStatus.open)
    ).one()
    if isinstance(first, str):  # SQLite answers an aggregate of a date column as text
        first = date.fromisoformat(first)
    return Counts(int(total), int(this_week or 0), int(overdue or 0), first)


# --- free text ------------------------------------------------------------------------------


def free_text(
    name: str, value: Any, *, limit: int = MAX_LINE, required: bool = True, lines: bool = False
) -> str | None:
    """Free text of a request: bounded, printable (notes may break lines), never an address.

    Blank optional text is no text (None). An address in it is refused (422): the register
    and the audit trail hold none.
    """
    if value is None or (isinstance(value, str) and not value.strip() and not required):
        if required:
            raise InvalidRequest(f"{name} is required", field=name, problem="required")
        return None
    if not isinstance(value, str) or not value.strip():
        raise InvalidRequest(
            f"{name} is required and must be a non-empty string", field=name, problem="required"
        )
    value = value.strip().replace("\r\n", "\n")
    if len(value) > limit:
        raise InvalidRequest(
            f"{name} must be at most {limit} characters", field=name, problem="too_long"
        )
    allowed = "\n\t" if lines else ""
    if not all(ch.isprintable() or ch in allowed for ch in value):
        what = "printable characters and line breaks" if lines else "printable characters"
        raise InvalidRequest(f"{name} must hold only {what}", field=name, problem="unprintable")
    if contains_address(value):
        raise Unprocessable(
            f"{name} must not contain an email address: give the address in 'email' "
            "(kept only as its keyed hash) and a reference here",
            code=ErrorCode.invalid_request,
            field=name,
            problem="address",
        )
    return value


# Nothing the register records (a receipt, a check of identity, a notice) happened before
# this: it keeps the clock of requests still being answered, and a year-1 date is a slip.
EARLIEST_RECEIPT = datetime(2000, 1, 1)


def _plausible(name: str, moment: datetime, now: datetime) -> None:
    if moment < EARLIEST_RECEIPT:
        raise Unprocessable(
            f"{name} lies before the year 2000",
            code=ErrorCode.invalid_request,
            field=name,
            problem="too_early",
        )
    if moment > now + CLOCK_SKEW:
        raise Unprocessable(
            f"{name} lies in the future",
            code=ErrorCode.invalid_request,
            field=name,
            problem="future",
        )


def _not_before_receipt(name: str, moment: datetime, row: SubjectRequest, zone: ZoneInfo) -> None:
    # By the day in the compliance zone: a notice or a check of identity is often known
    # only by its date, and the day of receipt itself is never too early.
    if local_day(moment, zone) < local_day(row.received_at, zone):
        raise Unprocessable(
            f"{name} lies before the request was received ({_stamp(row.received_at)})",
            code=ErrorCode.invalid_request,
            field=name,
            problem="before_receipt",
        )


# --- the register ---------------------------------------------------------------------------


def _stamp(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat(timespec="seconds") + "Z"


def _record(
    session: Session,
    action: str,
    row: SubjectRequest,
    *,
    actor: str,
    now: datetime,
    detail: dict[str, Any],
) -> None:
    """The audit event of a change: keyed by the request's digest, so a lookup of its address
    lists it; facts only, never the notes (free text that may name people)."""
    audit.record(
        session,
        action,
        actor=actor,
        digest=row.digest,
        kind="address" if row.digest is not None else None,
        detail={"request": row.id, "kind": row.kind.value, "reference": row.reference, **detail},
        at=now,
    )


def register(
    session: Session,
    kind: RequestKind,
    *,
    received_at: datetime,
    reference: str,
    target: Target | None,
    channel: str | None,
    note: str | None,
    zone: ZoneInfo,
    now: datetime,
    actor: str,
) -> tuple[SubjectRequest, Suppression | None]:
    """Register a request received at `received_at` (naive UTC), due one month after its day.

    An objection or a withdrawal of consent that names an address also suppresses it on
    `global` (reason objection or consent_withdrawn) in the same transaction: marketing
    stops at once, before identity is verified (stopping it harms no one). Returns the
    request and that suppression (None for other kinds, or without an address).
    """
    reference = free_text("reference", reference) or ""
    channel = free_text("channel", channel, required=False)
    note = free_text("note", note, limit=MAX_NOTE, required=False, lines=True)
    _plausible("received_at", received_at, now)
    first_due = due_date(received_at, zone)
    audit.lock(session)
    row = SubjectRequest(
        kind=kind,
        reference=reference,
        channel=channel,
        note=note,
        digest=target.active.value if target is not None else None,
        key_id=target.active.key_id if target is not None else None,
        received_at=received_at,
        first_due=first_due,
        due=first_due,
        status=RequestStatus.open,
        extended=False,
        registered_at=now,
    )
    session.add(row)
    session.flush()
    _record(
        session,
        "request_register",
        row,
        actor=actor,
        now=now,
        detail={
            "received_at": _stamp(received_at),
            "due": first_due.isoformat(),
            "channel": channel,
            "with_note": note is not None,
        },
    )
    suppression = None
    reason = SUPPRESSING.get(kind)
    if reason is not None and target is not None:
        suppression, _created = suppressions.add(
            session,
            target,
            GLOBAL_LIST,
            reason,
            source=f"request:{row.id}",
            actor=actor,
            now=now,
            detail={"request": row.id},
        )
    return row, suppression


def get(session: Session, request_id: int, *, for_update: bool = False) -> SubjectRequest:
    """A request by id, or NotFound."""
    row = None
    if 1 <= request_id <= MAX_ID:
        if for_update:
            audit.lock(session)  # one writer per request at a time (and per chain)
        row = session.get(SubjectRequest, request_id, populate_existing=True)
    if row is None:
        raise NotFound(f"no data-subject request {request_id}")
    return row


def _open(session: Session, request_id: int) -> SubjectRequest:
    row = get(session, request_id, for_update=True)
    if row.status is not RequestStatus.open:
        raise Conflict(
            f"request {row.id} was closed ({row.outcome.value if row.outcome else 'closed'}) "
            f"on {_stamp(row.closed_at)}: register a new request instead",
            code=ErrorCode.request_closed,
        )
    return row


def verify_identity(
    session: Session,
    request_id: int,
    *,
    method: str,
    verified_at: datetime,
    zone: ZoneInfo,
    now: datetime,
    actor: str,
) -> SubjectRequest:
    """Record how and when the requester's identity was verified (again: the latest counts,
    the trail keeps the earlier)."""
    method = free_text("method", method) or ""
    row = _open(session, request_id)
    _plausible("verified_at", verified_at, now)
    _not_before_receipt("verified_at", verified_at, row, zone)
    previous = (
        {"method": row.identity_method, "verified_at": _stamp(row.identity_verified_at)}
        if row.identity_verified_at is not None
        else None
    )
    row.identity_method, row.identity_verified_at = method, verified_at
    session.flush()
    _record(
        session,
        "request_verify_identity",
        row,
        actor=actor,
        now=now,
        detail={"method": method, "verified_at": _stamp(verified_at), "previous": previous},
    )
    return row


def extend(
    session: Session,
    request_id: int,
    *,
    reason: str,
    notified_at: datetime,
    zone: ZoneInfo,
    now: datetime,
    actor: str,
) -> SubjectRequest:
    """Extend the deadline to the day of receipt plus three months, once.

    The reader must have been told, with the reasons, within the first month: refused when
    already extended (409) or when `notified_at` falls on a day after the original due day
    (422). A notice given in time may be recorded later.
    """
    reason = free_text("reason", reason, limit=MAX_REASON, lines=True) or ""
    row = _open(session, request_id)
    if row.extended:
        raise Conflict(
            f"request {row.id} was already extended (due {row.due.isoformat()}): the policy "
            "allows one extension, to three months from receipt",
            code=ErrorCode.already_extended,
        )
    _plausible("notified_at", notified_at, now)
    _not_before_receipt("notified_at", notified_at, row, zone)
    told = local_day(notified_at, zone)
    if told > row.first_due:
        raise Unprocessable(
            f"the reader was told on {told.isoformat()}, after the original due day "
            f"{row.first_due.isoformat()}: an extension must be announced within the first "
            "month",
            code=ErrorCode.notice_too_late,
            field="notified_at",
            problem="too_late",
        )
    row.due = extended_due(row, zone)
    row.extended, row.extension_reason, row.notified_at = True, reason, notified_at
    session.flush()
    _record(
        session,
        "request_extend",
        row,
        actor=actor,
        now=now,
        detail={
            "reason": reason,
            "notified_at": _stamp(notified_at),
            "first_due": row.first_due.isoformat(),
            "due": row.due.isoformat(),
        },
    )
    return row


def close(
    session: Session,
    request_id: int,
    *,
    outcome: Outcome,
    note: str | None,
    now: datetime,
    actor: str,
) -> SubjectRequest:
    """Close a request with its outcome; the clock stops. A suppression it made stays: lifting
    one needs evidence of new consent (DELETE /v1/suppressions)."""
    note = free_text("note", note, limit=MAX_NOTE, required=False, lines=True)
    row = _open(session, request_id)
    row.status, row.outcome, row.closing_note, row.closed_at = (
        RequestStatus.closed,
        outcome,
        note,
        now,
    )
    session.flush()
    _record(
        session,
        "request_close",
        row,
        actor=actor,
        now=now,
        detail={
            "outcome": outcome.value,
            "due": row.due.isoformat(),
            "with_note": note is not None,
        },
    )
    return row


def parse_status(value: str | None) -> str | None:
    """A listing filter by name (open, overdue, closed), or InvalidRequest."""
    if value is not None and value not in STATUSES:
        raise InvalidRequest(f"status must be one of: {', '.join(STATUSES)}")
    return value


def listing(session: Session, status: str | None, today: date) -> list[SubjectRequest]:
    """Requests by status (one of LISTINGS): open, overdue and due-this-week ones by due day
    (most urgent first), closed ones and the whole register newest first."""
    query = select(SubjectRequest)
    if status in ("open", "overdue", "due_this_week"):
        query = query.where(SubjectRequest.status == RequestStatus.open)
        if status == "overdue":
            query = query.where(SubjectRequest.due < today)
        elif status == "due_this_week":
            query = query.where(SubjectRequest.due.between(today, week_end(today)))
        query = query.order_by(SubjectRequest.due, SubjectRequest.id)
    else:
        if status == "closed":
            query = query.where(SubjectRequest.status == RequestStatus.closed)
        query = query.order_by(SubjectRequest.id.desc())
    return list(session.scalars(query))


def about(session: Session, target: Target, *, actor: str, now: datetime) -> list[SubjectRequest]:
    """The requests about an address, found under every configured pepper (oldest first).

    One found under an older pepper moves to the active one (lazy re-keying, as for
    suppressions), so a pepper can be retired once no row of either kind needs it.
    """
    rows = list(
        session.scalars(
            select(SubjectRequest)
            .where(SubjectRequest.digest.in_([d.value for d in target.digests]))
            .order_by(SubjectRequest.id)
        )
    )
    active = target.active
    for row in rows:
        if row.key_id != active.key_id:
            audit.lock(session)
            old_key = row.key_id
            row.digest, row.key_id = active.value, active.key_id
            session.flush()
            _record(
                session,
                "request_rekey",
                row,
                actor=actor,
                now=now,
                detail={"from_key": old_key, "to_key": active.key_id},
            )
    return rows


def key_ids(session: Session) -> list[str]:
    """The pepper ids that key at least one request's digest."""
    return [
        str(k)
        for k in session.scalars(
            select(SubjectRequest.key_id).where(SubjectRequest.key_id.is_not(None)).distinct()
        )
    ]


def keyed_with(session: Session, key_id: str) -> int:
    """How many requests' digests a pepper keys."""
    return int(
        session.scalar(
            select(func.count()).select_from(SubjectRequest).where(SubjectRequest.key_id == key_id)
        )
        or 0
    )


def describe(row: SubjectRequest, today: date) -> dict[str, Any]:
    """A request as JSON: its clock, its state, its digest in hex; never an address."""
    return {
        "id": row.id,
        "kind": row.kind.value,
        "reference": row.reference,
        "channel": row.channel,
        "note": row.note,
        "digest": row.digest.hex() if row.digest is not None else None,
        "key_id": row.key_id,
        "received_at": _stamp(row.received_at),
        "registered_at": _stamp(row.registered_at),
        "due": row.due.isoformat(),
        "first_due": row.first_due.isoformat(),
        "status": row.status.value,
        "overdue": is_overdue(row, today),
        "identity_verified_at": _stamp(row.identity_verified_at),
        "identity_method": row.identity_method,
        "extended": row.extended,
        "extension_reason": row.extension_reason,
        "notified_at": _stamp(row.notified_at),
        "outcome": row.outcome.value if row.outcome is not None else None,
        "closing_note": row.closing_note,
        "closed_at": _stamp(row.closed_at),
    }


def describe_all(rows: Sequence[SubjectRequest], today: date) -> list[dict[str, Any]]:
    return [describe(row, today) for row in rows]
