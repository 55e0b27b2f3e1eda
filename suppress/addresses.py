"""The only home of plaintext addresses: scheme n1 normalization and keyed digests (KeyRing)."""

from __future__ import annotations

import hashlib
import html
import re
import unicodedata
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

from email_validator import SPECIAL_USE_DOMAIN_NAMES, EmailNotValidError, validate_email

from .errors import InvalidEmail, InvalidRequest

SCHEME = "n1"
# Gmail ignores dots in the local part; googlemail.com is the same mailbox namespace.
DOMAIN_ALIASES = {"googlemail.com": "gmail.com"}
DOTLESS_DOMAINS = frozenset({"gmail.com"})
MAX_INPUT = 512
_ADDRESS_LIKE = re.compile(r"[^\s@<>]+@[^\s@<>]+\.[^\s@<>]+")
# Dots that IDNA maps to "." in a domain: text using them still names an address.
_DOTS = str.maketrans({"\u3002": ".", "\uff0e": ".", "\uff61": "."})
# "(at)", "[at]", "{dot}" and the like, with or without spaces around them.
_SPELLED = re.compile(r"\s*[(\[{<]\s*(at|dot)\s*[)\]}>]\s*", re.IGNORECASE)
_SPACED_AT = re.compile(r"\s*@\s*")

# The fast path: a plain ASCII dot-atom address whose domain is LDH labels under an
# alphabetic TLD, with nothing that makes email-validator look further (no "--", so no
# Punycode or R-LDH labels; no special-use TLD; short enough for every length limit). For
# such input email-validator returns the local part unchanged and the domain lowercased
# (tests/test_addresses.py proves the equivalence); anything else takes the full path.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_FAST = re.compile(rf"({_ATEXT}+(?:\.{_ATEXT}+)*)@((?:{_LABEL}\.)+[A-Za-z]{{2,63}})")
_FAST_MAX = 254  # email-validator's whole-address limit; longer input takes the full path
# email-validator rejects these names and everything under them (RFC 6761 and friends).
_SPECIAL_TLDS = frozenset(d for d in SPECIAL_USE_DOMAIN_NAMES if "." not in d)
_SPECIAL_SUFFIXES = tuple(d for d in SPECIAL_USE_DOMAIN_NAMES if "." in d)


def _validate(text: str) -> tuple[str, str]:
    """Return (local part, ASCII domain) as email-validator accepts them, or raise InvalidEmail."""
    if not text or len(text) > MAX_INPUT:
        raise InvalidEmail("not a valid email address: empty or too long")
    try:
        result = validate_email(
            text,
            check_deliverability=False,
            allow_smtputf8=True,
            allow_quoted_local=False,
            allow_domain_literal=False,
            allow_display_name=False,
            allow_empty_local=False,
            globally_deliverable=True,
        )
    except EmailNotValidError as exc:
        raise InvalidEmail(f"not a valid email address: {exc}") from None
    if result.ascii_domain is None:  # pragma: no cover - only domain literals lack one
        raise InvalidEmail("not a valid email address: the domain has no ASCII form")
    return result.local_part, result.ascii_domain


def _canonical_domain(ascii_domain: str) -> str:
    domain = ascii_domain.lower()
    return DOMAIN_ALIASES.get(domain, domain)


def _fast_split(text: str) -> tuple[str, str] | None:
    """(local part, lowercase domain) for plain ASCII input email-validator surely accepts."""
    if len(text) > _FAST_MAX or not text.isascii():
        return None
    match = _FAST.fullmatch(text)
    if match is None:
        return None
    local, domain = match.group(1), match.group(2).lower()
    if "--" in domain:
        return None
    if domain.rpartition(".")[2] in _SPECIAL_TLDS:
        return None
    for special in _SPECIAL_SUFFIXES:
        if domain == special or domain.endswith("." + special):
            return None
    return local, domain


def _finish(local: str, ascii_domain: str) -> str:
    domain = _canonical_domain(ascii_domain)
    if not local.isascii():
        local = unicodedata.normalize("NFC", local)
    local = local.lower()
    plus = local.find("+")
    if plus > 0:
        local = local[:plus]
    if domain in DOTLESS_DOMAINS:
        local = local.replace(".", "")
    return f"{local}@{domain}"


def normalize_full(raw: str) -> str:
    """Normalize through email-validator alone (the reference the fast path is tested on)."""
    return _finish(*_validate(raw.strip()))


def normalize(raw: str) -> str:
    """Normalize an address under scheme n1 (DESIGN §3), or raise InvalidEmail.

    Plain ASCII input takes the fast path, which gives exactly normalize_full's answer.
    """
    text = raw.strip()
    return _finish(*(_fast_split(text) or _validate(text)))


def normalize_domain(raw: str) -> str:
    """Normalize a domain for a domain suppression: its ASCII (A-label) form, lowercased."""
    text = raw.strip().lower()
    if "@" in text or not text:
        raise InvalidRequest("domain must be a bare domain name such as example.com")
    try:
        _, ascii_domain = _validate(f"postmaster@{text}")
    except InvalidEmail:
        raise InvalidRequest(f"not a valid domain name: {raw.strip()[:100]!r}") from None
    return _canonical_domain(ascii_domain)


def domain_of(normalized: str) -> str:
    """The domain part of a normalized address."""
    return normalized.rpartition("@")[2]


def domain_and_parents(domain: str) -> list[str]:
    """A domain and every parent that still has a dot: what a domain suppression may match."""
    labels = domain.split(".")
    return [".".join(labels[i:]) for i in range(len(labels) - 1)]


def contains_address(text: str) -> bool:
    """True when free text (evidence, source, reference) looks like it holds an email
    address: after compatibility folding (a fullwidth "＠" is an "@") and with the dots
    IDNA reads as ".", any run of non-space text around an "@" with a dot after it,
    quotes and apostrophes included (both are valid in local parts)."""
    folded = unicodedata.normalize("NFKC", text)
    # As a reader of the text would read it back: HTML character references ("&#64;"),
    # percent-encoding ("%40"), "(at)" and "[dot]", and spaces or line breaks around the
    # "@" ("name @ example.se").
    for _ in range(2):  # encodings nest ("%26%2364%3B"); two rounds undo the usual ones
        folded = urllib.parse.unquote(html.unescape(folded))
    folded = unicodedata.normalize("NFKC", folded).translate(_DOTS)
    folded = _SPELLED.sub(lambda m: "@" if m.group(1).lower() == "at" else ".", folded)
    folded = _SPACED_AT.sub("@", folded)
    return bool(_ADDRESS_LIKE.search(folded))


class Digest(NamedTuple):
    """One keyed digest of a normalized value (a tuple: the bulk paths make millions)."""

    key_id: str
    value: bytes


def _pads(key: bytes) -> tuple[Any, Any]:
    """SHA-256 states that have absorbed the HMAC inner and outer key pads."""
    if len(key) > _BLOCK:
        key = hashlib.sha256(key).digest()
    key = key.ljust(_BLOCK, b"\0")
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
    outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))
    return inner, outer


_BLOCK = 64  # SHA-256 block size


def _keyed(pads: tuple[Any, Any], message: bytes) -> bytes:
    """HMAC-SHA256 of message from a key's absorbed pads (see _pads)."""
    inner = pads[0].copy()
    inner.update(message)
    outer = pads[1].copy()
    outer.update(inner.digest())
    return outer.digest()


class KeyRing:
    """Ordered peppers: the first is active for writes, all are used for reads."""

    def __init__(self, peppers: Iterable[tuple[str, bytes]]):
        ring = list(peppers)
        if not ring:
            raise ValueError("a key ring needs at least one pepper")
        self.key_ids: tuple[str, ...] = tuple(key_id for key_id, _ in ring)
        self.active_id = self.key_ids[0]
        # HMAC (RFC 2104) with the key pads absorbed once: each digest copies two SHA-256
        # states. Copying plain SHA-256 states is much cheaper than copying an hmac object
        # under OpenSSL 3, and the bulk paths compute millions of these.
        self._pads = {key_id: _pads(key) for key_id, key in ring}
        self._pad_list = [self._pads[key_id] for key_id in self.key_ids]

    def _digest(self, key_id: str, message: str) -> bytes:
        return _keyed(self._pads[key_id], message.encode("utf-8"))

    def address(self, normalized: str, key_id: str | None = None) -> bytes:
        """HMAC-SHA256 of an n1-normalized address under one key (default: active)."""
        return self._digest(key_id or self.active_id, f"a:{SCHEME}:{normalized}")

    def domain(self, ascii_domain: str, key_id: str | None = None) -> bytes:
        """HMAC-SHA256 of an n1 domain under one key (default: active)."""
        return self._digest(key_id or self.active_id, f"d:{SCHEME}:{ascii_domain}")

    def derived_keys(self, purpose: str) -> list[tuple[str, bytes]]:
        """A key per pepper for another use (e.g. request fingerprints), active first.

        HMAC(pepper, "k:" + purpose): never equal to an address or domain digest, and
        useless without the pepper, like the digests themselves.
        """
        return [(k, self._digest(k, f"k:{purpose}")) for k in self.key_ids]

    def fingerprints(self) -> list[tuple[str, bytes]]:
        """HMAC(pepper, "f:pepper-check") per pepper: tells two different peppers under one
        id apart, and is computed from no address."""
        return [(k, self._digest(k, "f:pepper-check")) for k in self.key_ids]

    def address_values(self, normalized: str) -> tuple[bytes, ...]:
        """The address's digest under every key, active first, as bytes alone: the values
        of address_digests without their key ids, for the bulk paths."""
        message = f"a:{SCHEME}:{normalized}".encode()
        values = []
        for inner_pad, outer_pad in self._pad_list:  # _keyed, inlined: once per recipient
            inner = inner_pad.copy()
            inner.update(message)
            outer = outer_pad.copy()
            outer.update(inner.digest())
            values.append(outer.digest())
        return tuple(values)

    def address_digests(self, normalized: str) -> list[Digest]:
        """The address's digest under every key, active first."""
        return [Digest(k, self.address(normalized, k)) for k in self.key_ids]

    def domain_digests(self, ascii_domain: str) -> list[Digest]:
        """The domain's digest under every key, active first."""
        return [Digest(k, self.domain(ascii_domain, k)) for k in self.key_ids]


@dataclass(frozen=True)
class Target:
    """What a suppression or check is about: an address or a domain, as digests only."""

    kind: str  # "address" | "domain"
    digests: tuple[Digest, ...]
    # Digests of the address's domain and parents, per domain, each under every key.
    domain_digests: tuple[tuple[Digest, ...], ...] = ()

    @property
    def active(self) -> Digest:
        """The digest under the active key (where new rows are written)."""
        return self.digests[0]


def active_digest(ring: KeyRing, raw: str) -> Digest:
    """Normalize an address and return its digest under the active key only."""
    return Digest(ring.active_id, ring.address(normalize(raw)))


def address_target(ring: KeyRing, raw: str) -> Target:
    """Normalize an address and return its digests and those of its domains."""
    normalized = normalize(raw)
    return Target(
        kind="address",
        digests=tuple(ring.address_digests(normalized)),
        domain_digests=tuple(
            tuple(ring.domain_digests(d)) for d in domain_and_parents(domain_of(normalized))
        ),
    )


class Targeter:
    """Address targets for the bulk paths; domain digests are cached (domains repeat)."""

    def __init__(self, ring: KeyRing, *, max_domains: int = 100_000):
        self.ring = ring
        self._max = max_domains
        # Per domain: the digests of it and its parents, grouped (for Target), and the same
        # values flat as bytes (one tuple shared by every address of the domain).
        self._domains: dict[str, tuple[tuple[tuple[Digest, ...], ...], tuple[bytes, ...]]] = {}

    def _domain(self, domain: str) -> tuple[tuple[tuple[Digest, ...], ...], tuple[bytes, ...]]:
        found = self._domains.get(domain)
        if found is None:
            if len(self._domains) >= self._max:
                self._domains.clear()  # bounded memory; a long tail of domains just recomputes
            groups = tuple(tuple(self.ring.domain_digests(d)) for d in domain_and_parents(domain))
            found = (groups, tuple(d.value for group in groups for d in group))
            self._domains[domain] = found
        return found

    def target(self, raw: str) -> Target:
        """Normalize an address (InvalidEmail if it is not one) and return its Target."""
        normalized = normalize(raw)
        groups = self._domain(domain_of(normalized))[0]
        return Target("address", tuple(self.ring.address_digests(normalized)), groups)

    def values(self, raw: str) -> tuple[tuple[bytes, ...], tuple[bytes, ...]]:
        """Every digest that could suppress an address, as bytes: the address's under every
        key, then those of its domain and parents (the same tuple for every address of a
        domain). InvalidEmail if it is not an address. target() gives the same digests with
        their key ids and kinds, for the few addresses a suppression matches."""
        normalized = normalize(raw)
        return self.ring.address_values(normalized), self._domain(domain_of(normalized))[1]


def domain_target(ring: KeyRing, raw: str) -> Target:
    """Normalize a domain and return its digests."""
    return Target(kind="domain", digests=tuple(ring.domain_digests(normalize_domain(raw))))
