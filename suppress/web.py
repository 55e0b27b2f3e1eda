"""Cross-cutting HTTP concerns: the error envelope for every failure, and response headers."""

from __future__ import annotations

import logging

from flask import Flask, Response, jsonify, request
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import HTTPException

from .errors import ErrorCode, SuppressError, Unavailable

log = logging.getLogger("suppress.web")

HTTP_CODES = {
    400: ErrorCode.invalid_request,
    401: ErrorCode.unauthorized,
    403: ErrorCode.forbidden,
    404: ErrorCode.not_found,
    405: ErrorCode.method_not_allowed,
    413: ErrorCode.payload_too_large,
    415: ErrorCode.unsupported_media_type,
    429: ErrorCode.rate_limited,
}
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
# Browsers that reached the service over https keep to https for a year.
HSTS = "max-age=31536000"


def _render(code: str, message: str, status: int) -> tuple[Response, int]:
    return jsonify({"error": {"code": code, "message": message}}), status


def init_app(app: Flask) -> None:
    """Register error handlers and header policy on the app."""

    @app.errorhandler(SuppressError)
    def domain_error(exc: SuppressError) -> tuple[Response, int]:
        return _render(exc.code, exc.message, exc.status)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> tuple[Response, int]:
        status = exc.code or 500
        code = HTTP_CODES.get(
            status, ErrorCode.invalid_request if status < 500 else ErrorCode.internal_error
        )
        response, status = _render(code, exc.description or exc.name, status)
        for name, value in exc.get_headers():
            if name.lower() in ("allow", "retry-after"):
                response.headers[name] = value
        return response, status

    @app.errorhandler(SQLAlchemyError)
    def database_error(exc: SQLAlchemyError) -> tuple[Response, int]:
        # Fail closed: a database problem is never an answer, only "ask again later".
        log.error("database error: %s", type(exc).__name__)
        err = Unavailable("database unavailable; nothing was decided, retry later")
        return _render(err.code, err.message, err.status)

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> tuple[Response, int]:
        log.exception("unhandled error")
        return _render(ErrorCode.internal_error, "internal error; nothing was decided", 500)

    @app.after_request
    def headers(response: Response) -> Response:
        headers = response.headers
        present = {name.lower() for name in headers.keys()}  # one pass, not one per header
        for name, value in SECURITY_HEADERS.items():
            if name.lower() not in present:
                headers.add(name, value)
        if request.is_secure:
            # Only over https as the server sees it: directly, or from a trusted proxy's
            # X-Forwarded-Proto ([server] proxy_hops). Never on plain http, where it is ignored.
            response.headers.setdefault("Strict-Transport-Security", HSTS)
        return response
