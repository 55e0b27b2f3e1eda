"""Signed unsubscribe tokens (itsdangerous): digest, key id, list and minter, never the address."""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from itsdangerous import BadData, Signer

from .addresses import Digest, KeyRing, active_digest
from .config import KEY_ID
from .errors import ErrorCode, InvalidToken, SuppressError
from .models import LIST_PATTERN

# Versioned salt: a token of another purpose signed with the same secret never verifies here.
SALT = "suppress.unsubscribe.v1"
# Real tokens are about 115 characters; anything far longer is rejected before any work.
MAX_TOKEN = 512
_LIST = re.compile(LIST_PATTERN)
# API key ids are database integers; a signed larger number is no key of ours.
_MAX_KEY_ID = 2**63 - 1


@dataclass(frozen=True)
class Claim:
    """What a verified token entitles its bearer to: opt one digest out of a list.

    `minted_by` is the id of the API key that minted the link; None for links minted before
    tokens carried it (they still work: tokens never expire).
    """

    digest: Digest
    list: str
    minted_by: int | None = None


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenSigner:
    """Sign and verify unsubscribe tokens with an ordered list of secrets.

    The first secret signs; every secret verifies, so a new secret can be put first while
    links in mail already sent keep working. Tokens carry no timestamp and never expire: an
    unsubscribe link must work in a mail read years later (RFC 8058 §3.1 asks only that the
    URI identify the recipient and list).
    """

    def __init__(self, secrets: Sequence[str], key_ids: Collection[str]):
        if not secrets:
            raise ValueError("a token signer needs at least one secret")
        # itsdangerous takes keys oldest to newest and signs with the last one. A bare Signer
        # over compact JSON gives the very tokens URLSafeSerializer would (its payloads this
        # small are never compressed) at a third of the cost: batches sign 10,000 at a time.
        self._signer = Signer(list(reversed(secrets)), salt=SALT)
        self._key_ids = frozenset(key_ids)

    def sign(self, digest: Digest, list_name: str, *, minted_by: int) -> str:
        """A URL-safe token for one address digest and list, naming the API key that minted it."""
        # The key id rides in the token (a few bytes, not a lookup) so that the opt-out made
        # through the link can name who minted it: a mailer key can mint for any address.
        payload = json.dumps(
            [_b64(digest.value), digest.key_id, list_name, minted_by], separators=(",", ":")
        )
        return self._signer.sign(_b64(payload.encode("utf-8"))).decode("ascii")

    def verify(self, token: str) -> Claim:
        """The claim of a genuine token, or InvalidToken (nothing else is revealed).

        The signature is checked first, with a constant-time comparison against every
        secret; the payload is parsed only once it is known to be ours.
        """
        if not token or len(token) > MAX_TOKEN or not token.isascii():
            raise InvalidToken("the unsubscribe link is incomplete or damaged")
        try:
            signed = self._signer.unsign(token)
        except BadData:
            raise InvalidToken("the unsubscribe link is incomplete or damaged") from None
        try:
            payload = json.loads(_unb64(signed.decode("ascii")))
        except (binascii.Error, UnicodeError, ValueError):
            raise InvalidToken("the unsubscribe link has an unknown format") from None
        return self._claim(payload)

    def _claim(self, payload: object) -> Claim:
        # Three items: the first format, still in mail already sent; four: with the minter.
        if not (isinstance(payload, list) and len(payload) in (3, 4)):
            raise InvalidToken("the unsubscribe link has an unknown format")
        encoded, key_id, list_name = payload[:3]
        minted_by = payload[3] if len(payload) == 4 else None
        if minted_by is not None and not (type(minted_by) is int and 1 <= minted_by <= _MAX_KEY_ID):
            raise InvalidToken("the unsubscribe link has an unknown format")
        if not (
            isinstance(encoded, str)
            and isinstance(key_id, str)
            and isinstance(list_name, str)
            and KEY_ID.match(key_id)
            and _LIST.match(list_name)
        ):
            raise InvalidToken("the unsubscribe link has an unknown format")
        try:
            digest = _unb64(encoded)
        except (binascii.Error, ValueError):
            raise InvalidToken("the unsubscribe link has an unknown format") from None
        if len(digest) != 32:
            raise InvalidToken("the unsubscribe link has an unknown format")
        if key_id not in self._key_ids:
            # The pepper that keyed this digest has been retired: no check can ever match a
            # row under it, so recording one would confirm an opt-out that does nothing.
            raise InvalidToken(
                "the unsubscribe link is too old to be honoured", code=ErrorCode.token_retired
            )
        return Claim(Digest(key_id, digest), list_name, minted_by)


@dataclass(frozen=True)
class Link:
    """One recipient's unsubscribe link, with the input address as the caller gave it."""

    email: str
    url: str


def unsubscribe_links(
    signer: TokenSigner,
    ring: KeyRing,
    base_url: str,
    list_name: str,
    emails: Sequence[str],
    *,
    minted_by: int,
) -> tuple[list[Link], list[tuple[str, str]]]:
    """Links for a batch of addresses on one list; invalid inputs as (email, error code)."""
    links: list[Link] = []
    invalid: list[tuple[str, str]] = []
    prefix = f"{base_url.rstrip('/')}/u/"
    for email in emails:
        try:
            digest = active_digest(ring, email)
        except SuppressError as exc:
            invalid.append((email, exc.code))
            continue
        links.append(Link(email, prefix + signer.sign(digest, list_name, minted_by=minted_by)))
    return links, invalid
