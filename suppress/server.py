"""The production WSGI server behind `suppress serve`: gunicorn, configured in code."""

from __future__ import annotations

import re
from typing import Any

from gunicorn.app.base import BaseApplication
from gunicorn.glogging import Logger

# An unsubscribe token is a capability: whoever has it can opt its recipient out. Proxy and
# access logs are read by many and kept long, so the token never reaches them.
TOKEN_PATH = re.compile(r"/u/[^/?#\s\"]+")
REDACTED = "/u/[token]"


class RedactingLogger(Logger):  # type: ignore[misc]
    """Gunicorn's logger with unsubscribe tokens cut out of every access-log field."""

    def atoms(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> Any:
        atoms = super().atoms(resp, req, environ, request_time)
        for name, value in atoms.items():
            if isinstance(value, str) and "/u/" in value:
                atoms[name] = TOKEN_PATH.sub(REDACTED, value)
        if str(environ.get("PATH_INFO", "")).startswith("/u/"):
            # The raw request line may spell the path percent-encoded; rebuild it whole.
            query = environ.get("QUERY_STRING")
            path = REDACTED + (f"?{query}" if query else "")
            atoms["r"] = f"{environ.get('REQUEST_METHOD')} {path} {environ.get('SERVER_PROTOCOL')}"
            atoms["U"] = REDACTED
        return atoms


class _Gunicorn(BaseApplication):  # type: ignore[misc]
    def __init__(self, options: dict[str, Any]):
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        # Each worker builds its own app, so no database connection crosses a fork.
        from . import create_app

        return create_app()


def run(*, host: str, port: int, workers: int, timeout: int) -> None:
    """Serve until SIGTERM (gunicorn's graceful shutdown)."""
    _Gunicorn(
        {
            "bind": f"{host}:{port}",
            "workers": workers,
            "timeout": timeout,
            "graceful_timeout": 30,
            "accesslog": "-",
            "logger_class": RedactingLogger,
            "errorlog": "-",
            "worker_tmp_dir": "/dev/shm",
            "proc_name": "suppress",
        }
    ).run()
