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
    got = list(webhooks.ses_events(json.loads(bounce["Message"]), bounce["MessageId"]))
    assert mapped(got) == [("jane@example.com", "global", Reason.hard_bounce)]
    assert got[0].key == f"ses:{bounce['MessageId']}:0"
    complaint = load("ses-sns-complaint.json")
    got = list(webhooks.ses_events(json.loads(complaint["Message"]), complaint["MessageId"]))
    assert mapped(got) == [("richard@example.com", "global", Reason.complaint)]


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
    assert list(webhooks.ses_events(payload, "m")) == []
