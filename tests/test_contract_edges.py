"""Inputs at the edges of the contract: the right refusal, never a 500, never a guess."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from .conftest import bearer


def test_an_expiry_outside_the_calendar_in_utc_is_422_not_500(
    client: FlaskClient, tokens: dict[str, str]
) -> None:
    for moment in (
        "9999-12-31T23:59:59-12:00",
        "0001-01-01T00:00:00+14:00",
        "2099-01-01T00:00:00\u0000Z",
    ):
        body = {"email": "a@example.se", "list": "news", "reason": "hard_bounce"}
        response = client.post(
            "/v1/suppressions", json={**body, "expires_at": moment}, headers=bearer(tokens["admin"])
        )
        assert response.status_code == 422, moment
        assert response.get_json()["error"]["code"] == "invalid_request"


@pytest.mark.parametrize("reason", [None, "", 7])
def test_a_removal_reason_is_free_text_not_an_opt_out_reason(
    client: FlaskClient, tokens: dict[str, str], reason: object
) -> None:
    body = {"email": "a@example.se", "list": "news", "evidence": "ticket 12"}
    if reason is not None:
        body["reason"] = reason
    response = client.delete("/v1/suppressions", json=body, headers=bearer(tokens["admin"]))
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["code"] == "invalid_request" and "reason" in error["message"]
    assert "unknown reason" not in error["message"]


def test_a_bad_list_is_422_wherever_it_is_sent(client: FlaskClient, tokens: dict[str, str]) -> None:
    headers = bearer(tokens["admin"])
    streamed = client.post(
        "/v1/filter?list=News", data=b"a@example.se\n", headers=headers, content_type="text/plain"
    )
    in_body = client.post("/v1/filter", json={"list": "News", "emails": []}, headers=headers)
    imported = client.post(
        "/v1/imports?list=News&reason=manual",
        data=b"a@example.se\n",
        headers=headers,
        content_type="text/csv",
    )
    for response in (streamed, in_body, imported):
        assert response.status_code == 422
        assert response.get_json()["error"]["code"] == "invalid_list"


def test_refusals_name_fields_as_the_client_wrote_them(
    client: FlaskClient, tokens: dict[str, str]
) -> None:
    headers = bearer(tokens["admin"])
    domain = client.post(
        "/v1/suppressions", json={"domain": 5, "list": "news", "reason": "manual"}, headers=headers
    ).get_json()["error"]["message"]
    jobs = client.get("/v1/jobs?job=nope", headers=headers).get_json()["error"]["message"]
    anchor = client.get("/v1/audit/verify?anchor=" + "g" * 64, headers=headers).get_json()
    emails = client.post(
        "/v1/filter", json={"list": "news", "emails": ["a@example.se", 5]}, headers=headers
    ).get_json()["error"]["message"]
    assert domain == "field 'domain': input should be a valid string"
    assert jobs.startswith("parameter 'job': input should be ")
    assert "[0-9a-fA-F]" in anchor["error"]["message"]
    assert emails == "field 'emails[1]': input should be a valid string"
    for text in (domain, jobs, anchor["error"]["message"], emails):
        assert "constrained-str" not in text and ".none" not in text and "literal[" not in text


def test_any_json_media_type_is_json_on_every_json_route(
    client: FlaskClient, tokens: dict[str, str]
) -> None:
    body = b'{"list": "news", "emails": ["a@example.se"]}'
    for route in ("/v1/filter", "/v1/unsubscribe-links"):
        response = client.post(
            route,
            data=body,
            headers=bearer(tokens["admin"]),
            content_type="application/problem+json",
        )
        assert response.status_code == 200, route


def test_a_doubled_slash_is_no_route_rather_than_a_redirect(
    client: FlaskClient, tokens: dict[str, str]
) -> None:
    response = client.post(
        "/v1//check",
        json={"email": "a@example.se", "list": "news"},
        headers=bearer(tokens["admin"]),
    )
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "not_found"
