"""Pepper rotation across two peppers: status, lazy re-keying, retirement and readiness."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from flask import Flask
from sqlalchemy import func, select

from suppress import addresses, audit, cli, create_app, peppers, suppressions
from suppress.errors import PepperMissing, Unprocessable
from suppress.models import AuditEvent, Reason, Suppression
from suppress.runtime import Runtime

from .conftest import OLD_PEPPER, TEST_PEPPER, bearer, settings

NOW = datetime(2026, 6, 1)
PEOPLE = ("a@example.se", "b@example.se", "c@example.se")
THIRD_PEPPER = "t2:" + base64.b64encode(b"a-third-pepper-for-tests-0000000").decode()


class Instance:
    """An app and its runtime with a given pepper configuration, on the shared database."""

    def __init__(self, db_url: str, tmp_path: Path, peppers: str):
        self.app: Flask = create_app(settings(db_url, tmp_path, peppers=peppers))
        self.rt: Runtime = self.app.extensions["suppress"]

    def cli(self, monkeypatch: pytest.MonkeyPatch, *args: str) -> Result:
        monkeypatch.setattr(cli, "runtime", lambda: self.rt)
        return CliRunner().invoke(cli.main, list(args))

    def check(self, email: str, list_name: str = "news") -> bool:
        """Whether the gate allows email, re-keying a hit the way /v1/check does."""
        target = addresses.address_target(self.rt.ring, email)
        with self.rt.db.begin(write=False) as session:
            verdict = suppressions.check(session, target, list_name, now=NOW)
        if verdict.stale:
            with self.rt.db.begin() as session:
                suppressions.rekey(session, verdict.stale, self.rt.ring.active_id, actor="test")
        return verdict.allowed

    def status(self) -> list[tuple[str, int, bool, bool]]:
        with self.rt.db.begin(write=False) as session:
            return [
                (k.key_id, k.rows, k.configured, k.active)
                for k in peppers.status(session, self.rt.ring)
            ]


@pytest.fixture
def instances(db_url: str, tmp_path: Path) -> Iterator[Any]:
    """Build instances on one database."""
    made: list[Instance] = []

    def make(pepper_list: str) -> Instance:
        instance = Instance(db_url, tmp_path, pepper_list)
        made.append(instance)
        return instance

    yield make
    for instance in made:
        instance.rt.db.dispose()


def suppress_people(instance: Instance, list_name: str = "news") -> None:
    with instance.rt.db.begin() as session:
        for email in PEOPLE:
            suppressions.add(
                session,
                addresses.address_target(instance.rt.ring, email),
                list_name,
                Reason.unsubscribe,
                source="test",
                actor="test",
                now=NOW,
            )


def test_new_pepper_writes_old_rows_keep_matching_and_move_when_seen(
    instances: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = instances(OLD_PEPPER)
    suppress_people(old)
    rotated = instances(f"{TEST_PEPPER},{OLD_PEPPER}")
    assert rotated.status() == [("t1", 0, True, True), ("t0", 3, True, False)]
    shown = rotated.cli(monkeypatch, "keys", "pepper-status")
    assert shown.exit_code == 0, shown.output
    assert shown.stdout.splitlines()[0].startswith("t1\t0\tactive")
    assert shown.stdout.splitlines()[1].startswith("t0\t3\tread only")

    with rotated.rt.db.begin() as session:  # a new opt-out is written under the new pepper
        suppressions.add(
            session,
            addresses.address_target(rotated.rt.ring, "new@example.se"),
            "news",
            Reason.unsubscribe,
            source="test",
            actor="test",
            now=NOW,
        )
    assert rotated.check("A@example.se") is False  # an old row still matches ...
    assert rotated.status() == [("t1", 2, True, True), ("t0", 2, True, False)]  # ... and moved
    with rotated.rt.db.begin(write=False) as session:
        rekeys = session.scalars(select(AuditEvent).where(AuditEvent.action == "rekey")).all()
    assert [e.detail for e in rekeys] == [{"from_key": "t0", "to_key": "t1"}]
    assert rotated.check("new@example.se") is False
    assert rotated.check("someone.else@example.se") is True


def test_retiring_a_pepper_is_refused_while_rows_remain(
    instances: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    suppress_people(instances(OLD_PEPPER))
    rotated = instances(f"{TEST_PEPPER},{OLD_PEPPER}")
    refused = rotated.cli(monkeypatch, "keys", "retire-pepper", "t0")
    assert refused.exit_code != 0
    assert "3 suppression(s) are still keyed with pepper t0" in refused.stderr
    assert "[pepper_in_use]" in refused.stderr
    active = rotated.cli(monkeypatch, "keys", "retire-pepper", "t1")
    assert active.exit_code != 0 and "is the active one" in active.stderr

    for email in PEOPLE[:2]:
        assert rotated.check(email) is False
    with rotated.rt.db.begin() as session, pytest.raises(Unprocessable, match="1 suppression"):
        peppers.retire(session, rotated.rt.ring, "t0", actor="test")
    assert rotated.check(PEOPLE[2]) is False

    done = rotated.cli(monkeypatch, "keys", "retire-pepper", "t0")
    assert done.exit_code == 0, done.output
    assert "remove it from SUPPRESS_PEPPERS" in done.stdout
    with rotated.rt.db.begin(write=False) as session:
        (event,) = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "retire_pepper")
        ).all()
        assert event.detail == {"key_id": "t0"}
        assert audit.verify(session).ok

    retired = instances(TEST_PEPPER)  # the operator now drops t0 from the configuration
    assert retired.status() == [("t1", 3, True, True)]
    assert all(retired.check(email) is False for email in PEOPLE)
    with retired.app.test_client() as client:
        assert client.get("/readyz").status_code == 200


def test_rows_under_an_unconfigured_pepper_fail_readiness(
    instances: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    suppress_people(instances(OLD_PEPPER))
    dropped = instances(TEST_PEPPER)  # t0 removed without retiring it first
    # Those rows can never match: rather than answer "allowed", the gate refuses to answer.
    with pytest.raises(PepperMissing):
        dropped.check(PEOPLE[0])
    with dropped.app.test_client() as client:
        ready = client.get("/readyz")
    assert ready.status_code == 503
    error = ready.get_json()["error"]
    assert error["code"] == "pepper_missing" and "t0" in error["message"]
    shown = dropped.cli(monkeypatch, "keys", "pepper-status")
    assert shown.exit_code == 1
    assert "t0\t3\tNOT CONFIGURED" in shown.stdout
    assert "pepper(s) t0 that are not configured" in shown.stderr
    refused = dropped.cli(monkeypatch, "keys", "retire-pepper", "t0")
    assert refused.exit_code != 0 and "NOT configured (restore it now)" in refused.stderr

    restored = instances(f"{TEST_PEPPER},{OLD_PEPPER}")
    with restored.app.test_client() as client:
        assert client.get("/readyz").status_code == 200
    assert restored.check(PEOPLE[0]) is False


def test_serve_warns_at_start_up_about_unconfigured_peppers(
    instances: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    suppress_people(instances(OLD_PEPPER))
    dropped = instances(TEST_PEPPER)
    monkeypatch.setattr(cli, "runtime", lambda: dropped.rt)
    cli.warn_unconfigured_peppers()
    assert "pepper(s) t0 that are not configured" in capsys.readouterr().err
    restored = instances(f"{TEST_PEPPER},{OLD_PEPPER}")
    monkeypatch.setattr(cli, "runtime", lambda: restored.rt)
    cli.warn_unconfigured_peppers()
    assert capsys.readouterr().err == ""


def test_key_ids_in_use_finds_every_id_by_index_walk(instances: Any) -> None:
    first = instances(OLD_PEPPER)
    with first.rt.db.begin(write=False) as session:
        assert peppers.key_ids_in_use(session) == []
    suppress_people(first)
    suppress_people(instances(TEST_PEPPER), "offers")
    third = instances(f"{THIRD_PEPPER},{TEST_PEPPER}")
    suppress_people(third, "other")
    with third.rt.db.begin(write=False) as session:
        assert peppers.key_ids_in_use(session) == ["t0", "t1", "t2"]
        assert peppers.unconfigured(session, third.rt.ring) == ["t0"]
        assert session.scalar(select(func.count()).select_from(Suppression)) == 9


def test_lookup_and_api_find_rows_and_events_under_both_peppers(instances: Any) -> None:
    suppress_people(instances(OLD_PEPPER))
    rotated = instances(f"{TEST_PEPPER},{OLD_PEPPER}")
    from suppress import apikeys
    from suppress.models import Role

    with rotated.rt.db.begin() as session:
        _key, token = apikeys.create(session, "dpo", Role.admin, actor="test")
    client = rotated.app.test_client()
    verdict = client.post(
        "/v1/check", json={"email": "a@example.se", "list": "news"}, headers=bearer(token)
    )
    assert verdict.get_json()["allowed"] is False  # and the row moved to t1
    body = client.post("/v1/lookup", json={"email": "a@example.se"}, headers=bearer(token))
    found = body.get_json()
    assert [(d["kind"], d["key_id"]) for d in found["digests"]][:2] == [
        ("address", "t1"),
        ("address", "t0"),
    ]
    assert [r["key_id"] for r in found["suppressions"]] == ["t1"]
    assert [(e["action"], e["key_id"]) for e in found["events"]] == [
        ("add", "t0"),
        ("rekey", "t1"),
    ]


def test_no_gate_answer_while_rows_sit_under_an_unconfigured_pepper(
    instances: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    suppress_people(instances(OLD_PEPPER))
    dropped = instances(TEST_PEPPER)
    from suppress import apikeys
    from suppress.models import Role

    with dropped.rt.db.begin() as session:
        _key, token = apikeys.create(session, "gate", Role.mailer, actor="test")
    headers = bearer(token)
    unknown = "someone.else@example.se"  # not even suppressed: still no answer
    with dropped.app.test_client() as client:
        for email in (PEOPLE[0], unknown):
            one = client.post("/v1/check", json={"email": email, "list": "news"}, headers=headers)
            assert one.status_code == 503, one.get_json()
            assert one.get_json()["error"]["code"] == "pepper_missing"
        many = client.post(
            "/v1/filter", json={"list": "news", "emails": [PEOPLE[0], unknown]}, headers=headers
        )
        assert many.status_code == 503 and many.get_json()["error"]["code"] == "pepper_missing"
        streamed = client.post(
            "/v1/filter?list=news",
            data=f"{PEOPLE[0]}\n{unknown}\n",
            headers={**headers, "Content-Type": "text/plain"},
        )
        assert streamed.status_code == 503
        assert unknown.encode() not in streamed.data and b"# checked" not in streamed.data
    checked = dropped.cli(monkeypatch, "check", unknown, "--list", "news")
    assert checked.exit_code == 2 and "pepper_missing" in checked.stderr
    source = tmp_path / "recipients.txt"
    source.write_text(f"{unknown}\n{PEOPLE[1]}\n")
    filtered = dropped.cli(monkeypatch, "filter", "--list", "news", str(source))
    assert filtered.exit_code == 2 and filtered.stdout == ""
    assert "pepper_missing" in filtered.stderr


def test_a_row_written_under_another_instances_pepper_stops_the_next_check(
    instances: Any,
) -> None:
    # Two instances on one database with different pepper lists: the one that lacks the
    # other's pepper must stop answering as soon as a row appears under it.
    mine = instances(TEST_PEPPER)
    theirs = instances(f"{THIRD_PEPPER},{TEST_PEPPER}")
    assert mine.check(PEOPLE[0]) is True
    with theirs.rt.db.begin() as session:
        suppressions.add(
            session,
            addresses.address_target(theirs.rt.ring, PEOPLE[0]),
            "news",
            Reason.unsubscribe,
            source="api",
            actor="test",
            now=NOW,
        )
    assert theirs.check(PEOPLE[0]) is False
    with pytest.raises(PepperMissing):
        mine.check(PEOPLE[0])
    with pytest.raises(PepperMissing):
        mine.check(PEOPLE[1])


def test_lookup_and_removal_refuse_while_a_pepper_is_missing(
    instances: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    suppress_people(instances(OLD_PEPPER))
    dropped = instances(TEST_PEPPER)
    from suppress import apikeys
    from suppress.models import Role

    with dropped.rt.db.begin() as session:
        _key, token = apikeys.create(session, "dpo", Role.admin, actor="test")
    with dropped.app.test_client() as client:
        # "Nothing kept" or "none found" would be untrue: the rows are there, unmatchable.
        found = client.post("/v1/lookup", json={"email": PEOPLE[0]}, headers=bearer(token))
        assert found.status_code == 503 and found.get_json()["error"]["code"] == "pepper_missing"
        removed = client.delete(
            "/v1/suppressions",
            json={"email": PEOPLE[0], "list": "news", "reason": "resubscribed", "evidence": "f1"},
            headers=bearer(token),
        )
        assert removed.status_code == 503
    shown = dropped.cli(monkeypatch, "lookup", PEOPLE[0])
    assert shown.exit_code == 2 and "pepper_missing" in shown.stderr
