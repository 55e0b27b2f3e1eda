"""Parsing mailing-tool exports: header-driven, robust to BOM, CRLF, quotes and bad bytes."""

from __future__ import annotations

from pathlib import Path

import pytest

from suppress.models import Reason
from suppress.sources import SourceError, contacts, parse

ESP = Path(__file__).parent / "fixtures" / "esp"


def read(name: str) -> bytes:
    return (ESP / name).read_bytes()


def pairs(fmt: str, name: str, data: bytes | None = None) -> list[tuple[str, Reason]]:
    parsed = parse(fmt, name, read(name) if data is None else data)
    return [(e.address, e.reason) for e in parsed.entries]


def test_mailchimp_unsubscribed_maps_admin_and_spam_reasons() -> None:
    assert pairs("mailchimp", "mailchimp-unsubscribed.csv") == [
        ("anna.lind@example.se", Reason.unsubscribe),
        ("Erik.Svensson@Example.SE", Reason.unsubscribe),
        ("maria.garcia@example.org", Reason.unsubscribe),
        ("olle.berg@example.se", Reason.complaint),
        ("j.doe@example.com", Reason.manual),
        ("lisa.holm@example.se", Reason.unsubscribe),
    ]


def test_mailchimp_cleaned_is_hard_bounce() -> None:
    found = pairs("mailchimp", "mailchimp-cleaned.csv")
    assert [a for a, _ in found] == [
        "nosuchuser@example.com",
        "Per.Karlsson@EXAMPLE.se",
        "old.mailbox@example.org",
        "full.box@example.se",
        "typo.address@example.com",
    ]
    assert {r for _, r in found} == {Reason.hard_bounce}


@pytest.mark.parametrize(
    ("name", "flavour"),
    [
        ("unsubscribed_members_export_4f2a.csv", "mailchimp:unsubscribed"),
        ("unsubscribed_email_audience_export_4f2a.csv", "mailchimp:unsubscribed"),
        ("cleaned_members_export_4f2a.csv", "mailchimp:cleaned"),
        ("subscribed_members_export_4f2a.csv", "mailchimp:subscribed"),
        ("nonsubscribed_email_audience_export_4f2a.csv", "mailchimp:nonsubscribed"),
    ],
)
def test_mailchimp_status_comes_from_the_file_name(name: str, flavour: str) -> None:
    parsed = parse("mailchimp", name, read("mailchimp-unsubscribed.csv"))
    assert parsed.flavour == flavour
    # Subscribed members are no opt-outs, whatever columns the file has.
    assert bool(parsed.entries) is (flavour in ("mailchimp:unsubscribed", "mailchimp:cleaned"))


def test_mailchimp_without_a_status_in_the_name_falls_back_to_the_status_columns() -> None:
    assert parse("mailchimp", "export.csv", read("mailchimp-cleaned.csv")).flavour == (
        "mailchimp:cleaned"
    )
    with pytest.raises(SourceError):
        parse("mailchimp", "export.csv", b'"Email Address",First Name\r\na@example.se,A\r\n')


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "sendgrid-global-unsubscribes.csv",
            [
                ("anna.lind@example.se", Reason.unsubscribe),
                ("Erik.Svensson@Example.SE", Reason.unsubscribe),
                ("maria.garcia@example.org", Reason.unsubscribe),
                ("olle.berg@example.se", Reason.unsubscribe),
                ("j.doe@example.com", Reason.unsubscribe),
            ],
        ),
        (
            "sendgrid-bounces.csv",
            [
                ("nosuchuser@example.com", Reason.hard_bounce),
                ("Per.Karlsson@EXAMPLE.se", Reason.hard_bounce),
                ("old.mailbox@example.org", Reason.hard_bounce),
                ("full.box@example.se", Reason.soft_bounce),
                ("gone@example.com", Reason.hard_bounce),
            ],
        ),
        (
            "sendgrid-spam-reports.csv",
            [
                ("lisa.holm@example.se", Reason.complaint),
                ("Olle.Berg@Example.SE", Reason.complaint),
                ("complainer@example.org", Reason.complaint),
                ("fbl.user@example.com", Reason.complaint),
                ("spaced.out@example.com", Reason.complaint),
            ],
        ),
        (
            "sendgrid-invalid-emails.csv",
            [
                ("john.doe@@example.com", Reason.hard_bounce),
                ("bad,address@example.com", Reason.hard_bounce),
                ("no-at-sign.example.org", Reason.hard_bounce),
                ("Mixed.Case@Example.ORG", Reason.hard_bounce),
                ("double..dot@example.se", Reason.hard_bounce),
            ],
        ),
        (
            "sendgrid-blocks.csv",
            [
                ("blocked.one@example.com", Reason.soft_bounce),
                ("Blocked.Two@Example.SE", Reason.soft_bounce),
                ("blocked.three@example.org", Reason.soft_bounce),
                ("blocked.four@example.se", Reason.soft_bounce),
                ("blocked.five@example.com", Reason.soft_bounce),
            ],
        ),
    ],
)
def test_sendgrid_lists(name: str, expected: list[tuple[str, Reason]]) -> None:
    assert pairs("sendgrid", name) == expected


def test_sendgrid_columns_are_found_by_name_in_any_order_and_case() -> None:
    data = b' Reason ,STATUS,Created, Email \n"x, y",4.2.2,1714933098, Full.Box@example.se \n'
    assert pairs("sendgrid", "bounces.csv", data) == [("Full.Box@example.se", Reason.soft_bounce)]


def test_sendgrid_api_json_is_read_too() -> None:
    found = pairs("sendgrid", "sendgrid-bounces-api.json")
    assert ("full.box@example.se", Reason.soft_bounce) in found
    assert len(found) == 5


def test_sendgrid_file_of_unknown_kind_is_refused() -> None:
    with pytest.raises(SourceError):
        parse("sendgrid", "export.csv", b"email,created,status,reason\na@example.se,1,5.1.1,x\n")


@pytest.mark.parametrize(
    "name", ["ses-suppressed-destinations.json", "ses-suppressed-destinations-cli.json"]
)
def test_ses_suppressed_destination_pages(name: str) -> None:
    found = dict(pairs("ses", name))
    assert found["Per.Karlsson@EXAMPLE.se"] is Reason.hard_bounce
    assert found["lisa.holm@example.se"] is Reason.complaint
    assert found["complainer@example.org"] is Reason.complaint


@pytest.mark.parametrize("name", ["ses-suppression-import.csv", "ses-suppression-import.jsonl"])
def test_ses_import_formats(name: str) -> None:
    assert pairs("ses", name) == [
        ("nosuchuser@example.com", Reason.hard_bounce),
        ("Per.Karlsson@EXAMPLE.se", Reason.hard_bounce),
        ("lisa.holm@example.se", Reason.complaint),
        ("complainer@example.org", Reason.complaint),
        ("old.mailbox@example.org", Reason.hard_bounce),
    ]


def test_ses_unknown_reason_is_reported_not_guessed() -> None:
    data = b'{"SuppressedDestinationSummaries": [{"EmailAddress": "a@example.se", "Reason": "X"}]}'
    parsed = parse("ses", "page.json", data)
    assert parsed.entries == ()
    assert [(p.line, "a@example.se" in p.message) for p in parsed.problems] == [(1, False)]


def test_postmark_origin_decides_between_unsubscribe_and_manual() -> None:
    assert pairs("postmark", "postmark-suppressions-dump.json") == [
        ("anna.lind@example.se", Reason.unsubscribe),
        ("nosuchuser@example.com", Reason.hard_bounce),
        ("Lisa.Holm@Example.SE", Reason.complaint),
        ("j.doe@example.com", Reason.manual),
        ("abuse.trap@example.org", Reason.manual),
        ("old.mailbox@example.org", Reason.hard_bounce),
    ]


def test_configured_reason_overrides_the_mapping() -> None:
    parsed = parse(
        "postmark", "dump.json", read("postmark-suppressions-dump.json"), reason=Reason.objection
    )
    assert {e.reason for e in parsed.entries} == {Reason.objection}


def test_generic_without_header_takes_every_line() -> None:
    data = b"a@example.se\r\nb@example.se,Bo\r\n\r\n  c@example.se  \r\n"
    assert [e.address for e in parse("generic", "list.txt", data).entries] == [
        "a@example.se",
        "b@example.se",
        "c@example.se",
    ]


def test_generic_header_names_the_address_column() -> None:
    data = b"name,E-Mail\nBo,b@example.se\n"
    parsed = parse("generic", "list.csv", data, reason=Reason.objection)
    assert [(e.line, e.address, e.reason) for e in parsed.entries] == [
        (2, "b@example.se", Reason.objection)
    ]


def test_bom_crlf_and_quoted_multiline_fields_keep_line_numbers() -> None:
    data = (
        "\ufeffemail,created,ip\r\n"
        '"first@example.se",1,"198.51.100.1"\r\n'
        '"second@example.se",2,"a\r\nb"\r\n'
        "third@example.se,3,x\r\n"
    ).encode()
    parsed = parse("sendgrid", "spam_reports.csv", data)
    assert [(e.line, e.address) for e in parsed.entries] == [
        (2, "first@example.se"),
        (3, "second@example.se"),
        (5, "third@example.se"),
    ]


def test_non_utf8_bytes_are_reported_with_their_line_and_the_row_skipped() -> None:
    data = b"email,created\nok@example.se,1\nbj\xf6rn@example.se,2\nfine@example.se,3\n"
    parsed = parse("sendgrid", "unsubscribes.csv", data)
    assert [e.address for e in parsed.entries] == ["ok@example.se", "fine@example.se"]
    assert [(p.line, "UTF-8" in p.message) for p in parsed.problems] == [(3, True)]
    assert "example.se" not in parsed.problems[0].message


def test_non_utf8_bytes_outside_the_address_keep_the_row_but_are_reported() -> None:
    data = b'"Email Address",First Name,UNSUB_REASON\nanna@example.se,Bj\xf6rn,\n'
    parsed = parse("mailchimp", "unsubscribed_members_export_1.csv", data)
    assert [e.address for e in parsed.entries] == ["anna@example.se"]
    assert [p.line for p in parsed.problems] == [2]


def test_nul_byte_in_an_address_skips_the_row_and_says_where() -> None:
    data = b"email,created\na@example.se,1\nb@exa\x00mple.se,2\n"
    parsed = parse("sendgrid", "unsubscribes.csv", data)
    assert [e.address for e in parsed.entries] == ["a@example.se"]
    assert parsed.problems[0].line == 3


def test_a_field_over_the_csv_limit_skips_its_row_only() -> None:
    import csv

    huge = b'"' + b"n" * (csv.field_size_limit() + 1) + b'"'
    data = b"email,created\na@example.se,1\nb@example.se," + huge + b"\nc@example.se,3\n"
    parsed = parse("sendgrid", "unsubscribes.csv", data)
    assert [e.address for e in parsed.entries] == ["a@example.se", "c@example.se"]
    assert [p.line for p in parsed.problems] == [3]
    assert "example.se" not in parsed.problems[0].message
    found, problems = contacts(b"id,email\n1,a@example.se\n2," + huge + b"\n3,c@example.se\n")
    assert [(c.row, c.address) for c in found] == [("1", "a@example.se"), ("3", "c@example.se")]
    assert [p.line for p in problems] == [3]


@pytest.mark.parametrize(
    ("fmt", "name"),
    [("postmark", "dump.json"), ("sendgrid", "bounces.json"), ("ses", "page.json")],
)
def test_json_nested_too_deep_is_refused_without_a_recursion_error(fmt: str, name: str) -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    with pytest.raises(SourceError, match="nested deeper than 32 levels"):
        parse(fmt, name, deep)
    nested = b'{"a": ' * 40 + b"1" + b"}" * 40
    with pytest.raises(SourceError, match="nested deeper than 32 levels"):
        parse(fmt, name, b'{"Suppressions": [' + nested + b"]}")


def test_jsonl_line_nested_too_deep_is_skipped_with_its_line() -> None:
    data = (
        b'{"EmailAddress": "a@example.se", "Reason": "BOUNCE"}\n'
        + b"[" * 100_000
        + b"]" * 100_000
        + b"\n"
        + b'{"EmailAddress": "c@example.se", "Reason": "COMPLAINT"}\n'
    )
    parsed = parse("ses", "import.jsonl", data)
    assert [e.address for e in parsed.entries] == ["a@example.se", "c@example.se"]
    assert [p.line for p in parsed.problems] == [2]


def test_json_with_bad_bytes_names_the_line() -> None:
    data = (
        b'{"Suppressions": [\n{"EmailAddress": "a@example.se"},\n'
        b'{"EmailAddress": "\xe5@example.se"}]}'
    )
    with pytest.raises(SourceError, match="line 3"):
        parse("postmark", "dump.json", data)


def test_contacts_are_identified_by_id_else_by_line() -> None:
    with_id, _ = contacts(b"Id,Name,EMAIL\r\nc-17,Anna,anna@example.se\r\n,Bo,bo@example.se\r\n")
    assert [(c.row, c.line, c.address) for c in with_id] == [
        ("c-17", 2, "anna@example.se"),
        ("3", 3, "bo@example.se"),
    ]
    no_id, _ = contacts(b"kontakt,namn\nanna@example.se,Anna\n")
    assert [(c.row, c.address) for c in no_id] == [("2", "anna@example.se")]
