"""The console for people at /admin/ (DESIGN §12): sign-in, lookup, add and remove, imports,
the register of data-subject requests, the audit trail, job runs, API keys and accounts, with
charts drawn on the server."""

from __future__ import annotations

from flask import Flask

from ..runtime import Runtime


def init_app(app: Flask, rt: Runtime) -> None:
    """Register the console's routes, session and headers on the app."""
    # Importing them registers their routes.
    from . import admin, overview, rights, site, suppressions, views  # noqa: F401

    site.init_app(app, rt)
