"""The /v1 JSON API: bind input, call the domain once, render."""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import date, datetime
from typing import IO, Any, TypeVar
from zoneinfo import ZoneInfo

from flask import Blueprint, Response, current_app, g, jsonify, request
from pydantic import BaseModel

from . import (
    access,
    addresses,
    apikeys,
    audit,
    bulk,
    clock,
    contract,
    idempotency,
    jobs,
    jsontext,
    metrics,
    peppers,
    rights,
    suppressions,
    tokens,
)
from . import contract as c
from .addresses import Target
from .apikeys import Principal
from .contract import Answer, Operation
from .errors import ErrorCode, InvalidRequest, PayloadTooLarge, SuppressError, Unprocessable
from .models import RequestKind, Role
from .runtime import Runtime
from .suppressions import Verdict

bp = Blueprint("api", __name__, url_prefix="/v1")
log = logging.getLogger("suppress.api")
F = TypeVar("F", bound=Callable[..., Any])
MAX_LINKS = contract.MAX_LINKS
# Big enough for MAX_LINKS addresses of the longest input n1 accepts, quoted and separated.
MAX_LINKS_BYTES = MAX_LINKS * (addresses.MAX_INPUT + 8) + 64 * 1024

MAX_FILTER_EMAILS = contract.MAX_FILTER_EMAILS
# The JSON filter's body cap follows from its address limit (every address at the longest
# input n1 accepts, plus JSON punctuation), instead of the 1 MiB cap of the other routes.
MAX_FILTER_JSON_BYTES = MAX_FILTER_EMAILS * (addresses.MAX_INPUT + 8) + 65_536
# Streamed bodies have no size limit: they are read a chunk at a time.
UNLIMITED = sys.maxsize
# Allowed lines (filter) and idempotent import bodies stay in memory up to this size, then
# spill to a temporary file.
SPOOL_BYTES = 8 << 20
# Where a request keeps the outcome of authenticating its token (see caller()).
CALLER = "suppress.api_caller"


def runtime() -> Runtime:
    """The process's Runtime, wired by create_app."""
    return current_app.extensions["suppress"]  # type: ignore[no-any-return]


def bearer_token() -> str | None:
    """The token of an `Authorization: Bearer` header, None without one."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if header and scheme.lower() != "bearer":
        return None
    return token.strip() or None


def caller() -> Principal:
    """The API key this request's token authenticates, or Unauthorized (or Unavailable).

    Looked up once per request and remembered: the rate limiter asks first, to choose the
    budget, and requires() reuses the answer, so a request costs one database round trip.
    """
    # Kept with the request, not on g: g outlives a request when an app context was pushed
    # around it (tests, CLI), and another request's key must never be taken for this one's.
    found = request.environ.get(CALLER)
    if found is None:
        rt = runtime()
        token = bearer_token()
        token_hash = apikeys.hash_token(token) if token else ""
        moment = time.monotonic()
        found = rt.keys.get(token_hash, moment) if token else None
        if found is None:
            try:
                with rt.db.read() as conn:
                    found = apikeys.authenticate(conn, token)
                rt.keys.put(token_hash, found, moment)
            except SuppressError as exc:
                found = exc
        request.environ[CALLER] = found
    if isinstance(found, SuppressError):
        raise found
    return found  # type: ignore[no-any-return]


def rate_limit_key() -> str | None:
    """The rate-limit budget of this request's API key; None when the token does not
    authenticate (missing, unknown, revoked or malformed), which then counts against the
    client address: a stream of made-up tokens must not open fresh budgets."""
    try:
        caller()
    except SuppressError:
        return None
    # By the token's hash rather than the key's id: ids repeat across databases, and one
    # Redis may count for several deployments.
    return apikeys.hash_token(bearer_token() or "")[:32]


def authorize(role: Role) -> Principal:
    """Authenticate the bearer token and demand a role; sets g.principal."""
    rt = runtime()
    principal = caller()
    principal.require(role)
    # Fail closed while this process's secrets disagree with the recorded ones.
    rt.secrets_still_agree(time.monotonic())
    now = clock.utcnow()
    if principal.needs_touch(now):
        try:
            with rt.db.begin() as session:
                apikeys.touch(session, principal)
            principal = dataclasses.replace(principal, last_used_at=now)
            rt.keys.touched(apikeys.hash_token(bearer_token() or ""), principal)
        except SuppressError as exc:  # bookkeeping only: never fail a check over it
            log.warning("could not record API key use: %s", exc.message)
    g.principal = principal
    return principal


# --- binding ------------------------------------------------------------------------------


def json_body() -> Any:
    """The request's JSON value, or InvalidRequest (not JSON, too deeply nested)."""
    if not request.is_json:
        raise InvalidRequest("send a JSON body with Content-Type: application/json")
    return parse_json(body_bytes())


def body_bytes() -> bytes:
    """The raw body, refused past request.max_content_length (413), chunked or not."""
    limit = request.max_content_length
    chunked = request.content_length is None and limit is not None
    if chunked:
        # A chunked body (no Content-Length) is cut at the cap, not refused: read one byte
        # past it to tell a body of exactly the cap from a longer one.
        request.max_content_length = limit + 1  # type: ignore[operator]
    text = request.get_data()
    if chunked and len(text) > limit:  # type: ignore[operator]
        raise PayloadTooLarge(f"the body exceeds {limit:,} bytes")
    return text


def parse_json(text: bytes) -> Any:
    """A JSON value, or InvalidRequest (not JSON, too deeply nested)."""
    try:
        return jsontext.loads(text)
    except jsontext.TooDeep:
        raise InvalidRequest(
            f"the JSON body nests deeper than {jsontext.MAX_DEPTH} levels"
        ) from None
    except ValueError:
        raise InvalidRequest("the body is not valid JSON") from None


def parse_time(value: Any, name: str) -> datetime | None:
    """An optional ISO 8601 timestamp, converted to naive UTC."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidRequest(f"{name} must be an ISO 8601 timestamp string")
    if not value.isprintable():
        raise Unprocessable(f"{name} is not an ISO 8601 timestamp", code=ErrorCode.invalid_request)
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise Unprocessable(
            f"{name} is not an ISO 8601 timestamp", code=ErrorCode.invalid_request
        ) from None
    if parsed.tzinfo is None:
        raise Unprocessable(
            f"{name} must include a time zone (e.g. Z)", code=ErrorCode.invalid_request
        )
    try:
        return clock.naive_utc(parsed)
    except OverflowError:  # e.g. 9999-12-31T23:59:59-12:00 is past the last UTC date
        raise Unprocessable(
            f"{name} lies outside the years 1 to 9999 in UTC", code=ErrorCode.invalid_request
        ) from None


def parse_moment(value: str, name: str) -> datetime:
    """A required ISO 8601 timestamp (the model requires the field), as naive UTC."""
    moment = parse_time(value, name)
    assert moment is not None
    return moment


def verdict_json(email: str, list_name: str, verdict: Verdict) -> dict[str, Any]:
    """The /v1/check answer."""
    return {
        "email": email,
        "list": list_name,
        "allowed": verdict.allowed,
        "suppressions": [hit.to_dict() for hit in verdict.hits],
    }


def idempotent(produce: Callable[[Any], tuple[dict[str, Any], int]]) -> Response:
    """Run a write under the request's Idempotency-Key, replaying a stored answer on retry."""
    rt = runtime()
    key = request.headers.get("Idempotency-Key")
    principal = g.principal
    with rt.db.begin() as session:
        if key is not None:
            keys = idempotency.stored_keys(rt.ring, idempotency.validate_key(key))
            req_hashes = idempotency.fingerprints(
                rt.ring, request.method, request.full_path, request.get_data()
            )
            stored = idempotency.replay(session, principal.id, keys, req_hashes)
            if stored is not None:
                status, text = stored
                return Response(
                    text,
                    status=status,
                    mimetype="application/json",
                    headers={"Idempotent-Replayed": "true"},
                )
        body, status = produce(session)
        text = json.dumps(body, separators=(",", ":"))
        if key is not None:
            idempotency.store(session, principal.id, keys[0], req_hashes[0], status, text)
    return Response(text, status=status, mimetype="application/json")


def text_body_mode() -> bool:
    """True for a text/csv body (first column), False for text/plain; 415 for anything else."""
    if request.mimetype not in contract.TEXT_TYPES:
        raise SuppressError(
            "send the addresses as text/plain or text/csv, one per line",
            code=ErrorCode.unsupported_media_type,
            status=415,
        )
    request.max_content_length = UNLIMITED
    return request.mimetype == "text/csv"


def replay_spool(spool: IO[bytes], trailer: bytes) -> Iterator[bytes]:
    """Send a spooled answer, then its trailer; a read error ends it without the trailer."""
    try:
        spool.seek(0)
        while chunk := spool.read(bulk.READ_CHUNK):
            yield chunk
        yield trailer
    finally:
        spool.close()


def count_verdicts(allowed: int, suppressed: int) -> None:
    """Bulk filter answers in the metrics."""
    if allowed:
        metrics.verdict(True, bulk=allowed)
    if suppressed:
        metrics.verdict(False, bulk=suppressed)


def stream_filter(list_name: str, csv_mode: bool) -> Response:
    """The streamed filter: read and check the whole body, then answer (DESIGN §5)."""
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)
    try:
        totals = bulk.filter_lines(
            runtime().db.begin,
            runtime().ring,
            bulk.iter_lines(request.stream),
            list_name,
            spool,
            csv_mode=csv_mode,
            actor=g.principal.actor,
        )
    except BaseException:
        spool.close()
        raise
    count_verdicts(totals.allowed, totals.suppressed)
    trailer = (totals.trailer() + "\n").encode()
    # A known length lets every client detect a cut-off answer, even before the trailer.
    length = spool.tell() + len(trailer)
    return Response(
        replay_spool(spool, trailer),
        mimetype="text/plain",
        headers={"Content-Length": str(length)},
    )


def idempotent_stream(produce: Callable[[IO[bytes] | Any], dict[str, Any]]) -> Response:
    """Run a streamed write under an optional Idempotency-Key (the body is hashed on the way).

    With a key the body is spooled while hashed, so a replay or a reused key is answered
    before anything changes; without one it is processed straight from the request.
    """
    rt = runtime()
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return jsonify(produce(request.stream))
    keys = idempotency.stored_keys(rt.ring, idempotency.validate_key(key))
    principal = g.principal
    hasher = idempotency.Fingerprinter(rt.ring, request.method, request.full_path)
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as spool:
        while chunk := request.stream.read(bulk.READ_CHUNK):
            hasher.update(chunk)
            spool.write(chunk)
        req_hashes = hasher.hexdigests()
        with rt.db.begin() as session:
            stored = idempotency.replay(session, principal.id, keys, req_hashes)
        if stored is None:
            spool.seek(0)
            text = json.dumps(produce(spool), separators=(",", ":"))
            with rt.db.begin() as session:
                # A concurrent retry with the same key may have finished first: its answer wins.
                stored = idempotency.replay(session, principal.id, keys, req_hashes)
                if stored is None:
                    idempotency.store(session, principal.id, keys[0], req_hashes[0], 200, text)
                    return Response(text, status=200, mimetype="application/json")
    status, text = stored
    return Response(
        text, status=status, mimetype="application/json", headers={"Idempotent-Replayed": "true"}
    )


def link_headers(url: str) -> dict[str, str]:
    """RFC 2369 List-Unsubscribe, and RFC 8058 one-click when the base URL allows it."""
    headers = {"List-Unsubscribe": f"<{url}>"}
    # RFC 8058 §3.1: one-click needs an HTTPS URI (plain http only on loopback, for tests).
    if runtime().config.one_click:
        headers["List-Unsubscribe-Post"] = contract.ONE_CLICK
    return headers


# --- routes ---------------------------------------------------------------------------------


def endpoint(method: str, rule: str, op: Operation) -> Callable[[F], F]:
    """Register a /v1 route with its Operation: authenticate, bind query and body, call.

    The view receives `query` and `body` as the Operation's models (body None for a text
    body); the API document is generated from the same Operation.
    """

    def wrap(view: F) -> F:
        @functools.wraps(view)
        def inner(**kwargs: Any) -> Any:
            if op.role is not None:
                authorize(op.role)
            if op.query is not None:
                kwargs["query"] = contract.bind(op.query, single_args(op.query), "parameter")
            if op.body is not None:
                kwargs["body"] = None
                if request.is_json or not op.texts:
                    limit = BODY_LIMITS.get(rule)
                    if limit is not None:
                        request.max_content_length = limit(runtime())
                    kwargs["body"] = contract.bind(op.body, json_body())
            return view(**kwargs)

        contract.operation(op)(inner)
        bp.add_url_rule(rule, view_func=inner, methods=[method])
        return inner  # type: ignore[return-value]

    return wrap


def single_args(model: type[BaseModel]) -> dict[str, str]:
    """The query's parameters, each given once: `?list=a&list=b` is refused, not read as
    one of them (which one a proxy or a client library would have meant is anyone's guess).
    Only the model's own names are echoed in the message."""
    args = request.args
    for name in args:
        if len(args.getlist(name)) > 1:
            known = {f.alias or n for n, f in model.model_fields.items()} | set(model.model_fields)
            what = f"{name!r}" if name in known else "a parameter"
            raise InvalidRequest(f"the query gives {what} more than once")
    return args.to_dict()


# Routes that take bigger JSON batches by contract size their own body cap.
BODY_LIMITS: dict[str, Callable[[Runtime], int]] = {
    "/filter": lambda _rt: MAX_FILTER_JSON_BYTES,
    "/unsubscribe-links": lambda rt: max(rt.config.max_json_bytes, MAX_LINKS_BYTES),
}


@endpoint(
    "GET",
    "/openapi.json",
    Operation(
        "This document",
        {200: Answer("OpenAPI 3.1", media={"application/json": {"schema": {"type": "object"}}})},
        database=False,
    ),
)
def openapi() -> Any:
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    doc = app.extensions.get("suppress.openapi")
    if doc is None:  # generated once per process, from the route table and the models
        doc = app.extensions["suppress.openapi"] = contract.document(app, runtime().config.base_url)
    return jsonify(doc)


@endpoint(
    "POST",
    "/check",
    Operation(
        "May direct marketing on this list go to this address?",
        {200: Answer("The verdict", c.Verdict)},
        role=Role.mailer,
        body=c.CheckRequest,
    ),
)
def check(body: c.CheckRequest) -> Any:
    rt = runtime()
    target = addresses.address_target(rt.ring, body.email)
    verdict = suppressions.check_one(
        rt.db.query, not rt.db.is_sqlite, target, body.list_name, now=clock.utcnow()
    )
    metrics.verdict(verdict.allowed)
    peppers.rekey_found(rt.db.begin, rt.ring, verdict.stale, actor=g.principal.actor)
    return jsonify(verdict_json(body.email, body.list_name, verdict))


def target_of(body: c.Target) -> Target:
    ring = runtime().ring
    if body.email is not None:
        return addresses.address_target(ring, body.email)
    return addresses.domain_target(ring, body.domain or "")


@endpoint(
    "POST",
    "/suppressions",
    Operation(
        "Suppress an address or a domain on a list (idempotent)",
        {201: Answer("Created", c.Added), 200: Answer("Already suppressed", c.Added)},
        role=Role.recorder,
        body=c.AddRequest,
        idempotent=True,
    ),
)
def add_suppression(body: c.AddRequest) -> Any:
    target = target_of(body)
    expires_at = parse_time(body.expires_at, "expires_at")

    def produce(session: Any) -> tuple[dict[str, Any], int]:
        row, created = suppressions.add(
            session,
            target,
            body.list_name,
            body.reason,
            source=body.source,
            actor=g.principal.actor,
            now=clock.utcnow(),
            expires_at=expires_at,
        )
        return {
            "created": created,
            "suppression": suppressions.describe(row),
        }, 201 if created else 200

    return idempotent(produce)


@endpoint(
    "DELETE",
    "/suppressions",
    Operation(
        "Lift a suppression, with a reason and evidence of new consent",
        {200: Answer("Removed", c.Removed)},
        role=Role.admin,
        body=c.RemoveRequest,
        errors=(404,),
    ),
)
def remove_suppression(body: c.RemoveRequest) -> Any:
    target = target_of(body)
    with runtime().db.begin() as session:
        removed = suppressions.remove(
            session,
            target,
            body.list_name,
            reason=body.reason,
            evidence=body.evidence,
            actor=g.principal.actor,
        )
    return jsonify({"removed": removed})


@endpoint(
    "POST",
    "/filter",
    Operation(
        "Filter recipients: JSON (at most 100,000) or a streamed text body",
        {
            200: Answer(
                "JSON: the verdicts. Text: the allowed input lines as given, in input order, "
                "then the last line '# checked=N allowed=A suppressed=S invalid=I'. An answer "
                "without that trailer is incomplete: treat every recipient as suppressed.",
                c.Filtered,
                media={"text/plain": {"schema": {"type": "string"}}},
            )
        },
        role=Role.mailer,
        query=c.FilterQuery,
        body=c.FilterRequest,
        texts={
            "text/plain": "One address per line; no size limit. A line over 4096 bytes "
            "counts as one invalid line.",
            "text/csv": "The address in the first column.",
        },
    ),
)
def filter_recipients(query: c.FilterQuery, body: c.FilterRequest | None) -> Any:
    if body is None:
        csv_mode = text_body_mode()
        return stream_filter(suppressions.validate_list(query.list_name), csv_mode)
    if query.list_name is not None and query.list_name != body.list_name:
        # Never answer for one list while the caller may believe it asked about another.
        raise InvalidRequest("the list in the query and in the body differ")
    result = bulk.filter_emails(
        runtime().db.begin,
        runtime().ring,
        list(body.emails),
        body.list_name,
        actor=g.principal.actor,
    )
    count_verdicts(len(result["allowed"]), len(result["suppressed"]))
    return jsonify(result)


@endpoint(
    "POST",
    "/imports",
    Operation(
        "Import a list of opt-outs (streamed; idempotent; never removes)",
        {200: Answer("Counts; invalid lines by number (no text)", c.Imported)},
        role=Role.recorder,
        query=c.ImportQuery,
        texts={"text/csv": "First column.", "text/plain": "One address per line."},
        idempotent=True,
    ),
)
def import_suppressions(query: c.ImportQuery) -> Any:
    csv_mode = text_body_mode()

    def produce(stream: IO[bytes]) -> dict[str, Any]:
        return bulk.import_lines(
            runtime().db.begin,
            runtime().ring,
            bulk.iter_lines(stream),
            query.list_name,
            query.reason,
            source=query.source,
            actor=g.principal.actor,
            csv_mode=csv_mode,
        ).to_dict()

    return idempotent_stream(produce)


@endpoint(
    "POST",
    "/unsubscribe-links",
    Operation(
        "Unsubscribe links and RFC 8058 headers for a batch of recipients of one list",
        {200: Answer("One link per valid address, in input order", c.Links)},
        role=Role.mailer,
        body=c.LinksRequest,
    ),
)
def unsubscribe_links(body: c.LinksRequest) -> Any:
    rt = runtime()
    principal = g.principal
    links, invalid = tokens.unsubscribe_links(
        rt.signer,
        rt.ring,
        rt.config.base_url,
        body.list_name,
        list(body.emails),
        minted_by=principal.id,
    )
    # A link is a capability to act as its recipient: none leaves before the mint is audited.
    with rt.db.begin() as session:
        suppressions.record_links(
            session,
            body.list_name,
            minted=len(links),
            invalid=len(invalid),
            api_key=principal.id,
            actor=principal.actor,
        )
    return jsonify(
        {
            "links": [
                {"email": link.email, "url": link.url, "headers": link_headers(link.url)}
                for link in links
            ],
            "invalid": [{"email": email, "code": code} for email, code in invalid],
        }
    )


@endpoint(
    "POST",
    "/lookup",
    Operation(
        "Everything kept about an address, for access and portability requests "
        "(the lookup itself is recorded in the audit trail)",
        {200: Answer("Digests, rows, events", c.Lookup)},
        role=Role.admin,
        body=c.LookupRequest,
    ),
)
def lookup(body: c.LookupRequest) -> Any:
    target = addresses.address_target(runtime().ring, body.email)
    with runtime().db.begin() as session:
        found = access.lookup(
            session,
            target,
            actor=g.principal.actor,
            zone=runtime().config.settings.compliance.zone,
            reference=body.reference or None,
        )
    return jsonify({"email": body.email, **found})


@endpoint(
    "GET",
    "/export",
    Operation(
        "Every suppression, streamed: one JSON object per line (or CSV)",
        {
            200: Answer(
                "One Suppression per line, digests in hex. A stream cut by a failure ends "
                "without its terminating chunk.",
                media={
                    "application/x-ndjson": {
                        "schema": {"$ref": "#/components/schemas/Suppression"}
                    },
                    "text/csv": {"schema": {"type": "string"}},
                },
            )
        },
        role=Role.admin,
        query=c.ExportQuery,
    ),
)
def export(query: c.ExportQuery) -> Any:
    fmt = query.format
    rt = runtime()
    with rt.db.begin() as session:
        access.record_export(session, fmt, actor=g.principal.actor)

    def stream() -> Iterator[str]:
        # A database failure mid-stream aborts the response (no terminating chunk), so a
        # truncated export can never pass for a complete one.
        with rt.db.begin(write=False) as session:
            yield from access.render(access.rows(session), fmt)

    mimetype = "text/csv" if fmt == "csv" else "application/x-ndjson"
    return Response(stream(), mimetype=mimetype)


@endpoint(
    "GET",
    "/audit",
    Operation(
        "Audit events in chain order, a page at a time",
        {200: Answer("A page of events", c.AuditPage)},
        role=Role.admin,
        query=c.AuditQuery,
    ),
)
def audit_events(query: c.AuditQuery) -> Any:
    with runtime().db.begin(write=False) as session:
        events = [
            audit.describe(e)
            for e in audit.page(session, after=query.after, limit=query.limit, action=query.action)
        ]
    return jsonify({"events": events, "next_after": events[-1]["id"] if events else query.after})


@endpoint(
    "GET",
    "/audit/verify",
    Operation(
        "Walk the audit hash chain and name the first edited, missing or moved event",
        {200: Answer("The verdict", c.Verification)},
        role=Role.admin,
        query=c.VerifyQuery,
    ),
)
def audit_verify(query: c.VerifyQuery) -> Any:
    anchor = None if query.anchor is None else audit.parse_hash(query.anchor)
    with runtime().db.begin(write=False) as session:
        result = audit.verify(session, anchor=anchor)
    return jsonify(result.to_dict())


@endpoint(
    "GET",
    "/jobs",
    Operation(
        "Job runs, newest first, with their summaries",
        {200: Answer("Runs", c.JobRuns)},
        role=Role.admin,
        query=c.JobsQuery,
    ),
)
def list_jobs(query: c.JobsQuery) -> Any:
    with runtime().db.begin(write=False) as session:
        runs = jobs.list_runs(session, job=query.job, limit=query.limit)
    return jsonify({"runs": runs})


@endpoint(
    "POST",
    "/jobs/<name>/run",
    Operation(
        "Run a job now under a run key of its own (waits for a running one)",
        {200: Answer("The finished run (status ok or failed)", c.JobResult)},
        role=Role.admin,
        path={"name": {"type": "string", "enum": list(jobs.NAMES)}},
        errors=(404, 409),
    ),
)
def run_job(name: str) -> Any:
    outcome = jobs.run_manual(runtime(), name, requested_by=g.principal.actor)
    return jsonify({"run": outcome.run})


# --- data-subject requests (DESIGN §11) -------------------------------------------------------

REQUEST_ID = {"request_id": {"type": "integer", "minimum": 1}}


def compliance_today() -> tuple[ZoneInfo, datetime, date]:
    """The compliance time zone, now (naive UTC) and today in that zone."""
    zone = runtime().config.settings.compliance.zone
    now = clock.utcnow()
    return zone, now, rights.today(zone, now)


def change_request(act: Callable[[Any, ZoneInfo, datetime], Any]) -> Any:
    """Run one change of a request in a write transaction and answer the request as it is
    now; `act` gets the session, the compliance zone and now."""
    zone, now, today = compliance_today()
    with runtime().db.begin() as session:
        found = rights.describe(act(session, zone, now), today)
    return jsonify(found)


@endpoint(
    "POST",
    "/requests",
    Operation(
        "Register a data-subject request: due one calendar month from the day of receipt",
        {201: Answer("Registered; its clock runs from the day of receipt", c.RegisteredRequest)},
        role=Role.admin,
        body=c.RequestRegistration,
        idempotent=True,
    ),
)
def register_request(body: c.RequestRegistration) -> Any:
    rt = runtime()
    received_at = parse_moment(body.received_at, "received_at")
    target = None if body.email is None else addresses.address_target(rt.ring, body.email)
    zone, now, today = compliance_today()

    def produce(session: Any) -> tuple[dict[str, Any], int]:
        row, suppression = rights.register(
            session,
            RequestKind(body.kind),
            received_at=received_at,
            reference=body.reference,
            target=target,
            channel=body.channel,
            note=body.note,
            zone=zone,
            now=now,
            actor=g.principal.actor,
        )
        return {
            **rights.describe(row, today),
            "suppression": None if suppression is None else suppressions.describe(suppression),
        }, 201

    return idempotent(produce)


@endpoint(
    "GET",
    "/requests",
    Operation(
        "The register of data-subject requests, by status",
        {200: Answer("Requests", c.SubjectRequests)},
        role=Role.admin,
        query=c.RequestsQuery,
    ),
)
def list_requests(query: c.RequestsQuery) -> Any:
    _zone, _now, today = compliance_today()
    with runtime().db.begin(write=False) as session:
        found = rights.describe_all(rights.listing(session, query.status, today), today)
    return jsonify({"requests": found})


@endpoint(
    "GET",
    "/requests/<int:request_id>",
    Operation(
        "One data-subject request",
        {200: Answer("The request", c.SubjectRequest)},
        role=Role.admin,
        path=REQUEST_ID,
        errors=(404,),
    ),
)
def show_request(request_id: int) -> Any:
    _zone, _now, today = compliance_today()
    with runtime().db.begin(write=False) as session:
        found = rights.describe(rights.get(session, request_id), today)
    return jsonify(found)


@endpoint(
    "POST",
    "/requests/<int:request_id>/verify-identity",
    Operation(
        "Record how and when the requester's identity was verified",
        {200: Answer("The request", c.SubjectRequest)},
        role=Role.admin,
        path=REQUEST_ID,
        body=c.IdentityVerification,
        errors=(404, 409),
    ),
)
def verify_request_identity(request_id: int, body: c.IdentityVerification) -> Any:
    verified_at = parse_time(body.verified_at, "verified_at")
    return change_request(
        lambda session, zone, now: rights.verify_identity(
            session,
            request_id,
            method=body.method,
            verified_at=verified_at or now,
            zone=zone,
            now=now,
            actor=g.principal.actor,
        )
    )


@endpoint(
    "POST",
    "/requests/<int:request_id>/extend",
    Operation(
        "Extend the deadline to three months from receipt, once; the reader must have been "
        "told within the first month",
        {200: Answer("The request with its new due day", c.SubjectRequest)},
        role=Role.admin,
        path=REQUEST_ID,
        body=c.Extension,
        errors=(404, 409),
        description="409 already_extended or request_closed; 422 notice_too_late when "
        "notified_at falls on a day after the original due day.",
    ),
)
def extend_request(request_id: int, body: c.Extension) -> Any:
    notified_at = parse_moment(body.notified_at, "notified_at")
    return change_request(
        lambda session, zone, now: rights.extend(
            session,
            request_id,
            reason=body.reason,
            notified_at=notified_at,
            zone=zone,
            now=now,
            actor=g.principal.actor,
        )
    )


@endpoint(
    "POST",
    "/requests/<int:request_id>/close",
    Operation(
        "Close a request with its outcome (a suppression it made stays)",
        {200: Answer("The closed request", c.SubjectRequest)},
        role=Role.admin,
        path=REQUEST_ID,
        body=c.Closing,
        errors=(404, 409),
    ),
)
def close_request(request_id: int, body: c.Closing) -> Any:
    return change_request(
        lambda session, _zone, now: rights.close(
            session,
            request_id,
            outcome=body.outcome,
            note=body.note,
            now=now,
            actor=g.principal.actor,
        )
    )
