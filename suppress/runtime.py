"""The wired parts a process runs with: configuration, database, key ring and token signer."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from . import config as config_module
from .addresses import KeyRing
from .apikeys import KeyCache
from .config import Config
from .db import Database
from .errors import ConfigError, SecretsMismatch, Unavailable
from .secretchecks import Mine
from .tokens import TokenSigner

# How stale the gate's knowledge of the recorded secrets may be.
SECRETS_RECHECK_SECONDS = 5.0


@dataclass
class Runtime:
    """Shared by the web app, the CLI and the jobs; built once per process."""

    config: Config
    db: Database
    ring: KeyRing
    signer: TokenSigner
    # API keys this process verified within the last second (suppress.apikeys.KeyCache).
    keys: KeyCache = field(default_factory=KeyCache)
    _secrets_checked_at: float = float("-inf")
    _secrets_conflict: SecretsMismatch | None = None

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

    def secrets_still_agree(self, now: float) -> None:
        """SecretsMismatch once the recorded secrets disagree with this process's; asked by
        the gate at most every SECRETS_RECHECK_SECONDS (a conflict created while running,
        e.g. by an instance started with other peppers before the records existed)."""
        if now - self._secrets_checked_at < SECRETS_RECHECK_SECONDS:
            if self._secrets_conflict is not None:
                raise self._secrets_conflict
            return
        try:
            self.verify_secrets()
            self._secrets_conflict = None
        except SecretsMismatch as exc:
            self._secrets_conflict = exc
            raise
        finally:
            self._secrets_checked_at = now

    def start(self) -> None:
        """What every process (server worker, scheduler, CLI command) does before its first
        request or job: drop SQLite planner statistics (Database.forget_planner_statistics),
        then verify the secrets."""
        self.db.forget_planner_statistics()
        self.verify_secrets_at_start()

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
