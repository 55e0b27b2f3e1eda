"""`suppress webhooks test`: a sample delivery to the running server, and what its answer means."""

from __future__ import annotations

import base64
import json
import secrets
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from suppress import webhooks

from .conftest import SUPPRESS, TEST_PEPPER, TOKEN_SECRET, LiveServer, free_port, outside_tree

pytestmark = pytest.mark.e2e

TOPIC = "arn:aws:sns:eu-north-1:123456789012:ses-events"


def _sendgrid_public_key() -> str:
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    der = key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode()


# Fresh secrets per session, so that any of them appearing in an output is caught.
SECRETS = {
    "SUPPRESS_WEBHOOK_MAILGUN_SIGNING_KEY": "key-" + secrets.token_hex(16),
    "SUPPRESS_WEBHOOK_POSTMARK_BASIC_AUTH": "postmark:" + secrets.token_hex(12),
    "SUPPRESS_WEBHOOK_BREVO_TOKEN": secrets.token_hex(20),
}
HOOKS = {
    **SECRETS,
    "SUPPRESS_WEBHOOK_SENDGRID_PUBLIC_KEY": _sendgrid_public_key(),
    "SUPPRESS_WEBHOOK_SES_TOPIC_ARNS": TOPIC,
}
WRONG = {
    "mailgun": {"SUPPRESS_WEBHOOK_MAILGUN_SIGNING_KEY": "key-" + secrets.token_hex(16)},
    "postmark": {"SUPPRESS_WEBHOOK_POSTMARK_BASIC_AUTH": "postmark:" + secrets.token_hex(12)},
    "brevo": {"SUPPRESS_WEBHOOK_BREVO_TOKEN": secrets.token_hex(20)},
}
PROOF = {
    "mailgun": "(the receiver verified the signature)",
    "postmark": "(the receiver accepted the credentials)",
    "brevo": "(the receiver accepted the token)",
}


@pytest.fixture
def hooked(db_url: str, tmp_path: Path) -> Iterator[LiveServer]:
    """The installed server with every receiver configured."""
    server = LiveServer(db_url, tmp_path, workers=1, extra_env=HOOKS)
    yield server
    server.stop()


def webhooks_test(
    env: dict[str, str], cwd: Path, *args: str, **changes: str | None
) -> subprocess.CompletedProcess[str]:
    """`suppress webhooks test ARGS` with the server's environment, changed (None: unset)."""
    changed = {**env, **changes}
    return subprocess.run(
        [*SUPPRESS, "webhooks", "test", *args],
        env={name: value for name, value in changed.items() if value is not None},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def run(server: LiveServer, *args: str, **changes: str | None) -> Any:
    return webhooks_test(server.env, server.cwd, *args, **changes)


def one_line(done: subprocess.CompletedProcess[str], code: int) -> str:
    """The one stderr line of a failed run, which names no secret."""
    assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    no_secrets(done)
    return lines[0]


def passed(done: subprocess.CompletedProcess[str]) -> str:
    """The one stdout line of a run that exited 0, which names no secret."""
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert done.stderr == "" and done.stdout.count("\n") == 1, (done.stdout, done.stderr)
    no_secrets(done)
    return done.stdout.strip()


def no_secrets(done: subprocess.CompletedProcess[str]) -> None:
    shown = done.stdout + done.stderr
    for value in [*SECRETS.values(), *(v for w in WRONG.values() for v in w.values())]:
        assert value not in shown
        password = value.partition(":")[2]
        assert not password or password not in shown


def suppression_count(server: LiveServer) -> int:
    exported = server.cli("export")
    assert exported.returncode == 0, exported.stderr
    return len(exported.stdout.splitlines())


def samples(server: LiveServer) -> dict[str, dict[tuple[str, str], float]]:
    """The webhook counters of /metrics: name -> (provider, outcome or result) -> value."""
    from prometheus_client.parser import text_string_to_metric_families

    found: dict[str, dict[tuple[str, str], float]] = {}
    text = requests.get(server.url + "/metrics", timeout=5).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.startswith("suppress_webhook_") and sample.name.endswith("_total"):
                labels = sample.labels
                key = (labels["provider"], labels.get("outcome") or labels["result"])
                found.setdefault(sample.name, {})[key] = sample.value
    return found


def test_the_default_samples_are_authenticated_and_suppress_nothing(hooked: LiveServer) -> None:
    for provider in ("mailgun", "postmark", "brevo"):
        line = passed(run(hooked, provider))
        assert line == f"{provider}: 200 received=1 ignored=1 {PROOF[provider]}"
    # Each Mailgun sample has a token of its own: a second run is no replay.
    assert passed(run(hooked, "mailgun")).startswith("mailgun: 200 received=1 ignored=1")
    # A URL that already names the receiver is taken as it is.
    direct = run(hooked, "brevo", "--url", hooked.url + "/webhooks/brevo")
    assert passed(direct).startswith("brevo: 200 received=1 ignored=1")
    assert suppression_count(hooked) == 0
    counted = samples(hooked)
    assert counted["suppress_webhook_requests_total"] == {
        ("mailgun", "accepted"): 2,
        ("postmark", "accepted"): 1,
        ("brevo", "accepted"): 2,
    }
    assert counted["suppress_webhook_events_total"] == {
        (provider, result): number
        for provider, number in (("mailgun", 2), ("postmark", 1), ("brevo", 2))
        for result in ("received", "ignored")
    }


def test_suppress_sends_an_unsubscribe_that_is_recorded_for_real(hooked: LiveServer) -> None:
    created = hooked.cli("keys", "create", "--name", "hooks", "--role", "admin")
    assert created.returncode == 0, created.stderr
    headers = {"Authorization": f"Bearer {created.stdout.strip().splitlines()[-1]}"}

    def verdict(email: str) -> dict[str, Any]:
        answer = requests.post(
            hooked.url + "/v1/check",
            headers=headers,
            json={"email": email, "list": "news"},
            timeout=5,
        )
        assert answer.status_code == 200
        return answer.json()  # type: ignore[no-any-return]

    assert verdict("someone@example.com")["allowed"] is True
    line = passed(run(hooked, "mailgun", "--suppress", "someone@example.com"))
    assert line == (
        "mailgun: 200 received=1 added=1 (the receiver verified the signature; the address is "
        "now suppressed on global, reason unsubscribe)"
    )
    after = verdict("Someone@Example.com")
    assert after["allowed"] is False
    assert [(s["scope"], s["reason"]) for s in after["suppressions"]] == [("global", "unsubscribe")]
    found = hooked.cli("lookup", "someone@example.com", "--json")
    assert found.returncode == 0, found.stderr
    assert [row["source"] for row in json.loads(found.stdout)["suppressions"]] == [
        "webhook:mailgun"
    ]
    # The other authenticated receivers find it suppressed already, and add nothing.
    for provider in ("postmark", "brevo"):
        line = passed(run(hooked, provider, "--suppress", "someone@example.com"))
        assert line.startswith(f"{provider}: 200 received=1 existing=1 ")
    assert passed(run(hooked, "brevo", "--suppress", "other@example.com")).startswith(
        "brevo: 200 received=1 added=1 "
    )
    assert verdict("other@example.com")["allowed"] is False
    assert suppression_count(hooked) == 2
    # The addresses went over the wire only: the server's log never held them.
    assert "@example.com" not in hooked.log_path.read_text().lower()


def test_a_secret_that_differs_from_the_servers_fails_in_one_line(hooked: LiveServer) -> None:
    for provider, wrong in WRONG.items():
        (name,) = wrong
        line = one_line(run(hooked, provider, **wrong), 1)
        assert line.startswith(f"error: {provider}: 401 refused by {hooked.url}/webhooks/")
        assert f"{name} here is not what the server holds" in line
    # Nor does the wrong secret suppress anything when asked to.
    refused = run(hooked, "mailgun", "--suppress", "someone@example.com", **WRONG["mailgun"])
    assert "401 refused" in one_line(refused, 1)
    assert suppression_count(hooked) == 0


def test_sendgrid_and_ses_are_refused_unsigned_as_expected(hooked: LiveServer) -> None:
    sendgrid = passed(run(hooked, "sendgrid"))
    assert sendgrid.startswith("sendgrid: 401 as expected: the receiver is enabled and refused")
    assert '"Test Your Integration"' in sendgrid
    ses = passed(run(hooked, "ses"))
    assert ses.startswith("ses: 401 as expected: the receiver is enabled and refused")
    assert "bounce address of the SES mailbox simulator (AWS's guide: 'Using the mailbox" in ses
    # These two cannot be made to suppress anything: refused before anything is sent.
    for provider in ("sendgrid", "ses"):
        line = one_line(run(hooked, provider, "--suppress", "someone@example.com"), 2)
        assert "--suppress needs a receiver this command can authenticate to" in line
    assert suppression_count(hooked) == 0


def test_a_receiver_the_server_lacks_is_a_failure(live_server: LiveServer) -> None:
    for provider, name in (
        ("brevo", "SUPPRESS_WEBHOOK_BREVO_TOKEN"),
        ("sendgrid", "SUPPRESS_WEBHOOK_SENDGRID_PUBLIC_KEY"),
    ):
        line = one_line(run(live_server, provider, **{name: HOOKS[name]}), 1)
        assert line == (
            f"error: {provider}: 404: {live_server.url}/webhooks/{provider} has no {provider} "
            f"receiver; set {name} on the server (or --url names another service)"
        )


# --- without a server of ours -----------------------------------------------------------------


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "SUPPRESS_PEPPERS": TEST_PEPPER,
        "SUPPRESS_TOKEN_SECRETS": TOKEN_SECRET,
        "SUPPRESS_DATABASE_URL": f"sqlite:///{tmp_path / 'never.db'}",
        **extra,
    }


@pytest.mark.parametrize("provider", webhooks.PROVIDERS)
def test_a_receiver_not_configured_here_is_one_line_naming_its_variable(
    provider: str, tmp_path: Path
) -> None:
    done = webhooks_test(_env(tmp_path), outside_tree(tmp_path), provider)
    name = {
        "sendgrid": "SUPPRESS_WEBHOOK_SENDGRID_PUBLIC_KEY",
        "mailgun": "SUPPRESS_WEBHOOK_MAILGUN_SIGNING_KEY",
        "postmark": "SUPPRESS_WEBHOOK_POSTMARK_BASIC_AUTH",
        "brevo": "SUPPRESS_WEBHOOK_BREVO_TOKEN",
        "ses": "SUPPRESS_WEBHOOK_SES_TOPIC_ARNS",
    }[provider]
    assert one_line(done, 2).startswith(
        f"error: no {provider} webhook is configured here: set {name} "
    )
    assert not (tmp_path / "never.db").exists()  # the command opens no database


def test_an_unreachable_server_is_one_line_with_its_url(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    env = _env(tmp_path, **SECRETS, SUPPRESS_BASE_URL=url)
    line = one_line(webhooks_test(env, outside_tree(tmp_path), "postmark"), 2)
    assert line == f"error: postmark: cannot reach {url}/webhooks/postmark (ConnectionError)"


def test_an_invalid_address_to_suppress_is_refused_before_sending(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nobody listens: "cannot reach" if it sent
    env = _env(tmp_path, **SECRETS, SUPPRESS_BASE_URL=url)
    done = webhooks_test(env, outside_tree(tmp_path), "mailgun", "--suppress", "not an address")
    assert one_line(done, 2).endswith("[invalid_email]")


class _Canned(BaseHTTPRequestHandler):
    """Answers every POST with the server's `answer`, and keeps what it was sent."""

    def do_POST(self) -> None:  # noqa: N802 (the name http.server calls)
        server: Any = self.server
        length = int(self.headers.get("Content-Length", 0))
        server.seen.append((self.path, dict(self.headers), self.rfile.read(length)))
        status, headers, body = server.answer
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def canned() -> Iterator[Any]:
    server: Any = ThreadingHTTPServer(("127.0.0.1", 0), _Canned)
    server.seen = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_other_answers_are_failures_in_one_line(canned: Any, tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{canned.server_address[1]}"
    env = _env(tmp_path, **HOOKS, SUPPRESS_BASE_URL=url)
    cwd = outside_tree(tmp_path)
    unavailable = {"error": {"code": "unavailable", "message": "database unavailable; retry"}}
    cases: list[tuple[str, tuple[int, dict[str, str], bytes], str]] = [
        (
            "mailgun",
            (503, {"Content-Type": "application/json"}, json.dumps(unavailable).encode()),
            f"error: mailgun: 503 from {url}/webhooks/mailgun: database unavailable; retry",
        ),
        (
            "sendgrid",
            (502, {"Content-Type": "text/html"}, b"<html>Bad Gateway</html>"),
            f"error: sendgrid: 502 from {url}/webhooks/sendgrid: a text/html answer, not the "
            "service's",
        ),
        (
            "brevo",
            (301, {"Location": "https://suppress.example.com/webhooks/brevo"}, b""),
            f"error: brevo: 301: {url}/webhooks/brevo redirects to "
            "https://suppress.example.com/webhooks/brevo; give --url the final address",
        ),
        (
            "sendgrid",
            (200, {"Content-Type": "application/json"}, b'{"received": 1}'),
            f"error: sendgrid: 200: the receiver at {url}/webhooks/sendgrid TOOK AN UNSIGNED "
            "delivery; it must refuse it (401)",
        ),
        (
            "postmark",
            (200, {"Content-Type": "application/json"}, b"[]"),
            f"error: postmark: 200 from {url}/webhooks/postmark, but not the receiver's counts",
        ),
    ]
    for provider, answer, expected in cases:
        canned.answer = answer
        assert one_line(webhooks_test(env, cwd, provider), 1) == expected
    counts = {"received": 1, "added": 1, "existing": 0, "duplicate": 0, "ignored": 0, "invalid": 0}
    canned.answer = (200, {"Content-Type": "application/json"}, json.dumps(counts).encode())
    line = one_line(webhooks_test(env, cwd, "brevo"), 1)
    assert line == "error: brevo: 200 received=1 added=1: the sample should have been ignored"


def test_the_samples_are_signed_as_the_providers_sign(canned: Any, tmp_path: Path) -> None:
    """What goes over the wire, checked with the receivers' own verification."""
    url = f"http://127.0.0.1:{canned.server_address[1]}"
    env = _env(tmp_path, **HOOKS, SUPPRESS_BASE_URL=url + "/")
    counts = {"received": 1, "added": 0, "existing": 0, "duplicate": 0, "ignored": 1, "invalid": 0}
    canned.answer = (200, {"Content-Type": "application/json"}, json.dumps(counts).encode())
    cwd = outside_tree(tmp_path)
    for provider in ("mailgun", "postmark", "brevo"):
        passed(webhooks_test(env, cwd, provider))
    (mg_path, _, mg_body), (pm_path, pm_headers, _), (br_path, br_headers, br_body) = canned.seen
    assert (mg_path, pm_path, br_path) == (
        "/webhooks/mailgun",
        "/webhooks/postmark",
        "/webhooks/brevo",
    )
    mailgun = json.loads(mg_body)
    token = webhooks.verify_mailgun(
        SECRETS["SUPPRESS_WEBHOOK_MAILGUN_SIGNING_KEY"], mailgun["signature"], time.time()
    )
    assert len(token) == 50 and token.isalnum()
    assert mailgun["event-data"]["event"] == "delivered"
    assert not list(webhooks.mailgun_events(mailgun, "global"))
    webhooks.verify_basic(
        SECRETS["SUPPRESS_WEBHOOK_POSTMARK_BASIC_AUTH"], pm_headers["Authorization"]
    )
    webhooks.verify_bearer(SECRETS["SUPPRESS_WEBHOOK_BREVO_TOKEN"], br_headers["Authorization"])
    assert json.loads(br_body)["email"].endswith("@example.com")
