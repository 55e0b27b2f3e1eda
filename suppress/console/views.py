"""The console's pages for everyone signed in: sign-in and out, and one's own password."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import flash, redirect, request, session, url_for
from flask_babel import gettext as _

from .. import clock, users
from ..errors import InvalidRequest
from . import auth
from .site import bp, frame, page, runtime


def lockout() -> users.Lockout:
    """The lockout rule of the configuration."""
    settings = frame().settings
    return users.Lockout(settings.lockout_attempts, timedelta(minutes=settings.lockout_minutes))


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    nxt = auth.safe_next(request.values.get("next"))
    if auth.person_or_none() is not None:
        return redirect(nxt or url_for("console.dashboard"), 303)
    if request.method == "GET":
        return page("login.html", next=nxt, ended=session.pop("ended", None))
    name = request.form.get("username", "")
    with runtime().db.begin() as db:
        outcome = users.authenticate(
            db, name, request.form.get("password", ""), now=clock.utcnow(), lockout=lockout()
        )
    if outcome.person is None:
        return page("login.html", 200, next=nxt, failed=True, username=name, rule=lockout())
    auth.start(outcome.person)
    return redirect(nxt or url_for("console.dashboard"), 303)


@bp.post("/logout")
def logout() -> Any:
    with runtime().db.begin() as db:
        users.logout(db, auth.person(), now=clock.utcnow())
    auth.end()
    flash(_("You have signed out. Every session of your account has ended."))
    return redirect(url_for("console.login"), 303)


@bp.route("/password", methods=["GET", "POST"])
def password() -> Any:
    if request.method == "GET":
        return page("password.html")
    current, new = request.form.get("current", ""), request.form.get("new", "")
    if new != request.form.get("repeat", ""):
        return page("password.html", 400, error=_("The two new passwords differ."))
    try:
        with runtime().db.begin() as db:
            outcome = users.change_password(
                db, auth.person(), current, new, now=clock.utcnow(), lockout=lockout()
            )
    except users.PasswordRefused as exc:
        return page("password.html", 400, error=password_problem(exc))
    if outcome.refused in ("locked", "disabled"):
        # Too many wrong current passwords: the account is locked and its sessions ended.
        auth.end()
        session["ended"] = "locked"
        return redirect(url_for("console.login"), 303)
    if outcome.person is None:
        error = _("Your current password is not right.")
        return page("password.html", 400, error=error, rule=lockout())
    changed = outcome.person
    auth.renew(changed)
    flash(_("Your password is changed. Other sessions of your account have ended."))
    return redirect(url_for("console.dashboard"), 303)


def password_problem(exc: InvalidRequest) -> str:
    """A refused password's rule, in the page's language."""
    problem = getattr(exc, "problem", "")
    if problem == "short":
        return _("A password needs at least %(n)d characters.", n=users.MIN_PASSWORD)
    if problem == "long":
        return _("A password may have at most %(n)d characters.", n=users.MAX_PASSWORD)
    return _("A password must not contain the sign-in name.")


@bp.route("/<path:rest>", methods=["GET", "POST"])
def unknown(rest: str) -> Any:
    # Only reached signed in (the others go to the sign-in page): a console page of its own.
    return page("problem.html", 404, problem="not_found")
