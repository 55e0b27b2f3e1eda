"""Benchmark 7: each throughput against the list's size, on both databases, with a peer.

For each database and each size (10k to 10M address suppressions): a fresh database loaded
with that many rows, then
- single checks through `suppress serve` and through `bench/minimal_app.py` (wrk, 2 gunicorn
  workers each, one after the other);
- a streamed filter of the recipients through `POST /v1/filter`, beside the in-process
  limit (the same per-recipient work against a Python set of every digest);
- an import of new addresses through `POST /v1/imports` into the loaded list;
and, once per size, GNU Mailman 3's own ban check (`bench/mailman_peer.py`, run with a
Python that has Mailman installed; `--mailman-python`, skipped without it).

Prints JSON on stdout; `--plot FILE.svg` also draws the figure of docs/performance.md
(bench/plot.py); `--from-json FILE` redraws it from an earlier run's output.

    apt-get install -y wrk
    python3 -m venv /tmp/mailman-venv && /tmp/mailman-venv/bin/pip install mailman
    .venv/bin/python -m bench.sizes --postgres postgresql+psycopg://postgres@127.0.0.1/test \\
        --mailman-python /tmp/mailman-venv/bin/python --plot docs/performance-sizes.svg
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests

from suppress import addresses, clock, suppressions
from suppress.models import Role
from suppress.runtime import Runtime

from . import plot
from .check import LUA, valid, wrk
from .common import (
    Recipients,
    Server,
    api_token,
    bulk_load,
    database,
    in_process_limit,
    load_conditions,
    log,
    random_digests,
    runtime,
    time_limit,
)
from .imports import body as import_body

SIZES = "10000,100000,1000000,10000000"
# Lift the API's rate limit for the measurement (it is per key and per second).
UNLIMITED = {"SUPPRESS_RATELIMIT_API": "1000000 per second"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=SIZES, help="comma-separated row counts")
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--postgres", default=os.environ.get("SUPPRESS_BENCH_POSTGRES_URL"))
    parser.add_argument("--recipients", type=int, default=50_000, help="filtered per size")
    parser.add_argument("--imports", type=int, default=50_000, help="imported per size")
    parser.add_argument("--seconds", type=int, default=5, help="duration of each wrk run")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--mailman-python", help="a Python with GNU Mailman 3 installed")
    parser.add_argument(
        "--mailman-max",
        type=int,
        default=1_000_000,
        help="largest size for the peer (its miss scans every ban: ~20 s and 1.3 GB at 1M)",
    )
    parser.add_argument("--plot", type=Path, help="also draw the figure into this SVG file")
    parser.add_argument("--from-json", type=Path, help="only draw, from an earlier output")
    parser.add_argument("--max-seconds", type=int, default=3600, help="bound on the whole run")
    args = parser.parse_args()
    if args.from_json:
        if not args.plot:
            raise SystemExit("--from-json needs --plot FILE.svg")
        plot.write(json.loads(args.from_json.read_text()), args.plot)
        return
    kinds = args.databases.split(",")
    if "postgresql" in kinds and not args.postgres:
        raise SystemExit("--postgres URL (or SUPPRESS_BENCH_POSTGRES_URL) is required")
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (apt-get install -y wrk)")
    sizes = [int(s) for s in args.sizes.split(",")]

    results: dict[str, Any] = {
        "sizes": sizes,
        "recipients": args.recipients,
        "imports": args.imports,
        "conditions_before": load_conditions(),
    }
    with time_limit(args.max_seconds):
        recipients = Recipients(args.recipients)
        own = recipients.suppression_rows()
        sample = [line for line in recipients.lines() if valid(line)][:2_000]
        for size in sizes:
            if size < len(own):
                raise SystemExit(f"size {size} is below the recipients' own {len(own)} rows")
            rows = own + [(d, "news") for d in random_digests(size - len(own), seed=size)]
            limit_s, _ = in_process_limit(recipients, {d for d, _lst in rows})
            point: dict[str, Any] = {
                "filter_limit_per_s": round(recipients.count / limit_s),
            }
            log(f"{size:,}: in-process filter limit {point['filter_limit_per_s']:,}/s")
            for kind in kinds:
                with tempfile.TemporaryDirectory(prefix="bench-sizes-") as tmp:
                    point[kind] = run_one(kind, args, Path(tmp), list(rows), recipients, sample)
            if args.mailman_python and size <= args.mailman_max:
                point["mailman"] = mailman(args.mailman_python, size, args.seconds)
                log(f"{size:,}: mailman {point['mailman']}")
            results[str(size)] = point
            del rows
    results["conditions_after"] = load_conditions()
    print(json.dumps(results, indent=2))
    if args.plot:
        plot.write(results, args.plot)
        log(f"drew {args.plot}")


def run_one(
    kind: str,
    args: argparse.Namespace,
    workdir: Path,
    rows: list[tuple[bytes, str]],
    recipients: Recipients,
    sample: list[str],
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with database(kind, args.postgres, workdir) as url:
        rt = runtime(url, workdir)
        mailer, recorder = api_token(rt, Role.mailer), api_token(rt, Role.recorder)
        log(f"{kind}: loading {len(rows):,} rows")
        out["load_s"] = round(bulk_load(rt, rows), 1)
        rt.db.dispose()
        rt = runtime(url, workdir)
        out["check_in_process"] = in_process_checks(rt, sample, args.seconds)
        rt.db.dispose()
        log(f"{kind} {len(rows):,}: in-process checks {out['check_in_process']}")

        bodies = ",".join(json.dumps(json.dumps({"email": e, "list": "news"})) for e in sample)
        script = workdir / "check.lua"
        script.write_text(LUA % (bodies, mailer))
        env = {**UNLIMITED, "SUPPRESS_BENCH_TOKEN": mailer}
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
            log(f"{kind} {len(rows):,}: check {name} {out[f'check_{name}']}")

        server = Server(url, workdir, env=UNLIMITED)
        try:
            out["filter"] = filter_run(server.url, mailer, recipients)
            log(f"{kind} {len(rows):,}: filter {out['filter']}")
            out["import"] = import_run(server.url, recorder, args.imports)
            log(f"{kind} {len(rows):,}: import {out['import']}")
        finally:
            server.stop()
        out["conditions"] = load_conditions()
    return out


def in_process_checks(rt: Runtime, sample: list[str], seconds: int) -> dict[str, Any]:
    """The gate's own check as a library call (normalize, HMAC, one statement), in one
    thread: what compares with a peer's in-process ban check."""
    done, allowed = 0, 0
    stop = time.perf_counter() + seconds
    started = time.perf_counter()
    while time.perf_counter() < stop:
        for email in sample[:200]:
            target = addresses.address_target(rt.ring, email)
            verdict = suppressions.check_one(
                rt.db.query, not rt.db.is_sqlite, target, "news", now=clock.utcnow()
            )
            done += 1
            allowed += verdict.allowed
    elapsed = time.perf_counter() - started
    return {"checks_per_s": round(done / elapsed), "allowed_share": round(allowed / done, 3)}


def filter_run(base: str, token: str, recipients: Recipients) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "text/plain"}
    url = f"{base}/v1/filter?list=news"
    requests.post(url, data=b"warm@example.se\n", headers=headers).raise_for_status()
    started = time.perf_counter()
    response = requests.post(
        url, data=recipients.body(), headers=headers, timeout=1800, stream=True
    )
    response.raise_for_status()
    last = b""
    for line in response.iter_lines():
        last = line
    elapsed = time.perf_counter() - started
    return {
        "seconds": round(elapsed, 2),
        "per_second": round(recipients.count / elapsed),
        "trailer": last.decode(),
    }


def import_run(base: str, token: str, count: int) -> dict[str, Any]:
    started = time.perf_counter()
    response = requests.post(
        f"{base}/v1/imports",
        params={"list": "news", "reason": "unsubscribe", "source": "bench"},
        data=import_body(count),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "text/csv"},
        timeout=1800,
    )
    elapsed = time.perf_counter() - started
    response.raise_for_status()
    added = response.json()["added"]
    if added != count:
        raise SystemExit(f"import: expected {count} added, got {added}")
    return {"seconds": round(elapsed, 2), "rows_per_s": round(count / elapsed)}


def mailman(python: str, size: int, seconds: int) -> dict[str, Any]:
    """GNU Mailman 3's ban check at this size, in a process of its own Python."""
    with tempfile.TemporaryDirectory(prefix="bench-mailman-") as tmp:
        done = subprocess.run(
            [
                python,
                str(Path(__file__).with_name("mailman_peer.py")),
                "--sizes",
                str(size),
                "--seconds",
                str(seconds),
                "--workdir",
                tmp,
            ],
            capture_output=True,
            text=True,
            timeout=3600,
        )
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        raise SystemExit(f"bench/mailman_peer.py failed at {size:,} rows")
    found: dict[str, Any] = json.loads(done.stdout)
    return found["results"][0]  # type: ignore[no-any-return]


if __name__ == "__main__":
    main()
