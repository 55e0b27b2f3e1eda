"""`suppress serve`: access logs never show an unsubscribe token; a flood of page hits is no 5xx."""

from __future__ import annotations

import datetime
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests
from gunicorn.config import Config

from suppress.server import RedactingLogger

from .conftest import LiveServer

TOKEN = "WyJhYmMiLCJ0MSIsIm5ld3MiXQ.c2lnbmF0dXJlLXBhcnQ"


def access_line(path: str, query: str = "", raw: str | None = None) -> str:
    cfg = Config()
    cfg.set("accesslog", "-")
    logger = RedactingLogger(cfg)
    environ = {
        "REQUEST_METHOD": "POST",
        "RAW_URI": raw or (path + (f"?{query}" if query else "")),
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "192.0.2.1",
        "HTTP_REFERER": f"https://suppress.example.com/u/{TOKEN}?lang=en",
        "HTTP_USER_AGENT": "test",
    }
    resp = SimpleNamespace(status="200 OK", sent=10, headers=[])
    req = SimpleNamespace(headers=[("Referer", environ["HTTP_REFERER"])])
    atoms = logger.atoms(resp, req, environ, datetime.timedelta(microseconds=1500))
    return str(cfg.access_log_format % logger.atoms_wrapper_class(atoms))


@pytest.mark.parametrize(
    ("path", "query", "raw"),
    [
        (f"/u/{TOKEN}", "", None),
        (f"/u/{TOKEN}", "lang=sv", None),
        # The same page reached through a percent-encoded spelling of its path.
        (f"/u/{TOKEN}", "", f"/%75/{TOKEN}"),
        (f"//u/{TOKEN}", "", f"//%75/{TOKEN}"),
        (f"//u/{TOKEN}", "", f"/%2F%75/{TOKEN}"),
        (f"/U/{TOKEN}", "", f"/U/{TOKEN}"),
    ],
)
def test_access_log_redacts_tokens(path: str, query: str, raw: str | None) -> None:
    line = access_line(path, query, raw)
    assert TOKEN not in line
    assert "/u/[token]" in line
    assert '"POST /u/[token]' in line
    if query:
        assert "?lang=sv" in line


@pytest.mark.parametrize(
    "query",
    [
        "list=news&source=leak.check@example.se",
        "source=leak.check%40example.se&list=news",
        "source=Leak.Check%40Example.SE",
    ],
)
def test_access_log_drops_addresses_put_in_a_query_string(query: str) -> None:
    line = access_line("/v1/imports", query)
    assert "leak.check" not in line.lower() and "example.se" not in line.lower()
    assert "source=[redacted]" in line
    assert '"POST /v1/imports?' in line


def test_access_log_keeps_other_paths() -> None:
    line = access_line("/v1/check")
    assert '"POST /v1/check HTTP/1.1"' in line


@pytest.mark.e2e
def test_served_pages_keep_tokens_out_of_the_log_and_survive_a_flood(
    empty_db_url: str, tmp_path: Path
) -> None:
    # The shipped page budget, per day rather than per minute: no window ends mid-flood.
    live_server = LiveServer(
        empty_db_url, tmp_path, extra_env={"SUPPRESS_RATELIMIT_PAGES": "120 per day"}
    )
    try:
        created = live_server.cli("keys", "create", "--name", "e2e", "--role", "mailer")
        key = created.stdout.strip().splitlines()[-1]
        headers = {"Authorization": f"Bearer {key}"}
        links = requests.post(
            live_server.url + "/v1/unsubscribe-links",
            json={"list": "news", "emails": ["flood@example.se"]},
            headers=headers,
            timeout=10,
        ).json()["links"]
        url = links[0]["url"]
        assert url.startswith(live_server.url + "/u/")
        token = url.rsplit("/", 1)[1]

        def hit(i: int) -> int:
            if i % 4 == 0:
                response = requests.post(url, data={"List-Unsubscribe": "One-Click"}, timeout=30)
            else:
                response = requests.get(url, timeout=30)
            return response.status_code

        # Two workers with per-process counters allow at most 2 x 120.
        with ThreadPoolExecutor(max_workers=8) as pool:
            statuses = list(pool.map(hit, range(400)))
        assert set(statuses) <= {200, 429}
        assert 120 <= statuses.count(200) <= 240
        limited = requests.get(url, timeout=10)
        assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1

        check = requests.post(
            live_server.url + "/v1/check",
            json={"email": "flood@example.se", "list": "news"},
            headers=headers,
            timeout=10,
        )
        assert check.json()["allowed"] is False
        assert live_server.stop() == 0
        log = live_server.log_path.read_text()
        assert "/u/[token]" in log
        assert token not in log
        assert token[:20] not in log
    finally:
        live_server.stop()
