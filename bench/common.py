"""Shared benchmark plumbing: databases, bulk loading, synthetic recipients, a served instance.

Data is generated on the fly from a seed; nothing large is kept in the repository.
"""

from __future__ import annotations

import base64
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from sqlalchemy import create_engine, text

from suppress import apikeys
from suppress.addresses import KeyRing, domain_and_parents, domain_of, normalize
from suppress.errors import InvalidEmail
from suppress.models import Role
from suppress.runtime import Runtime

PEPPER = b"benchmark-pepper-not-a-secret-00"
PEPPERS = "b1:" + base64.b64encode(PEPPER).decode()
RING = KeyRing([("b1", PEPPER)])
CREATED = "2026-01-01 00:00:00.000000"


def log(message: str) -> None:
    """Progress on stderr with a timestamp."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def load_conditions() -> str:
    """What else the machine was doing: load average and CPU count."""
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.1f}/{five:.1f}/{fifteen:.1f} on {os.cpu_count()} CPUs"


@contextmanager
def time_limit(seconds: int) -> Iterator[None]:
    """Abort the run (SIGALRM) if it takes longer than its bound."""

    def expired(_signum: int, _frame: Any) -> None:
        raise TimeoutError(f"benchmark exceeded its {seconds} s bound")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


# --- databases -------------------------------------------------------------------------------


@contextmanager
def database(kind: str, postgres_url: str | None, workdir: Path) -> Iterator[str]:
    """A fresh database URL: a SQLite file in workdir, or a PostgreSQL schema of its own."""
    if kind == "sqlite":
        yield f"sqlite:///{workdir / 'bench.db'}"
        return
    if not postgres_url:
        raise SystemExit("PostgreSQL needs --postgres URL (or SUPPRESS_BENCH_POSTGRES_URL)")
    schema = "bench_" + uuid.uuid4().hex[:10]
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in postgres_url else "?"
    try:
        yield f"{postgres_url}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def runtime(db_url: str, workdir: Path) -> Runtime:
    """A Runtime on the benchmark database with the benchmark pepper; schema created."""
    rt = Runtime.load(
        {
            "database": {"url": db_url},
            "peppers": PEPPERS,
            "token_secrets": "bench-token-secret-0123456789abcdef",
            "instance_dir": str(workdir / "instance"),
        }
    )
    rt.db.upgrade()
    return rt


def api_token(rt: Runtime, role: Role) -> str:
    """A fresh API key of a role."""
    with rt.db.begin() as session:
        _key, token = apikeys.create(session, f"bench-{role.value}", role, actor="bench")
    return token


def random_digests(count: int, seed: int) -> list[bytes]:
    """Random 32-byte values: indistinguishable from HMAC digests of unknown addresses."""
    rnd = random.Random(seed)
    return [rnd.randbytes(32) for _ in range(count)]


def bulk_load(rt: Runtime, rows: list[tuple[bytes, str]]) -> float:
    """Load (digest, list) address suppressions fast; returns seconds taken.

    SQLite: sorted executemany in big transactions (index appends, not random inserts); no
    ANALYZE (the service plans without statistics and deletes any it finds).
    PostgreSQL: COPY with the unique constraint dropped, then the constraint rebuilt.
    """
    started = time.perf_counter()
    rows.sort()
    if rt.db.is_sqlite:
        path = rt.db.url.removeprefix("sqlite:///")
        rt.db.dispose()
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("PRAGMA synchronous = OFF")
        conn.execute("PRAGMA cache_size = -1000000")
        sql = (
            "INSERT INTO suppression (digest, key_id, scheme, kind, list, reason, source, "
            "created_at) VALUES (?, 'b1', 'n1', 'address', ?, 'unsubscribe', 'bench', ?)"
        )
        step = 500_000
        for start in range(0, len(rows), step):
            conn.execute("BEGIN")
            conn.executemany(sql, ((d, lst, CREATED) for d, lst in rows[start : start + step]))
            conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()
    else:
        raw = rt.db.engine.raw_connection()
        try:
            cur = raw.cursor()
            # Loading 10M rows takes longer than the service's per-statement bound.
            cur.execute("SET statement_timeout = 0")
            cur.execute("ALTER TABLE suppression DROP CONSTRAINT uq_suppression_digest_kind_list")
            with cur.copy(  # type: ignore[attr-defined]
                "COPY suppression (digest, key_id, scheme, kind, list, reason, source, "
                "created_at) FROM STDIN"
            ) as copy:
                for digest, lst in rows:
                    copy.write_row(
                        (digest, "b1", "n1", "address", lst, "unsubscribe", "bench", CREATED)
                    )
            cur.execute(
                "ALTER TABLE suppression ADD CONSTRAINT uq_suppression_digest_kind_list "
                "UNIQUE (digest, kind, list)"
            )
            raw.commit()
            cur.execute("ANALYZE suppression")
            raw.commit()
        finally:
            raw.close()
    return time.perf_counter() - started


# --- recipients ------------------------------------------------------------------------------


@dataclass
class Recipients:
    """A synthetic mailing list: 10 % suppressed, 1 % invalid, 5 % non-ASCII (by default)."""

    count: int
    seed: int = 7
    suppressed_share: float = 0.10
    invalid_share: float = 0.01
    non_ascii_share: float = 0.05
    domains: int = 2_000
    suppressed: list[tuple[bytes, str]] = field(default_factory=list)

    def lines(self) -> Iterator[str]:
        """The recipients, one address per item, regenerated identically each time."""
        rnd = random.Random(self.seed)
        for i in range(self.count):
            roll = rnd.random()
            d = rnd.randrange(self.domains)
            if roll < self.invalid_share:
                yield f"broken address {i}" if i % 2 else f"user{i}@@example{d}.se"
            elif roll < self.invalid_share + self.non_ascii_share:
                yield f"Åsa.Öberg{i}@företag{d}.se" if i % 2 else f"björn.{i}@example{d}.se"
            else:
                yield f"First.Last{i}+news@Example{d}.com"

    def chosen(self) -> Iterator[tuple[int, str]]:
        """Which recipients are suppressed (deterministic), with their addresses."""
        rnd = random.Random(self.seed + 1)
        for i, line in enumerate(self.lines()):
            if rnd.random() < self.suppressed_share:
                yield i, line

    def suppression_rows(self) -> list[tuple[bytes, str]]:
        """(digest, list) rows that suppress the chosen recipients (some globally)."""
        rows = []
        for i, line in self.chosen():
            try:
                normalized = normalize(line)
            except InvalidEmail:
                continue
            rows.append((RING.address(normalized), "global" if i % 10 == 0 else "news"))
        return rows

    def body(self, chunk_lines: int = 2_000) -> Iterator[bytes]:
        """The list as a streamed request body, in chunks."""
        buf: list[str] = []
        for line in self.lines():
            buf.append(line)
            if len(buf) >= chunk_lines:
                yield ("\n".join(buf) + "\n").encode()
                buf.clear()
        if buf:
            yield ("\n".join(buf) + "\n").encode()


def in_process_limit(recipients: Recipients, digests: set[bytes]) -> tuple[float, int]:
    """The floor for filtering: normalize, HMAC with precomputed pads, Python set lookups.

    Does the same per-recipient work as the service (address digest, and the digests of
    the domain and its parents, cached per domain) without database, HTTP or parsing.
    Returns (seconds, suppressed count).
    """
    lines = list(recipients.lines())
    domain_cache: dict[str, list[bytes]] = {}
    suppressed = 0
    started = time.perf_counter()
    for line in lines:
        try:
            normalized = normalize(line)
        except InvalidEmail:
            continue
        domain = domain_of(normalized)
        domains = domain_cache.get(domain)
        if domains is None:
            domains = domain_cache[domain] = [RING.domain(d) for d in domain_and_parents(domain)]
        if RING.address(normalized) in digests or any(d in digests for d in domains):
            suppressed += 1
    return time.perf_counter() - started, suppressed


# --- a served instance -----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def children(pid: int) -> list[int]:
    """Direct child processes of pid (gunicorn workers of a master)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def peak_rss_mb(pid: int) -> float:
    """Peak resident memory (VmHWM) of a process, in MB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class Server:
    """A WSGI app under gunicorn as a subprocess: `suppress serve`, or any app module."""

    def __init__(
        self,
        db_url: str,
        workdir: Path,
        *,
        workers: int = 2,
        app: str | None = None,
        env: dict[str, str] | None = None,
    ):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "SUPPRESS_DATABASE_URL": db_url,
            "SUPPRESS_PEPPERS": PEPPERS,
            "SUPPRESS_TOKEN_SECRETS": "bench-token-secret-0123456789abcdef",
            "SUPPRESS_INSTANCE_DIR": str(workdir / "instance"),
            **(env or {}),
        }
        self.env.pop("SUPPRESS_CONFIG", None)
        if app is None:
            command = [sys.executable, "-m", "suppress.cli", "serve", "--host", "127.0.0.1"]
            command += ["--port", str(self.port), "--workers", str(workers)]
        else:
            command = [sys.executable, "-m", "gunicorn", "-w", str(workers), "-b"]
            command += [f"127.0.0.1:{self.port}", "--worker-tmp-dir", "/dev/shm", app]
        self.log = tempfile.NamedTemporaryFile(prefix="bench-server-", suffix=".log", delete=False)
        self.proc = subprocess.Popen(
            command, env=self.env, stdout=self.log, stderr=subprocess.STDOUT, cwd=Path.cwd()
        )
        self.wait_ready()
        self.workers = children(self.proc.pid)

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited; see {self.log.name}")
            try:
                requests.get(self.url + "/healthz", timeout=5)
                return
            except requests.RequestException:
                time.sleep(0.2)
        raise RuntimeError(f"server not ready; see {self.log.name}")

    def peak_rss_mb(self) -> float:
        """The largest peak RSS of the master and its workers."""
        return max([peak_rss_mb(self.proc.pid), *(peak_rss_mb(w) for w in self.workers)])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=60)
        self.log.close()
