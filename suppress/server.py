"""The production WSGI server behind `suppress serve`: gunicorn, configured in code."""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any

from gunicorn.app.base import BaseApplication


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
        from . import create_app

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
            "errorlog": "-",
            "worker_tmp_dir": "/dev/shm",
            "proc_name": "suppress",
            # One control socket path per user would be shared by every instance on a host.
            "control_socket_disable": True,
            "child_exit": _child_exit,
            "on_exit": lambda _server: shutil.rmtree(metrics_dir, ignore_errors=True),
        }
    ).run()
