"""Taking the mailing tools' events (DESIGN §9): one delivery, one transaction.

A verified delivery's suppressions, their audit events and the keyed ids of its events
commit together; a retried delivery finds its ids taken and adds nothing twice. Event ids
are kept only as HMAC under a key derived from the pepper: a stand-in id is computed from
the event, address included.
"""

from __future__ import annotations

import hashlib
import hmac
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from . import audit, suppressions
from .addresses import KeyRing, Target, Targeter
from .db import insert_rows
from .errors import SuppressError
from .models import Reason, WebhookEvent
from .webhooks import Event, Refused

# Event ids are kept as HMAC under a key derived from the pepper (see KeyRing.derived_keys).
KEY_PURPOSE = "webhook-event"
# Event ids (and Mailgun tokens) are remembered this long; the providers retry for at most
# three days (SendGrid 72 h, Mailgun 8 h), and SNS for less.
RETENTION_DAYS = 30


@dataclass
class Taken:
    """What one delivery did. `received` counts the provider's events; the others count the
    suppressions they asked for (an SES event may name several recipients), except
    `ignored`: events that ask for none (deliveries, opens, soft bounces, re-subscriptions)."""

    received: int = 0
    added: int = 0
    existing: int = 0
    duplicate: int = 0
    ignored: int = 0
    invalid: int = 0


def keyed(keys: Sequence[tuple[str, bytes]], text: str) -> list[str]:
    """How an event id is kept: HMAC hex under each pepper's derived key, active first."""
    # surrogatepass: an id is whatever the provider's JSON held, lone surrogates included.
    data = text.encode("utf-8", "surrogatepass")
    return [hmac.new(key, data, hashlib.sha256).hexdigest() for _, key in keys]


def _taken_keys(session: Session, keys: Iterable[str]) -> set[str]:
    wanted = list(set(keys))
    found: set[str] = set()
    for start in range(0, len(wanted), 500):
        part = wanted[start : start + 500]
        found.update(session.scalars(select(WebhookEvent.key).where(WebhookEvent.key.in_(part))))
    return found


def record(
    session: Session,
    ring: KeyRing,
    provider: str,
    events: Sequence[Event],
    taken: Taken,
    *,
    now: datetime,
    token: str | None = None,
) -> Taken:
    """Record one verified delivery in the session's transaction (the caller commits).

    `taken` arrives with what the mapping counted (received, ignored) and is completed here.
    `token` is a Mailgun signing token: taken once, a second use is Refused (a replay).
    """
    audit.lock(session)  # one writer at a time: two copies of a delivery cannot both be new
    derived = ring.derived_keys(KEY_PURPOSE)
    rows: list[tuple[str, str, datetime]] = []
    if token is not None:
        token_keys = keyed(derived, f"mailgun-token:{token}")
        if _taken_keys(session, token_keys):
            raise Refused("this Mailgun signing token was already used: a replayed request")
        rows.append((token_keys[0], provider, now))
    event_keys = [keyed(derived, event.key) for event in events]
    known = _taken_keys(session, (k for keys in event_keys for k in keys))
    targeter = Targeter(ring)
    groups: dict[tuple[str, Reason], list[Target]] = defaultdict(list)
    fresh: set[str] = set()
    for event, keys in zip(events, event_keys, strict=True):
        if keys[0] in fresh or known.intersection(keys):
            taken.duplicate += 1
            continue
        fresh.add(keys[0])
        rows.append((keys[0], provider, now))
        try:
            target = targeter.target(event.email)
        except SuppressError:
            taken.invalid += 1  # counted, never shown: the text may hold an address
            continue
        groups[(event.list_name, event.reason)].append(target)
    source = f"webhook:{provider}"
    for (list_name, reason), targets in sorted(groups.items()):
        counts = suppressions.import_batch(
            session, targets, list_name, reason, source=source, actor=source, now=now, via="webhook"
        )
        taken.added += counts.added
        taken.existing += counts.existing
    insert_rows(
        session,
        WebhookEvent.__table__,  # type: ignore[arg-type]
        ("key", "provider", "received_at"),
        rows,
    )
    return taken


def purge(session: Session, *, now: datetime) -> int:
    """Forget event ids older than RETENTION_DAYS (the hourly job); returns how many."""
    cutoff = now - timedelta(days=RETENTION_DAYS)
    result = session.execute(delete(WebhookEvent).where(WebhookEvent.received_at < cutoff))
    return int(getattr(result, "rowcount", 0) or 0)
