"""The typed contract of the HTTP API: models, the operations, and the document made of them.

Request and response bodies are pydantic models. Each route declares its `Operation` where
it is registered (role, query, body, replies); the OpenAPI 3.1 document is generated from
the app's route table and those declarations, so a route cannot be served undocumented, and
request binding, the error envelope and the document all read the same models. Constants
come from where they are owned: reasons and the list-name pattern from `models`, job names
from `jobs`, error codes from `errors`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Annotated, Any, ClassVar, Literal, TypeVar

from flask import Flask
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    StringConstraints,
    ValidationError,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema, models_json_schema

from . import jobs, rights, suppressions
from .errors import ErrorCode, InvalidList, InvalidRequest, PayloadTooLarge
from .models import LIST_PATTERN, Kind, Outcome, Reason, RequestKind, Role

F = TypeVar("F", bound=Callable[..., Any])
OPERATION = "__suppress_operation__"
MAX_ID = 2**63 - 1
MAX_TEXT = 128
MAX_LINKS = 10_000
MAX_FILTER_EMAILS = 100_000
MAX_INVALID_LINES = 1_000
EXPORT_FORMATS = ("ndjson", "csv")
ONE_CLICK = "List-Unsubscribe=One-Click"
HEX64 = r"^[0-9a-f]{64}$"
IDEMPOTENCY_KEY_MAX = 255
# RFC 8058 §3.1: mail clients post one-click url-encoded or as multipart/form-data.
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
TEXT_TYPES = ("text/plain", "text/csv")
# gunicorn answers an over-long request line itself, on any route.
SERVER_REFUSAL = 414


# --- field types ------------------------------------------------------------------------------


def _query_int(value: Any) -> Any:
    # Query strings carry text: only plain ASCII digits are a number (no sign, space or _).
    if isinstance(value, str):
        if not (value.isascii() and value.isdigit()) or len(value) > 19:
            raise ValueError("must be a whole number written in digits")
        return int(value)
    return value


def _free_text(name: str) -> Callable[[str], str]:
    def check(value: str) -> str:
        return suppressions.validate_text(name, value)

    return check


def _sender_source(value: str) -> str:
    return suppressions.validate_source(value)


# A source a sender gives: free text, but never one kept for readers' own opt-outs.
SenderSource = Annotated[
    StrictStr,
    StringConstraints(min_length=1, max_length=suppressions.MAX_TEXT),
    AfterValidator(_sender_source),
]
ListName = Annotated[
    StrictStr,
    StringConstraints(pattern=LIST_PATTERN),
    Field(description="A list name; 'global' is all direct marketing.", examples=["news"]),
]
Email = Annotated[StrictStr, Field(description="An address as given; scheme n1 decides.")]
Hex64 = Annotated[StrictStr, StringConstraints(pattern=HEX64)]
QueryInt = Annotated[StrictInt, BeforeValidator(_query_int)]
JobName = Literal[jobs.NAMES]  # type: ignore[valid-type]


def Pattern(pattern: str) -> Any:  # noqa: N802 - a type factory
    """A string matching a regular expression (the same one the document gives)."""
    return Annotated[StrictStr, StringConstraints(pattern=pattern)]


def FreeText(name: str) -> Any:  # noqa: N802 - a type factory
    """Short free text (source, evidence, reason for removal): no address, printable."""
    return Annotated[
        StrictStr,
        StringConstraints(min_length=1, max_length=MAX_TEXT),
        AfterValidator(_free_text(name)),
    ]


class Model(BaseModel):
    """Request models: unknown fields are ignored, as JSON clients expect."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    # Fields whose refusal carries their own code (422), see CODED.
    coded: ClassVar[tuple[str, ...]] = ()


class Reply(BaseModel):
    """Response models: exactly the fields documented."""

    model_config = ConfigDict(extra="forbid")


# --- requests ---------------------------------------------------------------------------------


class CheckRequest(Model):
    coded: ClassVar[tuple[str, ...]] = ("list",)
    email: Email
    list_name: ListName = Field(alias="list")


class Target(Model):
    """Exactly one of an address or a domain."""

    coded: ClassVar[tuple[str, ...]] = ("list",)

    email: Email | SkipJsonSchema[None] = None
    domain: StrictStr | SkipJsonSchema[None] = Field(
        default=None, description="A domain: covers it and every subdomain."
    )
    list_name: ListName = Field(alias="list")

    model_config = ConfigDict(
        json_schema_extra={"oneOf": [{"required": ["email"]}, {"required": ["domain"]}]}
    )

    @model_validator(mode="after")
    def one_target(self) -> Target:
        if (self.email is None) == (self.domain is None):
            raise ValueError("give exactly one of 'email' or 'domain'")
        return self


class AddRequest(Target):
    coded: ClassVar[tuple[str, ...]] = ("list", "reason")
    reason: Reason
    source: SenderSource = "api"
    expires_at: StrictStr | None = Field(
        default=None,
        json_schema_extra={"format": "date-time"},
        description="ISO 8601 with a time zone; only for hard_bounce and soft_bounce.",
    )


class RemoveRequest(Target):
    reason: FreeText("reason") = Field(  # type: ignore[valid-type]
        description="Why it is lifted, e.g. resubscribed."
    )
    evidence: FreeText("evidence") = Field(  # type: ignore[valid-type]
        description="Where the new consent is recorded (a reference, never an address)."
    )


class LinksRequest(Model):
    coded: ClassVar[tuple[str, ...]] = ("list",)
    list_name: ListName = Field(alias="list")
    emails: list[StrictStr] = Field(
        max_length=MAX_LINKS,
        description="Inputs that are no address are answered under 'invalid', not refused.",
    )


class FilterRequest(Model):
    coded: ClassVar[tuple[str, ...]] = ("list",)
    list_name: ListName = Field(alias="list")
    emails: list[StrictStr] = Field(max_length=MAX_FILTER_EMAILS)


class LookupRequest(Model):
    email: Email
    reference: FreeText("reference") | None = Field(  # type: ignore[valid-type]
        default=None,
        description="The request's reference (a ticket number), kept in the audit event of "
        "the lookup; no address.",
    )


# Free text of a data-subject request (the register refuses an address in it, 422) and
# timestamps as text (api.parse_time reads them: ISO 8601 with a time zone).
Line = Annotated[StrictStr, StringConstraints(min_length=1, max_length=rights.MAX_LINE)]
Note = Annotated[StrictStr, StringConstraints(min_length=1, max_length=rights.MAX_NOTE)]
Why = Annotated[StrictStr, StringConstraints(min_length=1, max_length=rights.MAX_REASON)]
Moment = Annotated[StrictStr, Field(json_schema_extra={"format": "date-time"})]


class RequestRegistration(Model):
    kind: RequestKind
    received_at: Moment = Field(
        description="When the request reached the controller, with a time zone: the clock "
        "starts on that day in the compliance time zone. Not in the future."
    )
    reference: Line = Field(description="Your reference, e.g. a ticket number; no address.")
    email: Email | None = Field(
        default=None,
        description="The address the request is about: kept only as its keyed hash, so a "
        "lookup of it lists the request. An objection or consent_withdrawal with an address "
        "also suppresses it on 'global' at once.",
    )
    channel: Line | None = Field(
        default=None, description="How it arrived: phone, email, letter, ..."
    )
    note: Note | None = Field(
        default=None,
        description="The officer's note (line breaks allowed); no address. Not copied to the "
        "audit trail.",
    )


class IdentityVerification(Model):
    method: Line = Field(description="How the identity was verified, e.g. BankID; no address.")
    verified_at: Moment | None = Field(
        default=None, description="When; default now. Not before receipt, not in the future."
    )


class Extension(Model):
    reason: Why = Field(description="Why more time is needed, as the reader was told.")
    notified_at: Moment = Field(
        description="When the reader was told of the extension and its reasons: on or before "
        "the original due day (in the compliance time zone), else 422 notice_too_late."
    )


class Closing(Model):
    outcome: Outcome
    note: Note | None = Field(
        default=None, description="No address. Not copied to the audit trail."
    )


class RequestsQuery(Model):
    status: Literal[rights.STATUSES] | SkipJsonSchema[None] = Field(  # type: ignore[valid-type]
        default=None,
        description="open (by due day), overdue (open and past due, by due day), closed "
        "(newest first); none: every request, newest first.",
    )


class FilterQuery(Model):
    coded: ClassVar[tuple[str, ...]] = ("list",)
    list_name: ListName | SkipJsonSchema[None] = Field(
        default=None, alias="list", description="Required for the streamed (text) form."
    )


class ImportQuery(Model):
    coded: ClassVar[tuple[str, ...]] = ("list", "reason")
    list_name: ListName = Field(alias="list")
    reason: Reason
    source: SenderSource = "import"


class ExportQuery(Model):
    format: Literal[EXPORT_FORMATS] = Field(  # type: ignore[valid-type]
        default="ndjson",
        description="csv: a header line; cells starting with = + - @ tab or CR get a leading "
        "' so spreadsheets never run them.",
    )


class AuditQuery(Model):
    after: QueryInt = Field(
        default=0,
        ge=0,
        le=MAX_ID,
        description="Events with an id greater than this (the previous next_after).",
    )
    limit: QueryInt = Field(
        default=100, ge=1, le=MAX_ID, description="At most this many (capped at 1000)."
    )
    action: Pattern(r"^[a-z][a-z_]{0,31}$") | SkipJsonSchema[None] = Field(  # type: ignore[valid-type]
        default=None,
        description="Only events of this action, e.g. remove, lookup, export, rekey.",
    )


class VerifyQuery(Model):
    anchor: Pattern(r"^[0-9a-fA-F]{64}$") | SkipJsonSchema[None] = Field(  # type: ignore[valid-type]
        default=None,
        description="A head recorded earlier: the chain must still contain it.",
    )


class JobsQuery(Model):
    job: JobName | SkipJsonSchema[None] = None
    limit: QueryInt = Field(default=50, ge=1, le=500)


class PageQuery(Model):
    lang: Pattern(r"^[a-z]{2,3}(_[A-Z]{2})?$") | SkipJsonSchema[None] = Field(  # type: ignore[valid-type]
        default=None,
        description="Language switch (a catalog's language, e.g. sv or en); any other is "
        "ignored. Default: Accept-Language.",
    )


class UnsubscribeForm(Model):
    """RFC 8058 one-click, or the landing page's choice."""

    one_click: Pattern(r"^\s*One-Click\s*$") | SkipJsonSchema[None] = Field(  # type: ignore[valid-type]
        default=None,
        alias="List-Unsubscribe",
        description="RFC 8058 one-click: the token's list (whitespace around it allowed).",
    )
    scope: Literal["list", "global", "lists", "resubscribe"] | SkipJsonSchema[None] = Field(
        default=None,
        description="The landing form: this list, all direct marketing, the declared "
        "`lists` given (leave them), or `resubscribe` to the declared `lists` given.",
    )
    lists: list[ListName] | SkipJsonSchema[None] = Field(
        default=None,
        description="Declared list names (repeat the field), with scope lists or resubscribe.",
    )


# --- responses --------------------------------------------------------------------------------


class Hit(Reply):
    scope: str = Field(description="The list of the suppression; 'global' covers all.")
    kind: Kind
    reason: Reason
    since: datetime


class Verdict(Reply):
    email: str
    list_name: ListName = Field(alias="list")
    allowed: bool
    suppressions: list[Hit]


class Suppression(Reply):
    id: int | None = None
    digest: str = Field(description="Keyed hash (hex); never the address.")
    key_id: str
    scheme: str
    kind: Kind
    list_name: str = Field(alias="list")
    reason: Reason
    source: str
    created_at: datetime
    expires_at: datetime | None


class Added(Reply):
    created: bool
    suppression: Suppression


class Removed(Reply):
    removed: int


class LinkHeaders(Reply):
    list_unsubscribe: str = Field(alias="List-Unsubscribe")
    list_unsubscribe_post: Literal[ONE_CLICK] | SkipJsonSchema[None] = Field(  # type: ignore[valid-type]
        default=None,
        alias="List-Unsubscribe-Post",
        description="RFC 8058 one-click; absent when base_url is plain http on a host other "
        "than loopback ([unsubscribe] allow_insecure_base_url).",
    )


class Link(Reply):
    email: str = Field(description="As given.")
    url: str = Field(json_schema_extra={"format": "uri"})
    headers: LinkHeaders


class Invalid(Reply):
    email: str
    code: Literal[ErrorCode.invalid_email]


class Links(Reply):
    links: list[Link] = Field(description="One per valid address, in input order.")
    invalid: list[Invalid]


class Refused(Reply):
    email: str
    reason: Reason
    scope: str


class Filtered(Reply):
    list_name: str = Field(alias="list")
    checked: int
    allowed: list[str]
    suppressed: list[Refused]
    invalid: list[Invalid]


class InvalidLine(Reply):
    line: int
    code: Literal["invalid_email", "line_too_long"] = Field(
        description="line_too_long: over 4096 bytes."
    )


class Imported(Reply):
    received: int
    added: int
    existing: int
    invalid: int
    invalid_lines: list[InvalidLine] = Field(max_length=MAX_INVALID_LINES)
    invalid_lines_truncated: bool | SkipJsonSchema[None] = None


class WebhookTaken(Reply):
    """What a webhook delivery did, committed before the answer."""

    received: int = Field(description="The provider's events in the delivery.")
    added: int = Field(description="Suppressions added (or renewed, or made permanent).")
    existing: int = Field(description="Suppressions asked for that were already in place.")
    duplicate: int = Field(description="Events already taken from an earlier delivery.")
    ignored: int = Field(description="Events that ask for no suppression (delivered, open, ...).")
    invalid: int = Field(description="Events whose recipient is no valid address.")


class AuditEvent(Reply):
    id: int
    at: datetime
    action: str
    digest: str | None
    kind: Kind | None
    list_name: str | None = Field(alias="list")
    reason: str | None
    source: str | None
    actor: str
    detail: dict[str, Any]
    prev_hash: Hex64
    hash: Hex64
    key_id: str | None | SkipJsonSchema[None] = Field(
        default=None, description="Lookup only: the pepper the event's digest is keyed with."
    )


class Digest(Reply):
    kind: Kind
    level: int | SkipJsonSchema[None] = Field(
        default=None, description="Domains: 0 the address's domain, 1 its parent, ..."
    )
    key_id: str
    digest: Hex64


class SubjectRequest(Reply):
    """A data-subject request in the register, with its clock (DESIGN §11)."""

    id: int
    kind: RequestKind
    reference: str
    channel: str | None
    note: str | None
    digest: Hex64 | None = Field(description="Keyed hash of the address (hex), if one was given.")
    key_id: str | None
    received_at: datetime
    registered_at: datetime
    due: date = Field(
        description="The day to answer by, in the compliance time zone: the day of receipt "
        "plus one calendar month (three once extended), or that month's last day."
    )
    first_due: date = Field(description="The original due day (one month from receipt).")
    status: Literal["open", "closed"]
    overdue: bool = Field(description="Open, and today (in the compliance zone) is after due.")
    identity_verified_at: datetime | None
    identity_method: str | None
    extended: bool
    extension_reason: str | None
    notified_at: datetime | None
    outcome: Outcome | None
    closing_note: str | None
    closed_at: datetime | None


class RegisteredRequest(SubjectRequest):
    suppression: Suppression | None = Field(
        description="The global suppression an objection or consent withdrawal with an "
        "address recorded (or found in place), in the same transaction."
    )


class SubjectRequests(Reply):
    requests: list[SubjectRequest]


class Lookup(Reply):
    email: str = Field(description="The address as sent.")
    scheme: str
    active_key_id: str
    digests: list[Digest]
    suppressions: list[Suppression]
    events: list[AuditEvent]
    requests: list[SubjectRequest] = Field(description="Data-subject requests about it.")


class AuditPage(Reply):
    events: list[AuditEvent]
    next_after: int


class Verification(Reply):
    ok: bool
    events: int = Field(description="Events verified before any break.")
    head: Hex64 = Field(description="Hash of the last verified event.")
    broken_at: int | None = None
    finding: str | None = None
    problem: str | SkipJsonSchema[None] = None


class JobRun(Reply):
    id: int
    job: JobName
    run_key: str = Field(
        description="Local date (nightly), local hour with offset (expire) or "
        "manual:<UTC time>:<nonce>."
    )
    status: Literal["running", "ok", "failed", "stale"]
    started_at: datetime
    finished_at: datetime | None
    lease_until: datetime | None
    summary: dict[str, Any] = Field(description="Counts per source and reason, reports, errors.")


class JobRuns(Reply):
    runs: list[JobRun]


class JobResult(Reply):
    run: JobRun


class ErrorDetail(Reply):
    code: ErrorCode
    message: str


class Error(Reply):
    error: ErrorDetail


class ReconcileHealth(Reply):
    last_success: datetime | None
    age_seconds: int | None
    stale: bool
    error: ErrorDetail | SkipJsonSchema[None] = None


class RequestsHealth(Reply):
    open: int
    due_this_week: int = Field(description="Open and due today or within six days.")
    overdue: int = Field(description="Open, and today (compliance zone) is after due.")
    next_due: date | None = Field(description="The earliest due day of an open request.")
    late: bool = Field(description="True when any request is overdue.")


class Health(Reply):
    model_config = ConfigDict(extra="forbid")
    status: Literal["ok"]
    reconcile: ReconcileHealth | Error
    requests: RequestsHealth | Error


class Ready(Reply):
    ready: bool
    schema_: str | SkipJsonSchema[None] = Field(default=None, alias="schema")
    error: ErrorDetail | SkipJsonSchema[None] = None


# --- binding ----------------------------------------------------------------------------------

M = TypeVar("M", bound=BaseModel)
# A bad value in these fields is no malformed request but an invalid one, with its own code
# (422), whether the field is missing, of another type or not one we know: the fields a
# model names in `coded`.
CODED: Mapping[str, Callable[[], Exception]] = {
    "list": lambda: InvalidList(suppressions.LIST_RULE),
    "reason": suppressions.unknown_reason,
}


def bind(model: type[M], data: Any, where: str = "field") -> M:
    """Validate input against a model; errors become the envelope's 400, 413 or 422."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise _refusal(exc, getattr(model, "coded", ()), where) from None


def _refusal(exc: ValidationError, coded: tuple[str, ...], where: str) -> Exception:
    errors = exc.errors(include_url=False, include_input=False)
    if len(errors) == 1 and not errors[0]["loc"] and errors[0]["type"] == "model_type":
        return InvalidRequest("the body must be a JSON object")
    # One problem per field (or list item): a union's branches (str | None) each report one.
    found: dict[tuple[Any, ...], Any] = {}
    for err in errors:
        loc = err["loc"]
        path = (loc[0], *(part for part in loc[1:] if isinstance(part, int))) if loc else ()
        if path not in found or found[path]["type"] == "none_required":
            found[path] = err
    malformed: list[str] = []
    invalid: list[Exception] = []
    for path, err in found.items():
        name = str(path[0]) if path else ""
        if err["type"] == "too_long" and path == ("emails",):
            limit = (err.get("ctx") or {}).get("max_length")
            return PayloadTooLarge(f"at most {limit:,} addresses per request; split the batch")
        if len(path) == 1 and name in coded:
            invalid.append(CODED[name]())
        elif not path:
            malformed.append(str(err["msg"]).removeprefix("Value error, "))
        else:
            spelled = name + "".join(f"[{index}]" for index in path[1:])
            malformed.append(f"{where} {spelled!r}: {_message(err)}")
    if malformed:
        return InvalidRequest("; ".join(malformed))
    return invalid[0]


def _message(err: Any) -> str:
    if err["type"] == "missing":
        return "is required"
    text = str(err["msg"]).removeprefix("Value error, ")
    return text[:1].lower() + text[1:]


# --- operations -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """One documented answer of an operation."""

    description: str
    model: type[BaseModel] | None = None  # application/json
    media: Mapping[str, Any] = field(default_factory=dict)  # other types: type -> schema


@dataclass(frozen=True)
class Operation:
    """What a route takes and answers: the single source of binding and documentation."""

    summary: str
    answers: Mapping[int, Answer]
    role: Role | None = None
    query: type[BaseModel] | None = None
    body: type[BaseModel] | None = None  # a JSON object
    texts: Mapping[str, str] = field(default_factory=dict)  # streamed text bodies
    form: type[BaseModel] | None = None  # url-encoded or multipart form fields
    payload: Mapping[str, Any] = field(default_factory=dict)  # media -> schema, bound by hand
    path: Mapping[str, Any] = field(default_factory=dict)  # path parameter -> schema
    idempotent: bool = False  # honours Idempotency-Key
    errors: tuple[int, ...] = ()  # statuses beyond those derived below
    html: bool = False  # errors are pages, not the JSON envelope
    limited: bool = True  # subject to a rate limit (429)
    database: bool = True  # may answer 503 when the database cannot
    description: str = ""

    ERROR_TEXT: ClassVar[dict[int, str]] = {
        400: "Malformed request",
        401: "Missing or unknown API key",
        403: "Role too low",
        404: "Nothing matched",
        409: "Conflicts with the current state: a job still running elsewhere, a request "
        "already closed or already extended",
        413: "Body too large, or more items than the route allows",
        415: "A body type the route does not take",
        422: "Invalid input (an address, list or reason), or an Idempotency-Key reused "
        "with another body",
        414: "Request line over 4094 bytes: the server refuses it (an HTML page) before the "
        "service sees it",
        429: "Rate limited; see Retry-After",
        503: "Database unavailable, rows under a pepper this instance lacks "
        "(pepper_missing), or secrets that differ from the other instances' "
        "(secrets_mismatch): nothing was decided",
    }

    def statuses(self) -> list[int]:
        """Every error status this operation can answer, derived from what it takes."""
        found = set(self.errors) | {SERVER_REFUSAL}
        takes_input = bool(
            self.query or self.body or self.texts or self.form or self.path or self.payload
        )
        if takes_input or self.role or self.idempotent:
            found.add(400)
        if self.role is not None:
            found |= {401, 403, 503}
        if self.body or self.texts or self.form or self.payload:
            found.add(413)
        if self.texts:
            found.add(415)
        if (self.body or self.query or self.idempotent) and not self.html:
            found.add(422)
        if self.limited:
            found.add(429)
        if self.database:
            found.add(503)
        return sorted(found - set(self.answers))


def operation(op: Operation) -> Callable[[F], F]:
    """Attach an operation to a view (for routes bound by hand: pages, probes)."""

    def wrap(view: F) -> F:
        setattr(view, OPERATION, op)
        return view

    return wrap


# Endpoints of the console (suppress.console): HTML for people, outside the API document.
CONSOLE = "console."


def operation_of(view: Any) -> Operation | None:
    return getattr(view, OPERATION, None)


# --- the document -----------------------------------------------------------------------------


def _path(rule: str) -> str:
    return re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule)


def _operations(app: Flask) -> list[tuple[str, str, Operation]]:
    found = []
    for rule in app.url_map.iter_rules():
        # The console's pages are for people in a browser, not part of the API contract.
        if rule.endpoint == "static" or rule.endpoint.startswith(CONSOLE):
            continue
        op = operation_of(app.view_functions[rule.endpoint])
        if op is None:
            raise RuntimeError(f"route {rule.rule} declares no Operation")
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            found.append((_path(rule.rule), method.lower(), op))
    return found


def _parameters(model: type[BaseModel], defs: dict[str, Any], where: str) -> list[Any]:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    defs.update(schema.pop("$defs", {}))
    required = set(schema.get("required", ()))
    params = []
    for name, prop in schema["properties"].items():
        text = prop.pop("description", None)
        prop.pop("title", None)
        param: dict[str, Any] = {"name": name, "in": where, "required": name in required}
        if text:
            param["description"] = text
        param["schema"] = prop
        params.append(param)
    return params


def _json(schema: Any) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def document(app: Flask, base_url: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document of everything the app serves."""
    ops = _operations(app)
    models: set[tuple[type[BaseModel], Literal["validation", "serialization"]]] = {
        (Error, "serialization")
    }
    for _where, _method, op in ops:
        for model in (op.body, op.form):
            if model is not None:
                models.add((model, "validation"))
        for answer in op.answers.values():
            if answer.model is not None:
                models.add((answer.model, "serialization"))
    ordered = sorted(models, key=lambda item: (item[0].__name__, item[1]))
    refs, top = models_json_schema(ordered, ref_template="#/components/schemas/{model}")
    schemas: dict[str, Any] = dict(top.get("$defs", {}))
    paths: dict[str, Any] = {}
    for path, method, op in ops:
        paths.setdefault(path, {})[method] = _render(op, refs, schemas)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "suppress",
            "version": "1",
            "description": "Suppression list and mailing gatekeeper. Addresses are stored "
            "only as keyed hashes; every check fails closed.",
        },
        "servers": [{"url": base_url}],
        "security": [{"bearer": []}],
        "paths": _tidy(paths),
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": _tidy(dict(sorted(schemas.items()))),
        },
    }


def _tidy(node: Any) -> Any:
    """Drop generated titles and `default: null` (absent is how None is sent)."""
    if isinstance(node, dict):
        return {
            key: _tidy(value)
            for key, value in node.items()
            if not (key == "title" and isinstance(value, str))
            and not (key == "default" and value is None)
        }
    if isinstance(node, list):
        return [_tidy(item) for item in node]
    return node


def _render(op: Operation, refs: Mapping[Any, Any], schemas: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"summary": op.summary}
    description = op.description
    if op.role is None:
        out["security"] = []
    else:
        description = f"Role: {op.role.value} or higher. {description}".strip()
    if description:
        out["description"] = description
    params: list[Any] = [
        {"name": name, "in": "path", "required": True, "schema": schema}
        for name, schema in op.path.items()
    ]
    if op.query is not None:
        params += _parameters(op.query, schemas, "query")
    if op.idempotent:
        params.append(
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "schema": {"type": "string", "minLength": 1, "maxLength": IDEMPOTENCY_KEY_MAX},
                "description": "A retry with the same key replays the first response; "
                "another body is 422.",
            }
        )
    if params:
        out["parameters"] = params
    content: dict[str, Any] = {}
    if op.body is not None:
        content.update(_json(refs[(op.body, "validation")]))
    for kind, text in op.texts.items():
        # Any text is a body (a line that is no address counts as invalid), so the schema
        # constrains nothing.
        content[kind] = {"schema": {"description": text}}
    for kind, schema in op.payload.items():
        content[kind] = {"schema": schema}
    if op.form is not None:
        for kind in FORM_TYPES:
            content[kind] = {"schema": refs[(op.form, "validation")]}
    if content:
        out["requestBody"] = {"required": True, "content": content}
    responses: dict[str, Any] = {}
    for status, answer in sorted(op.answers.items()):
        reply: dict[str, Any] = {"description": answer.description}
        media = dict(answer.media)
        if answer.model is not None:
            media.update(_json(refs[(answer.model, "serialization")]))
        if media:
            reply["content"] = media
        responses[str(status)] = reply
    error = refs[(Error, "serialization")]
    for status in op.statuses():
        text = Operation.ERROR_TEXT.get(status, "Refused")
        if op.html or status == SERVER_REFUSAL:
            responses[str(status)] = {"description": text, "content": {"text/html": {}}}
        else:
            responses[str(status)] = {"description": text, "content": _json(error)}
    out["responses"] = responses
    return out


# --- keeping answers to the document ----------------------------------------------------------


def check_answer(app: Flask, response: Any) -> None:
    """Refuse (AssertionError) an answer its operation does not document, or a body of
    another shape. Run on every response while the app is under test, so every test of the
    API is also a test of the document."""
    from flask import request

    rule = request.url_rule
    op = None if rule is None else operation_of(app.view_functions[rule.endpoint])
    if op is None:
        return  # no route matched: 404 or 405 from routing
    status = response.status_code
    where = f"{request.method} {rule.rule if rule else request.path} answered {status}"
    answer = op.answers.get(status)
    if answer is None and status not in op.statuses():
        raise AssertionError(f"{where}, which the API document does not list")
    if response.is_streamed or response.mimetype != "application/json":
        return
    model = Error if answer is None else answer.model
    if model is not None:
        try:
            model.model_validate_json(response.get_data())
        except ValidationError as exc:
            raise AssertionError(
                f"{where} in a shape the API document does not give: {exc}"
            ) from None


def init_app(app: Flask) -> None:
    """Under test (app.testing), check every answer against the document."""

    @app.after_request
    def keep_to_the_document(response: Any) -> Any:
        if app.testing:
            check_answer(app, response)
        return response
