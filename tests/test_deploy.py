"""The deployment of DESIGN §7 and §13, for real: Debian's nginx configured with the shipped
deploy/nginx/suppress.conf in front of `suppress serve` instances (the installed package),
TLS at the proxy; two instances and two schedulers on one PostgreSQL, rate limits in Redis."""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from requests.adapters import HTTPAdapter

from .conftest import IN_CI, LiveServer, free_port, postgres_schema
from .test_scheduler_processes import Processes, bodies_run, runs, wait_for
from .test_scheduler_processes import config as scheduler_config

pytestmark = pytest.mark.e2e
DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
REDIS_URL = "redis://127.0.0.1:6379/5"


def nginx_or_skip() -> None:
    if os.access(NGINX, os.X_OK) and shutil.which("openssl"):
        return
    reason = "Debian's nginx (or openssl) is not installed: proxy tests NOT RUN"
    if IN_CI:
        pytest.fail(reason + " (CI=true requires them; .ci/run installs nginx-light)")
    pytest.skip(reason)


def swap(text: str, old: str, new: str, count: int = 1) -> str:
    """Replace a line the shipped file must contain, exactly `count` times."""
    assert text.count(old) == count, f"deploy/nginx/suppress.conf no longer holds {old!r}"
    return text.replace(old, new)


class Nginx:
    """nginx in the foreground with the shipped site, on loopback ports, with a test cert."""

    def __init__(self, tmp_path: Path, upstreams: list[int], https_port: int):
        """https_port is chosen first: the instances' base URL names it before nginx starts."""
        nginx_or_skip()
        self.dir = tmp_path / "nginx"
        self.dir.mkdir()
        self.https_port, self.http_port = https_port, free_port()
        self.url = f"https://127.0.0.1:{self.https_port}"
        self.cert, key = self.dir / "cert.pem", self.dir / "key.pem"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"]
            + ["-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"]
            + ["-keyout", str(key), "-out", str(self.cert)],
            check=True,
            capture_output=True,
        )
        self.access_log = self.dir / "access.log"
        site = (DEPLOY / "nginx" / "suppress.conf").read_text()
        site = swap(
            site,
            "    server 127.0.0.1:8000 max_fails=1 fail_timeout=5s;\n",
            "".join(f"    server 127.0.0.1:{p} max_fails=1 fail_timeout=5s;\n" for p in upstreams),
        )
        site = swap(site, "    listen 80;\n", f"    listen 127.0.0.1:{self.http_port};\n")
        site = swap(site, "    listen [::]:80;\n", "")
        tls = f"    listen 127.0.0.1:{self.https_port} ssl http2;\n"
        site = swap(site, "    listen 443 ssl http2;\n", tls)
        site = swap(site, "    listen [::]:443 ssl http2;\n", "")
        site = swap(site, "/etc/ssl/certs/suppress.example.com.pem", str(self.cert))
        site = swap(site, "/etc/ssl/private/suppress.example.com.key", str(key))
        site = swap(site, "/var/log/nginx/suppress.access.log", str(self.access_log), count=2)
        self.error_log = self.dir / "suppress.error.log"
        site = swap(site, "/var/log/nginx/suppress.error.log", str(self.error_log), count=2)
        (self.dir / "site.conf").write_text(site)
        temp = {name: self.dir / name for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi")}
        (self.dir / "nginx.conf").write_text(
            ("user root;\n" if os.geteuid() == 0 else "")
            + f"daemon off;\nworker_processes 1;\npid {self.dir / 'nginx.pid'};\n"
            + f"error_log {self.dir / 'error.log'} info;\n"
            + "events { worker_connections 256; }\nhttp {\n"
            + f"  client_body_temp_path {temp['body']};\n  proxy_temp_path {temp['proxy']};\n"
            + f"  fastcgi_temp_path {temp['fastcgi']};\n  uwsgi_temp_path {temp['uwsgi']};\n"
            + f"  scgi_temp_path {temp['scgi']};\n"
            + f"  include {self.dir / 'site.conf'};\n}}\n"
        )
        checked = subprocess.run(
            [NGINX, "-t", "-p", str(self.dir), "-c", str(self.dir / "nginx.conf")],
            capture_output=True,
            text=True,
        )
        assert checked.returncode == 0, checked.stderr
        with (self.dir / "stderr.log").open("wb") as stderr:  # the child keeps its own
            self.proc = subprocess.Popen(
                [NGINX, "-p", str(self.dir), "-c", str(self.dir / "nginx.conf")],
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.https_port), timeout=1):
                    break
            except OSError:
                assert self.proc.poll() is None, (self.dir / "error.log").read_text()
                assert time.monotonic() < deadline, "nginx did not start"
                time.sleep(0.1)

    def session(self, source: str = "127.0.0.1") -> requests.Session:
        """A client that trusts the test cert, connecting from a loopback address of its own."""
        session = requests.Session()
        session.trust_env = False  # REQUESTS_CA_BUNDLE would override the test's own CA
        session.verify = str(self.cert)
        adapter = SourceAdapter(source)
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        return session

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)  # graceful
            self.proc.wait(timeout=30)


class SourceAdapter(HTTPAdapter):
    """Connect from a chosen source address (127.0.0.2 is another client on loopback)."""

    def __init__(self, source: str):
        self.source = source
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["source_address"] = (self.source, 0)
        super().init_poolmanager(*args, **kwargs)


def key(server: LiveServer, role: str) -> dict[str, str]:
    made = server.cli("keys", "create", "--name", f"{role}-{time.monotonic_ns()}", "--role", role)
    assert made.returncode == 0, made.stderr
    return {"Authorization": f"Bearer {made.stdout.split()[-1]}"}


def allowed(session: requests.Session, url: str, auth: dict[str, str], email: str) -> bool:
    answer = session.post(
        url + "/v1/check", json={"email": email, "list": "news"}, headers=auth, timeout=10
    )
    assert answer.status_code == 200, answer.text
    return bool(answer.json()["allowed"])


def mint(session: requests.Session, url: str, auth: dict[str, str], email: str) -> dict[str, Any]:
    answer = session.post(
        url + "/v1/unsubscribe-links",
        json={"list": "news", "emails": [email]},
        headers=auth,
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    return dict(answer.json()["links"][0])


def app_log_lines(server: LiveServer) -> list[dict[str, Any]]:
    return [
        json.loads(line)
        for line in server.log_path.read_text().splitlines()
        if line.startswith('{"time"') and '"remote"' in line
    ]


def test_nginx_with_the_shipped_site_in_front_of_the_installed_server(tmp_path: Path) -> None:
    nginx_or_skip()
    https_port = free_port()
    backend = free_port()
    base = f"https://127.0.0.1:{https_port}"
    server = LiveServer(
        f"sqlite:///{tmp_path / 'suppress.db'}",
        tmp_path,
        workers=1,
        extra_env={
            "SUPPRESS_PROXY_HOPS": "1",
            "SUPPRESS_BASE_URL": base,
            "SUPPRESS_RATELIMIT_PAGES": "3 per day",  # no minute boundary to cross mid-test
        },
        port=backend,
    )
    proxy: Nginx | None = None
    try:
        # A second upstream where nothing listens (an instance down): nginx passes requests
        # it could not deliver there on to the live one.
        proxy = Nginx(tmp_path, [free_port(), backend], https_port)
        client = proxy.session()
        mailer = key(server, "mailer")

        # TLS ends at nginx; the app learns the scheme from it and says so (HSTS).
        ready = client.get(proxy.url + "/readyz", timeout=10)
        assert ready.status_code == 200
        assert ready.headers["Strict-Transport-Security"] == "max-age=31536000"

        # Links carry the https base, and with it RFC 8058 one-click.
        link = mint(client, proxy.url, mailer, "reader@example.se")
        token = link["url"].rsplit("/", 1)[1]
        assert link["url"].startswith(base + "/u/")
        assert link["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"

        # Plain http only redirects to https.
        redirect = client.get(
            f"http://127.0.0.1:{proxy.http_port}/u/{token}", allow_redirects=False, timeout=10
        )
        assert redirect.status_code == 301
        assert redirect.headers["Location"].startswith("https://")

        # One budget per real client: forged X-Forwarded-For entries buy nothing...
        answers = [
            client.get(
                link["url"], headers={"X-Forwarded-For": f"203.0.113.{n}"}, timeout=10
            ).status_code
            for n in range(4)
        ]
        assert answers == [200, 200, 200, 429]
        # ...while another client (another loopback address) has a budget of its own.
        other = proxy.session("127.0.0.2")
        assert other.get(link["url"], timeout=10).status_code == 200

        # Other spellings of the page's path are logged without the token as well.
        third = proxy.session("127.0.0.3")
        for spelling in (f"//u/{token}", f"/%75/{token}"):
            third.get(proxy.url + spelling, timeout=10)

        # One-click through the proxy (from the other client: its budget is not spent).
        clicked = other.post(link["url"], data={"List-Unsubscribe": "One-Click"}, timeout=10)
        assert clicked.status_code == 200
        assert not allowed(client, proxy.url, mailer, "reader@example.se")
    finally:
        proxy_stop(proxy)
        server.stop()

    assert proxy is not None
    remotes = {line["remote"] for line in app_log_lines(server) if "/u/" in line["request"]}
    assert remotes == {"127.0.0.1", "127.0.0.2", "127.0.0.3"}, "the app logs the clients"
    nginx_log = proxy.access_log.read_text()
    assert "/u/[token] HTTP/" in nginx_log
    assert token not in nginx_log, "the unsubscribe token reached nginx's access log"
    assert "upstream_status=502, 200" in nginx_log, "the dead instance shows in the access log"
    for log in proxy.dir.glob("*.log"):
        assert token not in log.read_text(), f"the unsubscribe token reached {log.name}"
    assert token not in server.log_path.read_text()


def proxy_stop(proxy: Nginx | None) -> None:
    if proxy is not None:
        proxy.stop()


@pytest.fixture
def shared_postgres() -> Iterator[str]:
    with postgres_schema() as url:
        yield url


@pytest.mark.slow
def test_two_instances_and_two_schedulers_on_one_postgresql(
    tmp_path: Path, shared_postgres: str
) -> None:
    nginx_or_skip()
    # The page visitor: a loopback address of this run's own, so no other run's counters
    # in the shared Redis (another checkout's suite, an earlier run) meet this one's.
    visitor = "127.{}.{}.{}".format(*(secrets.randbelow(254) + 1 for _ in range(3)))
    https_port, port_a, port_b = free_port(), free_port(), free_port()
    base = f"https://127.0.0.1:{https_port}"
    env = {
        "SUPPRESS_PROXY_HOPS": "1",
        "SUPPRESS_BASE_URL": base,
        "SUPPRESS_RATELIMIT_STORAGE_URL": REDIS_URL,
        "SUPPRESS_RATELIMIT_PAGES": "6 per day",
        "SUPPRESS_RATELIMIT_API": "40 per day",
    }
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    folder = tmp_path / "optouts"
    folder.mkdir()
    (folder / "list.csv").write_text("email\r\nnightly@example.se\r\n")
    from datetime import datetime, timedelta
    from zoneinfo import ZoneInfo

    fire = datetime.now(ZoneInfo("Europe/Stockholm")).replace(microsecond=0)
    fire += timedelta(seconds=15)
    tonight = fire.date().isoformat()
    schedulers = Processes(
        shared_postgres, tmp_path, scheduler_config(folder, fire.strftime("%H:%M:%S"))
    )
    a = LiveServer(shared_postgres, tmp_path / "a", workers=1, extra_env=env, port=port_a)
    b = LiveServer(shared_postgres, tmp_path / "b", workers=1, extra_env=env, port=port_b)
    proxy: Nginx | None = None
    try:
        schedulers.start(), schedulers.start()
        proxy = Nginx(tmp_path, [port_a, port_b], https_port)
        direct = requests.Session()
        admin = key(a, "admin")

        # An opt-out through A is seen by the very next check on B.
        added = direct.post(
            a.url + "/v1/suppressions",
            json={"email": "Said.No@Example.se", "list": "global", "reason": "objection"},
            headers=admin,
            timeout=10,
        )
        assert added.status_code in (200, 201), added.text
        assert not allowed(direct, b.url, admin, "said.no@example.se")

        # One-click on A (a link minted on B), check on B.
        link = mint(direct, b.url, admin, "clicked@example.se")
        assert link["url"].startswith(base)
        path = link["url"][len(base) :]
        assert allowed(direct, b.url, admin, "clicked@example.se")
        clicked = direct.post(
            a.url + path,
            data={"List-Unsubscribe": "One-Click"},
            headers={"X-Forwarded-For": visitor},  # as nginx would send it
            timeout=10,
        )
        assert clicked.status_code == 200
        assert not allowed(direct, b.url, admin, "clicked@example.se")

        # Rate-limit budgets live in Redis: the pages' budget of one client (6, one of them
        # spent by the one-click on A) is spent across both instances (nginx spreads the
        # requests over A and B)...
        client = proxy.session(visitor)
        pages = [client.get(link["url"], timeout=10).status_code for _ in range(6)]
        assert pages == [200] * 5 + [429], pages
        served = [sum("/u/" in line["request"] for line in app_log_lines(s)) for s in (a, b)]
        assert all(served), f"nginx should have used both instances: {served}"
        # ...and so is one API key's, called directly on A and B in turn.
        budget = key(a, "mailer")
        answers = [
            direct.post(
                (a.url, b.url)[n % 2] + "/v1/check",
                json={"email": "x@example.se", "list": "news"},
                headers=budget,
                timeout=10,
            ).status_code
            for n in range(41)
        ]
        assert answers == [200] * 40 + [429], answers

        # The forced nightly run happens once across both schedulers.
        wait_for(
            "tonight's reconcile",
            lambda: runs_ok(shared_postgres, tmp_path, tonight),
            schedulers,
        )
        assert not allowed(direct, b.url, admin, "nightly@example.se")

        # SIGKILL of A during imports: everything A acknowledged is kept.
        importer = key(a, "recorder")
        acked: list[str] = []
        stop = threading.Event()

        def hammer() -> None:
            session = requests.Session()
            n = 0
            while not stop.is_set():
                batch = [f"imp-{n + i}@example.se" for i in range(300)]
                n += len(batch)
                try:
                    answer = session.post(
                        a.url + "/v1/imports",
                        params={"list": "news", "reason": "unsubscribe"},
                        headers={**importer, "Content-Type": "text/plain"},
                        data="\n".join(batch).encode(),
                        timeout=10,
                    )
                except requests.RequestException:
                    return
                if answer.status_code == 200 and answer.json()["invalid"] == 0:
                    acked.extend(batch)

        thread = threading.Thread(target=hammer)
        thread.start()
        deadline = time.monotonic() + 30
        while len(acked) < 600 and time.monotonic() < deadline:
            time.sleep(0.01)
        a.kill()
        stop.set()
        thread.join(timeout=30)
        assert len(acked) >= 600
        # Through nginx: A is dead, so every request is answered by B.
        survivor = client.post(
            proxy.url + "/v1/filter",
            json={"list": "news", "emails": acked},
            headers=admin,
            timeout=60,
        )
        assert survivor.status_code == 200, survivor.text
        assert survivor.json()["allowed"] == [], "an acknowledged import was lost"
        assert len(survivor.json()["suppressed"]) == len(acked)
    finally:
        proxy_stop(proxy)
        b.stop()
        if a.proc is not None and a.proc.poll() is None:
            a.stop()
        schedulers.close()
    counted = bodies_run_for(shared_postgres, tmp_path)
    assert counted[("reconcile", tonight)] == 1, counted
    assert schedulers.logs().count(f"reconcile {tonight}: running") == 1


def _runtime(db_url: str, tmp_path: Path) -> Any:
    from suppress.runtime import Runtime

    from .conftest import settings

    return Runtime.load(settings(db_url, tmp_path / "view"))


def runs_ok(db_url: str, tmp_path: Path, night: str) -> bool:
    rt = _runtime(db_url, tmp_path)
    try:
        return runs(rt, "reconcile").get(night) == "ok"
    finally:
        rt.db.dispose()


def bodies_run_for(db_url: str, tmp_path: Path) -> Any:
    rt = _runtime(db_url, tmp_path)
    try:
        return bodies_run(rt)
    finally:
        rt.db.dispose()


def test_the_containerfile_is_honest() -> None:
    """No container engine runs in CI; the file's references are checked instead."""
    text = (DEPLOY / "Containerfile").read_text()
    root = DEPLOY.parent
    sources = [
        n for s in re.findall(r"^COPY (?!--from)(.+) \S+$", text, flags=re.M) for n in s.split()
    ]
    # Built from the local wheel: `make wheel` writes it to dist/, the one thing copied in.
    assert sources == ["dist/"], sources
    assert "--wheel-dir dist" in (root / "Makefile").read_text()
    assert "dist" not in (root / ".containerignore").read_text().split()
    assert re.search(r"^RUN pip wheel .* /dist/suppress-\*\.whl$", text, flags=re.M)
    stages = re.findall(r"^FROM ", text, flags=re.M)
    assert len(stages) == 2, "multi-stage: a build stage and a runtime stage"
    runtime_stage = text.rsplit("\nFROM ", 1)[1]
    assert re.search(r"^USER (?!root|0\b)\S+", runtime_stage, flags=re.M), "runs as non-root"
    assert "--no-index" in runtime_stage and "gcc" not in runtime_stage
    assert "/readyz" in re.search(r"^HEALTHCHECK .*(?:\n\s+.*)*", runtime_stage, re.M).group(0)
    assert '"suppress", "serve"' in runtime_stage
    # The scheduler container serves no HTTP: the file says to start it without the check.
    assert "--no-healthcheck" in text and "suppress scheduler" in text


def test_the_environment_template_does_not_start_until_filled_in(tmp_path: Path) -> None:
    from suppress import config
    from suppress.errors import ConfigError

    env = {}
    for line in (DEPLOY / "suppress.env").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            env[name] = value
    assert env["SUPPRESS_PROXY_HOPS"] == "1"
    assert env["SUPPRESS_BASE_URL"].startswith("https://")
    env["SUPPRESS_INSTANCE_DIR"] = str(tmp_path)
    with pytest.raises(ConfigError, match="pepper"):
        config.load(env=env)
    env["SUPPRESS_PEPPERS"] = "k1:" + "A" * 44
    with pytest.raises(ConfigError, match="token secret 1 of 1 is too short"):
        config.load(env=env)
    env["SUPPRESS_TOKEN_SECRETS"] = "x" * 43
    loaded = config.load(env=env)
    assert loaded.proxy_hops == 1 and loaded.settings.server.host == "127.0.0.1"
