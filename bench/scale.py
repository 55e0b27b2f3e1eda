"""Benchmark 6: one PostgreSQL primary at growing sizes (docs/scaling.md).

For each size: a fresh schema loaded with that many address suppressions (the recipients'
own plus random digests), then its on-disk size (table, each index, B-tree depth), single
checks through `suppress serve` beside the minimal app (wrk), and a bulk filter of the
recipients through `POST /v1/filter`; and pgbench running the check's index lookup alone
(random digests, no Python in the way): what the database itself could answer.

    apt-get install -y wrk
    .venv/bin/python -m bench.scale --postgres postgresql+psycopg://postgres@127.0.0.1/test
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import requests
from sqlalchemy import create_engine, text

from suppress.models import Role

from .check import LUA, valid, wrk
from .common import (
    Recipients,
    Server,
    api_token,
    bulk_load,
    database,
    load_conditions,
    log,
    random_digests,
    runtime,
    time_limit,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000000,10000000", help="comma-separated row counts")
    parser.add_argument("--recipients", type=int, default=1_000_000)
    parser.add_argument("--postgres", default=os.environ.get("SUPPRESS_BENCH_POSTGRES_URL"))
    parser.add_argument("--seconds", type=int, default=10, help="duration of each wrk run")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--max-seconds", type=int, default=3600, help="bound on the whole run")
    args = parser.parse_args()
    for tool, package in (("wrk", "wrk"), ("pgbench", "postgresql-client")):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is not installed (apt-get install -y {package})")
    if not args.postgres:
        raise SystemExit("--postgres URL (or SUPPRESS_BENCH_POSTGRES_URL) is required")

    results: dict[str, Any] = {"conditions_before": load_conditions()}
    with time_limit(args.max_seconds):
        recipients = Recipients(args.recipients)
        own = recipients.suppression_rows()
        sample = [line for line in recipients.lines() if valid(line)][:2_000]
        results["server"] = server_facts(args.postgres)
        for size in (int(s) for s in args.sizes.split(",")):
            rows = own + [(d, "news") for d in random_digests(size - len(own), seed=size)]
            with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
                results[str(size)] = run_one(args, Path(tmp), rows, recipients, sample)
            del rows
    results["conditions_after"] = load_conditions()
    print(json.dumps(results, indent=2))


def server_facts(url: str) -> dict[str, str]:
    engine = create_engine(url)
    with engine.connect() as conn:
        facts = {
            name: str(conn.execute(text(f"SHOW {name}")).scalar())
            for name in ("server_version", "shared_buffers", "effective_cache_size", "work_mem")
        }
    engine.dispose()
    return facts


def sizes(url: str) -> dict[str, Any]:
    """Bytes on disk of the suppression table and each of its indexes, and B-tree depths."""
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text("VACUUM ANALYZE suppression"))
        out: dict[str, Any] = {
            "rows": conn.execute(text("SELECT count(*) FROM suppression")).scalar(),
            "table_bytes": conn.execute(text("SELECT pg_table_size('suppression')")).scalar(),
            "indexes_bytes": conn.execute(text("SELECT pg_indexes_size('suppression')")).scalar(),
        }
        indexes = conn.execute(
            text(
                "SELECT c.relname, pg_relation_size(c.oid) FROM pg_index i "
                "JOIN pg_class c ON c.oid = i.indexrelid "
                "WHERE i.indrelid = 'suppression'::regclass ORDER BY 2 DESC"
            )
        ).all()
        out["indexes"] = {name: size for name, size in indexes}
        try:  # B-tree levels (root to leaf): why a lookup stays a few page reads
            conn.execute(text("CREATE EXTENSION IF NOT EXISTS pageinspect"))
            schema = conn.execute(text("SELECT current_schema()")).scalar()
            out["btree_levels"] = {
                name: conn.execute(
                    text("SELECT level FROM bt_metap(:name)"), {"name": f"{schema}.{name}"}
                ).scalar()
                for name, _ in indexes
            }
        except Exception as exc:  # noqa: BLE001 - a figure we can do without
            out["btree_levels"] = f"unavailable: {type(exc).__name__}"
    engine.dispose()
    out["bytes_per_row"] = round((out["table_bytes"] + out["indexes_bytes"]) / out["rows"], 1)
    return out


# The check's query shape: one digest against the (digest, kind, list) unique index. The
# random digest is an uncorrelated subquery, evaluated once (a volatile expression in the
# WHERE clause itself would be evaluated per row, and the index could not be used).
LOOKUP_SQL = """\
SELECT reason FROM suppression
 WHERE digest = (SELECT decode(md5(random()::text) || md5(random()::text), 'hex'))
   AND kind = 'address' AND list IN ('news', 'global') LIMIT 1;
"""


def pgbench_lookup(url: str, seconds: int) -> dict[str, Any]:
    """Index lookups per second by the database alone: pgbench, 2 clients, random digests."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    schema = re.search(r"search_path%3D(\w+)", url)
    env = {
        **os.environ,
        "PGHOST": parsed.host or "127.0.0.1",
        "PGPORT": str(parsed.port or 5432),
        "PGUSER": parsed.username or "postgres",
        "PGDATABASE": parsed.database or "postgres",
        "PGOPTIONS": f"-csearch_path={schema[1]}" if schema else "",
    }
    if parsed.password:
        env["PGPASSWORD"] = parsed.password
    with tempfile.NamedTemporaryFile("w", suffix=".sql") as script:
        script.write(LOOKUP_SQL)
        script.flush()
        done = subprocess.run(
            ["pgbench", "-n", "-M", "prepared", "-c", "2", "-j", "2", "-T", str(seconds)]
            + ["-f", script.name],
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=seconds + 60,
        )
    tps = re.search(r"tps = ([\d.]+)", done.stdout)
    latency = re.search(r"latency average = ([\d.]+) ms", done.stdout)
    return {
        "lookups_per_s": round(float(tps[1])) if tps else None,
        "latency_avg_ms": float(latency[1]) if latency else None,
        "conditions": load_conditions(),
    }


def run_one(
    args: argparse.Namespace,
    workdir: Path,
    rows: list[tuple[bytes, str]],
    recipients: Recipients,
    sample: list[str],
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with database("postgresql", args.postgres, workdir) as url:
        rt = runtime(url, workdir)
        token = api_token(rt, Role.mailer)
        log(f"loading {len(rows):,} rows")
        out["load_s"] = round(bulk_load(rt, rows), 1)
        rt.db.dispose()
        out["size"] = sizes(url)
        log(f"{len(rows):,} rows: {out['size']}")

        out["pgbench_lookup"] = pgbench_lookup(url, args.seconds)
        log(f"pgbench lookup: {out['pgbench_lookup']}")

        bodies = ",".join(json.dumps(json.dumps({"email": e, "list": "news"})) for e in sample)
        script = workdir / "check.lua"
        script.write_text(LUA % (bodies, token))
        env = {"SUPPRESS_RATELIMIT_API": "1000000 per second"}
        for name, app, path in (
            ("minimal", "bench.minimal_app:app", "/check"),
            ("suppress", None, "/v1/check"),
        ):
            server = Server(url, workdir, workers=2, app=app, env=env)
            try:
                out[f"check_{name}"] = wrk(
                    server.url + path, script, args.seconds, args.connections
                )
            finally:
                server.stop()
            out[f"check_{name}"]["conditions"] = load_conditions()
            log(f"check {name}: {out[f'check_{name}']}")
        out["check_ratio"] = round(out["check_suppress"]["rps"] / out["check_minimal"]["rps"], 3)

        server = Server(url, workdir, env=env)
        try:
            headers = {"Authorization": f"Bearer {token}", "Content-Type": "text/plain"}
            requests.post(
                f"{server.url}/v1/filter?list=news", data=b"warm@example.se\n", headers=headers
            ).raise_for_status()
            started = time.perf_counter()
            response = requests.post(
                f"{server.url}/v1/filter?list=news",
                data=recipients.body(),
                headers=headers,
                timeout=1800,
                stream=True,
            )
            response.raise_for_status()
            last = b""
            for line in response.iter_lines():
                last = line
            elapsed = time.perf_counter() - started
        finally:
            server.stop()
        out["filter"] = {
            "recipients": recipients.count,
            "seconds": round(elapsed, 2),
            "per_second": round(recipients.count / elapsed),
            "trailer": last.decode(),
            "conditions": load_conditions(),
        }
        log(f"filter: {out['filter']}")
    return out


if __name__ == "__main__":
    main()
