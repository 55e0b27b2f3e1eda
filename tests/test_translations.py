"""The page catalogs: complete, in step with the templates, and compiled as committed."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.mofile import read_mo, write_mo
from babel.messages.pofile import read_po

PACKAGE = Path(__file__).resolve().parent.parent / "suppress"
TRANSLATIONS = PACKAGE / "translations"
LANGUAGES = sorted(p.name for p in TRANSLATIONS.iterdir() if (p / "LC_MESSAGES").is_dir())
METHOD_MAP = [("**/templates/**.html", "jinja2"), ("**.py", "python")]


def source_ids() -> set[str]:
    found = extract_from_dir(str(PACKAGE), METHOD_MAP)
    return {message if isinstance(message, str) else message[0] for _f, _l, message, *_ in found}


def singular(message_id: Any) -> str:
    """A message's id; a plural one (ngettext) by its singular, as extraction names it."""
    return message_id if isinstance(message_id, str) else str(message_id[0])


def forms(text: Any) -> tuple[str, ...]:
    """A message's id or string as a tuple: one form, or every plural form."""
    return (text,) if isinstance(text, str) else tuple(text)


def test_swedish_is_among_the_catalogs() -> None:
    assert "sv" in LANGUAGES


@pytest.mark.parametrize("lang", LANGUAGES)
def test_catalog_translates_every_message_of_the_pages(lang: str) -> None:
    with (TRANSLATIONS / lang / "LC_MESSAGES" / "messages.po").open("rb") as fh:
        catalog = read_po(fh, locale=lang)
    ids = {singular(m.id) for m in catalog if m.id}
    wanted = source_ids()
    assert wanted, "no translatable text found: extraction is broken"
    assert wanted - ids == set(), "run `make translations` and translate the new entries"
    assert ids - wanted == set(), "stale entries: run `make translations`"
    untranslated = [m.id for m in catalog if m.id and (not all(forms(m.string)) or m.fuzzy)]
    assert untranslated == []
    for message in catalog:
        if message.id:
            # Every form of the translation names the placeholders of the English singular.
            wanted = forms(message.id)[0].count("%(")
            for string in forms(message.string):
                assert string.count("%(") == wanted, message.id


@pytest.mark.parametrize("lang", LANGUAGES)
def test_committed_mo_matches_its_po(lang: str) -> None:
    folder = TRANSLATIONS / lang / "LC_MESSAGES"
    with (folder / "messages.po").open("rb") as fh:
        source = read_po(fh, locale=lang)
    compiled = io.BytesIO()
    write_mo(compiled, source)
    compiled.seek(0)
    with (folder / "messages.mo").open("rb") as fh:
        committed = read_mo(fh)
    expected = read_mo(compiled)
    as_dict = {forms(m.id): forms(m.string) for m in committed if m.id}
    assert as_dict == {forms(m.id): forms(m.string) for m in expected if m.id}, (
        "run `make translations`"
    )
