"""POST /v1/unsubscribe-links: links and RFC 8058 headers for a mailing batch."""

from __future__ import annotations

import json

import pytest
from flask.testing import FlaskClient

from suppress.addresses import active_digest
from suppress.runtime import Runtime

from .conftest import bearer

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


def test_mailer_role_is_enough_and_a_key_is_required(
    client: FlaskClient, tokens: dict[str, str]
) -> None:
    body = {"list": "news", "emails": ["a@example.se"]}
    for role in ("mailer", "recorder", "admin"):
        assert request_links(client, tokens[role], body)[0] == 200
    anonymous = client.post("/v1/unsubscribe-links", json=body)
    assert anonymous.status_code == 401


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


def test_other_routes_keep_the_default_json_cap(
    client: FlaskClient, tokens: dict[str, str]
) -> None:
    raw = json.dumps({"email": "a@example.se", "list": "news", "pad": "x" * (1024 * 1024)})
    response = client.post(
        "/v1/check", data=raw, content_type="application/json", headers=bearer(tokens["mailer"])
    )
    assert response.status_code == 413


def test_openapi_documents_the_link_route_and_the_pages(client: FlaskClient) -> None:
    paths = client.get("/v1/openapi.json").get_json()["paths"]
    assert "post" in paths["/v1/unsubscribe-links"]
    assert {"get", "post"} <= set(paths["/u/{token}"])
