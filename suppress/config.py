"""Load and validate layered configuration and secrets; fail fast on anything wrong."""

from __future__ import annotations

import base64
import binascii
import copy
import ipaddress
import os
import re
import secrets
import stat
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from . import clock, files
from .errors import ConfigError

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
    server: dict[str, Any]
    max_json_bytes: int
    idempotency_hours: int
    proxy_hops: int  # trusted reverse proxies in front (DESIGN §13); 0: forwarded headers ignored
    raw: dict[str, Any] = field(repr=False)

    def section(self, name: str) -> dict[str, Any]:
        """A whole TOML section, for the components that own it."""
        value = self.raw.get(name, {})
        return value if isinstance(value, dict) else {}


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"configuration file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"configuration file {path} is not valid TOML: {exc}") from None


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
    return base


def _coerce(name: str, text: str, default: Any) -> Any:
    if isinstance(default, bool):
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{name} must be true or false, not {text!r}")
    if isinstance(default, int):
        # Plain ASCII digits only: int() would also take "1_0", "+1", " 2 " and other scripts'
        # digits, and a proxy count of 10 read from "1_0" lets clients choose their address.
        if not re.fullmatch(r"-?[0-9]{1,18}", text):
            raise ConfigError(f"{name} must be an integer, not {text!r}")
        return int(text)
    if isinstance(default, float):
        try:
            return float(text)
        except ValueError:
            raise ConfigError(f"{name} must be a number, not {text!r}") from None
    return text


# Short environment names the contract gives to settings inside a section (DESIGN §13);
# the long SUPPRESS_SECTION_KEY spelling works too, and the short one wins.
ENV_ALIASES = {"SUPPRESS_PROXY_HOPS": ("server", "proxy_hops")}


def _apply_env(settings: dict[str, Any], env: dict[str, str]) -> None:
    for key, value in list(settings.items()):
        if isinstance(value, dict):
            for sub, default in value.items():
                name = f"SUPPRESS_{key}_{sub}".upper()
                if name in env and not isinstance(default, (dict, list)):
                    value[sub] = _coerce(name, env[name], default)
        else:
            name = f"SUPPRESS_{key}".upper()
            if name in env and not isinstance(value, list):
                settings[key] = _coerce(name, env[name], value)
    for name, (section, key) in ENV_ALIASES.items():
        if name in env and isinstance(settings.get(section), dict):
            settings[section][key] = _coerce(name, env[name], settings[section].get(key, 0))


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
    """Layer defaults, SUPPRESS_CONFIG, SUPPRESS_* and overrides into a validated Config."""
    env = dict(os.environ if env is None else env)
    settings = _layers(overrides, env)
    instance_dir = Path(settings.get("instance_dir") or "instance").resolve()
    secrets_file = _secrets_file(settings)
    stored = _read_secrets(secrets_file)
    pepper_text = str(
        settings.get("peppers") or env.get("SUPPRESS_PEPPERS") or stored.get("peppers", "")
    )
    token_text = str(
        settings.get("token_secrets")
        or env.get("SUPPRESS_TOKEN_SECRETS")
        or stored.get("token_secrets", "")
    )
    peppers = parse_peppers(pepper_text)
    if not peppers:
        raise ConfigError(
            "no pepper configured: set SUPPRESS_PEPPERS or run 'suppress init' "
            f"to create {secrets_file}"
        )
    token_secrets = parse_token_secrets(token_text)
    if not token_secrets:
        raise ConfigError(
            "no token secret configured: set SUPPRESS_TOKEN_SECRETS or run 'suppress init' "
            f"to create {secrets_file}"
        )

    database = settings["database"]
    url = database.get("url") or f"sqlite:///{instance_dir / 'suppress.db'}"
    base_url = str(settings.get("base_url", "")).rstrip("/")
    one_click = _one_click(base_url, bool(settings["unsubscribe"]["allow_insecure_base_url"]))
    api = settings["api"]
    # A worker count from a typo (80000 for 8) would fork until memory runs out; one proxy hop
    # too many lets clients choose their address.
    server = settings["server"]
    for key, low, high in (
        ("port", 1, 65535),
        ("workers", 1, 64),
        ("timeout", 1, 86400),
        ("proxy_hops", 0, 10),
    ):
        value = server.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ConfigError(
                f"[server] {key} must be an integer from {low} to {high}, not {value!r}"
            )
    return Config(
        database_url=url,
        sqlite_busy_timeout_ms=int(database["sqlite_busy_timeout_ms"]),
        statement_timeout_ms=int(database["statement_timeout_ms"]),
        pool_size=int(database["pool_size"]),
        peppers=peppers,
        token_secrets=token_secrets,
        base_url=base_url,
        one_click=one_click,
        instance_dir=instance_dir,
        server=dict(settings["server"]),
        max_json_bytes=int(api["max_json_bytes"]),
        idempotency_hours=int(api["idempotency_hours"]),
        proxy_hops=int(server["proxy_hops"]),
        raw=settings,
    )


def _is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses (127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _one_click(base_url: str, allow_insecure: bool) -> bool:
    """Whether links on base_url may offer RFC 8058 one-click; ConfigError if it may not serve.

    RFC 8058 §3.1 requires an HTTPS URI for one-click. Plain http is refused unless the host
    is loopback (tests, `make run`) or the operator has allowed it, and then links carry no
    List-Unsubscribe-Post: a mail client would otherwise POST the opt-out in clear text.
    """
    if not base_url.startswith(("http://", "https://")):
        raise ConfigError(f"base_url must start with http:// or https://, not {base_url!r}")
    try:
        host = urlsplit(base_url).hostname
    except ValueError:
        host = None
    if not host:
        raise ConfigError(f"base_url must name a host, not {base_url!r}")
    if base_url.startswith("https://") or _is_loopback(host):
        return True
    if allow_insecure:
        return False
    raise ConfigError(
        f"base_url {base_url!r} is plain http on a host other than loopback: RFC 8058 one-click "
        "needs https; use an https:// base_url, or set [unsubscribe] allow_insecure_base_url = "
        "true (SUPPRESS_UNSUBSCRIBE_ALLOW_INSECURE_BASE_URL) to send links without "
        "List-Unsubscribe-Post"
    )


def _layers(overrides: dict[str, Any] | None, env: dict[str, str]) -> dict[str, Any]:
    settings = _read_toml(DEFAULT_FILE)
    extra = env.get("SUPPRESS_CONFIG")
    if extra:
        _merge(settings, _read_toml(Path(extra)))
    _apply_env(settings, env)
    if overrides:
        _merge(settings, copy.deepcopy(overrides))
    return settings


def _secrets_file(settings: dict[str, Any]) -> Path:
    instance_dir = Path(settings.get("instance_dir") or "instance").resolve()
    return Path(settings["secrets"].get("file") or instance_dir / "secrets.toml")


def secrets_path(overrides: dict[str, Any] | None = None) -> Path:
    """Where the secrets file lives, without requiring it to exist yet."""
    return _secrets_file(_layers(overrides, dict(os.environ)))
