"""Webhook verification by each provider's scheme, and the event mapping of DESIGN §9,
against the providers' published samples and signature vectors (tests/fixtures/webhooks)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from suppress import webhooks
from suppress.models import Reason
from suppress.webhooks import Refused

FIXTURES = Path(__file__).parent / "fixtures" / "webhooks"


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text("utf-8"))


def test_the_sendgrid_vector_verifies_and_its_negatives_do_not() -> None:
    vector = load("sendgrid-signature-vector.json")
    headers = vector["headers"]
    signature = headers["X-Twilio-Email-Event-Webhook-Signature"]
    stamp = headers["X-Twilio-Email-Event-Webhook-Timestamp"]
    body = base64.b64decode(vector["payload_base64"])
    now = int(stamp) + 10
    webhooks.verify_sendgrid(vector["public_key"], signature, stamp, body, now)
    for case in vector["negative_cases"]:
        with pytest.raises(Refused):
            webhooks.verify_sendgrid(
                case.get("public_key", vector["public_key"]),
                case.get("signature", signature),
                case.get("timestamp", stamp),
                case["payload"].encode() if "payload" in case else body,
                now,
            )
    with pytest.raises(Refused, match="5 minutes"):
        webhooks.verify_sendgrid(vector["public_key"], signature, stamp, body, int(stamp) + 301)
    with pytest.raises(Refused, match="missing"):
        webhooks.verify_sendgrid(vector["public_key"], None, stamp, body, now)


def test_the_mailgun_vector_verifies_once_fresh_and_not_with_another_token() -> None:
    vector = load("mailgun-signature-vector.json")
    key, signature = vector["signing_key"], vector["signature"]
    now = int(signature["timestamp"]) + 5
    assert webhooks.verify_mailgun(key, signature, now) == signature["token"]
    for case in vector["negative_cases"]:
        with pytest.raises(Refused):
            webhooks.verify_mailgun(key, case["signature"], now)
    with pytest.raises(Refused, match="5 minutes"):
        webhooks.verify_mailgun(key, signature, now + 400)
    with pytest.raises(Refused):
        webhooks.verify_mailgun("another-key", signature, now)
    for broken in (None, [], {"timestamp": "1"}, {**signature, "timestamp": "-5"}):
        with pytest.raises(Refused):
            webhooks.verify_mailgun(key, broken, now)


def test_basic_and_bearer_credentials_compare_exactly() -> None:
    good = "Basic " + base64.b64encode(b"hook:s3cret-pass").decode()
    webhooks.verify_basic("hook:s3cret-pass", good)
    for bad in (None, "", "Basic !!", "Bearer x", "Basic " + base64.b64encode(b"hook:x").decode()):
        with pytest.raises(Refused):
            webhooks.verify_basic("hook:s3cret-pass", bad)
    webhooks.verify_bearer("brevo-token-123", "Bearer brevo-token-123")
    for bad in (None, "Bearer", "Bearer brevo-token-12", "Basic brevo-token-123"):
        with pytest.raises(Refused):
            webhooks.verify_bearer("brevo-token-123", bad)


def mapped(events: Any) -> list[tuple[str, str, Reason]]:
    return [(e.email, e.list_name, e.reason) for e in events]


def test_sendgrid_events_map_as_designed() -> None:
    got = mapped(webhooks.sendgrid_events(load("sendgrid-events.json"), "news"))
    address = "example@example.com"
    assert got == [
        (address, "news", Reason.unsubscribe),  # unsubscribe
        (address, "news", Reason.unsubscribe),  # group_unsubscribe
        (address, "global", Reason.complaint),  # spamreport
        (address, "global", Reason.hard_bounce),  # bounce of type bounce; blocked is not
    ]


@pytest.mark.parametrize(
    ("fixture", "expected"),
    [
        ("mailgun-unsubscribed.json", [("recipient@example.com", "news", Reason.unsubscribe)]),
        ("mailgun-complained.json", [("foo@example.com", "global", Reason.complaint)]),
        ("mailgun-failed-permanent.json", [("invalid@example.com", "global", Reason.hard_bounce)]),
        ("mailgun-failed-temporary.json", []),
        ("mailgun-delivered.json", []),
    ],
)
def test_mailgun_events_map_as_designed(fixture: str, expected: list[Any]) -> None:
    assert mapped(webhooks.mailgun_events(load(fixture), "news")) == expected


@pytest.mark.parametrize(
    ("fixture", "expected"),
    [
        (
            "postmark-subscription-change-unsubscribe.json",
            [("john@example.com", "news", Reason.unsubscribe)],
        ),
        ("postmark-subscription-change-reactivate.json", []),  # never lifts a suppression
        ("postmark-spam-complaint.json", [("john@example.com", "global", Reason.complaint)]),
        ("postmark-bounce-hard.json", [("bounce@example.com", "global", Reason.hard_bounce)]),
        ("postmark-delivery.json", []),
    ],
)
def test_postmark_events_map_as_designed(fixture: str, expected: list[Any]) -> None:
    assert mapped(webhooks.postmark_events(load(fixture), "news")) == expected


@pytest.mark.parametrize(
    ("fixture", "expected"),
    [
        ("brevo-unsubscribed.json", [("example@example.com", "news", Reason.unsubscribe)]),
        ("brevo-complaint.json", [("example@example.com", "global", Reason.complaint)]),
        ("brevo-spam.json", [("example@example.com", "global", Reason.complaint)]),
        ("brevo-hard-bounce.json", [("example@example.com", "global", Reason.hard_bounce)]),
        ("brevo-soft-bounce.json", []),
        ("brevo-delivered.json", []),
    ],
)
def test_brevo_events_map_as_designed(fixture: str, expected: list[Any]) -> None:
    assert mapped(webhooks.brevo_events(load(fixture), "news")) == expected


def test_ses_bounces_and_complaints_map_per_recipient() -> None:
    bounce = load("ses-sns-bounce-permanent.json")
    got = list(webhooks.ses_events(json.loads(bounce["Message"]), bounce["MessageId"], "news"))
    assert mapped(got) == [("jane@example.com", "global", Reason.hard_bounce)]
    assert got[0].key == f"ses:{bounce['MessageId']}:0"
    complaint = load("ses-sns-complaint.json")
    got = list(
        webhooks.ses_events(json.loads(complaint["Message"]), complaint["MessageId"], "news")
    )
    assert mapped(got) == [("richard@example.com", "global", Reason.complaint)]


def test_an_ses_subscription_event_that_opts_out_suppresses_the_unsubscribe_list() -> None:
    sns = load("ses-sns-subscription-unsubscribe.json")
    message = json.loads(sns["Message"])
    got = list(webhooks.ses_events(message, sns["MessageId"], "news"))
    assert mapped(got) == [("recipient@example.com", "news", Reason.unsubscribe)]
    # One topic left is an opt-out too; coming back (all OptIn) asks for nothing.
    topic_only = json.loads(sns["Message"])
    topic_only["subscription"]["newTopicPreferences"]["unsubscribeAll"] = False
    assert len(list(webhooks.ses_events(topic_only, "m", "news"))) == 1
    back = json.loads(sns["Message"])
    back["subscription"]["newTopicPreferences"] = {
        "unsubscribeAll": False,
        "topicSubscriptionStatus": [{"topicName": "T", "subscriptionStatus": "OptIn"}],
    }
    assert list(webhooks.ses_events(back, "m", "news")) == []


def test_a_retried_delivery_has_the_same_keys_and_other_events_other_keys() -> None:
    first = [e.key for e in webhooks.sendgrid_events(load("sendgrid-events.json"), "news")]
    again = [e.key for e in webhooks.sendgrid_events(load("sendgrid-events.json"), "news")]
    assert first == again and len(set(first)) == len(first)
    brevo = [e.key for e in webhooks.brevo_events(load("brevo-unsubscribed.json"), "news")]
    other = {**load("brevo-unsubscribed.json"), "ts_event": 1}
    assert brevo != [e.key for e in webhooks.brevo_events(other, "news")]


@pytest.mark.parametrize("payload", [None, 5, "x", [1, "a", None], {"event-data": []}, {}])
def test_malformed_payloads_map_to_nothing(payload: Any) -> None:
    for mapper in (
        webhooks.sendgrid_events,
        webhooks.mailgun_events,
        webhooks.postmark_events,
        webhooks.brevo_events,
    ):
        assert list(mapper(payload, "news")) == []
    assert list(webhooks.ses_events(payload, "m", "news")) == []


# --- Amazon SNS: messages signed with a certificate the test makes --------------------------

CERT_URL = "https://sns.eu-north-1.amazonaws.com/SimpleNotificationService-test.pem"
TOPIC = "arn:aws:sns:us-east-1:1234567890:SES_Events"


@pytest.fixture(scope="module")
def signer() -> tuple[Any, bytes]:
    from datetime import UTC, datetime, timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

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


def signed(signer: tuple[Any, bytes], message: dict[str, Any], version: str = "2") -> Any:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    key, _pem = signer
    message = {**message, "SignatureVersion": version, "SigningCertURL": CERT_URL}
    algorithm = hashes.SHA256() if version == "2" else hashes.SHA1()
    text = webhooks.sns_string_to_sign(message)
    signature = key.sign(text, padding.PKCS1v15(), algorithm)
    return {**message, "Signature": base64.b64encode(signature).decode()}


def sns_now(message: dict[str, Any]) -> float:
    from datetime import datetime

    return datetime.fromisoformat(message["Timestamp"].replace("Z", "+00:00")).timestamp() + 30


@pytest.mark.parametrize("version", ["1", "2"])
def test_sns_messages_verify_with_both_signature_versions(
    signer: tuple[Any, bytes], version: str
) -> None:
    fetched: list[str] = []

    def certificate(url: str) -> bytes:
        fetched.append(url)
        return signer[1]

    for fixture in ("ses-sns-bounce-permanent.json", "ses-sns-subscription-confirmation.json"):
        message = signed(signer, {**load(fixture), "TopicArn": TOPIC}, version)
        webhooks.verify_sns(message, (TOPIC,), sns_now(message), certificate)
    assert fetched == [CERT_URL, CERT_URL]


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"TopicArn": "arn:aws:sns:us-east-1:1:Other"}, "topic"),
        ({"SigningCertURL": "https://sns.evil.example.com/x.pem"}, "SNS host"),
        ({"SigningCertURL": "http://sns.us-east-1.amazonaws.com/x.pem"}, "SNS host"),
        ({"SigningCertURL": "https://sns.us-east-1.amazonaws.com:8443/x.pem"}, "SNS host"),
        ({"SigningCertURL": "https://sns.us-east-1.amazonaws.com:x/x.pem"}, "SNS host"),
        ({"SigningCertURL": "https://sns.us-east-1.amazonaws.com.evil.io/x.pem"}, "SNS host"),
        ({"SignatureVersion": "3"}, "SignatureVersion"),
        ({"Message": "tampered"}, "does not verify"),
        ({"Signature": "!!"}, "not base64"),
        ({"Type": "Other"}, "not an SNS message type"),
    ],
)
def test_sns_refusals(signer: tuple[Any, bytes], change: dict[str, str], problem: str) -> None:
    message = signed(signer, {**load("ses-sns-bounce-permanent.json"), "TopicArn": TOPIC})
    now = sns_now(message)
    with pytest.raises(Refused, match=problem):
        webhooks.verify_sns({**message, **change}, (TOPIC,), now, lambda _url: signer[1])


def test_a_stale_sns_message_is_refused(signer: tuple[Any, bytes]) -> None:
    message = signed(signer, {**load("ses-sns-bounce-permanent.json"), "TopicArn": TOPIC})
    with pytest.raises(Refused, match="5 minutes"):
        webhooks.verify_sns(message, (TOPIC,), sns_now(message) + 600, lambda _url: signer[1])


def test_new_sns_certificates_are_fetched_at_most_once_per_interval(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from suppress.errors import SuppressError

    fetched: list[str] = []
    monkeypatch.setattr(webhooks, "https_get", lambda url: fetched.append(url) or b"pem")
    monkeypatch.setattr(webhooks, "_certificates", {})
    monkeypatch.setattr(webhooks, "_last_fetch", float("-inf"))
    first = "https://sns.eu-north-1.amazonaws.com/SimpleNotificationService-a.pem"
    assert webhooks.fetch_certificate(first) == b"pem"
    assert webhooks.fetch_certificate(first) == b"pem"  # cached: no budget spent
    with pytest.raises(SuppressError) as busy:
        webhooks.fetch_certificate(first.replace("-a.", "-b."))
    assert busy.value.status == 503
    assert fetched == [first]
    monkeypatch.setattr(webhooks, "_last_fetch", float("-inf"))  # the interval has passed
    webhooks.fetch_certificate(first.replace("-a.", "-b."))
    assert len(fetched) == 2
