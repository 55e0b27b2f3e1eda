"""Domain errors: a stable snake_case code, a message and the HTTP status that renders it."""

from __future__ import annotations

import enum
from collections.abc import Sequence


class ErrorCode(enum.StrEnum):
    """Every error code the service answers with: the API document's list, the CLI's words."""

    invalid_request = "invalid_request"
    invalid_email = "invalid_email"
    invalid_list = "invalid_list"
    invalid_reason = "invalid_reason"
    invalid_token = "invalid_token"
    token_retired = "token_retired"
    unauthorized = "unauthorized"
    forbidden = "forbidden"
    not_found = "not_found"
    method_not_allowed = "method_not_allowed"
    payload_too_large = "payload_too_large"
    unsupported_media_type = "unsupported_media_type"
    idempotency_key_reused = "idempotency_key_reused"
    job_busy = "job_busy"
    request_closed = "request_closed"
    already_extended = "already_extended"
    notice_too_late = "notice_too_late"
    rate_limited = "rate_limited"
    unavailable = "unavailable"
    pepper_missing = "pepper_missing"
    pepper_in_use = "pepper_in_use"
    secret_in_use = "secret_in_use"
    secrets_mismatch = "secrets_mismatch"
    ledger_edited = "ledger_edited"
    unreadable_source = "unreadable_source"
    config_error = "config_error"
    internal_error = "internal_error"


class SuppressError(Exception):
    """An error a client can act on; rendered as JSON, a page or a CLI line."""

    code: ErrorCode = ErrorCode.invalid_request
    status = 400
    # Which input it concerns and which rule it broke (e.g. "reference", "address"), when the
    # domain knows: a form shows the problem beside its field, in the page's own words.
    field: str | None = None
    problem: str | None = None

    def __init__(
        self,
        message: str,
        *,
        code: ErrorCode | None = None,
        status: int | None = None,
        field: str | None = None,
        problem: str | None = None,
    ):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        if field is not None:
            self.field = field
        if problem is not None:
            self.problem = problem

    def to_dict(self) -> dict[str, dict[str, str]]:
        """The JSON error envelope of DESIGN §5."""
        return {"error": {"code": self.code, "message": self.message}}


class InvalidRequest(SuppressError):
    """Malformed or incomplete request (400)."""


class InvalidEmail(SuppressError):
    """The input is not an address scheme n1 accepts (422)."""

    code = ErrorCode.invalid_email
    status = 422


class InvalidList(SuppressError):
    """A list name that does not match the list-name pattern (422)."""

    code = ErrorCode.invalid_list
    status = 422


class InvalidToken(SuppressError):
    """A tampered, truncated, foreign or retired unsubscribe token (400); nothing is recorded."""

    code = ErrorCode.invalid_token
    status = 400


class Unprocessable(SuppressError):
    """Well-formed but semantically wrong input (422)."""

    status = 422


class Unauthorized(SuppressError):
    """Missing or unknown API key (401)."""

    code = ErrorCode.unauthorized
    status = 401


class Forbidden(SuppressError):
    """The API key's role does not allow this (403)."""

    code = ErrorCode.forbidden
    status = 403


class NotFound(SuppressError):
    """Nothing matched (404)."""

    code = ErrorCode.not_found
    status = 404


class Conflict(SuppressError):
    """The change contradicts the current state, e.g. a request already closed (409)."""

    status = 409


class PayloadTooLarge(SuppressError):
    """The request body exceeds its limit (413)."""

    code = ErrorCode.payload_too_large
    status = 413


class Unavailable(SuppressError):
    """The database cannot answer now; nothing was decided (503)."""

    code = ErrorCode.unavailable
    status = 503


class PepperMissing(SuppressError):
    """Rows exist under a pepper this process lacks: no verdict can be trusted (503)."""

    code = ErrorCode.pepper_missing
    status = 503


class SecretsMismatch(SuppressError):
    """This process's peppers or token secrets disagree with the other instances' (503)."""

    code = ErrorCode.secrets_mismatch
    status = 503


class ConfigError(SuppressError):
    """Configuration is missing or invalid; the process must not start.

    The message is one line; `problems` lists each problem found on its own.
    """

    code = ErrorCode.config_error
    status = 500

    def __init__(self, message: str, *, problems: Sequence[str] = ()):
        super().__init__(message)
        self.problems = tuple(problems) or (message,)
