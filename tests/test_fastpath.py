"""The ASCII fast path of n1 gives exactly the email-validator path's answer on every input."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from suppress import addresses
from suppress.errors import InvalidEmail


def outcome(normalizer, raw: str) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    """("ok", normalized) or ("error", code: message): what a caller can observe."""
    try:
        return "ok", normalizer(raw)
    except InvalidEmail as exc:
        return "error", f"{exc.code}: {exc.message}"


def assert_same(raw: str) -> None:
    assert outcome(addresses.normalize, raw) == outcome(addresses.normalize_full, raw), raw


ATEXT = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+/=?^_`{|}~-"
# Characters that sit on the edges of the grammar: separators, quoting, whitespace (including
# the ASCII separators str.strip() removes), control characters, and a few non-ASCII ones
# that look like ASCII (full-width at sign, dotless i, Kelvin sign, combining accent).
EDGY = '.@-+"<>()[]\\,;: \t\n\r\x0b\x0c\x1c\x1f\x00\x7fİıK＠．é\u0301ß'
SPECIAL_TLDS = ["arpa", "invalid", "local", "localhost", "onion", "test", "example"]

label = st.text(alphabet="abcXYZ019-", min_size=1, max_size=8) | st.sampled_from(
    ["xn--fretag-wxa", "xn--zz", "ab--cd", "a" * 63, "a" * 64, "-a", "a-", "1", "xn-"]
)
tld = st.sampled_from(["se", "COM", "org", "c", "1a", "a1", "xn--p1ai", *SPECIAL_TLDS]) | label
domain = st.builds(
    lambda labels, top: ".".join([*labels, top]), st.lists(label, min_size=0, max_size=4), tld
)
local = st.text(alphabet=ATEXT + ".", min_size=0, max_size=20) | st.sampled_from(
    ["a" * 64, "a" * 65, "a" * 200, "+x", "a+b+c", ".a", "a.", "a..b", "Info", "POSTMASTER"]
)
pad = st.sampled_from(["", " ", "\t", "\n", " \r\n", "\x1c", "\u00a0", "\u2003"])


@st.composite
def generated(draw: st.DrawFn) -> str:
    """Addresses from the grammar's pieces, mostly valid, often just at an edge."""
    text = f"{draw(local)}@{draw(domain)}"
    if draw(st.booleans()):
        # One adversarial edit: insert, replace or delete a character somewhere.
        pos = draw(st.integers(0, len(text)))
        char = draw(st.sampled_from(EDGY) | st.sampled_from(ATEXT))
        edit = draw(st.sampled_from(["insert", "replace", "delete"]))
        if edit == "insert":
            text = text[:pos] + char + text[pos:]
        elif edit == "replace":
            text = text[:pos] + char + text[pos + 1 :]
        else:
            text = text[:pos] + text[pos + 1 :]
    return draw(pad) + text + draw(pad)


@st.composite
def long_addresses(draw: st.DrawFn) -> str:
    """Addresses around the 254-character whole-address and 253-character domain limits."""
    total = draw(st.integers(240, 262))
    local_len = draw(st.integers(1, 80))
    rest = max(total - local_len - 1, 4)
    labels = []
    while rest > 0:
        size = min(draw(st.integers(1, 63)), rest)
        labels.append("b" * size)
        rest -= size + 1
    return "a" * local_len + "@" + ".".join(labels + ["se"])


@pytest.mark.slow
@settings(max_examples=2000, suppress_health_check=[HealthCheck.too_slow])
@given(generated())
@example("anna.berg+nyhetsbrev@example.se")
@example("x@localhost.localhost")
def test_fast_path_agrees_on_generated_addresses(raw: str) -> None:
    assert_same(raw)


@settings(max_examples=1000)
@given(st.text(alphabet=st.characters(codec="ascii"), max_size=40))
def test_fast_path_agrees_on_arbitrary_ascii(raw: str) -> None:
    assert_same(raw)


@pytest.mark.slow
@settings(max_examples=1000)
@given(st.from_regex(addresses._FAST, fullmatch=True))
def test_fast_path_agrees_on_everything_its_pattern_accepts(raw: str) -> None:
    assert_same(raw)


@settings(max_examples=500)
@given(long_addresses())
def test_fast_path_agrees_at_the_length_limits(raw: str) -> None:
    assert_same(raw)


@settings(max_examples=500)
@given(st.text(max_size=40))
def test_fast_path_agrees_on_arbitrary_unicode(raw: str) -> None:
    assert_same(raw)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  Anna.Berg+Nyhetsbrev@Example.SE ", "anna.berg@example.se"),
        ("Foo.Bar+x@GoogleMail.com", "foobar@gmail.com"),
        ("+a+b@x.se", "+a+b@x.se"),
        ("a+@example.se", "a@example.se"),
        ("POSTMASTER@EXAMPLE.COM", "postmaster@example.com"),
        ("o'brien@example.ie", "o'brien@example.ie"),
        ("{weird}|~!#$%&*/=?^`@example.org", "{weird}|~!#$%&*/=?^`@example.org"),
        ("a@sub-domain.example.co.uk", "a@sub-domain.example.co.uk"),
        ("a@xn--fretag-wxa.se", "a@xn--fretag-wxa.se"),  # Punycode: full path
        ("a@EXAMPLE.example", "a@example.example"),
        ("\x1ca@example.se\x1f", "a@example.se"),  # str.strip() removes ASCII separators
        ("a" * 64 + "@example.se", "a" * 64 + "@example.se"),
        ("a" * 100 + "@example.se", "a" * 100 + "@example.se"),  # no local limit (not strict)
        ("a@" + "b" * 63 + ".se", "a@" + "b" * 63 + ".se"),
        ("a@b.c1", "invalid_email"),  # TLD ends in a digit
        ("a@b.c", "a@b.c"),
        ("a@example.123", "invalid_email"),
        ("a@ab--cd.se", "invalid_email"),  # R-LDH label
        ("a@xn--zz.se", "invalid_email"),  # not real Punycode
        ("a@" + "b" * 64 + ".se", "invalid_email"),  # label too long
        ("a" * 244 + "@example.se", "invalid_email"),  # 255 characters in all
        ("a@x.localhost", "invalid_email"),
        ("a@x.onion", "invalid_email"),
        ("a@x.test", "invalid_email"),
        ("a@x.invalid", "invalid_email"),
        ("a@x.local", "invalid_email"),
        ("a@1.in-addr.arpa", "invalid_email"),
        ("a@example", "invalid_email"),  # no dot
        ("a..b@example.se", "invalid_email"),
        (".a@example.se", "invalid_email"),
        ("a.@example.se", "invalid_email"),
        ("a@-example.se", "invalid_email"),
        ("a@example-.se", "invalid_email"),
        ("a@example..se", "invalid_email"),
        ("a@example.se.", "invalid_email"),
        ("a@@example.se", "invalid_email"),
        ("a b@example.se", "invalid_email"),
        ('"a"@example.se', "invalid_email"),
        ("A <a@example.se>", "invalid_email"),
        ("<a@example.se>", "invalid_email"),
        ("mailto:a@example.se", "invalid_email"),
        ("a@[192.0.2.1]", "invalid_email"),
        ("a(comment)@example.se", "invalid_email"),
        ("a@example.se\n", "a@example.se"),
        ("a\n@example.se", "invalid_email"),
        ("a@exam\x00ple.se", "invalid_email"),
        ("a＠example.se", "invalid_email"),  # full-width at sign
        ("ÅSA@företag.se", "åsa@xn--fretag-wxa.se"),  # non-ASCII: full path
        ("a@EXAMPLE．SE", "a@example.se"),  # full-width dot: UTS-46 maps it
        ("", "invalid_email"),
        ("   ", "invalid_email"),
    ],
)
def test_edge_cases_on_both_paths(raw: str, expected: str) -> None:
    fast = outcome(addresses.normalize, raw)
    full = outcome(addresses.normalize_full, raw)
    assert fast == full
    assert (fast[1] if fast[0] == "ok" else "invalid_email") == expected
    if fast[0] == "error":
        assert fast[1].startswith("invalid_email")


@pytest.mark.parametrize(
    "raw",
    ["anna@example.se", "Foo.Bar+x@GoogleMail.com", " a.b-c_d@sub.example.org\n", "x@b.co"],
)
def test_plain_ascii_takes_the_fast_path(raw: str) -> None:
    assert addresses._fast_split(raw.strip()) is not None


@pytest.mark.parametrize(
    "raw", ["a@xn--fretag-wxa.se", "ÅSA@företag.se", "a@x.localhost", "a" * 250 + "@b.se"]
)
def test_edge_input_takes_the_full_path(raw: str) -> None:
    assert addresses._fast_split(raw.strip()) is None


@settings(max_examples=300)
@given(st.binary(min_size=1, max_size=200), st.text(max_size=80))
def test_keyring_digest_is_standard_hmac_sha256(key: bytes, message: str) -> None:
    import hmac

    ring = addresses.KeyRing([("k", key)])
    expected = hmac.new(key, f"a:n1:{message}".encode(), "sha256").digest()
    assert ring.address(message) == expected
    assert ring.domain(message) == hmac.new(key, f"d:n1:{message}".encode(), "sha256").digest()
