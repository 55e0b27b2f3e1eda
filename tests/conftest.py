"""Shared fixtures: a db_url over SQLite and PostgreSQL, the app, client, runner and API keys.

The migrations run once per database per session; each test gets a database of its own that
looks freshly migrated (db_url), or an empty one (empty_db_url) when the migrations or a
server's own `suppress db upgrade` are what it tests.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient, FlaskCliRunner
from sqlalchemy import Engine, create_engine, event, text

from suppress import create_app
from suppress.apikeys import Role
from suppress.db import Database
from suppress.runtime import Runtime

TEST_PEPPER = "t1:" + base64.b64encode(b"pepper-for-tests-only-0123456789").decode()
OLD_PEPPER = "t0:" + base64.b64encode(b"an-older-pepper-for-tests-000000").decode()
TOKEN_SECRET = "token-secret-for-tests-0123456789abcdef"
POSTGRES_URL = os.environ.get("SUPPRESS_TEST_POSTGRES_URL", "")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
# The Python whose installed `suppress` the end-to-end tests start as subprocesses. CI builds
# the wheel, installs it into a venv of its own and names that venv's python here, so those
# tests run what an operator installs, not this work tree. Locally it defaults to this Python.
INSTALLED_PYTHON = os.environ.get("SUPPRESS_TEST_PYTHON") or sys.executable
SUPPRESS = [INSTALLED_PYTHON, "-m", "suppress.cli"]
BACKENDS = ["sqlite", "postgresql"]


def outside_tree(tmp_path: Path) -> Path:
    """An empty working directory for subprocesses: nothing of the work tree to import."""
    cwd = tmp_path / "cwd"
    cwd.mkdir(exist_ok=True)
    return cwd


def postgres_or_skip() -> str:
    """The PostgreSQL test server URL; skip loudly locally, fail in CI."""
    if POSTGRES_URL:
        return POSTGRES_URL
    reason = "SUPPRESS_TEST_POSTGRES_URL is not set: PostgreSQL tests NOT RUN"
    if IN_CI:
        pytest.fail(reason + " (CI=true requires them)")
    pytest.skip(reason)


_ADMIN_ENGINES: dict[str, Engine] = {}


def _admin(base: str) -> Engine:
    """One autocommit engine per server for creating and dropping schemas (kept for the session)."""
    if base not in _ADMIN_ENGINES:
        _ADMIN_ENGINES[base] = create_engine(base, isolation_level="AUTOCOMMIT")
    return _ADMIN_ENGINES[base]


@contextmanager
def postgres_schema(migration: str = "") -> Iterator[str]:
    """A URL on the PostgreSQL test server whose search_path is a private schema of its own:
    empty, or with `migration` (SQL, see postgres_migration) run in it first."""
    base = postgres_or_skip()
    schema = "t_" + uuid.uuid4().hex[:12]
    admin = _admin(base)
    with admin.connect() as conn:
        if migration:  # one round trip, one transaction
            conn.exec_driver_sql(
                f'BEGIN; CREATE SCHEMA "{schema}"; SET LOCAL search_path TO "{schema}";\n'
                f"{migration}COMMIT;"
            )
        else:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in base else "?"
    try:
        yield f"{base}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))


# The statements Alembic itself runs to find out what to do (the migration lock and catalog
# look-ups); they change nothing, so a recorded migration leaves them out.
_LOOK_UPS = re.compile(r"^\s*SELECT\s+(pg_advisory_xact_lock\(|pg_catalog\.)", re.IGNORECASE)


def record_migration(db: Database) -> str:
    """Run the real migrations (`db.upgrade()`) on an empty database and return, as one SQL
    script, every statement they sent that changes anything, in order."""
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_rest: Any) -> None:
        if _LOOK_UPS.match(statement):
            return
        if parameters:  # a script cannot carry them: fail loudly rather than replay wrongly
            raise RuntimeError(f"a migration sent a statement with parameters: {statement}")
        statements.append(statement.strip())

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        db.upgrade()
    finally:
        event.remove(db.engine, "before_cursor_execute", record)
    return ";\n".join(statements) + ";\n"


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated once per session (by the real migrations); tests get copies."""
    path = tmp_path_factory.mktemp("template") / "suppress.db"
    db = Database(f"sqlite:///{path}")
    db.upgrade()
    db.dispose()  # the last connection checkpoints the WAL into the file and removes it
    assert not Path(f"{path}-wal").exists(), "the template must be one self-contained file"
    return path


@pytest.fixture(scope="session")
def postgres_migration() -> str:
    """The real migrations, run once per session in a schema of their own and recorded: every
    test's schema then gets the same statements in one round trip."""
    with postgres_schema() as url:
        db = Database(url)
        try:
            return record_migration(db)
        finally:
            db.dispose()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Tests on a database run on SQLite and PostgreSQL; db_agnostic ones on SQLite alone."""
    if "backend" in metafunc.fixturenames:
        agnostic = metafunc.definition.get_closest_marker("db_agnostic") is not None
        metafunc.parametrize("backend", ["sqlite"] if agnostic else BACKENDS, indirect=True)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("db_agnostic") and "backend" not in item.fixturenames:
            raise pytest.UsageError(f"{item.nodeid} is marked db_agnostic but uses no database")
    if os.environ.get("PYTEST_XDIST_WORKER"):
        # On several workers the long runs start first (handed out one at a time, see the
        # Makefile), beside the short ones, instead of last, alone. The order is the same on
        # every worker, as pytest-xdist requires.
        items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def db_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """A database of this test's own that looks freshly migrated: a copy of the session's
    migrated SQLite file, or a PostgreSQL schema made by the session's recorded migration."""
    if backend == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        path = tmp_path / "suppress.db"
        shutil.copyfile(template, path)
        os.chmod(path, 0o600)
        yield f"sqlite:///{path}"
        return
    with postgres_schema(request.getfixturevalue("postgres_migration")) as url:
        yield url


@pytest.fixture
def empty_db_url(backend: str, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database (no schema yet): for tests of the migrations themselves and
    for servers started the way an operator does, `suppress db upgrade` first."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    with postgres_schema() as url:
        yield url


def settings(
    db_url: str, tmp_path: Path, peppers: str = TEST_PEPPER, **extra: Any
) -> dict[str, Any]:
    """Configuration overrides for a test instance."""
    return {
        "database": {"url": db_url},
        "peppers": peppers,
        "token_secrets": TOKEN_SECRET,
        "instance_dir": str(tmp_path / "instance"),
        "base_url": "https://suppress.example.com",
        **extra,
    }


@pytest.fixture
def overrides(db_url: str, tmp_path: Path) -> dict[str, Any]:
    return settings(db_url, tmp_path)


@pytest.fixture
def app(overrides: dict[str, Any]) -> Iterator[Flask]:
    app = create_app(overrides)
    rt: Runtime = app.extensions["suppress"]
    app.config["TESTING"] = True
    yield app
    rt.db.dispose()


@pytest.fixture
def rt(app: Flask) -> Runtime:
    return app.extensions["suppress"]  # type: ignore[no-any-return]


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def runner(app: Flask) -> FlaskCliRunner:
    return app.test_cli_runner()


@pytest.fixture
def tokens(rt: Runtime) -> dict[str, str]:
    """One bearer token per role."""
    from suppress import apikeys

    out = {}
    with rt.db.begin() as session:
        for role in Role:
            _key, token = apikeys.create(session, f"test-{role.value}", role, actor="test")
            out[role.value] = token
    return out


def resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """A schema of the API document with its $ref (if any) followed."""
    while "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LiveServer:
    """`suppress serve` as a real subprocess on a free port (gunicorn, real HTTP)."""

    def __init__(
        self,
        db_url: str,
        tmp_path: Path,
        peppers: str = TEST_PEPPER,
        workers: int = 2,
        extra_env: dict[str, str] | None = None,
        port: int | None = None,
    ):
        import subprocess

        self.port = port or free_port()
        self.cwd = outside_tree(tmp_path)
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = tmp_path / f"server-{self.port}.log"
        # The caller's environment, without a configuration file of its own (extra_env may
        # name one).
        inherited = {k: v for k, v in os.environ.items() if k != "SUPPRESS_CONFIG"}
        self.env = {
            **inherited,
            "SUPPRESS_DATABASE_URL": db_url,
            "SUPPRESS_PEPPERS": peppers,
            "SUPPRESS_TOKEN_SECRETS": TOKEN_SECRET,
            "SUPPRESS_BASE_URL": self.url,
            "SUPPRESS_INSTANCE_DIR": str(tmp_path / "instance"),
            **(extra_env or {}),
        }
        self.workers = workers
        self.proc: subprocess.Popen[bytes] | None = None
        subprocess.run(
            [*SUPPRESS, "db", "upgrade"],
            env=self.env,
            cwd=self.cwd,
            check=True,
            capture_output=True,
        )
        self.start()

    def start(self) -> None:
        """Start (or restart) the server and wait until it is ready."""
        import subprocess

        self.log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [
                *SUPPRESS,
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--workers",
                str(self.workers),
            ],
            env=self.env,
            cwd=self.cwd,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so kill() takes the workers too
        )
        self.wait_ready()

    def kill(self) -> None:
        """SIGKILL the server and its workers at once: a crash, not a shutdown."""
        import signal

        assert self.proc is not None
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=30)
        self.log.close()
        # The master is reaped, but a worker may not have died yet: until it has, its copy of
        # the listening socket still takes connections (then drops them unanswered).
        import socket
        import time

        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            except ConnectionRefusedError:
                return
            except OSError:  # a timeout on a busy machine: ask again
                pass
            assert time.monotonic() < deadline, f"port {self.port} still open after SIGKILL"
            time.sleep(0.01)

    def cli(self, *args: str) -> Any:
        """Run a `suppress` CLI command against the same database."""
        import subprocess

        return subprocess.run(
            [*SUPPRESS, *args],
            env=self.env,
            cwd=self.cwd,
            capture_output=True,
            text=True,
            timeout=120,
        )

    def wait_ready(self, timeout: float = 30) -> None:
        import time

        import requests

        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log_path.read_text()}")
            try:
                if requests.get(self.url + "/readyz", timeout=1).status_code == 200:
                    return
            except (requests.ConnectionError, requests.Timeout):  # busy machine: ask again
                pass
            time.sleep(0.1)
        raise RuntimeError(f"server not ready in {timeout}s: {self.log_path.read_text()}")

    def stop(self) -> int:
        """SIGTERM and wait: gunicorn shuts down gracefully."""
        import signal

        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=30)
        self.log.close()
        return self.proc.returncode


@pytest.fixture
def live_server(empty_db_url: str, tmp_path: Path) -> Iterator[LiveServer]:
    server = LiveServer(empty_db_url, tmp_path)
    yield server
    server.stop()


@pytest.fixture
def private_pg() -> Iterator[Any]:
    """A PostgreSQL server of this test's own (needs the server binaries; CI has them)."""
    from .pgcluster import PrivateCluster

    postgres_or_skip()  # same policy: skipped loudly locally, required in CI
    cluster = PrivateCluster(free_port())
    yield cluster
    cluster.destroy()
