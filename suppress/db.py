"""Engine, sessions and transactions; SQLite pragmas; Alembic upgrade and drift check."""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Connection, Engine, LargeBinary, Table, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from . import files
from .errors import Unavailable
from .models import Base

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
log = logging.getLogger("suppress.db")
SQLITE_ROWS_PER_INSERT = 2000
# The PostgreSQL advisory lock that serializes schema migrations ("SUPPRMIG").
MIGRATION_LOCK = int.from_bytes(b"SUPPRMIG", "big")
# How long a SQLite migration waits for another instance's to finish.
MIGRATION_WAIT_SECONDS = 120


def _sqlite_pragmas(busy_timeout_ms: int):  # type: ignore[no-untyped-def]
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event emit BEGIN itself, so writers can ask for IMMEDIATE.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        cursor.execute("PRAGMA journal_mode = WAL")
        # FULL: an acknowledged opt-out survives power loss, not only a process crash.
        cursor.execute("PRAGMA synchronous = FULL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    return on_connect


def _pg_statement_timeout(timeout_ms: int):  # type: ignore[no-untyped-def]
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # A slow or locked database must become a 503 within bounded time, never a hang.
        with dbapi_connection.cursor() as cursor:
            cursor.execute(f"SET statement_timeout = {int(timeout_ms)}")
        dbapi_connection.commit()

    return on_connect


def _sqlite_begin(conn: Any) -> None:
    # Writers take the write lock up front (BEGIN IMMEDIATE): a deferred transaction that
    # reads and then writes fails at once with SQLITE_BUSY instead of waiting its turn.
    mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
    conn.exec_driver_sql(f"BEGIN {mode}")


class SqliteFile:
    """The SQLite file this process opened, known by device and inode.

    A file deleted (or replaced) under a running process stays open: writes would be
    acknowledged into an unlinked file and lost at the next restart, and reads would come
    from a file nobody else sees. So once the path no longer names the file first opened,
    every transaction fails closed (503) until the process is restarted.
    """

    MESSAGE = (
        "database unavailable: the SQLite file was deleted or replaced after this process "
        "opened it; nothing was decided; restart the service once the file is back"
    )

    def __init__(self, path: str):
        self.path = os.path.abspath(path)
        self.identity: tuple[int, int] | None = None
        self._reported = False

    def _current(self) -> tuple[int, int] | None:
        try:
            found = os.stat(self.path)
        except OSError:  # gone, or no longer reachable: either way not the file we opened
            return None
        return (found.st_dev, found.st_ino)

    def check(self) -> None:
        """Raise Unavailable unless the path still names the file first opened (one stat)."""
        if self.identity is not None and self._current() != self.identity:
            if not self._reported:
                self._reported = True
                log.error("the SQLite file %s was deleted or replaced; failing closed", self.path)
            raise Unavailable(self.MESSAGE)

    def opened(self) -> None:
        """Remember the file the first connection opened; later ones must open the same."""
        if self.identity is None:
            self.identity = self._current()
        self.check()

    def listen(self, engine: Engine) -> None:
        """Check before each connect (so a vanished file is not silently re-created), after
        it, at each BEGIN and before each COMMIT (a write that began before the file went)."""
        event.listen(engine, "do_connect", lambda *_args: self.check())
        event.listen(engine, "connect", lambda *_args: self.opened())
        event.listen(engine, "begin", lambda _conn: self.check())
        event.listen(engine, "commit", lambda _conn: self.check())


def insert_rows(session: Session, table: Table, columns: Sequence[str], rows: list[tuple]) -> None:
    """Insert many rows in the session's transaction at bulk speed (COPY on PostgreSQL).

    Values are Python values of the columns' types; each column's SQLAlchemy bind processing
    (e.g. SQLite's datetime text format, JSON) is applied, so the rows read back as if the
    ORM had written them.
    """
    if not rows:
        return
    connection = session.connection()
    dialect = connection.dialect
    # bytes go to both drivers as they are; other processed values (datetimes, JSON, enums)
    # repeat across a bulk insert, so each distinct object is processed once.
    processors = {
        i: p
        for i, name in enumerate(columns)
        if not isinstance(table.c[name].type, LargeBinary)
        and (p := table.c[name].type.dialect_impl(dialect).bind_processor(dialect)) is not None
    }
    if processors:
        done: dict[tuple[int, int], Any] = {}
        converted = []
        for row in rows:
            values = list(row)
            for i, processor in processors.items():
                value = values[i]
                if value is not None:
                    key = (i, id(value))
                    if key not in done:
                        done[key] = processor(value)
                    values[i] = done[key]
            converted.append(tuple(values))
        rows = converted
    names = ", ".join(columns)
    raw = connection.connection.dbapi_connection
    assert raw is not None
    cursor = raw.cursor()
    try:
        if dialect.name == "postgresql":
            with cursor.copy(f"COPY {table.name} ({names}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        else:
            # Many rows per statement, not one statement per row: a statement that fires a
            # trigger (audit_event has them) keeps a statement journal of every page it
            # changes, and per row that nearly halves the insert rate.
            limit = raw.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // len(columns)
            per = max(1, min(SQLITE_ROWS_PER_INSERT, limit))
            row_marks = "(" + ", ".join("?" for _ in columns) + ")"
            for start in range(0, len(rows), per):
                chunk = rows[start : start + per]
                marks = ", ".join([row_marks] * len(chunk))
                cursor.execute(
                    f"INSERT INTO {table.name} ({names}) VALUES {marks}",
                    [value for row in chunk for value in row],
                )
    finally:
        cursor.close()


def _newer(revision: str | None) -> str:
    return (
        f"schema at {revision}, which this version does not know: a newer release migrated "
        "this database; run that release (or restore a backup)"
    )


class Database:
    """One engine and its read and write session factories."""

    def __init__(
        self,
        url: str,
        *,
        busy_timeout_ms: int = 5000,
        pool_size: int = 5,
        statement_timeout_ms: int = 0,
    ):
        parsed = make_url(url)
        self.url = url
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        if self.is_sqlite:
            database = parsed.database or ""
            self.file: SqliteFile | None = None
            if database and database != ":memory:" and not database.startswith("file:"):
                # SQLite would create the file 0644 (less the umask), and its -wal and -shm
                # files with the database file's mode: an empty file made 0600 first, in a
                # folder made 0700, keeps all three private to the service's user.
                files.private_dir(Path(database).parent)
                files.private_file(Path(database))
                self.file = SqliteFile(database)
            self.engine: Engine = create_engine(
                url,
                hide_parameters=True,  # error messages and logs never carry digests
                connect_args={"timeout": busy_timeout_ms / 1000, "check_same_thread": False},
            )
            if self.file is not None:  # first: before the pragmas touch a new file
                self.file.listen(self.engine)
            event.listen(self.engine, "connect", _sqlite_pragmas(busy_timeout_ms))
            event.listen(self.engine, "begin", _sqlite_begin)
            write_engine: Engine = self.engine.execution_options(sqlite_begin="IMMEDIATE")
            self._query_engine = self.engine
        else:
            self.file = None
            self.engine = create_engine(
                url,
                hide_parameters=True,
                pool_size=pool_size,
                max_overflow=pool_size,
                pool_pre_ping=True,
            )
            # The single check's statements (query()): autocommit, so a statement is its own
            # snapshot with no BEGIN or ROLLBACK round trip, and no ping on checkout (a
            # connection found broken is replaced and the read-only statement tried again).
            self._query_engine = create_engine(
                url,
                hide_parameters=True,
                pool_size=pool_size,
                max_overflow=pool_size,
                isolation_level="AUTOCOMMIT",
            )
            write_engine = self.engine
            if statement_timeout_ms > 0:
                for engine in (self.engine, self._query_engine):
                    event.listen(engine, "connect", _pg_statement_timeout(statement_timeout_ms))
        self._write_engine = write_engine
        self._read = sessionmaker(bind=self.engine, expire_on_commit=False)
        self._write = sessionmaker(bind=write_engine, expire_on_commit=False)

    @contextmanager
    def begin(self, *, write: bool = True) -> Iterator[Session]:
        """A session in one transaction: committed on success, rolled back on error.

        Database failures surface as Unavailable (503), never as a decision.
        """
        factory = self._write if write else self._read
        # The driver's own errors too: insert_rows talks to the driver's cursor directly.
        driver_error = self.engine.dialect.loaded_dbapi.Error
        try:
            with factory() as session, session.begin():
                yield session
        except (DBAPIError, SQLAlchemyError, driver_error) as exc:
            raise self._unavailable(exc) from exc

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A connection in one read transaction, without a Session: the gate's hot path
        (a single check) reads through it. Failures are Unavailable, as with begin()."""
        driver_error = self.engine.dialect.loaded_dbapi.Error
        try:
            with self.engine.connect() as conn, conn.begin():
                yield conn
        except (DBAPIError, SQLAlchemyError, driver_error) as exc:
            raise self._unavailable(exc) from exc

    def query(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        """Rows of one read-only statement on a pooled driver connection, without a
        transaction of SQLAlchemy's (one statement reads one snapshot on both databases):
        the single check's path. `sql` uses the driver's parameter style ("?" on SQLite,
        "%s" on PostgreSQL). A PostgreSQL connection found closed (the server restarted)
        is dropped and the statement run once more on a new one. Failures are Unavailable,
        as with begin()."""
        driver_error = self.engine.dialect.loaded_dbapi.Error
        try:
            if self.file is not None:
                self.file.check()
            for attempt in (1, 2):
                raw = self._query_engine.raw_connection()
                try:
                    cursor = raw.cursor()
                    cursor.execute(sql, tuple(params))
                    rows = [tuple(row) for row in cursor.fetchall()]
                    cursor.close()
                    break
                except driver_error:
                    broken = not self.is_sqlite and bool(
                        getattr(raw.driver_connection, "closed", False)
                    )
                    if broken:
                        raw.invalidate()  # never back to the pool
                    if not broken or attempt == 2:
                        raise
                finally:
                    raw.close()  # back to the pool (rolled back on SQLite; nothing to undo here)
            if self.file is not None:
                self.file.check()  # read from the file everyone else writes to
            return rows
        except (DBAPIError, SQLAlchemyError, driver_error) as exc:
            raise self._unavailable(exc) from exc

    def _unavailable(self, exc: BaseException) -> Unavailable:
        if isinstance(exc, DBAPIError) and exc.connection_invalidated:
            self.engine.dispose()
        cause = exc.orig if isinstance(exc, DBAPIError) else exc
        return Unavailable(f"database unavailable: {type(cause).__name__}")

    def dispose(self) -> None:
        """Close pooled connections (after fork, at shutdown, in tests)."""
        self.engine.dispose()
        if self._query_engine is not self.engine:
            self._query_engine.dispose()

    # --- schema -----------------------------------------------------------------------

    def _alembic(self) -> AlembicConfig:
        cfg = AlembicConfig()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        return cfg

    def upgrade(self) -> None:
        """Create or migrate the schema to the newest revision.

        On SQLite, instances starting together wait their turn for the write lock longer than
        a request would: a migration may hold it for seconds on a busy host.
        """
        deadline = time.monotonic() + MIGRATION_WAIT_SECONDS
        while True:
            try:
                return self._upgrade()
            except OperationalError as exc:
                locked = self.is_sqlite and "database is locked" in str(exc)
                if not locked or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def _upgrade(self) -> None:
        cfg = self._alembic()
        # Every instance and scheduler may migrate as it starts (systemd ExecStartPre), several
        # at once: one migrates while the others wait, then find the schema current. SQLite
        # writers take the write lock up front; PostgreSQL takes a transaction advisory lock.
        with self._write_engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK})
            cfg.attributes["connection"] = conn
            try:
                command.upgrade(cfg, "head")
            except CommandError:
                # A revision this code does not ship: a newer release migrated the database.
                current = MigrationContext.configure(conn).get_current_revision()
                raise Unavailable(_newer(current)) from None

    def head_revision(self) -> str | None:
        """The newest migration revision shipped with this code."""
        return ScriptDirectory.from_config(self._alembic()).get_current_head()

    def current_revision(self) -> str | None:
        """The revision the database is at (None when it has no schema)."""
        with self.engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    def drift(self) -> list[Any]:
        """Differences between the models and the migrated schema (empty when in step)."""
        with self.engine.connect() as conn:
            return list(compare_metadata(MigrationContext.configure(conn), Base.metadata))

    def forget_planner_statistics(self) -> bool:
        """SQLite: delete what ANALYZE (or PRAGMA optimize) left in sqlite_stat1 and
        sqlite_stat4, then reopen the pool's connections; True when there was any.

        The service's statements are written for SQLite's plans without statistics, which
        take the unique and primary-key indexes. Statistics gathered while a table was
        small tell the planner it is small for good, and it then scans the whole table
        for every check, or the whole audit trail for every event written. A database that
        is missing or not migrated yet is left alone."""
        if not self.is_sqlite:
            return False
        try:
            with self.engine.connect() as conn:
                tables = conn.exec_driver_sql(
                    "SELECT name FROM sqlite_master WHERE type = 'table' "
                    "AND name IN ('sqlite_stat1', 'sqlite_stat4')"
                ).scalars()
                found = [t for t in tables if conn.exec_driver_sql(f"SELECT 1 FROM {t}").first()]
            if not found:
                return False
            with self.begin() as session:
                for table in found:
                    session.execute(text(f"DELETE FROM {table}"))
        except (SQLAlchemyError, Unavailable):
            return False
        self.engine.dispose()  # connections load the planner's statistics when they open
        log.warning("removed SQLite planner statistics (%s)", ", ".join(found))
        return True

    def ping(self) -> None:
        """Raise Unavailable unless the database answers a trivial query."""
        with self.begin(write=False) as session:
            session.execute(text("SELECT 1"))

    def schema_problem(self) -> str | None:
        """Why the schema is not the one this code expects, or None when it is."""
        try:
            current, head = self.current_revision(), self.head_revision()
        except SQLAlchemyError as exc:
            raise Unavailable(f"database unavailable ({type(exc).__name__})") from None
        if current == head:
            return None
        known = {
            rev.revision for rev in ScriptDirectory.from_config(self._alembic()).walk_revisions()
        }
        if current is not None and current not in known:
            return _newer(current)
        return f"schema at {current or 'nothing'}, code expects {head}: run 'suppress db upgrade'"

    def require_current(self) -> None:
        """Unavailable unless the database answers and its schema is current: a job or a
        scheduler started before `suppress db upgrade` says so at once."""
        self.ping()
        problem = self.schema_problem()
        if problem:
            raise Unavailable(problem)
