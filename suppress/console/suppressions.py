"""Console pages for the list itself: look up one address, add, remove with evidence, import.

An address comes in a POST body, is hashed at once, and goes back only in the page that
answers that POST (sent with no-store): never in a URL, a log line, a flash message or the
session.
"""

from __future__ import annotations

import itertools
import json
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from flask import Response, flash, redirect, request, url_for
from flask_babel import gettext as _

from .. import access, addresses, audit, bulk, clock, suppressions
from ..addresses import Target
from ..errors import InvalidEmail, InvalidList, NotFound, SuppressError
from ..models import GLOBAL_LIST, PersonRole, Reason
from ..suppressions import MAX_TEXT, READER_SOURCES
from . import auth
from .auth import requires
from .site import bp, log, page, runtime, stream_page

# An import reports its progress after each step of this many lines.
IMPORT_STEP = bulk.IMPORT_BATCH
# An upload stays in memory up to this size, then in a temporary file.
SPOOL_BYTES = 8 << 20


def reason_labels() -> dict[str, str]:
    """Every reason as the console names it, in the page's language."""
    return {
        Reason.unsubscribe: _("Unsubscribed"),
        Reason.objection: _("Objection to direct marketing"),
        Reason.consent_withdrawn: _("Consent withdrawn"),
        Reason.complaint: _("Spam complaint"),
        Reason.hard_bounce: _("Hard bounce"),
        Reason.soft_bounce: _("Soft bounce"),
        Reason.manual: _("Entered by hand"),
        Reason.erasure: _("Erasure request"),
    }


@bp.app_context_processor
def labels() -> dict[str, Any]:
    return {"reason_labels": reason_labels}


class Form:
    """A submitted form's values and the problems found in them, field by field."""

    def __init__(self, *names: str) -> None:
        self.values = {name: request.form.get(name, "") for name in names}
        self.errors: dict[str, str] = {}

    def text(self, name: str, *, required: bool = True, source: bool = False) -> str:
        """Short free text as the domain takes it (source, reason, evidence, reference)."""
        value = self.values[name]
        if not required and not value.strip():
            return ""
        try:
            if source:
                return suppressions.validate_source(value)
            return suppressions.validate_text(name, value, required=required)
        except SuppressError:
            if not value.strip():
                self.errors[name] = _("Fill this in.")
            elif addresses.contains_address(value):
                self.errors[name] = _(
                    "Do not write an e-mail address here: give a reference instead, "
                    "such as a ticket number."
                )
            elif source and value.strip().lower() in READER_SOURCES:
                self.errors[name] = _(
                    "This source is kept for opt-outs that readers make through their own links."
                )
            else:
                self.errors[name] = _("Use at most %(n)d printable characters.", n=MAX_TEXT)
            return ""

    def list_name(self, name: str = "list") -> str:
        try:
            return suppressions.validate_list(self.values[name].strip())
        except InvalidList:
            self.errors[name] = _(
                "A list name is 1 to 64 characters of a–z, 0–9 and . _ : - and starts with a "
                "letter or digit; global means all direct marketing."
            )
            return ""

    def reason(self, name: str = "reason") -> Reason:
        try:
            return suppressions.parse_reason(self.values[name])
        except SuppressError:
            self.errors[name] = _("Choose one of the reasons.")
            return Reason.manual

    def target(self, kind_field: str = "kind", value_field: str = "value") -> Target | None:
        """The address or domain the form names, hashed; None (and an error) if invalid."""
        ring = runtime().ring
        value = self.values[value_field]
        try:
            if self.values.get(kind_field) == "domain":
                return addresses.domain_target(ring, value)
            return addresses.address_target(ring, value)
        except InvalidEmail:
            self.errors[value_field] = _("This is not an e-mail address the list can keep.")
        except SuppressError:
            self.errors[value_field] = _("This is not a domain name such as example.com.")
        return None


def declared_lists() -> list[str]:
    return [GLOBAL_LIST] + [entry.name for entry in runtime().config.settings.lists]


# --- look up one address -------------------------------------------------------------------


@bp.route("/lookup", methods=["GET", "POST"])
@requires(PersonRole.operator)
def lookup() -> Any:
    if request.method == "GET":
        return page("lookup.html", form=None)
    form, found, _target = _lookup()
    if found is None:
        return page("lookup.html", 422, form=form)
    zone = runtime().config.settings.compliance.zone
    return page("lookup.html", form=form, found=found, zone=zone)


@bp.post("/lookup/download")
@requires(PersonRole.operator)
def lookup_download() -> Any:
    form, found, target = _lookup(download=True)
    if found is None or target is None:
        return page("lookup.html", 422, form=form)
    body = json.dumps({"email": form.values["value"], **found}, indent=2, ensure_ascii=False)
    # The file is named by the digest's first characters, never by the address.
    name = f"lookup-{target.active.value.hex()[:12]}.json"
    return Response(
        body + "\n",
        mimetype="application/json",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


def _lookup(*, download: bool = False) -> tuple[Form, dict[str, Any] | None, Target | None]:
    """Everything kept about the posted address, recorded as /v1/lookup records it (a
    download marked as one)."""
    form = Form("value", "reference")
    reference = form.text("reference", required=False)
    target = form.target()
    if form.errors or target is None:
        return form, None, None
    rt = runtime()
    with rt.db.begin() as db:
        found = access.lookup(
            db,
            target,
            actor=auth.person().actor,
            zone=rt.config.settings.compliance.zone,
            reference=reference or None,
            download=download,
        )
    return form, found, target


# --- add and remove ----------------------------------------------------------------------------


@bp.route("/add", methods=["GET", "POST"])
@requires(PersonRole.operator)
def add() -> Any:
    if request.method == "GET":
        return page("add.html", form=None, lists=declared_lists())
    form = Form("kind", "value", "list", "reason", "source")
    list_name, reason = form.list_name(), form.reason()
    form.values["source"] = form.values["source"].strip() or "console"
    source = form.text("source", source=True)
    target = form.target()
    if form.errors or target is None:
        return page("add.html", 422, form=form, lists=declared_lists())
    with runtime().db.begin() as db:
        row, created = suppressions.add(
            db,
            target,
            list_name,
            reason,
            source=source,
            actor=auth.person().actor,
            now=clock.utcnow(),
        )
        digest = row.digest.hex()[:8]
    what = reason_labels()[reason]
    if created:
        flash(_("Added to the list %(list)s: %(reason)s.", list=list_name, reason=what))
    else:
        flash(_("Already on the list %(list)s; nothing was added.", list=list_name))
    flash(_("Fingerprint %(digest)s…", digest=digest))
    return redirect(url_for("console.add"), 303)


@bp.route("/remove", methods=["GET", "POST"])
@requires(PersonRole.admin)
def remove() -> Any:
    if request.method == "GET":
        return page("remove.html", form=None, lists=declared_lists())
    form = Form("kind", "value", "list", "reason", "evidence")
    list_name = form.list_name()
    reason, evidence = form.text("reason"), form.text("evidence")
    target = form.target()
    if form.errors or target is None:
        return page("remove.html", 422, form=form, lists=declared_lists())
    try:
        with runtime().db.begin() as db:
            removed = suppressions.remove(
                db,
                target,
                list_name,
                reason=reason,
                evidence=evidence,
                actor=auth.person().actor,
            )
    except NotFound:
        form.errors["value"] = _(
            "Nothing of this is on the list %(list)s. Nothing was changed.", list=list_name
        )
        return page("remove.html", 404, form=form, lists=declared_lists())
    flash(_("Removed from the list %(list)s (%(n)d entries).", list=list_name, n=removed))
    return redirect(url_for("console.remove"), 303)


# --- import -----------------------------------------------------------------------------------


@bp.get("/import")
@requires(PersonRole.operator)
def import_form() -> Any:
    return page("import.html", form=None, lists=declared_lists())


@dataclass
class ImportRun:
    """What the streamed import page reads as it goes: each step, then the totals."""

    totals: bulk.ImportTotals = field(default_factory=bulk.ImportTotals)
    lines: int = 0
    failure: str = ""
    done: bool = False


@bp.post("/import")
@requires(PersonRole.operator)
def import_run() -> Any:
    form = Form("list", "reason", "source", "format")
    list_name, reason = form.list_name(), form.reason()
    form.values["source"] = form.values["source"].strip() or "import"
    source = form.text("source", source=True)
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        form.errors["file"] = _("Choose a file.")
    if form.errors or upload is None:
        return page("import.html", 422, form=form, lists=declared_lists())
    rt, actor = runtime(), auth.person().actor
    csv_mode = form.values["format"] != "plain"
    run = ImportRun()
    # The request's own copy of the upload is closed when the view returns, before the page
    # has streamed: keep one of our own for as long as the import runs.
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)
    shutil.copyfileobj(upload.stream, spool, bulk.READ_CHUNK)
    spool.seek(0)

    def steps() -> Iterator[ImportRun]:
        lines = bulk.iter_lines(spool)
        try:
            while chunk := list(itertools.islice(lines, IMPORT_STEP)):
                part = bulk.import_lines(
                    rt.db.begin,
                    rt.ring,
                    chunk,
                    list_name,
                    reason,
                    source=source,
                    actor=actor,
                    csv_mode=csv_mode,
                    first_line=run.lines + 1,
                )
                run.lines += len(chunk)
                run.totals.absorb(part)
                yield run
        except SuppressError as exc:
            run.failure = exc.code
        else:
            run.done = True
        finally:
            spool.close()
            _record_import(run, list_name, reason, source, actor)

    return stream_page(
        "import_run.html", steps=steps(), run=run, list=list_name, reason=reason, source=source
    )


def _record_import(run: ImportRun, list_name: str, reason: Reason, source: str, actor: str) -> None:
    """One event for the whole import, finished or not (each row has its own `add` event):
    how far it got, and whether it stopped early (a failure, or the page closed)."""
    totals = run.totals
    detail = {
        "list": list_name,
        "reason": reason.value,
        "source": source,
        "received": totals.received,
        "added": totals.added,
        "existing": totals.existing,
        "invalid": totals.invalid,
        "finished": run.done,
        **({"failure": str(run.failure)} if run.failure else {}),
    }
    try:
        with runtime().db.begin() as db:
            audit.record(db, "console_import", actor=actor, detail=detail, at=clock.utcnow())
    except Exception:  # the rows are in; a missing summary must not turn into an error page
        log.exception("could not record the import's summary")
