"""The audit trail: every change is a chained event in the same transaction, linear under load."""

from __future__ import annotations

import threading

from flask.testing import FlaskClient
from sqlalchemy import select

from suppress import addresses, audit, suppressions
from suppress.errors import SuppressError
from suppress.models import AuditEvent, Reason, Suppression
from suppress.runtime import Runtime

from .conftest import bearer


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
                now=audit.utcnow(),
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
    with rt.db.begin() as session:
        middle = session.scalars(select(AuditEvent).order_by(AuditEvent.id).offset(1)).first()
        assert middle is not None
        middle_id = middle.id
        middle.detail = {"i": 99}
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
                        now=audit.utcnow(),
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
