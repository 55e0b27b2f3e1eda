"""The webhook receivers (DESIGN §9) through the app, on SQLite and PostgreSQL: each
provider's real scheme against forged, stale and replayed requests, the mapping recorded
once per event, a batch that fails half-way, and no address anywhere it is kept."""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import logging
import secrets
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select, text

from suppress import clock, jobs, receivers, webhooks
from suppress.models import AuditEvent, Suppression, WebhookEvent
from suppress.runtime import Runtime

from .conftest import bearer, settings

FIXTURES = Path(__file__).parent / "fixtures" / "webhooks"
SENDGRID_KEY = ec.generate_private_key(ec.SECP256R1())
SENDGRID_PUBLIC = base64.b64encode(
    SENDGRID_KEY.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
).decode()
MAILGUN_KEY = "key-3ax6xnjp29jd6fds4gc373sgvjxteol0"  # the mailgun-php vector's key
POSTMARK_AUTH = "postmark-hook:pm-password-for-tests"
BREVO_TOKEN = "brevo-token-for-tests-0123456789"
TOPIC = "arn:aws:sns:eu-north-1:123456789012:ses-events"
CERT_URL = "https://sns.eu-north-1.amazonaws.com/SimpleNotificationService-0123abcd.pem"
HOOKS = {
    "sendgrid": {"public_key": SENDGRID_PUBLIC, "list": "news"},
    "mailgun": {"signing_key": MAILGUN_KEY, "list": "news"},
    "postmark": {"basic_auth": POSTMARK_AUTH, "list": "news"},
    "brevo": {"token": BREVO_TOKEN, "list": "news"},
    "ses": {"topic_arns": TOPIC, "list": "news"},
}


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text("utf-8"))


def _sns_signer() -> tuple[rsa.RSAPrivateKey, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
    start = datetime.now(UTC) - timedelta(days=1)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    return key, cert.public_bytes(serialization.Encoding.PEM)


SNS_KEY, SNS_PEM = _sns_signer()


@pytest.fixture
def overrides(db_url: str, tmp_path: Path) -> dict[str, Any]:
    return settings(db_url, tmp_path, webhooks=copy.deepcopy(HOOKS))


@pytest.fixture
def visited(app: Flask) -> list[str]:
    """SNS certificates come from the test; SubscribeURL visits are recorded, not made."""
    fetched: list[str] = []
    app.extensions[receivers.SNS_CERTIFICATE] = lambda url: fetched.append(url) or SNS_PEM
    seen: list[str] = []
    app.extensions[receivers.SNS_VISIT] = lambda url: seen.append(url) or b"<ok/>"
    return seen


# --- requests as each provider makes them -----------------------------------------------------


def sendgrid(client: FlaskClient, body: bytes, *, stamp: int | None = None, key: Any = None) -> Any:
    stamp_text = str(int(time.time()) if stamp is None else stamp)
    signature = (key or SENDGRID_KEY).sign(stamp_text.encode() + body, ec.ECDSA(hashes.SHA256()))
    return client.post(
        "/webhooks/sendgrid",
        data=body,
        content_type="application/json",
        headers={
            "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
            "X-Twilio-Email-Event-Webhook-Timestamp": stamp_text,
        },
    )


def mailgun_signature(key: str = MAILGUN_KEY, stamp: int | None = None) -> dict[str, str]:
    stamp_text = str(int(time.time()) if stamp is None else stamp)
    token = secrets.token_hex(25)
    digest = hmac.new(key.encode(), (stamp_text + token).encode(), hashlib.sha256).hexdigest()
    return {"timestamp": stamp_text, "token": token, "signature": digest}


def mailgun(client: FlaskClient, fixture: str, signature: dict[str, str] | None = None) -> Any:
    body = {**load(fixture), "signature": signature or mailgun_signature()}
    return client.post("/webhooks/mailgun", json=body)


def basic(credentials: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(credentials.encode()).decode()}


def sns(
    message: dict[str, Any],
    *,
    version: str = "2",
    at: datetime | None = None,
    topic: str = TOPIC,
) -> bytes:
    moment = at or datetime.now(UTC)
    message = {
        **message,
        "TopicArn": topic,
        "Timestamp": moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z",
        "SignatureVersion": version,
        "SigningCertURL": CERT_URL,
    }
    algorithm = hashes.SHA256() if version == "2" else hashes.SHA1()
    signature = SNS_KEY.sign(webhooks.sns_string_to_sign(message), padding.PKCS1v15(), algorithm)
    return json.dumps({**message, "Signature": base64.b64encode(signature).decode()}).encode()


def ses(client: FlaskClient, body: bytes) -> Any:
    # SNS posts its JSON as text/plain.
    return client.post("/webhooks/ses", data=body, content_type="text/plain; charset=UTF-8")


def allowed(client: FlaskClient, tokens: dict[str, str], email: str, list_name: str) -> bool:
    answer = client.post(
        "/v1/check", json={"email": email, "list": list_name}, headers=bearer(tokens["mailer"])
    )
    assert answer.status_code == 200, answer.get_json()
    return bool(answer.get_json()["allowed"])


def counts(rt: Runtime) -> tuple[int, int, int]:
    with rt.db.begin(write=False) as session:
        return (
            session.scalar(select(func.count()).select_from(Suppression)) or 0,
            session.scalar(select(func.count()).select_from(WebhookEvent)) or 0,
            session.scalar(select(func.count()).select_from(AuditEvent)) or 0,
        )


def taken(**given: int) -> dict[str, int]:
    base = dict.fromkeys(("received", "added", "existing", "duplicate", "ignored", "invalid"), 0)
    return {**base, **given}


# --- configuration ----------------------------------------------------------------------------


def test_a_receiver_is_404_until_its_secret_is_configured(db_url: str, tmp_path: Path) -> None:
    from suppress import create_app

    app = create_app(settings(db_url, tmp_path, webhooks={"brevo": {"token": BREVO_TOKEN}}))
    app.config["TESTING"] = True
    client = app.test_client()
    try:
        for provider in ("sendgrid", "mailgun", "postmark", "ses"):
            answer = client.post(f"/webhooks/{provider}", json=[])
            assert answer.status_code == 404
            assert answer.get_json()["error"]["code"] == "not_found"
        assert client.post("/webhooks/brevo", json={}).status_code == 401
        assert client.post("/webhooks/other", json={}).status_code == 404
    finally:
        app.extensions["suppress"].db.dispose()


# --- SendGrid -----------------------------------------------------------------------------


def test_a_signed_sendgrid_batch_suppresses_as_designed_once(
    client: FlaskClient, tokens: dict[str, str], rt: Runtime
) -> None:
    batch = load("sendgrid-events.json")
    for index, event in enumerate(batch):  # one recipient per event, to see each mapping
        event["email"] = f"reader{index}@example.com"
    body = json.dumps(batch).encode()
    answer = sendgrid(client, body)
    assert answer.status_code == 200, answer.get_json()
    # unsubscribe, group_unsubscribe, spamreport, bounce: 4 added; blocked, dropped,
    # delivered, open: ignored.
    assert answer.get_json() == taken(received=8, added=4, ignored=4)
    assert not allowed(client, tokens, "reader0@example.com", "news")  # unsubscribe: its list
    assert allowed(client, tokens, "reader0@example.com", "other")
    assert not allowed(client, tokens, "reader1@example.com", "news")  # group_unsubscribe
    assert not allowed(client, tokens, "reader2@example.com", "other")  # complaint: global
    assert not allowed(client, tokens, "reader3@example.com", "other")  # bounce: global
    for ignored in (4, 5, 6, 7):
        assert allowed(client, tokens, f"reader{ignored}@example.com", "news")
    before = counts(rt)
    again = sendgrid(client, body)  # SendGrid retries a batch it saw no 2xx for
    assert again.status_code == 200
    assert again.get_json() == taken(received=8, duplicate=4, ignored=4)
    assert counts(rt) == before
    with rt.db.begin(write=False) as session:
        sources = set(session.scalars(select(Suppression.source)))
        actors = set(session.scalars(select(AuditEvent.actor).where(AuditEvent.action == "add")))
    assert sources == {"webhook:sendgrid"} and actors == {"webhook:sendgrid"}


@pytest.mark.parametrize(
    "forgery",
    ["other key", "body changed", "stale", "future", "no signature", "garbage signature"],
)
def test_a_forged_or_stale_sendgrid_request_is_401_and_records_nothing(
    client: FlaskClient, rt: Runtime, forgery: str
) -> None:
    body = json.dumps(load("sendgrid-events.json")).encode()
    before = counts(rt)
    if forgery == "other key":
        answer = sendgrid(client, body, key=ec.generate_private_key(ec.SECP256R1()))
    elif forgery == "body changed":
        stamp = str(int(time.time()))
        signature = SENDGRID_KEY.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
        answer = client.post(
            "/webhooks/sendgrid",
            data=body.replace(b"unsubscribe", b"unsubscribf", 1),
            content_type="application/json",
            headers={
                "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
                "X-Twilio-Email-Event-Webhook-Timestamp": stamp,
            },
        )
    elif forgery == "stale":
        answer = sendgrid(client, body, stamp=int(time.time()) - 301)
    elif forgery == "future":
        answer = sendgrid(client, body, stamp=int(time.time()) + 301)
    elif forgery == "no signature":
        answer = client.post("/webhooks/sendgrid", data=body, content_type="application/json")
    else:
        answer = client.post(
            "/webhooks/sendgrid",
            data=body,
            content_type="application/json",
            headers={
                "X-Twilio-Email-Event-Webhook-Signature": "bm90IGEgc2lnbmF0dXJl",
                "X-Twilio-Email-Event-Webhook-Timestamp": str(int(time.time())),
            },
        )
    assert answer.status_code == 401
    assert answer.get_json()["error"]["code"] == "unauthorized"
    assert "example.com" not in answer.get_data(as_text=True)
    assert counts(rt) == before


def test_the_published_sendgrid_vector_is_taken_at_its_time(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from suppress import create_app

    vector = load("sendgrid-signature-vector.json")
    hooks = {"sendgrid": {"public_key": vector["public_key"]}}
    app = create_app(settings(db_url, tmp_path, webhooks=hooks))
    app.config["TESTING"] = True
    stamp = int(vector["headers"]["X-Twilio-Email-Event-Webhook-Timestamp"])
    moment = datetime.fromtimestamp(stamp + 10, UTC).replace(tzinfo=None)
    monkeypatch.setattr(clock, "utcnow", lambda: moment)
    try:
        answer = app.test_client().post(
            "/webhooks/sendgrid",
            data=base64.b64decode(vector["payload_base64"]),
            content_type="application/json",
            headers=vector["headers"],
        )
    finally:
        app.extensions["suppress"].db.dispose()
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json() == taken(received=1, ignored=1)  # a `dropped` event


@pytest.mark.parametrize(
    ("body", "status"),
    [(b"{not json", 400), (b'{"event": "unsubscribe"}', 400), (b"[" * 100 + b"]" * 100, 400)],
)
def test_a_signed_but_malformed_sendgrid_body_is_4xx(
    client: FlaskClient, rt: Runtime, body: bytes, status: int
) -> None:
    before = counts(rt)
    answer = sendgrid(client, body)
    assert answer.status_code == status
    assert answer.get_json()["error"]["code"] == "invalid_request"
    assert counts(rt) == before


def test_an_oversized_body_is_413_before_anything_is_read(client: FlaskClient, rt: Runtime) -> None:
    body = b"[" + b'{"event":"open","email":"a@example.com"},' * 110_000 + b"{}]"
    assert len(body) > receivers.MAX_BODY
    answer = sendgrid(client, body)
    assert answer.status_code == 413
    assert answer.get_json()["error"]["code"] == "payload_too_large"
    too_big = client.post(
        "/webhooks/brevo",
        data=body,
        content_type="application/json",
        headers={"Authorization": f"Bearer {BREVO_TOKEN}"},
    )
    assert too_big.status_code == 413
    assert counts(rt)[0] == 0


def test_a_batch_of_1000_is_one_transaction_and_a_failure_half_way_commits_nothing(
    client: FlaskClient, tokens: dict[str, str], rt: Runtime
) -> None:
    batch = [
        {"event": "unsubscribe", "email": f"many{i}@example.com", "sg_event_id": f"id-{i}"}
        for i in range(1000)
    ]
    body = json.dumps(batch).encode()
    # The 600th audit event of the batch fails: its suppressions and event ids, written
    # before it in the same transaction, must all go.
    with rt.db.begin() as session:
        start = session.scalar(select(func.count()).select_from(AuditEvent)) or 0
        if session.bind.dialect.name == "postgresql":  # type: ignore[union-attr]
            session.execute(
                text(
                    "CREATE FUNCTION fail_half() RETURNS trigger AS $$ BEGIN "
                    f"IF (SELECT count(*) FROM audit_event) >= {start + 600} THEN "
                    "RAISE EXCEPTION 'half-way'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql"
                )
            )
            session.execute(
                text(
                    "CREATE TRIGGER fail_half BEFORE INSERT ON audit_event "
                    "FOR EACH ROW EXECUTE FUNCTION fail_half()"
                )
            )
        else:
            session.execute(
                text(
                    "CREATE TRIGGER fail_half BEFORE INSERT ON audit_event "
                    f"WHEN (SELECT count(*) FROM audit_event) >= {start + 600} "
                    "BEGIN SELECT RAISE(ABORT, 'half-way'); END"
                )
            )
    before = counts(rt)
    failed = sendgrid(client, body)
    assert failed.status_code == 503
    assert failed.get_json()["error"]["code"] == "unavailable"
    assert counts(rt) == before
    assert allowed(client, tokens, "many0@example.com", "news")  # nothing acknowledged
    with rt.db.begin() as session:
        session.execute(
            text(
                "DROP TRIGGER fail_half"
                + (
                    " ON audit_event" if session.bind.dialect.name == "postgresql" else ""  # type: ignore[union-attr]
                )
            )
        )
    retried = sendgrid(client, body)
    assert retried.status_code == 200
    assert retried.get_json() == taken(received=1000, added=1000)
    assert not allowed(client, tokens, "many0@example.com", "news")
    assert not allowed(client, tokens, "many999@example.com", "news")


# --- Mailgun --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fixture", "expected", "list_name"),
    [
        ("mailgun-unsubscribed.json", taken(received=1, added=1), "news"),
        ("mailgun-complained.json", taken(received=1, added=1), "global"),
        ("mailgun-failed-permanent.json", taken(received=1, added=1), "global"),
        ("mailgun-failed-permanent-suppress-bounce.json", taken(received=1, added=1), "global"),
        ("mailgun-failed-temporary.json", taken(received=1, ignored=1), None),
        ("mailgun-delivered.json", taken(received=1, ignored=1), None),
    ],
)
def test_mailgun_events_map_as_designed(
    client: FlaskClient,
    tokens: dict[str, str],
    fixture: str,
    expected: dict[str, int],
    list_name: str | None,
) -> None:
    answer = mailgun(client, fixture)
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json() == expected
    recipient = load(fixture)["event-data"]["recipient"]
    assert allowed(client, tokens, recipient, "other") is (list_name != "global")
    assert allowed(client, tokens, recipient, "news") is (list_name is None)


def test_a_mailgun_token_is_taken_once_and_a_retry_adds_nothing_twice(
    client: FlaskClient, rt: Runtime
) -> None:
    signature = mailgun_signature()
    first = mailgun(client, "mailgun-unsubscribed.json", signature)
    assert first.get_json() == taken(received=1, added=1)
    before = counts(rt)
    replay = mailgun(client, "mailgun-unsubscribed.json", signature)
    assert replay.status_code == 401
    assert "already used" in replay.get_json()["error"]["message"]
    assert counts(rt) == before
    # Mailgun signs each retry afresh: the same event id is then a duplicate.
    retry = mailgun(client, "mailgun-unsubscribed.json")
    assert retry.get_json() == taken(received=1, duplicate=1)


def test_the_published_mailgun_vector_is_taken_at_its_time_and_forgeries_are_not(
    client: FlaskClient, rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    vector = load("mailgun-signature-vector.json")
    moment = datetime.fromtimestamp(int(vector["signature"]["timestamp"]) + 5, UTC)
    monkeypatch.setattr(clock, "utcnow", lambda: moment.replace(tzinfo=None))
    for case in vector["negative_cases"]:
        assert mailgun(client, "mailgun-delivered.json", case["signature"]).status_code == 401
    wrong_key = mailgun_signature("another-key", int(moment.timestamp()))
    assert mailgun(client, "mailgun-delivered.json", wrong_key).status_code == 401
    stale = mailgun_signature(stamp=int(moment.timestamp()) - 301)
    assert mailgun(client, "mailgun-delivered.json", stale).status_code == 401
    no_signature = client.post(
        "/webhooks/mailgun", json=load("mailgun-delivered.json")["event-data"]
    )
    assert no_signature.status_code == 401
    assert counts(rt)[1] == 0
    good = mailgun(client, "mailgun-delivered.json", vector["signature"])
    assert good.status_code == 200
    assert good.get_json() == taken(received=1, ignored=1)


# --- Postmark and Brevo -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fixture", "expected", "list_name"),
    [
        ("postmark-subscription-change-unsubscribe.json", taken(received=1, added=1), "news"),
        ("postmark-spam-complaint.json", taken(received=1, added=1), "global"),
        ("postmark-bounce-hard.json", taken(received=1, added=1), "global"),
        ("postmark-subscription-change-reactivate.json", taken(received=1, ignored=1), None),
        ("postmark-delivery.json", taken(received=1, ignored=1), None),
    ],
)
def test_postmark_records_map_as_designed(
    client: FlaskClient,
    tokens: dict[str, str],
    fixture: str,
    expected: dict[str, int],
    list_name: str | None,
) -> None:
    payload = load(fixture)
    answer = client.post("/webhooks/postmark", json=payload, headers=basic(POSTMARK_AUTH))
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json() == expected
    recipient = payload.get("Recipient") or payload.get("Email")
    assert allowed(client, tokens, recipient, "other") is (list_name != "global")


@pytest.mark.parametrize(
    "authorization",
    [None, "Basic " + base64.b64encode(b"postmark-hook:wrong").decode(), "Basic !!", "Bearer x"],
)
def test_wrong_postmark_credentials_are_401(
    client: FlaskClient, rt: Runtime, authorization: str | None
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    answer = client.post(
        "/webhooks/postmark", json=load("postmark-spam-complaint.json"), headers=headers
    )
    assert answer.status_code == 401
    assert counts(rt) == (0, 0, counts(rt)[2])


def test_a_reactivation_in_postmark_never_lifts_a_suppression(
    client: FlaskClient, tokens: dict[str, str]
) -> None:
    off = load("postmark-subscription-change-unsubscribe.json")
    on = {**off, "SuppressSending": False, "SuppressionReason": None}
    client.post("/webhooks/postmark", json=off, headers=basic(POSTMARK_AUTH))
    answer = client.post("/webhooks/postmark", json=on, headers=basic(POSTMARK_AUTH))
    assert answer.get_json()["ignored"] == 1
    assert not allowed(client, tokens, off["Recipient"], "news")


@pytest.mark.parametrize(
    ("fixture", "list_name"),
    [
        ("brevo-unsubscribed.json", "news"),
        ("brevo-complaint.json", "global"),
        ("brevo-spam.json", "global"),
        ("brevo-hard-bounce.json", "global"),
        ("brevo-soft-bounce.json", None),
        ("brevo-delivered.json", None),
    ],
)
def test_brevo_events_map_as_designed(
    client: FlaskClient, tokens: dict[str, str], fixture: str, list_name: str | None
) -> None:
    payload = load(fixture)
    headers = {"Authorization": f"Bearer {BREVO_TOKEN}"}
    answer = client.post("/webhooks/brevo", json=payload, headers=headers)
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json()["added" if list_name else "ignored"] == 1
    assert allowed(client, tokens, payload["email"], "other") is (list_name != "global")
    assert allowed(client, tokens, payload["email"], "news") is (list_name is None)
    wrong = client.post("/webhooks/brevo", json=payload, headers={"Authorization": "Bearer no"})
    assert wrong.status_code == 401


def test_a_batched_brevo_delivery_and_its_retry(client: FlaskClient, rt: Runtime) -> None:
    batch = [load("brevo-unsubscribed.json"), load("brevo-hard-bounce.json"), {"event": "x"}]
    batch[1]["email"] = "bounced@example.org"
    headers = {"Authorization": f"Bearer {BREVO_TOKEN}"}
    first = client.post("/webhooks/brevo", json=batch, headers=headers)
    assert first.get_json() == taken(received=3, added=2, ignored=1)
    again = client.post("/webhooks/brevo", json=batch, headers=headers)
    assert again.get_json() == taken(received=3, duplicate=2, ignored=1)


# --- Amazon SES through SNS -----------------------------------------------------------------


@pytest.mark.parametrize("version", ["1", "2"])
def test_signed_ses_notifications_suppress_and_a_retry_adds_nothing_twice(
    client: FlaskClient, tokens: dict[str, str], rt: Runtime, visited: list[str], version: str
) -> None:
    bounce = sns(load("ses-sns-bounce-permanent.json"), version=version)
    answer = ses(client, bounce)
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json() == taken(received=1, added=1)
    assert not allowed(client, tokens, "jane@example.com", "news")
    assert ses(client, bounce).get_json() == taken(received=1, duplicate=1)
    complaint = ses(client, sns(load("ses-sns-complaint.json"), version=version))
    assert complaint.get_json() == taken(received=1, added=1)
    subscription = ses(client, sns(load("ses-sns-subscription-unsubscribe.json")))
    assert subscription.get_json() == taken(received=1, added=1)
    assert not allowed(client, tokens, "recipient@example.com", "news")
    assert allowed(client, tokens, "recipient@example.com", "other")


@pytest.mark.parametrize(
    "forgery", ["other topic", "stale", "other certificate host", "tampered", "unsigned"]
)
def test_forged_sns_messages_are_401_and_fetch_nothing_from_elsewhere(
    app: Flask, client: FlaskClient, rt: Runtime, visited: list[str], forgery: str
) -> None:
    fetched: list[str] = []
    app.extensions[receivers.SNS_CERTIFICATE] = lambda url: fetched.append(url) or SNS_PEM
    message = load("ses-sns-bounce-permanent.json")
    if forgery == "other topic":
        body = sns(message, topic="arn:aws:sns:eu-north-1:123456789012:other")
    elif forgery == "stale":
        body = sns(message, at=datetime.now(UTC) - timedelta(minutes=6))
    elif forgery == "other certificate host":
        signed = json.loads(sns(message))
        signed["SigningCertURL"] = "https://attacker.example.com/SimpleNotificationService-1.pem"
        body = json.dumps(signed).encode()
    elif forgery == "tampered":
        signed = json.loads(sns(message))
        signed["Message"] = signed["Message"].replace("jane@", "someone-else@")
        body = json.dumps(signed).encode()
    else:
        body = json.dumps({**message, "TopicArn": TOPIC}).encode()
    before = counts(rt)
    answer = ses(client, body)
    assert answer.status_code == 401
    assert counts(rt) == before
    assert all(url == CERT_URL for url in fetched)


def test_a_subscription_confirmation_is_verified_then_confirmed_and_audited(
    client: FlaskClient, rt: Runtime, visited: list[str]
) -> None:
    confirmation = load("ses-sns-subscription-confirmation.json")
    answer = ses(client, sns(confirmation))
    assert answer.status_code == 200, answer.get_json()
    assert visited == [confirmation["SubscribeURL"]]
    with rt.db.begin(write=False) as session:
        event = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "webhook_subscribed")
        ).one()
    assert event.detail == {"topic": TOPIC}
    # A confirmation whose SubscribeURL leads elsewhere is never visited.
    elsewhere = {**confirmation, "SubscribeURL": "https://attacker.example.com/?Action=x"}
    assert ses(client, sns(elsewhere)).status_code == 401
    assert len(visited) == 1


# --- what is kept, logged and counted --------------------------------------------------------


def test_no_address_reaches_the_database_the_audit_trail_or_the_logs(
    client: FlaskClient, rt: Runtime, visited: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    marker = f"hook-{uuid.uuid4().hex[:8]}"
    batch = [
        {"event": "unsubscribe", "email": f"{marker}@example.com"},  # no sg_event_id: stand-in
        {"event": "spamreport", "email": f"not an address {marker}"},
        {"event": "open", "email": f"{marker}.open@example.com"},
    ]
    answer = sendgrid(client, json.dumps(batch).encode())
    assert answer.get_json() == taken(received=3, added=1, invalid=1, ignored=1)
    stale = sendgrid(client, json.dumps(batch).encode(), stamp=int(time.time()) - 999)
    assert marker not in stale.get_data(as_text=True)
    mailgun_body = load("mailgun-unsubscribed.json")
    mailgun_body["event-data"]["recipient"] = f"{marker}.mg@example.com"
    mailgun_body["signature"] = mailgun_signature()
    client.post("/webhooks/mailgun", json=mailgun_body)
    with rt.db.begin(write=False) as session:
        dump = "\n".join(
            str(row)
            for table in ("suppression", "audit_event", "webhook_event", "idempotency_key")
            for row in session.execute(text(f"SELECT * FROM {table}"))
        )
    assert marker not in dump
    assert marker not in caplog.text
    assert "webhook sendgrid" in caplog.text  # the counts are logged


def test_metrics_count_deliveries_by_provider_and_outcome(
    client: FlaskClient, visited: list[str]
) -> None:
    def value(name: str, **labels: str) -> float:
        scrape = client.get("/metrics").get_data(as_text=True)
        for line in scrape.splitlines():
            if line.startswith(f"{name}{{") and all(
                f'{k}="{v}"' in line for k, v in labels.items()
            ):
                return float(line.rsplit(" ", 1)[1])
        return 0.0  # a counter is absent until its first increment

    accepted = value("suppress_webhook_requests_total", provider="brevo", outcome="accepted")
    refused = value("suppress_webhook_requests_total", provider="brevo", outcome="refused")
    added = value("suppress_webhook_events_total", provider="brevo", result="added")
    client.post(
        "/webhooks/brevo",
        json=load("brevo-unsubscribed.json"),
        headers={"Authorization": f"Bearer {BREVO_TOKEN}"},
    )
    client.post("/webhooks/brevo", json={}, headers={"Authorization": "Bearer wrong"})
    assert value("suppress_webhook_requests_total", provider="brevo", outcome="accepted") == (
        accepted + 1
    )
    assert value("suppress_webhook_requests_total", provider="brevo", outcome="refused") == (
        refused + 1
    )
    assert value("suppress_webhook_events_total", provider="brevo", result="added") == added + 1


def test_a_complaint_after_a_hard_bounce_strengthens_the_row(
    client: FlaskClient, rt: Runtime
) -> None:
    headers = {"Authorization": f"Bearer {BREVO_TOKEN}"}
    bounce = load("brevo-hard-bounce.json")
    client.post("/webhooks/brevo", json=bounce, headers=headers)
    complaint = {**load("brevo-complaint.json"), "email": bounce["email"]}
    answer = client.post("/webhooks/brevo", json=complaint, headers=headers)
    assert answer.get_json() == taken(received=1, existing=1)
    with rt.db.begin(write=False) as session:
        reasons = list(session.scalars(select(Suppression.reason)))
        actions = list(session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)))
    assert [r.value for r in reasons] == ["complaint"]
    assert actions[-1] == "strengthen"


def test_the_hourly_job_forgets_event_ids_after_the_retention(
    client: FlaskClient, rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    headers = {"Authorization": f"Bearer {BREVO_TOKEN}"}
    client.post("/webhooks/brevo", json=load("brevo-unsubscribed.json"), headers=headers)
    assert counts(rt)[1] == 1
    later = clock.utcnow() + timedelta(days=receivers_retention() + 1)
    outcome = jobs.run_manual(rt, "expire", now=later)
    assert outcome.run["summary"]["webhook_events_purged"] == 1
    assert counts(rt)[1] == 0


def receivers_retention() -> int:
    from suppress import inbound

    return inbound.RETENTION_DAYS


@pytest.fixture(autouse=True)
def _no_real_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Nothing here may reach AWS: a stray fetch fails the test."""

    def refuse(url: str, *args: Any, **kwargs: Any) -> bytes:
        raise AssertionError(f"tried to fetch {url}")

    monkeypatch.setattr(webhooks, "https_get", refuse)
    monkeypatch.setattr(webhooks, "fetch_certificate", refuse)
    yield


# --- found by trying to break it -------------------------------------------------------------


@pytest.mark.parametrize(
    "signature",
    [
        {"signature": "éééé"},
        {"signature": "\u0130" * 64},
        {"token": "\ud800abc", "signature": "00"},
        {"token": "t" * 10_000},
    ],
)
def test_a_mailgun_signature_of_strange_text_is_401_not_500(
    client: FlaskClient, rt: Runtime, signature: dict[str, str]
) -> None:
    body = {**load("mailgun-unsubscribed.json"), "signature": {**mailgun_signature(), **signature}}
    answer = client.post(
        "/webhooks/mailgun",
        data=json.dumps(body),  # json.dumps escapes a lone surrogate as \\ud800
        content_type="application/json",
    )
    assert answer.status_code == 401
    assert counts(rt)[:2] == (0, 0)


def test_an_event_id_holding_a_lone_surrogate_costs_no_other_event_of_its_batch(
    client: FlaskClient, tokens: dict[str, str]
) -> None:
    body = (
        b'[{"event": "unsubscribe", "email": "odd@example.com", "sg_event_id": "\\ud800"},'
        b' {"event": "unsubscribe", "email": "fine@example.com", "sg_event_id": "ok"}]'
    )
    answer = sendgrid(client, body)
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json() == taken(received=2, added=2)
    assert not allowed(client, tokens, "fine@example.com", "news")
    assert sendgrid(client, body).get_json() == taken(received=2, duplicate=2)


@pytest.mark.parametrize(
    "change",
    [{"Type": "Bogus"}, {"Signature": ""}, {"Signature": None}, {"MessageId": None}],
)
def test_an_sns_message_refused_for_its_shape_fetches_no_certificate(
    app: Flask, client: FlaskClient, change: dict[str, Any]
) -> None:
    fetched: list[str] = []
    app.extensions[receivers.SNS_CERTIFICATE] = lambda url: fetched.append(url) or SNS_PEM
    message = json.loads(sns(load("ses-sns-bounce-permanent.json")))
    message.update(change)
    assert ses(client, json.dumps(message).encode()).status_code == 401
    assert fetched == []


def test_an_sns_message_with_a_lone_surrogate_is_401(
    client: FlaskClient, visited: list[str]
) -> None:
    message = json.loads(sns(load("ses-sns-bounce-permanent.json")))
    body = json.dumps({**message, "Message": "\ud800"}).encode()
    assert ses(client, body).status_code == 401


def test_a_delivery_that_asks_for_nothing_writes_nothing(client: FlaskClient, rt: Runtime) -> None:
    before = counts(rt)
    opens = [
        {"event": "open", "email": f"r{i}@example.com", "sg_event_id": f"o{i}"} for i in range(5)
    ]
    answer = sendgrid(client, json.dumps(opens).encode())
    assert answer.get_json() == taken(received=5, ignored=5)
    assert counts(rt) == before


def test_a_replayed_mailgun_token_is_logged(
    client: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    signature = mailgun_signature()
    mailgun(client, "mailgun-delivered.json", signature)
    caplog.set_level(logging.WARNING)
    assert mailgun(client, "mailgun-delivered.json", signature).status_code == 401
    assert "webhook mailgun refused: this Mailgun signing token was already used" in caplog.text
