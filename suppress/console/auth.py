"""Who is signed in to the console: the session cookie, its expiry, CSRF tokens and roles.

The session is Flask's signed cookie, not a table: instances stay stateless behind a load
balancer (DESIGN §7) and nothing needs purging. It holds the account's id, the account's
session epoch, when it was issued and last used, the CSRF token and the chosen language;
never an address. Every request reads the account row anyway (role, disabled, epoch), so
bumping the epoch (sign-out, disable, password change) ends every copy of an older cookie
at once, which a bare signed cookie could not do.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Callable, Sequence
from datetime import timedelta
from functools import wraps
from typing import Any, TypeVar

from flask import Flask, Request, g, request, session
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface

from .. import clock, users
from ..errors import ErrorCode, Forbidden, SuppressError
from ..models import PersonRole
from ..settings import ConsoleSettings

F = TypeVar("F", bound=Callable[..., Any])
COOKIE = "suppress_console"
# The session key is derived from the token secrets (one secret to rotate, not two), under a
# label of its own: no signature made for the cookie can pass for an unsubscribe token's.
LABEL = b"suppress console session v1"
# The last-seen time is rewritten at most this often (each rewrite re-sends the cookie).
TOUCH_SECONDS = 60
# Where the sign-in page may send a person afterwards: a console page, nothing else.
NEXT = re.compile(r"^/admin/[A-Za-z0-9/_.-]*$")


class FormRefused(SuppressError):
    """A POST without this session's CSRF token, or sent from another site (403)."""

    code = ErrorCode.forbidden
    status = 403


def session_keys(token_secrets: Sequence[str]) -> list[str]:
    """The cookie's signing keys, one per token secret: the first signs, all verify."""
    return [hmac.new(s.encode(), LABEL, hashlib.sha256).hexdigest() for s in token_secrets]


class ConsoleSessions(SecureCookieSessionInterface):
    """Flask's signed-cookie session, opened only under /admin: the cookie is sent nowhere
    else, so every other request (the gate's above all) skips reading it."""

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if not request.path.startswith("/admin"):
            return self.session_class()
        return super().open_session(app, request)


def configure(app: Flask, settings: ConsoleSettings, base_url: str, secrets: Sequence[str]) -> None:
    """Flask's session: the console's cookie, signed with a key derived from the secrets."""
    keys = session_keys(secrets)
    app.session_interface = ConsoleSessions()
    app.config.update(
        SECRET_KEY=keys[0],
        SECRET_KEY_FALLBACKS=keys[1:],
        SESSION_COOKIE_NAME=COOKIE,
        # Sent to the console alone: never to /v1, /u or the webhooks.
        SESSION_COOKIE_PATH="/admin",
        SESSION_COOKIE_HTTPONLY=True,
        # Strict: no other site can make the browser send it, not even through a link (a
        # link from mail to /admin/ then shows the sign-in page first, once).
        SESSION_COOKIE_SAMESITE="Strict",
        SESSION_COOKIE_SECURE=base_url.startswith("https://"),
        # A browser-session cookie; the signature also stops being accepted after this long.
        PERMANENT_SESSION_LIFETIME=timedelta(hours=settings.session_hours),
        SESSION_REFRESH_EACH_REQUEST=False,
    )


def _seconds() -> int:
    return int(clock.now().timestamp())


def csrf_token() -> str:
    """This session's CSRF token (made on first use)."""
    token = session.get("csrf")
    if not isinstance(token, str):
        token = session["csrf"] = secrets.token_urlsafe(32)
    return token


def check_form() -> None:
    """FormRefused unless the POST carries this session's CSRF token and came from this site."""
    # Sec-Fetch-Site (sent by every current browser) says where the request came from;
    # a form of another site, even a sibling subdomain, is refused before it is read.
    if request.headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none"):
        raise FormRefused("the form was sent from another site")
    expected = session.get("csrf")
    given = request.form.get("csrf_token", "")
    if not isinstance(expected, str) or not hmac.compare_digest(given, expected):
        raise FormRefused("the form's CSRF token is missing or not this session's")


def start(person: users.Person) -> None:
    """A fresh session for a person who has just signed in (a new CSRF token too)."""
    lang = session.get("lang")
    session.clear()
    now = _seconds()
    session.update(u=person.id, e=person.epoch, t0=now, ts=now, csrf=secrets.token_urlsafe(32))
    if lang:
        session["lang"] = lang


def renew(person: users.Person) -> None:
    """Keep this session after the person's epoch moved (their own password change)."""
    session["e"] = person.epoch


def end() -> None:
    """Forget who was signed in; keep the language."""
    lang = session.get("lang")
    session.clear()
    if lang:
        session["lang"] = lang


def expired(settings: ConsoleSettings) -> bool | None:
    """None without a signed-in session; True past the idle or absolute limit, else False."""
    issued, seen = session.get("t0"), session.get("ts")
    if not isinstance(issued, int) or not isinstance(seen, int) or "u" not in session:
        return None
    now = _seconds()
    return now - seen > settings.idle_minutes * 60 or now - issued > settings.session_hours * 3600


def touch() -> None:
    """Note that the session was used now (at most once a minute)."""
    now = _seconds()
    if now - int(session.get("ts", 0)) >= TOUCH_SECONDS:
        session["ts"] = now


def account() -> tuple[int, int] | None:
    """The (account id, epoch) this session names, if any."""
    uid, epoch = session.get("u"), session.get("e")
    if isinstance(uid, int) and isinstance(epoch, int):
        return uid, epoch
    return None


def safe_next(value: str | None) -> str | None:
    """A console path to continue to after signing in, or None."""
    if value and NEXT.fullmatch(value) and "//" not in value and "/.." not in value:
        return value
    return None


def person() -> users.Person:
    """The signed-in person of this request (set before every console view but sign-in)."""
    return g.person  # type: ignore[no-any-return]


def person_or_none() -> users.Person | None:
    """The signed-in person, if any (the sign-in page asks)."""
    return g.get("person")


def requires(role: PersonRole) -> Callable[[F], F]:
    """A view for people whose role includes `role`; 403 for the others, nothing done."""

    def wrap(view: F) -> F:
        @wraps(view)
        def inner(*args: Any, **kwargs: Any) -> Any:
            if not person().may(role):
                raise Forbidden(f"role {person().role.value} may not do this; {role.value} may")
            return view(*args, **kwargs)

        return inner  # type: ignore[return-value]

    return wrap
