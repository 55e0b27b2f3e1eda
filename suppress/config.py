"""Layer configuration (defaults, file, environment, overrides), validate it once with the
models of suppress.settings, and read the secrets; fail fast, naming every problem."""

from __future__ import annotations

import base64
import binascii
import copy
import difflib
import os
import re
import secrets
import stat
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from . import clock, files
from . import settings as settings_module
from .errors import ConfigError
from .settings import Location, Settings

# Defaults ship inside the package (config/default.toml is the documented copy; a test keeps
# the two identical), so an installed wheel runs with no source tree around.
DEFAULT_FILE = Path(__file__).resolve().parent / "default.toml"
KEY_ID = re.compile(r"^[A-Za-z0-9_-]{1,16}$")
# Token secrets sign unsubscribe links that never expire: a guessable one would let anyone
# forge opt-outs. 32 characters of a random secret (token_urlsafe(32) makes 43) resist that.
MIN_TOKEN_SECRET = 32


@dataclass(frozen=True)
class Config:
    """The validated settings a process runs with."""

    database_url: str
    sqlite_busy_timeout_ms: int
    statement_timeout_ms: int
    pool_size: int
    peppers: tuple[tuple[str, bytes], ...]
    token_secrets: tuple[str, ...]
    base_url: str
    one_click: bool  # links carry RFC 8058 List-Unsubscribe-Post (an HTTPS or loopback base)
    instance_dir: Path
    max_json_bytes: int
    idempotency_hours: int
    proxy_hops: int  # trusted reverse proxies in front (DESIGN §13); 0: forwarded headers ignored
    # Every section, typed and validated: components read theirs here and check nothing again.
    settings: Settings = field(repr=False)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"configuration file not found: {path}") from None
    except IsADirectoryError:
        raise ConfigError(f"configuration file {path} is a folder, not a file") from None
    except OSError as exc:
        raise ConfigError(f"configuration file {path} cannot be read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"configuration file {path} is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"configuration file {path} is not valid TOML: {exc}") from None


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
    return base


# Secrets are read beside the settings, never validated or shown with them: top-level
# `peppers` and `token_secrets` (test overrides; a SUPPRESS_CONFIG file) go to parse_peppers
# and parse_token_secrets instead.
SECRET_KEYS = ("peppers", "token_secrets")
# Short environment names the contract gives to settings inside a section (DESIGN §13);
# the long SUPPRESS_SECTION_KEY spelling works too, and the short one wins.
ENV_ALIASES: dict[str, Location] = {"SUPPRESS_PROXY_HOPS": ("server", "proxy_hops")}
# DESIGN §9 spells the receivers' settings SUPPRESS_WEBHOOK_<PROVIDER>_<KEY> (singular).
ENV_ALIASES.update(
    {
        f"SUPPRESS_WEBHOOK_{provider.upper()}_{key.upper()}": ("webhooks", provider, key)
        for provider, model in settings_module.WebhooksSettings.model_fields.items()
        for key in model.annotation.model_fields  # type: ignore[union-attr]
    }
)
# Name heads of the aliases, so that a typo under them is refused like one under a section.
ALIAS_HEADS = {name.removeprefix("SUPPRESS_").partition("_")[0] for name in ENV_ALIASES}
# Plain ASCII digits only: int() would also take "1_0", "+1", " 2 " and other scripts'
# digits, and a proxy count of 10 read from "1_0" lets clients choose their address.
INTEGER = re.compile(r"-?[0-9]{1,18}")
NUMBER = re.compile(r"-?[0-9]{1,18}(\.[0-9]{1,18})?")


@dataclass
class Layered:
    """The merged settings, which environment variable set which key, and what the
    environment got wrong (a value that is no number is reported, and not applied)."""

    values: dict[str, Any]
    env_names: dict[Location, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def _coerce(text: str, kind: type) -> Any:
    """An environment string as `kind`; ValueError with what it must be."""
    if kind is bool:
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError("must be true or false")
    if kind is int:
        if not INTEGER.fullmatch(text):
            raise ValueError("must be an integer")
        return int(text)
    if kind is float:
        if not NUMBER.fullmatch(text):
            raise ValueError("must be a number")
        return float(text)
    return text


def env_names() -> dict[str, Location]:
    """Every SUPPRESS_* name of a setting: SUPPRESS_K for a top-level key k, SUPPRESS_S_K for
    key k of section [s], and the short aliases."""
    names = {
        "SUPPRESS_" + "_".join(str(part) for part in loc).upper(): loc
        for loc in settings_module.scalar_keys()
    }
    names.update(ENV_ALIASES)  # after the long names: the short one wins
    return names


def _apply_env(layered: Layered, env: dict[str, str]) -> None:
    kinds = settings_module.scalar_keys()
    known = env_names()
    sections = {str(loc[0]).upper() for loc in kinds if len(loc) > 1} | (ALIAS_HEADS - {"PROXY"})
    for name in sorted(env):
        # SUPPRESS_<SECTION>_<KEY> with a key no section has is a typo, never ours to skip
        # (other SUPPRESS_* names, such as SUPPRESS_URL for the client, are left alone).
        head = name.removeprefix("SUPPRESS_").partition("_")[0]
        if name.startswith("SUPPRESS_") and head in sections and name not in known:
            close = difflib.get_close_matches(name, list(known), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            layered.problems.append(f"{name}: unknown setting{hint}")
    for name, loc in known.items():
        if name not in env:
            continue
        try:
            value = _coerce(env[name], kinds[loc])
        except ValueError as exc:
            shown = settings_module.shown(env[name])
            layered.problems.append(
                f"{name} ({settings_module.where(loc)}): {exc}"
                + (f", not {shown}" if shown else "")
            )
            continue
        table = layered.values
        for part in map(str, loc[:-1]):
            table = table.setdefault(part, {})
        if isinstance(table, dict):  # else the file made the section no table: reported
            table[str(loc[-1])] = value
            layered.env_names[loc] = name


def parse_peppers(text: str) -> tuple[tuple[str, bytes], ...]:
    """Parse ``id:base64key,...`` into an ordered key ring; the first is active."""
    ring: list[tuple[str, bytes]] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        key_id, sep, encoded = item.partition(":")
        if not sep or not KEY_ID.match(key_id):
            raise ConfigError("peppers must look like 'id:base64key,...' (id: 1-16 of A-Za-z0-9_-)")
        try:
            key = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise ConfigError(f"pepper {key_id!r} is not valid base64") from None
        if len(key) < 16:
            raise ConfigError(f"pepper {key_id!r} is too short: at least 16 bytes are required")
        if any(existing == key_id for existing, _ in ring):
            raise ConfigError(f"pepper id {key_id!r} appears twice")
        ring.append((key_id, key))
    return tuple(ring)


def parse_token_secrets(text: str) -> tuple[str, ...]:
    """Parse comma-separated token secrets, each at least MIN_TOKEN_SECRET characters long."""
    found = tuple(s.strip() for s in text.split(",") if s.strip())
    for number, secret in enumerate(found, start=1):
        if len(secret) < MIN_TOKEN_SECRET:
            # Which one, never what: the message ends up in logs.
            raise ConfigError(
                f"token secret {number} of {len(found)} is too short: "
                f"at least {MIN_TOKEN_SECRET} characters are required"
            )
    return found


def _read_secrets(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"secrets file {path} is readable by others; run: chmod 600 {path}")
    return _read_toml(path)


def generate_secrets(path: Path) -> bool:
    """Create the 0600 secrets file with a fresh pepper and token secret; False if present.

    A missing folder (the instance folder) is created 0700.
    """
    files.private_dir(path.parent)
    pepper = base64.b64encode(secrets.token_bytes(32)).decode()
    key_id = "k" + clock.utcnow().strftime("%Y%m%d")
    text = (
        "# suppress secrets: keep private, back up separately from the database.\n"
        "# Losing the pepper makes every stored suppression unmatchable.\n"
        f'peppers = "{key_id}:{pepper}"\n'
        f'token_secrets = "{secrets.token_urlsafe(32)}"\n'
    )
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    os.fchmod(fd, files.FILE_MODE)  # the umask may have taken more than group and others
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    return True


def load(overrides: dict[str, Any] | None = None, env: dict[str, str] | None = None) -> Config:
    """Layer defaults, SUPPRESS_CONFIG, SUPPRESS_* and overrides into a validated Config.

    Every problem is reported at once, in one line, each naming its key as TOML spells it
    (and the environment variable, when one set it): see suppress.settings.
    """
    env = dict(os.environ if env is None else env)
    layered = _layers(overrides, env)
    given = {key: layered.values.pop(key) for key in SECRET_KEYS if key in layered.values}
    try:
        settings = _validated(layered)
    except ConfigError as exc:
        # A secret pasted into an ordinary setting must not be repeated by its error.
        raise _scrubbed(exc, _secret_values(given, env, layered.values)) from None
    instance_dir = Path(settings.instance_dir or "instance").resolve()
    secrets_file = _secrets_file(settings)
    stored = _read_secrets(secrets_file)
    pepper_text = str(
        given.get("peppers") or env.get("SUPPRESS_PEPPERS") or stored.get("peppers", "")
    )
    token_text = str(
        given.get("token_secrets")
        or env.get("SUPPRESS_TOKEN_SECRETS")
        or stored.get("token_secrets", "")
    )
    problems: list[str] = []
    try:
        peppers = parse_peppers(pepper_text)
        if not peppers:
            problems.append(
                "no pepper configured: set SUPPRESS_PEPPERS or run 'suppress init' "
                f"to create {secrets_file}"
            )
    except ConfigError as exc:
        problems.append(exc.message)
    try:
        token_secrets = parse_token_secrets(token_text)
        if not token_secrets:
            problems.append(
                "no token secret configured: set SUPPRESS_TOKEN_SECRETS or run 'suppress init' "
                f"to create {secrets_file}"
            )
    except ConfigError as exc:
        problems.append(exc.message)
    if problems:
        raise refused(problems)

    database = settings.database
    return Config(
        database_url=database.url or f"sqlite:///{instance_dir / 'suppress.db'}",
        sqlite_busy_timeout_ms=database.sqlite_busy_timeout_ms,
        statement_timeout_ms=database.statement_timeout_ms,
        pool_size=database.pool_size,
        peppers=peppers,
        token_secrets=token_secrets,
        base_url=settings.base_url.rstrip("/"),
        one_click=settings.one_click,
        instance_dir=instance_dir,
        max_json_bytes=settings.api.max_json_bytes,
        idempotency_hours=settings.api.idempotency_hours,
        proxy_hops=settings.server.proxy_hops,
        settings=settings,
    )


def _secret_values(
    given: dict[str, Any], env: dict[str, str], values: dict[str, Any] | None = None
) -> list[str]:
    texts = [str(given.get(key) or "") for key in SECRET_KEYS]
    texts += [env.get("SUPPRESS_PEPPERS", ""), env.get("SUPPRESS_TOKEN_SECRETS", "")]
    hooks = (values or {}).get("webhooks")
    for provider, key in settings_module.WEBHOOK_SECRETS:
        table = hooks.get(provider) if isinstance(hooks, dict) else None
        value = table.get(key) if isinstance(table, dict) else None
        if isinstance(value, str):
            texts.append(value)
    found: list[str] = []
    for text in texts:
        for item in (part.strip() for part in text.split(",")):
            found += [item, item.partition(":")[2]]
    # Longest first, so a whole "id:key" goes before its key part; short ones are no secret.
    return sorted({value for value in found if len(value) >= 8}, key=len, reverse=True)


def _scrubbed(exc: ConfigError, secrets: list[str]) -> ConfigError:
    def scrub(text: str) -> str:
        for secret in secrets:
            text = text.replace(secret, "[secret]")
        return text

    return refused([scrub(problem) for problem in exc.problems])


def refused(problems: list[str]) -> ConfigError:
    """One ConfigError for every problem found, on one line."""
    if len(problems) == 1:
        return ConfigError(problems[0], problems=problems)
    return ConfigError(
        f"{len(problems)} configuration problems: " + "; ".join(problems), problems=problems
    )


def _validated(layered: Layered) -> Settings:
    problems = list(layered.problems)
    try:
        settings = Settings.model_validate(layered.values)
    except ValidationError as exc:
        problems += settings_module.problems(exc, layered.env_names)
    if problems:
        raise refused(problems)
    return settings


def _layers(overrides: dict[str, Any] | None, env: dict[str, str]) -> Layered:
    layered = Layered(_read_toml(DEFAULT_FILE))
    extra = env.get("SUPPRESS_CONFIG")
    if extra:
        _merge(layered.values, _read_toml(Path(extra)))
    _apply_env(layered, env)
    if overrides:
        _merge(layered.values, copy.deepcopy(overrides))
        for loc in list(layered.env_names):  # overrides come last: no longer the variable's
            if _leaf(overrides, loc):
                del layered.env_names[loc]
    return layered


def _leaf(tree: dict[str, Any], loc: Location) -> bool:
    node: Any = tree
    for part in loc:
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def _secrets_file(settings: Settings) -> Path:
    instance_dir = Path(settings.instance_dir or "instance").resolve()
    return Path(settings.secrets.file or instance_dir / "secrets.toml")


def secrets_path(overrides: dict[str, Any] | None = None) -> Path:
    """Where the secrets file lives, without requiring it to exist yet (the settings must be
    valid: `suppress init` refuses a wrong configuration before it writes anything)."""
    layered = _layers(overrides, dict(os.environ))
    for key in SECRET_KEYS:
        layered.values.pop(key, None)
    return _secrets_file(_validated(layered))
