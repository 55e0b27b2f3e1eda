"""The webhook routes of the mailing tools (DESIGN §9): verify, map, record (suppress.inbound).

One route per provider, enabled only when its secret is configured (404 otherwise). A
request is verified by the provider's own scheme before anything is read from its events;
a refused one (401) records nothing. The 200 with its counts is sent only after the
delivery's transaction committed. Addresses stay in memory: the database, the audit trail,
the logs and the error bodies see digests and counts only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict
from typing import Any

from flask import Blueprint, current_app, jsonify, request
from werkzeug.exceptions import HTTPException

from . import audit, clock, metrics, webhooks
from .api import body_bytes, parse_json
from .contract import Answer, Operation, WebhookTaken, operation
from .errors import InvalidRequest, NotFound, SuppressError
from .inbound import Taken, record
from .runtime import Runtime
from .webhooks import Event, Refused

bp = Blueprint("webhooks", __name__, url_prefix="/webhooks")
log = logging.getLogger("suppress.webhooks")

# The largest body a receiver reads: a SendGrid batch of 1,000 events is about 0.5 MB.
MAX_BODY = 4 << 20
# Where tests put their own SNS certificate fetch and SubscribeURL visit.
SNS_CERTIFICATE = "suppress.sns_certificate"
SNS_VISIT = "suppress.sns_visit"


def _runtime() -> Runtime:
    return current_app.extensions["suppress"]  # type: ignore[no-any-return]


# --- the routes -------------------------------------------------------------------------------


def _enabled(provider: str) -> Any:
    """The provider's settings, or 404 when its receiver is not configured."""
    hooks = _runtime().config.settings.webhooks
    if not hooks.enabled(provider):
        raise NotFound(f"no {provider} webhook is configured here")
    return getattr(hooks, provider)


def _body() -> bytes:
    request.max_content_length = MAX_BODY
    return body_bytes()


def mapped(
    items: Sequence[Any], mapper: Callable[[Any], Iterable[Event]]
) -> tuple[list[Event], Taken]:
    """The suppressions a delivery's events ask for, and the count of those asking none."""
    events: list[Event] = []
    taken = Taken(received=len(items))
    for item in items:
        found = list(mapper(item))
        taken.ignored += not found
        events += found
    return events, taken


def _store(provider: str, events: list[Event], taken: Taken, token: str | None = None) -> Any:
    rt = _runtime()
    now = clock.utcnow()
    try:
        if events or token is not None:  # a delivery that asks for nothing writes nothing
            with rt.db.begin() as session:
                record(session, rt.ring, provider, events, taken, now=now, token=token)
    except Refused as exc:  # a replayed Mailgun token
        metrics.webhook(provider, "refused")
        log.warning("webhook %s refused: %s", provider, exc.message)
        raise
    except Exception:
        metrics.webhook(provider, "failed")
        raise
    metrics.webhook(provider, "accepted", asdict(taken))
    log.info(
        "webhook %s: %s",
        provider,
        " ".join(f"{name}={value}" for name, value in asdict(taken).items()),
    )
    return jsonify(asdict(taken))


def _guarded(provider: str, verify: Callable[[], Any]) -> Any:
    """Run a verification step, counting refusals and malformed bodies in the metrics."""
    try:
        return verify()
    except Refused as exc:
        metrics.webhook(provider, "refused")
        log.warning("webhook %s refused: %s", provider, exc.message)
        raise
    except SuppressError as exc:
        metrics.webhook(provider, "failed" if exc.status >= 500 else "malformed")
        raise
    except HTTPException:  # the body over its cap (413)
        metrics.webhook(provider, "malformed")
        raise


def _json(raw: bytes) -> Any:
    return parse_json(raw)


def _now() -> float:
    return clock.now().timestamp()


ANSWERS = {200: Answer("Verified and committed: what the delivery did", WebhookTaken)}
# The provider's own JSON, read by hand after verification, whatever its Content-Type says
# (SNS sends it as text/plain).
PAYLOAD = {
    "application/json": {
        "type": ["object", "array"],
        "description": "The provider's JSON payload, exactly as it sends it.",
    }
}


def _hook(summary: str, description: str) -> Operation:
    return Operation(
        summary,
        ANSWERS,
        payload=PAYLOAD,
        errors=(401, 404),
        limited=False,
        description=description
        + " 404 while the receiver is not configured. 401: a bad, missing or stale signature "
        "or credentials; nothing recorded.",
    )


@bp.post("/sendgrid")
@operation(
    _hook(
        "SendGrid Event Webhook (signed)",
        "ECDSA P-256 signature in X-Twilio-Email-Event-Webhook-Signature over "
        "X-Twilio-Email-Event-Webhook-Timestamp followed by the raw body. A batch is one "
        "transaction.",
    )
)
def sendgrid() -> Any:
    hook = _enabled("sendgrid")
    raw = _guarded("sendgrid", _body)
    _guarded(
        "sendgrid",
        lambda: webhooks.verify_sendgrid(
            hook.public_key,
            request.headers.get("X-Twilio-Email-Event-Webhook-Signature"),
            request.headers.get("X-Twilio-Email-Event-Webhook-Timestamp"),
            raw,
            _now(),
        ),
    )
    payload = _guarded("sendgrid", lambda: _json(raw))
    if not isinstance(payload, list):
        metrics.webhook("sendgrid", "malformed")
        raise InvalidRequest("a SendGrid delivery is a JSON array of events")
    events, taken = mapped(payload, lambda item: webhooks.sendgrid_events([item], hook.list))
    return _store("sendgrid", events, taken)


@bp.post("/mailgun")
@operation(
    _hook(
        "Mailgun webhook (signed)",
        "JSON body {signature: {timestamp, token, signature}, event-data}; signature = hex "
        "HMAC-SHA256(signing key, timestamp + token). A token is taken once: a second use "
        "is 401.",
    )
)
def mailgun() -> Any:
    hook = _enabled("mailgun")
    raw = _guarded("mailgun", _body)
    payload = _guarded("mailgun", lambda: _json(raw))
    signature = payload.get("signature") if isinstance(payload, dict) else None
    token = _guarded(
        "mailgun", lambda: webhooks.verify_mailgun(hook.signing_key, signature, _now())
    )
    events, taken = mapped([payload], lambda item: webhooks.mailgun_events(item, hook.list))
    return _store("mailgun", events, taken, token=token)


@bp.post("/postmark")
@operation(
    _hook(
        "Postmark webhook (HTTP Basic credentials)",
        "One Postmark record per request (Bounce, SpamComplaint, SubscriptionChange, ...).",
    )
)
def postmark() -> Any:
    hook = _enabled("postmark")
    _guarded(
        "postmark",
        lambda: webhooks.verify_basic(hook.basic_auth, request.headers.get("Authorization")),
    )
    payload = _guarded("postmark", lambda: _json(_body()))
    events, taken = mapped([payload], lambda item: webhooks.postmark_events(item, hook.list))
    return _store("postmark", events, taken)


@bp.post("/brevo")
@operation(
    _hook(
        "Brevo webhook (bearer token)",
        "One Brevo event per request, or an array of them (batched webhooks).",
    )
)
def brevo() -> Any:
    hook = _enabled("brevo")
    _guarded(
        "brevo",
        lambda: webhooks.verify_bearer(hook.token, request.headers.get("Authorization")),
    )
    payload = _guarded("brevo", lambda: _json(_body()))
    items = payload if isinstance(payload, list) else [payload]
    events, taken = mapped(items, lambda item: webhooks.brevo_events(item, hook.list))
    return _store("brevo", events, taken)


@bp.post("/ses")
@operation(
    _hook(
        "Amazon SES notifications through Amazon SNS (signed)",
        "SNS message signature (SignatureVersion 1 or 2) with a certificate from an SNS "
        "host only, from an allowed topic, signed within 5 minutes. A SubscriptionConfirmation "
        "is confirmed by visiting its SubscribeURL (an SNS host only).",
    )
)
def ses() -> Any:
    hook = _enabled("ses")
    raw = _guarded("ses", _body)
    message = _guarded("ses", lambda: _json(raw))
    certificate = current_app.extensions.get(SNS_CERTIFICATE, webhooks.fetch_certificate)
    _guarded("ses", lambda: webhooks.verify_sns(message, hook.topics, _now(), certificate))
    kind = message["Type"]
    if kind == "SubscriptionConfirmation":
        return _confirm(message)
    if kind == "UnsubscribeConfirmation":
        log.warning("webhook ses: SNS unsubscribed this endpoint from %s", message["TopicArn"])
        metrics.webhook("ses", "accepted")
        return jsonify(asdict(Taken()))
    try:
        notification = parse_json(message["Message"].encode())
    except InvalidRequest:
        notification = None  # a verified message we cannot read asks for nothing
    events, taken = mapped(
        [notification],
        lambda item: webhooks.ses_events(item, message["MessageId"], hook.list),
    )
    return _store("ses", events, taken)


def _confirm(message: dict[str, Any]) -> Any:
    """Visit a verified SubscriptionConfirmation's SubscribeURL (on an SNS host only)."""
    url = message["SubscribeURL"]
    _guarded("ses", lambda: webhooks.sns_url(url))
    visit = current_app.extensions.get(SNS_VISIT, webhooks.https_get)
    _guarded("ses", lambda: visit(url))
    rt = _runtime()
    with rt.db.begin() as session:
        audit.record(
            session,
            "webhook_subscribed",
            actor="webhook:ses",
            source="webhook:ses",
            detail={"topic": message["TopicArn"]},
        )
    metrics.webhook("ses", "confirmed")
    log.info("webhook ses: confirmed the SNS subscription to %s", message["TopicArn"])
    return jsonify(asdict(Taken()))
