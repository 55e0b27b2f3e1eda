"""Benchmark 4: hostile bodies. Over-long lines and deeply nested JSON against a served instance.

A line of N MiB with no newline goes to the streamed filter and to the import (SQLite, via
`suppress serve`); the time to the answer and the workers' peak RSS show that the reader
skips it in linear time and bounded memory. Deep JSON goes to /v1/check. In process: the
line reader alone, and the nesting check against json.loads on the JSON filter's largest
body.

    .venv/bin/python -m bench.hostile
    .venv/bin/python -m bench.hostile --mib 8 32 128
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import requests

from suppress import api, bulk, jsontext
from suppress.models import Role

from .common import Server, api_token, load_conditions, log, runtime, time_limit

BLOCK = b"x" * bulk.READ_CHUNK


def no_newline(mib: int, tail: bytes = b"\nafter@example.se\n") -> Iterator[bytes]:
    """mib MiB without a newline, then one address: generated, never held whole."""
    for _ in range((mib << 20) // len(BLOCK)):
        yield BLOCK
    yield tail


def timed_post(url: str, token: str, mib: int, ctype: str = "text/plain") -> tuple[float, bytes]:
    started = time.perf_counter()
    response = requests.post(
        url,
        data=no_newline(mib),
        headers={"Authorization": f"Bearer {token}", "Content-Type": ctype},
        timeout=600,
    )
    response.raise_for_status()
    return time.perf_counter() - started, response.content


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, nargs="+", default=[8, 32, 128])
    parser.add_argument("--max-seconds", type=int, default=900, help="bound on the whole run")
    args = parser.parse_args()
    results: dict[str, object] = {"conditions": load_conditions()}
    with time_limit(args.max_seconds), tempfile.TemporaryDirectory(prefix="bench-hostile-") as tmp:
        # The reader alone, in process.
        reader: dict[str, float] = {}
        for mib in args.mib:
            started = time.perf_counter()
            lines = list(bulk.iter_lines(no_newline(mib)))
            reader[f"{mib}_mib_s"] = round(time.perf_counter() - started, 3)
            assert lines == [bulk.TOO_LONG, b"after@example.se"], lines
        results["iter_lines"] = reader
        log(f"iter_lines alone: {reader}")

        # JSON nesting: the check against the parser, on the JSON filter's largest body.
        flat = b"[" + b"[]," * ((api.MAX_FILTER_JSON_BYTES - 8) // 3) + b"[]]"
        started = time.perf_counter()
        assert not jsontext.nests_deeper(flat, jsontext.MAX_DEPTH)
        scan = time.perf_counter() - started
        started = time.perf_counter()
        json.loads(flat)
        parse = time.perf_counter() - started
        results["nesting_check_worst_case"] = {
            "body_mb": round(len(flat) / 1e6, 1),
            "check_s": round(scan, 2),
            "json_loads_s": round(parse, 2),
        }
        log(f"nesting check {scan:.2f} s, json.loads {parse:.2f} s on {len(flat) / 1e6:.0f} MB")
        del flat

        url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        rt = runtime(url, Path(tmp))
        token = api_token(rt, Role.recorder)
        rt.db.dispose()
        server = Server(url, Path(tmp), workers=1)
        try:
            requests.post(
                f"{server.url}/v1/filter?list=news",
                data=b"a@example.se\n",
                headers={"Authorization": f"Bearer {token}", "Content-Type": "text/plain"},
                timeout=60,
            ).raise_for_status()
            results["server_peak_rss_mb_before"] = round(server.peak_rss_mb(), 1)
            served: dict[str, object] = {}
            for mib in args.mib:
                seconds, answer = timed_post(f"{server.url}/v1/filter?list=news", token, mib)
                assert answer.endswith(b"# checked=2 allowed=1 suppressed=0 invalid=1\n"), answer
                served[f"filter_{mib}_mib_s"] = round(seconds, 2)
                served[f"filter_{mib}_mib_peak_rss_mb"] = round(server.peak_rss_mb(), 1)
                log(f"filter, a {mib} MiB line: {seconds:.2f} s, RSS {server.peak_rss_mb():.0f} MB")
            biggest = max(args.mib)
            seconds, answer = timed_post(
                f"{server.url}/v1/imports?list=news&reason=unsubscribe", token, biggest, "text/csv"
            )
            assert json.loads(answer)["invalid_lines"] == [{"line": 1, "code": "line_too_long"}]
            served[f"import_{biggest}_mib_s"] = round(seconds, 2)
            deep = b"[" * 100_000 + b"]" * 100_000
            started = time.perf_counter()
            response = requests.post(
                f"{server.url}/v1/check",
                data=deep,
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
                timeout=60,
            )
            assert response.status_code == 400, response.text
            served["check_100k_deep_json_s"] = round(time.perf_counter() - started, 3)
            served["peak_rss_mb_after"] = round(server.peak_rss_mb(), 1)
            results["served"] = served
        finally:
            server.stop()
    results["conditions_after"] = load_conditions()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
