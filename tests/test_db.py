"""Storage: migrations match the models, SQLite pragmas, readiness, fail-closed errors."""

from __future__ import annotations

import os
import shutil
import sqlite3
import stat
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import create_engine, text

from suppress.db import Database
from suppress.errors import Unavailable
from suppress.runtime import Runtime


def test_migrations_match_the_models(empty_db_url: str) -> None:
    db = Database(empty_db_url)
    try:
        assert db.current_revision() is None
        db.upgrade()
        assert db.drift() == []
        assert db.current_revision() == db.head_revision()
    finally:
        db.dispose()


def test_upgrade_twice_is_harmless(empty_db_url: str) -> None:
    db = Database(empty_db_url)
    try:
        db.upgrade()
        with db.begin() as session:
            session.execute(
                text(
                    "INSERT INTO job_lease (job, owner, acquired_at, lease_until) "
                    "VALUES ('x', 'o', '2026-01-01', '2026-01-01')"
                )
            )
        db.upgrade()
        assert db.current_revision() == db.head_revision()
        with db.begin(write=False) as session:  # the second upgrade changed nothing
            assert session.execute(text("SELECT job FROM job_lease")).scalars().all() == ["x"]
    finally:
        db.dispose()


def schema_snapshot(url: str) -> dict[str, Any]:
    """Everything a migration makes, as comparable values: tables, columns, defaults,
    constraints, indexes, triggers, functions, comments, sequences, and every table's rows."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            if conn.dialect.name == "sqlite":
                master = conn.execute(
                    text("SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name")
                ).all()
                tables = [name for kind, name, _t, _s in master if kind == "table"]
                return {
                    "master": [tuple(row) for row in master],
                    "rows": {t: conn.execute(text(f'SELECT * FROM "{t}"')).all() for t in tables},
                    "journal_mode": conn.execute(text("PRAGMA journal_mode")).scalar(),
                }
            schema = conn.execute(text("SELECT current_schema()")).scalar()
            assert schema and schema.startswith("t_")

            def rows(sql: str) -> list[tuple[Any, ...]]:
                found = conn.execute(text(sql), {"s": schema}).all()
                return sorted(
                    tuple(str(v).replace(f"{schema}.", "<schema>.") for v in row) for row in found
                )

            snapshot = {
                "columns": rows(
                    "SELECT table_name, column_name, ordinal_position, data_type, "
                    "character_maximum_length, is_nullable, column_default, col_description("
                    "(quote_ident(table_schema) || '.' || quote_ident(table_name))::regclass, "
                    "ordinal_position) FROM information_schema.columns WHERE table_schema = :s"
                ),
                "constraints": rows(
                    "SELECT conrelid::regclass::text, conname, contype, pg_get_constraintdef(c.oid)"
                    " FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace "
                    "WHERE n.nspname = :s"
                ),
                "indexes": rows("SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = :s"),
                "triggers": rows(
                    "SELECT tgname, pg_get_triggerdef(t.oid), tgenabled FROM pg_trigger t "
                    "JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n "
                    "ON n.oid = c.relnamespace WHERE n.nspname = :s AND NOT t.tgisinternal"
                ),
                "functions": rows(
                    "SELECT proname, pg_get_functiondef(p.oid) FROM pg_proc p "
                    "JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = :s"
                ),
                "sequences": rows(
                    "SELECT sequencename, start_value, last_value FROM pg_sequences "
                    "WHERE schemaname = :s"
                ),
            }
            tables = [
                row[0] for row in rows("SELECT tablename FROM pg_tables WHERE schemaname = :s")
            ]
            snapshot["rows"] = {t: conn.execute(text(f'SELECT * FROM "{t}"')).all() for t in tables}
            return snapshot
    finally:
        engine.dispose()


def test_every_test_database_looks_freshly_migrated(db_url: str, empty_db_url: str) -> None:
    """The fixtures hand each test a copy of a session's migration: it must be exactly what
    the migrations make, and hold nothing an earlier test wrote."""
    db = Database(empty_db_url)
    db.upgrade()
    db.dispose()
    migrated, copied = schema_snapshot(empty_db_url), schema_snapshot(db_url)
    assert copied == migrated
    assert copied["rows"].pop("alembic_version") == [(db.head_revision(),)]
    assert set(copied["rows"]) >= {"audit_event", "suppression", "api_key", "secret_check"}
    assert all(rows == [] for rows in copied["rows"].values()), copied["rows"]


def test_instances_starting_together_migrate_one_at_a_time(empty_db_url: str) -> None:
    """Every unit runs `suppress db upgrade` as it starts; several hosts start at once."""
    import threading

    databases = [Database(empty_db_url) for _ in range(4)]
    failures: list[BaseException] = []
    start = threading.Barrier(len(databases))

    def upgrade(db: Database) -> None:
        start.wait()
        try:
            db.upgrade()
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append(exc)

    threads = [threading.Thread(target=upgrade, args=(db,)) for db in databases]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "migrations deadlocked"
    try:
        assert failures == []
        assert databases[0].current_revision() == databases[0].head_revision()
        assert databases[0].drift() == []
    finally:
        for db in databases:
            db.dispose()


def test_sqlite_runs_wal_full_sync_busy_timeout_foreign_keys(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'p.db'}", busy_timeout_ms=1234)
    with db.begin(write=False) as session:
        pragma = lambda name: session.execute(text(f"PRAGMA {name}")).scalar()  # noqa: E731
        assert pragma("journal_mode") == "wal"
        assert pragma("synchronous") == 2  # FULL
        assert pragma("busy_timeout") == 1234
        assert pragma("foreign_keys") == 1
    db.dispose()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o277], ids=oct)
def test_sqlite_files_are_0600_and_new_folders_0700_whatever_the_umask(
    tmp_path: Path, umask: int
) -> None:
    instance = tmp_path / "instance"
    path = instance / "data" / "suppress.db"
    old = os.umask(umask)
    try:
        db = Database(f"sqlite:///{path}")
        db.upgrade()
        with db.begin() as session:
            session.execute(text("CREATE TABLE t (x INTEGER)"))
            session.execute(text("INSERT INTO t VALUES (1)"))
        with db.begin(write=False) as session:  # the -wal and -shm files exist while open
            assert session.execute(text("SELECT x FROM t")).scalar() == 1
            wal, shm = Path(f"{path}-wal"), Path(f"{path}-shm")
            assert wal.stat().st_size > 0
            assert [mode(p) for p in (path, wal, shm)] == [0o600, 0o600, 0o600]
        assert mode(instance) == mode(instance / "data") == 0o700
        db.dispose()
    finally:
        os.umask(old)


def test_an_existing_folder_and_database_keep_their_modes(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o755)
    (shared / "old.db").touch()
    os.chmod(shared / "old.db", 0o640)
    db = Database(f"sqlite:///{shared / 'old.db'}")
    db.upgrade()
    db.dispose()
    assert (mode(shared), mode(shared / "old.db")) == (0o755, 0o640)


def test_sqlite_writer_waits_then_fails_closed_as_unavailable(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'busy.db'}"
    holder = Database(url, busy_timeout_ms=100)
    waiter = Database(url, busy_timeout_ms=100)
    with holder.begin() as session:
        session.execute(text("CREATE TABLE t (x INTEGER)"))
    with holder.begin() as session:
        session.execute(text("INSERT INTO t VALUES (1)"))
        with pytest.raises(Unavailable) as info:
            with waiter.begin() as other:
                other.execute(text("INSERT INTO t VALUES (2)"))
        assert info.value.status == 503 and info.value.code == "unavailable"
    holder.dispose()
    waiter.dispose()


def test_readyz_reports_ready(client: FlaskClient) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200 and response.get_json()["ready"] is True


def test_readyz_fails_without_schema(empty_db_url: str, tmp_path: Path) -> None:
    from suppress import create_app

    from .conftest import settings

    app = create_app(settings(empty_db_url, tmp_path))
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == "unavailable"
    assert "suppress db upgrade" in response.get_json()["error"]["message"]
    app.extensions["suppress"].db.dispose()


def test_database_down_answers_503_never_allowed(tmp_path: Path) -> None:
    from suppress import apikeys, create_app
    from suppress.models import Role

    from .conftest import bearer, settings

    db_file = tmp_path / "gone.db"
    app = create_app(settings(f"sqlite:///{db_file}", tmp_path))
    rt: Runtime = app.extensions["suppress"]
    rt.db.upgrade()
    with rt.db.begin() as session:
        _key, token = apikeys.create(session, "m", Role.mailer, actor="test")
    client = app.test_client()
    with rt.db.begin() as session:
        session.execute(text("DROP TABLE suppression"))
    response = client.post(
        "/v1/check", json={"email": "a@example.se", "list": "news"}, headers=bearer(token)
    )
    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == "unavailable"
    assert "allowed" not in response.get_json()
    rt.db.dispose()


def test_postgres_unreachable_answers_503(tmp_path: Path) -> None:
    from suppress import create_app

    from .conftest import bearer, settings

    app = create_app(
        settings("postgresql+psycopg://postgres@127.0.0.1:1/none?connect_timeout=1", tmp_path)
    )
    client = app.test_client()
    response = client.post(
        "/v1/check", json={"email": "a@example.se", "list": "news"}, headers=bearer("sk_x")
    )
    assert response.status_code == 503 and response.get_json()["error"]["code"] == "unavailable"
    assert client.get("/readyz").status_code == 503


def move_away(db_file: Path, how: str) -> Path:
    """Delete the SQLite file, or replace it by a copy (a new inode), under an open process."""
    moved = db_file.with_name("moved-" + db_file.name)
    if how == "deleted":
        db_file.unlink()
    else:
        db_file.rename(moved)
        shutil.copy(moved, db_file)
    return moved


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_sqlite_file_gone_from_under_the_app_fails_closed_with_503(
    tmp_path: Path, how: str
) -> None:
    from suppress import apikeys, create_app
    from suppress.models import Role

    from .conftest import bearer, settings

    db_file = tmp_path / "vanishing.db"
    app = create_app(settings(f"sqlite:///{db_file}", tmp_path))
    rt: Runtime = app.extensions["suppress"]
    rt.db.upgrade()
    with rt.db.begin() as session:
        _key, token = apikeys.create(session, "a", Role.admin, actor="test")
    client, headers = app.test_client(), bearer(token)
    add = {"email": "kept@example.se", "list": "news", "reason": "unsubscribe"}
    assert client.post("/v1/suppressions", json=add, headers=headers).status_code == 201
    assert client.get("/readyz").status_code == 200
    move_away(db_file, how)
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.get_json()["error"]["code"] == "unavailable"
    assert "deleted or replaced" in ready.get_json()["error"]["message"]
    for path, body in (
        ("/v1/check", {"email": "free@example.se", "list": "news"}),
        ("/v1/filter", {"list": "news", "emails": ["free@example.se", "kept@example.se"]}),
        ("/v1/suppressions", {**add, "email": "late@example.se"}),
    ):
        answer = client.post(path, json=body, headers=headers)
        assert answer.status_code == 503, path
        assert answer.get_json()["error"]["code"] == "unavailable", path
        assert "allowed" not in answer.get_json(), path
    rt.db.dispose()


def test_a_write_begun_before_the_file_was_replaced_is_not_committed(tmp_path: Path) -> None:
    db_file = tmp_path / "w.db"
    db = Database(f"sqlite:///{db_file}")
    with db.begin() as session:
        session.execute(text("CREATE TABLE t (x INTEGER)"))
        session.execute(text("INSERT INTO t VALUES (1)"))
    with pytest.raises(Unavailable, match="deleted or replaced"):
        with db.begin() as session:
            session.execute(text("INSERT INTO t VALUES (2)"))
            moved = move_away(db_file, "replaced")
    db.dispose()  # the last connection checkpoints its WAL into the file it had open
    db_file.unlink()
    moved.rename(db_file)
    with sqlite3.connect(db_file) as conn:
        assert conn.execute("SELECT x FROM t").fetchall() == [(1,)]


def test_a_vanished_sqlite_file_is_not_created_afresh_by_a_new_connection(
    tmp_path: Path,
) -> None:
    db_file = tmp_path / "v.db"
    db = Database(f"sqlite:///{db_file}")
    db.ping()
    db_file.unlink()
    db.dispose()  # the pool must open a new connection now
    with pytest.raises(Unavailable):
        db.ping()
    assert not db_file.exists()
    db.dispose()


def _plans(path: Path, sql: str, args: tuple[Any, ...] = ()) -> str:
    conn = sqlite3.connect(path)
    try:
        return " | ".join(row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql, args))
    finally:
        conn.close()


def test_statistics_of_a_small_database_are_forgotten_before_they_cost_a_scan(
    tmp_path: Path,
) -> None:
    from suppress import addresses, clock, suppressions
    from suppress.addresses import KeyRing
    from suppress.config import parse_peppers
    from suppress.models import Reason

    from .conftest import TEST_PEPPER

    path = tmp_path / "s.db"
    db = Database(f"sqlite:///{path}")
    db.upgrade()
    ring = KeyRing(parse_peppers(TEST_PEPPER))
    with db.begin() as session:
        target = addresses.address_target(ring, "small@example.se")
        suppressions.add(
            session, target, "news", Reason.unsubscribe, source="api", actor="t", now=clock.utcnow()
        )
    db.dispose()
    conn = sqlite3.connect(path)
    conn.execute("ANALYZE")  # an operator's, or PRAGMA optimize: the tables hold a row or two
    conn.commit()
    conn.close()
    check = suppressions._CHECK_ONE.format(digests="?, ?", p="?")
    args = (b"x", b"y", "news", "global", "2026-12-06")
    # The premise: with these statistics SQLite reads every row of the list for each check.
    assert "SCAN suppression" in _plans(path, check, args)
    again = Database(f"sqlite:///{path}")
    assert again.forget_planner_statistics() is True
    assert again.forget_planner_statistics() is False  # nothing left to forget
    again.dispose()
    assert "SEARCH suppression USING INDEX" in _plans(path, check, args)
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT count(*) FROM sqlite_stat1").fetchone() == (0,)
    conn.close()


def test_the_audit_head_is_found_by_max_id_whatever_the_statistics(tmp_path: Path) -> None:
    # The head trigger (migration 0010) and audit._lock_head look the head up with max(id):
    # answered from the rowid b-tree even when statistics say the trail is tiny.
    from suppress import audit

    path = tmp_path / "a.db"
    db = Database(f"sqlite:///{path}")
    db.upgrade()
    with db.begin() as session:
        audit.record(session, "test", actor="first")  # a trail of one event when analysed
    db.dispose()
    conn = sqlite3.connect(path)
    conn.execute("ANALYZE")
    conn.commit()
    trigger = conn.execute(
        "SELECT sql FROM sqlite_master WHERE name = 'audit_event_extends_head'"
    ).fetchone()[0]
    conn.close()
    assert "max(id)" in trigger and "ORDER BY" not in trigger
    by_max = (
        "SELECT hash FROM audit_event WHERE id = (SELECT max(id) FROM audit_event WHERE id < ?)"
    )
    assert "SCAN" not in _plans(path, by_max, (10,))
    ordered = "SELECT hash FROM audit_event WHERE id < ? ORDER BY id DESC LIMIT 1"
    assert "SCAN" in _plans(path, ordered, (10,))  # what 0004's trigger did after ANALYZE
    with Database(f"sqlite:///{path}").begin() as session:  # still chains and still refuses
        audit.record(session, "test", actor="after")
    with pytest.raises(Exception, match="grows only at its head"):
        conn = sqlite3.connect(path)
        try:
            conn.execute(
                "INSERT INTO audit_event (id, at, action, actor, detail, prev_hash, hash) "
                "VALUES (3, '2026-12-06', 'x', 'x', '{}', zeroblob(32), randomblob(32))"
            )
        finally:
            conn.close()


def test_a_starting_server_forgets_the_statistics_of_the_file(tmp_path: Path) -> None:
    from suppress import create_app

    from .conftest import settings

    path = tmp_path / "start.db"
    Database(f"sqlite:///{path}").upgrade()
    conn = sqlite3.connect(path)
    conn.execute("ANALYZE")
    conn.execute("INSERT INTO sqlite_stat1 VALUES ('suppression', NULL, '1')")
    conn.commit()
    conn.close()
    app = create_app(settings(f"sqlite:///{path}", tmp_path))
    app.extensions["suppress"].db.dispose()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("SELECT count(*) FROM sqlite_stat1").fetchone() == (0,)
    finally:
        conn.close()
