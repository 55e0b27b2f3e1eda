"""JSON text from outside: nesting is bounded before parsing, linear and without recursion."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from suppress import jsontext

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet='[]{}"\\\\ab\u00e5\n'),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=40,
)


def depth(value: Any) -> int:
    """Nesting depth of a parsed value (a scalar is 0)."""
    if isinstance(value, list):
        return 1 + max((depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    return 0


@given(value=JSON_VALUES, ensure_ascii=st.booleans())
def test_measured_depth_is_the_depth_of_the_value(value: Any, ensure_ascii: bool) -> None:
    text = json.dumps(value, ensure_ascii=ensure_ascii)
    levels = depth(value)
    assert not jsontext.nests_deeper(text, levels)
    assert not jsontext.nests_deeper(text.encode(), levels)
    if levels:
        assert jsontext.nests_deeper(text, levels - 1)
        assert jsontext.nests_deeper(text.encode(), levels - 1)


@pytest.mark.parametrize(
    "text",
    [
        b"[" * 100_000 + b"]" * 100_000,
        b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
        b"[" * 1_000_000,  # never closed
        b'{"email": ' + b"[" * 33 + b"]" * 33 + b"}",
        ("[" * 40 + "]" * 40).encode("utf-16"),
    ],
)
def test_deep_text_is_refused_as_too_deep(text: bytes) -> None:
    with pytest.raises(jsontext.TooDeep):
        jsontext.loads(text)


def test_text_up_to_the_bound_and_brackets_in_strings_parse() -> None:
    at_bound = "[" * jsontext.MAX_DEPTH + "]" * jsontext.MAX_DEPTH
    assert depth(jsontext.loads(at_bound)) == jsontext.MAX_DEPTH
    brackets = {"email": "[" * 100 + '\\"{' * 100, "list": "news"}
    assert jsontext.loads(json.dumps(brackets).encode()) == brackets
    assert jsontext.loads(json.dumps(brackets).encode("utf-16")) == brackets


def test_bad_json_is_still_a_value_error() -> None:
    with pytest.raises(ValueError):
        jsontext.loads(b"{not json")
    with pytest.raises(ValueError):
        jsontext.loads(b"[\xff]")
