"""Scheme n1 normalization and keyed digests: conformance vectors, DESIGN examples, properties."""

from __future__ import annotations

import base64
import json
import unicodedata
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from suppress import addresses
from suppress.addresses import (
    KeyRing,
    contains_address,
    domain_and_parents,
    normalize,
    normalize_domain,
)
from suppress.errors import InvalidEmail, InvalidRequest

VECTORS = json.loads((Path(__file__).parent.parent / "docs" / "n1-vectors.json").read_text())
RING = KeyRing([(VECTORS["pepper_id"], base64.b64decode(VECTORS["pepper_base64"]))])
VALID = [c for c in VECTORS["cases"] if "normalized" in c]
INVALID = [c for c in VECTORS["cases"] if "error" in c]


@pytest.mark.parametrize("case", VALID, ids=[repr(c["input"]) for c in VALID])
def test_vector_normalizes_and_hashes_as_published(case: dict[str, str]) -> None:
    normalized = normalize(case["input"])
    assert normalized == case["normalized"]
    assert RING.address(normalized).hex() == case["address_digest"]
    assert addresses.domain_of(normalized) == case["domain"]
    assert RING.domain(case["domain"]).hex() == case["domain_digest"]


@pytest.mark.parametrize("case", INVALID, ids=[repr(c["input"]) for c in INVALID])
def test_vector_rejected_as_invalid_email(case: dict[str, str]) -> None:
    with pytest.raises(InvalidEmail) as info:
        normalize(case["input"])
    assert info.value.code == case["error"] == "invalid_email"


def test_vectors_cover_every_design_example() -> None:
    inputs = {c["input"] for c in VECTORS["cases"]}
    for example in (
        "  Anna.Berg+Nyhetsbrev@Example.SE ",
        "Foo.Bar+x@GoogleMail.com",
        "user@Bücher.example",
        "ÅSA@företag.se",
    ):
        assert example in inputs


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  Anna.Berg+Nyhetsbrev@Example.SE ", "anna.berg@example.se"),
        ("Foo.Bar+x@GoogleMail.com", "foobar@gmail.com"),
        ("user@Bücher.example", "user@xn--bcher-kva.example"),
        ("ÅSA@företag.se", "åsa@xn--fretag-wxa.se"),
        ("+a+b@x.se", "+a+b@x.se"),
        ("anna+news@x.se", "anna@x.se"),
    ],
)
def test_design_examples(raw: str, expected: str) -> None:
    assert normalize(raw) == expected


def test_decomposed_unicode_local_part_is_composed() -> None:
    decomposed = unicodedata.normalize("NFD", "ÅSA") + "@företag.se"
    assert normalize(decomposed) == "åsa@xn--fretag-wxa.se"


@pytest.mark.parametrize(
    "raw",
    [
        "Anna <a@example.se>",
        "mailto:a@example.se",
        "a@localhost",
        '"q"@example.se',
        "a@[1.2.3.4]",
        "a b@example.se",
        "x" * 600 + "@example.se",
    ],
)
def test_rejected_forms(raw: str) -> None:
    with pytest.raises(InvalidEmail):
        normalize(raw)


def test_domain_normalization_and_parents() -> None:
    assert normalize_domain(" Bücher.Example ") == "xn--bcher-kva.example"
    assert normalize_domain("GoogleMail.com") == "gmail.com"
    assert domain_and_parents("a.b.example.co.uk") == [
        "a.b.example.co.uk",
        "b.example.co.uk",
        "example.co.uk",
        "co.uk",
    ]
    for bad in ("", "a@example.se", "localhost", "example.invalid", "-x.se"):
        with pytest.raises(InvalidRequest):
            normalize_domain(bad)


def test_keyring_digests_differ_per_key_and_kind() -> None:
    ring = KeyRing([("new", b"n" * 32), ("old", b"o" * 32)])
    digests = ring.address_digests("a@example.se")
    assert [d.key_id for d in digests] == ["new", "old"]
    assert digests[0].value != digests[1].value
    assert ring.address("example.se") != ring.domain("example.se")
    assert len(digests[0].value) == 32


def test_contains_address() -> None:
    assert addresses.contains_address("consent from anna@example.se")
    assert not addresses.contains_address("consent form #1234 signed 2026-11-01")


# --- properties ------------------------------------------------------------------------------

LOCAL = st.from_regex(r"[a-z0-9][a-z0-9_-]{0,10}(\.[a-z0-9_-]{1,8}){0,2}", fullmatch=True)
DOMAIN = st.sampled_from(
    ["example.se", "example.com", "sub.example.org", "gmail.com", "xn--fretag-wxa.se"]
)


@given(LOCAL, DOMAIN)
def test_normalizing_is_idempotent(local: str, domain: str) -> None:
    once = normalize(f"{local}@{domain}")
    assert normalize(once) == once


@given(
    LOCAL,
    DOMAIN,
    st.text(alphabet="abcxyz0123-", min_size=0, max_size=8),
    st.sampled_from(["", " ", "\t", "\n "]),
    st.randoms(use_true_random=False),
)
def test_spelling_variants_hash_alike(local: str, domain: str, tag: str, pad: str, rnd) -> None:  # type: ignore[no-untyped-def]
    base = normalize(f"{local}@{domain}")
    cased = "".join(c.upper() if rnd.random() < 0.5 else c for c in local)
    variant_domain = "googlemail.com" if domain == "gmail.com" and rnd.random() < 0.5 else domain
    variant = f"{pad}{cased}+{tag}@{variant_domain.upper()}{pad}"
    assert RING.address(normalize(variant)) == RING.address(base)


@given(LOCAL)
def test_gmail_dots_do_not_matter(local: str) -> None:
    dotted = ".".join(local.replace(".", ""))
    if dotted:
        assert normalize(f"{dotted}@gmail.com") == normalize(f"{local}@gmail.com")


@pytest.mark.parametrize(
    "text",
    [
        "leakcheck.k4r9 @ example.se",
        "leakcheck.k4r9%40example.se",
        "leakcheck.k4r9%2540example.se",
        "leakcheck.k4r9&#64;example.se",
        "leakcheck.k4r9&commat;example.se",
        "leakcheck.k4r9\n@example.se",
        "leakcheck.k4r9 (at) example (dot) se",
        "leakcheck.k4r9[at]example.se",
    ],
)
def test_free_text_refuses_an_address_in_the_spellings_a_reader_reads_back(text: str) -> None:
    assert contains_address(text)


@pytest.mark.parametrize(
    "text",
    [
        "Phone call 2026-12-01 at 14:05",
        "Ref 2026/113 (at reception)",
        "100% sure, 20% off",
        "Tom & Jerry's",
        "ärende 12 @ kontoret",
    ],
)
def test_free_text_without_an_address_is_kept(text: str) -> None:
    assert not contains_address(text)
