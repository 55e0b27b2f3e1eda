"""The OpenAPI document covers every route the app serves, and only those."""

from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient


@pytest.mark.db_agnostic
def test_openapi_lists_every_route(app: Flask, client: FlaskClient) -> None:
    doc = client.get("/v1/openapi.json").get_json()
    assert doc["openapi"].startswith("3.1")
    documented = {(path, method.upper()) for path, ops in doc["paths"].items() for method in ops}
    served = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = rule.rule.replace("<", "{").replace(">", "}")
        path = path.replace("{path:", "{").replace("{int:", "{")
        for method in rule.methods or ():
            if method not in ("HEAD", "OPTIONS"):
                served.add((path, method))
    assert documented == served


@pytest.mark.db_agnostic
def test_openapi_error_schema_names_the_codes(client: FlaskClient) -> None:
    doc = client.get("/v1/openapi.json").get_json()
    codes = doc["components"]["schemas"]["Error"]["properties"]["error"]["properties"]["code"][
        "enum"
    ]
    for code in (
        "invalid_email",
        "invalid_list",
        "invalid_request",
        "unauthorized",
        "forbidden",
        "not_found",
        "payload_too_large",
        "unavailable",
    ):
        assert code in codes
