"""Benchmark 3: import 1M addresses through POST /v1/imports on SQLite and PostgreSQL.

Each database starts empty; the body is generated on the fly and streamed (chunked).

    .venv/bin/python -m bench.imports --postgres postgresql+psycopg://postgres@127.0.0.1/test
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import requests

from suppress.addresses import Targeter
from suppress.models import Role

from .common import RING, Server, api_token, database, load_conditions, log, runtime, time_limit


def body(count: int, chunk_lines: int = 2_000) -> Iterator[bytes]:
    """count distinct addresses, one per line, in chunks."""
    for start in range(0, count, chunk_lines):
        stop = min(start + chunk_lines, count)
        yield "".join(f"optout.{i}@example{i % 997}.se\n" for i in range(start, stop)).encode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--addresses", type=int, default=1_000_000)
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--postgres", default=os.environ.get("SUPPRESS_BENCH_POSTGRES_URL"))
    parser.add_argument("--max-seconds", type=int, default=1800, help="bound on the whole run")
    args = parser.parse_args()
    results: dict[str, object] = {"addresses": args.addresses}
    with time_limit(args.max_seconds):
        # The floor in Python alone: normalization and the digests of every address.
        targeter = Targeter(RING)
        started = time.perf_counter()
        for chunk in body(args.addresses):
            for line in chunk.splitlines():
                targeter.target(line.decode())
        floor = time.perf_counter() - started
        results["normalize_and_hmac_only_rows_per_s"] = round(args.addresses / floor)
        log(f"normalize + HMAC alone: {args.addresses / floor:,.0f} rows/s")
        for kind in args.databases.split(","):
            with (
                tempfile.TemporaryDirectory(prefix="bench-import-") as tmp,
                database(kind, args.postgres, Path(tmp)) as url,
            ):
                rt = runtime(url, Path(tmp))
                token = api_token(rt, Role.recorder)
                rt.db.dispose()
                server = Server(url, Path(tmp))
                try:
                    log(f"{kind}: importing {args.addresses:,} addresses ({load_conditions()})")
                    started = time.perf_counter()
                    response = requests.post(
                        f"{server.url}/v1/imports",
                        params={"list": "news", "reason": "unsubscribe", "source": "bench"},
                        data=body(args.addresses),
                        headers={"Authorization": f"Bearer {token}", "Content-Type": "text/csv"},
                        timeout=args.max_seconds,
                    )
                    elapsed = time.perf_counter() - started
                    response.raise_for_status()
                    rss = server.peak_rss_mb()
                finally:
                    server.stop()
                answer = response.json()
                if answer["added"] != args.addresses:
                    raise SystemExit(f"{kind}: expected {args.addresses} added, got {answer}")
                results[kind] = {
                    "seconds": round(elapsed, 2),
                    "rows_per_s": round(args.addresses / elapsed),
                    "peak_server_rss_mb": round(rss, 1),
                    "conditions": load_conditions(),
                }
                log(f"{kind}: {results[kind]}")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
