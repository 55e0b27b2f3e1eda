"""The /v1 JSON API: bind input, call the domain once, render."""

from __future__ import annotations

import functools
import json
import logging
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import IO, Any, TypeVar

from flask import Blueprint, Response, current_app, g, jsonify, request

from . import (
    access,
    addresses,
    apikeys,
    audit,
    bulk,
    idempotency,
    jsontext,
    metrics,
    scheduler,
    suppressions,
    tokens,
)
from .addresses import Target
from .apikeys import Principal
from .errors import InvalidRequest, PayloadTooLarge, SuppressError, Unprocessable
from .models import Role
from .openapi import spec
from .runtime import Runtime
from .suppressions import Verdict

bp = Blueprint("api", __name__, url_prefix="/v1")
log = logging.getLogger("suppress.api")
F = TypeVar("F", bound=Callable[..., Any])
MAX_LINKS = 10_000
# Big enough for MAX_LINKS addresses of the longest input n1 accepts, quoted and separated.
MAX_LINKS_BYTES = MAX_LINKS * (addresses.MAX_INPUT + 8) + 64 * 1024
ONE_CLICK = "List-Unsubscribe=One-Click"

MAX_FILTER_EMAILS = 100_000
# The JSON filter's body cap follows from its address limit (every address at the longest
# input n1 accepts, plus JSON punctuation), instead of the 1 MiB cap of the other routes.
MAX_FILTER_JSON_BYTES = MAX_FILTER_EMAILS * (addresses.MAX_INPUT + 8) + 65_536
# Streamed bodies have no size limit: they are read a chunk at a time.
UNLIMITED = sys.maxsize
# Allowed lines (filter) and idempotent import bodies stay in memory up to this size, then
# spill to a temporary file.
SPOOL_BYTES = 8 << 20
TEXT_TYPES = ("text/plain", "text/csv")
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
        try:
            with runtime().db.begin(write=False) as session:
                found = apikeys.authenticate(session, bearer_token())
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


def requires(role: Role) -> Callable[[F], F]:
    """Authenticate the bearer token and demand a role; sets g.principal."""

    def wrap(view: F) -> F:
        @functools.wraps(view)
        def inner(*args: Any, **kwargs: Any) -> Any:
            rt = runtime()
            principal = caller()
            principal.require(role)
            # Fail closed while this process's secrets disagree with the recorded ones.
            rt.secrets_still_agree(time.monotonic())
            now = audit.utcnow()
            if principal.needs_touch(now):
                try:
                    with rt.db.begin() as session:
                        apikeys.touch(session, principal)
                except SuppressError as exc:  # bookkeeping only: never fail a check over it
                    log.warning("could not record API key use: %s", exc.message)
            g.principal = principal
            return view(*args, **kwargs)

        return inner  # type: ignore[return-value]

    return wrap


# --- binding ------------------------------------------------------------------------------


def json_body() -> dict[str, Any]:
    """The request's JSON object, or InvalidRequest for anything else (deep nesting too)."""
    if not request.is_json:
        raise InvalidRequest("send a JSON body with Content-Type: application/json")
    try:
        data = jsontext.loads(request.get_data())
    except jsontext.TooDeep:
        raise InvalidRequest(
            f"the JSON body nests deeper than {jsontext.MAX_DEPTH} levels"
        ) from None
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise InvalidRequest("the body must be a JSON object")
    return data


def text_field(data: dict[str, Any], name: str) -> str:
    """A required string field."""
    value = data.get(name)
    if not isinstance(value, str):
        raise InvalidRequest(f"field {name!r} is required and must be a string")
    return value


def target_from(data: dict[str, Any]) -> Target:
    """Exactly one of "email" or "domain", as digests."""
    ring = runtime().ring
    if ("email" in data) == ("domain" in data):
        raise InvalidRequest("give exactly one of 'email' or 'domain'")
    if "email" in data:
        return addresses.address_target(ring, text_field(data, "email"))
    return addresses.domain_target(ring, text_field(data, "domain"))


def parse_time(value: Any, name: str) -> datetime | None:
    """An optional ISO 8601 timestamp, converted to naive UTC."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidRequest(f"{name} must be an ISO 8601 timestamp string")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise Unprocessable(
            f"{name} is not an ISO 8601 timestamp", code="invalid_request"
        ) from None
    if parsed.tzinfo is None:
        raise Unprocessable(f"{name} must include a time zone (e.g. Z)", code="invalid_request")
    return audit.naive_utc(parsed)


def email_list(data: dict[str, Any], limit: int) -> list[str]:
    """The "emails" field: a list of at most `limit` strings."""
    emails = data.get("emails")
    if not isinstance(emails, list) or not all(isinstance(e, str) for e in emails):
        raise InvalidRequest("field 'emails' is required and must be a list of strings")
    if len(emails) > limit:
        raise PayloadTooLarge(f"at most {limit:,} addresses per request; split the batch")
    return emails


MAX_ID = 2**63 - 1


def int_arg(name: str, default: int, *, minimum: int = 0) -> int:
    """An integer query parameter in [minimum, 2**63 - 1]."""
    value = request.args.get(name)
    if value is None:
        return default
    if not value.isascii() or not value.isdigit() or not minimum <= int(value) <= MAX_ID:
        raise InvalidRequest(f"{name} must be an integer from {minimum} to {MAX_ID}")
    return int(value)


def verdict_json(email: str, list_name: str, verdict: Verdict) -> dict[str, Any]:
    """The /v1/check answer."""
    return {
        "email": email,
        "list": list_name,
        "allowed": verdict.allowed,
        "suppressions": [hit.to_dict() for hit in verdict.hits],
    }


def rekey_quietly(verdict: Verdict) -> None:
    """Lazy re-keying after a read; a failure only delays it (the verdict is already made)."""
    if not verdict.stale:
        return
    rt = runtime()
    try:
        with rt.db.begin() as session:
            suppressions.rekey(session, verdict.stale, rt.ring.active_id, actor=g.principal.actor)
    except SuppressError as exc:
        log.warning("lazy re-key postponed: %s", exc.message)


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
    if request.mimetype not in TEXT_TYPES:
        raise SuppressError(
            "send the addresses as text/plain or text/csv, one per line",
            code="unsupported_media_type",
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
            runtime(),
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
        headers["List-Unsubscribe-Post"] = ONE_CLICK
    return headers


# --- routes ---------------------------------------------------------------------------------


@bp.get("/openapi.json")
def openapi() -> Any:
    return jsonify(spec(runtime().config.base_url))


@bp.post("/check")
@requires(Role.mailer)
def check() -> Any:
    data = json_body()
    email = text_field(data, "email")
    list_name = suppressions.validate_list(data.get("list"))
    target = addresses.address_target(runtime().ring, email)
    with runtime().db.begin(write=False) as session:
        verdict = suppressions.check(session, target, list_name, now=audit.utcnow())
    metrics.verdict(verdict.allowed)
    rekey_quietly(verdict)
    return jsonify(verdict_json(email, list_name, verdict))


@bp.post("/suppressions")
@requires(Role.recorder)
def add_suppression() -> Any:
    data = json_body()
    target = target_from(data)
    list_name = suppressions.validate_list(data.get("list"))
    reason = suppressions.parse_reason(data.get("reason"))
    source = suppressions.validate_text("source", data.get("source", "api"))
    expires_at = parse_time(data.get("expires_at"), "expires_at")

    def produce(session: Any) -> tuple[dict[str, Any], int]:
        row, created = suppressions.add(
            session,
            target,
            list_name,
            reason,
            source=source,
            actor=g.principal.actor,
            now=audit.utcnow(),
            expires_at=expires_at,
        )
        return {
            "created": created,
            "suppression": suppressions.describe(row),
        }, 201 if created else 200

    return idempotent(produce)


@bp.delete("/suppressions")
@requires(Role.admin)
def remove_suppression() -> Any:
    data = json_body()
    target = target_from(data)
    list_name = suppressions.validate_list(data.get("list"))
    reason = suppressions.validate_text("reason", data.get("reason"))
    evidence = suppressions.validate_text("evidence", data.get("evidence"))
    with runtime().db.begin() as session:
        removed = suppressions.remove(
            session, target, list_name, reason=reason, evidence=evidence, actor=g.principal.actor
        )
    return jsonify({"removed": removed})


@bp.post("/filter")
@requires(Role.mailer)
def filter_recipients() -> Any:
    query_list = request.args.get("list")
    if request.mimetype != "application/json":
        csv_mode = text_body_mode()
        return stream_filter(suppressions.validate_list(query_list), csv_mode)
    request.max_content_length = MAX_FILTER_JSON_BYTES
    data = json_body()
    list_name = suppressions.validate_list(data.get("list"))
    if query_list is not None and query_list != list_name:
        # Never answer for one list while the caller may believe it asked about another.
        raise InvalidRequest("the list in the query and in the body differ")
    emails = data.get("emails")
    if not isinstance(emails, list) or not all(isinstance(e, str) for e in emails):
        raise InvalidRequest("field 'emails' is required and must be a list of strings")
    if len(emails) > MAX_FILTER_EMAILS:
        raise PayloadTooLarge(
            f"at most {MAX_FILTER_EMAILS} addresses per JSON request; "
            "stream larger lists as text/plain"
        )
    result = bulk.filter_emails(runtime(), emails, list_name, actor=g.principal.actor)
    count_verdicts(len(result["allowed"]), len(result["suppressed"]))
    return jsonify(result)


@bp.post("/imports")
@requires(Role.recorder)
def import_suppressions() -> Any:
    list_name = suppressions.validate_list(request.args.get("list"))
    reason = suppressions.parse_reason(request.args.get("reason"))
    source = suppressions.validate_text("source", request.args.get("source", "import"))
    csv_mode = text_body_mode()

    def produce(stream: IO[bytes]) -> dict[str, Any]:
        return bulk.import_lines(
            runtime(),
            bulk.iter_lines(stream),
            list_name,
            reason,
            source=source,
            actor=g.principal.actor,
            csv_mode=csv_mode,
        ).to_dict()

    return idempotent_stream(produce)


@bp.post("/unsubscribe-links")
@requires(Role.mailer)
def unsubscribe_links() -> Any:
    rt = runtime()
    request.max_content_length = max(rt.config.max_json_bytes, MAX_LINKS_BYTES)
    data = json_body()
    list_name = suppressions.validate_list(data.get("list"))
    emails = email_list(data, MAX_LINKS)
    principal = g.principal
    links, invalid = tokens.unsubscribe_links(
        rt.signer, rt.ring, rt.config.base_url, list_name, emails, minted_by=principal.id
    )
    # A link is a capability to act as its recipient: none leaves before the mint is audited.
    with rt.db.begin() as session:
        suppressions.record_links(
            session,
            list_name,
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


@bp.post("/lookup")
@requires(Role.admin)
def lookup() -> Any:
    data = json_body()
    email = text_field(data, "email")
    reference = suppressions.validate_text("reference", data.get("reference"), required=False)
    target = addresses.address_target(runtime().ring, email)
    with runtime().db.begin() as session:
        found = access.lookup(session, target, actor=g.principal.actor, reference=reference or None)
    return jsonify({"email": email, **found})


@bp.get("/export")
@requires(Role.admin)
def export() -> Any:
    fmt = access.parse_format(request.args.get("format", "ndjson"))
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


@bp.get("/audit")
@requires(Role.admin)
def audit_events() -> Any:
    after, limit = int_arg("after", 0), int_arg("limit", 100, minimum=1)
    action = audit.parse_action(request.args.get("action"))
    with runtime().db.begin(write=False) as session:
        events = [
            audit.describe(e) for e in audit.page(session, after=after, limit=limit, action=action)
        ]
    return jsonify({"events": events, "next_after": events[-1]["id"] if events else after})


@bp.get("/audit/verify")
@requires(Role.admin)
def audit_verify() -> Any:
    anchor = request.args.get("anchor")
    with runtime().db.begin(write=False) as session:
        result = audit.verify(session, anchor=None if anchor is None else audit.parse_hash(anchor))
    return jsonify(result.to_dict())


@bp.get("/jobs")
@requires(Role.admin)
def list_jobs() -> Any:
    job = request.args.get("job")
    if job is not None and job not in scheduler.JOBS:
        raise InvalidRequest(f"job must be one of: {', '.join(scheduler.JOBS)}")
    limit = request.args.get("limit", "50")
    if not limit.isdigit() or not 1 <= int(limit) <= 500:
        raise InvalidRequest("limit must be an integer from 1 to 500")
    with runtime().db.begin(write=False) as session:
        runs = scheduler.list_runs(session, job=job, limit=int(limit))
    return jsonify({"runs": runs})


@bp.post("/jobs/<name>/run")
@requires(Role.admin)
def run_job(name: str) -> Any:
    outcome = scheduler.run_manual(runtime(), name)
    return jsonify({"run": outcome.run})
