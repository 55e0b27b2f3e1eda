"""Peer yardstick: GNU Mailman 3's own ban check (`IBanManager.is_banned`) against the
number of bans, in-process, on SQLite.

Runs under a Python of its own with Mailman installed (it does not import suppress):

    python3 -m venv /tmp/mailman-venv && /tmp/mailman-venv/bin/pip install mailman
    /tmp/mailman-venv/bin/python bench/mailman_peer.py --sizes 10000,100000 --seconds 5

bench/sizes.py runs it once per size when given `--mailman-python /tmp/mailman-venv/bin/python`,
as `PYTHON bench/mailman_peer.py --sizes N --seconds S --workdir TMPDIR`, and reads
`results[0]` of the JSON this prints on stdout (progress goes to stderr).

For each size: Mailman is initialised with a minimal mailman.cfg (its var directory and its
SQLite database inside the work directory; Mailman creates the schema itself), N global bans
(list_id NULL) are bulk-inserted into Mailman's `ban` table through Mailman's own engine
(timed: load_s), then `BanManager(None).is_banned(address)` runs in a loop for --seconds
over probes of which --banned-share are banned (one closing each run of 1/share probes),
each verdict checked against the expected one; hit_ms and miss_ms are the mean time of a
check of a banned and of a non-banned probe.

Mind the cost at large sizes: for an address that is not banned, Mailman's is_banned loads
every global ban as an ORM object to test it as a pattern (a list's BanManager does the
same with the list's bans, then the global ones), so a miss is O(N) in time and memory.
Measured with Mailman 3.3.10 and SQLAlchemy 2.1.9 on Python 3.11: a miss takes about 0.15 s
at 10k bans and 19 s at 1M (peak RSS 1.3 GB), so at 10M expect one check of some minutes
and about 12 GB (peak_rss_mb is reported). Should a newer Mailman not install, pin
`mailman==3.3.10`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# Run as a script, this file's directory (bench/) comes first on sys.path, and its modules
# (check, filter, plot, ...) could shadow what Mailman's dependencies import.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

DOMAINS = 2_000  # as bench/common.py's Recipients
MAILMAN_CFG = """\
[mailman]
layout: bench
site_owner: bench@example.com

[paths.bench]
var_dir: {var_dir}

[database]
class: mailman.database.sqlite.SQLiteDatabase
url: sqlite:///$DATA_DIR/mailman.db
"""


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] mailman: {message}", file=sys.stderr, flush=True)


def address(i: int) -> str:
    """The i-th address, shaped like bench/common.py's Recipients."""
    return f"First.Last{i}+news@Example{i % DOMAINS}.com"


def start_mailman(workdir: Path) -> Any:
    """Initialise Mailman (configuration, database, schema) inside workdir."""
    for name in ("MAILMAN_CONFIG_FILE", "MAILMAN_VAR_DIR", "MAILMAN_EXTRA_TESTING_CFG"):
        os.environ.pop(name, None)
    cfg = workdir / "mailman.cfg"
    cfg.write_text(MAILMAN_CFG.format(var_dir=workdir / "var"))
    from mailman.config import config
    from mailman.core.initialize import initialize

    initialize(str(cfg), propagate_logs=False)
    return config


def load_bans(config: Any, size: int) -> float:
    """A fresh `ban` table holding `size` global bans; returns seconds taken.

    Like bench/common.py's SQLite bulk load: rows in index order, executemany in big
    transactions with synchronous off, then ANALYZE.
    """
    from mailman.model.bans import Ban

    config.db.abort()
    config.db.close_session()
    table = Ban.__table__
    table.drop(config.db.engine)
    table.create(config.db.engine)
    started = time.perf_counter()
    emails = sorted(address(i) for i in range(size))
    raw = config.db.engine.raw_connection()
    try:
        cur = raw.cursor()
        cur.execute("PRAGMA synchronous = OFF")
        cur.execute("PRAGMA cache_size = -1000000")
        step = 500_000
        for start in range(0, size, step):
            cur.executemany(
                "INSERT INTO ban (email, list_id) VALUES (?, NULL)",
                ((e,) for e in emails[start : start + step]),
            )
            raw.commit()
        cur.execute("ANALYZE")
        raw.commit()
    finally:
        raw.close()
    return time.perf_counter() - started


def probes(size: int, count: int, banned_share: float) -> list[tuple[str, bool]]:
    """(address, expected banned) pairs; one banned probe ends each run of 1/share probes.

    A miss costs far more than a hit, and at large sizes the loop gets through only a few
    probes: with the hits last, a short run understates the rate by at most the banned
    share, where hits first would overstate it (two probes, one a free hit: twice the rate).
    """
    rnd = random.Random(size)
    every = round(1 / banned_share) if banned_share > 0 else 0
    found = []
    for k in range(count):
        if every and k % every == every - 1:
            found.append((address(rnd.randrange(size)), True))
        else:
            found.append((address(size + rnd.randrange(size)), False))
    return found


def measure(
    config: Any, size: int, seconds: float, probe_count: int, share: float
) -> dict[str, Any]:
    from mailman.model.bans import BanManager

    config.db.abort()
    manager = BanManager(None)
    sample = probes(size, probe_count, share)
    # Warm-up with a hit (a miss costs O(size)); it also checks that the load went right.
    hit = next((email for email, should in sample if should), address(0))
    if not manager.is_banned(hit):
        raise SystemExit(f"{hit} is loaded but not found banned")
    done = banned = expected = wrong = 0
    spent = {True: 0.0, False: 0.0}  # seconds in checks of banned / non-banned probes
    started = time.perf_counter()
    stop = started + seconds
    while True:
        email, should = sample[done % len(sample)]
        before = time.perf_counter()
        verdict = manager.is_banned(email)
        after = time.perf_counter()
        spent[should] += after - before
        banned += verdict
        expected += should
        wrong += verdict != should
        done += 1
        if after >= stop:
            break
    elapsed = time.perf_counter() - started
    config.db.abort()
    if wrong:
        raise SystemExit(f"{wrong} of {done} probes got the wrong verdict")
    return {
        "checks_per_s": float(f"{done / elapsed:.3g}"),  # 3 significant digits
        "probes": done,
        "banned_probes": banned,
        "expected_banned": expected,
        "banned_share": round(banned / done, 3),
        "hit_ms": round(1000 * spent[True] / expected, 3) if expected else None,
        "miss_ms": round(1000 * spent[False] / (done - expected), 3) if done > expected else None,
        "seconds": round(elapsed, 2),
    }


def peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def run(args: argparse.Namespace, workdir: Path) -> list[dict[str, Any]]:
    import sqlalchemy
    from mailman.version import VERSION

    config = start_mailman(workdir)
    log(f"Mailman {VERSION} initialised in {workdir}")
    results = []
    for size in (int(s) for s in args.sizes.split(",")):
        load_s = load_bans(config, size)
        log(f"{size:,}: loaded in {load_s:.1f} s")
        point: dict[str, Any] = {"size": size, "load_s": round(load_s, 2)}
        point |= measure(config, size, args.seconds, args.probes, args.banned_share)
        point |= {
            "peak_rss_mb": peak_rss_mb(),
            "mailman_version": VERSION,
            "sqlalchemy_version": sqlalchemy.__version__,
        }
        log(f"{size:,}: {point}")
        results.append(point)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", "--size", default="10000,100000", help="comma-separated")
    parser.add_argument("--seconds", type=float, default=5, help="duration of each check loop")
    parser.add_argument("--probes", type=int, default=2_000, help="distinct probe addresses")
    parser.add_argument("--banned-share", type=float, default=0.10, help="share of banned probes")
    parser.add_argument("--workdir", type=Path, help="for Mailman's files (default: a temp dir)")
    args = parser.parse_args()
    if not 0 <= args.banned_share <= 1:
        raise SystemExit("--banned-share must be between 0 and 1")
    if args.probes < 1:
        raise SystemExit("--probes must be at least 1")
    out = sys.stdout
    # Whatever Mailman might print goes to stderr: stdout carries only the JSON.
    with contextlib.redirect_stdout(sys.stderr):
        if args.workdir:
            args.workdir.mkdir(parents=True, exist_ok=True)
            results = run(args, args.workdir)
        else:
            with tempfile.TemporaryDirectory(prefix="bench-mailman-") as tmp:
                results = run(args, Path(tmp))
    out.write(json.dumps({"results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
