"""End to end: the webhook receivers of the installed `suppress serve`, over real HTTP, on
SQLite and PostgreSQL, configured the way an operator does (SUPPRESS_WEBHOOK_* variables)."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from .conftest import LiveServer
from .test_webhooks import (
    BREVO_TOKEN,
    MAILGUN_KEY,
    POSTMARK_AUTH,
    SENDGRID_KEY,
    SENDGRID_PUBLIC,
    TOPIC,
    basic,
    load,
    mailgun_signature,
    sns,
)

ENV = {
    "SUPPRESS_WEBHOOK_SENDGRID_PUBLIC_KEY": SENDGRID_PUBLIC,
    "SUPPRESS_WEBHOOK_SENDGRID_LIST": "news",
    "SUPPRESS_WEBHOOK_MAILGUN_SIGNING_KEY": MAILGUN_KEY,
    "SUPPRESS_WEBHOOK_POSTMARK_BASIC_AUTH": POSTMARK_AUTH,
    "SUPPRESS_WEBHOOK_SES_TOPIC_ARNS": TOPIC,
}
MARK = "e2ehook"


@pytest.fixture
def server(empty_db_url: str, tmp_path: Path) -> Iterator[LiveServer]:
    live = LiveServer(empty_db_url, tmp_path, extra_env=ENV)
    yield live
    live.stop()


def signed_sendgrid(body: bytes) -> dict[str, str]:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    stamp = str(int(time.time()))
    signature = SENDGRID_KEY.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return {
        "Content-Type": "application/json",
        "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
        "X-Twilio-Email-Event-Webhook-Timestamp": stamp,
    }


def test_the_installed_server_takes_signed_deliveries_and_refuses_forgeries(
    server: LiveServer,
) -> None:
    created = server.cli("keys", "create", "--name", "hooks", "--role", "mailer")
    assert created.returncode == 0, created.stderr
    check_headers = {"Authorization": f"Bearer {created.stdout.strip().splitlines()[-1]}"}

    def allowed(email: str, list_name: str) -> bool:
        answer = requests.post(
            server.url + "/v1/check",
            json={"email": email, "list": list_name},
            headers=check_headers,
            timeout=10,
        )
        assert answer.status_code == 200
        return bool(answer.json()["allowed"])

    # SendGrid: a batch of 1,000 is taken in one go; its retry adds nothing.
    batch = [
        {"event": "unsubscribe", "email": f"{MARK}{i}@example.com", "sg_event_id": f"e{i}"}
        for i in range(999)
    ] + [{"event": "spamreport", "email": f"{MARK}-spam@example.com", "sg_event_id": "s"}]
    body = json.dumps(batch).encode()
    url = server.url + "/webhooks/sendgrid"
    first = requests.post(url, data=body, headers=signed_sendgrid(body), timeout=60)
    assert first.status_code == 200, first.text
    assert first.json()["added"] == 1000 and first.json()["received"] == 1000
    again = requests.post(url, data=body, headers=signed_sendgrid(body), timeout=60)
    assert again.json()["duplicate"] == 1000 and again.json()["added"] == 0
    assert not allowed(f"{MARK}0@example.com", "news")
    assert allowed(f"{MARK}0@example.com", "other")  # SUPPRESS_WEBHOOK_SENDGRID_LIST=news
    assert not allowed(f"{MARK}-spam@example.com", "other")  # a complaint: global
    forged = {**signed_sendgrid(body), "X-Twilio-Email-Event-Webhook-Timestamp": "1"}
    assert requests.post(url, data=body, headers=forged, timeout=30).status_code == 401

    # Mailgun: signed with the key; the same token twice is a replay.
    mailgun = {**load("mailgun-unsubscribed.json"), "signature": mailgun_signature()}
    mailgun["event-data"]["recipient"] = f"{MARK}-mg@example.com"
    taken = requests.post(server.url + "/webhooks/mailgun", json=mailgun, timeout=10)
    assert taken.status_code == 200 and taken.json()["added"] == 1
    replay = requests.post(server.url + "/webhooks/mailgun", json=mailgun, timeout=10)
    assert replay.status_code == 401
    assert not allowed(f"{MARK}-mg@example.com", "news")

    # Postmark: basic credentials.
    complaint = {**load("postmark-spam-complaint.json"), "Email": f"{MARK}-pm@example.com"}
    wrong = requests.post(
        server.url + "/webhooks/postmark", json=complaint, headers=basic("a:b"), timeout=10
    )
    assert wrong.status_code == 401
    good = requests.post(
        server.url + "/webhooks/postmark", json=complaint, headers=basic(POSTMARK_AUTH), timeout=10
    )
    assert good.status_code == 200 and good.json()["added"] == 1

    # Brevo is not configured here: its route does not exist. SES refuses a certificate from
    # anywhere but SNS before fetching anything.
    brevo = requests.post(
        server.url + "/webhooks/brevo",
        json=load("brevo-unsubscribed.json"),
        headers={"Authorization": f"Bearer {BREVO_TOKEN}"},
        timeout=10,
    )
    assert brevo.status_code == 404
    forged_sns = json.loads(sns(load("ses-sns-bounce-permanent.json")))
    forged_sns["SigningCertURL"] = "https://127.0.0.1:1/SimpleNotificationService-1.pem"
    ses = requests.post(
        server.url + "/webhooks/ses",
        data=json.dumps(forged_sns),
        headers={"Content-Type": "text/plain; charset=UTF-8"},
        timeout=10,
    )
    assert ses.status_code == 401
    oversized = requests.post(
        url, data=b"[" + b" " * (5 << 20) + b"]", headers=signed_sendgrid(b"[]"), timeout=30
    )
    assert oversized.status_code == 413

    metrics = requests.get(server.url + "/metrics", timeout=10).text
    assert 'suppress_webhook_requests_total{outcome="accepted",provider="sendgrid"} 2.0' in (
        metrics
    )
    assert 'suppress_webhook_events_total{provider="sendgrid",result="added"} 1000.0' in metrics
    server.stop()
    log = server.log_path.read_text()
    assert "webhook sendgrid: received=1000 added=1000" in log
    assert MARK not in log
