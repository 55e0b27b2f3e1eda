"""The preference centre (DESIGN §10): the page names the sender and its lists, a reader
leaves and rejoins declared lists, and nothing a sender recorded can be lifted from it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from suppress.models import AuditEvent, Suppression
from suppress.runtime import Runtime

from .conftest import bearer, settings
from .test_pages import EMAIL, EN, SV, allowed, counts, link

ORGANISATION = {"name": "Exempel Juridik AB", "privacy_url": "https://example.se/integritet"}
LISTS = [
    {
        "name": "labour-law",
        "title": {"sv": "Arbetsrätt", "en": "Labour law"},
        "description": {"sv": "Nyheter om arbetsrätt.", "en": "News on labour law."},
    },
    {"name": "tax", "title": {"sv": "Skatt", "en": "Tax"}},
    {"name": "procurement", "title": {"sv": "Offentlig upphandling", "en": "Public procurement"}},
]


@pytest.fixture
def overrides(db_url: str, tmp_path: Path) -> dict[str, Any]:
    return settings(db_url, tmp_path, organisation=ORGANISATION, lists=LISTS)


def post(client: FlaskClient, url: str, data: Any, headers: dict[str, str] = EN) -> Any:
    return client.post(url, data=data, headers=headers)


def text(response: Any) -> str:
    """The page's visible words, tags dropped and whitespace collapsed."""
    return " ".join(re.sub(r"<[^>]+>", " ", response.get_data(as_text=True)).split())


def rows(rt: Runtime) -> list[tuple[str, str, str]]:
    with rt.db.begin(write=False) as session:
        return sorted(
            (r.list, r.reason.value, r.source) for r in session.scalars(select(Suppression))
        )


# --- what the page shows ----------------------------------------------------------------------


@pytest.mark.db_agnostic
@pytest.mark.parametrize(
    ("headers", "words"),
    [
        (
            SV,
            [
                "Utskicken kommer från Exempel Juridik AB",
                "Arbetsrätt",
                "Nyheter om arbetsrätt",
                "Offentlig upphandling",
                "Listor du får",
                "Lämna de markerade listorna",
            ],
        ),
        (
            EN,
            [
                "These mailings come from Exempel Juridik AB",
                "Labour law",
                "News on labour law",
                "Public procurement",
                "Lists you receive",
                "Leave the ticked lists",
            ],
        ),
    ],
)
def test_the_page_names_the_sender_and_offers_every_declared_list_in_its_language(
    client: FlaskClient, rt: Runtime, headers: dict[str, str], words: list[str]
) -> None:
    before = counts(rt)
    page = client.get(link(rt, list_name="labour-law"), headers=headers)
    assert page.status_code == 200
    body = page.get_data(as_text=True)
    for word in words:
        assert word in text(page), word
    assert 'href="https://example.se/integritet"' in body
    # The link's own list by its title, never its internal name; a checkbox per list.
    assert "labour-law”" not in text(page)
    assert len(re.findall(r'type="checkbox" id="leave-[a-z-]+" name="lists"', body)) == 3
    assert client.head(link(rt, list_name="labour-law"), headers=headers).status_code == 200
    assert counts(rt) == before  # GET and HEAD change nothing


def test_the_page_shows_which_lists_the_reader_is_already_off(
    client: FlaskClient, rt: Runtime
) -> None:
    post(client, link(rt), {"scope": "lists", "lists": ["tax"]})
    page = client.get(link(rt, list_name="labour-law"), headers=EN)
    body = page.get_data(as_text=True)
    assert 'id="leave-tax"' not in body and 'id="rejoin-tax"' in body
    assert "Lists you have left" in text(page)
    assert 'id="leave-labour-law"' in body


# --- leaving and rejoining ---------------------------------------------------------------------


def test_a_reader_leaves_several_lists_at_once_and_the_page_says_exactly_that(
    client: FlaskClient, rt: Runtime, tokens: dict[str, str]
) -> None:
    answer = post(client, link(rt), {"scope": "lists", "lists": ["labour-law", "tax"]}, SV)
    assert answer.status_code == 200
    words = text(answer)
    assert "Du får inga fler utskick från listan ”Arbetsrätt”." in words
    assert "Du får inga fler utskick från listan ”Skatt”." in words
    assert "Ändra ditt val" in words
    assert f'href="{link(rt)}?lang=sv"' in answer.get_data(as_text=True)
    assert rows(rt) == [
        ("labour-law", "unsubscribe", "landing_page"),
        ("tax", "unsubscribe", "landing_page"),
    ]
    mailer = tokens["mailer"]
    assert not allowed(client, mailer, list_name="labour-law")
    assert not allowed(client, mailer, list_name="tax")
    assert allowed(client, mailer, list_name="procurement")
    again = post(client, link(rt), {"scope": "lists", "lists": ["tax"]})
    assert "You had already left the list “Tax”; that stays as it was." in text(again)


def test_a_reader_comes_back_to_a_list_they_left_through_any_of_their_links(
    client: FlaskClient, rt: Runtime, tokens: dict[str, str]
) -> None:
    post(client, link(rt, list_name="tax"), {"scope": "list"})  # leaves "tax" from its link
    assert not allowed(client, tokens["mailer"], list_name="tax")
    # Another list's link to the same reader brings it back.
    answer = post(
        client, link(rt, list_name="labour-law"), {"scope": "resubscribe", "lists": ["tax"]}
    )
    assert answer.status_code == 200
    assert "Your opt-out from the list “Tax” is lifted: its mailings can reach you again." in text(
        answer
    )
    assert allowed(client, tokens["mailer"], list_name="tax")
    with rt.db.begin(write=False) as session:
        removal = session.scalars(select(AuditEvent).where(AuditEvent.action == "remove")).one()
    assert removal.actor == "recipient" and removal.list == "tax"
    assert removal.detail["removal_reason"] == "resubscribed_by_recipient"
    assert removal.detail["evidence"].startswith("signed unsubscribe link sha256:")
    assert "for list labour-law, minted by API key 42" in removal.detail["evidence"]
    assert EMAIL.lower() not in str(removal.detail).lower()


def test_coming_back_never_lifts_what_a_sender_or_a_complaint_recorded(
    client: FlaskClient, rt: Runtime, tokens: dict[str, str]
) -> None:
    recorder = bearer(tokens["recorder"])
    for list_name, reason in (("labour-law", "unsubscribe"), ("tax", "hard_bounce")):
        added = client.post(
            "/v1/suppressions",
            json={"email": EMAIL, "list": list_name, "reason": reason, "source": "crm"},
            headers=recorder,
        )
        assert added.status_code == 201
    post(client, link(rt), {"scope": "lists", "lists": ["procurement"]})
    page = client.get(link(rt), headers=EN)
    body = page.get_data(as_text=True)
    assert 'id="rejoin-labour-law"' not in body and 'id="rejoin-tax"' not in body
    assert 'id="rejoin-procurement"' in body
    assert "cannot be restarted here" in text(page)
    before = rows(rt)
    answer = post(
        client, link(rt), {"scope": "resubscribe", "lists": ["labour-law", "tax", "procurement"]}
    )
    assert answer.status_code == 200
    words = text(answer)
    assert "The list “Labour law” was stopped for this address in another way" in words
    assert "Your opt-out from the list “Public procurement” is lifted" in words
    assert rows(rt) == [r for r in before if r[0] != "procurement"]
    assert not allowed(client, tokens["mailer"], list_name="labour-law")


def test_a_reader_who_left_everything_is_told_a_rejoined_list_still_does_not_reach_them(
    client: FlaskClient, rt: Runtime, tokens: dict[str, str]
) -> None:
    post(client, link(rt), {"scope": "lists", "lists": ["tax"]})
    post(client, link(rt), {"scope": "global"})
    page = client.get(link(rt), headers=EN)
    assert "You have already left all direct marketing from us." in text(page)
    assert 'name="scope" value="resubscribe"' not in page.get_data(as_text=True)
    answer = post(client, link(rt), {"scope": "resubscribe", "lists": ["tax"]})
    assert "nothing reaches you until that is lifted" in text(answer)
    assert not allowed(client, tokens["mailer"], list_name="tax")  # the objection holds
    assert ("global", "objection", "landing_page") in rows(rt)


@pytest.mark.parametrize(
    "data",
    [
        {"scope": "lists"},
        {"scope": "resubscribe"},
        {"scope": "lists", "lists": ["labour-law", "news"]},  # news: undeclared
        {"scope": "lists", "lists": ["global"]},
        {"scope": "resubscribe", "lists": ["nope"]},
        {"scope": "lists", "lists": ["LABOUR-LAW"]},
    ],
)
def test_no_list_or_an_undeclared_one_is_400_and_records_nothing(
    client: FlaskClient, rt: Runtime, data: dict[str, Any]
) -> None:
    before = counts(rt)
    answer = post(client, link(rt), data)
    assert answer.status_code == 400
    assert 'role="alert"' in answer.get_data(as_text=True)
    assert counts(rt) == before


def test_one_click_still_takes_the_links_list_whatever_else_is_posted(
    client: FlaskClient, rt: Runtime
) -> None:
    answer = post(
        client,
        link(rt, list_name="tax"),
        {"List-Unsubscribe": "One-Click", "scope": "resubscribe", "lists": ["tax"]},
    )
    assert answer.status_code == 200
    assert rows(rt) == [("tax", "unsubscribe", "one_click")]


def test_a_list_declared_without_a_text_in_every_language_is_refused_at_start(
    db_url: str, tmp_path: Path
) -> None:
    from suppress import create_app
    from suppress.errors import ConfigError

    with pytest.raises(ConfigError, match=r"\[\[lists\]\] #1 title: needs a text in sv"):
        create_app(settings(db_url, tmp_path, lists=[{"name": "a", "title": {"en": "A"}}]))


@pytest.mark.parametrize("source", ["one_click", "landing_page", " One_Click "])
def test_no_sender_may_claim_a_readers_own_source(
    client: FlaskClient, rt: Runtime, tokens: dict[str, str], source: str
) -> None:
    """Else a sender's record could be lifted from the page as if the reader had made it."""
    recorder = bearer(tokens["recorder"])
    added = client.post(
        "/v1/suppressions",
        json={"email": EMAIL, "list": "tax", "reason": "unsubscribe", "source": source},
        headers=recorder,
    )
    assert added.status_code == 422
    assert added.get_json()["error"]["code"] == "invalid_request"
    imported = client.post(
        "/v1/imports?list=tax&reason=unsubscribe&source=" + source.strip(),
        data=EMAIL + "\n",
        headers={**recorder, "Content-Type": "text/plain"},
    )
    assert imported.status_code == 422
    assert rows(rt) == []


# --- what makes an opt-out the reader's own (found by trying to break it) ----------------------


@pytest.mark.parametrize(
    ("reason", "extra"),
    [("hard_bounce", {}), ("soft_bounce", {"expires_at": "2999-01-01T00:00:00Z"})],
)
def test_a_readers_opt_out_on_a_senders_bounce_leaves_the_row_the_senders(
    client: FlaskClient, rt: Runtime, tokens: dict[str, str], reason: str, extra: dict[str, str]
) -> None:
    recorder = bearer(tokens["recorder"])
    added = client.post(
        "/v1/suppressions",
        json={"email": EMAIL, "list": "tax", "reason": reason, "source": "webhook:x", **extra},
        headers=recorder,
    )
    assert added.status_code == 201
    post(client, link(rt, list_name="tax"), {"scope": "list"})  # strengthens the bounce
    assert rows(rt) == [("tax", "unsubscribe", "webhook:x")]
    answer = post(client, link(rt), {"scope": "resubscribe", "lists": ["tax"]})
    assert "stays stopped" in text(answer)
    assert not allowed(client, tokens["mailer"], list_name="tax")


@pytest.mark.parametrize("how", ["api", "import", "webhook"])
def test_a_sender_recording_a_readers_opt_out_again_takes_it_over(
    client: FlaskClient, rt: Runtime, tokens: dict[str, str], how: str
) -> None:
    post(client, link(rt, list_name="tax"), {"scope": "list"})
    assert rows(rt) == [("tax", "unsubscribe", "landing_page")]
    recorder = bearer(tokens["recorder"])
    if how == "api":
        answer = client.post(
            "/v1/suppressions",
            json={"email": EMAIL, "list": "tax", "reason": "complaint", "source": "fbl"},
            headers=recorder,
        )
        assert answer.status_code == 200
    else:
        answer = client.post(
            "/v1/imports?list=tax&reason=complaint&source=" + ("fbl" if how == "import" else "x"),
            data=EMAIL + "\n",
            headers={**recorder, "Content-Type": "text/plain"},
        )
        assert answer.get_json()["existing"] == 1
    assert rows(rt)[0][2] != "landing_page"
    with rt.db.begin(write=False) as session:
        actions = list(session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)))
    assert actions[-1] in ("claim", "strengthen")
    post(client, link(rt), {"scope": "resubscribe", "lists": ["tax"]})
    assert not allowed(client, tokens["mailer"], list_name="tax")


def test_a_merge_after_a_pepper_rotation_keeps_a_senders_claim(db_url: str, tmp_path: Path) -> None:
    """Rows of one reader under two peppers merge into the active one; if a sender made
    either, the reader can no longer lift the result."""
    from suppress import addresses, clock, create_app, suppressions
    from suppress.models import Reason

    from .conftest import OLD_PEPPER, TEST_PEPPER

    old = create_app(settings(db_url, tmp_path, peppers=OLD_PEPPER, lists=LISTS))
    old_rt: Runtime = old.extensions["suppress"]
    with old_rt.db.begin() as session:  # the sender's complaint, under the old pepper
        suppressions.add(
            session,
            addresses.address_target(old_rt.ring, EMAIL),
            "tax",
            Reason.complaint,
            source="fbl",
            actor="api:x",
            now=clock.utcnow(),
        )
    old_rt.db.dispose()
    new = create_app(settings(db_url, tmp_path, peppers=f"{TEST_PEPPER},{OLD_PEPPER}", lists=LISTS))
    new.config["TESTING"] = True
    rt: Runtime = new.extensions["suppress"]
    client = new.test_client()
    try:
        # The reader leaves "tax" with a new link (a row under the new pepper), then a check
        # re-keys and merges the old row into it.
        post(client, link(rt, list_name="tax"), {"scope": "list"})
        with rt.db.begin() as session:
            target = addresses.address_target(rt.ring, EMAIL)
            verdict = suppressions.check(session, target, "tax", now=clock.utcnow())
            suppressions.rekey(session, verdict.stale, rt.ring.active_id, actor="test")
        assert [r[2] for r in rows(rt)] == ["fbl"]
        post(client, link(rt), {"scope": "resubscribe", "lists": ["tax"]})
        assert len(rows(rt)) == 1
    finally:
        rt.db.dispose()


def test_a_readers_own_opt_out_stays_theirs_when_they_leave_again(
    client: FlaskClient, rt: Runtime, tokens: dict[str, str]
) -> None:
    post(client, link(rt, list_name="tax"), {"List-Unsubscribe": "One-Click"})
    post(client, link(rt), {"scope": "lists", "lists": ["tax"]})
    assert rows(rt) == [("tax", "unsubscribe", "one_click")]
    post(client, link(rt), {"scope": "resubscribe", "lists": ["tax"]})
    assert allowed(client, tokens["mailer"], list_name="tax")


def test_the_all_marketing_wording_follows_the_lists_name_not_its_title(
    db_url: str, tmp_path: Path
) -> None:
    from suppress import create_app

    tricky = [{"name": "misc", "title": {"sv": "global", "en": "global"}}]
    app = create_app(settings(db_url, tmp_path, lists=tricky))
    app.config["TESTING"] = True
    rt: Runtime = app.extensions["suppress"]
    try:
        answer = post(app.test_client(), link(rt), {"scope": "lists", "lists": ["misc"]})
        assert "You will no longer receive mailings from the list “global”." in text(answer)
        assert "any direct marketing" not in text(answer)
    finally:
        rt.db.dispose()


def test_a_plain_http_privacy_link_is_refused_at_start(db_url: str, tmp_path: Path) -> None:
    from suppress import create_app
    from suppress.errors import ConfigError

    with pytest.raises(ConfigError, match="privacy_url: must be an https:// address"):
        create_app(settings(db_url, tmp_path, organisation={"privacy_url": "http://x.se/p"}))
