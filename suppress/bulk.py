"""Streamed bulk paths shared by the API and the CLI: filter and import lines in batches.

Lines come in as bytes (a request body or a file), are checked or imported a batch at a time,
each batch in its own short transaction, so memory stays constant whatever the input size.
The edge (API or CLI) hands in its transactions (`Database.begin`) and the key ring, as it
hands a Session to every other domain call.
"""

from __future__ import annotations

import csv
import logging
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from . import clock, peppers, suppressions
from .addresses import KeyRing, Target, Targeter
from .errors import InvalidEmail
from .models import Reason
from .peppers import Begin

log = logging.getLogger("suppress.bulk")

FILTER_BATCH = 5_000
IMPORT_BATCH = 10_000
READ_CHUNK = 1 << 16
# The longest input line read (its terminator aside). Addresses are at most
# addresses.MAX_INPUT (512) characters, but a CSV row carries other columns too (names,
# dates, tags): 4096 bytes leaves room for those while a hostile body (say 32 MiB without a
# newline) costs no more than this much memory. A longer line counts as one invalid line.
MAX_LINE = 4096
# What iter_lines yields in place of a line longer than MAX_LINE: not UTF-8, so any reader
# that does not look for it still counts it as an invalid line, never as an address.
TOO_LONG = b"\xff line too long"
BOM = b"\xef\xbb\xbf"
# Line numbers of invalid import lines reported in full; the count is always exact.
MAX_INVALID_LINES = 1_000
# Stale (old-pepper) hits re-keyed at once after a filter; more wait for later hits.
MAX_REKEY = 10_000
Progress = Callable[[int], None]


def iter_lines(
    stream: IO[bytes] | Iterable[bytes], chunk: int = READ_CHUNK, max_line: int = MAX_LINE
) -> Iterator[bytes]:
    """Lines of a byte stream without their terminators (LF or CRLF), read a chunk at a time.

    A byte-order mark at the very start is dropped. A line longer than max_line bytes comes
    out as TOO_LONG, once, in its place (so later line numbers stay right); its bytes are
    discarded up to the next newline, never buffered, so time stays linear and memory is
    bounded by chunk + max_line whatever the input.
    """
    read = getattr(stream, "read", None)
    chunks: Iterable[bytes] = iter(lambda: read(chunk), b"") if read else stream
    head: bytes | None = b""  # a byte-order mark may still be coming (None: past it)
    pending = bytearray()  # the start of the current line: at most max_line + 1 bytes
    skipping = False  # inside a line already reported as TOO_LONG
    limit = max_line + 1  # room for the CR of a CRLF ending
    for data in chunks:
        if head is not None:
            head += data
            if len(head) < 3 and b"\n" not in head:
                continue
            data, head = head.removeprefix(BOM), None
        if skipping:
            end = data.find(b"\n")
            if end < 0:
                continue
            skipping = False
            data = data[end + 1 :]
        lines = data.split(b"\n")
        tail = lines.pop()
        if lines:
            if pending:
                pending += lines[0]
                lines[0] = bytes(pending)
                pending.clear()
            for line in lines:
                if line.endswith(b"\r"):
                    line = line[:-1]
                yield line if len(line) <= max_line else TOO_LONG
        if len(pending) + len(tail) > limit:
            pending.clear()
            skipping = True
            yield TOO_LONG
        else:
            pending += tail
    if head is not None:
        pending += head.removeprefix(BOM)
    if pending and not skipping:
        line = bytes(pending[:-1] if pending.endswith(b"\r") else pending)
        yield line if len(line) <= max_line else TOO_LONG


# What a reader of the output could take for the end of a line, inside one of ours: a CR
# alone (old Mac files), and the rest of what str.splitlines() splits on.
_BREAK = re.compile("[\r\x0b\x0c\x1c-\x1e\x85\u2028\u2029]")


def address_field(line: bytes, csv_mode: bool) -> str | None:
    """The address text of one input line (the first column in CSV), None for a blank line.

    A line that is not UTF-8 (TOO_LONG among them), not readable as CSV, or holding a line
    break of another convention (a CR alone: several records in what LF made one line) gives
    "", which no normalization accepts: it counts as invalid, so neither a filter passes on
    nor an import claims records it never looked at.
    """
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        return ""
    if not text.strip():
        return None
    if _BREAK.search(text):
        return ""
    if csv_mode:
        if '"' in text:
            try:
                text = next(csv.reader([text]), [""])[0]
            except csv.Error:  # e.g. a field over the csv module's size limit
                return ""
        else:
            text = text.partition(",")[0]
    return text


@dataclass
class FilterTotals:
    """The counts of a filter run; the trailer line of the streamed answer."""

    checked: int = 0
    allowed: int = 0
    suppressed: int = 0
    invalid: int = 0

    def trailer(self) -> str:
        """The last line of a complete streamed answer (DESIGN §5)."""
        return (
            f"# checked={self.checked} allowed={self.allowed} "
            f"suppressed={self.suppressed} invalid={self.invalid}"
        )


@dataclass
class _Rekeyer:
    """Collects old-pepper hits for the one lazy re-key follow-up at the end."""

    begin: Begin
    ring: KeyRing
    actor: str
    stale: list[tuple[int, bytes]] = field(default_factory=list)

    def add(self, verdict: suppressions.Verdict) -> None:
        if len(self.stale) < MAX_REKEY:
            self.stale.extend(verdict.stale)

    def flush(self) -> None:
        peppers.rekey_found(self.begin, self.ring, self.stale, actor=self.actor)
        self.stale.clear()


def filter_lines(
    begin: Begin,
    ring: KeyRing,
    lines: Iterable[bytes],
    list_name: str,
    out: IO[bytes],
    *,
    csv_mode: bool,
    actor: str,
    progress: Progress | None = None,
) -> FilterTotals:
    """Write the allowed lines, as given and in input order, to out; return the totals.

    Blank lines are skipped and not counted. Any failure raises before the totals exist, so
    a caller that writes the trailer only after this returns never vouches for a partial run.
    """
    targeter = Targeter(ring)
    totals = FilterTotals()
    rekeyer = _Rekeyer(begin, ring, actor)
    key_ids = set(ring.key_ids)
    # Each recipient as its line, its text and its digests as bytes; the full Target (key ids,
    # kinds) is built only for the few that a row matches.
    batch: list[tuple[bytes, str, tuple[bytes, ...], tuple[bytes, ...]]] = []

    def run_batch() -> None:
        wanted: set[bytes] = set()
        domains: dict[int, tuple[bytes, ...]] = {}
        for _line, _text, own, domain in batch:
            wanted.update(own)
            domains[id(domain)] = domain  # one tuple per domain: add its digests once
        for domain in domains.values():
            wanted.update(domain)
        with begin(write=False) as session:
            found = suppressions.rows_for(session, wanted, key_ids, list_name, now=clock.utcnow())
        hits = found.keys()
        # The domains with a row in force (checked once each), then one set operation per
        # recipient: most match nothing and go straight to the answer.
        struck = {key for key, domain in domains.items() if not hits.isdisjoint(domain)}
        allowed: list[bytes] = []
        suppressed = 0
        for line, text, own, domain in batch:
            if hits.isdisjoint(own) and id(domain) not in struck:
                allowed.append(line)
                continue
            verdict = suppressions.verdict_of(targeter.target(text), found)
            if verdict.allowed:
                allowed.append(line)
            else:
                suppressed += 1
                if verdict.stale:
                    rekeyer.add(verdict)
        if allowed:
            allowed.append(b"")
            out.write(b"\n".join(allowed))
            totals.allowed += len(allowed) - 1
        totals.suppressed += suppressed
        if progress:
            progress(len(batch))
        batch.clear()

    for line in lines:
        text = address_field(line, csv_mode)
        if text is None:
            continue
        totals.checked += 1
        try:
            own, domain = targeter.values(text)
        except InvalidEmail:
            totals.invalid += 1
            if progress:
                progress(1)
            continue
        batch.append((line, text, own, domain))
        if len(batch) >= FILTER_BATCH:
            run_batch()
    if batch:
        run_batch()
    rekeyer.flush()
    return totals


def filter_emails(
    begin: Begin, ring: KeyRing, emails: list[Any], list_name: str, *, actor: str
) -> dict[str, Any]:
    """The JSON filter: allowed, suppressed (with the first reason) and invalid, in input order."""
    targeter = Targeter(ring)
    allowed: list[str] = []
    suppressed: list[dict[str, str]] = []
    invalid: list[dict[str, str]] = []
    rekeyer = _Rekeyer(begin, ring, actor)
    for start in range(0, len(emails), FILTER_BATCH):
        batch: list[tuple[str, Target]] = []
        for email in emails[start : start + FILTER_BATCH]:
            try:
                batch.append((email, targeter.target(email)))
            except InvalidEmail as exc:
                invalid.append({"email": email, "code": exc.code})
        with begin(write=False) as session:
            verdicts = suppressions.check_many(
                session, [t for _, t in batch], list_name, now=clock.utcnow()
            )
        for (email, _), verdict in zip(batch, verdicts, strict=True):
            if verdict.allowed:
                allowed.append(email)
            else:
                first = verdict.hits[0]
                suppressed.append({"email": email, "reason": first.reason, "scope": first.scope})
                rekeyer.add(verdict)
    rekeyer.flush()
    return {
        "list": list_name,
        "checked": len(emails),
        "allowed": allowed,
        "suppressed": suppressed,
        "invalid": invalid,
    }


@dataclass
class ImportTotals:
    """The answer of an import (DESIGN §5); invalid_lines holds line numbers, no text."""

    received: int = 0
    added: int = 0
    existing: int = 0
    invalid: int = 0
    invalid_lines: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "received": self.received,
            "added": self.added,
            "existing": self.existing,
            "invalid": self.invalid,
            "invalid_lines": self.invalid_lines,
        }
        if self.invalid > len(self.invalid_lines):
            out["invalid_lines_truncated"] = True
        return out

    def absorb(self, later: ImportTotals) -> None:
        """Add the totals of the next part of the same input (its line numbers run on)."""
        self.received += later.received
        self.added += later.added
        self.existing += later.existing
        self.invalid += later.invalid
        room = MAX_INVALID_LINES - len(self.invalid_lines)
        self.invalid_lines.extend(later.invalid_lines[: max(room, 0)])


def import_lines(
    begin: Begin,
    ring: KeyRing,
    lines: Iterable[bytes],
    list_name: str,
    reason: Reason,
    *,
    source: str,
    actor: str,
    csv_mode: bool = True,
    progress: Progress | None = None,
    first_line: int = 1,
) -> ImportTotals:
    """Suppress every valid address of the input on a list, a batch per transaction.

    Idempotent: a second run adds nothing. A failure raises; batches already committed stay
    (they are correct suppressions, and a retry counts them as existing). `first_line` is
    the number of the first line given (an input taken a part at a time).
    """
    targeter = Targeter(ring)
    totals = ImportTotals()
    batch: list[Target] = []

    def run_batch() -> None:
        with begin() as session:
            counts = suppressions.import_batch(
                session, batch, list_name, reason, source=source, actor=actor, now=clock.utcnow()
            )
        totals.added += counts.added
        totals.existing += counts.existing
        if progress:
            progress(len(batch))
        batch.clear()

    def invalid(number: int, code: str) -> None:
        totals.invalid += 1
        if len(totals.invalid_lines) < MAX_INVALID_LINES:
            totals.invalid_lines.append({"line": number, "code": code})

    for number, line in enumerate(lines, start=first_line):
        if line is TOO_LONG:
            totals.received += 1
            invalid(number, "line_too_long")
            continue
        text = address_field(line, csv_mode)
        if text is None:
            continue
        totals.received += 1
        try:
            batch.append(targeter.target(text))
        except InvalidEmail as exc:
            invalid(number, exc.code)
            continue
        if len(batch) >= IMPORT_BATCH:
            run_batch()
    if batch:
        run_batch()
    return totals
