"""Benchmark 2: POST /v1/check through gunicorn (2 workers) against a minimal Flask app.

The minimal app (bench/minimal_app.py) does only what no gate can skip: a constant-time
token comparison, normalize + HMAC, one indexed SELECT through the raw driver.

Both serve the same database of 10M suppressions with 2 gunicorn workers; wrk (with a Lua
script posting JSON bodies) drives each in turn on loopback, twice, alternating.

    apt-get install -y wrk
    .venv/bin/python -m bench.check --postgres postgresql+psycopg://postgres@127.0.0.1/test
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from suppress.addresses import normalize
from suppress.errors import InvalidEmail
from suppress.models import Role

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

LUA = """
local bodies = {%s}
local n = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %s"
request = function()
  n = n + 1
  return wrk.format(nil, nil, nil, bodies[(n %% #bodies) + 1])
end
"""
UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--postgres", default=os.environ.get("SUPPRESS_BENCH_POSTGRES_URL"))
    parser.add_argument("--seconds", type=int, default=15, help="duration of each wrk run")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--max-seconds", type=int, default=3600, help="bound on the whole run")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (apt-get install -y wrk)")

    results: dict[str, object] = {"rows": args.rows, "conditions_before": load_conditions()}
    with time_limit(args.max_seconds):
        recipients = Recipients(20_000)
        rows = recipients.suppression_rows()
        rows += [(d, "news") for d in random_digests(args.rows - len(rows), seed=13)]
        sample = [line for line in recipients.lines() if valid(line)][:2_000]
        for kind in args.databases.split(","):
            with tempfile.TemporaryDirectory(prefix="bench-check-") as tmp:
                results[kind] = run_one(kind, args, Path(tmp), rows, sample)
    results["conditions_after"] = load_conditions()
    print(json.dumps(results, indent=2))


def valid(line: str) -> bool:
    try:
        normalize(line)
    except InvalidEmail:
        return False
    return True


def run_one(
    kind: str,
    args: argparse.Namespace,
    workdir: Path,
    rows: list[tuple[bytes, str]],
    sample: list[str],
) -> dict[str, object]:
    with database(kind, args.postgres, workdir) as url:
        rt = runtime(url, workdir)
        token = api_token(rt, Role.mailer)
        log(f"{kind}: loading {len(rows):,} rows")
        bulk_load(rt, list(rows))
        rt.db.dispose()
        bodies = ",".join(json.dumps(json.dumps({"email": e, "list": "news"})) for e in sample)
        script = workdir / "check.lua"
        script.write_text(LUA % (bodies, token))
        out: dict[str, object] = {}
        # Alternate twice so both see the same (shared, noisy) machine.
        for round_ in (1, 2):
            for name, app, path in (
                ("minimal", "bench.minimal_app:app", "/check"),
                ("suppress", None, "/v1/check"),
            ):
                # The API rate limit (when present) is per key: lift it for the measurement.
                env = {
                    "SUPPRESS_RATELIMIT_API": "1000000 per second",
                    "SUPPRESS_BENCH_TOKEN": token,
                }
                server = Server(url, workdir, workers=2, app=app, env=env)
                try:
                    result: dict[str, Any] = wrk(
                        server.url + path, script, args.seconds, args.connections
                    )
                    result["peak_server_rss_mb"] = round(server.peak_rss_mb(), 1)
                finally:
                    server.stop()
                result["conditions"] = load_conditions()
                log(f"{kind} {name} round {round_}: {result}")
                out[f"{name}_{round_}"] = result
        best = {
            name: max((out[f"{name}_{r}"] for r in (1, 2)), key=lambda x: x["rps"])  # type: ignore[index]
            for name in ("minimal", "suppress")
        }
        out["ratio_best"] = round(best["suppress"]["rps"] / best["minimal"]["rps"], 3)  # type: ignore[index]
    return out


def wrk(url: str, script: Path, seconds: int, connections: int) -> dict[str, float]:
    """Run wrk and parse requests/s and the latency percentiles (ms)."""
    # A short warm-up so neither side pays for imports and first connections.
    subprocess.run(
        ["wrk", "-t1", "-c2", "-d2s", "-s", str(script), url], capture_output=True, check=True
    )
    done = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 60,
    )
    text = done.stdout
    result: dict[str, float] = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", text)[1])}  # type: ignore[index]
    for pct in ("50", "99"):
        match = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
        if match:
            result[f"p{pct}_ms"] = round(float(match[1]) * UNITS[match[2]], 2)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if errors:
        raise SystemExit(f"{url}: {errors[1]} failed requests\n{text}")
    return result


if __name__ == "__main__":
    main()
