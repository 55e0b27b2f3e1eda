"""Every configuration setting as a typed model, one per TOML section, validated once at start.

The models mirror `config/default.toml` key for key, with the same defaults (a test keeps the
two equal). Unknown keys are refused (`extra="forbid"`), types are strict (`workers = "4"` is
not a number), ranges are field constraints, and each value that needs more than a type (a
rate, a time zone, a list name) has a validator here: the components read the validated
values and check nothing again. `config.load` layers the sources and turns a ValidationError
into one line per problem with `problems`.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from collections.abc import Mapping, Sequence
from datetime import time as dtime
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
)
from pydantic import field_validator as _field_validator
from pydantic_core import PydanticCustomError

# Reconcile source and audit names (they end up in suppression sources and file names).
NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
# Must stay sources.FORMATS (a test says so): the parser of each format lives there.
SourceFormat = Literal["generic", "mailchimp", "sendgrid", "ses", "postmark"]
TRANSLATIONS = Path(__file__).resolve().parent / "translations"
# Message ids are English; every other language is a compiled catalog in TRANSLATIONS.
SOURCE_LANGUAGE = "en"
LOCAL_TIME = re.compile(r"^[0-9]{2}:[0-9]{2}(:[0-9]{2})?$")
# PostgreSQL and SQLite take these timeouts as a C int of milliseconds.
MAX_MS = 2**31 - 1
# Values longer than this, or holding an @ (an address, credentials in a URL), are not
# repeated in error messages.
SHOWN_MAX = 64


def field_validator(*fields: str) -> Any:
    """Pydantic's field_validator in "after" mode (typed loosely for mypy)."""
    return _field_validator(*fields, mode="after")


def _problem(message: str, at: tuple[str | int, ...] = ()) -> PydanticCustomError:
    """A validation error with our own message; `at` extends its location (list entries)."""
    return PydanticCustomError("setting", message, {"at": at})


class Section(BaseModel):
    """A TOML table: unknown keys refused, no type coercion, immutable once validated."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


# What the service can connect to: SQLite, and PostgreSQL through psycopg 3 (installed).
DATABASE_DRIVERS = {"sqlite": ("", "pysqlite"), "postgresql": ("psycopg",)}
# Rate-limit counters: in this process, or in Redis (the [redis] extra is installed).
LIMIT_STORAGES = ("memory", "redis", "rediss", "redis+unix", "redis+sentinel", "redis+cluster")


class DatabaseSettings(Section):
    url: str = ""

    @field_validator("url")
    @classmethod
    def _is_database_url(cls, value: str) -> str:
        if not value:
            return value
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            parsed = make_url(value)
        except (ArgumentError, ValueError):
            raise _problem("is not a database URL such as sqlite:///path/suppress.db") from None
        drivers = DATABASE_DRIVERS.get(parsed.get_backend_name())
        if (
            drivers is None
            or (parsed.get_driver_name() or "") not in drivers
            and not (parsed.get_backend_name() == "sqlite" and "+" not in parsed.drivername)
        ):
            raise _problem(
                "must be sqlite:///PATH or postgresql+psycopg://USER@HOST:PORT/DATABASE, "
                f"not a {parsed.drivername} URL"
            )
        return value

    sqlite_busy_timeout_ms: int = Field(default=5000, ge=0, le=MAX_MS)
    statement_timeout_ms: int = Field(default=10000, ge=0, le=MAX_MS)
    pool_size: int = Field(default=5, ge=1, le=1000)


class SecretsSettings(Section):
    file: str = ""


class ServerSettings(Section):
    host: str = "127.0.0.1"
    # A worker count from a typo (80000 for 8) would fork until memory runs out; one proxy
    # hop too many lets clients choose their address.
    port: int = Field(default=8000, ge=1, le=65535)
    workers: int = Field(default=2, ge=1, le=64)
    timeout: int = Field(default=600, ge=1, le=86400)
    proxy_hops: int = Field(default=0, ge=0, le=10)


class ApiSettings(Section):
    max_json_bytes: int = Field(default=1048576, ge=1)
    # At most a year: the hourly expire job computes "now minus this" as a date.
    idempotency_hours: int = Field(default=48, ge=1, le=8784)


class MetricsSettings(Section):
    # Seconds; a fraction is fine. A TOML integer is taken as a number too.
    gauge_ttl_seconds: float = Field(default=60, ge=0, allow_inf_nan=False)


class UnsubscribeSettings(Section):
    allow_insecure_base_url: bool = False


def bounds(model: type[BaseModel], key: str) -> tuple[int, int]:
    """The inclusive range of an integer field (for command-line options that override it)."""
    low, high = None, None
    for item in model.model_fields[key].metadata:
        low = getattr(item, "ge", low)
        high = getattr(item, "le", high)
    assert isinstance(low, int) and isinstance(high, int), key
    return low, high


def page_languages() -> tuple[str, ...]:
    """English and every language with a compiled catalog, as Flask-Babel lists them."""
    from babel import Locale, UnknownLocaleError

    codes = {SOURCE_LANGUAGE}
    if TRANSLATIONS.is_dir():
        for folder in TRANSLATIONS.iterdir():
            messages = folder / "LC_MESSAGES"
            if messages.is_dir() and any(p.suffix == ".mo" for p in messages.iterdir()):
                try:
                    codes.add(str(Locale.parse(folder.name)))
                except (UnknownLocaleError, ValueError):
                    continue
    return tuple(sorted(codes))


class PagesSettings(Section):
    default_language: str = "sv"

    @field_validator("default_language")
    @classmethod
    def _has_catalog(cls, value: str) -> str:
        have = page_languages()
        if value not in have:
            raise _problem(
                f"{shown(value, 'that language')} has no catalog; have: {', '.join(have)}"
            )
        return value


class ConsoleSettings(Section):
    """[console]: sessions, lockout and uploads of the console for people (DESIGN §12)."""

    idle_minutes: int = Field(default=30, ge=1, le=24 * 60)
    session_hours: int = Field(default=8, ge=1, le=7 * 24)
    lockout_attempts: int = Field(default=5, ge=1, le=100)
    lockout_minutes: int = Field(default=15, ge=1, le=7 * 24 * 60)
    import_max_bytes: int = Field(default=104857600, ge=1024, le=2**40)


class RateLimitSettings(Section):
    pages: str = "120 per minute"
    api: str = "1000 per second"
    login: str = "10 per minute"
    storage_url: str = "memory://"
    enabled: bool = True

    @field_validator("storage_url")
    @classmethod
    def _is_storage(cls, value: str) -> str:
        scheme = value.partition("://")[0]
        if "://" not in value or scheme not in LIMIT_STORAGES:
            raise _problem(
                "must be memory:// or a Redis URL (redis://HOST:6379/0, rediss://, "
                f"redis+unix://, redis+sentinel://, redis+cluster://){_not(value)}"
            )
        return value

    @field_validator("pages", "api", "login")
    @classmethod
    def _is_rate(cls, value: str) -> str:
        from limits import parse_many

        try:
            if not parse_many(value):
                raise ValueError(value)
        except ValueError:
            raise _problem(f"must be a rate such as '120 per minute'{_not(value)}") from None
        return value


def _check_name(value: str) -> str:
    if not NAME.fullmatch(value):
        raise _problem(
            "must be 1-32 characters of a-z, 0-9, _ and - starting with a letter or digit"
            + _not(value)
        )
    return value


def _check_list(value: str) -> str:
    from .errors import SuppressError
    from .suppressions import validate_list

    try:
        return validate_list(value)
    except SuppressError as exc:
        raise _problem(exc.message + _not(value)) from None


EntryName = Annotated[str, AfterValidator(_check_name)]
ListName = Annotated[str, AfterValidator(_check_list)]


class SourceSettings(Section):
    """One `[[reconcile.sources]]` table: a folder of a mailing tool's opt-out exports."""

    name: EntryName
    folder: str = Field(min_length=1)
    format: SourceFormat = "generic"
    list: ListName
    reason: str = ""

    @field_validator("reason")
    @classmethod
    def _is_reason(cls, value: str) -> str:
        from .models import Reason

        if value and value not in {r.value for r in Reason}:
            raise _problem(
                f"must be empty or one of {', '.join(r.value for r in Reason)}{_not(value)}"
            )
        return value


class AuditSettings(Section):
    """One `[[reconcile.audits]]` table: a CRM export checked against a list."""

    name: EntryName
    file: str = Field(min_length=1)
    list: ListName


def _unique_names(entries: Sequence[SourceSettings | AuditSettings | ListSettings]) -> None:
    seen: set[str] = set()
    for number, entry in enumerate(entries):
        if entry.name in seen:
            raise _problem(f"{entry.name!r} appears twice", (number, "name"))
        seen.add(entry.name)


class ReconcileSettings(Section):
    reports_folder: str = ""
    soft_bounce_days: int = Field(default=30, ge=1, le=3660)
    sources: list[SourceSettings] = []
    audits: list[AuditSettings] = []

    @field_validator("sources", "audits")
    @classmethod
    def _unique(cls, value: Any) -> Any:
        _unique_names(value)
        return value


# An SNS topic: arn:<partition>:sns:<region>:<12-digit account>:<name>.
TOPIC_ARN = re.compile(
    r"^arn:aws(-[a-z]+)*:sns:[a-z0-9-]+:[0-9]{12}:[A-Za-z0-9_-]{1,256}(\.fifo)?$"
)


class OrganisationSettings(Section):
    """[organisation]: who sends the mail, named on the unsubscribe page (DESIGN §10)."""

    name: str = ""
    privacy_url: str = ""

    @field_validator("privacy_url")
    @classmethod
    def _is_web_address(cls, value: str) -> str:
        if value:
            try:
                parts = urlsplit(value)
            except ValueError:
                parts = None
            if parts is None or parts.scheme != "https" or not parts.hostname:
                raise _problem(f"must be an https:// address{_not(value)}")
        return value


def _texts(value: dict[str, str], info: ValidationInfo) -> dict[str, str]:
    """A text per page language: every language the pages speak, and no other."""
    have = set(page_languages())
    unknown = sorted(set(value) - have)
    if unknown:
        raise _problem(
            f"has no page language {', '.join(unknown)}; have: {', '.join(sorted(have))}"
        )
    missing = sorted(code for code in have if not value.get(code, "").strip())
    if missing and (info.field_name == "title" or value):
        raise _problem(f"needs a text in {', '.join(missing)} (every page language)")
    return value


class ListSettings(Section):
    """One `[[lists]]` table: a declared list, offered on the unsubscribe page."""

    name: ListName
    title: dict[str, str]
    description: dict[str, str] = {}

    @field_validator("name")
    @classmethod
    def _not_global(cls, value: str) -> str:
        from .models import GLOBAL_LIST

        if value == GLOBAL_LIST:
            raise _problem("'global' means all direct marketing and is no list to declare")
        return value

    @field_validator("title", "description")
    @classmethod
    def _in_every_language(cls, value: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        return _texts(value, info)


class HookSettings(Section):
    """What every provider's receiver has: the list its unsubscribe events suppress."""

    list: ListName = "global"


class SendgridHook(HookSettings):
    # base64 DER SubjectPublicKeyInfo, as SendGrid's settings page shows it (not secret).
    public_key: str = ""

    @field_validator("public_key")
    @classmethod
    def _is_p256_key(cls, value: str) -> str:
        if not value:
            return value
        import base64
        import binascii

        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.serialization import load_der_public_key

        try:
            key = load_der_public_key(base64.b64decode(value.strip(), validate=True))
        except (binascii.Error, ValueError, TypeError):
            raise _problem(
                "must be the verification key SendGrid shows (base64 of a DER public key)"
            ) from None
        if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
            raise _problem("must be a P-256 (secp256r1) elliptic-curve public key")
        return value.strip()


# A shared webhook secret this short could be guessed: refused at start.
MIN_WEBHOOK_SECRET = 16


def _strong(value: str) -> str:
    if value and len(value) < MIN_WEBHOOK_SECRET:
        raise _problem(
            f"is too short: a webhook secret needs at least {MIN_WEBHOOK_SECRET} characters "
            "(a random one, such as python3 -c 'import secrets; print(secrets.token_urlsafe(24))')"
        )
    return value


class MailgunHook(HookSettings):
    signing_key: str = ""

    @field_validator("signing_key")
    @classmethod
    def _is_strong(cls, value: str) -> str:
        return _strong(value)


class PostmarkHook(HookSettings):
    # user:password, as put in the webhook URL or Postmark's HTTP auth fields.
    basic_auth: str = ""

    @field_validator("basic_auth")
    @classmethod
    def _is_user_password(cls, value: str) -> str:
        user, sep, password = value.partition(":")
        if value and not (sep and user and password):
            raise _problem("must be user:password, both parts non-empty")
        _strong(password)
        return value


class BrevoHook(HookSettings):
    token: str = ""

    @field_validator("token")
    @classmethod
    def _is_strong(cls, value: str) -> str:
        return _strong(value)


class SesHook(HookSettings):
    # Comma-separated SNS topic ARNs whose notifications are taken.
    topic_arns: str = ""

    @field_validator("topic_arns")
    @classmethod
    def _are_topics(cls, value: str) -> str:
        if value and not value.replace(",", "").strip():
            raise _problem("names no topic: give one or more SNS topic ARNs, comma-separated")
        for number, arn in enumerate((a.strip() for a in value.split(",") if a.strip()), 1):
            if not TOPIC_ARN.fullmatch(arn):
                raise _problem(
                    f"entry {number} must be an SNS topic ARN such as "
                    f"arn:aws:sns:eu-north-1:123456789012:ses-events{_not(arn)}"
                )
        return value

    @property
    def topics(self) -> tuple[str, ...]:
        return tuple(a.strip() for a in self.topic_arns.split(",") if a.strip())


# Settings of the webhook receivers that are secrets: never shown in an error message.
WEBHOOK_SECRETS = (("mailgun", "signing_key"), ("postmark", "basic_auth"), ("brevo", "token"))
# The setting that enables each provider's receiver (its secret, or what stands for one).
WEBHOOK_ENABLED_BY = {
    "sendgrid": "public_key",
    "mailgun": "signing_key",
    "postmark": "basic_auth",
    "brevo": "token",
    "ses": "topic_arns",
}


class WebhooksSettings(Section):
    """[webhooks.<provider>]: a receiver is enabled when its secret is set (DESIGN §9)."""

    sendgrid: SendgridHook = SendgridHook()
    mailgun: MailgunHook = MailgunHook()
    postmark: PostmarkHook = PostmarkHook()
    brevo: BrevoHook = BrevoHook()
    ses: SesHook = SesHook()

    def enabled(self, provider: str) -> bool:
        return bool(getattr(getattr(self, provider), WEBHOOK_ENABLED_BY[provider]))


def _time_text(value: Any) -> Any:
    """TOML's own local time (`reconcile_at = 02:30`, unquoted) as the text it stands for."""
    if isinstance(value, dtime) and value.tzinfo is None and not value.microsecond:
        return value.isoformat()
    return value


# "HH:MM" or "HH:MM:SS", quoted or as a TOML local time.
LocalTime = Annotated[str, BeforeValidator(_time_text)]


def _check_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise _problem(f"must be an IANA time zone such as Europe/Stockholm{_not(value)}") from None
    return value


class SchedulerSettings(Section):
    timezone: str = "Europe/Stockholm"
    reconcile_at: LocalTime = "02:30"
    verify_audit_at: LocalTime = "02:30"
    expire_minute: int = Field(default=5, ge=0, le=59)
    # Bounded so every date computed from them stays a date (a lease of 10^11 s does not).
    misfire_grace_seconds: int = Field(default=21600, ge=1, le=7 * 86400)
    lease_seconds: int = Field(default=300, ge=1, le=86400)
    lease_wait_seconds: int = Field(default=900, ge=1, le=86400)
    catch_up_minutes: int = Field(default=15, ge=1, le=1440)

    @field_validator("timezone")
    @classmethod
    def _is_zone(cls, value: str) -> str:
        return _check_zone(value)

    @field_validator("reconcile_at", "verify_audit_at")
    @classmethod
    def _is_local_time(cls, value: str) -> str:
        try:
            if not LOCAL_TIME.fullmatch(value):
                raise ValueError(value)
            dtime.fromisoformat(value)
        except ValueError:
            raise _problem(f"must be a local time HH:MM or HH:MM:SS{_not(value)}") from None
        return value

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def reconcile_time(self) -> dtime:
        return dtime.fromisoformat(self.reconcile_at)

    @property
    def verify_audit_time(self) -> dtime:
        return dtime.fromisoformat(self.verify_audit_at)


class ComplianceSettings(Section):
    """The controller's clock for data-subject requests (DESIGN §11)."""

    # The zone whose calendar days the deadlines are counted in.
    timezone: str = "Europe/Stockholm"

    @field_validator("timezone")
    @classmethod
    def _is_zone(cls, value: str) -> str:
        return _check_zone(value)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses (127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _host(base_url: str) -> str | None:
    try:
        return urlsplit(base_url).hostname
    except ValueError:
        return None


class Settings(Section):
    """The whole configuration: top-level keys and one model per section."""

    # Sections first: base_url's check reads [unsubscribe], validated before it.
    database: DatabaseSettings = DatabaseSettings()
    secrets: SecretsSettings = SecretsSettings()
    server: ServerSettings = ServerSettings()
    api: ApiSettings = ApiSettings()
    metrics: MetricsSettings = MetricsSettings()
    unsubscribe: UnsubscribeSettings = UnsubscribeSettings()
    pages: PagesSettings = PagesSettings()
    console: ConsoleSettings = ConsoleSettings()
    ratelimit: RateLimitSettings = RateLimitSettings()
    reconcile: ReconcileSettings = ReconcileSettings()
    scheduler: SchedulerSettings = SchedulerSettings()
    compliance: ComplianceSettings = ComplianceSettings()
    webhooks: WebhooksSettings = WebhooksSettings()
    organisation: OrganisationSettings = OrganisationSettings()
    lists: list[ListSettings] = []
    base_url: str = "http://127.0.0.1:8000"
    instance_dir: str = "instance"

    @field_validator("lists")
    @classmethod
    def _unique_lists(cls, value: Any) -> Any:
        _unique_names(value)
        return value

    def declared(self, name: str) -> ListSettings | None:
        """The declared list of that name, if any."""
        return next((entry for entry in self.lists if entry.name == name), None)

    @field_validator("base_url")
    @classmethod
    def _serves_one_click(cls, value: str, info: ValidationInfo) -> str:
        """RFC 8058 §3.1 requires an HTTPS URI for one-click. Plain http is refused unless the
        host is loopback (tests, `make run`) or the operator has allowed it, and then links
        carry no List-Unsubscribe-Post: a mail client would otherwise POST the opt-out in
        clear text."""
        if not value.startswith(("http://", "https://")):
            raise _problem(f"must start with http:// or https://{_not(value)}")
        host = _host(value)
        if not host:
            raise _problem(f"must name a host{_not(value)}")
        unsubscribe = info.data.get("unsubscribe")
        if unsubscribe is None:  # [unsubscribe] is wrong itself, and reported
            return value
        if value.startswith("https://") or is_loopback(host) or unsubscribe.allow_insecure_base_url:
            return value
        raise _problem(
            f"{shown(value, 'the base URL')} is plain http on a host other than loopback: "
            "RFC 8058 one-click needs https; use an https:// base_url, or set [unsubscribe] "
            "allow_insecure_base_url = true (SUPPRESS_UNSUBSCRIBE_ALLOW_INSECURE_BASE_URL) to "
            "send links without List-Unsubscribe-Post"
        )

    @property
    def one_click(self) -> bool:
        """Whether links may offer RFC 8058 one-click: an https or loopback base URL."""
        host = _host(self.base_url) or ""
        return self.base_url.startswith("https://") or is_loopback(host)


# --- error messages ---------------------------------------------------------------------------

Location = tuple[str | int, ...]
ENTRY_LISTS = {("reconcile", "sources"), ("reconcile", "audits")}
TOP_LISTS = {"lists"}


def shown(value: Any, instead: str = "") -> str:
    """The value for an error message, unless it is long or may carry an address or password."""
    if isinstance(value, str):
        if len(value) > SHOWN_MAX or "@" in value or not value.isprintable():
            return instead
        return repr(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


def _not(value: Any) -> str:
    text = shown(value)
    return f", not {text}" if text else ""


def where(loc: Location, *, table: bool = False) -> str:
    """A location as an operator writes it: `base_url`, `[server] workers`, `[[reconcile.
    sources]] #2 folder`; a whole table as `[server]`."""
    parts = list(loc)
    if not parts:
        return "configuration"
    if len(parts) >= 3 and tuple(parts[:2]) in ENTRY_LISTS and isinstance(parts[2], int):
        head = f"[[{parts[0]}.{parts[1]}]] #{parts[2] + 1}"
        rest = ".".join(str(p) for p in parts[3:])
        return f"{head} {rest}" if rest else head
    if len(parts) >= 2 and parts[0] in TOP_LISTS and isinstance(parts[1], int):
        head = f"[[{parts[0]}]] #{parts[1] + 1}"
        rest = ".".join(str(p) for p in parts[2:])
        return f"{head} {rest}" if rest else head
    if len(parts) == 1:
        return f"[{parts[0]}]" if table or _section(str(parts[0])) else str(parts[0])
    # The deepest table the location is in: [webhooks.ses] topic_arns, not [webhooks] ses....
    depth = 1
    while depth < len(parts) - 1 and known_keys(tuple(parts[: depth + 1])):
        depth += 1
    head = ".".join(str(p) for p in parts[:depth])
    if depth == len(parts) - 1 and table and known_keys(tuple(parts)):
        return f"[{head}.{parts[-1]}]"
    return f"[{head}] " + ".".join(str(p) for p in parts[depth:])


def _section(name: str) -> bool:
    field = Settings.model_fields.get(name)
    return field is not None and _model(field.annotation) is not None


def _model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) is list:
        return _model(get_args(annotation)[0])
    return None


def known_keys(loc: Location) -> tuple[str, ...]:
    """The keys the table at `loc` may hold (empty if `loc` is no table)."""
    model: type[BaseModel] | None = Settings
    for part in loc:
        if model is None:
            return ()
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        model = None if field is None else _model(field.annotation)
    return tuple(model.model_fields) if model is not None else ()


TYPES = {
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "int_from_float": "must be an integer",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "string_type": "must be a string (in quotes)",
    "float_type": "must be a number",
    "list_type": "must be a list",
    "model_type": "must be a table",
    "model_attributes_type": "must be a table",
    "dict_type": "must be a table",
    "string_too_short": "must not be empty",
}
BOUNDS = {
    "greater_than_equal": ("ge", "at least"),
    "less_than_equal": ("le", "at most"),
    "greater_than": ("gt", "more than"),
    "less_than": ("lt", "less than"),
}


def message(error: Mapping[str, Any]) -> tuple[Location, str]:
    """Where a pydantic error is and what an operator should read about it."""
    kind = str(error["type"])
    loc: Location = tuple(error["loc"])
    ctx = error.get("ctx") or {}
    value = error.get("input")
    if kind == "setting":
        return loc + tuple(ctx.get("at", ())), str(error["msg"])
    if kind == "extra_forbidden":
        what = "unknown section" if len(loc) == 1 and isinstance(value, dict) else "unknown setting"
        close = difflib.get_close_matches(str(loc[-1]), known_keys(loc[:-1]), n=1)
        return loc, what + (f" (did you mean {close[0]}?)" if close else "")
    if kind == "missing":
        return loc, "required"
    if kind in TYPES:
        return loc, TYPES[kind] + _not(value)
    if kind in BOUNDS:
        key, words = BOUNDS[kind]
        return loc, f"must be {words} {ctx.get(key)}{_not(value)}"
    if kind == "literal_error":
        return loc, f"must be {ctx.get('expected')}{_not(value)}"
    if kind == "value_error" and "error" in ctx:
        return loc, str(ctx["error"])
    text = str(error["msg"])
    return loc, text[:1].lower() + text[1:]


def problems(exc: ValidationError, env_names: Mapping[Location, str] | None = None) -> list[str]:
    """One line per problem: `[server] workers: must be at most 64, not 100`; a value from the
    environment names its variable first: `SUPPRESS_SERVER_WORKERS ([server] workers): ...`."""
    lines = []
    for error in exc.errors():
        loc, text = message(error)
        place = where(
            loc, table=error["type"] == "extra_forbidden" and isinstance(error.get("input"), dict)
        )
        env = (env_names or {}).get(loc)
        lines.append(f"{env} ({place}): {text}" if env else f"{place}: {text}")
    return lines


def scalar_keys() -> dict[Location, type]:
    """Every key the environment may set (SUPPRESS_KEY, SUPPRESS_SECTION_KEY,
    SUPPRESS_SECTION_TABLE_KEY), with its type: the scalars of the top level, of each section
    and of each table inside one; lists of tables are set in files."""
    found: dict[Location, type] = {}

    def walk(model: type[BaseModel], at: Location) -> None:
        for key, sub in model.model_fields.items():
            inner = _model(sub.annotation)
            if inner is None:
                found[at + (key,)] = sub.annotation  # type: ignore[assignment]
            elif get_origin(sub.annotation) is None:
                walk(inner, at + (key,))

    walk(Settings, ())
    return found
