"""suppress: a marketing suppression list and mailing gatekeeper."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Flask
from werkzeug.routing import IntegerConverter


class AsciiInteger(IntegerConverter):
    """`<int:...>` of ASCII digits only: "\\d" would also take "１" or "٣" as a number and
    route them to a record they only look like."""

    regex = r"[0-9]+"


class App(Flask):
    """Flask, remembering per function whether it must be wrapped to run synchronously: Flask
    asks (inspect.iscoroutinefunction) for every view and hook on every request."""

    SYNC_CACHE = 4096

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._sync: dict[Callable[..., Any], Callable[..., Any]] = {}

    def ensure_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        found = self._sync.get(func)
        if found is None:
            found = super().ensure_sync(func)
            if len(self._sync) < self.SYNC_CACHE:
                self._sync[func] = found
        return found


def create_app(overrides: dict[str, Any] | None = None) -> Flask:
    """Build the Flask app: configuration, database, key ring, blueprints, error rendering."""
    from . import api, console, contract, health, logs, metrics, pages, ratelimit, receivers, web
    from .runtime import Runtime

    rt = Runtime.load(overrides)
    app = App(__name__, instance_path=str(rt.config.instance_dir))
    app.url_map.converters["int"] = AsciiInteger  # before any route is added
    # /v1//check is no route (404), not a redirect to one.
    app.url_map.merge_slashes = False
    app.config["MAX_CONTENT_LENGTH"] = rt.config.max_json_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["suppress"] = rt
    logs.init_app(app)
    app.register_blueprint(api.bp)
    app.register_blueprint(health.bp)
    app.register_blueprint(receivers.bp)
    settings = rt.config.settings
    pages.init_app(app, settings.pages)
    console.init_app(app, rt)
    ratelimit.init_app(
        app,
        settings.ratelimit,
        pages=pages.bp,
        api=api.bp,
        api_key=api.rate_limit_key,
        login=("console.login", "console.password"),
    )
    web.init_app(app)
    contract.init_app(app)
    metrics.init_app(app)
    if rt.config.proxy_hops:
        # Behind N trusted proxies: client address and scheme from the last N forwarded
        # entries (DESIGN §13). Host and prefix are not taken from headers: links use base_url.
        from werkzeug.middleware.proxy_fix import ProxyFix

        hops = rt.config.proxy_hops
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=hops, x_proto=hops, x_host=0, x_port=0, x_prefix=0
        )
    # Last, once every setting has been validated: refuse to serve with other peppers or
    # token secrets than the instances before us (the first database connection).
    rt.start()
    return app
