"""The jobs the service runs on a schedule or on request."""

from __future__ import annotations

# Every job by name: the scheduler's, the CLI's and the API's (the document lists them).
NAMES = ("reconcile", "expire", "verify-audit")
# Jobs claimed once per local night; expire runs hourly.
NIGHTLY = ("reconcile", "verify-audit")
