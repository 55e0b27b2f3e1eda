"""Liveness and readiness probes (no auth)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, jsonify

from . import clock, jobs, peppers, rights
from .contract import Answer, Health, Operation, Ready, operation
from .errors import ErrorCode, SuppressError

bp = Blueprint("health", __name__)


@bp.get("/healthz")
@operation(
    Operation(
        "Liveness, the age of the last successful reconcile (stale past 26 h), and the "
        "data-subject requests due and overdue (late when any is)",
        {200: Answer("The process is up", Health)},
        limited=False,
        database=False,
    )
)
def healthz() -> Any:
    """Liveness: always 200 while the process serves; the reconcile age and the requests'
    clock are information only."""
    rt = current_app.extensions["suppress"]
    now = clock.utcnow()
    try:
        with rt.db.begin(write=False) as session:
            reconcile = jobs.reconcile_health(session, now)
    except Exception as exc:  # liveness must not depend on the database
        reconcile = unavailable(exc)
    try:
        today = rights.today(rt.config.settings.compliance.zone, now)
        with rt.db.begin(write=False) as session:
            register = rights.counts(session, today).to_dict()
        requests: dict[str, Any] = {**register, "late": register["overdue"] > 0}
    except Exception as exc:  # a schema without the register yet is no reason to fail
        requests = unavailable(exc)
    return jsonify({"status": "ok", "reconcile": reconcile, "requests": requests})


def unavailable(exc: Exception) -> dict[str, Any]:
    """The error part of a probe's answer: the exception's type, never its text."""
    return {"error": {"code": ErrorCode.unavailable, "message": type(exc).__name__}}


@bp.get("/readyz")
@operation(
    Operation(
        "Readiness: database reachable, schema current, every pepper of the rows configured",
        {200: Answer("Ready", Ready), 503: Answer("Not ready", Ready)},
        limited=False,
        database=False,
    )
)
def readyz() -> Any:
    rt = current_app.extensions["suppress"]
    db = rt.db
    try:
        db.ping()
        problem = db.schema_problem()
        missing: list[str] = []
        if problem is None:
            with db.begin(write=False) as session:
                missing = peppers.unconfigured(session, rt.ring)
            # Another instance may have started since with secrets this one lacks.
            rt.verify_secrets()
    except SuppressError as exc:
        return jsonify({"ready": False, **exc.to_dict()}), 503
    except Exception as exc:  # any failure means "not ready", never a crash page
        return jsonify(
            {
                "ready": False,
                "error": {"code": ErrorCode.unavailable, "message": type(exc).__name__},
            }
        ), 503
    if problem is not None:
        return jsonify(
            {"ready": False, "error": {"code": ErrorCode.unavailable, "message": problem}}
        ), 503
    if missing:
        # Rows no configured pepper can match would answer "allowed" for people who opted
        # out: fail closed and take the instance out of rotation until the pepper is back.
        error = {"code": ErrorCode.pepper_missing, "message": peppers.missing_message(missing)}
        return jsonify({"ready": False, "error": error}), 503
    return jsonify({"ready": True, "schema": db.head_revision()})  # current: no problem
