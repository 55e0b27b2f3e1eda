"""The wired parts a process runs with: configuration, database, key ring and token signer."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

from . import config as config_module
from .addresses import KeyRing
from .config import Config
from .db import Database
from .errors import ConfigError, SecretsMismatch, Unavailable
from .secretchecks import Mine
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

    @cached_property
    def secrets(self) -> Mine:
        """Keyed fingerprints of this process's peppers and token secrets."""
        return Mine.of(self.ring, self.config.token_secrets)

    def verify_secrets(self) -> None:
        """SecretsMismatch unless this process holds the secrets the others recorded."""
        from . import secretchecks

        secretchecks.verify(self.db, self.secrets)

    def verify_secrets_at_start(self) -> None:
        """ConfigError on a mismatch; a database not reachable or migrated yet is /readyz's
        business (it asks again on every probe)."""
        try:
            self.verify_secrets()
        except SecretsMismatch as exc:
            self.db.dispose()  # this process will not run: close what it opened
            raise ConfigError(exc.message) from None
        except Unavailable:
            pass
