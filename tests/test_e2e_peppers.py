"""End to end: two served instances with different pepper lists on one database."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import requests

from suppress.client import Client, ClientError

from .conftest import SUPPRESS, TEST_PEPPER, LiveServer, outside_tree
from .test_peppers import THIRD_PEPPER

pytestmark = pytest.mark.e2e


@pytest.mark.slow
def test_an_instance_without_a_pepper_stops_answering_when_another_writes_under_it(
    empty_db_url: str, tmp_path: Path
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    lacking = LiveServer(empty_db_url, tmp_path / "a", peppers=TEST_PEPPER, workers=1)
    rotated = LiveServer(
        empty_db_url, tmp_path / "b", peppers=f"{THIRD_PEPPER},{TEST_PEPPER}", workers=1
    )
    try:
        made = lacking.cli("keys", "create", "--name", "gate", "--role", "recorder")
        assert made.returncode == 0, made.stderr
        headers = {"Authorization": "Bearer " + made.stdout.strip().splitlines()[-1]}
        email = "pepper.e2e@example.se"
        before = requests.post(
            lacking.url + "/v1/check", json={"email": email, "list": "news"}, headers=headers
        )
        assert before.status_code == 200 and before.json()["allowed"] is True

        # The rotated instance writes under a pepper the other one does not have.
        added = requests.post(
            rotated.url + "/v1/suppressions",
            json={"email": email, "list": "news", "reason": "unsubscribe"},
            headers=headers,
        )
        assert added.status_code == 201, added.text
        assert added.json()["suppression"]["key_id"] == THIRD_PEPPER.split(":")[0]

        after = requests.post(
            lacking.url + "/v1/check", json={"email": email, "list": "news"}, headers=headers
        )
        assert after.status_code == 503 and after.json()["error"]["code"] == "pepper_missing"
        assert requests.get(lacking.url + "/readyz").status_code == 503
        assert requests.get(rotated.url + "/readyz").status_code == 200

        client = Client(lacking.url, headers["Authorization"][7:], retries=0)
        with pytest.raises(ClientError):
            client.check(email, "news")
        with pytest.raises(ClientError):
            list(client.filter_lines([b"nobody@example.se", email.encode()], "news"))

        recipients = tmp_path / "recipients.txt"
        recipients.write_text(f"nobody@example.se\n{email}\n")
        over_http = subprocess.run(
            [*SUPPRESS, "filter", "--list", "news", str(recipients)],
            cwd=outside_tree(tmp_path),
            env={
                **lacking.env,
                "SUPPRESS_URL": lacking.url,
                "SUPPRESS_TOKEN": made.stdout.split()[-1],
            },
            capture_output=True,
            timeout=120,
        )
        assert over_http.returncode != 0 and over_http.stdout == b""
        local = lacking.cli("filter", "--list", "news", str(recipients))
        assert local.returncode == 2 and local.stdout == ""
        assert "pepper_missing" in local.stderr
        assert lacking.cli("check", email, "--list", "news").returncode == 2
    finally:
        lacking.stop()
        rotated.stop()
