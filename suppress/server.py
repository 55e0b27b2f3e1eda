"""The production WSGI server behind `suppress serve`: gunicorn, configured in code."""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from typing import Any
from urllib.parse import unquote

from gunicorn.app.base import BaseApplication
from gunicorn.glogging import Logger

# An unsubscribe token is a capability: whoever has it can opt its recipient out. Proxy and
# access logs are read by many and kept long, so the token never reaches them.
TOKEN_PATH = re.compile(r"/u/[^/?#\s\"]+")
REDACTED = "/u/[token]"
# Addresses travel in bodies, never in URLs; a client that puts one in a query string anyway
# (a refused request) must not get it into the access log: anything around an @ goes.
ADDRESS = re.compile(r"[^\s/?&=;\"]*(?:@|%40)[^\s/?&=;\"]*", re.IGNORECASE)
REDACTED_ADDRESS = "[redacted]"
# One JSON object per access-log line, joined to the app's own log lines by request_id.
ACCESS_LOG_FORMAT = (
    '{"time":"%(t)s","remote":"%(h)s","request":"%(r)s","status":%(s)s,"bytes":"%(b)s",'
    '"duration_ms":%(M)s,"request_id":"%({x-request-id}o)s","agent":"%(a)s"}'
)


def _is_page(path: str) -> bool:
    """Whether a path names an unsubscribe page however it is spelled (//u/, /%75/, /U/):
    then the whole request line is rebuilt without it."""
    for _ in range(3):  # percent-encoding, possibly nested
        path = unquote(path)
    return re.sub(r"/+", "/", path).lower().startswith("/u/")


class RedactingLogger(Logger):  # type: ignore[misc]
    """Gunicorn's logger with unsubscribe tokens cut out of every access-log field."""

    def atoms(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> Any:
        atoms = super().atoms(resp, req, environ, request_time)
        for name, value in atoms.items():
            if isinstance(value, str) and "/u/" in value:
                atoms[name] = TOKEN_PATH.sub(REDACTED, value)
        if _is_page(str(environ.get("PATH_INFO", ""))):
            # The raw request line may spell the path percent-encoded; rebuild it whole.
            query = environ.get("QUERY_STRING")
            path = REDACTED + (f"?{query}" if query else "")
            atoms["r"] = f"{environ.get('REQUEST_METHOD')} {path} {environ.get('SERVER_PROTOCOL')}"
            atoms["U"] = REDACTED
        for name, value in list(atoms.items()):
            if isinstance(value, str) and ("@" in value or "%40" in value.lower()):
                atoms[name] = value = ADDRESS.sub(REDACTED_ADDRESS, value)
            if isinstance(value, str):  # the access log line is JSON: escape every field
                atoms[name] = json.dumps(value)[1:-1]
        return atoms


class _Gunicorn(BaseApplication):  # type: ignore[misc]
    def __init__(self, options: dict[str, Any]):
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            if key in self.cfg.settings:  # newer gunicorn settings are skipped on older ones
                self.cfg.set(key, value)

    def load(self) -> Any:
        # Each worker builds its own app, so no database connection crosses a fork.
        from . import create_app, logs

        logs.configure()
        return create_app()


def _child_exit(_server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def run(*, host: str, port: int, workers: int, timeout: int) -> None:
    """Serve until SIGTERM (gunicorn's graceful shutdown)."""
    # Workers count metrics in files here; /metrics on any worker sums them all.
    metrics_dir = tempfile.mkdtemp(prefix="suppress-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    _Gunicorn(
        {
            "bind": f"{host}:{port}",
            "workers": workers,
            "timeout": timeout,
            "graceful_timeout": 30,
            "accesslog": "-",
            "logger_class": RedactingLogger,
            "access_log_format": ACCESS_LOG_FORMAT,
            "errorlog": "-",
            "worker_tmp_dir": "/dev/shm",
            # Forwarded headers are the app's business alone ([server] proxy_hops): gunicorn
            # would otherwise take X-Forwarded-Proto from any local peer, even with 0 hops.
            "forwarded_allow_ips": "",
            "secure_scheme_headers": {},
            "proc_name": "suppress",
            # One control socket path per user would be shared by every instance on a host.
            "control_socket_disable": True,
            "child_exit": _child_exit,
            "on_exit": lambda _server: shutil.rmtree(metrics_dir, ignore_errors=True),
        }
    ).run()
