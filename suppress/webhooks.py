"""Mailing tools' webhooks (DESIGN §9): who sent a request, and what its events mean.

Two halves, both free of Flask and of the database: verifying a request by the provider's
real scheme (SendGrid ECDSA, Mailgun HMAC, Postmark basic credentials, Brevo bearer token),
and mapping a verified payload to the suppressions it asks for. Addresses stay in memory
here; the receiver turns them into digests before anything is written or logged.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import SplitResult, urlsplit

from .errors import ErrorCode, SuppressError
from .models import GLOBAL_LIST, Reason

# Signed timestamps further than this from our clock are refused (replays, skewed senders).
MAX_SKEW_SECONDS = 300
PROVIDERS = ("sendgrid", "mailgun", "postmark", "brevo", "ses")


class Refused(SuppressError):
    """Bad, missing or stale signature or credentials: 401, and nothing is recorded."""

    code = ErrorCode.unauthorized
    status = 401


@dataclass(frozen=True)
class Event:
    """One suppression a provider's event asks for. `key` identifies the event across
    retried deliveries (the provider's event id, or what stands in for one)."""

    email: str
    list_name: str
    reason: Reason
    key: str


def _fresh(timestamp: str, now: float) -> None:
    if not (timestamp.isascii() and timestamp.isdigit()) or len(timestamp) > 12:
        raise Refused("the signed timestamp is not a number of seconds")
    if abs(now - int(timestamp)) > MAX_SKEW_SECONDS:
        raise Refused("the signed timestamp is more than 5 minutes away from our clock")


# --- verification ----------------------------------------------------------------------------


def verify_sendgrid(
    public_key_b64: str, signature_b64: str | None, timestamp: str | None, body: bytes, now: float
) -> None:
    """ECDSA P-256 / SHA-256 over the timestamp header's bytes followed by the raw body."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import load_der_public_key

    if not signature_b64 or not timestamp:
        raise Refused("the SendGrid signature headers are missing")
    _fresh(timestamp, now)
    try:
        key = load_der_public_key(base64.b64decode(public_key_b64, validate=True))
        signature = base64.b64decode(signature_b64, validate=True)
    except (binascii.Error, ValueError):
        raise Refused("the SendGrid signature is not base64") from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise Refused("the configured SendGrid key is no elliptic-curve key")
    try:
        key.verify(signature, timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise Refused("the SendGrid signature does not verify") from None


def verify_mailgun(signing_key: str, signature: Any, now: float) -> str:
    """hex HMAC-SHA256(signing key, timestamp + token); returns the token (accepted once)."""
    if not isinstance(signature, dict):
        raise Refused("the Mailgun signature object is missing")
    timestamp, token, given = (signature.get(k) for k in ("timestamp", "token", "signature"))
    if not all(isinstance(v, str) and v for v in (timestamp, token, given)):
        raise Refused("the Mailgun signature object is incomplete")
    assert isinstance(timestamp, str) and isinstance(token, str) and isinstance(given, str)
    if not (token.isascii() and given.isascii() and len(token) <= 256 and len(given) <= 256):
        # Mailgun sends hex and ASCII tokens; anything else is no signature of theirs (and
        # would not even compare: compare_digest takes ASCII strings only).
        raise Refused("the Mailgun signature object is not Mailgun's")
    _fresh(timestamp, now)
    expected = hmac.new(
        signing_key.encode(), (timestamp + token).encode(), hashlib.sha256
    ).hexdigest()
    if not hmac.compare_digest(expected, given.lower()):
        raise Refused("the Mailgun signature does not verify")
    return token


def verify_basic(expected: str, authorization: str | None) -> None:
    """HTTP Basic credentials equal to `user:password`, compared in constant time."""
    scheme, _, encoded = (authorization or "").partition(" ")
    try:
        given = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        given = b""
    if scheme.lower() != "basic" or not hmac.compare_digest(given, expected.encode()):
        raise Refused("wrong or missing credentials")


def verify_bearer(expected: str, authorization: str | None) -> None:
    """`Authorization: Bearer <token>`, compared in constant time."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        token.strip().encode(), expected.encode()
    ):
        raise Refused("wrong or missing token")


# --- mapping ------------------------------------------------------------------------------------


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def sendgrid_events(payload: Any, unsubscribe_list: str) -> Iterator[Event]:
    """A SendGrid batch (a JSON array of events)."""
    for item in payload if isinstance(payload, list) else ():
        if not isinstance(item, dict):
            continue
        kind, email = _text(item.get("event")), _text(item.get("email"))
        key = "sendgrid:" + (_text(item.get("sg_event_id")) or _digest_key(item))
        if kind in ("unsubscribe", "group_unsubscribe"):
            yield Event(email, unsubscribe_list, Reason.unsubscribe, key)
        elif kind == "spamreport":
            yield Event(email, GLOBAL_LIST, Reason.complaint, key)
        elif kind == "bounce" and item.get("type", "bounce") == "bounce":
            yield Event(email, GLOBAL_LIST, Reason.hard_bounce, key)


def mailgun_events(payload: Any, unsubscribe_list: str) -> Iterator[Event]:
    """One Mailgun event: `{"signature": ..., "event-data": {...}}`."""
    data = payload.get("event-data") if isinstance(payload, dict) else None
    if not isinstance(data, dict):
        return
    kind, email = _text(data.get("event")), _text(data.get("recipient"))
    key = "mailgun:" + (_text(data.get("id")) or _digest_key(data))
    if kind == "unsubscribed":
        yield Event(email, unsubscribe_list, Reason.unsubscribe, key)
    elif kind == "complained":
        yield Event(email, GLOBAL_LIST, Reason.complaint, key)
    elif kind == "failed" and data.get("severity") == "permanent":
        yield Event(email, GLOBAL_LIST, Reason.hard_bounce, key)


def postmark_events(payload: Any, unsubscribe_list: str) -> Iterator[Event]:
    """One Postmark webhook object, by its RecordType."""
    if not isinstance(payload, dict):
        return
    kind = _text(payload.get("RecordType"))
    key = "postmark:" + _digest_key(payload)
    if kind == "SubscriptionChange" and payload.get("SuppressSending") is True:
        yield Event(_text(payload.get("Recipient")), unsubscribe_list, Reason.unsubscribe, key)
    elif kind == "SpamComplaint":
        yield Event(_text(payload.get("Email")), GLOBAL_LIST, Reason.complaint, key)
    elif kind == "Bounce" and payload.get("Type") == "HardBounce":
        yield Event(_text(payload.get("Email")), GLOBAL_LIST, Reason.hard_bounce, key)


def brevo_events(payload: Any, unsubscribe_list: str) -> Iterator[Event]:
    """One Brevo event (transactional or marketing); Brevo gives no event id."""
    if not isinstance(payload, dict):
        return
    kind, email = _text(payload.get("event")), _text(payload.get("email"))
    key = "brevo:" + _digest_key(
        {k: payload.get(k) for k in ("event", "email", "message-id", "ts_event", "id", "camp_id")}
    )
    if kind == "unsubscribed":
        yield Event(email, unsubscribe_list, Reason.unsubscribe, key)
    elif kind in ("spam", "complaint"):
        yield Event(email, GLOBAL_LIST, Reason.complaint, key)
    elif kind == "hard_bounce":
        yield Event(email, GLOBAL_LIST, Reason.hard_bounce, key)


def ses_events(message: Any, message_id: str, unsubscribe_list: str) -> Iterator[Event]:
    """The SES notification inside a verified SNS `Notification` (its `Message`, parsed).

    Identity notifications name their type in `notificationType`, configuration-set event
    publishing in `eventType`. A `Subscription` event (SES list management) that opts out of
    everything or of any topic suppresses the unsubscribe list for the message's recipients.
    """
    if not isinstance(message, dict):
        return
    kind = _text(message.get("notificationType") or message.get("eventType"))
    if kind == "Bounce":
        bounce = message.get("bounce")
        if isinstance(bounce, dict) and bounce.get("bounceType") == "Permanent":
            for index, email in enumerate(_recipients(bounce, "bouncedRecipients")):
                key = f"ses:{message_id}:{index}"
                yield Event(email, GLOBAL_LIST, Reason.hard_bounce, key)
    elif kind == "Complaint":
        complaint = message.get("complaint")
        if isinstance(complaint, dict):
            for index, email in enumerate(_recipients(complaint, "complainedRecipients")):
                yield Event(email, GLOBAL_LIST, Reason.complaint, f"ses:{message_id}:{index}")
    elif kind == "Subscription" and _opts_out(message.get("subscription")):
        mail = message.get("mail")
        destination = mail.get("destination") if isinstance(mail, dict) else None
        for index, email in enumerate(destination if isinstance(destination, list) else ()):
            if isinstance(email, str):
                key = f"ses:{message_id}:{index}"
                yield Event(email, unsubscribe_list, Reason.unsubscribe, key)


def _opts_out(subscription: Any) -> bool:
    """An SES subscription change that leaves everything, or any topic."""
    if not isinstance(subscription, dict):
        return False
    new = subscription.get("newTopicPreferences")
    if not isinstance(new, dict):
        return False
    if new.get("unsubscribeAll") is True:
        return True
    statuses = new.get("topicSubscriptionStatus")
    return any(
        isinstance(item, dict) and item.get("subscriptionStatus") == "OptOut"
        for item in (statuses if isinstance(statuses, list) else ())
    )


def _recipients(section: dict[str, Any], name: str) -> Iterator[str]:
    for item in section.get(name) or ():
        if isinstance(item, dict) and isinstance(item.get("emailAddress"), str):
            yield item["emailAddress"]


def _digest_key(item: Any) -> str:
    """A stand-in event id: SHA-256 of the event's canonical JSON. It is computable from the
    address, so the receiver keys it with the pepper (HMAC) before it is stored anywhere."""
    text = json.dumps(item, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


# --- Amazon SNS (SES notifications) -----------------------------------------------------------

# Certificates are taken only from SNS itself: https://sns.<region>.amazonaws.com[.cn]/...pem
SNS_CERT_HOST = re.compile(r"^sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$")
# ...and only at the path SNS signs with, so a forged message cannot send us fetching
# arbitrary paths (each an outbound request) on those hosts.
SNS_CERT_PATH = re.compile(r"^/SimpleNotificationService-[A-Za-z0-9]{1,64}\.pem$")
# Certificates kept per process; SNS rotates them rarely.
MAX_CERTIFICATES = 32
# The fields SNS signs, in order, per message type (Subject only when present).
_CONFIRMATION = ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type")
_SNS_FIELDS = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": _CONFIRMATION,
    "UnsubscribeConfirmation": _CONFIRMATION,
}
_certificates: dict[str, bytes] = {}
# At most one fetch of a certificate not yet cached per this many seconds, per process.
FETCH_INTERVAL_SECONDS = 10.0
_last_fetch = float("-inf")


def fetch_certificate(url: str) -> bytes:
    """The PEM at an SNS certificate URL, fetched once per URL per process (https only, no
    redirects followed, 10 s at most)."""
    global _last_fetch
    if url not in _certificates:
        # SNS signs with one certificate for months: a stream of new certificate URLs is a
        # forger's (who knows a topic ARN), and must not keep workers waiting on fetches.
        if time.monotonic() - _last_fetch < FETCH_INTERVAL_SECONDS:
            raise SuppressError(
                "another SNS certificate was fetched moments ago; retry later",
                code=ErrorCode.unavailable,
                status=503,
            )
        _last_fetch = time.monotonic()
        _certificates[url] = https_get(url)
        while len(_certificates) > MAX_CERTIFICATES:
            _certificates.pop(next(iter(_certificates)))
    return _certificates[url]


def sns_url(url: str) -> SplitResult:
    """An https URL on an SNS host on the default port, or Refused: nothing else is fetched."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = -1
    if parts.scheme != "https" or not SNS_CERT_HOST.match(parts.hostname or "") or port:
        raise Refused("only https URLs on SNS hosts are fetched")
    return parts


def https_get(url: str, timeout: float = 5, limit: int = 65536) -> bytes:
    """GET an https URL on an SNS host: the body of a 200, else Refused. Redirects are not
    followed (they could lead anywhere)."""
    import http.client

    parts = sns_url(url)
    connection = http.client.HTTPSConnection(parts.hostname or "", timeout=timeout)
    try:
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        connection.request("GET", path or "/", headers={"User-Agent": "suppress"})
        response = connection.getresponse()
        body = response.read(limit + 1)
    except OSError as exc:
        raise SuppressError(
            f"could not reach {parts.hostname}: {type(exc).__name__}",
            code=ErrorCode.unavailable,
            status=503,
        ) from None
    finally:
        connection.close()
    if response.status != 200 or len(body) > limit:
        raise SuppressError(
            f"{parts.hostname} answered {response.status}", code=ErrorCode.unavailable, status=503
        )
    return body


def sns_string_to_sign(message: dict[str, Any]) -> bytes:
    """The canonical text SNS signs: each present field's name and value, one per line."""
    fields = _SNS_FIELDS.get(_text(message.get("Type")))
    if fields is None:
        raise Refused("not an SNS message type we take")
    lines = []
    for name in fields:
        value = message.get(name)
        if name == "Subject" and value is None:
            continue
        if not isinstance(value, str):
            raise Refused(f"the SNS message has no {name}")
        lines += [name, value]
    try:
        return ("\n".join(lines) + "\n").encode()
    except UnicodeEncodeError:  # a lone surrogate: nothing SNS ever signed
        raise Refused("the SNS message is not valid text") from None


def verify_sns(
    message: Any,
    topics: tuple[str, ...],
    now: float,
    certificate: Callable[[str], bytes] = fetch_certificate,
) -> None:
    """SignatureVersion 1 (SHA1withRSA) or 2 (SHA256withRSA) over the canonical text, with
    a certificate from an SNS host only, from an allowed topic, signed within 5 minutes."""
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    if not isinstance(message, dict):
        raise Refused("the body is no SNS message")
    if _text(message.get("TopicArn")) not in topics:
        raise Refused("the SNS topic is not one we take")
    url = urlsplit(_text(message.get("SigningCertURL")))
    try:
        port = url.port
    except ValueError:
        port = -1
    if url.scheme != "https" or not SNS_CERT_HOST.match(url.hostname or "") or port is not None:
        raise Refused("the SNS certificate is not on an SNS host")
    if not SNS_CERT_PATH.match(url.path) or url.query or url.fragment:
        raise Refused("the SNS certificate URL names no SNS signing certificate")
    algorithm = {"1": hashes.SHA1(), "2": hashes.SHA256()}.get(
        _text(message.get("SignatureVersion"))
    )
    if algorithm is None:
        raise Refused("unknown SNS SignatureVersion")
    try:
        sent = datetime.fromisoformat(_text(message.get("Timestamp")).replace("Z", "+00:00"))
    except ValueError:
        raise Refused("the SNS timestamp is not ISO 8601") from None
    if sent.tzinfo is None or abs(now - sent.timestamp()) > MAX_SKEW_SECONDS:
        raise Refused("the SNS timestamp is more than 5 minutes away from our clock")
    # Everything the message itself can be refused for is checked before the certificate is
    # fetched: a forgery costs no outbound request.
    signed = sns_string_to_sign(message)
    try:
        signature = base64.b64decode(_text(message.get("Signature")), validate=True)
    except (binascii.Error, ValueError):
        raise Refused("the SNS signature is not base64") from None
    if not signature:
        raise Refused("the SNS message is not signed")
    try:
        cert = x509.load_pem_x509_certificate(certificate(url.geturl()))
    except ValueError:
        raise Refused("the SNS certificate is unreadable") from None
    key = cert.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise Refused("the SNS certificate holds no RSA key")
    try:
        key.verify(signature, signed, padding.PKCS1v15(), algorithm)
    except InvalidSignature:
        raise Refused("the SNS signature does not verify") from None
