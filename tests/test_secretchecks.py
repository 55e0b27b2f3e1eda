"""Instances on one database hold the same secrets: another pepper under the same id, or a
missing signing secret, stops a process instead of letting an objector through."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from flask import Flask
from sqlalchemy import select

from suppress import create_app
from suppress.cli import main
from suppress.errors import ConfigError
from suppress.models import AuditEvent, SecretCheck
from suppress.runtime import Runtime

from .conftest import TEST_PEPPER, TOKEN_SECRET, settings

# The same id as TEST_PEPPER ("t1"), other bytes.
IMPOSTOR = "t1:" + base64.b64encode(b"another-pepper-under-the-same-id").decode()
NEW_SECRET = "a-new-token-secret-for-rotation-0123456789"


def app_with(db_url: str, tmp_path: Path, **extra: Any) -> Flask:
    app = create_app(settings(db_url, tmp_path, **extra))
    app.extensions["suppress"].verify_secrets()
    return app


@pytest.fixture
def first(db_url: str, tmp_path: Path) -> Iterator[Flask]:
    app = app_with(db_url, tmp_path)
    yield app
    app.extensions["suppress"].db.dispose()


def test_fingerprints_are_recorded_keyed_and_nothing_else(first: Flask) -> None:
    rt: Runtime = first.extensions["suppress"]
    with rt.db.begin(write=False) as session:
        rows = session.scalars(select(SecretCheck)).all()
    assert {(r.kind, r.key_id) for r in rows} == {
        ("pepper", "t1"),
        ("token", rt.secrets.signing),
    }
    pepper = next(r for r in rows if r.kind == "pepper")
    assert pepper.fingerprint == dict(rt.ring.fingerprints())["t1"]
    # Not the pepper itself, and not any address digest.
    assert base64.b64decode(TEST_PEPPER[3:]) not in pepper.fingerprint


def test_another_pepper_under_the_same_id_is_refused_at_start(
    first: Flask, db_url: str, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match="pepper t1 here is not the pepper t1"):
        create_app(settings(db_url, tmp_path / "b", peppers=IMPOSTOR))


def test_the_cli_with_another_pepper_refuses_to_check(
    first: Flask, db_url: str, tmp_path: Path
) -> None:
    env = {
        "SUPPRESS_DATABASE_URL": db_url,
        "SUPPRESS_PEPPERS": IMPOSTOR,
        "SUPPRESS_TOKEN_SECRETS": TOKEN_SECRET,
        "SUPPRESS_INSTANCE_DIR": str(tmp_path / "cli"),
        "SUPPRESS_CONFIG": None,
    }
    result = CliRunner().invoke(main, ["check", "someone@example.se", "--list", "news"], env=env)
    assert result.exit_code != 0
    assert "pepper t1 here is not the pepper t1" in result.stderr
    assert "allowed" not in result.stdout


def test_a_late_impostor_makes_readyz_fail(first: Flask, db_url: str, tmp_path: Path) -> None:
    """A process that started before the table existed learns of a conflict on its probe."""
    rt: Runtime = first.extensions["suppress"]
    with rt.db.begin() as session:
        row = session.get(SecretCheck, ("pepper", "t1"))
        assert row is not None
        session.delete(row)
        session.add(
            SecretCheck(
                kind="pepper", key_id="t1", fingerprint=b"\0" * 32, created_at=row.created_at
            )
        )
    answer = first.test_client().get("/readyz")
    assert answer.status_code == 503
    assert answer.json["error"]["code"] == "secrets_mismatch"
    # The gate itself refuses too (a proxy that never asks /readyz keeps sending checks).
    from suppress import apikeys
    from suppress.models import Role

    with rt.db.begin() as session:
        token = apikeys.create(session, "mailer", Role.mailer, actor="test")[1]
    check = first.test_client().post(
        "/v1/check",
        json={"email": "someone@example.se", "list": "news"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert check.status_code == 503
    assert check.json["error"]["code"] == "secrets_mismatch"


def test_token_secret_rotation_keeps_every_instance_able_to_honour_every_link(
    db_url: str, tmp_path: Path
) -> None:
    old_only = app_with(db_url, tmp_path / "b")  # instance B: the old secret alone
    rotated = app_with(db_url, tmp_path / "a", token_secrets=f"{NEW_SECRET},{TOKEN_SECRET}")
    try:
        # A signs with the new secret now: B can no longer honour every link.
        ready = old_only.test_client().get("/readyz")
        assert ready.status_code == 503 and ready.json["error"]["code"] == "secrets_mismatch"
        rt_a: Runtime = rotated.extensions["suppress"]
        from suppress.addresses import active_digest

        token = rt_a.signer.sign(active_digest(rt_a.ring, "reader@example.se"), "news", minted_by=1)
        clicked = old_only.test_client().post(f"/u/{token}", data={"List-Unsubscribe": "One-Click"})
        # Not a 400 that drops the opt-out: 503, so the mail client asks again.
        assert clicked.status_code == 503
        # A process started with the old secret alone is refused outright.
        with pytest.raises(ConfigError, match="has signed unsubscribe links"):
            create_app(settings(db_url, tmp_path / "c"))
        # With the new secret first and the old kept, everyone is ready.
        fixed = app_with(db_url, tmp_path / "d", token_secrets=f"{NEW_SECRET},{TOKEN_SECRET}")
        assert fixed.test_client().get("/readyz").status_code == 200
        done = fixed.test_client().post(f"/u/{token}", data={"List-Unsubscribe": "One-Click"})
        assert done.status_code == 200
        fixed.extensions["suppress"].db.dispose()
    finally:
        old_only.extensions["suppress"].db.dispose()
        rotated.extensions["suppress"].db.dispose()


def test_a_compromised_token_secret_can_be_forgotten_with_an_audit_event(
    db_url: str, tmp_path: Path
) -> None:
    app = app_with(db_url, tmp_path / "a", token_secrets=f"{NEW_SECRET},{TOKEN_SECRET}")
    rt: Runtime = app.extensions["suppress"]
    env = {
        "SUPPRESS_DATABASE_URL": db_url,
        "SUPPRESS_PEPPERS": TEST_PEPPER,
        "SUPPRESS_TOKEN_SECRETS": TOKEN_SECRET,  # the other secret dropped
        "SUPPRESS_INSTANCE_DIR": str(tmp_path / "cli"),
        "SUPPRESS_CONFIG": None,
    }
    listed = CliRunner().invoke(main, ["keys", "secrets"], env=env)
    assert listed.exit_code == 1 and "NOT HELD HERE" in listed.stdout
    new_id = rt.secrets.signing
    refused = CliRunner().invoke(main, ["check", "x@example.se", "--list", "news"], env=env)
    assert refused.exit_code != 0
    forgot = CliRunner().invoke(main, ["keys", "forget-token-secret", new_id], env=env)
    assert forgot.exit_code == 0, forgot.stderr
    assert (
        CliRunner().invoke(main, ["check", "x@example.se", "--list", "news"], env=env).exit_code
        == 0
    )
    again = CliRunner().invoke(main, ["keys", "forget-token-secret", new_id], env=env)
    assert again.exit_code != 0
    with rt.db.begin(write=False) as session:
        actions = session.scalars(select(AuditEvent.action)).all()
    assert "forget_token_secret" in actions
    rt.db.dispose()


def test_retiring_a_pepper_frees_its_id(first: Flask, db_url: str, tmp_path: Path) -> None:
    from suppress import peppers

    rt: Runtime = first.extensions["suppress"]
    newer = "t2:" + base64.b64encode(b"the-newer-pepper-for-these-tests").decode()
    app = app_with(db_url, tmp_path / "b", peppers=f"{newer},{TEST_PEPPER}")
    rt_b: Runtime = app.extensions["suppress"]
    with rt_b.db.begin() as session:
        peppers.retire(session, rt_b.ring, "t1", actor="test")
    with rt.db.begin(write=False) as session:
        assert session.get(SecretCheck, ("pepper", "t1")) is None
    rt_b.db.dispose()
