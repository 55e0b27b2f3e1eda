"""Merges keep the strongest suppression: re-keying, renewals and bounces never lift an opt-out."""

from __future__ import annotations

import base64
import os
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask import Flask
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import delete, select

from suppress import addresses, apikeys, create_app, suppressions
from suppress import clock as wall
from suppress.models import AuditEvent, IdempotencyKey, Reason, Role, Suppression

from .conftest import OLD_PEPPER, TEST_PEPPER, bearer
from .conftest import settings as app_settings
from .test_invariants import MAILBOXES

# One mailbox in three spellings, two lists: every step meets the ones before it, so merges
# (the interesting cases) are the rule. tests/test_invariants.py keeps mailboxes apart.
SPELLINGS = [("anna", spelling) for spelling in MAILBOXES["anna"]]

START = datetime(2026, 3, 1, 12, 0)
ONE_CLICK = {"List-Unsubscribe": "One-Click"}
PEPPERS = [
    OLD_PEPPER,
    TEST_PEPPER,
    "t2:" + base64.b64encode(b"a-third-pepper-for-merge-tests-0").decode(),
]
BOUNCES = {Reason.hard_bounce.value, Reason.soft_bounce.value}


class Clock:
    """The time every edge reads (clock.utcnow), moved by the test."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    moving = Clock()
    monkeypatch.setattr(wall, "utcnow", moving)
    return moving


def build(db_url: str, tmp_path: Path, peppers: list[str]) -> Flask:
    # Active pepper first, as SUPPRESS_PEPPERS lists them.
    return create_app(app_settings(db_url, tmp_path, peppers=",".join(reversed(peppers))))


def iso(moment: datetime) -> str:
    return moment.isoformat() + "Z"


def test_rekeying_an_old_link_beside_a_bounce_keeps_the_opt_out(
    db_url: str, tmp_path: Path, clock: Clock
) -> None:
    old = build(db_url, tmp_path, PEPPERS[:1])
    with old.extensions["suppress"].db.begin() as session:
        _key, token = apikeys.create(session, "merge", Role.admin, actor="test")
    headers = bearer(token)
    email = "merge.person@example.se"
    link = old.test_client().post(
        "/v1/unsubscribe-links", json={"list": "news", "emails": [email]}, headers=headers
    )
    url = urlsplit(link.get_json()["links"][0]["url"]).path
    old.extensions["suppress"].db.dispose()

    new = build(db_url, tmp_path, PEPPERS[:2])
    client = new.test_client()
    # A temporary bounce is recorded under the new pepper; then the recipient presses the
    # link minted before the rotation: a permanent opt-out, recorded under the old pepper.
    bounce = client.post(
        "/v1/suppressions",
        json={
            "email": email,
            "list": "news",
            "reason": "soft_bounce",
            "expires_at": iso(clock.now + timedelta(days=3)),
        },
        headers=headers,
    )
    assert bounce.status_code == 201
    assert client.post(url, data=ONE_CLICK).status_code == 200
    # A check re-keys the old row into the bounce's: the merge must keep the opt-out.
    verdict = client.post("/v1/check", json={"email": email, "list": "news"}, headers=headers)
    assert verdict.get_json()["allowed"] is False
    rt = new.extensions["suppress"]
    with rt.db.begin(write=False) as session:
        rows = session.scalars(select(Suppression)).all()
        assert [(r.key_id, r.reason, r.expires_at) for r in rows] == [
            ("t1", Reason.unsubscribe, None)
        ]
        rekey = session.scalars(select(AuditEvent).where(AuditEvent.action == "rekey")).one()
        merged = rekey.detail["merged"]
        assert merged["kept"]["reason"] == "soft_bounce"
        assert merged["rekeyed"]["reason"] == "unsubscribe"
        # The opt-out's terms, but the bounce's sender keeps its claim: the recipient alone
        # cannot lift the merged row from the page.
        assert merged["result"] == {
            "reason": "unsubscribe",
            "source": "api",
            "expires_at": None,
        }
    clock.now += timedelta(days=10)
    with rt.db.begin() as session:
        assert suppressions.expire(session, now=clock.now).removed == 0
    verdict = client.post("/v1/check", json={"email": email, "list": "news"}, headers=headers)
    assert verdict.get_json()["allowed"] is False
    rt.db.dispose()


@pytest.mark.parametrize(
    ("first", "second", "kept"),
    [
        (("soft_bounce", 3), ("unsubscribe", None), ("unsubscribe", None)),
        (("unsubscribe", None), ("soft_bounce", 3), ("unsubscribe", None)),
        (("soft_bounce", 3), ("soft_bounce", 9), ("soft_bounce", 9)),
        (("soft_bounce", 9), ("hard_bounce", 3), ("soft_bounce", 9)),
        (("hard_bounce", None), ("complaint", None), ("complaint", None)),
        (("complaint", None), ("hard_bounce", None), ("complaint", None)),
        (("hard_bounce", 5), ("hard_bounce", None), ("hard_bounce", None)),
    ],
)
def test_a_second_add_keeps_the_stronger_terms(
    db_url: str,
    tmp_path: Path,
    clock: Clock,
    first: tuple[str, int | None],
    second: tuple[str, int | None],
    kept: tuple[str, int | None],
) -> None:
    app = build(db_url, tmp_path, PEPPERS[:2])
    rt = app.extensions["suppress"]
    target = addresses.address_target(rt.ring, "terms@example.se")

    def expiry(days: int | None) -> datetime | None:
        return None if days is None else clock.now + timedelta(days=days)

    with rt.db.begin() as session:
        for reason, days in (first, second):
            suppressions.add(
                session,
                target,
                "news",
                Reason(reason),
                source="api",
                actor="test",
                now=clock.now,
                expires_at=expiry(days),
            )
    with rt.db.begin(write=False) as session:
        row = session.scalars(select(Suppression)).one()
        assert (row.reason.value, row.expires_at) == (kept[0], expiry(kept[1]))
    rt.db.dispose()


@pytest.mark.slow
def test_gate_state_machine_never_lets_an_opt_out_through(
    db_url: str, tmp_path: Path, clock: Clock
) -> None:
    first = build(db_url, tmp_path, PEPPERS[:1])
    with first.extensions["suppress"].db.begin() as session:
        _key, token = apikeys.create(session, "machine", Role.admin, actor="test")
    first.extensions["suppress"].db.dispose()
    headers = bearer(token)

    class Gate(RuleBasedStateMachine):
        """Every way in and out of the list, under rotating peppers and a moving clock."""

        def __init__(self) -> None:
            super().__init__()
            self.peppers = PEPPERS[:1]
            self.app = build(db_url, tmp_path, self.peppers)
            with self.rt.db.begin() as session:
                session.execute(delete(Suppression))
                session.execute(delete(IdempotencyKey))
            self.client = self.app.test_client()
            clock.now = START
            # (mailbox, list) -> None (permanent) or the expiry of a temporary suppression.
            self.model: dict[tuple[str, str], datetime | None] = {}
            self.links: list[tuple[str, str, str]] = []

        @property
        def rt(self) -> Any:
            return self.app.extensions["suppress"]

        def teardown(self) -> None:
            self.rt.db.dispose()

        def call(self, method: str, path: str, **kwargs: Any) -> Any:
            response = getattr(self.client, method)(path, headers=headers, **kwargs)
            assert response.status_code < 500, response.get_data(as_text=True)
            return response

        def merge(self, key: tuple[str, str], expires: datetime | None) -> None:
            if key not in self.model:
                self.model[key] = expires
                return
            held = self.model[key]
            if held is None or expires is None:
                self.model[key] = None
            elif held <= clock.now:
                self.model[key] = expires  # an expired row is renewed
            else:
                self.model[key] = max(held, expires)

        def suppressed(self, box: str, list_name: str) -> bool:
            for key in ((box, list_name), (box, "global")):
                if key in self.model:
                    expires = self.model[key]
                    if expires is None or expires > clock.now:
                        return True
            return False

        @initialize()
        def mint_first_links(self) -> None:
            # Links minted under the first pepper stay in people's mailboxes across rotations.
            for who in SPELLINGS:
                self.mint(who, "news")
            self.rotate_pepper()

        @rule(
            who=st.sampled_from(SPELLINGS),
            list_name=st.sampled_from(["news", "global"]),
            # Bounces (the only temporary kind) drawn as often as every other reason together.
            reason=st.one_of(
                st.sampled_from(sorted(BOUNCES)), st.sampled_from([r.value for r in Reason])
            ),
            days=st.sampled_from([None, 2, 10]),
        )
        def add(self, who: tuple[str, str], list_name: str, reason: str, days: int | None) -> None:
            if reason not in BOUNCES:
                days = None
            body: dict[str, Any] = {"email": who[1], "list": list_name, "reason": reason}
            expires = None if days is None else clock.now + timedelta(days=days)
            if expires is not None:
                body["expires_at"] = iso(expires)
            response = self.call("post", "/v1/suppressions", json=body)
            assert response.status_code in (200, 201)
            self.merge((who[0], list_name), expires)

        @rule(who=st.sampled_from(SPELLINGS), list_name=st.sampled_from(["news"]))
        def mint(self, who: tuple[str, str], list_name: str) -> None:
            response = self.call(
                "post", "/v1/unsubscribe-links", json={"list": list_name, "emails": [who[1]]}
            )
            url = urlsplit(response.get_json()["links"][0]["url"]).path
            self.links.append((who[0], list_name, url))

        @precondition(lambda self: bool(self.links))
        @rule(pick=st.integers(min_value=0), scope=st.sampled_from(["one_click", "list", "global"]))
        def press_link(self, pick: int, scope: str) -> None:
            box, list_name, url = self.links[pick % len(self.links)]
            form = ONE_CLICK if scope == "one_click" else {"scope": scope}
            assert self.client.post(url, data=form).status_code == 200
            self.merge((box, "global" if scope == "global" else list_name), None)

        @rule(who=st.sampled_from(SPELLINGS), list_name=st.sampled_from(["news", "global"]))
        def import_one(self, who: tuple[str, str], list_name: str) -> None:
            response = self.call(
                "post",
                f"/v1/imports?list={list_name}&reason=unsubscribe",
                data=f"{who[1]}\n".encode(),
                content_type="text/plain",
            )
            assert response.status_code == 200
            self.merge((who[0], list_name), None)

        @rule(who=st.sampled_from(SPELLINGS), list_name=st.sampled_from(["news", "global"]))
        def remove_with_evidence(self, who: tuple[str, str], list_name: str) -> None:
            body = {
                "email": who[1],
                "list": list_name,
                "reason": "resubscribed",
                "evidence": "consent form 2026-77",
            }
            response = self.call("delete", "/v1/suppressions", json=body)
            assert response.status_code == (200 if (who[0], list_name) in self.model else 404)
            self.model.pop((who[0], list_name), None)

        @rule(hours=st.sampled_from([1, 24 * 3, 24 * 12]))
        def time_passes(self, hours: int) -> None:
            clock.now += timedelta(hours=hours)

        @rule()
        def expire_job(self) -> None:
            with self.rt.db.begin() as session:
                suppressions.expire(session, now=clock.now)
            for key, expires in list(self.model.items()):
                if expires is not None and expires <= clock.now:
                    del self.model[key]

        @precondition(lambda self: len(self.peppers) < len(PEPPERS))
        @rule()
        def rotate_pepper(self) -> None:
            self.peppers = PEPPERS[: len(self.peppers) + 1]
            self.restart()

        @rule()
        def restart(self) -> None:
            self.rt.db.dispose()
            self.app = build(db_url, tmp_path, self.peppers)
            self.client = self.app.test_client()

        @rule(who=st.sampled_from(SPELLINGS), list_name=st.sampled_from(["news", "offers"]))
        def check(self, who: tuple[str, str], list_name: str) -> None:
            verdict = self.call(
                "post", "/v1/check", json={"email": who[1], "list": list_name}
            ).get_json()
            assert verdict["allowed"] is (not self.suppressed(who[0], list_name))

        @rule(list_name=st.sampled_from(["news", "offers"]), streamed=st.booleans())
        def filter_all(self, list_name: str, streamed: bool) -> None:
            emails = [spelling for _box, spelling in SPELLINGS]
            if streamed:
                response = self.call(
                    "post",
                    f"/v1/filter?list={list_name}",
                    data="\n".join(emails).encode(),
                    content_type="text/plain",
                )
                allowed = set(response.get_data(as_text=True).splitlines()[:-1])
            else:
                response = self.call(
                    "post", "/v1/filter", json={"list": list_name, "emails": emails}
                )
                allowed = set(response.get_json()["allowed"])
            for box, spelling in SPELLINGS:
                assert (spelling in allowed) is (not self.suppressed(box, list_name)), spelling

        @invariant()
        def no_permanent_opt_out_is_allowed(self) -> None:
            for (box, list_name), expires in self.model.items():
                if expires is not None:
                    continue
                for target in ["news", "offers"] if list_name == "global" else [list_name]:
                    verdict = self.call(
                        "post", "/v1/check", json={"email": MAILBOXES[box][0], "list": target}
                    ).get_json()
                    assert verdict["allowed"] is False, (box, target)

    run_state_machine_as_test(
        Gate,
        settings=settings(
            max_examples=int(os.environ.get("SUPPRESS_MERGE_EXAMPLES", "40")),
            stateful_step_count=30,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        ),
    )
