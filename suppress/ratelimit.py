"""Rate limits (Flask-Limiter): per client IP on the public pages and the console's sign-in,
per API key on /v1."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from flask import Blueprint, Flask, Response
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from limits.storage import MemoryStorage

from .settings import RateLimitSettings

log = logging.getLogger("suppress.ratelimit")
# Retry-After when the storage cannot tell when the window resets.
FALLBACK_RETRY_AFTER = 60
# A slow or dead Redis must not hold requests: give up quickly and fall back to memory.
REDIS_OPTIONS: dict[str, Any] = {"socket_timeout": 0.5, "socket_connect_timeout": 0.5}


class ProcessCounters(MemoryStorage):
    """Per-process counters (memory://) that expire when next read.

    limits' MemoryStorage restarts a timer thread every 10 ms while requests arrive, which
    cost more than the rest of a single check; here a count past its window is dropped when
    next read, and a sweep past SWEEP_AT live windows keeps memory bounded. Fixed windows
    only, the strategy configured below.
    """

    STORAGE_SCHEME = ["suppress-memory"]
    SWEEP_AT = 10_000

    def __init__(self, uri: str | None = None, wrap_exceptions: bool = False, **options: Any):
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)
        self._lock = threading.Lock()

    def incr(self, key: str, expiry: float, amount: int = 1) -> int:
        now = time.time()  # the windows are the storage's own, in epoch seconds
        with self._lock:
            if self.expirations.get(key, 0) <= now:
                self.storage.pop(key, None)
                self.expirations[key] = now + expiry
                if len(self.expirations) > self.SWEEP_AT:
                    self._sweep(now)
            self.storage[key] += amount
            return self.storage[key]

    def _sweep(self, now: float) -> None:
        for key, until in list(self.expirations.items()):
            if until <= now:
                self.storage.pop(key, None)
                self.expirations.pop(key, None)


def init_app(
    app: Flask,
    settings: RateLimitSettings,
    *,
    pages: Blueprint,
    api: Blueprint,
    api_key: Callable[[], str | None],
    login: Sequence[str] = (),
) -> Limiter:
    """Attach the limiter: one shared budget per client IP for all public pages, one per key.

    api_key names the budget of a /v1 request whose token authenticates (never the token
    itself), and is None otherwise: then the request counts against its client IP, so made-up
    tokens cannot each open a fresh budget.
    """

    def api_identity() -> str:
        key = api_key()
        return "ip:" + get_remote_address() if key is None else "key:" + key

    storage_url = settings.storage_url or "memory://"
    if storage_url == "memory://":
        storage_url = "suppress-memory://"
    limiter = Limiter(
        get_remote_address,
        app=app,
        storage_uri=storage_url,
        storage_options=REDIS_OPTIONS if storage_url.startswith(("redis", "rediss")) else {},
        strategy="fixed-window",
        key_prefix="suppress",
        # A limiter outage must never turn into a 5xx: fall back to per-process counters,
        # and if even that fails, serve unlimited rather than fail the opt-out.
        in_memory_fallback_enabled=True,
        swallow_errors=True,
        headers_enabled=False,
        enabled=settings.enabled,
    )
    # The rates were checked with the rest of the configuration (suppress.settings).
    limiter.shared_limit(settings.pages, scope="pages")(pages)
    # One budget across every /v1 route (not one per route), as for the pages.
    limiter.shared_limit(settings.api, scope="api", key_func=api_identity)(api)
    # Password attempts per client IP (signing in, and a change of one's own password, which
    # also asks for the current one), one budget whichever accounts they name: the
    # per-account lockout (suppress.users) stops guessing one password, this stops trying
    # many accounts. The views are registered already: wrap them where the app keeps them.
    decorate: Any = limiter.shared_limit(settings.login, scope="login", methods=["POST"])
    for endpoint in login:
        app.view_functions[endpoint] = decorate(app.view_functions[endpoint])

    @app.after_request
    def retry_after(response: Response) -> Response:
        if response.status_code == 429 and "Retry-After" not in response.headers:
            response.headers["Retry-After"] = str(_seconds_to_reset(limiter))
        return response

    return limiter


def _seconds_to_reset(limiter: Limiter) -> int:
    try:
        current = limiter.current_limit
        if current is not None:
            return max(1, int(current.reset_at - time.time()))
    except Exception:  # the storage went away between the breach and the answer
        log.warning("rate-limit storage could not tell the reset time")
    return FALLBACK_RETRY_AFTER
