"""End to end over real HTTP (gunicorn, 2 workers): streamed filter, imports, client and CLI."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from suppress.client import Client, ClientError

from .conftest import LiveServer

pytestmark = pytest.mark.e2e


def new_token(server: LiveServer, role: str = "recorder") -> str:
    created = server.cli("keys", "create", "--name", f"e2e-{role}", "--role", role)
    assert created.returncode == 0, created.stderr
    return str(created.stdout.strip().splitlines()[-1])


def recipients(n: int) -> Iterator[str]:
    for i in range(n):
        yield f"Recipient.{i:05d}+news@Example.se"


def test_streamed_filter_import_client_and_cli_over_http(
    live_server: LiveServer, tmp_path: Path
) -> None:
    token = new_token(live_server)
    url = live_server.url
    headers = {"Authorization": f"Bearer {token}"}

    # Import every third recipient, streamed with chunked transfer encoding.
    def body() -> Iterator[bytes]:
        for i in range(0, 9_000, 3):
            yield f"recipient.{i:05d}@example.se\n".encode()
        yield b"not-an-address\n"

    imported = requests.post(
        url + "/v1/imports",
        params={"list": "news", "reason": "unsubscribe", "source": "e2e"},
        data=body(),
        headers={**headers, "Content-Type": "text/csv", "Idempotency-Key": "e2e-import-1"},
        timeout=120,
    )
    assert imported.status_code == 200, imported.text
    assert imported.json() == {
        "received": 3_001,
        "added": 3_000,
        "existing": 0,
        "invalid": 1,
        "invalid_lines": [{"line": 3_001, "code": "invalid_email"}],
    }

    # The client sends everything, then yields only what the verified answer allowed.
    client = Client(url, token)
    allowed = list(client.filter(recipients(9_000), "news"))
    expected = [e for i, e in enumerate(recipients(9_000)) if i % 3]
    assert allowed == expected
    assert client.check("recipient.00003@example.se", "news").allowed is False
    assert client.check("recipient.00003@example.se", "other").allowed is True

    # Unsubscribe links for the allowed ones; an invalid address gets none.
    links = client.unsubscribe_links("news", ["keep.me@example.se", "not an address"])
    assert [link["email"] for link in links] == ["keep.me@example.se"]
    assert links[0]["url"].startswith(url + "/u/")
    assert links[0]["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"

    # A plain streamed request (chunked upload) answers lines, then the trailer.
    raw = requests.post(
        url + "/v1/filter",
        params={"list": "news"},
        data=(line.encode() + b"\n" for line in ["a@example.se", "recipient.00000@example.se"]),
        headers={**headers, "Content-Type": "text/plain"},
        timeout=60,
    )
    assert raw.status_code == 200
    assert raw.text == "a@example.se\n# checked=2 allowed=1 suppressed=1 invalid=0\n"

    # A suppression committed before a filter starts is seen by whichever worker answers.
    for i in range(6):
        email = f"late{i}@example.se"
        added = requests.post(
            url + "/v1/suppressions",
            json={"email": email, "list": "news", "reason": "unsubscribe"},
            headers=headers,
            timeout=10,
        )
        assert added.status_code == 201
        assert list(client.filter([email, "keep@example.se"], "news")) == ["keep@example.se"]

    # The CLI, over HTTP and against the same database directly, says the same.
    listing = tmp_path / "recipients.csv"
    listing.write_text(
        "email,name\n" + "".join(f"{e},Name {i}\n" for i, e in enumerate(recipients(300)))
    )
    over_http = live_server.cli(
        "filter", "--list", "news", "--url", url, "--token", token, str(listing)
    )
    assert over_http.returncode == 0, over_http.stderr
    lines = over_http.stdout.splitlines()
    assert lines == [f"{e},Name {i}" for i, e in enumerate(recipients(300)) if i % 3]
    local = live_server.cli("filter", "--list", "news", str(listing))
    assert local.returncode == 0, local.stderr
    assert local.stdout == over_http.stdout

    # Fail closed: with the service gone, no output and a non-zero exit.
    assert live_server.stop() == 0
    gone = live_server.cli("filter", "--list", "news", "--url", url, "--token", token, str(listing))
    assert gone.returncode != 0
    assert gone.stdout == ""
    assert "error:" in gone.stderr
    with pytest.raises(ClientError):
        list(Client(url, token, retries=0).filter(["a@example.se"], "news"))


@pytest.mark.db_agnostic
def test_cli_filter_over_http_fails_closed_on_a_bad_token(
    live_server: LiveServer, tmp_path: Path
) -> None:
    listing = tmp_path / "r.txt"
    listing.write_text("a@example.se\n")
    result = live_server.cli(
        "filter", "--list", "news", "--url", live_server.url, "--token", "sk_wrong", str(listing)
    )
    assert result.returncode != 0
    assert result.stdout == ""
    assert "unauthorized" in result.stderr


@pytest.mark.db_agnostic
def test_cli_filter_over_http_counts_an_overlong_line_as_one_invalid_line(
    live_server: LiveServer, tmp_path: Path
) -> None:
    token = new_token(live_server, "mailer")
    listing = tmp_path / "hostile.csv"
    listing.write_bytes(
        b"a@example.se,Anna\n"
        + b"x" * (8 << 20)
        + b"\n"  # read locally by the same line reader, sent as one line
        + b'"'
        + b"y" * 200_000
        + b'",z@example.se\n'
        + b"b@example.se,Bo\n"
    )
    result = live_server.cli(
        "filter", "--list", "news", "--url", live_server.url, "--token", token, str(listing)
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "a@example.se,Anna\nb@example.se,Bo\n"
