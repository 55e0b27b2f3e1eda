"""The installed package is complete: init and serve in an empty directory (DESIGN §13)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import requests

from .conftest import IN_CI, INSTALLED_PYTHON, free_port, outside_tree

pytestmark = pytest.mark.e2e
TREE = Path(__file__).resolve().parent.parent


def installed(*code: str, cwd: Path) -> str:
    done = subprocess.run(
        [INSTALLED_PYTHON, "-c", "\n".join(code)],
        cwd=cwd,
        env={"PATH": os.environ["PATH"]},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_the_end_to_end_tests_run_the_installed_wheel(tmp_path: Path) -> None:
    if "SUPPRESS_TEST_PYTHON" not in os.environ:
        reason = "SUPPRESS_TEST_PYTHON is not set: subprocesses run the work tree, not a wheel"
        if IN_CI:
            pytest.fail(reason + " (CI=true requires the wheel; `make test` sets it)")
        pytest.skip(reason)
    where = Path(installed("import suppress", "print(suppress.__file__)", cwd=tmp_path))
    assert "site-packages" in where.parts
    assert where.parent != TREE / "suppress", f"{where} is the work tree, not an installed wheel"
    # Nothing of it is an editable pointer back into this tree.
    assert not list(where.parent.parent.glob("__editable__*suppress*"))


def test_init_and_serve_in_an_empty_directory(tmp_path: Path) -> None:
    """A new operator's first steps, with nothing but the installed package and a shell."""
    cwd = outside_tree(tmp_path)
    exe = Path(INSTALLED_PYTHON).parent / "suppress"
    assert exe.exists(), f"the package installs no `suppress` command next to {INSTALLED_PYTHON}"
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}

    init = subprocess.run(
        [str(exe), "init"], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )
    assert init.returncode == 0, init.stderr
    admin = init.stdout.strip().splitlines()[-1]
    secrets = cwd / "instance" / "secrets.toml"
    assert secrets.stat().st_mode & 0o777 == 0o600
    assert (cwd / "instance" / "suppress.db").exists()

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = (tmp_path / "serve.log").open("wb")
    server = subprocess.Popen(
        [str(exe), "serve", "--port", str(port), "--workers", "1"],
        cwd=cwd,
        env={**env, "SUPPRESS_BASE_URL": url},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                if requests.get(url + "/readyz", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
            time.sleep(0.2)
        auth = {"Authorization": f"Bearer {admin}"}
        added = requests.post(
            url + "/v1/suppressions",
            json={"email": "Reader@Example.se", "list": "global", "reason": "objection"},
            headers=auth,
            timeout=10,
        )
        assert added.status_code in (200, 201), added.text
        check = requests.post(
            url + "/v1/check", json={"email": "reader@example.se", "list": "news"}, headers=auth
        )
        assert check.json()["allowed"] is False
        # Templates and translations ship too: the unsubscribe page renders in Swedish.
        links = requests.post(
            url + "/v1/unsubscribe-links",
            json={"list": "news", "emails": ["someone@example.se"]},
            headers=auth,
            timeout=10,
        )
        assert links.status_code == 200, links.text
        link = links.json()["links"][0]["url"]
        page = requests.get(link, headers={"Accept-Language": "sv"}, timeout=10)
        assert page.status_code == 200
        assert 'lang="sv"' in page.text
        assert requests.get(url + "/v1/openapi.json", timeout=10).status_code == 200
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
        log.close()
