"""Structured logs: JSON lines joined by a request id; access logs of the real server are JSON."""

from __future__ import annotations

import json
import logging

import pytest
import requests
from flask.testing import FlaskClient

from suppress.logs import JsonFormatter

from .conftest import LiveServer, bearer


@pytest.mark.db_agnostic
def test_every_response_carries_a_request_id(client: FlaskClient) -> None:
    generated = client.get("/healthz").headers["X-Request-Id"]
    assert len(generated) == 32 and int(generated, 16) >= 0
    assert client.get("/healthz", headers={"X-Request-Id": "job-42.batch:7"}).headers[
        "X-Request-Id"
    ] == ("job-42.batch:7")
    hostile = client.get("/healthz", headers={"X-Request-Id": 'x" injected\\' + "a" * 80})
    assert hostile.headers["X-Request-Id"] != 'x" injected\\' + "a" * 80
    assert len(hostile.headers["X-Request-Id"]) == 32


def test_json_formatter_writes_one_object_per_line() -> None:
    record = logging.LogRecord(
        "suppress.test", logging.WARNING, __file__, 1, "lazy re-key %s", ("3f2a9c1d",), None
    )
    record.request_id = "abc"
    line = JsonFormatter().format(record)
    data = json.loads(line)
    assert data["level"] == "warning" and data["logger"] == "suppress.test"
    assert data["message"] == "lazy re-key 3f2a9c1d" and data["request_id"] == "abc"
    assert "\n" not in line


@pytest.mark.db_agnostic
def test_served_access_log_is_json_with_request_ids_and_no_tokens(live_server: LiveServer) -> None:
    token = live_server.cli("keys", "create", "--name", "logs", "--role", "mailer").stdout.split()[
        -1
    ]
    response = requests.post(
        live_server.url + "/v1/check",
        headers={**bearer(token), "X-Request-Id": "trace-1"},
        json={"email": "logged@example.se", "list": "news"},
        timeout=10,
    )
    assert response.headers["X-Request-Id"] == "trace-1"
    requests.get(live_server.url + '/v1/nothing?q="quoted"', timeout=10)
    live_server.stop()
    lines = [
        line
        for line in live_server.log_path.read_text().splitlines()
        if line.startswith('{"time":"[')
    ]
    entries = [json.loads(line) for line in lines]
    check = [e for e in entries if e["request"].startswith("POST /v1/check")]
    assert check and check[0]["request_id"] == "trace-1" and check[0]["status"] == 200
    assert any("quoted" in e["request"] and "nothing" in e["request"] for e in entries)
    text = live_server.log_path.read_text()
    assert "logged@example.se" not in text and token not in text
