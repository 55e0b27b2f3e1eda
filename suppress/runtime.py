"""The wired parts a process runs with: configuration, database, key ring and token signer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import config as config_module
from .addresses import KeyRing
from .config import Config
from .db import Database
from .tokens import TokenSigner


@dataclass
class Runtime:
    """Shared by the web app, the CLI and the jobs; built once per process."""

    config: Config
    db: Database
    ring: KeyRing
    signer: TokenSigner

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
        ring = KeyRing(cfg.peppers)
        return cls(
            config=cfg, db=db, ring=ring, signer=TokenSigner(cfg.token_secrets, ring.key_ids)
        )
