"""The OpenAPI 3.1 document of the HTTP API: one place that lists every route and shape."""

from __future__ import annotations

from typing import Any

from .audit import Finding

ERROR_CODES = [
    "invalid_request",
    "invalid_email",
    "invalid_list",
    "invalid_reason",
    "unauthorized",
    "forbidden",
    "not_found",
    "method_not_allowed",
    "payload_too_large",
    "unsupported_media_type",
    "idempotency_key_reused",
    "job_busy",
    "rate_limited",
    "unavailable",
    "pepper_missing",
    "secrets_mismatch",
    "internal_error",
]
LIST_NAME = {"type": "string", "pattern": "^[a-z0-9][a-z0-9._:-]{0,63}$"}
JOBS = ["reconcile", "expire", "verify-audit"]
REASONS = [
    "unsubscribe",
    "objection",
    "consent_withdrawn",
    "complaint",
    "hard_bounce",
    "soft_bounce",
    "manual",
    "erasure",
]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, **_json(_ref("Error"))}


def _responses(ok: dict[str, Any], *codes: int) -> dict[str, Any]:
    text = {
        400: "Malformed request",
        401: "Missing or unknown API key",
        403: "Role too low",
        404: "Nothing matched",
        409: "The job is still running elsewhere",
        413: "Body too large, or more items than the route allows",
        422: "Invalid input",
        503: "Database unavailable, rows under a pepper this instance lacks "
        "(pepper_missing), or secrets that differ from the other instances' "
        "(secrets_mismatch): nothing was decided",
    }
    out = dict(ok)
    for code in codes:
        out[str(code)] = _error(text[code])
    return out


def _op(
    summary: str,
    role: str | None,
    body: dict[str, Any] | None,
    responses: dict[str, Any],
    **extra: Any,
) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": responses, **extra}
    if role is None:
        op["security"] = []
    else:
        op["description"] = f"Role: {role} or higher."
    if body is not None:
        op["requestBody"] = {"required": True, **_json(body)}
    return op


TARGET: dict[str, Any] = {
    "type": "object",
    "properties": {
        "email": {"type": "string", "maxLength": 512},
        "domain": {"type": "string", "maxLength": 255},
        "list": LIST_NAME,
    },
    "required": ["list"],
}
UNSUBSCRIBE_TOKEN = {
    "name": "token",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "maxLength": 512},
    "description": "Signed token of an unsubscribe link: digest, key id, list, minting API key.",
}
# RFC 8058 §3.1: mail clients post one-click url-encoded or as multipart/form-data.
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
UNSUBSCRIBE_FORM = {
    "type": "object",
    "properties": {
        "List-Unsubscribe": {"type": "string", "enum": ["One-Click"]},
        "scope": {"type": "string", "enum": ["list", "global"]},
    },
}
IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
    "description": "A retry with the same key replays the first response; another body is 422.",
}


HEX32 = {"type": "string", "pattern": "^[0-9a-f]{64}$"}


def _audit_paths(auth_errors: tuple[int, ...]) -> dict[str, Any]:
    """Access, portability and the audit trail (admin)."""
    after = {
        "name": "after",
        "in": "query",
        "required": False,
        "schema": {"type": "integer", "minimum": 0, "maximum": 2**63 - 1, "default": 0},
        "description": "Return events with an id greater than this (the previous next_after).",
    }
    limit = {
        "name": "limit",
        "in": "query",
        "required": False,
        "schema": {"type": "integer", "minimum": 1, "maximum": 2**63 - 1, "default": 100},
        "description": "At most this many events (larger values are capped at 1000).",
    }
    action = {
        "name": "action",
        "in": "query",
        "required": False,
        "schema": {"type": "string", "pattern": "^[a-z][a-z_]{0,31}$"},
        "description": "Only events of this action, e.g. remove, lookup, export, rekey.",
    }
    anchor = {
        "name": "anchor",
        "in": "query",
        "required": False,
        "schema": {"type": "string", "pattern": "^[0-9a-fA-F]{64}$"},
        "description": "A head recorded earlier: the chain must still contain it.",
    }
    fmt = {
        "name": "format",
        "in": "query",
        "required": False,
        "schema": {"type": "string", "enum": ["ndjson", "csv"], "default": "ndjson"},
        "description": "csv: a header line; cells starting with = + - @ tab or CR get a "
        "leading ' so spreadsheets never run them.",
    }
    return {
        "/v1/lookup": {
            "post": _op(
                "Everything kept about an address, for access and portability requests "
                "(the lookup itself is recorded in the audit trail)",
                "admin",
                {
                    "type": "object",
                    "properties": {
                        "email": {"type": "string", "maxLength": 512},
                        "reference": {
                            "type": "string",
                            "minLength": 1,
                            "maxLength": 128,
                            "description": "The request's reference (e.g. a ticket number), "
                            "kept in the audit event of the lookup; no address.",
                        },
                    },
                    "required": ["email"],
                },
                _responses(
                    {"200": {"description": "Digests, rows, events", **_json(_ref("Lookup"))}},
                    *auth_errors,
                ),
            )
        },
        "/v1/export": {
            "get": _op(
                "Every suppression, streamed: one JSON object per line (or CSV)",
                "admin",
                None,
                _responses(
                    {
                        "200": {
                            "description": "One Suppression per line, digests in hex. A "
                            "stream cut by a failure ends without its terminating chunk.",
                            "content": {
                                "application/x-ndjson": {"schema": _ref("Suppression")},
                                "text/csv": {"schema": {"type": "string"}},
                            },
                        }
                    },
                    400,
                    401,
                    403,
                    503,
                ),
                parameters=[fmt],
            )
        },
        "/v1/audit": {
            "get": _op(
                "Audit events in chain order, a page at a time",
                "admin",
                None,
                _responses(
                    {
                        "200": {
                            "description": "A page of events",
                            **_json(
                                {
                                    "type": "object",
                                    "properties": {
                                        "events": {
                                            "type": "array",
                                            "items": _ref("AuditEvent"),
                                        },
                                        "next_after": {"type": "integer"},
                                    },
                                    "required": ["events", "next_after"],
                                }
                            ),
                        }
                    },
                    400,
                    401,
                    403,
                    503,
                ),
                parameters=[after, limit, action],
            )
        },
        "/v1/audit/verify": {
            "get": _op(
                "Walk the audit hash chain and name the first edited, missing or moved event",
                "admin",
                None,
                _responses(
                    {"200": {"description": "The verdict", **_json(_ref("Verification"))}},
                    400,
                    401,
                    403,
                    503,
                ),
                parameters=[anchor],
            )
        },
    }


AUDIT_SCHEMAS: dict[str, Any] = {
    "AuditEvent": {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "at": {"type": "string", "format": "date-time"},
            "action": {"type": "string"},
            "digest": {"type": ["string", "null"]},
            "kind": {"type": ["string", "null"]},
            "list": {"type": ["string", "null"]},
            "reason": {"type": ["string", "null"]},
            "source": {"type": ["string", "null"]},
            "actor": {"type": "string"},
            "detail": {"type": "object"},
            "prev_hash": HEX32,
            "hash": HEX32,
            "key_id": {
                "type": ["string", "null"],
                "description": "Lookup only: the pepper the event's digest is keyed with.",
            },
        },
        "required": ["id", "at", "action", "actor", "detail", "prev_hash", "hash"],
    },
    "Lookup": {
        "type": "object",
        "properties": {
            "email": {"type": "string", "description": "The address as sent."},
            "scheme": {"type": "string"},
            "active_key_id": {"type": "string"},
            "digests": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "kind": {"type": "string", "enum": ["address", "domain"]},
                        "level": {
                            "type": "integer",
                            "description": "Domains: 0 the address's domain, 1 its parent...",
                        },
                        "key_id": {"type": "string"},
                        "digest": HEX32,
                    },
                    "required": ["kind", "key_id", "digest"],
                },
            },
            "suppressions": {"type": "array", "items": _ref("Suppression")},
            "events": {"type": "array", "items": _ref("AuditEvent")},
        },
        "required": ["email", "digests", "suppressions", "events"],
    },
    "Verification": {
        "type": "object",
        "properties": {
            "ok": {"type": "boolean"},
            "events": {"type": "integer", "description": "Events verified before any break"},
            "head": {**HEX32, "description": "Hash of the last verified event"},
            "broken_at": {"type": ["integer", "null"], "description": "Id of the event"},
            "finding": {
                "type": ["string", "null"],
                "enum": [*(finding.value for finding in Finding), None],
            },
            "problem": {"type": "string"},
        },
        "required": ["ok", "events", "head"],
    },
}


def spec(base_url: str) -> dict[str, Any]:
    """The OpenAPI document, with the deployment's base URL as server."""
    auth_errors = (400, 401, 403, 422, 503)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "suppress",
            "version": "1",
            "description": "Suppression list and mailing gatekeeper. Addresses are stored only "
            "as keyed hashes; every check fails closed.",
        },
        "servers": [{"url": base_url}],
        "security": [{"bearer": []}],
        "paths": {
            "/v1/check": {
                "post": _op(
                    "May direct marketing on this list go to this address?",
                    "mailer",
                    {
                        "type": "object",
                        "properties": {"email": {"type": "string"}, "list": LIST_NAME},
                        "required": ["email", "list"],
                    },
                    _responses(
                        {"200": {"description": "Verdict", **_json(_ref("Verdict"))}}, *auth_errors
                    ),
                )
            },
            "/v1/suppressions": {
                "post": _op(
                    "Suppress an address or a domain on a list (idempotent)",
                    "recorder",
                    {
                        **TARGET,
                        "properties": {
                            **TARGET["properties"],
                            "reason": {"type": "string", "enum": REASONS},
                            "source": {"type": "string", "maxLength": 128},
                            "expires_at": {
                                "type": "string",
                                "format": "date-time",
                                "description": "Only for hard_bounce and soft_bounce.",
                            },
                        },
                        "required": ["list", "reason"],
                    },
                    _responses(
                        {
                            "201": {"description": "Created", **_json(_ref("AddResult"))},
                            "200": {
                                "description": "Already suppressed",
                                **_json(_ref("AddResult")),
                            },
                        },
                        *auth_errors,
                    ),
                    parameters=[IDEMPOTENCY_KEY],
                ),
                "delete": _op(
                    "Lift a suppression, with a reason and evidence of new consent",
                    "admin",
                    {
                        **TARGET,
                        "properties": {
                            **TARGET["properties"],
                            "reason": {"type": "string", "minLength": 1, "maxLength": 128},
                            "evidence": {"type": "string", "minLength": 1, "maxLength": 128},
                        },
                        "required": ["list", "reason", "evidence"],
                    },
                    _responses(
                        {
                            "200": {
                                "description": "Removed",
                                **_json(
                                    {
                                        "type": "object",
                                        "properties": {"removed": {"type": "integer"}},
                                        "required": ["removed"],
                                    }
                                ),
                            }
                        },
                        *auth_errors,
                        404,
                    ),
                ),
            },
            "/v1/unsubscribe-links": {
                "post": _op(
                    "Unsubscribe links and RFC 8058 headers for a batch of recipients of one list",
                    "mailer",
                    {
                        "type": "object",
                        "properties": {
                            "list": LIST_NAME,
                            "emails": {
                                "type": "array",
                                # Inputs that are no address (too long, say) are
                                # answered under "invalid", not refused.
                                "items": {"type": "string"},
                                "maxItems": 10000,
                            },
                        },
                        "required": ["list", "emails"],
                    },
                    _responses(
                        {
                            "200": {
                                "description": "One link per valid address, in input order",
                                **_json(_ref("Links")),
                            }
                        },
                        *auth_errors,
                        413,
                    ),
                )
            },
            "/u/{token}": {
                "get": _op(
                    "Landing page (HTML, Swedish or English); never changes anything",
                    None,
                    None,
                    {
                        "200": {"description": "The page", "content": {"text/html": {}}},
                        "400": {
                            "description": "Tampered, truncated or retired token",
                            "content": {"text/html": {}},
                        },
                        "429": {
                            "description": "Rate limited per client IP; see Retry-After",
                            "content": {"text/html": {}},
                        },
                    },
                    parameters=[
                        UNSUBSCRIBE_TOKEN,
                        {
                            "name": "lang",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "string", "examples": ["sv", "en"]},
                            "description": "Language switch (en or a catalog's language); "
                            "default: Accept-Language.",
                        },
                    ],
                ),
                "post": _op(
                    "Unsubscribe: RFC 8058 one-click, or the landing page's form; idempotent",
                    None,
                    None,
                    {
                        "200": {
                            "description": "Confirmation page; committed before it is sent",
                            "content": {"text/html": {}},
                        },
                        "400": {
                            "description": "Bad token, or no choice made; nothing recorded",
                            "content": {"text/html": {}},
                        },
                        "429": {
                            "description": "Rate limited per client IP; see Retry-After",
                            "content": {"text/html": {}},
                        },
                        "503": {
                            "description": "Database unavailable; nothing recorded",
                            "content": {"text/html": {}},
                        },
                    },
                    parameters=[UNSUBSCRIBE_TOKEN],
                    requestBody={
                        "required": True,
                        "description": "RFC 8058 one-click (`List-Unsubscribe=One-Click`, "
                        "surrounding whitespace such as a final CRLF allowed) or the form's "
                        "`scope`; url-encoded or multipart/form-data, as mail clients send it.",
                        "content": {media: {"schema": UNSUBSCRIBE_FORM} for media in FORM_TYPES},
                    },
                ),
            },
            **_audit_paths(auth_errors),
            "/v1/jobs": {
                "get": _op(
                    "Job runs, newest first, with their summaries",
                    "admin",
                    None,
                    _responses(
                        {
                            "200": {
                                "description": "Runs",
                                **_json(
                                    {
                                        "type": "object",
                                        "properties": {
                                            "runs": {"type": "array", "items": _ref("JobRun")}
                                        },
                                        "required": ["runs"],
                                    }
                                ),
                            }
                        },
                        400,
                        401,
                        403,
                        503,
                    ),
                    parameters=[
                        {
                            "name": "job",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "string", "enum": JOBS},
                        },
                        {
                            "name": "limit",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "integer", "minimum": 1, "maximum": 500},
                        },
                    ],
                )
            },
            "/v1/jobs/{name}/run": {
                "post": _op(
                    "Run a job now under a run key of its own (waits for a running one)",
                    "admin",
                    None,
                    _responses(
                        {
                            "200": {
                                "description": "The finished run (status ok or failed)",
                                **_json(
                                    {
                                        "type": "object",
                                        "properties": {"run": _ref("JobRun")},
                                        "required": ["run"],
                                    }
                                ),
                            }
                        },
                        401,
                        403,
                        404,
                        409,
                        503,
                    ),
                    parameters=[
                        {
                            "name": "name",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string", "enum": JOBS},
                        }
                    ],
                )
            },
            "/v1/filter": {
                "post": _op(
                    "Filter recipients: JSON (at most 100,000) or a streamed text body",
                    "mailer",
                    None,
                    _responses(
                        {
                            "200": {
                                "description": "JSON: the verdicts. Text: the allowed input "
                                "lines as given, in input order, then the last line "
                                "'# checked=N allowed=A suppressed=S invalid=I'. An answer "
                                "without that trailer is incomplete: treat every recipient "
                                "as suppressed.",
                                "content": {
                                    "application/json": {"schema": _ref("FilterResult")},
                                    "text/plain": {"schema": {"type": "string"}},
                                },
                            },
                            "415": _error("Body is not JSON, text/plain or text/csv"),
                        },
                        *auth_errors,
                        413,
                    ),
                    parameters=[
                        {
                            "name": "list",
                            "in": "query",
                            "required": False,
                            "schema": LIST_NAME,
                            "description": "Required for the streamed (text) form.",
                        }
                    ],
                    requestBody={
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "properties": {
                                        "list": LIST_NAME,
                                        "emails": {
                                            "type": "array",
                                            "items": {"type": "string"},
                                            "maxItems": 100_000,
                                        },
                                    },
                                    "required": ["list", "emails"],
                                }
                            },
                            # Any text is a valid body (a line that is no address is
                            # counted invalid), so the schemas constrain nothing.
                            "text/plain": {
                                "schema": {
                                    "description": "One address per line; no size limit. "
                                    "A line over 4096 bytes counts as one invalid line."
                                }
                            },
                            "text/csv": {
                                "schema": {"description": "The address in the first column."}
                            },
                        },
                    },
                )
            },
            "/v1/imports": {
                "post": _op(
                    "Import a list of opt-outs (streamed; idempotent; never removes)",
                    "recorder",
                    None,
                    _responses(
                        {
                            "200": {
                                "description": "Counts; invalid lines by number (no text)",
                                **_json(_ref("ImportResult")),
                            },
                            "415": _error("Body is not text/plain or text/csv"),
                        },
                        *auth_errors,
                    ),
                    parameters=[
                        {"name": "list", "in": "query", "required": True, "schema": LIST_NAME},
                        {
                            "name": "reason",
                            "in": "query",
                            "required": True,
                            "schema": {"type": "string", "enum": REASONS},
                        },
                        {
                            "name": "source",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "string", "maxLength": 128, "default": "import"},
                        },
                        IDEMPOTENCY_KEY,
                    ],
                    requestBody={
                        "required": True,
                        "content": {
                            "text/csv": {"schema": {"description": "First column."}},
                            "text/plain": {"schema": {"description": "One per line."}},
                        },
                    },
                )
            },
            "/v1/openapi.json": {
                "get": _op("This document", None, None, {"200": {"description": "OpenAPI 3.1"}})
            },
            "/metrics": {
                "get": _op(
                    "Prometheus metrics",
                    None,
                    None,
                    {
                        "200": {
                            "description": "Prometheus text format",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        }
                    },
                )
            },
            "/healthz": {
                "get": _op(
                    "Liveness, and the age of the last successful reconcile (stale past 26 h)",
                    None,
                    None,
                    {
                        "200": {
                            "description": "The process is up",
                            **_json(
                                {
                                    "type": "object",
                                    "properties": {
                                        "status": {"type": "string", "enum": ["ok"]},
                                        "reconcile": {
                                            "type": "object",
                                            "properties": {
                                                "last_success": {
                                                    "type": ["string", "null"],
                                                    "format": "date-time",
                                                },
                                                "age_seconds": {"type": ["integer", "null"]},
                                                "stale": {"type": "boolean"},
                                            },
                                        },
                                    },
                                    "required": ["status", "reconcile"],
                                }
                            ),
                        }
                    },
                )
            },
            "/readyz": {
                "get": _op(
                    "Readiness: database reachable and schema current",
                    None,
                    None,
                    {"200": {"description": "Ready"}, "503": {"description": "Not ready"}},
                )
            },
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                **AUDIT_SCHEMAS,
                "Error": {
                    "type": "object",
                    "properties": {
                        "error": {
                            "type": "object",
                            "properties": {
                                "code": {"type": "string", "enum": ERROR_CODES},
                                "message": {"type": "string"},
                            },
                            "required": ["code", "message"],
                        }
                    },
                    "required": ["error"],
                },
                "Hit": {
                    "type": "object",
                    "properties": {
                        "scope": {
                            "type": "string",
                            "description": "The list of the suppression; 'global' covers all.",
                        },
                        "kind": {"type": "string", "enum": ["address", "domain"]},
                        "reason": {"type": "string", "enum": REASONS},
                        "since": {"type": "string", "format": "date-time"},
                    },
                    "required": ["scope", "kind", "reason", "since"],
                },
                "Verdict": {
                    "type": "object",
                    "properties": {
                        "email": {"type": "string"},
                        "list": LIST_NAME,
                        "allowed": {"type": "boolean"},
                        "suppressions": {"type": "array", "items": _ref("Hit")},
                    },
                    "required": ["email", "list", "allowed", "suppressions"],
                },
                "Suppression": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "integer"},
                        "digest": {"type": "string"},
                        "key_id": {"type": "string"},
                        "scheme": {"type": "string"},
                        "kind": {"type": "string", "enum": ["address", "domain"]},
                        "list": LIST_NAME,
                        "reason": {"type": "string", "enum": REASONS},
                        "source": {"type": "string"},
                        "created_at": {"type": "string", "format": "date-time"},
                        "expires_at": {"type": ["string", "null"], "format": "date-time"},
                    },
                    "required": ["digest", "key_id", "kind", "list", "reason", "created_at"],
                },
                "Links": {
                    "type": "object",
                    "properties": {
                        "links": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "email": {"type": "string", "description": "As given"},
                                    "url": {"type": "string", "format": "uri"},
                                    "headers": {
                                        "type": "object",
                                        "properties": {
                                            "List-Unsubscribe": {"type": "string"},
                                            "List-Unsubscribe-Post": {
                                                "const": "List-Unsubscribe=One-Click",
                                                "description": "RFC 8058 one-click; absent "
                                                "when base_url is plain http on a host other "
                                                "than loopback ([unsubscribe] "
                                                "allow_insecure_base_url)",
                                            },
                                        },
                                        "required": ["List-Unsubscribe"],
                                    },
                                },
                                "required": ["email", "url", "headers"],
                            },
                        },
                        "invalid": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "email": {"type": "string"},
                                    "code": {"type": "string"},
                                },
                                "required": ["email", "code"],
                            },
                        },
                    },
                    "required": ["links", "invalid"],
                },
                "JobRun": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "integer"},
                        "job": {"type": "string", "enum": JOBS},
                        "run_key": {
                            "type": "string",
                            "description": "Local date (nightly), local hour with offset "
                            "(expire) or manual:<UTC time>:<nonce>",
                        },
                        "status": {
                            "type": "string",
                            "enum": ["running", "ok", "failed", "stale"],
                        },
                        "started_at": {"type": "string", "format": "date-time"},
                        "finished_at": {"type": ["string", "null"], "format": "date-time"},
                        "lease_until": {"type": ["string", "null"], "format": "date-time"},
                        "summary": {
                            "type": "object",
                            "description": "Counts per source and reason, report paths, errors",
                        },
                    },
                    "required": ["id", "job", "run_key", "status", "started_at", "summary"],
                },
                "FilterResult": {
                    "type": "object",
                    "properties": {
                        "list": LIST_NAME,
                        "checked": {"type": "integer"},
                        "allowed": {"type": "array", "items": {"type": "string"}},
                        "suppressed": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "email": {"type": "string"},
                                    "reason": {"type": "string", "enum": REASONS},
                                    "scope": {"type": "string"},
                                },
                            },
                        },
                        "invalid": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "email": {"type": "string"},
                                    "code": {"type": "string"},
                                },
                            },
                        },
                    },
                    "required": ["list", "checked", "allowed", "suppressed", "invalid"],
                },
                "ImportResult": {
                    "type": "object",
                    "properties": {
                        "received": {"type": "integer"},
                        "added": {"type": "integer"},
                        "existing": {"type": "integer"},
                        "invalid": {"type": "integer"},
                        "invalid_lines": {
                            "type": "array",
                            "maxItems": 1000,
                            "items": {
                                "type": "object",
                                "properties": {
                                    "line": {"type": "integer"},
                                    "code": {
                                        "type": "string",
                                        "description": "invalid_email, or line_too_long "
                                        "(over 4096 bytes)",
                                    },
                                },
                            },
                        },
                        "invalid_lines_truncated": {"type": "boolean"},
                    },
                    "required": ["received", "added", "existing", "invalid", "invalid_lines"],
                },
                "AddResult": {
                    "type": "object",
                    "properties": {
                        "created": {"type": "boolean"},
                        "suppression": _ref("Suppression"),
                    },
                    "required": ["created", "suppression"],
                },
            },
        },
    }
