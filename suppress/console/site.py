"""The console's frame: the /admin blueprint, who may enter, page rendering, headers and the
pages that say why something could not be done."""

from __future__ import annotations

import base64
import hashlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from flask import (
    Blueprint,
    Flask,
    Response,
    current_app,
    g,
    redirect,
    render_template,
    request,
    session,
    stream_template,
    url_for,
)
from flask_babel import get_locale
from markupsafe import Markup
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import BadRequest, HTTPException

from .. import users
from ..errors import ErrorCode, SuppressError
from ..runtime import Runtime
from ..settings import ConsoleSettings
from . import auth

bp = Blueprint("console", __name__, url_prefix="/admin")
log = logging.getLogger("suppress.console")
# A resource of the package (installed beside the templates), read once at start-up.
STYLESHEET = resources.files("suppress").joinpath("templates", "console", "console.css")
# Views anyone may reach: the sign-in page itself.
PUBLIC = {"console.login"}


@dataclass(frozen=True)
class Frame:
    """What every console page needs, fixed at start-up."""

    css: Markup
    headers: dict[str, str]
    zone: ZoneInfo
    settings: ConsoleSettings


def frame() -> Frame:
    return current_app.extensions["suppress.console"]  # type: ignore[no-any-return]


def runtime() -> Runtime:
    return current_app.extensions["suppress"]  # type: ignore[no-any-return]


def _context(context: dict[str, Any]) -> dict[str, Any]:
    pages = current_app.extensions["suppress.pages"]
    return {
        "lang": str(get_locale()),
        "languages": pages.languages,
        "css": frame().css,
        "person": g.get("person"),
        "csrf_token": auth.csrf_token(),
        "here": request.endpoint or "",
        **context,
    }


def page(template: str, status: int = 200, **context: Any) -> tuple[str, int]:
    """Render a console page in the selected language."""
    return render_template("console/" + template, **_context(context)), status


def stream_page(template: str, **context: Any) -> Response:
    """A page sent as it is rendered (a long import shows its progress as it goes)."""
    body: Iterator[str] = stream_template("console/" + template, **_context(context))
    return Response(body, mimetype="text/html")


def local_time(moment: datetime | str | None, zone: ZoneInfo | None = None) -> str:
    """A UTC time (naive, or ISO text with Z) as local date and time in `zone`, by default
    the console's (the register of requests passes the controller's)."""
    if moment is None or moment == "":
        return "–"
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo("UTC"))
    return moment.astimezone(zone or frame().zone).strftime("%Y-%m-%d %H:%M")


# --- who may enter ----------------------------------------------------------------------------


@bp.before_request
def enter() -> Any:
    """Language, CSRF on every POST, then the signed-in person (or the sign-in page)."""
    codes = {code for code, _name in current_app.extensions["suppress.pages"].languages}
    chosen = request.args.get("lang")
    if chosen in codes:
        session["lang"] = chosen
    if session.get("lang") in codes:
        g.language = session["lang"]
    if request.method == "POST":
        if request.endpoint == "console.import_run":
            # Checked before the CSRF token is read, since reading it parses the upload.
            request.max_content_length = frame().settings.import_max_bytes
        auth.check_form()
        form = request.form
        if any(len(form.getlist(name)) > 1 for name in form):
            # No console form repeats a field: a hand-made one could pass a second value
            # (an address) past the one the page reads.
            raise BadRequest("a field of the form is given more than once")
    g.person = _signed_in()
    if g.person is None and request.endpoint not in PUBLIC:
        target = url_for("console.login")
        if request.method == "GET" and request.path != url_for("console.dashboard"):
            target += "?next=" + quote(request.path, safe="/")
        return redirect(target, 303)
    if g.person is not None:
        auth.touch()
    return None


def _signed_in() -> users.Person | None:
    named = auth.account()
    if named is None:
        return None
    if auth.expired(frame().settings):
        auth.end()
        session["ended"] = "expired"
        return None
    with runtime().db.begin(write=False) as db:
        person = users.current(db, *named)
    if person is None:  # signed out elsewhere, disabled, or a new password
        auth.end()
        session["ended"] = "revoked"
    return person


# --- failures and headers ---------------------------------------------------------------------


def problem_of(exc: SuppressError) -> str:
    """Which problem page a failure shows."""
    if isinstance(exc, auth.FormRefused):
        return "form"
    if exc.code in (ErrorCode.forbidden, ErrorCode.not_found, ErrorCode.rate_limited):
        return str(exc.code)
    if exc.code in (ErrorCode.unavailable, ErrorCode.pepper_missing, ErrorCode.secrets_mismatch):
        return "unavailable"
    return "other"


@bp.errorhandler(SuppressError)
def domain_error(exc: SuppressError) -> tuple[str, int]:
    return page("problem.html", exc.status, problem=problem_of(exc))


@bp.errorhandler(HTTPException)
def http_error(exc: HTTPException) -> Response:
    status = exc.code or 500
    problem = {403: "forbidden", 404: "not_found", 413: "too_large", 429: "rate_limited"}
    body, status = page("problem.html", status, problem=problem.get(status, "other"))
    response = Response(body, status=status, mimetype="text/html")
    for name, value in exc.get_headers():
        if name.lower() in ("allow", "retry-after"):
            response.headers[name] = value
    return response


@bp.errorhandler(SQLAlchemyError)
def database_error(exc: SQLAlchemyError) -> tuple[str, int]:
    log.error("database error: %s", type(exc).__name__)
    return page("problem.html", 503, problem="unavailable")


@bp.errorhandler(Exception)
def unexpected(exc: Exception) -> tuple[str, int]:
    log.exception("unhandled error in the console")
    return page("problem.html", 500, problem="other")


@bp.after_request
def headers(response: Response) -> Response:
    for name, value in frame().headers.items():
        response.headers[name] = value
    response.headers["Content-Language"] = str(get_locale())
    return response


def init_app(app: Flask, rt: Runtime) -> None:
    """The console's session, stylesheet and headers; then the blueprint."""
    settings = rt.config.settings
    auth.configure(app, settings.console, rt.config.base_url, rt.config.token_secrets)
    css = STYLESHEET.read_text("utf-8")
    digest = base64.b64encode(hashlib.sha256(css.encode("utf-8")).digest()).decode()
    app.extensions["suppress.console"] = Frame(
        css=Markup(css),
        headers={
            "X-Robots-Tag": "noindex, nofollow",
            "Referrer-Policy": "no-referrer",
            # Lookups show what is kept about a person: no copy in any cache, ever.
            "Cache-Control": "no-store",
            # Nothing loads from anywhere: one inline stylesheet by its hash; charts are
            # inline SVG drawn with attributes, no script at all.
            "Content-Security-Policy": (
                f"default-src 'none'; style-src 'sha256-{digest}'; form-action 'self'; "
                "frame-ancestors 'none'; base-uri 'none'"
            ),
            "Vary": "Accept-Language, Cookie",
        },
        zone=settings.scheduler.zone,
        settings=settings.console,
    )
    app.add_template_filter(local_time, "local")
    app.register_blueprint(bp)
