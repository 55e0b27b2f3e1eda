"""The OpenAPI document is generated from the route table and the models, and kept to."""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from suppress import contract, jobs
from suppress.errors import ErrorCode
from suppress.models import LIST_PATTERN, Reason


@pytest.mark.db_agnostic
def test_openapi_lists_every_route(app: Flask, client: FlaskClient) -> None:
    doc = client.get("/v1/openapi.json").get_json()
    assert doc["openapi"].startswith("3.1")
    documented = {(path, method.upper()) for path, ops in doc["paths"].items() for method in ops}
    served = set()
    for rule in app.url_map.iter_rules():
        # The console (/admin/) is HTML for people, outside the API contract.
        if rule.endpoint == "static" or rule.rule.startswith("/admin"):
            continue
        path = re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule.rule)  # <int:id> is {id}
        for method in rule.methods or ():
            if method not in ("HEAD", "OPTIONS"):
                served.add((path, method))
    assert documented == served


@pytest.mark.db_agnostic
def test_a_route_without_an_operation_cannot_be_served_undocumented(app: Flask) -> None:
    app.add_url_rule("/v1/undocumented", "undocumented", lambda: "x")
    with pytest.raises(RuntimeError, match="/v1/undocumented declares no Operation"):
        contract.document(app, "https://suppress.example.com")


@pytest.mark.db_agnostic
def test_constants_come_from_where_they_are_owned(client: FlaskClient) -> None:
    doc = client.get("/v1/openapi.json").get_json()
    schemas = doc["components"]["schemas"]
    assert schemas["ErrorCode"]["enum"] == [code.value for code in ErrorCode]
    assert schemas["Reason"]["enum"] == [reason.value for reason in Reason]
    assert schemas["CheckRequest"]["properties"]["list"]["pattern"] == LIST_PATTERN
    run = doc["paths"]["/v1/jobs/{name}/run"]["post"]["parameters"][0]
    assert run["schema"]["enum"] == list(jobs.NAMES)
    assert schemas["JobRun"]["properties"]["job"]["enum"] == list(jobs.NAMES)


def params(doc: dict[str, Any], path: str, method: str) -> dict[str, Any]:
    return {p["name"]: p for p in doc["paths"][path][method].get("parameters", [])}


@pytest.mark.db_agnostic
def test_query_parameters_carry_their_bounds(client: FlaskClient) -> None:
    doc = client.get("/v1/openapi.json").get_json()
    limit = params(doc, "/v1/jobs", "get")["limit"]["schema"]
    assert (limit["type"], limit["minimum"], limit["maximum"]) == ("integer", 1, 500)
    assert params(doc, "/v1/jobs", "get")["job"]["schema"]["enum"] == list(jobs.NAMES)
    audit = params(doc, "/v1/audit", "get")
    assert audit["after"]["schema"]["minimum"] == 0
    assert audit["limit"]["schema"]["minimum"] == 1
    assert audit["action"]["schema"]["pattern"]
    imports = params(doc, "/v1/imports", "post")
    assert imports["list"]["required"] and imports["reason"]["required"]
    assert not imports["source"]["required"]
    assert imports["Idempotency-Key"]["in"] == "header"
    assert params(doc, "/u/{token}", "get")["lang"]["schema"]["pattern"]


@pytest.mark.db_agnostic
def test_the_unsubscribe_form_is_documented_for_both_encodings(client: FlaskClient) -> None:
    doc = client.get("/v1/openapi.json").get_json()
    content = doc["paths"]["/u/{token}"]["post"]["requestBody"]["content"]
    assert set(content) == {"application/x-www-form-urlencoded", "multipart/form-data"}
    form = doc["components"]["schemas"]["UnsubscribeForm"]["properties"]
    assert set(form) == {"List-Unsubscribe", "scope", "lists"}
    assert form["scope"]["enum"] == ["list", "global", "lists", "resubscribe"]
    assert form["lists"]["type"] == "array"


@pytest.mark.db_agnostic
def test_every_status_a_route_can_answer_is_listed(client: FlaskClient) -> None:
    doc = client.get("/v1/openapi.json").get_json()
    check = doc["paths"]["/v1/check"]["post"]["responses"]
    assert set(check) == {"200", "400", "401", "403", "413", "414", "422", "429", "503"}
    imports = doc["paths"]["/v1/imports"]["post"]["responses"]
    assert {"415", "422"} <= set(imports)
    run = doc["paths"]["/v1/jobs/{name}/run"]["post"]["responses"]
    assert {"404", "409"} <= set(run)
    removal = doc["paths"]["/v1/suppressions"]["delete"]["responses"]
    assert "404" in removal
    page = doc["paths"]["/u/{token}"]["post"]["responses"]
    assert page["400"]["content"] == {"text/html": {}} and "429" in page
    assert set(doc["paths"]["/healthz"]["get"]["responses"]) == {"200", "414"}


@pytest.mark.db_agnostic
def test_the_document_is_kept_to_in_tests(app: Flask, client: FlaskClient) -> None:
    # An answer the document does not list fails the test that provoked it.
    op = contract.Operation("teapot", {200: contract.Answer("fine", contract.Removed)})

    @contract.operation(op)
    def teapot() -> Any:
        return {"removed": "many"}, 200

    @contract.operation(op)
    def brewing() -> Any:
        return {"removed": 1}, 418

    app.add_url_rule("/v1/teapot", "teapot", teapot)
    app.add_url_rule("/v1/brewing", "brewing", brewing)
    with pytest.raises(AssertionError, match="shape the API document does not give"):
        client.get("/v1/teapot")
    with pytest.raises(AssertionError, match="answered 418, which the API document"):
        client.get("/v1/brewing")
