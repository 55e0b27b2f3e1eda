"""The yardstick for benchmark 2: a minimal Flask app doing the same single indexed lookup.

No authentication, no audit, no error envelope: JSON in, normalize + HMAC, one SELECT on the
(digest, kind, list) index, JSON out. Served by gunicorn exactly like `suppress serve`.
"""

from __future__ import annotations

import os
from typing import Any

from flask import Flask, jsonify, request
from sqlalchemy import create_engine, select

from suppress.addresses import KeyRing, normalize
from suppress.config import parse_peppers
from suppress.models import Suppression

engine = create_engine(os.environ["SUPPRESS_DATABASE_URL"])
ring = KeyRing(parse_peppers(os.environ["SUPPRESS_PEPPERS"]))
app = Flask(__name__)


@app.post("/check")
def check() -> Any:
    data = request.get_json()
    digest = ring.address(normalize(data["email"]))
    with engine.connect() as conn:
        row = conn.execute(
            select(Suppression.reason)
            .where(Suppression.digest == digest, Suppression.list.in_((data["list"], "global")))
            .limit(1)
        ).first()
    return jsonify({"email": data["email"], "list": data["list"], "allowed": row is None})
