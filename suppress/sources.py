"""Read address files: plain lists, CSV, and the opt-out exports of mailing tools.

Parsing is header-driven (column names compared case-insensitively after trimming, extra
columns ignored) and robust to a byte-order mark, CRLF line ends, quoted fields and bytes
that are not UTF-8 (reported with their line number, never guessed). This module hands raw
address strings to its caller; only `addresses` normalizes and hashes them, and no problem
message ever repeats an address.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

from . import jsontext
from .errors import ErrorCode, SuppressError
from .models import Reason

FORMATS = ("generic", "mailchimp", "sendgrid", "ses", "postmark")
ADDRESS_HEADERS = ("email", "e-mail", "email address", "e-mail address", "address", "emailaddress")
MAX_PROBLEMS = 100
# Mailchimp names the member status only in the file name; demand a delimiter on both
# sides so that "unsubscribed_..." is never read as "subscribed".
_MAILCHIMP_STATUS = re.compile(
    r"(?:^|[^a-z])(nonsubscribed|unsubscribed|cleaned|subscribed)(?:[^a-z]|$)"
)
_SURROGATE = re.compile("[\udc80-\udcff]")


class SourceError(SuppressError):
    """A file that cannot be read as its configured format (nothing of it was applied)."""

    code = ErrorCode.unreadable_source
    status = 422


@dataclass(frozen=True)
class Entry:
    """One opt-out found in a file: where, the raw address as written, and why."""

    line: int
    address: str
    reason: Reason


@dataclass(frozen=True)
class Problem:
    """A row that was skipped or is doubtful; the message never holds the address."""

    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


@dataclass(frozen=True)
class Parsed:
    """What a file holds: its flavour (e.g. ``sendgrid:bounces``), entries and problems."""

    flavour: str
    entries: tuple[Entry, ...]
    problems: tuple[Problem, ...] = ()
    ignored: bool = False


@dataclass(frozen=True)
class Contact:
    """One row of a CRM export: its identifier (the `id` column or the line), and address."""

    row: str
    line: int
    address: str


@dataclass
class _Rows:
    """CSV rows with their first line number, and the problems met while reading."""

    header: list[str] | None
    rows: list[tuple[int, list[str]]]
    problems: list[Problem] = field(default_factory=list)


def _decode(data: bytes) -> str:
    # surrogateescape keeps undecodable bytes visible per row instead of failing the file.
    text = data.decode("utf-8", "surrogateescape")
    return text[1:] if text.startswith("\ufeff") else text


def _bad_bytes(line: int, column: str) -> Problem:
    return Problem(line, f"{column} is not valid UTF-8; row skipped")


def _csv_rows(data: bytes, *, header: bool | None) -> _Rows:
    """Read CSV rows with their starting line numbers; header=None detects one."""
    reader = csv.reader(io.StringIO(_decode(data), newline=""), skipinitialspace=False)
    rows: list[tuple[int, list[str]]] = []
    problems: list[Problem] = []
    start = 1
    while True:
        try:
            record = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            # E.g. a field over the csv module's size limit. The reader starts afresh at the
            # next line: one bad row must not hide the opt-outs after it.
            problems.append(Problem(start, f"unreadable CSV row ({exc}); row skipped"))
        else:
            if record and any(cell.strip() for cell in record):
                rows.append((start, record))
        start = reader.line_num + 1
    head: list[str] | None = None
    if rows and (header or (header is None and _looks_like_header(rows[0][1]))):
        head = [_header_name(cell) for cell in rows[0][1]]
        rows = rows[1:]
    return _Rows(head, rows, problems)


def _header_name(cell: str) -> str:
    return cell.strip().strip("\ufeff").lower()


def _looks_like_header(first: Sequence[str]) -> bool:
    names = [_header_name(cell) for cell in first]
    if any(name in ADDRESS_HEADERS for name in names):
        return True
    return "@" not in (first[0] if first else "")


def _column(header: list[str] | None, names: Sequence[str]) -> int | None:
    if header is None:
        return None
    for name in names:
        if name in header:
            return header.index(name)
    return None


def _cell(record: list[str], index: int | None) -> str:
    if index is None or index >= len(record):
        return ""
    return record[index].strip()


def _entries(
    rows: _Rows, address_col: int, reason_of: Any, flavour: str, ignored: bool = False
) -> Parsed:
    entries: list[Entry] = []
    problems = list(rows.problems)
    for line, record in rows.rows:
        raw = _cell(record, address_col)
        if not raw:
            problems.append(Problem(line, "no address in the address column; row skipped"))
            continue
        if _SURROGATE.search(raw):
            problems.append(_bad_bytes(line, "the address"))
            continue
        if "\x00" in raw:
            problems.append(Problem(line, "the address holds a NUL byte; row skipped"))
            continue
        reason = reason_of(record)
        if isinstance(reason, Problem):
            problems.append(Problem(line, reason.message))
            continue
        entries.append(Entry(line, raw, reason))
        for index, cell in enumerate(record):
            if index != address_col and _SURROGATE.search(cell):
                problems.append(Problem(line, f"column {index + 1} is not valid UTF-8 (ignored)"))
                break
    return Parsed(flavour, tuple(entries), tuple(problems[:MAX_PROBLEMS]), ignored)


def _require_column(header: list[str] | None, names: Sequence[str], what: str) -> int:
    index = _column(header, names)
    if index is None:
        raise SourceError(f"{what}: no address column (looked for {', '.join(names)})")
    return index


# --- formats ---------------------------------------------------------------------------------


def _generic(name: str, data: bytes, reason: Reason) -> Parsed:
    rows = _csv_rows(data, header=None)
    index = _column(rows.header, ADDRESS_HEADERS)
    return _entries(rows, 0 if index is None else index, lambda _r: reason, "generic")


MAILCHIMP_ADMIN = "n/a (unsubscribed by an admin)"
MAILCHIMP_SPAM = ("the emails are spam and should be reported", "spam")


def _mailchimp(name: str, data: bytes) -> Parsed:
    rows = _csv_rows(data, header=True)
    match = _MAILCHIMP_STATUS.search(PurePath(name).stem.lower())
    status = match.group(1) if match else None
    header = rows.header or []
    if status is None:
        # Older and newer exports alike carry their status block's columns.
        status = "unsubscribed" if "unsub_time" in header else None
        status = status or ("cleaned" if "clean_time" in header else None)
    if status is None:
        raise SourceError(
            "Mailchimp file name names no member status "
            "(expected unsubscribed_..._export_....csv or cleaned_..._export_....csv)"
        )
    address = _require_column(rows.header, ("email address", "email"), "Mailchimp export")
    if status in ("subscribed", "nonsubscribed"):
        return Parsed(f"mailchimp:{status}", (), (), ignored=True)
    if status == "cleaned":
        return _entries(rows, address, lambda _r: Reason.hard_bounce, "mailchimp:cleaned")
    why = _column(rows.header, ("unsub_reason",))

    def reason_of(record: list[str]) -> Reason:
        text = _cell(record, why).lower()
        if text == MAILCHIMP_ADMIN:
            return Reason.manual
        if text in MAILCHIMP_SPAM:
            # Policy: a recipient calling it spam is a complaint (README of the fixtures).
            return Reason.complaint
        return Reason.unsubscribe

    return _entries(rows, address, reason_of, "mailchimp:unsubscribed")


_SENDGRID_KINDS = (
    ("spam", "spam_reports"),
    ("invalid", "invalid_emails"),
    ("block", "blocks"),
    ("bounce", "bounces"),
    ("unsub", "unsubscribes"),
)


def _sendgrid_kind(name: str, keys: Sequence[str]) -> str:
    lowered = PurePath(name).name.lower()
    for needle, kind in _SENDGRID_KINDS:
        if needle in lowered:
            return kind
    if "ip" in keys:
        return "spam_reports"
    if set(keys) <= {"email", "created"}:
        return "unsubscribes"
    raise SourceError(
        "cannot tell which SendGrid list this is: name the file after it "
        "(unsubscribes, bounces, spam_reports, invalid_emails, blocks)"
    )


def _sendgrid_reason(kind: str, status: str) -> Reason:
    if kind == "bounces":
        # Policy: a 4.x.x status is a temporary failure.
        return Reason.soft_bounce if status.startswith("4") else Reason.hard_bounce
    return {
        "unsubscribes": Reason.unsubscribe,
        "spam_reports": Reason.complaint,
        "invalid_emails": Reason.hard_bounce,
        "blocks": Reason.soft_bounce,
    }[kind]


def _sendgrid(name: str, data: bytes) -> Parsed:
    if name.lower().endswith(".json"):
        items = _json_items(data, None)
        keys = sorted({k.lower() for item in items for k in item})
        kind = _sendgrid_kind(name, keys)
        return _json_entries(
            items,
            ("email",),
            lambda item: _sendgrid_reason(kind, str(item.get("status") or "")),
            f"sendgrid:{kind}",
        )
    rows = _csv_rows(data, header=True)
    address = _require_column(rows.header, ("email",), "SendGrid export")
    kind = _sendgrid_kind(name, rows.header or [])
    status = _column(rows.header, ("status",))
    return _entries(
        rows, address, lambda r: _sendgrid_reason(kind, _cell(r, status)), f"sendgrid:{kind}"
    )


SES_REASONS = {"BOUNCE": Reason.hard_bounce, "COMPLAINT": Reason.complaint}


def _ses_reason(value: Any) -> Reason | Problem:
    reason = SES_REASONS.get(str(value or "").strip().upper())
    return reason if reason is not None else Problem(0, "unknown SES reason; entry skipped")


def _ses(name: str, data: bytes) -> Parsed:
    lowered = name.lower()
    if lowered.endswith(".jsonl"):
        items: list[dict[str, Any]] = []
        problems: list[Problem] = []
        for number, line in enumerate(_decode(data).splitlines(), start=1):
            if not line.strip():
                continue
            if _SURROGATE.search(line):
                problems.append(_bad_bytes(number, "the line"))
                continue
            try:
                item = jsontext.loads(line)
            except ValueError:  # not JSON, or nested too deep
                problems.append(Problem(number, "not a JSON object; line skipped"))
                continue
            if isinstance(item, dict):
                items.append({**{str(k).lower(): v for k, v in item.items()}, "__line__": number})
        parsed = _json_entries(
            items, ("emailaddress",), lambda i: _ses_reason(i.get("reason")), "ses:import"
        )
        return Parsed(parsed.flavour, parsed.entries, tuple(problems) + parsed.problems)
    if lowered.endswith(".csv"):
        # The import-job CSV has no header: address,REASON (with a space in AWS's own example).
        rows = _csv_rows(data, header=False)
        return _entries(rows, 0, lambda r: _ses_reason(_cell(r, 1)), "ses:import")
    items = _json_items(data, "suppresseddestinationsummaries")
    return _json_entries(
        items, ("emailaddress",), lambda i: _ses_reason(i.get("reason")), "ses:suppressed"
    )


def _postmark_reason(item: dict[str, Any]) -> Reason | Problem:
    kind = str(item.get("suppressionreason") or "").strip().lower()
    if kind == "hardbounce":
        return Reason.hard_bounce
    if kind == "spamcomplaint":
        return Reason.complaint
    if kind == "manualsuppression":
        # Origin Recipient is the recipient's own unsubscribe link; Customer/Admin are ours.
        origin = str(item.get("origin") or "").strip().lower()
        return Reason.unsubscribe if origin == "recipient" else Reason.manual
    return Problem(0, "unknown Postmark SuppressionReason; entry skipped")


def _postmark(name: str, data: bytes) -> Parsed:
    items = _json_items(data, "suppressions")
    return _json_entries(items, ("emailaddress",), _postmark_reason, "postmark:suppressions")


# --- JSON -----------------------------------------------------------------------------------


def _json_items(data: bytes, key: str | None) -> list[dict[str, Any]]:
    """The objects of a JSON document: a top-level array, or the array under `key`."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise SourceError(f"line {line}: not valid UTF-8 (JSON must be)") from None
    try:
        doc = jsontext.loads(text)
    except json.JSONDecodeError as exc:
        raise SourceError(f"line {exc.lineno}: not valid JSON: {exc.msg}") from None
    except jsontext.TooDeep as exc:
        raise SourceError(str(exc)) from None
    if isinstance(doc, dict) and key is not None:
        lowered = {str(k).lower(): v for k, v in doc.items()}
        doc = lowered.get(key)
    if not isinstance(doc, list):
        raise SourceError(f"expected a JSON array{f' under {key!r}' if key else ''}")
    # Keys compared case-insensitively, like CSV headers.
    return [{str(k).lower(): v for k, v in item.items()} for item in doc if isinstance(item, dict)]


def _json_entries(
    items: list[dict[str, Any]], address_keys: Sequence[str], reason_of: Any, flavour: str
) -> Parsed:
    entries: list[Entry] = []
    problems: list[Problem] = []
    for number, item in enumerate(items, start=1):
        where = int(item.get("__line__", number))
        raw = next((item[k] for k in address_keys if isinstance(item.get(k), str)), "")
        raw = raw.strip()
        if not raw:
            problems.append(Problem(where, "no address in this entry; skipped"))
            continue
        reason = reason_of(item)
        if isinstance(reason, Problem):
            problems.append(Problem(where, reason.message))
            continue
        entries.append(Entry(where, raw, reason))
    return Parsed(flavour, tuple(entries), tuple(problems[:MAX_PROBLEMS]))


# --- entry points ---------------------------------------------------------------------------


def parse(fmt: str, name: str, data: bytes, *, reason: Reason | None = None) -> Parsed:
    """Parse one file of a source; `reason` overrides the format's mapping when given.

    For JSON sources the line number of an entry is its position in the array.
    """
    if fmt == "generic":
        parsed = _generic(name, data, reason or Reason.unsubscribe)
    elif fmt == "mailchimp":
        parsed = _mailchimp(name, data)
    elif fmt == "sendgrid":
        parsed = _sendgrid(name, data)
    elif fmt == "ses":
        parsed = _ses(name, data)
    elif fmt == "postmark":
        parsed = _postmark(name, data)
    else:
        raise SourceError(f"unknown source format {fmt!r}; use one of: {', '.join(FORMATS)}")
    if reason is not None and fmt != "generic":
        entries = tuple(Entry(e.line, e.address, reason) for e in parsed.entries)
        parsed = Parsed(parsed.flavour, entries, parsed.problems, parsed.ignored)
    return parsed


CONTACT_ADDRESS_HEADERS = ("email", "e-mail", "address")


def contacts(data: bytes) -> tuple[list[Contact], list[Problem]]:
    """Rows of a CRM export: the address column headed email/e-mail/address, else the first;
    each row identified by its `id` column when there is one, else by its line number."""
    rows = _csv_rows(data, header=True)
    address = _column(rows.header, CONTACT_ADDRESS_HEADERS)
    address = 0 if address is None else address
    ident = _column(rows.header, ("id",))
    out: list[Contact] = []
    problems = list(rows.problems)
    for line, record in rows.rows:
        row = _cell(record, ident) if ident is not None else ""
        if not row or _SURROGATE.search(row):
            row = str(line)
        raw = _cell(record, address)
        if _SURROGATE.search(raw):
            problems.append(_bad_bytes(line, "the address"))
            raw = ""
        out.append(Contact(row, line, raw))
    return out, problems
