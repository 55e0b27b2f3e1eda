"""Hostile input: generated requests, valid and invalid, against the OpenAPI document."""

from __future__ import annotations

import os
from typing import Any

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from .conftest import LiveServer
from .conftest import settings as instance_settings
from .test_webhooks import HOOKS


@pytest.fixture
def overrides(db_url: str, tmp_path: Any) -> dict[str, Any]:
    """Every webhook receiver configured, so that generated requests reach their checks."""
    return instance_settings(db_url, tmp_path, webhooks=HOOKS)


# Raise for a longer hunt: SUPPRESS_SCHEMA_EXAMPLES=500 pytest tests/test_schema.py
MAX_EXAMPLES = int(os.environ.get("SUPPRESS_SCHEMA_EXAMPLES", "20"))


def hunt(schema_ops: list[Any], token: str, mode: GenerationMode, examples: int) -> int:
    """Run every operation's generated cases with every check but positive-data acceptance;
    returns how many operations were exercised."""
    exercised = 0
    for operation in schema_ops:
        invalidatable = (
            operation.body,
            operation.headers,
            operation.query,
            operation.path_parameters,
        )
        if mode is GenerationMode.NEGATIVE and not any(len(part) for part in invalidatable):
            continue  # nothing to make invalid
        exercised += 1

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=examples,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        def run(case: Any) -> None:
            case.headers = {**(case.headers or {}), "Authorization": f"Bearer {token}"}
            # Say the token is configured, not generated: the ignored-auth check then probes
            # each operation without and with a wrong token and expects 401, instead of
            # taking any 2xx (a GET without a body, valid even in negative mode) for a leak.
            case._has_explicit_auth = True
            # A schema-valid string may still be no address scheme n1 accepts (422 is right),
            # so "positive data is accepted" does not hold here; every other check does.
            case.call_and_validate(excluded_checks=[positive_data_acceptance])

        run()
    return exercised


def expect_refusals(schema: Any) -> Any:
    # A batch over a route's item limit (maxItems) is refused with 413 payload_too_large, and
    # a request line over gunicorn's limit with 414: both are refusals the document lists,
    # which schemathesis does not count as such by default.
    rejection = schema.config.checks.negative_data_rejection
    rejection.expected_statuses = [*rejection.expected_statuses, "413", "414"]
    return [result.ok() for result in schema.get_all_operations()]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_generated_requests_never_5xx_and_match_the_schema(
    app: Flask, tokens: dict[str, str], mode: GenerationMode
) -> None:
    ops = expect_refusals(schemathesis.openapi.from_wsgi("/v1/openapi.json", app))
    assert len(ops) >= 16
    # Negative mode too reaches every operation that takes a parameter or a body (all but
    # the probes, /metrics and this document).
    assert hunt(ops, tokens["admin"], mode, MAX_EXAMPLES) >= 13


@pytest.mark.e2e
def test_the_served_document_holds_for_the_installed_server_over_http(
    live_server: LiveServer,
) -> None:
    created = live_server.cli("keys", "create", "--name", "schema", "--role", "admin")
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip().splitlines()[-1]
    schema = schemathesis.openapi.from_url(live_server.url + "/v1/openapi.json")
    assert schema.raw_schema["servers"] == [{"url": live_server.url}]
    ops = expect_refusals(schema)
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
        assert hunt(ops, token, mode, max(3, MAX_EXAMPLES // 4)) >= 13
