"""The /v1 API: check, add, remove; auth and roles; idempotency; the error envelope."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select

from suppress.models import AuditEvent, Suppression
from suppress.runtime import Runtime

from .conftest import bearer


def check(client: FlaskClient, token: str, email: str, list_name: str = "news") -> dict[str, Any]:
    response = client.post(
        "/v1/check", json={"email": email, "list": list_name}, headers=bearer(token)
    )
    assert response.status_code == 200, response.get_json()
    return response.get_json()  # type: ignore[no-any-return]


def add(client: FlaskClient, token: str, **body: Any) -> Any:
    return client.post("/v1/suppressions", json=body, headers=bearer(token))


def test_unknown_address_is_allowed(client: FlaskClient, tokens: dict[str, str]) -> None:
    body = check(client, tokens["mailer"], "Nobody@Example.se")
    assert body == {
        "email": "Nobody@Example.se",
        "list": "news",
        "allowed": True,
        "suppressions": [],
    }


def test_opt_out_is_effective_for_the_next_check(
    client: FlaskClient, tokens: dict[str, str]
) -> None:
    response = add(
        client,
        tokens["recorder"],
        email="Anna.Berg+x@Example.SE",
        list="news",
        reason="unsubscribe",
    )
    assert response.status_code == 201
    created = response.get_json()
    assert created["created"] is True
    assert created["suppression"]["list"] == "news"
    assert "email" not in created["suppression"]
    body = check(client, tokens["mailer"], "anna.berg@example.se")
    assert body["allowed"] is False
    assert body["suppressions"][0]["scope"] == "news"
    assert body["suppressions"][0]["kind"] == "address"
    assert body["suppressions"][0]["reason"] == "unsubscribe"
    assert body["suppressions"][0]["since"].endswith("Z")
    assert check(client, tokens["mailer"], "anna.berg@example.se", "other")["allowed"] is True


def test_adding_twice_is_idempotent(
    client: FlaskClient, tokens: dict[str, str], rt: Runtime
) -> None:
    first = add(client, tokens["recorder"], email="a@example.se", list="news", reason="unsubscribe")
    second = add(
        client, tokens["recorder"], email="A@EXAMPLE.SE", list="news", reason="unsubscribe"
    )
    assert (first.status_code, second.status_code) == (201, 200)
    assert second.get_json()["created"] is False
    with rt.db.begin(write=False) as session:
        assert session.scalar(select(func.count()).select_from(Suppression)) == 1


def test_global_suppression_applies_to_every_list(
    client: FlaskClient, tokens: dict[str, str]
) -> None:
    add(client, tokens["recorder"], email="a@example.se", list="global", reason="objection")
    for list_name in ("news", "offers", "global"):
        body = check(client, tokens["mailer"], "a@example.se", list_name)
        assert body["allowed"] is False
        assert body["suppressions"][0]["scope"] == "global"


def test_domain_suppression_matches_domain_and_subdomains(
    client: FlaskClient, tokens: dict[str, str]
) -> None:
    assert (
        add(
            client, tokens["recorder"], domain="Example.ORG", list="news", reason="manual"
        ).status_code
        == 201
    )
    assert check(client, tokens["mailer"], "x@example.org")["allowed"] is False
    hit = check(client, tokens["mailer"], "y@mail.sub.example.org")
    assert hit["allowed"] is False and hit["suppressions"][0]["kind"] == "domain"
    assert check(client, tokens["mailer"], "z@notexample.org")["allowed"] is True
    assert check(client, tokens["mailer"], "z@example.org.se")["allowed"] is True


def test_temporary_bounce_expires_and_unsubscribe_makes_it_permanent(
    client: FlaskClient, tokens: dict[str, str], rt: Runtime
) -> None:
    response = add(
        client,
        tokens["recorder"],
        email="b@example.se",
        list="news",
        reason="soft_bounce",
        expires_at="2999-01-01T00:00:00Z",
    )
    assert response.status_code == 201
    assert response.get_json()["suppression"]["expires_at"] == "2999-01-01T00:00:00Z"
    assert check(client, tokens["mailer"], "b@example.se")["allowed"] is False
    again = add(client, tokens["recorder"], email="b@example.se", list="news", reason="unsubscribe")
    assert again.status_code == 200
    assert again.get_json()["suppression"]["expires_at"] is None
    assert again.get_json()["suppression"]["reason"] == "unsubscribe"
    with rt.db.begin(write=False) as session:
        actions = session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)).all()
    assert actions[-2:] == ["add", "make_permanent"]


def test_expired_suppression_no_longer_applies(
    client: FlaskClient, tokens: dict[str, str], rt: Runtime
) -> None:
    add(
        client,
        tokens["recorder"],
        email="c@example.se",
        list="news",
        reason="soft_bounce",
        expires_at="2999-01-01T00:00:00Z",
    )
    from datetime import datetime

    with rt.db.begin() as session:
        row = session.scalars(select(Suppression)).one()
        row.expires_at = datetime(2000, 1, 1)
    assert check(client, tokens["mailer"], "c@example.se")["allowed"] is True


@pytest.mark.db_agnostic
@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (
            {
                "email": "a@example.se",
                "list": "news",
                "reason": "unsubscribe",
                "expires_at": "2999-01-01T00:00:00Z",
            },
            422,
            "invalid_request",
        ),
        (
            {
                "email": "a@example.se",
                "list": "news",
                "reason": "soft_bounce",
                "expires_at": "2000-01-01T00:00:00Z",
            },
            422,
            "invalid_request",
        ),
        (
            {
                "email": "a@example.se",
                "list": "news",
                "reason": "soft_bounce",
                "expires_at": "tomorrow",
            },
            422,
            "invalid_request",
        ),
        ({"email": "a@example.se", "list": "news", "reason": "bored"}, 422, "invalid_reason"),
        ({"email": "a@example.se", "list": "News!", "reason": "manual"}, 422, "invalid_list"),
        (
            {
                "email": "a@example.se",
                "list": "news",
                "reason": "manual",
                "source": "from b@example.se",
            },
            400,
            "invalid_request",
        ),
        (
            {"email": "a@example.se", "domain": "example.se", "list": "news", "reason": "manual"},
            400,
            "invalid_request",
        ),
        ({"list": "news", "reason": "manual"}, 400, "invalid_request"),
        ({"email": "not an address", "list": "news", "reason": "manual"}, 422, "invalid_email"),
        ({"email": 42, "list": "news", "reason": "manual"}, 400, "invalid_request"),
        ({"domain": "localhost", "list": "news", "reason": "manual"}, 400, "invalid_request"),
    ],
)
def test_add_rejects_bad_input_with_the_error_envelope(
    client: FlaskClient,
    tokens: dict[str, str],
    rt: Runtime,
    body: dict[str, Any],
    status: int,
    code: str,
) -> None:
    response = add(client, tokens["recorder"], **body)
    assert response.status_code == status
    assert response.get_json()["error"]["code"] == code
    assert response.get_json()["error"]["message"]
    with rt.db.begin(write=False) as session:
        assert session.scalar(select(func.count()).select_from(Suppression)) == 0


@pytest.mark.db_agnostic
@pytest.mark.parametrize(
    ("data", "content_type", "code"),
    [
        ("{not json", "application/json", "invalid_request"),
        ("[1, 2]", "application/json", "invalid_request"),
        ("email=a@example.se", "application/x-www-form-urlencoded", "invalid_request"),
    ],
)
def test_check_rejects_malformed_bodies(
    client: FlaskClient, tokens: dict[str, str], data: str, content_type: str, code: str
) -> None:
    response = client.post(
        "/v1/check", data=data, content_type=content_type, headers=bearer(tokens["mailer"])
    )
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == code


JSON_ROUTES = [
    ("post", "/v1/check"),
    ("post", "/v1/suppressions"),
    ("delete", "/v1/suppressions"),
    ("post", "/v1/filter"),
    ("post", "/v1/unsubscribe-links"),
    ("post", "/v1/lookup"),
]
DEEP_BODIES = {
    "arrays 100k deep": "[" * 100_000 + "]" * 100_000,
    "objects 100k deep": '{"a":' * 100_000 + "1" + "}" * 100_000,
    "33 levels in a field": '{"email": "a@example.se", "list": "news", "x": '
    + "[" * 32
    + "]" * 32
    + "}",
}


@pytest.mark.db_agnostic
@pytest.mark.parametrize(("method", "path"), JSON_ROUTES)
@pytest.mark.parametrize("body", DEEP_BODIES.values(), ids=DEEP_BODIES.keys())
def test_json_nested_too_deep_is_400_on_every_json_route(
    client: FlaskClient, tokens: dict[str, str], rt: Runtime, method: str, path: str, body: str
) -> None:
    response = getattr(client, method)(
        path, data=body, content_type="application/json", headers=bearer(tokens["admin"])
    )
    assert response.status_code == 400
    assert response.get_json()["error"] == {
        "code": "invalid_request",
        "message": "the JSON body nests deeper than 32 levels",
    }
    with rt.db.begin(write=False) as session:
        assert session.scalar(select(func.count()).select_from(Suppression)) == 0


@pytest.mark.db_agnostic
def test_json_nested_up_to_the_bound_is_read(client: FlaskClient, tokens: dict[str, str]) -> None:
    body = '{"email": "a@example.se", "list": "news", "x": ' + "[" * 31 + "]" * 31 + "}"
    response = client.post(
        "/v1/check", data=body, content_type="application/json", headers=bearer(tokens["mailer"])
    )
    assert response.status_code == 200 and response.get_json()["allowed"] is True


@pytest.mark.db_agnostic
def test_check_validates_email_and_list(client: FlaskClient, tokens: dict[str, str]) -> None:
    bad_email = client.post(
        "/v1/check", json={"email": "nope", "list": "news"}, headers=bearer(tokens["mailer"])
    )
    assert (bad_email.status_code, bad_email.get_json()["error"]["code"]) == (422, "invalid_email")
    bad_list = client.post(
        "/v1/check", json={"email": "a@example.se", "list": "-x"}, headers=bearer(tokens["mailer"])
    )
    assert (bad_list.status_code, bad_list.get_json()["error"]["code"]) == (422, "invalid_list")
    no_list = client.post(
        "/v1/check", json={"email": "a@example.se"}, headers=bearer(tokens["mailer"])
    )
    assert no_list.get_json()["error"]["code"] == "invalid_list"


@pytest.mark.db_agnostic
def test_oversized_body_is_413(client: FlaskClient, tokens: dict[str, str]) -> None:
    response = client.post(
        "/v1/check",
        data="x" * (1024 * 1024 + 1),
        content_type="application/json",
        headers=bearer(tokens["mailer"]),
    )
    assert response.status_code == 413
    assert response.get_json()["error"]["code"] == "payload_too_large"


@pytest.mark.db_agnostic
@pytest.mark.parametrize("header", [None, "Bearer", "Bearer sk_wrong", "Basic dXNlcjpwdw=="])
def test_missing_or_bad_token_is_401(client: FlaskClient, header: str | None) -> None:
    headers = {"Authorization": header} if header else {}
    response = client.post(
        "/v1/check", json={"email": "a@example.se", "list": "news"}, headers=headers
    )
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "unauthorized"


@pytest.mark.db_agnostic
def test_requests_in_one_app_context_never_share_an_authentication(
    app: Any, client: FlaskClient, tokens: dict[str, str]
) -> None:
    body = {"email": "a@example.se", "list": "news"}
    with app.app_context():  # as a test or a CLI command may hold one around requests
        good = client.post("/v1/check", json=body, headers=bearer(tokens["mailer"]))
        assert good.status_code == 200
        assert client.post("/v1/check", json=body, headers=bearer("sk_wrong")).status_code == 401
        assert client.post("/v1/check", json=body).status_code == 401


@pytest.mark.db_agnostic
@pytest.mark.parametrize(
    ("role", "method", "path", "status"),
    [
        ("mailer", "post", "/v1/suppressions", 403),
        ("mailer", "delete", "/v1/suppressions", 403),
        ("recorder", "delete", "/v1/suppressions", 403),
        ("recorder", "post", "/v1/check", 200),
        ("admin", "post", "/v1/check", 200),
    ],
)
def test_roles(
    client: FlaskClient, tokens: dict[str, str], role: str, method: str, path: str, status: int
) -> None:
    body = {"email": "a@example.se", "list": "news", "reason": "manual", "evidence": "form-1"}
    response = getattr(client, method)(path, json=body, headers=bearer(tokens[role]))
    assert response.status_code == status
    if status == 403:
        assert response.get_json()["error"]["code"] == "forbidden"


def test_revoked_key_is_rejected(client: FlaskClient, tokens: dict[str, str], rt: Runtime) -> None:
    from suppress import apikeys

    with rt.db.begin() as session:
        key = apikeys.authenticate(session, tokens["mailer"])
        apikeys.revoke(session, key.id, actor="test")
    response = client.post(
        "/v1/check",
        json={"email": "a@example.se", "list": "news"},
        headers=bearer(tokens["mailer"]),
    )
    assert response.status_code == 401


def test_remove_needs_reason_and_evidence(
    client: FlaskClient, tokens: dict[str, str], rt: Runtime
) -> None:
    add(client, tokens["recorder"], email="a@example.se", list="global", reason="objection")
    missing = client.delete(
        "/v1/suppressions",
        json={"email": "a@example.se", "list": "global", "reason": "resubscribed"},
        headers=bearer(tokens["admin"]),
    )
    assert missing.status_code == 400
    assert check(client, tokens["mailer"], "a@example.se")["allowed"] is False
    done = client.delete(
        "/v1/suppressions",
        json={
            "email": "A@example.se",
            "list": "global",
            "reason": "resubscribed",
            "evidence": "consent form 2026-0042",
        },
        headers=bearer(tokens["admin"]),
    )
    assert done.status_code == 200 and done.get_json() == {"removed": 1}
    assert check(client, tokens["mailer"], "a@example.se")["allowed"] is True
    again = client.delete(
        "/v1/suppressions",
        json={
            "email": "a@example.se",
            "list": "global",
            "reason": "resubscribed",
            "evidence": "consent form 2026-0042",
        },
        headers=bearer(tokens["admin"]),
    )
    assert again.status_code == 404 and again.get_json()["error"]["code"] == "not_found"
    with rt.db.begin(write=False) as session:
        event = session.scalars(select(AuditEvent).where(AuditEvent.action == "remove")).one()
    assert event.actor == "api:test-admin"
    assert event.detail["evidence"] == "consent form 2026-0042"


def test_idempotency_key_replays_and_rejects_a_different_body(
    client: FlaskClient, tokens: dict[str, str], rt: Runtime
) -> None:
    headers = {**bearer(tokens["recorder"]), "Idempotency-Key": "req-1"}
    body = {"email": "a@example.se", "list": "news", "reason": "unsubscribe"}
    first = client.post("/v1/suppressions", json=body, headers=headers)
    replay = client.post("/v1/suppressions", json=body, headers=headers)
    assert first.status_code == replay.status_code == 201
    assert first.get_json() == replay.get_json()
    assert replay.headers["Idempotent-Replayed"] == "true"
    other = client.post("/v1/suppressions", json={**body, "list": "offers"}, headers=headers)
    assert other.status_code == 422
    assert other.get_json()["error"]["code"] == "idempotency_key_reused"
    with rt.db.begin(write=False) as session:
        assert session.scalar(select(func.count()).select_from(Suppression)) == 1
        assert (
            session.scalar(
                select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "add")
            )
            == 1
        )


@pytest.mark.db_agnostic
def test_unknown_route_and_method_use_the_envelope(client: FlaskClient) -> None:
    missing = client.get("/v1/nothing")
    assert missing.status_code == 404 and missing.get_json()["error"]["code"] == "not_found"
    wrong = client.get("/v1/check")
    assert wrong.status_code == 405 and wrong.get_json()["error"]["code"] == "method_not_allowed"


def test_lazy_rekey_moves_rows_to_the_active_pepper(db_url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from suppress import create_app

    from .conftest import OLD_PEPPER, TEST_PEPPER, settings

    old_app = create_app(settings(db_url, tmp_path, peppers=OLD_PEPPER))
    old_rt: Runtime = old_app.extensions["suppress"]
    from suppress import apikeys
    from suppress.models import Role

    with old_rt.db.begin() as session:
        _k, token = apikeys.create(session, "rec", Role.recorder, actor="test")
    assert (
        add(
            old_app.test_client(), token, email="a@example.se", list="news", reason="unsubscribe"
        ).status_code
        == 201
    )
    assert (
        add(
            old_app.test_client(), token, domain="example.org", list="news", reason="manual"
        ).status_code
        == 201
    )
    old_rt.db.dispose()

    new_app = create_app(settings(db_url, tmp_path, peppers=f"{TEST_PEPPER},{OLD_PEPPER}"))
    new_rt: Runtime = new_app.extensions["suppress"]
    client = new_app.test_client()
    for email in ("a@example.se", "x@example.org"):
        assert check(client, token, email)["allowed"] is False
    with new_rt.db.begin(write=False) as session:
        assert set(session.scalars(select(Suppression.key_id))) == {"t1"}
        assert session.scalar(select(func.count()).select_from(Suppression)) == 2
    assert check(client, token, "a@example.se")["allowed"] is False
    assert (
        add(client, token, email="a@example.se", list="news", reason="unsubscribe").status_code
        == 200
    )
    new_rt.db.dispose()


@pytest.mark.parametrize("param", ["access_token", "token", "api_key", "key"])
def test_api_keys_are_never_accepted_in_query_strings(
    client: FlaskClient, tokens: dict[str, str], param: str
) -> None:
    response = client.post(
        f"/v1/check?{param}={tokens['admin']}", json={"email": "a@example.se", "list": "news"}
    )
    assert response.status_code == 401


def test_security_headers_on_every_response(client: FlaskClient, tokens: dict[str, str]) -> None:
    for response in (
        client.get("/healthz"),
        client.get("/v1/nothing"),
        client.post(
            "/v1/check",
            json={"email": "a@example.se", "list": "news"},
            headers=bearer(tokens["mailer"]),
        ),
    ):
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Cache-Control"] == "no-store"
        assert response.headers["Referrer-Policy"] == "no-referrer"
        assert response.headers["X-Frame-Options"] == "DENY"
