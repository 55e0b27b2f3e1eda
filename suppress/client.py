"""Fail-closed HTTP client for mailing jobs: check, filter and unsubscribe links.

Every failure raises ClientError; the caller must then treat every address it has not seen
confirmed as suppressed. filter() yields nothing until the whole answer has arrived, its
trailer is present and its counts agree with what was sent.
"""

from __future__ import annotations

import re
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import IO, Any

import requests

TRAILER = re.compile(rb"# checked=(\d+) allowed=(\d+) suppressed=(\d+) invalid=(\d+)")
RETRY_STATUSES = frozenset({429, 502, 503, 504})
LINKS_PER_REQUEST = 1_000
SPOOL_BYTES = 8 << 20
CHUNK = 1 << 16


class ClientError(Exception):
    """The service did not confirm an answer: treat the addresses concerned as suppressed."""

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code


@dataclass(frozen=True)
class CheckResult:
    """The answer of POST /v1/check."""

    email: str
    list_name: str
    allowed: bool
    suppressions: list[dict[str, Any]]


def is_blank(line: bytes) -> bool:
    """Whether the service skips this line uncounted (the same rule as the server's)."""
    try:
        return not line.decode("utf-8").strip()
    except UnicodeDecodeError:
        return False


class Client:
    """A small client of the suppress API for mailing jobs.

    check and filter are reads and unsubscribe_links only signs tokens, so all three are
    retried on connection errors, timeouts and 429/502/503/504, with exponential backoff.
    """

    def __init__(
        self,
        url: str,
        token: str,
        *,
        timeout: float = 10.0,
        filter_timeout: float = 900.0,
        retries: int = 2,
        backoff: float = 0.5,
        session: requests.Session | None = None,
    ):
        if not url or not token:
            raise ClientError("a service URL and an API token are required")
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.filter_timeout = filter_timeout
        self.retries = retries
        self.backoff = backoff
        self.http = session or requests.Session()
        self.http.headers["Authorization"] = f"Bearer {token}"

    # --- transport -----------------------------------------------------------------------

    def _post(
        self, path: str, *, rewind: Callable[[], None] | None = None, **kwargs: Any
    ) -> requests.Response:
        """POST with retries; a non-2xx answer raises ClientError with the error code."""
        attempt = 0
        while True:
            if rewind:
                rewind()
            try:
                response = self.http.post(self.url + path, **kwargs)
            except requests.RequestException as exc:
                if attempt >= self.retries:
                    raise ClientError(f"{path}: no answer ({type(exc).__name__}: {exc})") from exc
                response = None
            if response is not None:
                if response.ok:
                    return response
                if response.status_code not in RETRY_STATUSES or attempt >= self.retries:
                    raise _error(path, response)
                response.close()
            delay = self.backoff * 2**attempt
            if response is not None and response.headers.get("Retry-After", "").isdigit():
                delay = max(delay, min(float(response.headers["Retry-After"]), 60.0))
            time.sleep(delay)
            attempt += 1

    # --- calls ---------------------------------------------------------------------------

    def check(self, email: str, list_name: str) -> CheckResult:
        """May direct marketing on the list go to this address? Raises on any failure."""
        body = _json(
            self._post("/v1/check", json={"email": email, "list": list_name}, timeout=self.timeout)
        )
        allowed = body.get("allowed")
        if not isinstance(allowed, bool) or body.get("list") != list_name:
            raise ClientError("/v1/check: the answer is not a verdict for this request")
        return CheckResult(email, list_name, allowed, list(body.get("suppressions") or []))

    def filter(
        self,
        emails: Iterable[str],
        list_name: str,
        *,
        progress: Callable[[int], None] | None = None,
    ) -> Iterator[str]:
        """The allowed addresses of an iterable, as given and in order (a generator).

        Blank entries are skipped (never yielded). Nothing is yielded before the whole
        answer is verified; any failure raises ClientError.
        """

        def encoded() -> Iterator[bytes]:
            for email in emails:
                if not isinstance(email, str):
                    raise ClientError(f"filter takes strings, not {type(email).__name__}")
                yield email.encode("utf-8")

        for line in self.filter_lines(encoded(), list_name, progress=progress):
            yield line.decode("utf-8")

    def filter_lines(
        self,
        lines: Iterable[bytes],
        list_name: str,
        *,
        csv: bool = False,
        progress: Callable[[int], None] | None = None,
    ) -> Iterator[bytes]:
        """filter() over raw lines (bytes without terminators); csv: the first column counts."""
        with tempfile.TemporaryFile() as sent, tempfile.SpooledTemporaryFile(SPOOL_BYTES) as got:
            count = _spool_lines(lines, sent)
            total = sent.tell()

            def rewind() -> None:
                sent.seek(0)

            response = self._post(
                "/v1/filter",
                rewind=rewind,
                params={"list": list_name},
                data=_Reader(sent, total, progress),
                headers={
                    "Content-Type": "text/csv" if csv else "text/plain; charset=utf-8",
                    "Content-Length": str(total),
                },
                timeout=(self.timeout, self.filter_timeout),
                stream=True,
            )
            allowed = _receive(response, got, count)
            sent.seek(0)
            got.seek(0)
            _verify_subsequence(got, sent, allowed)
            got.seek(0)
            for _ in range(allowed):
                yield got.readline()[:-1]

    def unsubscribe_links(self, list_name: str, emails: Sequence[str]) -> list[dict[str, Any]]:
        """The unsubscribe link and headers of each valid address, in input order.

        Addresses the service finds invalid get no link (and cannot be mailed anyway); the
        answer is checked to account for every address sent, in order.
        """
        links: list[dict[str, Any]] = []
        for start in range(0, len(emails), LINKS_PER_REQUEST):
            part = list(emails[start : start + LINKS_PER_REQUEST])
            body = _json(
                self._post(
                    "/v1/unsubscribe-links",
                    json={"list": list_name, "emails": part},
                    timeout=self.timeout,
                )
            )
            got, invalid = body.get("links"), body.get("invalid", [])
            if not _links_account_for(part, got, invalid):
                raise ClientError("/v1/unsubscribe-links: the answer does not match the request")
            links.extend(got)  # type: ignore[arg-type]
        return links


# --- helpers ---------------------------------------------------------------------------------


class _Reader:
    """A file-like body that reports upload progress (requests streams it in chunks)."""

    def __init__(self, source: IO[bytes], length: int, progress: Callable[[int], None] | None):
        self.source, self.length, self.progress = source, length, progress

    def __len__(self) -> int:
        return self.length

    def read(self, size: int = -1) -> bytes:
        data = self.source.read(CHUNK if size is None or size < 0 else size)
        if self.progress and data:
            self.progress(len(data))
        return data


def _spool_lines(lines: Iterable[bytes], out: IO[bytes]) -> int:
    """Write the non-blank lines to out (so a retry can resend them); return their count."""
    count = 0
    for line in lines:
        if b"\n" in line or b"\r" in line:
            raise ClientError("an address must not contain a line break")
        if is_blank(line):
            continue
        out.write(line + b"\n")
        count += 1
    return count


def _receive(response: requests.Response, out: IO[bytes], sent: int) -> int:
    """Spool the streamed answer, check its trailer against what was sent; return allowed."""
    last = b""
    lines = 0
    try:
        for chunk in response.iter_content(CHUNK):
            out.write(chunk)
            lines += chunk.count(b"\n")
            last = (last + chunk)[-200:]
    except requests.RequestException as exc:
        raise ClientError(f"/v1/filter: the answer was cut off ({type(exc).__name__})") from exc
    finally:
        response.close()
    if not last.endswith(b"\n"):
        raise ClientError("/v1/filter: the answer was cut off (no trailer)")
    match = TRAILER.fullmatch(last[:-1].rpartition(b"\n")[2])
    if match is None:
        raise ClientError("/v1/filter: the answer was cut off (no trailer)")
    checked, allowed, suppressed, invalid = (int(g) for g in match.groups())
    if checked != sent or checked != allowed + suppressed + invalid or lines - 1 != allowed:
        raise ClientError(
            f"/v1/filter: the trailer does not agree with the request "
            f"(sent {sent}, {match.group(0).decode()}, {lines - 1} lines)"
        )
    return allowed


def _verify_subsequence(got: IO[bytes], sent: IO[bytes], allowed: int) -> None:
    """Every answered line must be a sent line, in order: nothing is vouched for unseen."""
    for _ in range(allowed):
        line = got.readline()
        while True:
            candidate = sent.readline()
            if not candidate:
                raise ClientError("/v1/filter: the answer holds a line that was not sent")
            if candidate == line:
                break


def _links_account_for(sent: list[str], links: Any, invalid: Any) -> bool:
    """Links for a subsequence of sent, in order, and the rest reported invalid."""
    if not isinstance(links, list) or not isinstance(invalid, list):
        return False
    if any(not isinstance(i, dict) or not isinstance(i.get("email"), str) for i in invalid):
        return False
    if len(links) + len(invalid) != len(sent):
        return False
    remaining = iter(sent)
    for link in links:
        if not isinstance(link, dict) or not link.get("url"):
            return False
        if not isinstance(link.get("headers"), dict):
            return False
        if not any(email == link.get("email") for email in remaining):
            return False
    linked = {link["email"] for link in links}
    return all(i["email"] in sent and i["email"] not in linked for i in invalid)


def _json(response: requests.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        raise ClientError(f"{response.url}: the answer is not JSON") from None
    if not isinstance(body, dict):
        raise ClientError(f"{response.url}: the answer is not a JSON object")
    return body


def _error(path: str, response: requests.Response) -> ClientError:
    code = message = None
    try:
        error = response.json().get("error", {})
        code, message = error.get("code"), error.get("message")
    except (ValueError, AttributeError):
        pass
    return ClientError(
        f"{path}: HTTP {response.status_code}"
        + (f" {code}: {message}" if code else f" {response.reason}"),
        status=response.status_code,
        code=code,
    )
