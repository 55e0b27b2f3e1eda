"""JSON text from outside, parsed with a bound on its nesting: never a recursion error."""

from __future__ import annotations

import json
import re
from itertools import accumulate
from typing import Any

# Every document we read (request bodies, mailing-tool exports) nests a few levels at most;
# the json module recurses once per level and fails with RecursionError near 1000.
MAX_DEPTH = 32
# A JSON string, escapes included; possessive, so an unterminated one costs a single pass.
_STRING = re.compile(rb'"[^"\\]*+(?:\\.[^"\\]*+)*+"', re.DOTALL)
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")
# Opening brackets step the depth up by one, closing ones down (read as signed bytes).
_STEPS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")
_BLOCK = 1 << 16


class TooDeep(ValueError):
    """JSON text whose arrays and objects nest deeper than allowed."""


def nests_deeper(text: bytes | str, limit: int) -> bool:
    """True when the arrays and objects of JSON text nest more than `limit` levels deep.

    Linear and without recursion: strings are cut out by one regular expression, and the
    running depth is summed in C a block at a time. Text that is not JSON gives an answer
    too; the parser rejects it afterwards.
    """
    if isinstance(text, str):
        opening = text.count("[") + text.count("{")
    else:
        opening = text.count(b"[") + text.count(b"{")
    if opening <= limit:
        return False  # the common case: too few brackets to nest that deep
    raw = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    steps = memoryview(_STRING.sub(b"", raw).translate(_STEPS, _NOT_BRACKET)).cast("b")
    depth = 0
    for start in range(0, len(steps), _BLOCK):
        running = list(accumulate(steps[start : start + _BLOCK], initial=depth))
        if max(running) > limit:
            return True
        depth = running[-1]
    return False


def loads(text: bytes | str, max_depth: int = MAX_DEPTH) -> Any:
    """json.loads, refusing nesting deeper than max_depth with TooDeep (a ValueError).

    Bytes are decoded as json.loads does (UTF-8, or UTF-16/32 when the text says so).
    """
    if isinstance(text, bytes):
        encoding = json.detect_encoding(text)
        if not encoding.startswith("utf-8"):
            text = text.decode(encoding, "surrogatepass")
    if nests_deeper(text, max_depth):
        raise TooDeep(f"JSON nested deeper than {max_depth} levels")
    return json.loads(text)
