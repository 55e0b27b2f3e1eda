"""The /u blueprint: the unsubscribe landing page and RFC 8058 one-click, in two languages."""

from __future__ import annotations

import base64
import hashlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from babel import Locale
from flask import Blueprint, Flask, Response, current_app, g, render_template, request
from flask_babel import Babel, get_locale
from markupsafe import Markup
from werkzeug.exceptions import HTTPException

from . import clock, preferences, suppressions
from .contract import Answer, Operation, PageQuery, UnsubscribeForm, operation
from .errors import InvalidToken, SecretsMismatch, SuppressError, Unavailable
from .models import GLOBAL_LIST, Reason
from .runtime import Runtime
from .settings import SOURCE_LANGUAGE, PagesSettings, page_languages
from .tokens import Claim

bp = Blueprint("pages", __name__, url_prefix="/u")
log = logging.getLogger("suppress.pages")
ACTOR = "recipient"
STYLESHEET = Path(__file__).resolve().parent / "templates" / "page.css"
# Which problem page a failure shows; anything else gets the generic one.
PROBLEMS = {"invalid_token", "token_retired", "rate_limited", "unavailable"}


@dataclass(frozen=True)
class Pages:
    """What every page render needs, fixed at start-up."""

    languages: tuple[tuple[str, str], ...]  # (code, name in that language)
    default_language: str
    css: Markup
    headers: dict[str, str]


def _settings() -> Pages:
    return current_app.extensions["suppress.pages"]  # type: ignore[no-any-return]


def _runtime() -> Runtime:
    return current_app.extensions["suppress"]  # type: ignore[no-any-return]


def select_language() -> str:
    """The visitor's language: the switch (?lang=) first, then one the console's session
    remembers, then Accept-Language, else the default."""
    pages = _settings()
    codes = [code for code, _name in pages.languages]
    chosen = request.args.get("lang", "")
    if chosen in codes:
        return chosen
    remembered = g.get("language")
    if remembered in codes:
        return str(remembered)
    return request.accept_languages.best_match(codes, default=pages.default_language) or ""


def init_app(app: Flask, settings: PagesSettings) -> None:
    """Wire Flask-Babel, the page headers and the blueprint."""
    Babel(app, locale_selector=select_language)
    app.jinja_env.trim_blocks = app.jinja_env.lstrip_blocks = True
    # English and every compiled catalog; the default is one of them (suppress.settings).
    codes = page_languages()
    default = settings.default_language
    app.config["BABEL_DEFAULT_LOCALE"] = default
    css = STYLESHEET.read_text("utf-8")
    digest = base64.b64encode(hashlib.sha256(css.encode("utf-8")).digest()).decode()
    app.extensions["suppress.pages"] = Pages(
        languages=tuple(
            (code, (Locale.parse(code).get_display_name(code) or code).capitalize())
            for code in sorted(codes)
        ),
        default_language=default,
        css=Markup(css),
        headers={
            # Link scanners and search engines must neither index nor keep these pages.
            "X-Robots-Tag": "noindex, nofollow",
            "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-store",
            # Nothing loads from anywhere: the only style is the inline sheet, by its hash.
            "Content-Security-Policy": (
                f"default-src 'none'; style-src 'sha256-{digest}'; form-action 'self'; "
                "frame-ancestors 'none'; base-uri 'none'"
            ),
            "Vary": "Accept-Language",
        },
    )
    app.register_blueprint(bp)


def page(template: str, status: int = 200, **context: Any) -> tuple[str, int]:
    """Render a page in the selected language."""
    pages = _settings()
    return (
        render_template(
            template,
            lang=str(get_locale()),
            languages=pages.languages,
            css=pages.css,
            **context,
        ),
        status,
    )


def is_one_click(form: Any) -> bool:
    """True for the RFC 8058 body `List-Unsubscribe=One-Click`, whitespace around it allowed."""
    # Mail clients post it url-encoded or as multipart/form-data (RFC 8058 §3.1), and some
    # end the body with CRLF or pad it: the form parser keeps that whitespace in the name
    # (leading) or the value (trailing), so both are compared stripped.
    return any(
        name.strip() == "List-Unsubscribe" and value.strip() == "One-Click"
        for name, value in form.items(multi=True)
    )


def choice(form: Any, claim: Claim) -> tuple[str, Reason, str] | None:
    """(list, reason, source) from a one-click or landing-form body; None if it chose nothing."""
    if is_one_click(form):  # RFC 8058 §3.1: the token's list, whatever else was posted
        scope, source = "list", "one_click"
    elif form.get("scope") not in (None, "list", "global"):
        return None  # a choice we do not offer is no choice
    elif form.get("scope") in ("list", "global"):
        scope, source = form["scope"], "landing_page"
    else:
        return None
    list_name = GLOBAL_LIST if scope == "global" else claim.list
    # Leaving all direct marketing is an objection (GDPR art. 21(2)); one list, an unsubscribe.
    reason = Reason.objection if list_name == GLOBAL_LIST else Reason.unsubscribe
    return list_name, reason, source


# --- routes ---------------------------------------------------------------------------------


def verified(rt: Runtime, token: str) -> Claim:
    """The token's claim; a link this instance cannot verify because it lacks a secret the
    others sign with is 503 (ask again: another instance or a fixed one will take it), not a
    400 that would drop the reader's opt-out."""
    try:
        return rt.signer.verify(token)
    except InvalidToken:
        try:
            rt.verify_secrets()
        except SecretsMismatch as exc:
            log.error("a link could not be verified: %s", exc.message)
            raise Unavailable("this instance lacks a token secret; nothing was recorded") from None
        raise


TOKEN = {
    "type": "string",
    "maxLength": 512,
    "description": "Signed token of an unsubscribe link: digest, key id, list, minting key.",
}
PAGE: dict[str, Any] = {"text/html": {}}


@bp.get("/<token>")
@operation(
    Operation(
        "Landing page (HTML, Swedish or English); never changes anything",
        {200: Answer("The page", media=PAGE)},
        query=PageQuery,
        path={"token": TOKEN},
        html=True,
        description="400: a tampered, truncated or retired token. 503: this instance lacks "
        "the secret the link was signed with.",
    )
)
def landing(token: str) -> Any:
    # GET (and HEAD) only ever reads: mail scanners fetch every link they see.
    rt = _runtime()
    return landing_page(rt, verified(rt, token))


@bp.post("/<token>")
@operation(
    Operation(
        "Unsubscribe (RFC 8058 one-click or the page's form), leave or rejoin declared lists",
        {200: Answer("Confirmation page; committed before it is sent", media=PAGE)},
        query=PageQuery,
        form=UnsubscribeForm,
        path={"token": TOKEN},
        html=True,
        description="RFC 8058 one-click (`List-Unsubscribe=One-Click`, surrounding "
        "whitespace such as a final CRLF allowed) or the form's `scope`, url-encoded or "
        "multipart/form-data as mail clients send it: `list` (the link's list), `global` "
        "(all direct marketing), `lists` with one or more `lists` fields (leave those "
        "declared lists), `resubscribe` with `lists` fields (come back to declared lists "
        "this reader left through their own links). 400: a bad token, no choice made, or a "
        "list that is not declared; nothing recorded.",
    )
)
def unsubscribe(token: str) -> Any:
    rt = _runtime()
    claim = verified(rt, token)
    if request.form.get("scope") in ("lists", "resubscribe") and not is_one_click(request.form):
        return preference_change(rt, claim, token, request.form["scope"])
    chosen = choice(request.form, claim)
    if chosen is None:
        return landing_page(rt, claim, 400, problem="missing")
    list_name, reason, source = chosen
    rt.secrets_still_agree(time.monotonic())
    # Committed before the page is sent: the very next check sees the opt-out.
    with rt.db.begin() as session:
        _row, created = suppressions.add_by_digest(
            session,
            claim.digest,
            list_name,
            reason,
            source=source,
            actor=ACTOR,
            now=clock.utcnow(),
            minted_by=claim.minted_by,
        )
    return done_page(rt, claim, {"left" if created else "already": [list_name]})


def preference_change(rt: Runtime, claim: Claim, token: str, scope: str) -> Any:
    """scope=lists (leave declared lists) or scope=resubscribe (come back to them)."""
    settings = rt.config.settings
    names = list(dict.fromkeys(request.form.getlist("lists")))
    if not names:
        return landing_page(rt, claim, 400, problem="no_lists")
    if any(settings.declared(name) is None for name in names):
        return landing_page(rt, claim, 400, problem="unknown_list")
    rt.secrets_still_agree(time.monotonic())
    now = clock.utcnow()
    changes: dict[str, list[str]] = {}
    with rt.db.begin() as session:
        if scope == "lists":
            changes = {"left": [], "already": []}
            for name in names:
                _row, created = suppressions.add_by_digest(
                    session,
                    claim.digest,
                    name,
                    Reason.unsubscribe,
                    source="landing_page",
                    actor=ACTOR,
                    now=now,
                    minted_by=claim.minted_by,
                )
                changes["left" if created else "already"].append(name)
        else:
            lifted, kept = preferences.come_back(
                session, claim.digest, names, actor=ACTOR, evidence=evidence(claim, token), now=now
            )
            changes = {
                "rejoined": lifted,
                "kept": kept,
                "not_off": [n for n in names if n not in lifted and n not in kept],
            }
    return done_page(rt, claim, changes)


def evidence(claim: Claim, token: str) -> str:
    """What shows a removal was the reader's own request: their signed link, by its SHA-256
    (the link itself is a capability and is not kept), its list and the key that minted it."""
    fingerprint = hashlib.sha256(token.encode()).hexdigest()[:32]
    minted = claim.minted_by if claim.minted_by is not None else "unknown"
    return (
        f"signed unsubscribe link sha256:{fingerprint} for list {claim.list}, "
        f"minted by API key {minted}"
    )


def _title(rt: Runtime, name: str) -> str:
    """A list as the reader reads it: its title in the page's language, else its name."""
    declared = rt.config.settings.declared(name)
    if declared is None:
        return name
    return declared.title.get(str(get_locale())) or declared.title.get(SOURCE_LANGUAGE) or name


def landing_page(rt: Runtime, claim: Claim, status: int = 200, problem: str = "") -> Any:
    """The landing page: the link's list, all direct marketing, and every declared list."""
    settings = rt.config.settings
    lang = str(get_locale())
    names = [entry.name for entry in settings.lists]
    extra = [claim.list] if claim.list not in names and claim.list != GLOBAL_LIST else []
    with rt.db.begin(write=False) as session:
        state = preferences.standings(session, claim.digest, names + extra, now=clock.utcnow())
    declared: list[dict[str, Any]] = [
        {
            "name": entry.name,
            "title": entry.title.get(lang) or entry.name,
            "description": entry.description.get(lang, ""),
            "standing": state.lists[entry.name],
        }
        for entry in settings.lists
    ]
    return page(
        "landing.html",
        status,
        list=claim.list,
        list_title=_title(rt, claim.list),
        list_off=claim.list != GLOBAL_LIST and state.lists[claim.list].off,
        everything_off=state.everything_off,
        organisation=settings.organisation,
        receiving=[d for d in declared if not d["standing"].off],
        left=[d for d in declared if d["standing"].off],
        problem=problem,
    )


def done_page(rt: Runtime, claim: Claim, changes: dict[str, list[str]]) -> Any:
    """What changed, in the reader's language, and how to change it again."""
    titled = {
        key: [{"name": name, "title": _title(rt, name)} for name in names]
        for key, names in changes.items()
    }
    with rt.db.begin(write=False) as session:
        state = preferences.standings(session, claim.digest, [], now=clock.utcnow())
    return page(
        "done.html",
        changes=titled,
        everything_off=state.everything_off,
        organisation=rt.config.settings.organisation,
        again=request.path,
    )


# --- failures and headers ---------------------------------------------------------------------


@bp.errorhandler(SuppressError)
def domain_error(exc: SuppressError) -> tuple[str, int]:
    return page("problem.html", exc.status, problem=exc.code if exc.code in PROBLEMS else "other")


@bp.errorhandler(HTTPException)
def http_error(exc: HTTPException) -> Response:
    status = exc.code or 500
    problem = "rate_limited" if status == 429 else "other"
    body, status = page("problem.html", status, problem=problem)
    response = Response(body, status=status, mimetype="text/html")
    for name, value in exc.get_headers():
        if name.lower() in ("allow", "retry-after"):
            response.headers[name] = value
    return response


@bp.errorhandler(Exception)
def unexpected(exc: Exception) -> tuple[str, int]:
    log.exception("unhandled error on a public page")
    return page("problem.html", 500, problem="other")


@bp.after_request
def headers(response: Response) -> Response:
    for name, value in _settings().headers.items():
        response.headers[name] = value
    response.headers["Content-Language"] = str(get_locale())
    return response
