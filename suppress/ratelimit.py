"""Rate limits: per client IP on the public pages and the console's password forms, per API
key on /v1.

Fixed windows counted by `limits` in this process (memory://) or in Redis, checked in one
before-request hook: a request looks up at most one budget, which keeps the gate's own cost
small. A limit store that fails falls back to per-process counters, so a limiter outage never
turns into a 5xx; the store is tried again after RETRY_STORE seconds.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from flask import Blueprint, Flask, Response, request
from limits import RateLimitItem, parse_many
from limits.storage import MemoryStorage, Storage, storage_from_string
from limits.strategies import FixedWindowRateLimiter
from werkzeug.exceptions import TooManyRequests

from .settings import RateLimitSettings

log = logging.getLogger("suppress.ratelimit")
# Retry-After when the storage cannot tell when the window resets.
FALLBACK_RETRY_AFTER = 60
# A slow or dead Redis must not hold requests: give up quickly and fall back to memory.
REDIS_OPTIONS: dict[str, Any] = {"socket_timeout": 0.5, "socket_connect_timeout": 0.5}
# After a failure of the limit store, count in memory for this long before trying it again.
RETRY_STORE = 5.0
# Every key in the store starts with this (one Redis may count for several services).
PREFIX = "suppress"


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


class Counter:
    """Fixed-window counters in the configured store, with per-process counters to fall back
    on while the store fails."""

    def __init__(self, storage_url: str | None) -> None:
        url = storage_url or "memory://"
        if url == "memory://":
            url = "suppress-memory://"
        options = REDIS_OPTIONS if url.startswith(("redis", "rediss")) else {}
        store = storage_from_string(url, **options)
        assert isinstance(store, Storage)  # the synchronous kind: no async schemes are allowed
        self.store = store
        self.fallback = ProcessCounters("suppress-memory://")
        self.shared = FixedWindowRateLimiter(self.store)
        self.local = FixedWindowRateLimiter(self.fallback)
        self.store_down_until = 0.0
        self._in_memory = isinstance(self.store, ProcessCounters)

    def hit(self, item: RateLimitItem, *identifiers: str) -> int | None:
        """None while within the budget; once past it, the seconds until its window ends."""
        limiter = self.local
        if self._in_memory or time.monotonic() >= self.store_down_until:
            limiter = self.shared
            try:
                if limiter.hit(item, PREFIX, *identifiers):
                    return None
            except Exception as exc:  # Redis down or slow: count here for a while
                log.warning(
                    "rate-limit store failed (%s); counting per process for %.0f s",
                    type(exc).__name__,
                    RETRY_STORE,
                )
                self.store_down_until = time.monotonic() + RETRY_STORE
                limiter = self.local
            else:
                return self._retry_after(limiter, item, identifiers)
        if limiter.hit(item, PREFIX, *identifiers):
            return None
        return self._retry_after(limiter, item, identifiers)

    @staticmethod
    def _retry_after(
        limiter: FixedWindowRateLimiter, item: RateLimitItem, identifiers: tuple[str, ...]
    ) -> int:
        try:
            reset = limiter.get_window_stats(item, PREFIX, *identifiers).reset_time
            return max(1, int(reset - time.time()))
        except Exception:  # the store went away between the breach and the answer
            log.warning("rate-limit storage could not tell the reset time")
            return FALLBACK_RETRY_AFTER


def init_app(
    app: Flask,
    settings: RateLimitSettings,
    *,
    pages: Blueprint,
    api: Blueprint,
    api_key: Callable[[], str | None],
    login: Sequence[str] = (),
) -> Counter | None:
    """Attach the limits: one shared budget per client IP for all public pages, one per key.

    api_key names the budget of a /v1 request whose token authenticates (never the token
    itself), and is None otherwise: then the request counts against its client IP, so made-up
    tokens cannot each open a fresh budget. `login` names the views whose POSTs take a
    password; they share one budget per client IP.
    """
    if not settings.enabled:
        return None
    # The rates were checked with the rest of the configuration (suppress.settings).
    # A rate may be several ("10 per second; 500 per hour"): each must hold.
    page_rates, api_rates = parse_many(settings.pages), parse_many(settings.api)
    login_rates = parse_many(settings.login)
    password_views = frozenset(login)
    counter = Counter(settings.storage_url)

    @app.before_request
    def limit() -> None:
        blueprint = request.blueprint
        if blueprint == api.name:
            key = api_key()
            # One budget across every /v1 route (not one per route), as for the pages.
            identity = "ip:" + _client() if key is None else "key:" + key
            rates, identifiers = api_rates, ("api", identity)
        elif blueprint == pages.name:
            rates, identifiers = page_rates, ("pages", _client())
        elif request.method == "POST" and request.endpoint in password_views:
            # Password attempts per client IP (signing in, and a change of one's own
            # password, which also asks for the current one), one budget whichever accounts
            # they name: the per-account lockout (suppress.users) stops guessing one
            # password, this stops trying many accounts.
            rates, identifiers = login_rates, ("login", _client())
        else:
            return
        for rate in rates:
            wait = counter.hit(rate, *identifiers)
            if wait is not None:
                raise TooManyRequests(
                    f"too many requests ({rate}); retry after {wait} s", retry_after=wait
                )

    @app.after_request
    def retry_after(response: Response) -> Response:
        if response.status_code == 429 and "Retry-After" not in response.headers:
            response.headers["Retry-After"] = str(FALLBACK_RETRY_AFTER)
        return response

    return counter


def _client() -> str:
    return request.remote_addr or "127.0.0.1"
