"""The bulk gate: POST /v1/filter (JSON and streamed), POST /v1/imports, batched lookups."""

from __future__ import annotations

import io
import json
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func, select

from suppress import api, audit, bulk, clock, suppressions
from suppress.addresses import Targeter
from suppress.models import AuditEvent, IdempotencyKey, Suppression
from suppress.runtime import Runtime

from .conftest import OLD_PEPPER, TEST_PEPPER, bearer, resolve, settings


def add(client: FlaskClient, token: str, **body: Any) -> None:
    response = client.post("/v1/suppressions", json=body, headers=bearer(token))
    assert response.status_code in (200, 201), response.get_json()


def stream(
    client: FlaskClient, token: str, body: bytes, list_name: str = "news", ctype: str = "text/plain"
) -> Any:
    return client.post(
        f"/v1/filter?list={list_name}",
        data=body,
        headers={**bearer(token), "Content-Type": ctype},
    )


def trailer_of(text: str) -> tuple[list[str], str]:
    lines = text.split("\n")
    assert lines[-1] == "", "the answer ends with a newline"
    return lines[:-2], lines[-2]


@pytest.fixture
def seeded(client: FlaskClient, tokens: dict[str, str]) -> dict[str, str]:
    rec = tokens["recorder"]
    add(client, rec, email="anna.berg@example.se", list="news", reason="unsubscribe")
    add(client, rec, email="olle@example.se", list="global", reason="objection")
    add(client, rec, domain="example.org", list="news", reason="manual")
    add(client, rec, email="kim@example.net", list="offers", reason="unsubscribe")
    return tokens


# --- streamed filter -------------------------------------------------------------------------


def test_stream_answers_allowed_lines_as_given_in_order_then_the_trailer(
    client: FlaskClient, seeded: dict[str, str]
) -> None:
    body = (
        b"first@example.se\r\n"
        b"  Anna.Berg+Nyhetsbrev@Example.SE \n"  # suppressed on news (another spelling)
        b"\n"  # blank lines are skipped, not counted
        b"OLLE@example.se\n"  # global objection
        b"x@sub.example.org\n"  # domain suppression covers subdomains
        b"not an address\n"
        b"kim@example.net\n"  # suppressed only on another list
        b" Second@Example.com \n"
        b"last@example.se"  # no final newline
    )
    response = stream(client, seeded["mailer"], body)
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    assert int(response.headers["Content-Length"]) == len(response.data)
    allowed, trailer = trailer_of(response.get_data(as_text=True))
    assert allowed == [
        "first@example.se",
        "kim@example.net",
        " Second@Example.com ",
        "last@example.se",
    ]
    assert trailer == "# checked=8 allowed=4 suppressed=3 invalid=1"


def test_stream_csv_uses_the_first_column_and_answers_whole_lines(
    client: FlaskClient, seeded: dict[str, str]
) -> None:
    body = (
        b"email,name\n"  # a header is just an invalid line
        b"a@example.se,Anna\n"
        b"anna.berg@example.se,Anna B\n"
        b'"b@example.se","Berg, B"\n'
        b'"q"@example.se\n'  # plain text would reject the quoted local part; CSV unquotes it
    )
    response = stream(client, seeded["mailer"], body, ctype="text/csv; charset=utf-8")
    allowed, trailer = trailer_of(response.get_data(as_text=True))
    assert allowed == ["a@example.se,Anna", '"b@example.se","Berg, B"', '"q"@example.se']
    assert trailer == "# checked=5 allowed=3 suppressed=1 invalid=1"
    plain = stream(client, seeded["mailer"], b'"q"@example.se\n')
    assert trailer_of(plain.get_data(as_text=True)) == (
        [],
        "# checked=1 allowed=0 suppressed=0 invalid=1",
    )


@pytest.mark.db_agnostic
def test_stream_rejects_bad_bytes_and_bom_is_ignored(
    client: FlaskClient, seeded: dict[str, str]
) -> None:
    body = b"\xef\xbb\xbfa@example.se\n\xff\xfe@example.se\n"
    allowed, trailer = trailer_of(stream(client, seeded["mailer"], body).get_data(as_text=True))
    assert allowed == ["a@example.se"]
    assert trailer == "# checked=2 allowed=1 suppressed=0 invalid=1"


def test_stream_has_no_size_limit_and_spans_many_batches(
    client: FlaskClient, seeded: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bulk, "FILTER_BATCH", 7)
    monkeypatch.setattr(api, "SPOOL_BYTES", 1024)  # spill to a temporary file
    lines = [f"user{i:06d}@example.se" for i in range(60_000)]
    lines[12_345] = "anna.berg@example.se"
    body = ("\n".join(lines) + "\n").encode()
    assert len(body) > 1 << 20  # over the JSON routes' 1 MiB cap
    monkeypatch.setattr(bulk, "FILTER_BATCH", 5000)
    response = stream(client, seeded["mailer"], body)
    assert response.status_code == 200
    allowed, trailer = trailer_of(response.get_data(as_text=True))
    assert trailer == "# checked=60000 allowed=59999 suppressed=1 invalid=0"
    assert allowed == lines[:12_345] + lines[12_346:]


def test_small_batches_give_the_same_answer(
    client: FlaskClient, seeded: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    body = b"a@example.se\nolle@example.se\nb@example.org\nc@example.se\nanna.berg@example.se\n"
    whole = stream(client, seeded["mailer"], body).data
    monkeypatch.setattr(bulk, "FILTER_BATCH", 2)
    assert stream(client, seeded["mailer"], body).data == whole
    assert whole == b"a@example.se\nc@example.se\n# checked=5 allowed=2 suppressed=3 invalid=0\n"


@pytest.mark.db_agnostic
def test_stream_needs_a_list_a_text_type_and_the_mailer_role(
    client: FlaskClient, seeded: dict[str, str]
) -> None:
    no_list = client.post(
        "/v1/filter",
        data=b"a@example.se\n",
        headers={**bearer(seeded["mailer"]), "Content-Type": "text/plain"},
    )
    assert no_list.status_code == 422 and no_list.get_json()["error"]["code"] == "invalid_list"
    xml = stream(client, seeded["mailer"], b"<a/>", ctype="application/xml")
    assert xml.status_code == 415
    assert xml.get_json()["error"]["code"] == "unsupported_media_type"
    anonymous = client.post(
        "/v1/filter?list=news", data=b"a@example.se\n", content_type="text/plain"
    )
    assert anonymous.status_code == 401


@pytest.mark.db_agnostic
def test_stream_fails_closed_when_the_database_fails(
    client: FlaskClient, seeded: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from suppress.errors import Unavailable

    calls = {"n": 0}
    real = suppressions.rows_for

    def flaky(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 2:
            raise Unavailable("database unavailable: OperationalError")
        return real(*args, **kwargs)

    monkeypatch.setattr(bulk, "FILTER_BATCH", 2)
    monkeypatch.setattr(suppressions, "rows_for", flaky)
    response = stream(client, seeded["mailer"], b"a@example.se\nb@example.se\nc@example.se\n")
    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == "unavailable"
    assert b"a@example.se" not in response.data


def test_spool_read_failure_ends_the_answer_without_a_trailer() -> None:
    class Broken(io.BytesIO):
        def read(self, size: int | None = -1) -> bytes:
            if self.tell() > 0:
                raise OSError("disk gone")
            return super().read(3)

    chunks = []
    with pytest.raises(OSError):
        for chunk in api.replay_spool(Broken(b"a@example.se\n"), b"# checked=1 ...\n"):
            chunks.append(chunk)
    assert b"#" not in b"".join(chunks)


def test_iter_lines_handles_every_chunk_boundary() -> None:
    data = b"\xef\xbb\xbfa@x.se\r\nb@x.se\n\nc@x.se\r\n" + b"d@x.se"
    for size in range(1, len(data) + 1):
        assert list(bulk.iter_lines(io.BytesIO(data), chunk=size)) == [
            b"a@x.se",
            b"b@x.se",
            b"",
            b"c@x.se",
            b"d@x.se",
        ]


class NoNewline:
    """A body of `size` bytes without a newline, then one short line; nothing held in memory."""

    def __init__(self, size: int, tail: bytes = b"\nafter@example.se\n") -> None:
        self.left = size
        self.tail = tail
        self.block = b"x" * bulk.READ_CHUNK
        self.reads = 0

    def read(self, size: int = -1) -> bytes:
        self.reads += 1
        if self.left > 0:
            take = min(self.left, len(self.block) if size < 0 else size)
            self.left -= take
            return self.block if take == len(self.block) else self.block[:take]
        tail, self.tail = self.tail, b""
        return tail


def peak_bytes(work: Any) -> tuple[Any, int]:
    """What work() returns and the peak of Python memory allocated while it ran."""
    tracemalloc.start()
    try:
        result = work()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def reference_lines(data: bytes, max_line: int) -> list[bytes]:
    """iter_lines over the whole input at once: what any chunking must give."""
    pieces = data.removeprefix(b"\xef\xbb\xbf").split(b"\n")
    if pieces[-1] == b"":
        pieces.pop()
    lines = [p[:-1] if p.endswith(b"\r") else p for p in pieces]
    return [line if len(line) <= max_line else bulk.TOO_LONG for line in lines]


@given(
    data=st.lists(
        st.sampled_from([b"a", b"bcdefg", b"\n", b"\r", b"\r\n", b"\xef\xbb\xbf", b"\xef"])
    ).map(b"".join),
    chunk=st.integers(1, 12),
    max_line=st.integers(0, 9),
)
def test_iter_lines_gives_overlong_lines_as_one_marker_whatever_the_chunks(
    data: bytes, chunk: int, max_line: int
) -> None:
    got = list(bulk.iter_lines(io.BytesIO(data), chunk=chunk, max_line=max_line))
    assert got == reference_lines(data, max_line)


def test_iter_lines_keeps_a_longest_line_and_its_crlf() -> None:
    longest = b"a" * bulk.MAX_LINE
    body = longest + b"\r\n" + longest + b"b\n" + longest
    assert list(bulk.iter_lines(io.BytesIO(body), chunk=1000)) == [
        longest,
        bulk.TOO_LONG,
        longest,
    ]


def test_iter_lines_skips_a_32_mib_line_in_bounded_memory() -> None:
    body = NoNewline(32 << 20)
    lines, peak = peak_bytes(lambda: list(bulk.iter_lines(body)))
    assert lines == [bulk.TOO_LONG, b"after@example.se"]
    # Whatever the line's length, the reader holds at most a chunk and a line's start: its
    # work per chunk is bounded, so the whole read is linear in the input.
    assert peak < 1 << 20
    assert body.reads == (32 << 20) // bulk.READ_CHUNK + 2  # read as it comes, chunk by chunk


@pytest.mark.db_agnostic
def test_stream_skips_an_overlong_line_in_bounded_memory(
    client: FlaskClient, seeded: dict[str, str]
) -> None:
    body = NoNewline(32 << 20)
    size = (32 << 20) + len(body.tail)
    response, peak = peak_bytes(
        lambda: client.post(
            "/v1/filter?list=news",
            headers={**bearer(seeded["mailer"]), "Content-Type": "text/plain"},
            environ_overrides={"wsgi.input": body, "CONTENT_LENGTH": str(size)},
        )
    )
    assert response.status_code == 200
    assert response.data == b"after@example.se\n# checked=2 allowed=1 suppressed=0 invalid=1\n"
    assert peak < 4 << 20


@pytest.mark.db_agnostic
def test_stream_counts_overlong_lines_and_fields_as_invalid_lines(
    client: FlaskClient, seeded: dict[str, str]
) -> None:
    columns = b"a@example.se," + b"n" * (bulk.MAX_LINE - 13)  # a long row that still fits
    body = (
        columns
        + b"\n"
        + b"x" * (1 << 20)
        + b"\n"
        + b'"'
        + b"y" * 200_000
        + b'",z@example.se\n'  # a field over the csv module's limit
        + b"b@example.se\n"
    )
    response = stream(client, seeded["mailer"], body, ctype="text/csv")
    assert response.status_code == 200
    allowed, trailer = trailer_of(response.get_data(as_text=True))
    assert allowed == [columns.decode(), "b@example.se"]
    assert trailer == "# checked=4 allowed=2 suppressed=0 invalid=2"


# --- JSON filter -----------------------------------------------------------------------------


def test_json_filter_answers_allowed_suppressed_and_invalid(
    client: FlaskClient, seeded: dict[str, str]
) -> None:
    emails = ["a@example.se", "Anna.Berg@example.se", "bad", "x@example.org", "olle@example.se"]
    response = client.post(
        "/v1/filter", json={"list": "news", "emails": emails}, headers=bearer(seeded["mailer"])
    )
    assert response.status_code == 200
    assert response.get_json() == {
        "list": "news",
        "checked": 5,
        "allowed": ["a@example.se"],
        "suppressed": [
            {"email": "Anna.Berg@example.se", "reason": "unsubscribe", "scope": "news"},
            {"email": "x@example.org", "reason": "manual", "scope": "news"},
            {"email": "olle@example.se", "reason": "objection", "scope": "global"},
        ],
        "invalid": [{"email": "bad", "code": "invalid_email"}],
    }


def test_json_filter_takes_100000_addresses_over_1_mib_and_refuses_more(
    client: FlaskClient, tokens: dict[str, str]
) -> None:
    emails = [f"recipient.number{i:06d}@example.se" for i in range(100_000)]
    body = json.dumps({"list": "news", "emails": emails})
    assert len(body) > 1 << 20
    ok = client.post(
        "/v1/filter", data=body, content_type="application/json", headers=bearer(tokens["mailer"])
    )
    assert ok.status_code == 200
    assert ok.get_json()["checked"] == 100_000 and len(ok.get_json()["allowed"]) == 100_000
    over = client.post(
        "/v1/filter",
        json={"list": "news", "emails": [*emails, "one@example.se"]},
        headers=bearer(tokens["mailer"]),
    )
    assert over.status_code == 413
    assert over.get_json()["error"]["code"] == "payload_too_large"
    huge = client.post(
        "/v1/filter",
        data=b'{"list": "news", "emails": ["' + b"a" * (api.MAX_FILTER_JSON_BYTES) + b'"]}',
        content_type="application/json",
        headers=bearer(tokens["mailer"]),
    )
    assert huge.status_code == 413


@pytest.mark.db_agnostic
def test_json_filter_validates_its_body(client: FlaskClient, tokens: dict[str, str]) -> None:
    headers = bearer(tokens["mailer"])
    bad_list = client.post("/v1/filter", json={"list": "News!", "emails": []}, headers=headers)
    assert bad_list.status_code == 422
    no_emails = client.post("/v1/filter", json={"list": "news"}, headers=headers)
    assert no_emails.status_code == 400
    numbers = client.post("/v1/filter", json={"list": "news", "emails": [7]}, headers=headers)
    assert numbers.status_code == 400
    empty = client.post("/v1/filter", json={"list": "news", "emails": []}, headers=headers)
    assert empty.get_json()["checked"] == 0


def test_filter_rekeys_old_pepper_hits(db_url: str, tmp_path: Path) -> None:
    from suppress import apikeys, create_app
    from suppress.models import Role

    old_app = create_app(settings(db_url, tmp_path, peppers=OLD_PEPPER))
    old_rt: Runtime = old_app.extensions["suppress"]
    with old_rt.db.begin() as session:
        _k, token = apikeys.create(session, "rec", Role.recorder, actor="test")
    add(old_app.test_client(), token, email="a@example.se", list="news", reason="unsubscribe")
    add(old_app.test_client(), token, domain="example.org", list="news", reason="manual")
    old_rt.db.dispose()

    new_app = create_app(settings(db_url, tmp_path, peppers=f"{TEST_PEPPER},{OLD_PEPPER}"))
    new_rt: Runtime = new_app.extensions["suppress"]
    client = new_app.test_client()
    body = b"a@example.se\nb@example.se\nc@example.org\n"
    response = stream(client, token, body)
    assert response.data == b"b@example.se\n# checked=3 allowed=1 suppressed=2 invalid=0\n"
    with new_rt.db.begin(write=False) as session:
        assert set(session.scalars(select(Suppression.key_id))) == {"t1"}
    assert stream(client, token, body).data == response.data
    new_rt.db.dispose()


def test_check_many_agrees_with_check(rt: Runtime, seeded: dict[str, str]) -> None:
    targeter = Targeter(rt.ring)
    emails = ["a@example.se", "anna.berg@example.se", "x@a.b.example.org", "olle@example.se"]
    targets = [targeter.target(e) for e in emails]
    now = clock.utcnow()
    with rt.db.begin(write=False) as session:
        many = suppressions.check_many(session, targets, "news", now=now)
        single = [suppressions.check(session, t, "news", now=now) for t in targets]
    assert many == single
    assert [v.allowed for v in many] == [True, False, False, False]


# --- imports ---------------------------------------------------------------------------------


def post_import(
    client: FlaskClient,
    token: str,
    body: bytes,
    query: str = "list=news&reason=unsubscribe&source=crm",
    key: str | None = None,
    ctype: str = "text/csv",
) -> Any:
    headers = {**bearer(token), "Content-Type": ctype}
    if key:
        headers["Idempotency-Key"] = key
    return client.post(f"/v1/imports?{query}", data=body, headers=headers)


def count(rt: Runtime, model: Any = Suppression) -> int:
    with rt.db.begin(write=False) as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_import_adds_counts_and_reports_invalid_lines(
    client: FlaskClient, tokens: dict[str, str], rt: Runtime
) -> None:
    body = (
        b"email,name\n"
        b"a@example.se,A\n"
        b"\n"
        b"A+tag@Example.SE,again\n"  # the same mailbox: existing
        b"b@example.se\n"
        b"nonsense\n"
        b"\xff@example.se\n"
    )
    response = post_import(client, tokens["recorder"], body)
    assert response.status_code == 200
    assert response.get_json() == {
        "received": 6,
        "added": 2,
        "existing": 1,
        "invalid": 3,
        "invalid_lines": [
            {"line": 1, "code": "invalid_email"},
            {"line": 6, "code": "invalid_email"},
            {"line": 7, "code": "invalid_email"},
        ],
    }
    assert count(rt) == 2
    mailer = tokens["mailer"]
    answer = stream(client, mailer, b"a@example.se\nb@example.se\nc@example.se\n").data
    assert answer == b"c@example.se\n# checked=3 allowed=1 suppressed=2 invalid=0\n"
    with rt.db.begin(write=False) as session:
        rows = session.scalars(select(Suppression)).all()
        assert {(r.list, r.reason.value, r.source) for r in rows} == {
            ("news", "unsubscribe", "crm")
        }
        events = session.scalars(select(AuditEvent).where(AuditEvent.action == "add")).all()
        assert len(events) == 2 and {e.source for e in events} == {"crm"}
        assert audit.verify(session).ok


def test_import_numbers_overlong_lines_and_fields_as_one_invalid_line_each(
    client: FlaskClient, tokens: dict[str, str], rt: Runtime
) -> None:
    body = (
        b"a@example.se\n"
        + b"x" * (3 << 20)
        + b"\n"  # line 2
        + b"b@example.se,Bo\n"
        + b"nonsense\n"
        + b'"'
        + b"y" * 200_000
        + b'",c@example.se\r\n'  # line 5
        + b"d@example.se"
    )
    response = post_import(client, tokens["recorder"], body)
    assert response.status_code == 200
    assert response.get_json() == {
        "received": 6,
        "added": 3,
        "existing": 0,
        "invalid": 3,
        "invalid_lines": [
            {"line": 2, "code": "line_too_long"},
            {"line": 4, "code": "invalid_email"},
            {"line": 5, "code": "line_too_long"},
        ],
    }
    assert count(rt) == 3


def test_a_csv_field_over_the_csv_modules_limit_is_an_invalid_address() -> None:
    import csv

    # iter_lines never hands over such a line; address_field does not depend on it.
    line = b'"' + b"y" * (csv.field_size_limit() + 1) + b'",c@example.se'
    assert bulk.address_field(line, csv_mode=True) == ""
    assert bulk.address_field(b'"c@example.se",x', csv_mode=True) == "c@example.se"


def test_import_is_idempotent_and_never_removes(
    client: FlaskClient, tokens: dict[str, str], rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bulk, "IMPORT_BATCH", 3)
    body = "".join(f"u{i}@example.se\n" for i in range(10)).encode()
    first = post_import(client, tokens["recorder"], body).get_json()
    assert (first["added"], first["existing"]) == (10, 0)
    second = post_import(client, tokens["recorder"], body[: len(body) // 2]).get_json()
    assert (second["received"], second["added"], second["existing"]) == (5, 0, 5)
    assert count(rt) == 10
    with rt.db.begin(write=False) as session:
        assert audit.verify(session).ok
        assert audit.verify(session).events == 10 + 3  # 3 API keys created by the fixture


def test_import_makes_a_temporary_bounce_permanent(
    client: FlaskClient, tokens: dict[str, str], rt: Runtime
) -> None:
    add(
        client,
        tokens["recorder"],
        email="b@example.se",
        list="news",
        reason="soft_bounce",
        expires_at="2999-01-01T00:00:00Z",
    )
    result = post_import(client, tokens["recorder"], b"b@example.se\nc@example.se\n").get_json()
    assert (result["added"], result["existing"]) == (1, 1)
    with rt.db.begin(write=False) as session:
        assert session.scalars(select(Suppression.expires_at)).all() == [None, None]


def test_import_idempotency_key_replays_and_rejects_another_body(
    client: FlaskClient, tokens: dict[str, str], rt: Runtime
) -> None:
    body = b"a@example.se\nb@example.se\nbad\n"
    first = post_import(client, tokens["recorder"], body, key="imp-1")
    assert first.status_code == 200 and first.get_json()["added"] == 2
    again = post_import(client, tokens["recorder"], body, key="imp-1")
    assert again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json() == first.get_json()
    other = post_import(client, tokens["recorder"], b"c@example.se\n", key="imp-1")
    assert other.status_code == 422
    assert other.get_json()["error"]["code"] == "idempotency_key_reused"
    other_list = post_import(
        client, tokens["recorder"], body, key="imp-1", query="list=offers&reason=unsubscribe"
    )
    assert other_list.status_code == 422
    assert count(rt) == 2
    with rt.db.begin(write=False) as session:
        stored = session.scalars(select(IdempotencyKey.response)).all()
    assert len(stored) == 1 and "@" not in stored[0] and "example" not in stored[0]


@pytest.mark.db_agnostic
def test_import_validates_its_query_type_and_role(
    client: FlaskClient, tokens: dict[str, str]
) -> None:
    rec = tokens["recorder"]
    assert (
        post_import(client, rec, b"a@example.se\n", query="reason=unsubscribe").status_code == 422
    )
    bad_reason = post_import(client, rec, b"a@example.se\n", query="list=news&reason=nope")
    assert bad_reason.get_json()["error"]["code"] == "invalid_reason"
    leaky = post_import(
        client, rec, b"a@example.se\n", query="list=news&reason=manual&source=from+x@example.se"
    )
    assert leaky.status_code == 400
    assert post_import(client, rec, b"{}", ctype="application/json").status_code == 415
    assert post_import(client, tokens["mailer"], b"a@example.se\n").status_code == 403
    plain = post_import(client, rec, b'"q"@example.se\n', ctype="text/plain").get_json()
    assert plain["invalid"] == 1


def test_import_of_more_than_1_mib(
    client: FlaskClient, tokens: dict[str, str], rt: Runtime
) -> None:
    body = "".join(f"long.recipient.name{i:06d}@example.se\n" for i in range(40_000)).encode()
    assert len(body) > 1 << 20
    result = post_import(client, tokens["recorder"], body, key="big").get_json()
    assert (result["received"], result["added"]) == (40_000, 40_000)
    assert count(rt) == 40_000


@pytest.mark.db_agnostic
def test_openapi_documents_the_bulk_routes(client: FlaskClient) -> None:
    doc = client.get("/v1/openapi.json").get_json()
    paths = doc["paths"]
    filter_op = paths["/v1/filter"]["post"]
    assert set(filter_op["requestBody"]["content"]) == {
        "application/json",
        "text/plain",
        "text/csv",
    }
    body = resolve(doc, filter_op["requestBody"]["content"]["application/json"]["schema"])
    assert body["properties"]["emails"]["maxItems"] == api.MAX_FILTER_EMAILS
    imports = paths["/v1/imports"]["post"]
    assert {p["name"] for p in imports["parameters"]} == {
        "list",
        "reason",
        "source",
        "Idempotency-Key",
    }


@pytest.mark.db_agnostic
def test_json_filter_refuses_a_different_list_in_the_query(
    client: FlaskClient, tokens: dict[str, str]
) -> None:
    body = {"list": "news", "emails": ["a@example.se"]}
    headers = bearer(tokens["mailer"])
    assert client.post("/v1/filter?list=offers", json=body, headers=headers).status_code == 400
    assert client.post("/v1/filter?list=news", json=body, headers=headers).status_code == 200


@pytest.mark.parametrize("batch", [1, 3, 1000])
def test_stream_and_json_filter_agree_on_every_kind_of_match(
    client: FlaskClient, seeded: dict[str, str], monkeypatch: pytest.MonkeyPatch, batch: int
) -> None:
    # The stream decides from digests alone and builds the full target only for hits; the JSON
    # filter builds every target: both must let through exactly the same recipients, whatever
    # the batch boundaries (a domain's digests are shared by every address of the domain).
    add(client, seeded["recorder"], domain="sub.example.com", list="global", reason="manual")
    monkeypatch.setattr(bulk, "FILTER_BATCH", batch)
    emails = [
        "a@example.se", "ANNA.BERG@example.se", "olle@Example.SE", "x@example.org",
        "y@deep.sub.example.org", "kim@example.net", "z@sub.example.com", "z@example.com",
        "w@a.sub.example.com", "bad", "p@example.org.se", "anna.berg@example.org",
    ]  # fmt: skip
    body = "\n".join(emails).encode() + b"\n"
    lines, trailer = trailer_of(stream(client, seeded["mailer"], body).get_data(as_text=True))
    answer = client.post(
        "/v1/filter", json={"list": "news", "emails": emails}, headers=bearer(seeded["mailer"])
    ).get_json()
    assert lines == answer["allowed"] == [
        "a@example.se", "kim@example.net", "z@example.com", "p@example.org.se"
    ]  # fmt: skip
    assert trailer == "# checked=12 allowed=4 suppressed=7 invalid=1"


@pytest.mark.parametrize("ctype", ["text/csv", "text/plain"])
@pytest.mark.parametrize("brk", ["\r", "\x0b", "\x0c", "\x1e", "\x85", "\u2028", "\u2029"])
def test_a_line_holding_another_line_break_is_invalid_never_passed_on(
    client: FlaskClient, seeded: dict[str, str], ctype: str, brk: str
) -> None:
    # A CR alone ends lines in old Mac files, and a CSV reader of the answer would split on
    # it: the suppressed anna.berg would come out of an "allowed" line as a record of its own.
    line = f"first.ok@example.se,Anna{brk}anna.berg@example.se,Bo{brk}third@example.se"
    body = (line + "\nplain@example.se\n").encode()
    lines, trailer = trailer_of(
        stream(client, seeded["mailer"], body, ctype=ctype).get_data(as_text=True)
    )
    assert lines == ["plain@example.se"]
    assert trailer == "# checked=2 allowed=1 suppressed=0 invalid=1"


def test_an_import_counts_a_line_holding_a_cr_as_invalid_not_as_imported(
    client: FlaskClient, tokens: dict[str, str]
) -> None:
    body = b"one@example.se,A\rtwo@example.se,B\rthree@example.se,C\r\nfour@example.se\r\n"
    answer = post_import(client, tokens["recorder"], body).get_json()
    assert answer["received"] == 2 and answer["added"] == 1 and answer["invalid"] == 1
    assert answer["invalid_lines"] == [{"line": 1, "code": "invalid_email"}]


def test_a_query_parameter_given_twice_is_refused_not_guessed(
    client: FlaskClient, seeded: dict[str, str]
) -> None:
    for query in ("list=global&list=news", "list=news&list=global"):
        response = client.post(
            f"/v1/filter?{query}",
            data=b"anna.berg@example.se\n",
            headers={**bearer(seeded["mailer"]), "Content-Type": "text/plain"},
        )
        assert response.status_code == 400
        assert response.get_json()["error"]["message"] == "the query gives 'list' more than once"
    response = client.post(
        "/v1/imports?list=news&reason=unsubscribe&x@example.se=1&x@example.se=2",
        data=b"a@example.se\n",
        headers={**bearer(seeded["recorder"]), "Content-Type": "text/plain"},
    )
    assert response.status_code == 400
    assert "example" not in response.get_data(as_text=True)
