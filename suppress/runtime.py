"""The wired parts a process runs with: configuration, database and key ring."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import config as config_module
from .addresses import KeyRing
from .config import Config
from .db import Database


@dataclass
class Runtime:
    """Shared by the web app, the CLI and the jobs; built once per process."""

    config: Config
    db: Database
    ring: KeyRing

    @classmethod
    def load(cls, overrides: dict[str, Any] | None = None) -> Runtime:
        """Load configuration and secrets (fail fast) and open the database engine."""
        cfg = config_module.load(overrides)
        db = Database(
            cfg.database_url,
            busy_timeout_ms=cfg.sqlite_busy_timeout_ms,
            pool_size=cfg.pool_size,
            statement_timeout_ms=cfg.statement_timeout_ms,
        )
        return cls(config=cfg, db=db, ring=KeyRing(cfg.peppers))
