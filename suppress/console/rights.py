"""Console pages of the register of data-subject requests (DESIGN §11): the list with its
filters, registering a request, and one request with its clock, identity, extension and close.

Viewers read; operators register and record a check of identity; administrators extend and
close. Every change goes through the domain functions the API and the CLI call (rights), so
it is checked, recorded in the audit trail under the person's name, and kept the same way.
An address given for a request comes in the POST body, is hashed at once and never leaves
the page that answers it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import date, datetime
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from flask import flash, redirect, request, url_for
from flask_babel import format_date, ngettext
from flask_babel import gettext as _

from .. import clock, rights
from ..addresses import Target
from ..errors import ErrorCode, SuppressError
from ..models import Outcome, PersonRole, RequestKind, SubjectRequest
from . import auth
from .auth import requires
from .site import bp, local_time, page, runtime
from .suppressions import Form

T = TypeVar("T")
# Ways a request arrives, offered on the form (any other text is kept as written).
CHANNELS = ("phone", "letter", "email", "web form", "in person")


def kind_labels() -> dict[str, str]:
    """Every kind of request as the console names it, in the page's language."""
    return {
        RequestKind.access: _("Access to their data"),
        RequestKind.rectification: _("Rectification"),
        RequestKind.erasure: _("Erasure"),
        RequestKind.portability: _("Data portability"),
        RequestKind.objection: _("Objection to direct marketing"),
        RequestKind.restriction: _("Restriction of processing"),
        RequestKind.consent_withdrawal: _("Withdrawal of consent"),
    }


def outcome_labels() -> dict[str, str]:
    """How a request can end, in the page's language."""
    return {
        Outcome.fulfilled: _("Fulfilled"),
        Outcome.refused: _("Refused"),
        Outcome.withdrawn: _("Withdrawn by the person"),
    }


def channel_labels() -> dict[str, str]:
    """The offered channels, in the page's language."""
    return {
        "phone": _("Phone"),
        "letter": _("Letter"),
        "email": _("E-mail"),
        "web form": _("Web form"),
        "in person": _("In person"),
    }


def listing_labels() -> dict[str, str]:
    """The register's filters, in the page's language."""
    return {
        "open": _("Open"),
        "overdue": _("Overdue"),
        "due_this_week": _("Due this week"),
        "closed": _("Closed"),
    }


def clock_text(item: Mapping[str, Any]) -> str:
    """Where a request stands against its due day: days left, due today, days overdue, or
    whether its answer came in time."""
    if item["status"] == "closed":
        late = item["days_late"]
        if late > 0:
            return ngettext("Answered %(num)d day late", "Answered %(num)d days late", late)
        return _("Answered in time")
    left = item["days_left"]
    if left < 0:
        return ngettext("Overdue by %(num)d day", "Overdue by %(num)d days", -left)
    if left == 0:
        return _("Due today")
    return ngettext("%(num)d day left", "%(num)d days left", left)


def long_day(value: str | date | None) -> str:
    """A day as people write it (28 February 2026), in the page's language."""
    if value is None or value == "":
        return "–"
    day = date.fromisoformat(value) if isinstance(value, str) else value
    return format_date(day, "long")


def moment_text(moment: datetime | str | None, zone: ZoneInfo) -> str:
    """A UTC time as local date and time in `zone`; midnight as the date alone (a form given
    only the day records its start, and only the day counts for the clock)."""
    return local_time(moment, zone).removesuffix(" 00:00")


@bp.app_context_processor
def labels() -> dict[str, Any]:
    return {
        "kind_labels": kind_labels,
        "outcome_labels": outcome_labels,
        "channel_labels": channel_labels,
        "clock_text": clock_text,
        "long_day": long_day,
        "moment": moment_text,
    }


# --- the clock as the pages show it -----------------------------------------------------------


def compliance() -> tuple[ZoneInfo, datetime, date]:
    """The controller's time zone, now (naive UTC) and today in that zone."""
    zone = runtime().config.settings.compliance.zone
    now = clock.utcnow()
    return zone, now, rights.today(zone, now)


def entry(row: SubjectRequest, zone: ZoneInfo, today: date) -> dict[str, Any]:
    """A request as the API describes it, with the days the pages show: the day of receipt,
    the due day an extension gives, days left (negative when overdue) or days late."""
    described = rights.describe(row, today)
    closed = rights.local_day(row.closed_at, zone) if row.closed_at is not None else None
    return {
        **described,
        "state": "overdue" if described["overdue"] else described["status"],
        "received_day": rights.receipt_day(row, zone).isoformat(),
        "extended_due": rights.extended_due(row, zone).isoformat(),
        "days_left": (row.due - today).days,
        "days_late": (closed - row.due).days if closed is not None else 0,
        "closed_day": closed.isoformat() if closed is not None else None,
    }


def local_parts(zone: ZoneInfo, moment: datetime) -> tuple[str, str]:
    """A naive UTC moment as the day and the time (HH:MM) a form's fields show in `zone`."""
    here = moment.replace(tzinfo=ZoneInfo("UTC")).astimezone(zone)
    return here.date().isoformat(), here.strftime("%H:%M")


# --- forms ------------------------------------------------------------------------------------


class RequestForm(Form):
    """A request's form: each field checked by the domain's own rules, each refusal shown
    beside its field in the page's language."""

    def __init__(self, *names: str, fields: Mapping[str, str] | None = None) -> None:
        super().__init__(*names)
        # The domain's name of an input -> the form's field (received_at -> received_day).
        self.fields = dict(fields or {})

    def checked(self, name: str, check: Callable[[], T]) -> T | None:
        """check()'s value, or None with the problem noted beside the field `name`."""
        try:
            return check()
        except SuppressError as exc:
            self.errors[name] = problem_text(exc)
            return None

    def moment(
        self, day: str, time: str, zone: ZoneInfo, *, default: datetime | None = None
    ) -> datetime | None:
        """The day and optional time of two fields as naive UTC (read in `zone`); `default`
        when both are empty and one is given, else the problem beside the day."""
        when, at = self.values[day].strip(), self.values[time].strip()
        if not when:
            if default is not None and not at:
                return default
            self.errors[day] = _("Fill this in.")
            return None
        if not _DAY.fullmatch(when) or (at and not _TIME.fullmatch(at)):
            # The form says the times are the controller's: no offset, no other calendar.
            self.errors[day] = _(
                "Give a date such as 2026-01-31 and, if you like, a time such as 14:05."
            )
            return None
        return self.checked(day, lambda: rights.local_moment(f"{when} {at}".strip(), day, zone))

    def address(self, name: str) -> Target | None:
        """The address in `name` as its digests; None when the field is empty or no address
        (then with the problem noted)."""
        if not self.values[name].strip():
            return None
        return self.target(kind_field="", value_field=name)

    def refused(self, exc: SuppressError, default: str | None = None) -> bool:
        """Note a refusal of the domain beside the form's field it concerns; False when it
        concerns none of them (the caller shows it as a page)."""
        name = self.fields.get(exc.field or "", exc.field) if exc.field else default
        if name is None or name not in self.values:
            return False
        self.errors[name] = problem_text(exc)
        return True


_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", re.ASCII)
_TIME = re.compile(r"[0-9]{2}:[0-9]{2}(:[0-9]{2})?", re.ASCII)


def problem_text(exc: SuppressError) -> str:
    """A refusal of the domain in the page's language, by the rule it broke."""
    problem = exc.problem or ""
    if problem == "required":
        return _("Fill this in.")
    if problem == "address":
        return _(
            "Do not write an e-mail address here: the register keeps none. Give the address in "
            "the e-mail field, where it is kept only as its fingerprint."
        )
    if problem == "too_long":
        limit = {"note": rights.MAX_NOTE, "reason": rights.MAX_REASON}.get(
            exc.field or "", rights.MAX_LINE
        )
        return _("Use at most %(n)d characters.", n=limit)
    if problem == "unprintable":
        return _("Use letters, digits and punctuation only.")
    if problem == "not_a_time":
        return _("Give a date such as 2026-01-31 and, if you like, a time such as 14:05.")
    if problem == "future":
        return _("This lies in the future.")
    if problem == "before_receipt":
        return _("This lies before the day the request was received.")
    if problem == "too_late":
        return _(
            "This day is after the original due day. An extension must be announced, with its "
            "reasons, on or before that day; the original deadline stands."
        )
    if problem in ("out_of_range", "too_early"):
        return _("This date is out of range.")
    if exc.code == ErrorCode.invalid_email:
        return _("This is not an e-mail address the list can keep.")
    return _("This could not be accepted.")


def kinds() -> list[tuple[str, str]]:
    """The kinds of request as the form offers them: (value, label)."""
    return list(kind_labels().items())


# --- the list ---------------------------------------------------------------------------------


@bp.get("/requests")
def requests() -> Any:
    status = request.args.get("status") or None
    if status not in rights.LISTINGS:
        status = None
    zone, _now, today = compliance()
    with runtime().db.begin(write=False) as db:
        items = [entry(row, zone, today) for row in rights.listing(db, status, today)]
        counts = rights.counts(db, today)
    return page(
        "requests.html",
        items=items,
        chosen=status,
        counts=counts,
        filters=listing_labels(),
        zone=zone,
        today=today.isoformat(),
    )


# --- register ---------------------------------------------------------------------------------


@bp.route("/requests/new", methods=["GET", "POST"])
@requires(PersonRole.operator)
def request_new() -> Any:
    zone, now, _today = compliance()
    if request.method == "GET":
        day, time = local_parts(zone, now)
        return new_page(None, day, time)
    form = RequestForm(
        "kind",
        "received_day",
        "received_time",
        "reference",
        "email",
        "channel",
        "note",
        fields={"received_at": "received_day"},
    )
    kind = {k.value: k for k in RequestKind}.get(form.values["kind"])
    if kind is None:
        form.errors["kind"] = _("Choose one of the kinds.")
    received_at = form.moment("received_day", "received_time", zone)
    reference = form.checked(
        "reference", lambda: rights.free_text("reference", form.values["reference"])
    )
    channel = form.checked(
        "channel", lambda: rights.free_text("channel", form.values["channel"], required=False)
    )
    note = form.checked(
        "note",
        lambda: rights.free_text(
            "note", form.values["note"], limit=rights.MAX_NOTE, required=False, lines=True
        ),
    )
    target = form.address("email")
    if form.errors or kind is None or received_at is None or reference is None:
        return new_page(form, status=422)
    try:
        with runtime().db.begin() as db:
            row, suppression = rights.register(
                db,
                kind,
                received_at=received_at,
                reference=reference,
                target=target,
                channel=channel,
                note=note,
                zone=zone,
                now=clock.utcnow(),
                actor=auth.person().actor,
            )
            made, due = row.id, row.due
    except SuppressError as exc:
        if not form.refused(exc, default="received_day"):
            raise
        return new_page(form, status=422)
    flash(_("The request is registered. It is due %(due)s.", due=long_day(due)))
    if suppression is not None:
        flash(
            _("The address is on the list global at once: no direct marketing goes to it any more.")
        )
    return redirect(url_for("console.request_detail", request_id=made), 303)


def new_page(form: RequestForm | None, day: str = "", time: str = "", status: int = 200) -> Any:
    return page(
        "request_new.html",
        status,
        form=form,
        kinds=kinds(),
        today=day,
        time=time,
        channels=CHANNELS,
        zone=runtime().config.settings.compliance.zone,
        section="console.requests",
    )


# --- one request ------------------------------------------------------------------------------


@bp.get("/requests/<int:request_id>")
def request_detail(request_id: int) -> Any:
    return detail_page(request_id)


def detail_page(request_id: int, status: int = 200, **forms: Any) -> Any:
    """One request with its clock and the forms the person's role allows."""
    zone, now, today = compliance()
    with runtime().db.begin(write=False) as db:
        item = entry(rights.get(db, request_id), zone, today)
    day, time = local_parts(zone, now)
    return page(
        "request.html",
        status,
        item=item,
        today=day,
        time=time,
        notice_day=day if today.isoformat() <= item["first_due"] else "",
        zone=zone,
        section="console.requests",
        **{"verify_form": None, "extend_form": None, "close_form": None, "refusal": "", **forms},
    )


def change(
    request_id: int,
    form: RequestForm,
    form_name: str,
    act: Callable[[Any, ZoneInfo, datetime], Any],
    done: str,
) -> Any:
    """Run one change of a request through the domain; on success back to the request with
    `done`, else the request's page with the refusal beside its field or above the form."""
    zone, _now, _today = compliance()
    if form.errors:
        return detail_page(request_id, 422, **{form_name: form})
    try:
        with runtime().db.begin() as db:
            act(db, zone, clock.utcnow())
    except SuppressError as exc:
        refusal = refusal_text(exc)
        if refusal:
            return detail_page(request_id, exc.status, refusal=refusal, **{form_name: form})
        if not form.refused(exc):
            raise
        return detail_page(request_id, exc.status, **{form_name: form})
    flash(done)
    return redirect(url_for("console.request_detail", request_id=request_id), 303)


def refusal_text(exc: SuppressError) -> str:
    """Why a change of this request is refused as a whole (not for one field), or ""."""
    if exc.code == ErrorCode.request_closed:
        return _(
            "This request is closed: it cannot be verified, extended or closed again. "
            "If the person asks again, register a new request."
        )
    if exc.code == ErrorCode.already_extended:
        return _(
            "This request was extended already. The policy allows one extension, to three "
            "months from the day of receipt: its due day stays as it is."
        )
    return ""


@bp.post("/requests/<int:request_id>/verify-identity")
@requires(PersonRole.operator)
def request_verify(request_id: int) -> Any:
    zone, now, _today = compliance()
    form = RequestForm(
        "method", "verified_day", "verified_time", fields={"verified_at": "verified_day"}
    )
    method = form.checked("method", lambda: rights.free_text("method", form.values["method"]))
    verified_at = form.moment("verified_day", "verified_time", zone, default=now)
    return change(
        request_id,
        form,
        "verify_form",
        lambda db, zone, now: rights.verify_identity(
            db,
            request_id,
            method=method or "",
            verified_at=verified_at or now,
            zone=zone,
            now=now,
            actor=auth.person().actor,
        ),
        _("The check of identity is recorded."),
    )


@bp.post("/requests/<int:request_id>/extend")
@requires(PersonRole.admin)
def request_extend(request_id: int) -> Any:
    zone, _now, _today = compliance()
    form = RequestForm(
        "reason", "notified_day", "notified_time", fields={"notified_at": "notified_day"}
    )
    reason = form.checked(
        "reason",
        lambda: rights.free_text(
            "reason", form.values["reason"], limit=rights.MAX_REASON, lines=True
        ),
    )
    notified_at = form.moment("notified_day", "notified_time", zone)
    return change(
        request_id,
        form,
        "extend_form",
        lambda db, zone, now: rights.extend(
            db,
            request_id,
            reason=reason or "",
            notified_at=notified_at or now,
            zone=zone,
            now=now,
            actor=auth.person().actor,
        ),
        _("The request is extended."),
    )


@bp.post("/requests/<int:request_id>/close")
@requires(PersonRole.admin)
def request_close(request_id: int) -> Any:
    form = RequestForm("outcome", "closing_note", fields={"note": "closing_note"})
    outcome = {o.value: o for o in Outcome}.get(form.values["outcome"])
    if outcome is None:
        form.errors["outcome"] = _("Choose how the request ended.")
    note = form.checked(
        "closing_note",
        lambda: rights.free_text(
            "note", form.values["closing_note"], limit=rights.MAX_NOTE, required=False, lines=True
        ),
    )
    return change(
        request_id,
        form,
        "close_form",
        lambda db, _zone, now: rights.close(
            db,
            request_id,
            outcome=outcome or Outcome.fulfilled,
            note=note,
            now=now,
            actor=auth.person().actor,
        ),
        _("The request is closed."),
    )
