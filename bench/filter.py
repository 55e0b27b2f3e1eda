"""Benchmark 1: stream 1M recipients through `suppress serve` against 10M suppressions.

Measures, in one run and on the same data: the in-process limit (normalize + HMAC with
precomputed pads + Python set lookup), then the streamed POST /v1/filter over HTTP on SQLite
and on PostgreSQL, with the server's peak RSS.

    .venv/bin/python -m bench.filter --postgres postgresql+psycopg://postgres@127.0.0.1/test
    .venv/bin/python -m bench.filter --plain --recipients 200000 --suppressions 1000000

`--plain`: every recipient a plain ASCII address (still 10 % suppressed), the gate's
commonest case.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import requests

from suppress.models import Role

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipients", type=int, default=1_000_000)
    parser.add_argument("--suppressions", type=int, default=10_000_000)
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--postgres", default=os.environ.get("SUPPRESS_BENCH_POSTGRES_URL"))
    parser.add_argument(
        "--plain", action="store_true", help="plain ASCII recipients only (no invalid, no IDN)"
    )
    parser.add_argument("--max-seconds", type=int, default=3600, help="bound on the whole run")
    args = parser.parse_args()

    with time_limit(args.max_seconds):
        recipients = (
            Recipients(args.recipients, invalid_share=0.0, non_ascii_share=0.0)
            if args.plain
            else Recipients(args.recipients)
        )
        log(f"generating {args.suppressions:,} suppressions ({load_conditions()})")
        rows = recipients.suppression_rows()
        rows += [(d, "news") for d in random_digests(args.suppressions - len(rows), seed=11)]
        digests = {d for d, _ in rows}
        log("in-process limit")
        limit, expected_suppressed = in_process_limit(recipients, digests)
        del digests
        log(f"limit {limit:.2f} s, {expected_suppressed:,} suppressed")
        results = {
            "recipients": args.recipients,
            "suppressions": args.suppressions,
            "plain": args.plain,
            "limit_s": round(limit, 2),
            "conditions_before": load_conditions(),
        }
        for kind in args.databases.split(","):
            with tempfile.TemporaryDirectory(prefix="bench-filter-") as tmp:
                results[kind] = run_one(kind, args.postgres, Path(tmp), rows, recipients, limit)
                if results[kind]["suppressed"] != expected_suppressed:
                    raise SystemExit(f"{kind}: suppressed count differs from the limit's")
        results["conditions_after"] = load_conditions()
    print(json.dumps(results, indent=2))


def run_one(
    kind: str,
    postgres: str | None,
    workdir: Path,
    rows: list[tuple[bytes, str]],
    recipients: Recipients,
    limit: float,
) -> dict[str, object]:
    with database(kind, postgres, workdir) as url:
        rt = runtime(url, workdir)
        token = api_token(rt, Role.mailer)
        log(f"{kind}: loading {len(rows):,} rows")
        loaded = bulk_load(rt, list(rows))
        rt.db.dispose()
        log(f"{kind}: loaded in {loaded:.0f} s; starting suppress serve")
        server = Server(url, workdir)
        try:
            # Warm up (the first request pays for imports and connections), then measure.
            requests.post(
                f"{server.url}/v1/filter?list=news",
                data=b"warm@example.se\n",
                headers={"Authorization": f"Bearer {token}", "Content-Type": "text/plain"},
                timeout=60,
            ).raise_for_status()
            started = time.perf_counter()
            response = requests.post(
                f"{server.url}/v1/filter?list=news",
                data=recipients.body(),
                headers={"Authorization": f"Bearer {token}", "Content-Type": "text/plain"},
                timeout=1800,
                stream=True,
            )
            response.raise_for_status()
            last = b""
            allowed = 0
            for line in response.iter_lines():
                if last:
                    allowed += 1
                last = line
            elapsed = time.perf_counter() - started
            rss = server.peak_rss_mb()
        finally:
            server.stop()
    fields = dict(part.split("=") for part in last.decode().removeprefix("# ").split())
    result = {
        "service_s": round(elapsed, 2),
        "ratio_limit_over_service": round(limit / elapsed, 3),
        "peak_server_rss_mb": round(rss, 1),
        "load_s": round(loaded, 1),
        "trailer": last.decode(),
        "suppressed": int(fields["suppressed"]),
        "conditions": load_conditions(),
    }
    if allowed != int(fields["allowed"]):
        raise SystemExit(f"{kind}: {allowed} lines but the trailer says {fields['allowed']}")
    log(f"{kind}: {result}")
    return result


if __name__ == "__main__":
    main()
