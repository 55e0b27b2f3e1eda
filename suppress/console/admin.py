"""Console pages of the trail and the machinery: the audit trail and its verification, job
runs and their reports, API keys and people's accounts."""

from __future__ import annotations

from typing import Any

from flask import abort, flash, redirect, request, url_for
from flask_babel import gettext as _

from .. import apikeys, audit, clock, jobs, users
from ..errors import InvalidRequest, SuppressError
from ..models import PersonRole, Role
from . import auth
from .auth import requires
from .site import bp, page, runtime
from .views import password_problem

AUDIT_PAGE = 50


def _int_arg(name: str) -> int | None:
    value = request.args.get(name, "")
    return int(value) if value.isdigit() and len(value) < 10 else None


# --- the audit trail ---------------------------------------------------------------------------


@bp.get("/audit")
def audit_trail() -> Any:
    before = _int_arg("before")
    action = request.args.get("action") or None
    try:
        action = audit.parse_action(action)
    except SuppressError:
        action = None
    with runtime().db.begin(write=False) as db:
        events = [
            audit.describe(e)
            for e in audit.latest(db, before=before, action=action, limit=AUDIT_PAGE)
        ]
        known = audit.actions(db)
    older = events[-1]["id"] if len(events) == AUDIT_PAGE else None
    return page(
        "audit.html", events=events, older=older, action=action, actions=known, before=before
    )


@bp.get("/audit/verify")
def audit_verify() -> Any:
    with runtime().db.begin(write=False) as db:
        try:
            anchor = jobs.verified_head(db)
            result = audit.verify(db, anchor=anchor).to_dict()
        except SuppressError as exc:
            anchor, result = None, {"ok": False, "events": 0, "head": "", "problem": exc.message}
    return page(
        "audit_verify.html",
        result=result,
        anchor=anchor.hex() if anchor else None,
        section="console.audit_trail",
    )


# --- job runs ----------------------------------------------------------------------------------


@bp.get("/jobs")
def job_runs() -> Any:
    with runtime().db.begin(write=False) as db:
        runs = jobs.list_runs(db, limit=100)
    return page("jobs.html", runs=runs, names=jobs.NAMES)


@bp.get("/jobs/<int:run_id>")
def job_run(run_id: int) -> Any:
    with runtime().db.begin(write=False) as db:
        run = jobs.run_by_id(db, run_id)
    if run is None:
        abort(404)
    return page("job.html", run=run, section="console.job_runs")


@bp.post("/jobs/<name>/run")
@requires(PersonRole.admin)
def run_job(name: str) -> Any:
    if name not in jobs.NAMES:
        abort(404)
    outcome = jobs.run_manual(runtime(), name, requested_by=auth.person().actor)
    if outcome.status == "ok":
        flash(_("The job %(job)s ran and finished well.", job=name))
    else:
        flash(_("The job %(job)s ran and failed; its report says why.", job=name))
    return redirect(url_for("console.job_run", run_id=outcome.run["id"]), 303)


# --- API keys ----------------------------------------------------------------------------------


def _keys_page(status: int = 200, **context: Any) -> Any:
    with runtime().db.begin(write=False) as db:
        keys = apikeys.list_keys(db)
    return page("keys.html", status, keys=keys, roles=[r.value for r in Role], **context)


@bp.get("/keys")
@requires(PersonRole.admin)
def keys() -> Any:
    return _keys_page()


@bp.post("/keys")
@requires(PersonRole.admin)
def key_create() -> Any:
    name, role = request.form.get("name", "").strip(), request.form.get("role", "")
    try:
        with runtime().db.begin() as db:
            key, token = apikeys.create(
                db, name, apikeys.parse_role(role), actor=auth.person().actor
            )
            made = {"id": key.id, "name": key.name, "role": key.role.value}
    except InvalidRequest:
        error = _("A key's name is 1 to 64 letters, digits, spaces or . _ : - (no address).")
        return _keys_page(422, error=error, name=name)
    # Shown once, in this answer alone: never in a flash message (the session cookie).
    return _keys_page(token=token, made=made)


@bp.post("/keys/<int:key_id>/revoke")
@requires(PersonRole.admin)
def key_revoke(key_id: int) -> Any:
    rt = runtime()
    with rt.db.begin() as db:
        key = apikeys.revoke(db, key_id, actor=auth.person().actor)
        flash(
            _(
                "The key %(name)s is revoked: every server refuses it within a second.",
                name=key.name,
            )
        )
    rt.keys.forget(key_id)  # other instances honour it within apikeys.CACHE_SECONDS
    return redirect(url_for("console.keys"), 303)


# --- people ------------------------------------------------------------------------------------


def _people_page(status: int = 200, **context: Any) -> Any:
    with runtime().db.begin(write=False) as db:
        people = users.list_users(db)
    return page(
        "people.html",
        status,
        people=people,
        now=clock.utcnow(),
        roles=[r.value for r in PersonRole],
        **context,
    )


@bp.get("/people")
@requires(PersonRole.admin)
def people() -> Any:
    return _people_page()


@bp.post("/people")
@requires(PersonRole.admin)
def person_create() -> Any:
    name, role = request.form.get("name", ""), request.form.get("role", "")
    password = request.form.get("password", "")
    try:
        with runtime().db.begin() as db:
            made = users.create(
                db,
                name,
                users.parse_role(role),
                password,
                actor=auth.person().actor,
                now=clock.utcnow(),
            )
            flash(_("%(name)s can now sign in.", name=made.name))
    except users.PasswordRefused as exc:
        return _people_page(422, error=password_problem(exc), name=name, role=role)
    except InvalidRequest:
        error = _(
            "A name is 1 to 64 characters of a–z, 0–9 and . _ - and must not be taken already."
        )
        return _people_page(422, error=error, name=name, role=role)
    return redirect(url_for("console.people"), 303)


@bp.post("/people/<name>/disable")
@requires(PersonRole.admin)
def person_disable(name: str) -> Any:
    # Names are kept lowercased: compare the same way, so ADA is ada.
    if name.strip().lower() == auth.person().name:
        return _people_page(422, error=_("You cannot disable your own account."))
    try:
        with runtime().db.begin() as db:
            users.disable(db, name, actor=auth.person().actor, now=clock.utcnow())
    except users.LastAdmin:
        return _people_page(422, error=_("The last administrator cannot be disabled."))
    flash(_("%(name)s can no longer sign in; their sessions have ended.", name=name))
    return redirect(url_for("console.people"), 303)


@bp.post("/people/<name>/enable")
@requires(PersonRole.admin)
def person_enable(name: str) -> Any:
    with runtime().db.begin() as db:
        users.enable(db, name, actor=auth.person().actor, now=clock.utcnow())
    flash(_("%(name)s can sign in again.", name=name))
    return redirect(url_for("console.people"), 303)


@bp.post("/people/<name>/password")
@requires(PersonRole.admin)
def person_password(name: str) -> Any:
    try:
        with runtime().db.begin() as db:
            users.reset_password(
                db,
                name,
                request.form.get("password", ""),
                actor=auth.person().actor,
                now=clock.utcnow(),
            )
    except users.PasswordRefused as exc:
        return _people_page(422, error=password_problem(exc))
    flash(_("%(name)s has a new password; their sessions have ended.", name=name))
    return redirect(url_for("console.people"), 303)
