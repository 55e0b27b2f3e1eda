"""Access and portability: lookup and export carry digests, never plaintext; CSV is inert."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from click.testing import Result
from flask.testing import FlaskClient, FlaskCliRunner
from sqlalchemy import select

from suppress import access, addresses, cli
from suppress.config import parse_peppers
from suppress.models import Base, Kind, Reason, Suppression
from suppress.runtime import Runtime

from .conftest import TEST_PEPPER, LiveServer, bearer

SUBJECT = "Anna.Berg+nyhetsbrev@Example.se"
OTHER = "olle.svensson@example.org"
# Spellings of the subject's data that must never appear in clear.
PLAINTEXT = ("anna", "berg", "example.se", "olle", "svensson", "example.org", "example.net")
EPOCH = datetime(2026, 1, 1)


def add(client: FlaskClient, token: str, **body: Any) -> None:
    response = client.post("/v1/suppressions", json=body, headers=bearer(token))
    assert response.status_code == 201, response.get_json()


def populate(client: FlaskClient, tokens: dict[str, str]) -> None:
    rec = tokens["recorder"]
    add(client, rec, email="anna.berg@example.se", list="news", reason="unsubscribe")
    add(client, rec, email="ANNA.BERG@example.se", list="global", reason="objection")
    add(client, rec, domain="example.se", list="offers", reason="manual", source="=HYPERLINK(1)")
    add(client, rec, email=OTHER, list="news", reason="complaint", source="@SUM(1)")
    add(client, rec, email="x@example.net", list="news", reason="manual", source="-2+3")
    add(client, rec, email="y@example.net", list="news", reason="manual", source="+cmd")


def assert_no_plaintext(text: str) -> None:
    assert not addresses.contains_address(text)
    lowered = text.lower()
    for fragment in PLAINTEXT:
        assert fragment not in lowered, fragment


def invoke(
    runner: FlaskCliRunner, rt: Runtime, monkeypatch: pytest.MonkeyPatch, *args: str
) -> Result:
    monkeypatch.setattr(cli, "runtime", lambda: rt)
    return runner.invoke(cli.main, list(args))


# --- lookup -------------------------------------------------------------------------------------


def test_lookup_returns_digests_rows_and_events_of_the_subject_only(
    client: FlaskClient, tokens: dict[str, str], rt: Runtime
) -> None:
    populate(client, tokens)
    response = client.post("/v1/lookup", json={"email": SUBJECT}, headers=bearer(tokens["admin"]))
    assert response.status_code == 200
    body = response.get_json()
    assert body["email"] == SUBJECT
    own = rt.ring.address("anna.berg@example.se").hex()
    assert body["digests"][0] == {"kind": "address", "key_id": "t1", "digest": own}
    assert {d["kind"] for d in body["digests"]} == {"address", "domain"}
    rows = {(r["kind"], r["list"], r["reason"]) for r in body["suppressions"]}
    assert rows == {
        ("address", "news", "unsubscribe"),
        ("address", "global", "objection"),
        ("domain", "offers", "manual"),
    }
    assert [(e["action"], e["list"]) for e in body["events"]] == [
        ("add", "news"),
        ("add", "global"),
        ("add", "offers"),
    ]
    assert all(e["key_id"] == "t1" for e in body["events"])
    rest = json.dumps(body).replace(SUBJECT, "")
    assert_no_plaintext(rest)


def test_lookup_is_recorded_and_needs_admin(
    client: FlaskClient, tokens: dict[str, str], rt: Runtime
) -> None:
    populate(client, tokens)
    assert (
        client.post(
            "/v1/lookup", json={"email": SUBJECT}, headers=bearer(tokens["recorder"])
        ).status_code
        == 403
    )
    admin = bearer(tokens["admin"])
    request = {"email": SUBJECT, "reference": "DSR-2026-017"}
    assert client.post("/v1/lookup", json=request, headers=admin).status_code == 200
    (event,) = client.get("/v1/audit?action=lookup", headers=admin).get_json()["events"]
    assert event["actor"] == "api:test-admin"
    assert event["digest"] == rt.ring.address("anna.berg@example.se").hex()
    assert event["detail"] == {
        "suppressions": 3,
        "events": 3,
        "requests": 0,
        "reference": "DSR-2026-017",
    }
    pasted = client.post("/v1/lookup", json={**request, "reference": SUBJECT}, headers=admin)
    assert pasted.status_code == 400  # a reference, never the address itself
    # The next access request shows the earlier one: the subject sees who looked.
    again = client.post("/v1/lookup", json={"email": SUBJECT}, headers=admin).get_json()
    assert [e["action"] for e in again["events"]][-1] == "lookup"
    bad = client.post("/v1/lookup", json={"email": "not an address"}, headers=admin)
    assert bad.status_code == 422 and bad.get_json()["error"]["code"] == "invalid_email"


def test_lookup_of_an_unknown_address_is_empty(client: FlaskClient, tokens: dict[str, str]) -> None:
    body = client.post(
        "/v1/lookup", json={"email": "nobody@example.se"}, headers=bearer(tokens["admin"])
    ).get_json()
    assert body["suppressions"] == [] and body["events"] == []
    assert len(body["digests"]) == 2  # the address and its domain under the one pepper


def test_cli_lookup_prints_the_same_json(
    client: FlaskClient,
    tokens: dict[str, str],
    runner: FlaskCliRunner,
    rt: Runtime,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    populate(client, tokens)
    result = invoke(runner, rt, monkeypatch, "lookup", SUBJECT, "--json")
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["email"] == SUBJECT
    api = client.post("/v1/lookup", json={"email": SUBJECT}, headers=bearer(tokens["admin"]))
    assert body["digests"] == api.get_json()["digests"]
    assert body["suppressions"] == api.get_json()["suppressions"]
    *earlier, cli_lookup = api.get_json()["events"]
    assert body["events"] == earlier
    assert cli_lookup["action"] == "lookup" and cli_lookup["actor"].startswith("cli:")
    text = invoke(runner, rt, monkeypatch, "lookup", SUBJECT)
    assert text.exit_code == 0
    assert "3 suppression(s)" in text.stdout and "objection" in text.stdout
    assert_no_plaintext(text.stdout.replace(SUBJECT, ""))


# --- export -------------------------------------------------------------------------------------


def test_export_streams_every_suppression_as_ndjson(
    client: FlaskClient, tokens: dict[str, str], rt: Runtime
) -> None:
    populate(client, tokens)
    response = client.get("/v1/export", headers=bearer(tokens["admin"]))
    assert response.status_code == 200
    assert response.mimetype == "application/x-ndjson"
    assert response.is_streamed
    text = response.get_data(as_text=True)
    assert_no_plaintext(text)
    lines = [json.loads(line) for line in text.splitlines()]
    assert len(lines) == 6
    assert all(tuple(line) == access.EXPORT_FIELDS for line in lines)
    assert lines[0]["digest"] == rt.ring.address("anna.berg@example.se").hex()
    assert lines[2]["digest"] == rt.ring.domain("example.se").hex()
    assert [line["id"] for line in lines] == sorted(line["id"] for line in lines)
    assert client.get("/v1/export", headers=bearer(tokens["recorder"])).status_code == 403
    assert client.get("/v1/export?format=xml", headers=bearer(tokens["admin"])).status_code == 400
    (event,) = client.get("/v1/audit?action=export", headers=bearer(tokens["admin"])).get_json()[
        "events"
    ]
    assert event["detail"] == {"format": "ndjson"}


def test_export_of_an_empty_list_is_empty(client: FlaskClient, tokens: dict[str, str]) -> None:
    response = client.get("/v1/export", headers=bearer(tokens["admin"]))
    assert response.status_code == 200 and response.get_data() == b""


def test_export_spans_many_chunks(rt: Runtime, client: FlaskClient, tokens: dict[str, str]) -> None:
    with rt.db.begin() as session:
        for i in range(2500):  # more than one fetch batch and several 64 KiB chunks
            session.add(
                Suppression(
                    digest=rt.ring.address(f"p{i}@example.se"),
                    key_id="t1",
                    kind=Kind.address,
                    list="news",
                    reason=Reason.unsubscribe,
                    source="import",
                    created_at=EPOCH,
                )
            )
    response = client.get("/v1/export", headers=bearer(tokens["admin"]))
    chunks = list(response.response)  # type: ignore[arg-type]
    assert len(chunks) > 3
    lines = b"".join(chunks).decode().splitlines()
    assert len(lines) == 2500 and len({json.loads(line)["digest"] for line in lines}) == 2500


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        ("=1+2", "'=1+2"),
        ("+1", "'+1"),
        ("-1", "'-1"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "'\t=1"),
        ("\r=1", "'\r=1"),
        ("import", "import"),
        ("a=b", "a=b"),
        ("", ""),
        ("'=1", "'=1"),
    ],
)
def test_neutralize_defuses_formula_cells(cell: str, expected: str) -> None:
    assert access.neutralize(cell) == expected


def test_csv_export_neutralizes_formula_cells(
    client: FlaskClient, tokens: dict[str, str], rt: Runtime
) -> None:
    populate(client, tokens)
    with rt.db.begin() as session:  # tab and CR cannot come in through the API; imports may
        for i, source in enumerate(("\t=1+2", "\r=cmd")):
            session.add(
                Suppression(
                    digest=rt.ring.address(f"t{i}@example.se"),
                    key_id="t1",
                    kind=Kind.address,
                    list="news",
                    reason=Reason.manual,
                    source=source,
                    created_at=EPOCH,
                )
            )
    response = client.get("/v1/export?format=csv", headers=bearer(tokens["admin"]))
    assert response.status_code == 200 and response.mimetype == "text/csv"
    text = response.get_data(as_text=True)
    assert_no_plaintext(text)
    header, *rows = list(csv.reader(io.StringIO(text, newline="")))
    assert tuple(header) == access.EXPORT_FIELDS
    assert len(rows) == 8
    for row in rows:
        for cell in row:
            assert not cell.startswith(access.FORMULA_PREFIXES), cell
    sources = [row[header.index("source")] for row in rows]
    assert sources == [
        "api",
        "api",
        "'=HYPERLINK(1)",
        "'@SUM(1)",
        "'-2+3",
        "'+cmd",
        "'\t=1+2",
        "'\r=cmd",
    ]


def test_cli_export_writes_csv_and_ndjson_files(
    client: FlaskClient,
    tokens: dict[str, str],
    runner: FlaskCliRunner,
    rt: Runtime,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    populate(client, tokens)
    target = tmp_path / "out.csv"
    result = invoke(runner, rt, monkeypatch, "export", "--format", "csv", "--output", str(target))
    assert result.exit_code == 0, result.output
    assert "exported 6 suppression(s)" in result.stderr
    api = client.get("/v1/export?format=csv", headers=bearer(tokens["admin"]))
    assert target.read_bytes() == api.get_data()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".export-")] == []
    ndjson = invoke(runner, rt, monkeypatch, "export")
    assert ndjson.exit_code == 0
    assert ndjson.stdout == client.get("/v1/export", headers=bearer(tokens["admin"])).get_data(
        as_text=True
    )


def test_database_holds_no_plaintext_after_every_operation(
    client: FlaskClient, tokens: dict[str, str], rt: Runtime
) -> None:
    populate(client, tokens)
    admin = bearer(tokens["admin"])
    client.post("/v1/lookup", json={"email": SUBJECT, "reference": "DSR-1"}, headers=admin)
    client.get("/v1/export?format=csv", headers=admin).get_data()
    lift = {"email": OTHER, "list": "news", "reason": "resubscribed", "evidence": "form 7"}
    assert client.delete("/v1/suppressions", json=lift, headers=admin).status_code == 200
    erased = {"email": SUBJECT, "list": "global", "reason": "erasure", "source": "dsr"}
    assert client.post("/v1/suppressions", json=erased, headers=admin).status_code == 200
    dump = []
    with rt.db.begin(write=False) as session:
        for table in Base.metadata.sorted_tables:
            for row in session.execute(select(table)):
                dump += [v.hex() if isinstance(v, bytes) else repr(v) for v in row]
    assert len(dump) > 100
    assert_no_plaintext("\n".join(dump))


@pytest.mark.db_agnostic
def test_accountability_routes_are_documented_in_openapi(client: FlaskClient) -> None:
    spec = client.get("/v1/openapi.json").get_json()
    for path, method in (
        ("/v1/lookup", "post"),
        ("/v1/export", "get"),
        ("/v1/audit", "get"),
        ("/v1/audit/verify", "get"),
    ):
        assert spec["paths"][path][method]["description"] == "Role: admin or higher."
    schemas = spec["components"]["schemas"]
    text = json.dumps(spec)
    for name in ("Lookup", "AuditEvent", "Verification"):
        assert name in schemas and f"#/components/schemas/{name}" in text


@pytest.mark.e2e
def test_served_export_streams_and_the_cli_verifies(live_server: LiveServer) -> None:
    created = live_server.cli("keys", "create", "--name", "dpo", "--role", "admin")
    headers = bearer(created.stdout.strip().splitlines()[-1])
    for i in range(3):
        response = requests.post(
            live_server.url + "/v1/suppressions",
            json={"email": f"p{i}@example.se", "list": "news", "reason": "unsubscribe"},
            headers=headers,
            timeout=10,
        )
        assert response.status_code == 201
    with requests.get(
        live_server.url + "/v1/export", headers=headers, stream=True, timeout=10
    ) as export:
        assert export.status_code == 200
        assert export.headers["Transfer-Encoding"] == "chunked"
        lines = [json.loads(line) for line in export.iter_lines() if line]
    assert [line["digest"] for line in lines] == [
        addresses.KeyRing(parse_peppers(TEST_PEPPER)).address(f"p{i}@example.se").hex()
        for i in range(3)
    ]
    verified = live_server.cli("audit", "verify")
    assert verified.returncode == 0, verified.stderr
    assert "audit chain ok: 5 event(s)" in verified.stdout  # the key, 3 adds, the export
    status = live_server.cli("keys", "pepper-status")
    assert status.returncode == 0 and status.stdout.startswith("t1\t3\tactive")
