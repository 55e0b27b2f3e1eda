"""Time a nightly reconcile of one generic source file and one CRM audit.

    .venv/bin/python bench/reconcile.py [ROWS] [DATABASE_URL]

Default: 20,000 rows on a temporary SQLite file. Prints rows per second of the first run
(every row new), of a second run with the same file (already applied: hashing only), of a
second file with the same rows (every row existing), and of the audit.
"""

from __future__ import annotations

import base64
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from suppress.reconcile import AuditSpec, Settings, SourceSpec, audit_contacts, reconcile
from suppress.runtime import Runtime


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    work = Path(tempfile.mkdtemp(prefix="suppress-bench-"))
    url = sys.argv[2] if len(sys.argv) > 2 else f"sqlite:///{work / 'bench.db'}"
    rt = Runtime.load(
        {
            "database": {"url": url},
            "peppers": "b1:" + base64.b64encode(b"bench-pepper-0123456789abcdef").decode(),
            "token_secrets": "bench-token-secret-0123456789abcdef",
            "instance_dir": str(work),
        }
    )
    rt.db.upgrade()
    folder = work / "source"
    folder.mkdir()
    lines = "".join(f"person{i}@example.se\n" for i in range(rows))
    (folder / "a.txt").write_text(lines)
    settings = Settings(work / "reports", (SourceSpec("bench", folder, "generic", "news", None),))
    now = datetime(2026, 11, 25, 1, 30)

    def timed(label: str, key: str) -> None:
        start = time.perf_counter()
        report = reconcile(rt.db.begin, rt.ring, settings, now=now, run_key=key)
        seconds = time.perf_counter() - start
        counts = report.summary()["sources"]["bench"]
        print(f"{label}: {rows} rows in {seconds:.2f} s = {rows / seconds:,.0f} rows/s {counts}")

    timed("first run (all new)", "1")
    timed("same folder again", "2")
    (folder / "b.txt").write_text("email\n" + lines)
    timed("another file, same rows", "3")
    crm = work / "crm.csv"
    crm.write_text("id,email\n" + "".join(f"c{i},person{i * 2}@example.se\n" for i in range(rows)))
    start = time.perf_counter()
    with rt.db.begin() as session:
        audit = audit_contacts(
            session,
            rt.ring,
            AuditSpec("crm", crm, "news"),
            now=now,
            run_key="4",
            reports_folder=work / "reports",
        )
    seconds = time.perf_counter() - start
    print(
        f"audit: {rows} contacts in {seconds:.2f} s = {rows / seconds:,.0f} rows/s, "
        f"{audit.remove} to remove"
    )
    rt.db.dispose()


if __name__ == "__main__":
    main()
