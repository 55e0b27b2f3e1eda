"""A sample delivery to a running webhook receiver (`suppress webhooks test`): built, sent, judged.

The sample is signed or authenticated the way the provider does it, from this host's
configuration, by code of its own rather than the receiver's (a shared mistake would pass
unseen). SendGrid and SES sign with keys only they hold: their sample goes unsigned, and the
receiver is expected to refuse it. Nothing here prints or returns a secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import string
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests

from . import clock
from .settings import WEBHOOK_ENABLED_BY, WebhooksSettings

# Deliveries this command can authenticate; the others are signed with the provider's own key.
AUTHENTICATED = ("mailgun", "postmark", "brevo")
# The default sample's recipient: an event for it is one the receivers ignore.
SAMPLE_ADDRESS = "webhook-test@example.com"
TIMEOUT_SECONDS = 10
# Error messages from the other end are cut to this: one line stays one line.
MESSAGE_MAX = 200
# What a good answer proves, per provider.
PROOF = {
    "mailgun": "the receiver verified the signature",
    "postmark": "the receiver accepted the credentials",
    "brevo": "the receiver accepted the token",
}
# Where the operator tests what this command cannot sign.
PROVIDER_TEST = {
    "sendgrid": "this command cannot sign as SendGrid (only SendGrid holds the private key): "
    'use "Test Your Integration" in SendGrid\'s Settings > Mail Settings > Event Webhooks',
    "ses": "this command cannot sign as Amazon SNS (only AWS holds the key): send a message to "
    "the bounce address of the SES mailbox simulator (AWS's guide: 'Using the mailbox "
    "simulator') through the configuration set "
    "or identity that publishes to the topic",
}


def env_name(provider: str) -> str:
    """The environment variable that enables a provider's receiver."""
    return f"SUPPRESS_WEBHOOK_{provider.upper()}_{WEBHOOK_ENABLED_BY[provider].upper()}"


@dataclass(frozen=True)
class Delivery:
    """One request as the provider would send it."""

    body: bytes
    headers: dict[str, str]


@dataclass(frozen=True)
class Verdict:
    """What the answer means: `ok` when the receiver answered as expected, and one line.

    `answered` is False when no HTTP answer came at all (unreachable, timed out)."""

    ok: bool
    line: str
    answered: bool = True


def endpoint(base_url: str, provider: str) -> str:
    """`<base>/webhooks/<provider>`; a URL that already ends so is taken as it is."""
    base = base_url.rstrip("/")
    suffix = f"/webhooks/{provider}"
    return base if base.endswith(suffix) else base + suffix


def shown_url(url: str) -> str:
    """The URL without any user:password part (credentials are never printed)."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _iso(now: datetime) -> str:
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def sample(provider: str, hooks: WebhooksSettings, *, email: str | None, now: datetime) -> Delivery:
    """The provider's delivery: an unsubscribe of `email`, else an event for SAMPLE_ADDRESS
    that asks for no suppression. Each has fresh ids, so it is never taken for a retry."""
    hook = getattr(hooks, provider)
    recipient = email or SAMPLE_ADDRESS
    event_id = uuid.uuid4().hex
    if provider == "mailgun":
        timestamp = str(int(now.timestamp()))
        alphabet = string.ascii_lowercase + string.digits
        token = "".join(secrets.choice(alphabet) for _ in range(50))
        signature = hmac.new(
            hook.signing_key.encode(), (timestamp + token).encode(), hashlib.sha256
        ).hexdigest()
        data = {
            "event": "unsubscribed" if email else "delivered",
            "id": event_id,
            "timestamp": now.timestamp(),
            "log-level": "info",
            "recipient": recipient,
            "recipient-domain": recipient.rpartition("@")[2],
            "message": {"headers": {"message-id": f"{event_id}@suppress.invalid"}},
        }
        body = {
            "signature": {"timestamp": timestamp, "token": token, "signature": signature},
            "event-data": data,
        }
        return Delivery(_json(body), {"Content-Type": "application/json"})
    if provider == "postmark":
        record: dict[str, Any] = {
            "MessageID": str(uuid.uuid4()),
            "ServerID": 0,
            "MessageStream": "outbound",
            "Recipient": recipient,
            "Tag": "suppress-webhooks-test",
            "Metadata": {},
        }
        if email:
            record.update(
                RecordType="SubscriptionChange",
                ChangedAt=_iso(now),
                Origin="Recipient",
                SuppressSending=True,
                SuppressionReason="ManualSuppression",
            )
        else:
            record.update(
                RecordType="Delivery", DeliveredAt=_iso(now), Details="suppress webhooks test"
            )
        basic = base64.b64encode(hook.basic_auth.encode()).decode()
        return Delivery(
            _json(record), {"Content-Type": "application/json", "Authorization": f"Basic {basic}"}
        )
    if provider == "brevo":
        event = {
            "event": "unsubscribed" if email else "delivered",
            "email": recipient,
            "id": 0,
            "message-id": f"<{event_id}@suppress.invalid>",
            "subject": "suppress webhooks test",
            "ts_event": int(now.timestamp()),
            "ts_epoch": int(now.timestamp() * 1000),
        }
        return Delivery(
            _json(event),
            {"Content-Type": "application/json", "Authorization": f"Bearer {hook.token}"},
        )
    if provider == "sendgrid":
        events = [
            {
                "email": recipient,
                "timestamp": int(now.timestamp()),
                "event": "unsubscribe" if email else "delivered",
                "sg_event_id": event_id,
                "sg_message_id": f"{event_id}.suppress",
            }
        ]
        return Delivery(_json(events), {"Content-Type": "application/json"})
    if provider == "ses":
        notification = {
            "notificationType": "Delivery",
            "mail": {"timestamp": _iso(now), "messageId": event_id, "destination": [recipient]},
            "delivery": {"timestamp": _iso(now), "recipients": [recipient]},
        }
        message_id = str(uuid.uuid4())
        envelope = {
            "Type": "Notification",
            "MessageId": message_id,
            "TopicArn": hook.topics[0],
            "Message": json.dumps(notification),
            "Timestamp": _iso(now),
            "SignatureVersion": "1",
        }
        return Delivery(
            _json(envelope),
            {
                "Content-Type": "text/plain; charset=UTF-8",
                "x-amz-sns-message-type": "Notification",
                "x-amz-sns-message-id": message_id,
                "x-amz-sns-topic-arn": hook.topics[0],
            },
        )
    raise ValueError(f"unknown provider {provider}")


def send(url: str, delivery: Delivery) -> requests.Response:
    """POST the delivery; redirects are not followed (a POST would arrive as a GET)."""
    return requests.post(
        url,
        data=delivery.body,
        headers={**delivery.headers, "User-Agent": "suppress-webhooks-test"},
        timeout=TIMEOUT_SECONDS,
        allow_redirects=False,
    )


def _message(response: requests.Response) -> str:
    """The error envelope's message, one short line; or what the body is instead."""
    try:
        error = response.json().get("error", {})
        text = str(error.get("message", "")) if isinstance(error, dict) else ""
    except (ValueError, AttributeError):
        text = ""
    text = " ".join(text.split())[:MESSAGE_MAX]
    return text or f"a {response.headers.get('Content-Type', 'bodiless')} answer, not the service's"


def _counts(response: requests.Response) -> dict[str, int] | None:
    try:
        answer = response.json()
    except ValueError:
        return None
    names = ("received", "added", "existing", "duplicate", "ignored", "invalid")
    if not isinstance(answer, dict) or not all(isinstance(answer.get(n), int) for n in names):
        return None
    return {name: answer[name] for name in names}


def judge(
    provider: str, url: str, response: requests.Response, *, suppressing: bool, list_name: str
) -> Verdict:
    """What the receiver's answer says about its set-up, in one line."""
    status = response.status_code
    head = f"{provider}: {status}"
    where = shown_url(url)
    if provider not in AUTHENTICATED:
        if status == 401:
            return Verdict(
                True,
                f"{head} as expected: the receiver is enabled and refused an unsigned delivery "
                f"({_message(response)}); {PROVIDER_TEST[provider]}",
            )
        if status == 200:
            return Verdict(
                False,
                f"{head}: the receiver at {where} TOOK AN UNSIGNED delivery; it must refuse "
                "it (401)",
            )
    if status == 200:
        counts = _counts(response)
        if counts is None:
            return Verdict(False, f"{head} from {where}, but not the receiver's counts")
        shown = " ".join(
            f"{name}={number}" for name, number in counts.items() if number or name == "received"
        )
        if suppressing:
            taken = counts["added"] + counts["existing"] == 1 and counts["invalid"] == 0
            if taken:
                return Verdict(
                    True,
                    f"{head} {shown} ({PROOF[provider]}; the address is now suppressed on "
                    f"{list_name}, reason unsubscribe)",
                )
            return Verdict(False, f"{head} {shown}: the receiver did not suppress the address")
        if counts["received"] >= 1 and counts["ignored"] == counts["received"]:
            return Verdict(True, f"{head} {shown} ({PROOF[provider]})")
        return Verdict(False, f"{head} {shown}: the sample should have been ignored")
    if status == 401:
        clocks = ", or the clocks differ by more than 5 minutes" if provider == "mailgun" else ""
        return Verdict(
            False,
            f"{head} refused by {where} ({_message(response)}): {env_name(provider)} here is "
            f"not what the server holds{clocks}",
        )
    if status == 404:
        return Verdict(
            False,
            f"{head}: {where} has no {provider} receiver; set {env_name(provider)} on the "
            "server (or --url names another service)",
        )
    if 300 <= status < 400:
        return Verdict(
            False,
            f"{head}: {where} redirects to {shown_url(response.headers.get('Location', '?'))}; "
            "give --url the final address",
        )
    return Verdict(False, f"{head} from {where}: {_message(response)}")


def run(
    provider: str,
    hooks: WebhooksSettings,
    base_url: str,
    *,
    email: str | None = None,
    now: datetime | None = None,
) -> Verdict:
    """Send the sample delivery to the receiver under `base_url` and judge its answer."""
    url = endpoint(base_url, provider)
    delivery = sample(provider, hooks, email=email, now=now or clock.now())
    try:
        response = send(url, delivery)
    except requests.RequestException as exc:
        return Verdict(
            False, f"{provider}: cannot reach {shown_url(url)} ({type(exc).__name__})", False
        )
    with response:
        return judge(
            provider,
            url,
            response,
            suppressing=email is not None,
            list_name=getattr(hooks, provider).list,
        )
