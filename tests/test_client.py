"""suppress.client: fail closed on every failure; yield only confirmed addresses."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from typing import Any

import pytest
import requests
from requests.adapters import BaseAdapter

from suppress.client import Client, ClientError

URL = "https://suppress.example.com"


class FakeService(BaseAdapter):
    """A requests transport answering from a function: (status, body bytes, headers)."""

    def __init__(self, answer: Callable[[requests.PreparedRequest, bytes], Any]):
        super().__init__()
        self.answer = answer
        self.calls: list[tuple[str, bytes]] = []

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        body = request.body
        if hasattr(body, "read"):
            body = b"".join(iter(lambda: body.read(8192), b""))  # type: ignore[union-attr]
        elif isinstance(body, str):
            body = body.encode()
        self.calls.append((request.path_url, body or b""))
        result = self.answer(request, body or b"")
        if isinstance(result, Exception):
            raise result
        status, data, headers = result
        response = requests.Response()
        response.status_code = status
        response.headers.update(headers)
        response.raw = io.BytesIO(data)
        response.url = request.url or ""
        response.request = request
        return response

    def close(self) -> None:
        pass


def client_with(answer: Callable[..., Any], **kwargs: Any) -> tuple[Client, FakeService]:
    service = FakeService(answer)
    session = requests.Session()
    session.mount("https://", service)
    kwargs.setdefault("backoff", 0)
    return Client(URL, "sk_test", session=session, **kwargs), service


def echo_filter(suppressed: set[bytes] = frozenset(), *, trailer: bool = True, fudge: int = 0):  # type: ignore[no-untyped-def,assignment]
    """A well-behaved streamed filter (optionally broken)."""

    def answer(request: requests.PreparedRequest, body: bytes) -> Any:
        lines = body.splitlines()
        allowed = [line for line in lines if line not in suppressed]
        out = b"".join(line + b"\n" for line in allowed)
        if trailer:
            out += (
                f"# checked={len(lines) + fudge} allowed={len(allowed)} "
                f"suppressed={len(lines) - len(allowed)} invalid=0\n"
            ).encode()
        return 200, out, {"Content-Type": "text/plain"}

    return answer


def test_filter_yields_allowed_in_order_and_skips_blanks() -> None:
    client, service = client_with(echo_filter({b"b@example.se"}))
    emails = (e for e in ["a@example.se", " ", "b@example.se", "c@example.se"])
    assert list(client.filter(emails, "news")) == ["a@example.se", "c@example.se"]
    ((path, body),) = service.calls
    assert path == "/v1/filter?list=news"
    assert body == b"a@example.se\nb@example.se\nc@example.se\n"


def test_filter_yields_nothing_without_the_trailer() -> None:
    client, _ = client_with(echo_filter(trailer=False))
    results: list[str] = []
    with pytest.raises(ClientError, match="cut off"):
        for email in client.filter(["a@example.se", "b@example.se"], "news"):
            results.append(email)
    assert results == []


def test_filter_rejects_a_trailer_that_disagrees() -> None:
    client, _ = client_with(echo_filter(fudge=1))
    with pytest.raises(ClientError, match="does not agree"):
        list(client.filter(["a@example.se"], "news"))


def test_filter_rejects_a_line_it_did_not_send() -> None:
    def answer(request: Any, body: bytes) -> Any:
        return 200, b"evil@example.se\n# checked=1 allowed=1 suppressed=0 invalid=0\n", {}

    client, _ = client_with(answer)
    with pytest.raises(ClientError, match="not sent"):
        list(client.filter(["a@example.se"], "news"))


def test_filter_rejects_line_breaks_inside_an_address() -> None:
    client, service = client_with(echo_filter())
    with pytest.raises(ClientError, match="line break"):
        list(client.filter(["a@example.se\nb@example.se"], "news"))
    assert service.calls == []


def test_retries_idempotent_calls_on_503_then_succeeds() -> None:
    answers = iter(
        [
            (503, b'{"error": {"code": "unavailable", "message": "db"}}', {}),
            requests.ConnectionError("reset"),
        ]
    )

    def answer(request: Any, body: bytes) -> Any:
        try:
            return next(answers)
        except StopIteration:
            return echo_filter()(request, body)

    client, service = client_with(answer, retries=2)
    assert list(client.filter(["a@example.se"], "news")) == ["a@example.se"]
    assert len(service.calls) == 3
    assert {body for _, body in service.calls} == {b"a@example.se\n"}  # resent whole


def test_gives_up_after_the_retries_and_raises() -> None:
    client, service = client_with(lambda r, b: requests.Timeout("slow"), retries=1)
    with pytest.raises(ClientError, match="no answer"):
        client.check("a@example.se", "news")
    assert len(service.calls) == 2


def test_client_errors_are_not_retried_and_carry_the_code() -> None:
    body = json.dumps({"error": {"code": "unauthorized", "message": "bad token"}}).encode()
    client, service = client_with(lambda r, b: (401, body, {}))
    with pytest.raises(ClientError) as info:
        list(client.filter(["a@example.se"], "news"))
    assert (info.value.status, info.value.code) == (401, "unauthorized")
    assert len(service.calls) == 1


def test_check_parses_the_verdict_and_rejects_a_wrong_one() -> None:
    verdict = {"email": "a@example.se", "list": "news", "allowed": False, "suppressions": [{}]}
    client, _ = client_with(lambda r, b: (200, json.dumps(verdict).encode(), {}))
    result = client.check("a@example.se", "news")
    assert (result.allowed, result.list_name, len(result.suppressions)) == (False, "news", 1)
    garbled = {"email": "a@example.se", "list": "news", "allowed": "yes"}
    client, _ = client_with(lambda r, b: (200, json.dumps(garbled).encode(), {}))
    with pytest.raises(ClientError):
        client.check("a@example.se", "news")
    client, _ = client_with(lambda r, b: (200, b"<html>proxy</html>", {}))
    with pytest.raises(ClientError, match="not JSON"):
        client.check("a@example.se", "news")


def links_answer(request: requests.PreparedRequest, body: bytes) -> Any:
    data = json.loads(body)
    valid = [e for e in data["emails"] if "@" in e]
    invalid = [{"email": e, "code": "invalid_email"} for e in data["emails"] if "@" not in e]
    links = [
        {
            "email": email,
            "url": f"{URL}/u/tok{i}",
            "headers": {
                "List-Unsubscribe": f"<{URL}/u/tok{i}>",
                "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            },
        }
        for i, email in enumerate(valid)
    ]
    return 200, json.dumps({"links": links, "invalid": invalid}).encode(), {}


def test_unsubscribe_links_batches_and_keeps_order() -> None:
    client, service = client_with(links_answer)
    emails = [f"u{i}@example.se" for i in range(2500)]
    links = client.unsubscribe_links("news", emails)
    assert [link["email"] for link in links] == emails
    assert len(service.calls) == 3
    assert all(path == "/v1/unsubscribe-links" for path, _ in service.calls)
    assert json.loads(service.calls[0][1])["list"] == "news"


def test_unsubscribe_links_skips_addresses_the_service_finds_invalid() -> None:
    client, _ = client_with(links_answer)
    links = client.unsubscribe_links("news", ["a@example.se", "not an address", "b@example.se"])
    assert [link["email"] for link in links] == ["a@example.se", "b@example.se"]


def test_unsubscribe_links_rejects_a_mismatched_answer() -> None:
    def short(request: Any, body: bytes) -> Any:
        status, data, headers = links_answer(request, body)
        payload = json.loads(data)
        payload["links"] = payload["links"][:-1]
        return status, json.dumps(payload).encode(), headers

    client, _ = client_with(short)
    with pytest.raises(ClientError, match="does not match"):
        client.unsubscribe_links("news", ["a@example.se", "b@example.se"])


def test_a_client_needs_url_and_token() -> None:
    with pytest.raises(ClientError):
        Client("", "sk_x")
    with pytest.raises(ClientError):
        Client(URL, "")
