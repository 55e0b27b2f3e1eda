"""The audit trail: chained events in the same transaction, append-only triggers, tamper
detection that names the event, its routes and CLI."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from click.testing import Result
from flask.testing import FlaskClient, FlaskCliRunner
from sqlalchemy import Connection, Executable, func, insert, select, text, update
from sqlalchemy.exc import DBAPIError

from suppress import addresses, audit, cli, clock, suppressions
from suppress.db import SQLITE_ROWS_PER_INSERT, insert_rows
from suppress.errors import SuppressError, Unavailable
from suppress.models import AuditEvent, Reason, Suppression
from suppress.runtime import Runtime

from .conftest import bearer


def tamper(rt: Runtime, *statements: str | Executable, **params: Any) -> None:
    """Change audit_event behind the triggers' back, as the table owner could."""

    def run(conn: Connection) -> None:
        for statement in statements:
            conn.execute(text(statement) if isinstance(statement, str) else statement, params)

    with rt.db.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("ALTER TABLE audit_event DISABLE TRIGGER USER"))
            run(conn)
            conn.execute(text("ALTER TABLE audit_event ENABLE TRIGGER USER"))
            return
        triggers = conn.execute(
            text("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'")
        ).all()
        assert {name for name, _ in triggers} >= {
            "audit_event_no_update",
            "audit_event_no_delete",
            "audit_event_extends_head",
        }
        for name, _ in triggers:
            conn.execute(text(f"DROP TRIGGER {name}"))
        run(conn)
        for _, sql in triggers:
            conn.execute(text(sql))


def make_events(rt: Runtime, n: int = 5) -> list[bytes]:
    """n chained events; returns their hashes in order (ids 1..n)."""
    hashes = []
    for i in range(n):
        with rt.db.begin() as session:
            event = audit.record(session, "test", actor="test", detail={"i": i})
            hashes.append(event.hash)
    return hashes


def verify(rt: Runtime, anchor: bytes | None = None) -> audit.Verification:
    with rt.db.begin(write=False) as session:
        return audit.verify(session, anchor=anchor)


def invoke(
    runner: FlaskCliRunner, rt: Runtime, monkeypatch: pytest.MonkeyPatch, *args: str
) -> Result:
    monkeypatch.setattr(cli, "runtime", lambda: rt)
    return runner.invoke(cli.main, list(args))


# --- the triggers ----------------------------------------------------------------------------


def test_update_and_delete_of_an_event_are_refused_by_the_database(rt: Runtime) -> None:
    make_events(rt, 2)
    with pytest.raises(DBAPIError, match="append-only"):
        with rt.db.engine.begin() as conn:
            conn.execute(update(AuditEvent).where(AuditEvent.id == 1).values(actor="someone"))
    with pytest.raises(DBAPIError, match="append-only"):
        with rt.db.engine.begin() as conn:
            conn.execute(text("DELETE FROM audit_event"))
    if rt.db.engine.dialect.name == "postgresql":
        with pytest.raises(DBAPIError, match="append-only"):
            with rt.db.engine.begin() as conn:
                conn.execute(text("TRUNCATE audit_event"))
    # Through the application's own sessions the refusal is an error, never a success.
    with pytest.raises(Unavailable):
        with rt.db.begin() as session:
            session.execute(text("DELETE FROM audit_event WHERE id = 2"))
    result = verify(rt)
    assert result.ok and result.events == 2


def test_appending_still_works_under_the_triggers(rt: Runtime) -> None:
    make_events(rt, 3)
    assert verify(rt).events == 3


def forged(id: int | None, prev_hash: bytes, action: str = "forged") -> Any:
    """An INSERT of one well-formed event: its hash is right for its content and prev_hash."""
    event = AuditEvent(
        at=clock.utcnow(), action=action, actor="intruder", detail={}, prev_hash=prev_hash
    )
    event.hash = audit.chain_hash(prev_hash, event)
    values = {c: getattr(event, c) for c in audit._AUDIT_COLUMNS}
    return insert(AuditEvent).values(**values, **({} if id is None else {"id": id}))


def stored(rt: Runtime) -> int:
    with rt.db.begin(write=False) as session:
        return int(session.scalar(select(func.count()).select_from(AuditEvent)) or 0)


@pytest.mark.parametrize(
    ("events", "id", "links_to"),
    [
        (3, -1, "genesis"),  # beside the chain, where the walk from id 1 never looks
        (3, 0, "head"),  # ids must be positive
        (3, None, "older"),  # a fork: a second event on an earlier head
        (3, None, "nothing"),  # links to no stored event
        (0, None, "nothing"),  # the first event must start from the genesis
        (0, -1, "genesis"),  # even the first event needs a positive id
    ],
)
def test_an_insert_that_does_not_extend_the_head_is_refused_by_the_database(
    rt: Runtime, events: int, id: int | None, links_to: str
) -> None:
    hashes = make_events(rt, events)
    prev = {
        "genesis": audit.GENESIS,
        "head": hashes[-1] if hashes else audit.GENESIS,
        "older": hashes[0] if hashes else audit.GENESIS,
        "nothing": bytes(range(32)),
    }[links_to]
    with pytest.raises(DBAPIError, match="grows only at its head"):
        with rt.db.engine.begin() as conn:
            conn.execute(forged(id, prev))
    with pytest.raises(Unavailable):
        with rt.db.begin() as session:
            session.execute(forged(id, prev))
    assert stored(rt) == events
    assert verify(rt).ok


def test_an_insert_that_extends_the_head_is_accepted(rt: Runtime) -> None:
    for _ in range(2):  # the first event links to the genesis, the second to the first
        with rt.db.engine.begin() as conn:
            conn.execute(forged(None, verify(rt).head, action="by_hand"))
    make_events(rt, 1)
    result = verify(rt)
    assert result.ok and result.events == 3


def test_a_bulk_append_is_checked_link_by_link_within_one_statement(rt: Runtime) -> None:
    make_events(rt, 2)
    # One COPY on PostgreSQL; on SQLite statements of up to 2000 rows, so two of them.
    digests = [i.to_bytes(32, "big") for i in range(2500)]
    assert len(digests) > SQLITE_ROWS_PER_INSERT
    with rt.db.begin() as session:
        audit.record_uniform(session, digests, action="import", actor="test", list="news")
    result = verify(rt)
    assert result.ok and result.events == 2502
    # The same statement with one link in its middle pointing elsewhere: refused whole.
    prev, rows = result.head, []
    for i in range(5):
        event = AuditEvent(at=clock.utcnow(), action="bulk", actor="test", detail={"i": i})
        event.prev_hash = audit.GENESIS if i == 2 else prev
        event.hash = audit.chain_hash(event.prev_hash, event)
        rows.append(tuple(getattr(event, c) for c in audit._AUDIT_COLUMNS))
        prev = event.hash
    with pytest.raises(Unavailable):
        with rt.db.begin() as session:
            insert_rows(session, AuditEvent.__table__, audit._AUDIT_COLUMNS, rows)  # type: ignore[arg-type]
    assert stored(rt) == 2502


# --- tamper detection ---------------------------------------------------------------------------


def test_intact_chain_verifies_and_reports_its_head(rt: Runtime) -> None:
    hashes = make_events(rt)
    result = verify(rt)
    assert result.ok and result.events == 5 and result.head == hashes[-1]
    assert verify(rt, anchor=hashes[2]).ok


def test_edited_event_is_named(rt: Runtime) -> None:
    make_events(rt)
    tamper(rt, "UPDATE audit_event SET actor = 'someone else' WHERE id = 3")
    result = verify(rt)
    assert not result.ok
    assert (result.broken_at, result.finding, result.events) == (3, audit.Finding.edited, 2)
    assert "event 3 was edited" in (result.problem or "")


def test_edited_event_with_recomputed_hash_is_caught_at_the_next_link(rt: Runtime) -> None:
    make_events(rt)
    with rt.db.begin(write=False) as session:
        event = session.get(AuditEvent, 3)
        assert event is not None
        event.actor = "someone else"
        forged = audit.chain_hash(event.prev_hash, event)
        session.expunge(event)
    tamper(
        rt,
        "UPDATE audit_event SET actor = 'someone else', hash = :h WHERE id = 3",
        h=forged,
    )
    result = verify(rt)
    assert (result.ok, result.broken_at, result.finding) == (False, 4, audit.Finding.missing)
    assert "event 3 was rewritten" in (result.problem or "")


def test_deleted_event_is_named(rt: Runtime) -> None:
    make_events(rt)
    tamper(rt, "DELETE FROM audit_event WHERE id = 3")
    result = verify(rt)
    assert (result.ok, result.broken_at, result.finding) == (False, 4, audit.Finding.missing)
    assert "event 4 does not link to event 2" in (result.problem or "")


def test_deleted_first_event_is_detected(rt: Runtime) -> None:
    make_events(rt)
    tamper(rt, "DELETE FROM audit_event WHERE id = 1")
    result = verify(rt)
    assert (result.ok, result.broken_at, result.finding) == (False, 2, audit.Finding.missing)
    assert "the start of the chain" in (result.problem or "")


def test_reordered_events_are_named(rt: Runtime) -> None:
    make_events(rt)
    tamper(
        rt,
        "UPDATE audit_event SET id = 100 WHERE id = 2",
        "UPDATE audit_event SET id = 2 WHERE id = 3",
        "UPDATE audit_event SET id = 3 WHERE id = 100",
    )
    result = verify(rt)
    assert (result.ok, result.broken_at, result.finding) == (False, 2, audit.Finding.reordered)
    assert "event 2 is out of order: it links to event 3, not to event 1" == result.problem


@pytest.mark.parametrize("id", [-1, 0])
def test_an_event_the_walk_never_reaches_is_named(rt: Runtime, id: int) -> None:
    make_events(rt, 3)
    tamper(rt, forged(id, audit.GENESIS))  # past the insert trigger, as the table owner could
    result = verify(rt)
    assert (result.ok, result.finding, result.broken_at, result.events) == (
        False,
        audit.Finding.unchained,
        id,
        3,
    )
    assert result.problem == (
        "1 stored event(s) are outside the chain (the walk over ids from 1 up reached 3 of "
        f"4): event {id} has an id below 1, which the application never writes: it was "
        "inserted by hand"
    )


def test_audit_verify_route_names_an_event_outside_the_chain(
    client: FlaskClient, tokens: dict[str, str], rt: Runtime
) -> None:
    tamper(rt, forged(-7, audit.GENESIS))
    broken = client.get("/v1/audit/verify", headers=bearer(tokens["admin"])).get_json()
    assert (broken["ok"], broken["finding"], broken["broken_at"]) == (False, "unchained", -7)
    assert "event -7 has an id below 1" in broken["problem"]


def test_cut_tail_is_only_detectable_against_an_anchor(rt: Runtime) -> None:
    hashes = make_events(rt)
    tamper(rt, "DELETE FROM audit_event WHERE id >= 4")
    assert verify(rt).ok  # what is left still links: hence the anchor
    result = verify(rt, anchor=hashes[-1])
    assert (result.ok, result.finding, result.events) == (False, audit.Finding.anchor_missing, 3)


# --- routes and CLI -------------------------------------------------------------------------------


def test_audit_pages_by_id_and_filters_by_action(
    client: FlaskClient, tokens: dict[str, str], rt: Runtime
) -> None:
    make_events(rt, 5)  # api keys were created first: those are events too
    admin = bearer(tokens["admin"])
    first = client.get("/v1/audit?limit=4", headers=admin).get_json()
    assert [e["id"] for e in first["events"]] == [1, 2, 3, 4]
    second = client.get(f"/v1/audit?after={first['next_after']}&limit=100", headers=admin)
    ids = [e["id"] for e in second.get_json()["events"]]
    assert ids == list(range(5, 5 + len(ids))) and len(ids) == 4
    tests = client.get("/v1/audit?action=test", headers=admin).get_json()["events"]
    assert [e["detail"]["i"] for e in tests] == [0, 1, 2, 3, 4]
    event = tests[0]
    assert set(event) == {
        "id", "at", "action", "digest", "kind", "list", "reason", "source", "actor", "detail",
        "prev_hash", "hash",
    }  # fmt: skip
    assert event["at"].endswith("Z") and len(event["hash"]) == 64
    for bad in ("after=x", "after=-1", "limit=0", "after=%C2%B2", f"after={2**63}", "action=a%00"):
        assert client.get(f"/v1/audit?{bad}", headers=admin).status_code == 400, bad
    assert len(client.get("/v1/audit?limit=5000", headers=admin).get_json()["events"]) == 8
    beyond = client.get(f"/v1/audit?after={2**63 - 1}", headers=admin)
    assert beyond.status_code == 200 and beyond.get_json()["events"] == []
    assert client.get("/v1/audit", headers=bearer(tokens["recorder"])).status_code == 403


def test_audit_verify_route_reports_ok_and_the_break(
    client: FlaskClient, tokens: dict[str, str], rt: Runtime
) -> None:
    admin = bearer(tokens["admin"])
    ok = client.get("/v1/audit/verify", headers=admin).get_json()
    assert ok["ok"] is True and ok["events"] == 3 and len(ok["head"]) == 64
    anchored = client.get(f"/v1/audit/verify?anchor={ok['head']}", headers=admin)
    assert anchored.get_json()["ok"] is True
    for bad in ("", "zz", ok["head"][:-2] + " 0", ok["head"] + "00"):
        assert client.get(f"/v1/audit/verify?anchor={bad}", headers=admin).status_code == 400
    tamper(rt, "UPDATE audit_event SET action = 'nothing' WHERE id = 2")
    broken = client.get("/v1/audit/verify", headers=admin).get_json()
    assert broken["ok"] is False
    assert (broken["broken_at"], broken["finding"]) == (2, "edited")
    assert client.get("/v1/audit/verify", headers=bearer(tokens["mailer"])).status_code == 403


def test_cli_audit_verify_exits_non_zero_when_broken(
    runner: FlaskCliRunner, rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    hashes = make_events(rt, 4)
    good = invoke(runner, rt, monkeypatch, "audit", "verify", "--anchor", hashes[-1].hex())
    assert good.exit_code == 0, good.output
    assert f"4 event(s), head {hashes[-1].hex()}" in good.stdout
    malformed = invoke(runner, rt, monkeypatch, "audit", "verify", "--anchor", "abc")
    assert malformed.exit_code == 2 and "--anchor must be 64 hexadecimal" in malformed.stderr
    tamper(rt, "DELETE FROM audit_event WHERE id = 2")
    bad = invoke(runner, rt, monkeypatch, "audit", "verify")
    assert bad.exit_code == 1
    assert "audit chain broken (missing)" in bad.stderr and "event 3" in bad.stderr


def test_removing_a_global_objection_needs_evidence_and_is_listed(
    client: FlaskClient, tokens: dict[str, str]
) -> None:
    admin = bearer(tokens["admin"])
    body = {"email": "olle@example.se", "list": "global", "reason": "objection"}
    assert client.post("/v1/suppressions", json=body, headers=admin).status_code == 201
    lift = {"email": "Olle@example.se", "list": "global", "reason": "resubscribed"}
    refused = client.delete("/v1/suppressions", json=lift, headers=admin)
    assert refused.status_code == 400 and "evidence" in refused.get_json()["error"]["message"]
    assert client.get("/v1/audit?action=remove", headers=admin).get_json()["events"] == []
    done = client.delete(
        "/v1/suppressions", json={**lift, "evidence": "consent form 2026-0042"}, headers=admin
    )
    assert done.status_code == 200
    (removal,) = client.get("/v1/audit?action=remove", headers=admin).get_json()["events"]
    assert (removal["list"], removal["reason"], removal["actor"]) == (
        "global",
        "objection",
        "api:test-admin",
    )
    assert removal["detail"]["evidence"] == "consent form 2026-0042"
    assert removal["detail"]["removal_reason"] == "resubscribed"
    assert client.get("/v1/audit/verify", headers=admin).get_json()["ok"] is True


# --- the chain under normal use --------------------------------------------------------------


def events(rt: Runtime) -> list[AuditEvent]:
    with rt.db.begin(write=False) as session:
        return list(session.scalars(select(AuditEvent).order_by(AuditEvent.id)))


def test_every_change_is_a_chained_event_without_plaintext(
    client: FlaskClient, tokens: dict[str, str], rt: Runtime
) -> None:
    headers = bearer(tokens["admin"])
    client.post(
        "/v1/suppressions",
        json={"email": "Chain.Person@example.se", "list": "news", "reason": "unsubscribe"},
        headers=headers,
    )
    client.delete(
        "/v1/suppressions",
        json={
            "email": "chain.person@example.se",
            "list": "news",
            "reason": "resubscribed",
            "evidence": "form 7",
        },
        headers=headers,
    )
    chain = events(rt)
    assert [e.action for e in chain][-2:] == ["add", "remove"]
    assert chain[0].prev_hash == audit.GENESIS
    for prev, event in zip(chain, chain[1:], strict=False):
        assert event.prev_hash == prev.hash
    add_event = chain[-2]
    assert add_event.digest == rt.ring.address(addresses.normalize("chain.person@example.se"))
    for event in chain:
        assert "chain.person" not in audit.canonical(event).decode().lower()
    with rt.db.begin(write=False) as session:
        result = audit.verify(session)
    assert result.ok and result.events == len(chain) and result.head == chain[-1].hash


def test_a_failed_change_leaves_neither_row_nor_event(rt: Runtime) -> None:
    target = addresses.address_target(rt.ring, "rollback@example.se")
    before = len(events(rt))
    try:
        with rt.db.begin() as session:
            suppressions.add(
                session,
                target,
                "news",
                Reason.unsubscribe,
                source="test",
                actor="test",
                now=clock.utcnow(),
            )
            raise SuppressError("boom")
    except SuppressError:
        pass
    assert len(events(rt)) == before
    with rt.db.begin(write=False) as session:
        assert session.scalars(select(Suppression)).all() == []


def test_verify_detects_an_edited_event(rt: Runtime) -> None:
    with rt.db.begin() as session:
        for i in range(3):
            audit.record(session, "test", actor="test", detail={"i": i})
    with rt.db.begin(write=False) as session:
        middle = session.scalars(select(AuditEvent).order_by(AuditEvent.id).offset(1)).first()
        assert middle is not None
        middle_id = middle.id
    # The append-only triggers refuse the edit; a table owner could drop them first.
    tamper(rt, "UPDATE audit_event SET detail = :d WHERE id = :i", d='{"i": 99}', i=middle_id)
    with rt.db.begin(write=False) as session:
        result = audit.verify(session)
    assert not result.ok and result.broken_at == middle_id and result.events == 1


def test_concurrent_writers_keep_the_chain_linear(rt: Runtime) -> None:
    errors: list[Exception] = []

    def writer(n: int) -> None:
        for i in range(8):
            target = addresses.address_target(rt.ring, f"w{n}-{i % 3}@example.se")
            try:
                with rt.db.begin() as session:
                    suppressions.add(
                        session,
                        target,
                        "news",
                        Reason.unsubscribe,
                        source="test",
                        actor=f"t{n}",
                        now=clock.utcnow(),
                    )
            except Exception as exc:  # collected and asserted below
                errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with rt.db.begin(write=False) as session:
        result = audit.verify(session)
        rows = session.scalars(select(Suppression)).all()
    assert result.ok
    assert len(rows) == 6 * 3
    assert sum(e.action == "add" for e in events(rt)) == 18
