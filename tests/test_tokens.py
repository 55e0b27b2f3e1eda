"""Unsubscribe tokens: what they carry, rotation of secrets, and every way to forge one."""

from __future__ import annotations

import base64
import json
import time

import pytest
from itsdangerous import Signer, URLSafeSerializer

from suppress.addresses import Digest, KeyRing, active_digest, normalize
from suppress.config import parse_peppers
from suppress.errors import InvalidToken
from suppress.tokens import MAX_TOKEN, SALT, TokenSigner, unsubscribe_links

from .conftest import OLD_PEPPER, TEST_PEPPER

RING = KeyRing(parse_peppers(f"{TEST_PEPPER},{OLD_PEPPER}"))
NEW_SECRET = "new-secret-for-tests-0123456789abcdef"
OLD_SECRET = "old-secret-for-tests-0123456789abcdef"
SIGNER = TokenSigner([NEW_SECRET, OLD_SECRET], RING.key_ids)
ADDRESS = "Anna.Berg+news@Example.se"
MINTER = 7  # the id of the API key that mints the links


def token_for(
    email: str = ADDRESS,
    list_name: str = "news",
    signer: TokenSigner = SIGNER,
    minted_by: int = MINTER,
) -> str:
    return signer.sign(active_digest(RING, email), list_name, minted_by=minted_by)


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def first_format_token(email: str = ADDRESS, list_name: str = "news") -> str:
    """A token as links were minted before they named their API key: three items, no minter."""
    payload = json.dumps(
        [b64(RING.address(normalize(email))), "t1", list_name], separators=(",", ":")
    )
    return Signer([OLD_SECRET, NEW_SECRET], salt=SALT).sign(b64(payload.encode())).decode()


def payload_text(token: str) -> str:
    """The readable part of a token (itsdangerous payloads are only base64, not encrypted)."""
    body = token.rsplit(".", 1)[0]
    raw = base64.urlsafe_b64decode(body.lstrip(".") + "=" * (-len(body.lstrip(".")) % 4))
    return raw.decode("utf-8", "replace")


def test_token_round_trips_digest_key_id_list_and_minter() -> None:
    claim = SIGNER.verify(token_for())
    assert claim.list == "news"
    assert claim.digest == Digest("t1", RING.address(normalize(ADDRESS)))
    assert claim.minted_by == MINTER


def test_token_in_the_first_format_still_verifies_without_a_minter() -> None:
    # Mail sent before tokens named their minter is still in inboxes: tokens never expire.
    claim = SIGNER.verify(first_format_token())
    assert claim.digest == Digest("t1", RING.address(normalize(ADDRESS)))
    assert (claim.list, claim.minted_by) == ("news", None)


def test_tokens_stay_compact_with_the_largest_key_id() -> None:
    # They travel in mail headers (List-Unsubscribe): the minter adds a few bytes, no more.
    assert len(first_format_token()) <= 110
    assert len(token_for(minted_by=123_456)) - len(first_format_token()) <= 10
    longest = token_for(list_name="x" * 64, minted_by=2**63 - 1)
    assert len(longest) <= 256 < MAX_TOKEN
    assert SIGNER.verify(longest).minted_by == 2**63 - 1


def test_token_never_carries_the_address() -> None:
    token = token_for()
    text = payload_text(token)
    for part in ("anna", "berg", "example", "@"):
        assert part not in token.lower()
        assert part not in text.lower()
    assert json.loads(text) == [
        base64.urlsafe_b64encode(RING.address(normalize(ADDRESS))).rstrip(b"=").decode(),
        "t1",
        "news",
        MINTER,
    ]


def test_same_recipient_list_and_minter_give_the_same_token() -> None:
    assert token_for("anna.berg@example.se") == token_for(ADDRESS)
    assert token_for(list_name="offers") != token_for()
    assert token_for(minted_by=MINTER + 1) != token_for()


def test_first_secret_signs_and_every_secret_verifies() -> None:
    old_only = TokenSigner([OLD_SECRET], RING.key_ids)
    new_only = TokenSigner([NEW_SECRET], RING.key_ids)
    mail_sent_last_year = token_for(signer=old_only)
    assert SIGNER.verify(mail_sent_last_year).list == "news"
    fresh = token_for()
    assert new_only.verify(fresh).list == "news"
    with pytest.raises(InvalidToken):
        old_only.verify(fresh)


def test_tokens_do_not_expire(monkeypatch: pytest.MonkeyPatch) -> None:
    token = token_for()
    later = time.time() + 30 * 365 * 86400
    monkeypatch.setattr(time, "time", lambda: later)
    assert SIGNER.verify(token).list == "news"


def _flip(token: str, index: int) -> str:
    ch = token[index]
    return token[:index] + ("A" if ch != "A" else "B") + token[index + 1 :]


@pytest.mark.parametrize(
    "forge",
    [
        pytest.param(lambda t: _flip(t, 5), id="payload-changed"),
        pytest.param(lambda t: _flip(t, len(t) - 2), id="signature-changed"),
        pytest.param(lambda t: t[:-1], id="truncated-by-one"),
        pytest.param(lambda t: t[: len(t) // 2], id="truncated-to-half"),
        pytest.param(lambda t: t.split(".")[0], id="signature-missing"),
        pytest.param(lambda t: t + "x", id="appended"),
        pytest.param(lambda t: t.upper(), id="case-changed"),
        pytest.param(
            lambda t: TokenSigner(["someone-else-entirely-0123456789abcdef"], RING.key_ids).sign(
                active_digest(RING, ADDRESS), "news", minted_by=MINTER
            ),
            id="foreign-secret",
        ),
        pytest.param(
            lambda t: URLSafeSerializer(NEW_SECRET, salt="another.purpose").dumps(
                json.loads(payload_text(t))
            ),
            id="other-purpose-salt",
        ),
        pytest.param(lambda t: "", id="empty"),
        pytest.param(lambda t: "not-a-token", id="garbage"),
        pytest.param(lambda t: "å" + t, id="non-ascii"),
        pytest.param(lambda t: t + "A" * MAX_TOKEN, id="overlong"),
    ],
)
def test_forged_tokens_are_rejected(forge) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidToken) as raised:
        SIGNER.verify(forge(token_for()))
    assert raised.value.code == "invalid_token" and raised.value.status == 400


@pytest.mark.parametrize(
    "payload",
    [
        ["AAAA", "t1", "news"],  # digest too short
        [base64.urlsafe_b64encode(bytes(32)).decode().rstrip("="), "t1", "Bad List"],
        [base64.urlsafe_b64encode(bytes(32)).decode().rstrip("="), "bad id!", "news"],
        [base64.urlsafe_b64encode(bytes(32)).decode().rstrip("="), "t1"],
        {"d": "x", "k": "t1", "l": "news"},
        "anna@example.se",
        ["!!!", "t1", "news"],
        [base64.urlsafe_b64encode(bytes(32)).decode().rstrip("="), "t1", "news", "7"],
        [base64.urlsafe_b64encode(bytes(32)).decode().rstrip("="), "t1", "news", True],
        [base64.urlsafe_b64encode(bytes(32)).decode().rstrip("="), "t1", "news", 0],
        [base64.urlsafe_b64encode(bytes(32)).decode().rstrip("="), "t1", "news", -7],
        [base64.urlsafe_b64encode(bytes(32)).decode().rstrip("="), "t1", "news", 7.0],
        [base64.urlsafe_b64encode(bytes(32)).decode().rstrip("="), "t1", "news", 2**63],
        [base64.urlsafe_b64encode(bytes(32)).decode().rstrip("="), "t1", "news", None],
        [base64.urlsafe_b64encode(bytes(32)).decode().rstrip("="), "t1", "news", 7, 7],
    ],
)
def test_genuinely_signed_but_malformed_payloads_are_rejected(payload: object) -> None:
    # Only a signer bug (or a leaked secret) could produce these; they still must not pass.
    token = URLSafeSerializer([NEW_SECRET], salt=SALT).dumps(payload)
    with pytest.raises(InvalidToken):
        SIGNER.verify(token)


def test_token_for_a_retired_pepper_is_rejected() -> None:
    digest = Digest("t9", bytes(32))
    token = SIGNER.sign(digest, "news", minted_by=MINTER)
    with pytest.raises(InvalidToken) as raised:
        SIGNER.verify(token)
    assert raised.value.code == "token_retired"


def test_links_are_built_on_the_base_url_and_skip_invalid_addresses() -> None:
    links, invalid = unsubscribe_links(
        SIGNER,
        RING,
        "https://suppress.example.com/",
        "news",
        [ADDRESS, "not an address", "b@example.org"],
        minted_by=MINTER,
    )
    assert [link.email for link in links] == [ADDRESS, "b@example.org"]
    assert links[0].url == "https://suppress.example.com/u/" + token_for()
    assert invalid == [("not an address", "invalid_email")]
    assert {SIGNER.verify(link.url.rsplit("/", 1)[1]).minted_by for link in links} == {MINTER}
