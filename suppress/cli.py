"""The `suppress` command line: serve, database, keys and the suppression list."""

from __future__ import annotations

import getpass
import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from datetime import datetime
from functools import wraps
from typing import IO, Any, TypeVar
from zoneinfo import ZoneInfo

import click
from sqlalchemy.exc import SQLAlchemyError

from . import access, addresses, apikeys, audit, bulk, clock, peppers, rights, suppressions, users
from . import config as config_module
from . import jobs as job_runs
from .errors import SuppressError
from .models import Outcome, Reason, RequestKind
from .runtime import Runtime
from .settings import WEBHOOK_ENABLED_BY, ServerSettings, bounds
from .webhooks import PROVIDERS

F = TypeVar("F", bound=Callable[..., Any])
EXIT_ERROR = 2


def actor() -> str:
    """How the audit trail names a CLI user."""
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # no login name in some containers
        return "cli:unknown"


def fail(message: str, code: int = EXIT_ERROR) -> None:
    """Print one line on stderr and exit non-zero."""
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def handled(command: F) -> F:
    """Turn domain errors into one stderr line and a non-zero exit."""

    @wraps(command)
    def inner(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except SuppressError as exc:
            fail(f"{exc.message} [{exc.code}]")
        except SQLAlchemyError as exc:
            # Unreachable server, missing schema: one line, never a traceback (nor a URL).
            fail(f"database unavailable ({type(exc).__name__}); nothing was changed [unavailable]")
        except OSError as exc:
            where = f": {exc.filename}" if exc.filename else ""
            fail(f"{exc.strerror or type(exc).__name__}{where}")

    return inner  # type: ignore[return-value]


_runtime: Runtime | None = None


def runtime(*, verify: bool = True) -> Runtime:
    """Load configuration once per CLI invocation."""
    global _runtime
    if _runtime is None:
        loaded = Runtime.load()
        if verify:
            # A CLI holding other secrets than the service would check and write wrongly
            # (and SQLite statistics would steer its statements: Runtime.start).
            loaded.start()
        _runtime = loaded
    return _runtime


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """suppress: the marketing suppression list and mailing gatekeeper."""
    global _runtime
    _runtime = None  # each invocation reads configuration afresh
    click.get_current_context().call_on_close(_close)


def _close() -> None:
    global _runtime
    if _runtime is not None:
        _runtime.db.dispose()
        _runtime = None


@main.command()
@handled
def init() -> None:
    """First-run set-up: secrets file (0600), database schema, first admin key."""
    path = config_module.secrets_path()
    # Secrets given in the environment are checked first: a refusal must leave no file.
    config_module.parse_peppers(os.environ.get("SUPPRESS_PEPPERS", ""))
    config_module.parse_token_secrets(os.environ.get("SUPPRESS_TOKEN_SECRETS", ""))
    created = False
    if os.environ.get("SUPPRESS_PEPPERS") and os.environ.get("SUPPRESS_TOKEN_SECRETS"):
        # Secrets come from the environment (a deployment's secret store): a file of fresh
        # ones beside them would be a second, unused pepper waiting to be mistaken for the real.
        click.echo("peppers and token secrets come from the environment; no secrets file", err=True)
    else:
        created = config_module.generate_secrets(path)
    try:
        rt = runtime()
        rt.db.upgrade()
    except BaseException:
        if created:  # nothing was keyed with them yet: a refused init leaves no secrets behind
            path.unlink(missing_ok=True)
        raise
    if created:
        click.echo(f"created secrets file {path} (mode 0600); back it up separately", err=True)
    with rt.db.begin() as session:
        if apikeys.list_keys(session):
            click.echo(
                "database ready; API keys already exist (see 'suppress keys list')", err=True
            )
            return
        _key, token = apikeys.create(session, "admin", apikeys.Role.admin, actor=actor())
    click.echo("created the first admin API key; it is shown once, store it now:", err=True)
    click.echo(token)


@main.command()
@click.option("--host", default=None, help="Address to bind (default from config: 127.0.0.1).")
@click.option(
    "--port",
    type=click.IntRange(*bounds(ServerSettings, "port")),
    default=None,
    help="Port (default from config: 8000).",
)
@click.option(
    "--workers",
    type=click.IntRange(*bounds(ServerSettings, "workers")),
    default=None,
    help="Worker processes (default from config).",
)
@handled
def serve(host: str | None, port: int | None, workers: int | None) -> None:
    """Serve the API and pages with gunicorn until SIGTERM."""
    from .server import run

    warn_unconfigured_peppers()
    server = runtime().config.settings.server
    run(
        host=host or server.host,
        port=port or server.port,
        workers=workers or server.workers,
        timeout=server.timeout,
    )


def warn_unconfigured_peppers() -> None:
    """Say loudly at start-up when rows exist that no configured pepper can match."""
    rt = runtime()
    try:
        with rt.db.begin(write=False) as session:
            missing = peppers.unconfigured(session, rt.ring)
    except SuppressError:
        return  # no database or no schema yet: /readyz reports that
    if missing:
        click.echo(f"error: {peppers.missing_message(missing)}; /readyz fails until then", err=True)


@main.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@handled
def db_upgrade() -> None:
    """Create the schema or migrate it to the newest revision."""
    rt = runtime()
    rt.db.upgrade()
    click.echo(f"schema at revision {rt.db.current_revision()}")


@main.group()
def keys() -> None:
    """API keys."""


@keys.command("create")
@click.option("--name", required=True, help="Who uses the key, e.g. newsletter-job.")
@click.option("--role", required=True, type=click.Choice([r.value for r in apikeys.Role]))
@handled
def keys_create(name: str, role: str) -> None:
    """Create a key; the token is printed alone on the last line (shown once)."""
    with runtime().db.begin() as session:
        key, token = apikeys.create(session, name, apikeys.parse_role(role), actor=actor())
        click.echo(
            f"created API key {key.id} ({key.name}, role {key.role.value}); the token follows",
            err=True,
        )
    click.echo(token)


@keys.command("list")
@handled
def keys_list() -> None:
    """List keys (never their tokens)."""
    with runtime().db.begin(write=False) as session:
        for key in apikeys.list_keys(session):
            state = f"revoked {key.revoked_at:%Y-%m-%d %H:%M}" if key.revoked_at else "active"
            used = f"{key.last_used_at:%Y-%m-%d %H:%M}" if key.last_used_at else "never"
            click.echo(f"{key.id}\t{key.name}\t{key.role.value}\t{state}\tlast used {used}")


@keys.command("revoke")
@click.argument("key_id", type=int)
@handled
def keys_revoke(key_id: int) -> None:
    """Revoke a key by id."""
    with runtime().db.begin() as session:
        key = apikeys.revoke(session, key_id, actor=actor())
        click.echo(f"revoked API key {key.id} ({key.name})")


@keys.command("pepper-status")
@handled
def keys_pepper_status() -> None:
    """Rows per pepper id; exits 1 if rows exist under a pepper that is not configured."""
    rt = runtime()
    with rt.db.begin(write=False) as session:
        rows = peppers.status(session, rt.ring)
    for key in rows:
        notes = []
        if key.active:
            notes.append("active (new rows)")
        elif key.configured:
            notes.append("read only; rows move to the active pepper when seen")
        if key.orphaned:
            notes.append("NOT CONFIGURED: these rows can never match")
        if key.requests:
            notes.append(f"keys {key.requests} data-subject request(s)")
        click.echo(f"{key.key_id}\t{key.rows}\t{'; '.join(notes)}")
    orphaned = [k.key_id for k in rows if k.orphaned]
    if orphaned:
        fail(peppers.missing_message(orphaned), code=1)


@keys.command("retire-pepper")
@click.argument("key_id")
@handled
def keys_retire_pepper(key_id: str) -> None:
    """Check that no row uses pepper KEY_ID and record its retirement; refuses otherwise."""
    rt = runtime()
    with rt.db.begin() as session:
        peppers.retire(session, rt.ring, key_id, actor=actor())
    click.echo(f"no suppression uses pepper {key_id}: remove it from SUPPRESS_PEPPERS now")


@keys.command("secrets")
@handled
def keys_secrets() -> None:
    """The peppers and token secrets recorded as in use, and whether this process holds each."""
    from . import secretchecks

    rt = runtime(verify=False)
    with rt.db.begin(write=False) as session:
        rows = secretchecks.listing(session, rt.secrets)
        found, _ = secretchecks.problems(session, rt.secrets)
    for row in rows:
        here = "held here" if row["here"] else "NOT HELD HERE"
        click.echo(f"{row['kind']}\t{row['id']}\t{row['since']}\t{here}")
    if found:
        fail("; ".join(found), code=1)


@keys.command("forget-token-secret")
@click.argument("secret_id")
@handled
def keys_forget_token_secret(secret_id: str) -> None:
    """Stop requiring token secret SECRET_ID (see 'keys secrets'): links it signed stop working."""
    from . import secretchecks

    rt = runtime(verify=False)
    with rt.db.begin() as session:
        secretchecks.forget_token_secret(session, secret_id, rt.secrets, actor=actor())
    click.echo(
        f"token secret {secret_id} is no longer required; links it signed are refused by "
        "every instance that no longer holds it"
    )


@main.group("users")
def users_group() -> None:
    """People who sign in to the console at /admin/ (viewer, operator, admin)."""


def _password(from_stdin: bool) -> str:
    """The new password: the first line of stdin, or asked twice on a terminal."""
    password = ""
    if from_stdin:
        password = sys.stdin.readline().removesuffix("\n").removesuffix("\r")
    elif sys.stdin.isatty():
        password = click.prompt("password", hide_input=True, confirmation_prompt=True, err=True)
    else:
        fail("give the password on stdin with --password-stdin")
    if not password:
        fail("the password is empty; nothing was changed")
    return password


@users_group.command("create")
@click.argument("name")
@click.option("--role", required=True, type=click.Choice([r.value for r in users.PersonRole]))
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin's first line.")
@handled
def users_create(name: str, role: str, password_stdin: bool) -> None:
    """Create a person's account; the password is kept only as an argon2id hash."""
    name = users.validate_name(name)
    password = _password(password_stdin)
    with runtime().db.begin() as session:
        user = users.create(
            session,
            name,
            users.parse_role(role),
            password,
            actor=actor(),
            now=clock.utcnow(),
        )
        click.echo(f"created {user.name} ({user.role.value}); sign in at /admin/login")


@users_group.command("list")
@handled
def users_list() -> None:
    """Every account: name, role, state and last sign-in (never a password)."""
    now = clock.utcnow()
    with runtime().db.begin(write=False) as session:
        for user in users.list_users(session):
            if user.disabled_at is not None:
                state = f"disabled {user.disabled_at:%Y-%m-%d %H:%M}"
            elif user.locked_until is not None and user.locked_until > now:
                state = f"locked until {user.locked_until:%Y-%m-%d %H:%M} UTC"
            else:
                state = "active"
            seen = f"{user.last_login_at:%Y-%m-%d %H:%M}" if user.last_login_at else "never"
            click.echo(f"{user.name}\t{user.role.value}\t{state}\tlast sign-in {seen}")


@users_group.command("disable")
@click.argument("name")
@handled
def users_disable(name: str) -> None:
    """Disable an account; its sessions end at once."""
    with runtime().db.begin() as session:
        user = users.disable(session, name, actor=actor(), now=clock.utcnow())
        click.echo(f"disabled {user.name}")


@users_group.command("enable")
@click.argument("name")
@handled
def users_enable(name: str) -> None:
    """Let a disabled account sign in again."""
    with runtime().db.begin() as session:
        user = users.enable(session, name, actor=actor(), now=clock.utcnow())
        click.echo(f"enabled {user.name}")


@users_group.command("reset-password")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin's first line.")
@handled
def users_reset_password(name: str, password_stdin: bool) -> None:
    """Set a new password; lifts a lockout and ends the account's sessions."""
    password = _password(password_stdin)
    with runtime().db.begin() as session:
        user = users.reset_password(session, name, password, actor=actor(), now=clock.utcnow())
        click.echo(f"new password set for {user.name}; their sessions have ended")


def _target(email: str | None, domain: str | None) -> addresses.Target:
    if (email is None) == (domain is None):
        fail("give an ADDRESS or --domain, not both")
    ring = runtime().ring
    if email is not None:
        return addresses.address_target(ring, email)
    return addresses.domain_target(ring, domain or "")


def _expiry(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return clock.naive_utc(value if value.tzinfo else value.astimezone())


@main.command()
@click.argument("email", required=False)
@click.option("--domain", help="Suppress a whole domain (and its subdomains) instead.")
@click.option(
    "--list", "list_name", required=True, help="List name, or 'global' for all marketing."
)
@click.option("--reason", required=True, type=click.Choice([r.value for r in Reason]))
@click.option("--source", default="cli", show_default=True)
@click.option(
    "--expires-at", type=click.DateTime(), help="Bounces only: when the suppression lapses."
)
@handled
def add(
    email: str | None,
    domain: str | None,
    list_name: str,
    reason: str,
    source: str,
    expires_at: datetime | None,
) -> None:
    """Suppress an address or domain on a list (idempotent)."""
    target = _target(email, domain)
    list_name = suppressions.validate_list(list_name)
    source = suppressions.validate_source(source)
    with runtime().db.begin() as session:
        row, created = suppressions.add(
            session,
            target,
            list_name,
            suppressions.parse_reason(reason),
            source=source,
            actor=actor(),
            now=clock.utcnow(),
            expires_at=_expiry(expires_at),
        )
        described = suppressions.describe(row)
    click.echo(
        ("added" if created else "already suppressed") + f": {target.kind} on {list_name} "
        f"({described['reason']}, digest {described['digest'][:8]})"
    )


@main.command()
@click.argument("email", required=False)
@click.option("--domain", help="Lift a domain suppression instead.")
@click.option("--list", "list_name", required=True)
@click.option("--reason", required=True, help="Why, e.g. resubscribed.")
@click.option("--evidence", required=True, help="Reference to the new consent, e.g. a form id.")
@handled
def remove(
    email: str | None, domain: str | None, list_name: str, reason: str, evidence: str
) -> None:
    """Lift a suppression; needs a reason and evidence of new consent."""
    target = _target(email, domain)
    list_name = suppressions.validate_list(list_name)
    reason = suppressions.validate_text("reason", reason)
    evidence = suppressions.validate_text("evidence", evidence)
    with runtime().db.begin() as session:
        removed = suppressions.remove(
            session, target, list_name, reason=reason, evidence=evidence, actor=actor()
        )
    click.echo(f"removed {removed} suppression(s) from {list_name}")


@main.command()
@click.argument("email")
@click.option("--list", "list_name", required=True)
@click.option("--json", "as_json", is_flag=True, help="Print the verdict as JSON.")
@handled
def check(email: str, list_name: str, as_json: bool) -> None:
    """Exit 0 if marketing may go to EMAIL on the list, 1 if suppressed, 2 on error."""
    rt = runtime()
    list_name = suppressions.validate_list(list_name)
    target = addresses.address_target(rt.ring, email)
    with rt.db.begin(write=False) as session:
        verdict = suppressions.check(session, target, list_name, now=clock.utcnow())
    peppers.rekey_found(rt.db.begin, rt.ring, verdict.stale, actor=actor())
    if as_json:
        click.echo(
            json.dumps(
                {
                    "list": list_name,
                    "allowed": verdict.allowed,
                    "suppressions": [h.to_dict() for h in verdict.hits],
                }
            )
        )
    elif verdict.allowed:
        click.echo(f"allowed on {list_name}")
    else:
        why = ", ".join(f"{h.reason} ({h.kind}, {h.scope})" for h in verdict.hits)
        click.echo(f"suppressed on {list_name}: {why}")
    sys.exit(0 if verdict.allowed else 1)


def _size(stream: IO[bytes]) -> int | None:
    """The byte size of a regular input file, None for a pipe or terminal."""
    try:
        stat = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return None
    return stat.st_size if stat.st_mode & 0o170000 == 0o100000 else None


def _progress(stream: IO[bytes], label: str) -> Any:
    """A click progress bar on stderr, measured in input bytes (hidden when not a terminal)."""
    return click.progressbar(
        length=_size(stream) or 0, label=label, file=sys.stderr, show_eta=_size(stream) is not None
    )


def _counted(stream: IO[bytes], bar: Any) -> Iterator[bytes]:
    """The stream's chunks, advancing the progress bar by each chunk's size."""
    while chunk := stream.read(bulk.READ_CHUNK):
        bar.update(len(chunk))
        yield chunk


def _csv_mode(option: bool | None, stream: IO[bytes]) -> bool:
    if option is not None:
        return option
    return str(getattr(stream, "name", "")).lower().endswith(".csv")


@main.command("filter")
@click.option("--list", "list_name", required=True, help="The list the mailing goes out on.")
@click.option(
    "--url",
    envvar="SUPPRESS_URL",
    help="Service base URL (or SUPPRESS_URL); without it the local database is read.",
)
@click.option("--token", envvar="SUPPRESS_TOKEN", help="API token (or SUPPRESS_TOKEN).")
@click.option(
    "--csv/--plain",
    "csv_option",
    default=None,
    help="Address in the first CSV column, or the whole line (default: CSV for *.csv files).",
)
@click.argument("file", type=click.File("rb"), default="-")
@handled
def filter_command(
    list_name: str, url: str | None, token: str | None, csv_option: bool | None, file: IO[bytes]
) -> None:
    """Write the allowed lines of FILE (or stdin) to stdout; exit 0 only if all were checked.

    Nothing reaches stdout before the whole input has been checked: on any failure the
    command prints one error line and exits non-zero with no output (fail closed).
    """
    list_name = suppressions.validate_list(list_name)
    csv_mode = _csv_mode(csv_option, file)
    out = sys.stdout.buffer
    with _progress(file, "filtering") as bar:
        lines = bulk.iter_lines(_counted(file, bar))
        if url:
            from .client import Client, ClientError

            if not token:
                fail("an API token is required with --url (--token or SUPPRESS_TOKEN)")
            try:
                client = Client(url, token or "")
                allowed = list_allowed_over_http(client, lines, list_name, csv_mode)
            except ClientError as exc:
                fail(f"{exc.message}; nothing was written")
            with allowed:
                _copy(allowed, out)
            return
        with tempfile.SpooledTemporaryFile(8 << 20) as spool:
            totals = bulk.filter_lines(
                runtime().db.begin,
                runtime().ring,
                lines,
                list_name,
                spool,
                csv_mode=csv_mode,
                actor=actor(),
            )
            spool.seek(0)
            _copy(spool, out)
    click.echo(totals.trailer().lstrip("# "), err=True)


def list_allowed_over_http(
    client: Any, lines: Iterator[bytes], list_name: str, csv_mode: bool
) -> IO[bytes]:
    """The verified allowed lines from the service, spooled (the client yields only verified)."""
    spool = tempfile.SpooledTemporaryFile(8 << 20)
    try:
        for line in client.filter_lines(lines, list_name, csv=csv_mode):
            spool.write(line + b"\n")
    except BaseException:
        spool.close()
        raise
    spool.seek(0)
    return spool  # type: ignore[return-value]


def _copy(source: IO[bytes], out: IO[bytes]) -> None:
    while chunk := source.read(bulk.READ_CHUNK):
        out.write(chunk)
    out.flush()


@main.command("import")
@click.argument("file", type=click.File("rb"))
@click.option("--list", "list_name", required=True, help="List name, or 'global'.")
@click.option("--reason", required=True, type=click.Choice([r.value for r in Reason]))
@click.option("--source", default="import", show_default=True, help="Where the list came from.")
@click.option(
    "--csv/--plain",
    "csv_option",
    default=None,
    help="Address in the first CSV column, or the whole line (default: CSV for *.csv files).",
)
@handled
def import_command(
    file: IO[bytes], list_name: str, reason: str, source: str, csv_option: bool | None
) -> None:
    """Suppress every address of FILE on a list (idempotent; never removes anything)."""
    list_name = suppressions.validate_list(list_name)
    source = suppressions.validate_source(source)
    with _progress(file, "importing") as bar:
        totals = bulk.import_lines(
            runtime().db.begin,
            runtime().ring,
            bulk.iter_lines(_counted(file, bar)),
            list_name,
            suppressions.parse_reason(reason),
            source=source,
            actor=actor(),
            csv_mode=_csv_mode(csv_option, file),
        )
    click.echo(json.dumps(totals.to_dict()))


@main.command()
@click.argument("email")
@click.option("--json", "as_json", is_flag=True, help="Print the full answer as JSON.")
@click.option("--reference", help="The request's reference (e.g. a ticket), kept in the audit.")
@handled
def lookup(email: str, as_json: bool, reference: str | None) -> None:
    """Everything kept about EMAIL (access and portability requests); recorded in the audit."""
    rt = runtime()
    reference = suppressions.validate_text("reference", reference, required=False) or None
    target = addresses.address_target(rt.ring, email)
    with rt.db.begin() as session:
        found = access.lookup(
            session,
            target,
            actor=actor(),
            zone=rt.config.settings.compliance.zone,
            reference=reference,
        )
    if as_json:
        click.echo(json.dumps({"email": email, **found}, indent=2))
        return
    click.echo(
        f"{email}: {len(found['suppressions'])} suppression(s), "
        f"{len(found['events'])} audit event(s), "
        f"{len(found['requests'])} data-subject request(s)"
    )
    for d in found["digests"]:
        if d["kind"] == "address":
            click.echo(f"  digest {d['key_id']}: {d['digest']}")
    for row in found["suppressions"]:
        until = f" until {row['expires_at']}" if row["expires_at"] else ""
        click.echo(
            f"  suppressed: {row['kind']} on {row['list']} ({row['reason']}, "
            f"source {row['source']}) since {row['created_at']}{until}"
        )
    for event in found["events"]:
        click.echo(
            f"  event {event['id']} {event['at']} {event['action']} {event['kind']} "
            f"on {event['list']} by {event['actor']}"
        )
    for request in found["requests"]:
        click.echo(f"  request {_request_line(request)}")


@main.command()
@click.option(
    "--format", "fmt", type=click.Choice(access.FORMATS), default="ndjson", show_default=True
)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, writable=True),
    help="Write to FILE (complete or not at all) instead of stdout.",
)
@handled
def export(fmt: str, output: str | None) -> None:
    """Every suppression, digests in hex: NDJSON, or CSV safe to open in a spreadsheet."""
    rt = runtime()
    with rt.db.begin() as session:
        access.record_export(session, fmt, actor=actor())
    if output is None:
        count = _export_to(sys.stdout, rt, fmt)
    else:
        # Written beside the target and renamed when complete: an interrupted export never
        # leaves a file that looks whole. 0600: digests are pseudonymous personal data.
        folder = os.path.dirname(os.path.abspath(output))
        fd, partial = tempfile.mkstemp(prefix=".export-", dir=folder)
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as out:
                count = _export_to(out, rt, fmt)
            os.replace(partial, output)
        except BaseException:
            os.unlink(partial)
            raise
    click.echo(f"exported {count} suppression(s)", err=True)


def _export_to(out: Any, rt: Runtime, fmt: str) -> int:
    count = 0
    with rt.db.begin(write=False) as session:

        def counted() -> Any:
            nonlocal count
            for row in access.rows(session):
                count += 1
                yield row

        for chunk in access.render(counted(), fmt):
            out.write(chunk)
    out.flush()
    return count


@main.group("requests")
def requests_group() -> None:
    """The register of data-subject requests and their deadlines (docs/requests.md)."""


def _zone() -> ZoneInfo:
    return runtime().config.settings.compliance.zone


def _request_line(found: dict[str, Any]) -> str:
    """One request on one line: id, kind, reference, state and clock."""
    if found["status"] == "closed":
        state = f"closed ({found['outcome']}) {found['closed_at']}"
    else:
        state = "OVERDUE" if found["overdue"] else "open"
    extended = " (extended)" if found["extended"] else ""
    verified = (
        f"identity verified {found['identity_verified_at']} ({found['identity_method']})"
        if found["identity_verified_at"]
        else "identity not verified"
    )
    return (
        f"{found['id']}\t{found['kind']}\t{found['reference']}\t{state}\t"
        f"due {found['due']}{extended}\treceived {found['received_at']}\t{verified}"
    )


def _show(found: dict[str, Any], as_json: bool) -> None:
    click.echo(json.dumps(found, indent=2) if as_json else _request_line(found))


def _change(act: Callable[[Any, datetime], Any], as_json: bool) -> None:
    """Run one change of a request (`act` gets the session and now) and show the request."""
    now = clock.utcnow()
    with runtime().db.begin() as session:
        found = rights.describe(act(session, now), rights.today(_zone(), now))
    _show(found, as_json)


@requests_group.command("add")
@click.option("--kind", required=True, type=click.Choice([k.value for k in RequestKind]))
@click.option("--reference", required=True, help="Your reference, e.g. a ticket number.")
@click.option(
    "--received-at",
    help="When it arrived (ISO 8601; without a zone: in the compliance zone). Default: now.",
)
@click.option("--email", help="The address it is about (kept only as its keyed hash).")
@click.option("--channel", help="How it arrived: phone, email, letter, ...")
@click.option("--note", help="A note (no address); not copied to the audit trail.")
@click.option("--json", "as_json", is_flag=True, help="Print the request as JSON.")
@handled
def requests_add(
    kind: str,
    reference: str,
    received_at: str | None,
    email: str | None,
    channel: str | None,
    note: str | None,
    as_json: bool,
) -> None:
    """Register a request; it is due one calendar month from the day of receipt.

    An objection or consent withdrawal with --email also suppresses the address on global.
    """
    rt = runtime()
    zone, now = _zone(), clock.utcnow()
    received = (
        now if received_at is None else rights.local_moment(received_at, "--received-at", zone)
    )
    target = None if email is None else addresses.address_target(rt.ring, email)
    with rt.db.begin() as session:
        row, suppression = rights.register(
            session,
            RequestKind(kind),
            received_at=received,
            reference=reference,
            target=target,
            channel=channel,
            note=note,
            zone=zone,
            now=now,
            actor=actor(),
        )
        found = rights.describe(row, rights.today(zone, now))
        made = None if suppression is None else suppressions.describe(suppression)
    if as_json:
        click.echo(json.dumps({**found, "suppression": made}, indent=2))
        return
    click.echo(f"registered request {_request_line(found)}")
    if made is not None:
        click.echo(f"suppressed on {made['list']} ({made['reason']}, digest {made['digest'][:8]})")


@requests_group.command("list")
@click.option("--status", type=click.Choice(rights.STATUSES), help="Only these requests.")
@click.option("--json", "as_json", is_flag=True, help="Print the requests as JSON.")
@handled
def requests_list(status: str | None, as_json: bool) -> None:
    """Requests: open and overdue ones by due day, closed ones and all newest first."""
    zone, now = _zone(), clock.utcnow()
    today = rights.today(zone, now)
    with runtime().db.begin(write=False) as session:
        found = rights.describe_all(rights.listing(session, status, today), today)
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    for item in found:
        click.echo(_request_line(item))


@requests_group.command("show")
@click.argument("request_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print the request as JSON.")
@handled
def requests_show(request_id: int, as_json: bool) -> None:
    """One request."""
    today = rights.today(_zone(), clock.utcnow())
    with runtime().db.begin(write=False) as session:
        found = rights.describe(rights.get(session, request_id), today)
    _show(found, as_json)


@requests_group.command("verify")
@click.argument("request_id", type=int)
@click.option("--method", required=True, help="How the identity was verified, e.g. BankID.")
@click.option(
    "--verified-at", help="When (ISO 8601; without a zone: compliance zone). Default: now."
)
@click.option("--json", "as_json", is_flag=True, help="Print the request as JSON.")
@handled
def requests_verify(request_id: int, method: str, verified_at: str | None, as_json: bool) -> None:
    """Record how and when the requester's identity was verified."""
    zone = _zone()
    when = None if verified_at is None else rights.local_moment(verified_at, "--verified-at", zone)
    _change(
        lambda session, now: rights.verify_identity(
            session,
            request_id,
            method=method,
            verified_at=when or now,
            zone=zone,
            now=now,
            actor=actor(),
        ),
        as_json,
    )


@requests_group.command("extend")
@click.argument("request_id", type=int)
@click.option("--reason", required=True, help="Why more time is needed, as the reader was told.")
@click.option(
    "--notified-at",
    required=True,
    help="When the reader was told (ISO 8601; without a zone: compliance zone); on or "
    "before the original due day.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the request as JSON.")
@handled
def requests_extend(request_id: int, reason: str, notified_at: str, as_json: bool) -> None:
    """Extend the deadline to three months from receipt (once; the reader told in time)."""
    zone = _zone()
    told = rights.local_moment(notified_at, "--notified-at", zone)
    _change(
        lambda session, now: rights.extend(
            session,
            request_id,
            reason=reason,
            notified_at=told,
            zone=zone,
            now=now,
            actor=actor(),
        ),
        as_json,
    )


@requests_group.command("close")
@click.argument("request_id", type=int)
@click.option("--outcome", required=True, type=click.Choice([o.value for o in Outcome]))
@click.option("--note", help="A closing note (no address); not copied to the audit trail.")
@click.option("--json", "as_json", is_flag=True, help="Print the request as JSON.")
@handled
def requests_close(request_id: int, outcome: str, note: str | None, as_json: bool) -> None:
    """Close a request with its outcome; a suppression it made stays."""
    _change(
        lambda session, now: rights.close(
            session, request_id, outcome=Outcome(outcome), note=note, now=now, actor=actor()
        ),
        as_json,
    )


@main.group("audit")
def audit_group() -> None:
    """The audit trail."""


@audit_group.command("verify")
@click.option("--anchor", help="A head (hex) recorded earlier: prove nothing was cut after it.")
@handled
def audit_verify(anchor: str | None) -> None:
    """Walk the hash chain; exit 1 and name the event if it was edited, cut or reordered."""
    raw = audit.parse_hash(anchor, "--anchor") if anchor is not None else None
    with runtime().db.begin(write=False) as session:
        result = audit.verify(session, anchor=raw)
    if not result.ok:
        fail(f"audit chain broken ({result.finding}): {result.problem}", code=1)
    click.echo(f"audit chain ok: {result.events} event(s), head {result.head.hex()}")


@main.command("scheduler")
@handled
def scheduler_command() -> None:
    """Run the nightly and hourly jobs (APScheduler) until SIGTERM."""
    from . import logs, scheduler

    rt = runtime()
    rt.db.require_current()  # before logging is set up: a refusal is one line
    logs.configure()
    scheduler.serve(rt)


@main.group()
def webhooks() -> None:
    """The mailing tools' webhook receivers (POST /webhooks/<provider>)."""


@webhooks.command("test")
@click.argument("provider", type=click.Choice(PROVIDERS))
@click.option(
    "--url",
    help="The service's base URL (default: the configured base_url); the sample goes to "
    "<url>/webhooks/PROVIDER (a URL that already ends so is used as it is).",
)
@click.option(
    "--suppress",
    "email",
    metavar="EMAIL",
    help="Send an unsubscribe event for EMAIL instead: it IS then suppressed for real, on "
    "the provider's list (mailgun, postmark and brevo only).",
)
@handled
def webhooks_test(provider: str, url: str | None, email: str | None) -> None:
    """Send a sample PROVIDER delivery to the running server and print what it answered.

    The sample is signed or authenticated with this host's configured secret. By default it
    is an event the receiver ignores (a delivery to an example.com address): nothing is
    suppressed. SendGrid and SES sign with keys only they hold: their sample goes unsigned,
    and a 401 answer is the expected one (use the provider's own test to go further).

    Exit 0 when the receiver answered as expected, 1 when it answered otherwise (refused,
    not configured there, an error), 2 when the test could not be made (not configured
    here, no answer).
    """
    from . import webhooktest

    # The configuration alone: this command opens no database (on SQLite, that makes a file).
    config = config_module.load()
    hooks = config.settings.webhooks
    if not hooks.enabled(provider):
        fail(
            f"no {provider} webhook is configured here: set {webhooktest.env_name(provider)} "
            f"(or [webhooks.{provider}] {WEBHOOK_ENABLED_BY[provider]}) as the server has it"
        )
    if email is not None:
        if provider not in webhooktest.AUTHENTICATED:
            fail(
                f"--suppress needs a receiver this command can authenticate to "
                f"({', '.join(webhooktest.AUTHENTICATED)}); {provider} deliveries are signed "
                "with a key only the provider holds"
            )
        addresses.normalize(email)  # an address the receiver would count invalid: say so now
    verdict = webhooktest.run(provider, hooks, url or config.base_url, email=email)
    if not verdict.ok:
        fail(verdict.line, code=1 if verdict.answered else EXIT_ERROR)
    click.echo(verdict.line)


@main.group()
def jobs() -> None:
    """Scheduled jobs: reconcile, expire, verify-audit."""


@jobs.command("run")
@click.argument("name", type=click.Choice(job_runs.NAMES))
@handled
def jobs_run(name: str) -> None:
    """Run a job now under its own run key (waits for a running one to finish)."""
    rt = runtime()
    rt.db.require_current()
    outcome = job_runs.run_manual(rt, name, requested_by=actor())
    click.echo(json.dumps(outcome.run, indent=2))
    if outcome.status != "ok":
        sys.exit(1)


@jobs.command("list")
@click.option("--job", type=click.Choice(job_runs.NAMES))
@click.option("--limit", type=int, default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the runs with summaries as JSON.")
@handled
def jobs_list(job: str | None, limit: int, as_json: bool) -> None:
    """The newest job runs first."""

    with runtime().db.begin(write=False) as session:
        runs = job_runs.list_runs(session, job=job, limit=limit)
    if as_json:
        click.echo(json.dumps(runs, indent=2))
        return
    for run in runs:
        errors = len(run["summary"].get("errors", []))
        click.echo(
            f"{run['id']}\t{run['job']}\t{run['run_key']}\t{run['status']}\t"
            f"started {run['started_at']}\tfinished {run['finished_at'] or '-'}\terrors {errors}"
        )


if __name__ == "__main__":
    main()
