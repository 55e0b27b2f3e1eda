"""POST /v1/unsubscribe-links: links and RFC 8058 headers for a mailing batch."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from suppress import apikeys, audit, create_app, suppressions
from suppress.addresses import active_digest
from suppress.errors import ConfigError, Unavailable
from suppress.models import ApiKey, AuditEvent, Role
from suppress.runtime import Runtime

from .conftest import bearer, resolve, settings

BASE = "https://suppress.example.com"  # conftest's base_url


def request_links(client: FlaskClient, token: str, body: object) -> tuple[int, dict]:  # type: ignore[type-arg]
    response = client.post("/v1/unsubscribe-links", json=body, headers=bearer(token))
    return response.status_code, response.get_json()


def test_links_and_headers_for_a_batch(
    client: FlaskClient, rt: Runtime, tokens: dict[str, str]
) -> None:
    emails = ["Anna.Berg+x@Example.se", "olle@example.org", "Anna.Berg@example.se"]
    status, body = request_links(client, tokens["mailer"], {"list": "news", "emails": emails})
    assert status == 200
    assert body["invalid"] == []
    assert [entry["email"] for entry in body["links"]] == emails
    for entry in body["links"]:
        assert set(entry) == {"email", "url", "headers"}
        assert entry["url"].startswith(BASE + "/u/")
        assert entry["headers"] == {
            "List-Unsubscribe": f"<{entry['url']}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        }
        token = entry["url"].removeprefix(BASE + "/u/")
        claim = rt.signer.verify(token)
        assert claim.list == "news"
        assert claim.digest == active_digest(rt.ring, entry["email"])
        assert "example" not in entry["url"].removeprefix(BASE)
    # One mailbox, one link: spelling variants normalize to the same token.
    assert body["links"][0]["url"] == body["links"][2]["url"]
    assert body["links"][0]["url"] != body["links"][1]["url"]


@pytest.mark.db_agnostic
def test_invalid_addresses_are_listed_apart(client: FlaskClient, tokens: dict[str, str]) -> None:
    emails = ["ok@example.se", "Name <a@example.se>", "nobody@localhost", ""]
    status, body = request_links(client, tokens["mailer"], {"list": "news", "emails": emails})
    assert status == 200
    assert [entry["email"] for entry in body["links"]] == ["ok@example.se"]
    assert body["invalid"] == [
        {"email": e, "code": "invalid_email"}
        for e in ("Name <a@example.se>", "nobody@localhost", "")
    ]


def test_a_link_leads_to_an_opt_out_the_next_check_sees(
    client: FlaskClient, tokens: dict[str, str]
) -> None:
    _status, body = request_links(
        client, tokens["mailer"], {"list": "news", "emails": ["e2e@example.se"]}
    )
    path = body["links"][0]["url"].removeprefix(BASE)
    assert client.post(path, data={"List-Unsubscribe": "One-Click"}).status_code == 200
    check = client.post(
        "/v1/check",
        json={"email": "e2e@example.se", "list": "news"},
        headers=bearer(tokens["mailer"]),
    )
    assert check.get_json()["allowed"] is False


@pytest.mark.db_agnostic
@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"emails": ["a@example.se"]}, 422, "invalid_list"),
        ({"list": "Bad List", "emails": ["a@example.se"]}, 422, "invalid_list"),
        ({"list": "news"}, 400, "invalid_request"),
        ({"list": "news", "emails": "a@example.se"}, 400, "invalid_request"),
        ({"list": "news", "emails": [1, 2]}, 400, "invalid_request"),
        (["a@example.se"], 400, "invalid_request"),
    ],
)
def test_bad_requests_use_the_error_envelope(
    client: FlaskClient, tokens: dict[str, str], body: object, status: int, code: str
) -> None:
    got_status, got = request_links(client, tokens["mailer"], body)
    assert (got_status, got["error"]["code"]) == (status, code)


@pytest.mark.db_agnostic
def test_mailer_role_is_enough_and_a_key_is_required(
    client: FlaskClient, tokens: dict[str, str]
) -> None:
    body = {"list": "news", "emails": ["a@example.se"]}
    for role in ("mailer", "recorder", "admin"):
        assert request_links(client, tokens[role], body)[0] == 200
    anonymous = client.post("/v1/unsubscribe-links", json=body)
    assert anonymous.status_code == 401


@pytest.mark.db_agnostic
def test_ten_thousand_long_addresses_fit_and_one_more_is_413(
    client: FlaskClient, tokens: dict[str, str]
) -> None:
    # Long but valid: 64-character local parts make this body bigger than the 1 MiB
    # default JSON cap, which this route raises to fit its own limit.
    emails = [f"{i:064d}@{'d' * 40}.example.com" for i in range(10_000)]
    raw = json.dumps({"list": "news", "emails": emails})
    assert len(raw) > 1024 * 1024
    response = client.post(
        "/v1/unsubscribe-links",
        data=raw,
        content_type="application/json",
        headers=bearer(tokens["mailer"]),
    )
    assert response.status_code == 200
    assert len(response.get_json()["links"]) == 10_000
    status, body = request_links(
        client, tokens["mailer"], {"list": "news", "emails": [*emails, "one@example.se"]}
    )
    assert (status, body["error"]["code"]) == (413, "payload_too_large")


@pytest.mark.db_agnostic
def test_a_body_past_the_routes_cap_is_413(client: FlaskClient, tokens: dict[str, str]) -> None:
    raw = json.dumps({"list": "news", "emails": ["x" * 1000] * 6000})
    response = client.post(
        "/v1/unsubscribe-links",
        data=raw,
        content_type="application/json",
        headers=bearer(tokens["mailer"]),
    )
    assert response.status_code == 413
    assert response.get_json()["error"]["code"] == "payload_too_large"


@pytest.mark.db_agnostic
def test_other_routes_keep_the_default_json_cap(
    client: FlaskClient, tokens: dict[str, str]
) -> None:
    raw = json.dumps({"email": "a@example.se", "list": "news", "pad": "x" * (1024 * 1024)})
    response = client.post(
        "/v1/check", data=raw, content_type="application/json", headers=bearer(tokens["mailer"])
    )
    assert response.status_code == 413


@pytest.mark.db_agnostic
def test_openapi_documents_the_link_route_and_the_pages(client: FlaskClient) -> None:
    paths = client.get("/v1/openapi.json").get_json()["paths"]
    assert "post" in paths["/v1/unsubscribe-links"]
    assert {"get", "post"} <= set(paths["/u/{token}"])


# --- accountability: who minted which links -----------------------------------------------


def key_id(rt: Runtime, name: str) -> int:
    with rt.db.begin(write=False) as session:
        return int(session.scalars(select(ApiKey.id).where(ApiKey.name == name)).one())


def mint_events(rt: Runtime) -> list[AuditEvent]:
    with rt.db.begin(write=False) as session:
        return list(
            session.scalars(
                select(AuditEvent).where(AuditEvent.action == "mint_links").order_by(AuditEvent.id)
            )
        )


def test_every_mint_is_an_audit_event_with_a_count_and_no_addresses(
    client: FlaskClient, rt: Runtime, tokens: dict[str, str]
) -> None:
    emails = ["anna.berg@example.se", "olle@example.org", "not an address"]
    assert request_links(client, tokens["mailer"], {"list": "news", "emails": emails})[0] == 200
    assert request_links(client, tokens["recorder"], {"list": "offers", "emails": []})[0] == 200
    first, second = mint_events(rt)
    assert (first.actor, first.list, first.digest, first.kind, first.reason) == (
        "api:test-mailer",
        "news",
        None,
        None,
        None,
    )
    assert first.detail == {"api_key": key_id(rt, "test-mailer"), "links": 2, "invalid": 1}
    assert (second.actor, second.list) == ("api:test-recorder", "offers")
    assert second.detail == {"api_key": key_id(rt, "test-recorder"), "links": 0, "invalid": 0}
    # The count is enough: neither the addresses nor their digests, under any pepper.
    stored = json.dumps([audit.describe(e) for e in (first, second)]).lower()
    for email in emails[:2]:
        for part in (email, email.split("@")[0], email.split("@")[1]):
            assert part not in stored
        assert active_digest(rt.ring, email).value.hex() not in stored
        assert active_digest(rt.ring, email).value.hex()[:8] not in stored


@pytest.mark.db_agnostic
def test_a_refused_request_mints_nothing_and_records_nothing(
    client: FlaskClient, rt: Runtime, tokens: dict[str, str]
) -> None:
    assert request_links(client, tokens["mailer"], {"list": "Bad List", "emails": []})[0] == 422
    assert (
        client.post("/v1/unsubscribe-links", json={"list": "news", "emails": []}).status_code == 401
    )
    assert mint_events(rt) == []


@pytest.mark.db_agnostic
def test_no_link_is_handed_out_when_the_mint_cannot_be_audited(
    client: FlaskClient, rt: Runtime, tokens: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def down(*_a: Any, **_k: Any) -> None:
        raise Unavailable("database unavailable: OperationalError")

    monkeypatch.setattr(suppressions, "record_links", down)
    response = client.post(
        "/v1/unsubscribe-links",
        json={"list": "news", "emails": ["a@example.se"]},
        headers=bearer(tokens["mailer"]),
    )
    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == "unavailable"
    assert "/u/" not in response.get_data(as_text=True)


def test_links_name_their_minting_key_and_the_opt_out_records_it(
    client: FlaskClient, rt: Runtime, tokens: dict[str, str]
) -> None:
    mailer, recorder = key_id(rt, "test-mailer"), key_id(rt, "test-recorder")
    urls = {}
    for role, email in (("mailer", "one@example.se"), ("recorder", "two@example.se")):
        _status, body = request_links(client, tokens[role], {"list": "news", "emails": [email]})
        urls[role] = body["links"][0]["url"].removeprefix(BASE)
    assert rt.signer.verify(urls["mailer"].removeprefix("/u/")).minted_by == mailer
    assert rt.signer.verify(urls["recorder"].removeprefix("/u/")).minted_by == recorder
    assert client.post(urls["mailer"], data={"List-Unsubscribe": "One-Click"}).status_code == 200
    assert client.post(urls["recorder"], data={"scope": "global"}).status_code == 200
    with rt.db.begin(write=False) as session:
        added = list(
            session.scalars(
                select(AuditEvent).where(AuditEvent.action == "add").order_by(AuditEvent.id)
            )
        )
    assert [(e.source, e.list, e.detail["minted_by"]) for e in added] == [
        ("one_click", "news", mailer),
        ("landing_page", "global", recorder),
    ]
    # The trail answers "which key minted the link behind this opt-out?" from events alone.
    minted = {e.detail["api_key"]: e.actor for e in mint_events(rt)}
    assert [minted[e.detail["minted_by"]] for e in added] == [
        "api:test-mailer",
        "api:test-recorder",
    ]


# --- RFC 8058 needs https ------------------------------------------------------------------


def links_app(db_url: str, tmp_path: Path, **extra: Any) -> tuple[Flask, dict[str, str]]:
    app = create_app(settings(db_url, tmp_path, **extra))
    rt: Runtime = app.extensions["suppress"]
    with rt.db.begin() as session:
        _key, token = apikeys.create(session, "job", Role.mailer, actor="test")
    return app, {"mailer": token}


@pytest.mark.db_agnostic
def test_plain_http_base_url_off_loopback_is_refused_at_start(db_url: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"allow_insecure_base_url"):
        create_app(settings(db_url, tmp_path, base_url="http://suppress.example.com"))


@pytest.mark.db_agnostic
def test_allowed_insecure_base_url_gives_links_without_one_click(
    db_url: str, tmp_path: Path
) -> None:
    app, keys = links_app(
        db_url,
        tmp_path,
        base_url="http://suppress.internal:8000",
        unsubscribe={"allow_insecure_base_url": True},
    )
    try:
        client = app.test_client()
        status, body = request_links(
            client, keys["mailer"], {"list": "news", "emails": ["a@example.se"]}
        )
        assert status == 200
        (entry,) = body["links"]
        assert entry["url"].startswith("http://suppress.internal:8000/u/")
        # RFC 8058 §3.1: no List-Unsubscribe-Post on a URI that is not https.
        assert entry["headers"] == {"List-Unsubscribe": f"<{entry['url']}>"}
        # The page itself still works, so the link in the mail does what it says.
        path = entry["url"].removeprefix("http://suppress.internal:8000")
        assert client.post(path, data={"scope": "list"}).status_code == 200
    finally:
        app.extensions["suppress"].db.dispose()


@pytest.mark.db_agnostic
@pytest.mark.parametrize(
    "base_url", ["http://127.0.0.1:8000", "http://localhost:8000", "http://[::1]:8000"]
)
def test_loopback_http_keeps_one_click(db_url: str, tmp_path: Path, base_url: str) -> None:
    app, keys = links_app(db_url, tmp_path, base_url=base_url)
    try:
        status, body = request_links(
            app.test_client(), keys["mailer"], {"list": "news", "emails": ["a@example.se"]}
        )
        assert status == 200
        assert body["links"][0]["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    finally:
        app.extensions["suppress"].db.dispose()


@pytest.mark.db_agnostic
def test_openapi_allows_links_without_one_click_and_multipart_one_click(
    client: FlaskClient,
) -> None:
    doc = client.get("/v1/openapi.json").get_json()
    link = resolve(doc, doc["components"]["schemas"]["Links"]["properties"]["links"]["items"])
    assert resolve(doc, link["properties"]["headers"])["required"] == ["List-Unsubscribe"]
    body = doc["paths"]["/u/{token}"]["post"]["requestBody"]["content"]
    assert {"application/x-www-form-urlencoded", "multipart/form-data"} <= set(body)
