"""Benchmark 6: SendGrid Event Webhook deliveries of 1,000 events through POST /webhooks/sendgrid.

Each database starts empty. The batches are signed beforehand (ECDSA P-256, as SendGrid
does) and posted in turn, then again (SendGrid's retries: every event a duplicate), by one
client and by four at once. Two mixes: every event an opt-out (each one written), and a
day's stream (95 % deliveries and opens, ignored; 5 % unsubscribes, complaints and bounces).
The yardstick, measured in the same run in this process: verifying the signature, parsing
the JSON and normalizing and keying every address, with no HTTP and no database.

    .venv/bin/python -m bench.webhooks --postgres postgresql+psycopg://postgres@127.0.0.1/test
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from suppress import webhooks
from suppress.addresses import Targeter
from suppress.errors import SuppressError

from .common import RING, Server, database, load_conditions, log, runtime, time_limit

KEY = ec.generate_private_key(ec.SECP256R1())
PUBLIC = base64.b64encode(
    KEY.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
).decode()
OPT_OUTS: tuple[tuple[str, dict[str, str]], ...] = (
    ("unsubscribe", {}),
    ("spamreport", {}),
    ("bounce", {"type": "bounce"}),
)


def batch(number: int, size: int, mix: str) -> bytes:
    """One delivery: `size` events of recipients no other batch names."""
    events = []
    for i in range(size):
        n = number * size + i
        if mix == "opt-outs" or i % 20 == 0:
            kind, extra = OPT_OUTS[n % 3]
        else:
            kind, extra = ("delivered", {}) if i % 2 else ("open", {})
        events.append(
            {
                "email": f"reader.{mix}.{n}@example{n % 997}.se",
                "timestamp": 1_700_000_000 + n,
                "event": kind,
                "sg_event_id": f"bench-{mix}-{n}",
                "sg_message_id": f"msg-{n}.filter0001",
                **extra,
            }
        )
    return json.dumps(events).encode()


def signed(body: bytes) -> dict[str, str]:
    stamp = str(int(time.time()))
    signature = KEY.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return {
        "Content-Type": "application/json",
        "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
        "X-Twilio-Email-Event-Webhook-Timestamp": stamp,
    }


def floor(bodies: list[bytes]) -> float:
    """Events/s of the work no receiver can skip: verify, parse, normalize and key."""
    targeter = Targeter(RING)
    events = 0
    started = time.perf_counter()
    for body in bodies:
        headers = signed(body)
        webhooks.verify_sendgrid(
            PUBLIC,
            headers["X-Twilio-Email-Event-Webhook-Signature"],
            headers["X-Twilio-Email-Event-Webhook-Timestamp"],
            body,
            time.time(),
        )
        for event in webhooks.sendgrid_events(json.loads(body), "global"):
            try:
                targeter.target(event.email)
            except SuppressError:
                pass
        events += len(json.loads(body))
    return events / (time.perf_counter() - started)


def post_all(url: str, bodies: list[bytes], clients: int) -> tuple[float, dict[str, int]]:
    """Post every body (signed just before), `clients` at a time; events/s and the totals."""
    totals: dict[str, int] = {}
    session = requests.Session()

    def post(body: bytes) -> dict[str, int]:
        answer = session.post(url, data=body, headers=signed(body), timeout=600)
        answer.raise_for_status()
        return answer.json()  # type: ignore[no-any-return]

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        for counts in pool.map(post, bodies):
            for name, value in counts.items():
                totals[name] = totals.get(name, 0) + value
    elapsed = time.perf_counter() - started
    return totals["received"] / elapsed, totals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=100, help="deliveries per mix")
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--postgres", default=os.environ.get("SUPPRESS_BENCH_POSTGRES_URL"))
    parser.add_argument("--max-seconds", type=int, default=1800, help="bound on the whole run")
    args = parser.parse_args()
    results: dict[str, object] = {"batches": args.batches, "batch_size": args.batch_size}
    with time_limit(args.max_seconds):
        mixes = {
            mix: [batch(n, args.batch_size, mix) for n in range(args.batches)]
            for mix in ("opt-outs", "daily")
        }
        for mix, bodies in mixes.items():
            rate = floor(bodies)
            results[f"floor_{mix}_events_per_s"] = round(rate)
            log(f"floor ({mix}): verify + parse + normalize + HMAC: {rate:,.0f} events/s")
        for kind in args.databases.split(","):
            with (
                tempfile.TemporaryDirectory(prefix="bench-webhooks-") as tmp,
                database(kind, args.postgres, Path(tmp)) as url,
            ):
                runtime(url, Path(tmp)).db.dispose()  # migrated
                server = Server(
                    url,
                    Path(tmp),
                    env={
                        "SUPPRESS_WEBHOOK_SENDGRID_PUBLIC_KEY": PUBLIC,
                        "SUPPRESS_RATELIMIT_ENABLED": "false",
                    },
                )
                found: dict[str, object] = {"conditions": load_conditions()}
                try:
                    endpoint = server.url + "/webhooks/sendgrid"
                    for mix, bodies in mixes.items():
                        half = len(bodies) // 2
                        one, one_totals = post_all(endpoint, bodies[:half], 1)
                        four, four_totals = post_all(endpoint, bodies[half:], 4)
                        retried, retry_totals = post_all(endpoint, bodies, 4)
                        expected_added = sum(
                            1
                            for body in bodies
                            for event in json.loads(body)
                            if event["event"] not in ("delivered", "open")
                        )
                        added = one_totals.get("added", 0) + four_totals.get("added", 0)
                        if added != expected_added or retry_totals.get("added", 0):
                            raise SystemExit(f"{kind} {mix}: added {added}, retry {retry_totals}")
                        found[mix] = {
                            "one_client_events_per_s": round(one),
                            "four_clients_events_per_s": round(four),
                            "retried_events_per_s": round(retried),
                            "added": added,
                        }
                        log(f"{kind} {mix}: {found[mix]}")
                    found["peak_server_rss_mb"] = round(server.peak_rss_mb(), 1)
                finally:
                    server.stop()
                results[kind] = found
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
