"""State machine over add, remove, check, filter, import, restart: once suppressed, suppressed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from suppress import apikeys, create_app
from suppress.models import Role

from .conftest import bearer
from .conftest import settings as app_settings

# Spellings of three mailboxes: every spelling of one mailbox must behave as one.
MAILBOXES = {
    "anna": ["anna@example.se", "Anna+news@Example.SE", " ANNA@example.se "],
    "per": ["per.son@gmail.com", "Per.Son+x@googlemail.com", "p.e.r.s.o.n@gmail.com"],
    "asa": ["åsa@företag.se", "ÅSA+tag@FÖRETAG.se"],
}
SPELLINGS = [(box, spelling) for box, spellings in MAILBOXES.items() for spelling in spellings]
LISTS = ["news", "offers", "global"]


def build(db_url: str, tmp_path: Path) -> Flask:
    return create_app(app_settings(db_url, tmp_path))


@pytest.mark.slow
def test_once_suppressed_suppressed_until_removed_with_evidence(
    db_url: str, tmp_path: Path
) -> None:
    app = build(db_url, tmp_path)
    with app.extensions["suppress"].db.begin() as session:
        _key, token = apikeys.create(session, "machine", Role.admin, actor="test")
    app.extensions["suppress"].db.dispose()
    headers = bearer(token)

    class Gate(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.app = build(db_url, tmp_path)
            self.client = self.app.test_client()
            with self.app.extensions["suppress"].db.begin() as session:
                from sqlalchemy import delete

                from suppress.models import Suppression

                session.execute(delete(Suppression))
            self.model: set[tuple[str, str]] = set()

        def teardown(self) -> None:
            self.app.extensions["suppress"].db.dispose()

        def call(self, method: str, path: str, body: dict[str, Any]) -> Any:
            response = getattr(self.client, method)(path, json=body, headers=headers)
            assert response.status_code < 500, response.get_data(as_text=True)
            return response

        @rule(
            who=st.sampled_from(SPELLINGS),
            list_name=st.sampled_from(LISTS),
            reason=st.sampled_from(["unsubscribe", "objection", "complaint"]),
        )
        def add(self, who: tuple[str, str], list_name: str, reason: str) -> None:
            response = self.call(
                "post", "/v1/suppressions", {"email": who[1], "list": list_name, "reason": reason}
            )
            assert response.status_code in (200, 201)
            assert (response.status_code == 201) == ((who[0], list_name) not in self.model)
            self.model.add((who[0], list_name))

        @rule(who=st.sampled_from(SPELLINGS), list_name=st.sampled_from(LISTS))
        def remove_without_evidence(self, who: tuple[str, str], list_name: str) -> None:
            response = self.call(
                "delete",
                "/v1/suppressions",
                {"email": who[1], "list": list_name, "reason": "resubscribed"},
            )
            assert response.status_code == 400

        @rule(who=st.sampled_from(SPELLINGS), list_name=st.sampled_from(LISTS))
        def remove_with_evidence(self, who: tuple[str, str], list_name: str) -> None:
            response = self.call(
                "delete",
                "/v1/suppressions",
                {
                    "email": who[1],
                    "list": list_name,
                    "reason": "resubscribed",
                    "evidence": "consent form 2026-77",
                },
            )
            expected = 200 if (who[0], list_name) in self.model else 404
            assert response.status_code == expected
            self.model.discard((who[0], list_name))

        @rule(who=st.sampled_from(SPELLINGS), list_name=st.sampled_from(LISTS))
        def import_one(self, who: tuple[str, str], list_name: str) -> None:
            response = self.client.post(
                f"/v1/imports?list={list_name}&reason=unsubscribe",
                headers=headers,
                data=f"{who[1]}\nnot-an-address\n".encode(),
                content_type="text/plain",
            )
            assert response.status_code == 200
            counts = response.get_json()
            assert (counts["added"], counts["invalid"]) == (
                (0 if (who[0], list_name) in self.model else 1),
                1,
            )
            self.model.add((who[0], list_name))

        @rule(list_name=st.sampled_from(["news", "offers"]))
        def filter_all(self, list_name: str) -> None:
            emails = [spelling for _box, spelling in SPELLINGS]
            response = self.call("post", "/v1/filter", {"list": list_name, "emails": emails})
            allowed = set(response.get_json()["allowed"])
            for box, spelling in SPELLINGS:
                suppressed = (box, list_name) in self.model or (box, "global") in self.model
                assert (spelling in allowed) is (not suppressed)

        @rule()
        def restart(self) -> None:
            self.app.extensions["suppress"].db.dispose()
            self.app = build(db_url, tmp_path)
            self.client = self.app.test_client()

        @rule(who=st.sampled_from(SPELLINGS), list_name=st.sampled_from(["news", "offers"]))
        def check(self, who: tuple[str, str], list_name: str) -> None:
            verdict = self.call(
                "post", "/v1/check", {"email": who[1], "list": list_name}
            ).get_json()
            suppressed = (who[0], list_name) in self.model or (who[0], "global") in self.model
            assert verdict["allowed"] is (not suppressed)

        @invariant()
        def every_suppressed_mailbox_is_suppressed(self) -> None:
            for box, list_name in self.model:
                lists = ["news", "offers"] if list_name == "global" else [list_name]
                for target in lists:
                    verdict = self.call(
                        "post", "/v1/check", {"email": MAILBOXES[box][0], "list": target}
                    ).get_json()
                    assert verdict["allowed"] is False

    run_state_machine_as_test(
        Gate,
        settings=settings(
            max_examples=15,
            stateful_step_count=20,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        ),
    )
