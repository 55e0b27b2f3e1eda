"""Export in constant memory: rows per second and peak RSS of `suppress export` at two sizes.

Usage (each size gets a fresh database; PostgreSQL needs a URL whose database may be
written to, a schema of its own is created and dropped):

    .venv/bin/python bench/export_memory.py --rows 100000 1000000
    .venv/bin/python bench/export_memory.py --rows 100000 1000000 \\
        --postgres postgresql+psycopg://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import base64
import os
import secrets
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path

from sqlalchemy import create_engine, insert, text

from suppress.db import Database
from suppress.models import Suppression

PEPPER = "b1:" + base64.b64encode(b"benchmark-pepper-0123456789abcdef").decode()
BATCH = 20_000


def populate(url: str, rows: int) -> None:
    """rows random digests, written in batches (the export reads them back in id order)."""
    db = Database(url)
    db.upgrade()
    created = datetime(2026, 1, 1)
    with db.engine.begin() as conn:
        for start in range(0, rows, BATCH):
            conn.execute(
                insert(Suppression),
                [
                    {
                        "digest": secrets.token_bytes(32),
                        "key_id": "b1",
                        "scheme": "n1",
                        "kind": "address",
                        "list": "news",
                        "reason": "unsubscribe",
                        "source": "import",
                        "created_at": created,
                    }
                    for _ in range(min(BATCH, rows - start))
                ],
            )
    db.dispose()


def export(url: str, fmt: str, out: Path) -> tuple[float, int]:
    """Seconds and peak RSS (KiB) of one `suppress export` process."""
    env = {**os.environ, "SUPPRESS_DATABASE_URL": url, "SUPPRESS_PEPPERS": PEPPER}
    env["SUPPRESS_TOKEN_SECRETS"] = "bench-token-secret-0123456789abcdef"
    started = time.perf_counter()
    # GNU time reports the peak RSS of this one process (%M, KiB) on stderr's last line.
    done = subprocess.run(
        ["/usr/bin/time", "-f", "%M", sys.executable, "-m", "suppress.cli", "export"]
        + ["--format", fmt, "--output", str(out)],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    elapsed = time.perf_counter() - started
    return elapsed, int(done.stderr.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--postgres", help="also measure on this PostgreSQL URL")
    args = parser.parse_args()
    backends = ["sqlite"] + (["postgresql"] if args.postgres else [])
    print("backend     rows        format  seconds  rows/s     peak RSS MiB  file MiB")
    for backend in backends:
        for rows in sorted(args.rows):
            with tempfile.TemporaryDirectory() as tmp:
                schema = None
                if backend == "sqlite":
                    url = f"sqlite:///{tmp}/bench.db"
                else:
                    schema = "bench_" + uuid.uuid4().hex[:8]
                    admin = create_engine(args.postgres, isolation_level="AUTOCOMMIT")
                    with admin.connect() as conn:
                        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
                    url = f"{args.postgres}?options=-csearch_path%3D{schema}"
                try:
                    populate(url, rows)
                    for fmt in ("ndjson", "csv"):
                        out = Path(tmp) / f"export.{fmt}"
                        seconds, peak = export(url, fmt, out)
                        size = out.stat().st_size / 2**20
                        print(
                            f"{backend:<11} {rows:<11,} {fmt:<7} {seconds:7.1f}  "
                            f"{rows / seconds:<10,.0f} {peak / 1024:<13.1f} {size:.0f}"
                        )
                finally:
                    if schema is not None:
                        with admin.connect() as conn:
                            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
                        admin.dispose()


if __name__ == "__main__":
    main()
