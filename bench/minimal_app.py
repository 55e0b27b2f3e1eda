"""The yardstick for benchmark 2: a minimal Flask app doing the same single indexed lookup.

A constant-time comparison of the bearer token's SHA-256, JSON in, normalize + HMAC, one
SELECT on the (digest, kind, list) index through the raw driver (sqlite3, or psycopg for
PostgreSQL), JSON out. No ORM, no audit, no error envelope, no metrics. Served by gunicorn
exactly like `suppress serve`.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import sqlite3
import threading
from typing import Any

from flask import Flask, jsonify, request
from sqlalchemy.engine import make_url

from suppress.addresses import KeyRing, normalize
from suppress.config import parse_peppers

URL = make_url(os.environ["SUPPRESS_DATABASE_URL"])
ring = KeyRing(parse_peppers(os.environ["SUPPRESS_PEPPERS"]))
TOKEN_HASH = hashlib.sha256(os.environ["SUPPRESS_BENCH_TOKEN"].encode()).hexdigest()
app = Flask(__name__)
local = threading.local()
SQLITE = URL.get_backend_name() == "sqlite"
QUERY = (
    "SELECT reason FROM suppression WHERE digest = {p} AND kind = 'address' "
    "AND list IN ({p}, 'global') LIMIT 1"
).format(p="?" if SQLITE else "%s")


def connection() -> Any:
    """One connection per worker thread, opened on first use (after gunicorn's fork)."""
    conn = getattr(local, "conn", None)
    if conn is None:
        if SQLITE:
            conn = sqlite3.connect(URL.database or "", check_same_thread=False)
        else:
            import psycopg

            conn = psycopg.connect(URL.set(drivername="postgresql").render_as_string(False))
            conn.autocommit = True
        local.conn = conn
    return conn


@app.post("/check")
def check() -> Any:
    token = request.headers.get("Authorization", "").removeprefix("Bearer ")
    if not hmac.compare_digest(hashlib.sha256(token.encode()).hexdigest(), TOKEN_HASH):
        return jsonify({"error": "unauthorized"}), 401
    data = request.get_json()
    digest = ring.address(normalize(data["email"]))
    row = connection().execute(QUERY, (digest, data["list"])).fetchone()
    return jsonify({"email": data["email"], "list": data["list"], "allowed": row is None})
