"""Layered configuration and secrets: defaults, TOML file, environment, overrides; fail fast."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest

from suppress import config
from suppress.errors import ConfigError

from .conftest import TEST_PEPPER

PEPPER_B = "b:" + base64.b64encode(b"b" * 32).decode()


def env(**values: str) -> dict[str, str]:
    secret = "s1-token-secret-for-tests-0123456789"
    return {"SUPPRESS_PEPPERS": TEST_PEPPER, "SUPPRESS_TOKEN_SECRETS": secret, **values}


def test_defaults_come_from_default_toml(tmp_path: Path) -> None:
    cfg = config.load({"instance_dir": str(tmp_path)}, env=env())
    assert cfg.database_url == f"sqlite:///{tmp_path / 'suppress.db'}"
    assert cfg.max_json_bytes == 1024 * 1024
    assert cfg.server["port"] == 8000
    assert cfg.peppers[0][0] == "t1"


def test_layers_file_then_environment_then_overrides(tmp_path: Path) -> None:
    extra = tmp_path / "extra.toml"
    extra.write_text('base_url = "https://file.example.com"\n[server]\nworkers = 7\nport = 9000\n')
    values = env(
        SUPPRESS_CONFIG=str(extra),
        SUPPRESS_SERVER_PORT="9100",
        SUPPRESS_BASE_URL="https://env.example.com/",
        SUPPRESS_DATABASE_URL="sqlite:////tmp/x.db",
    )
    cfg = config.load({"server": {"workers": 3}}, env=values)
    assert cfg.server == {**cfg.server, "workers": 3, "port": 9100}
    assert cfg.base_url == "https://env.example.com"
    assert cfg.database_url == "sqlite:////tmp/x.db"


@pytest.mark.parametrize(
    ("peppers", "message"),
    [
        ("", "no pepper configured"),
        ("nocolon", "id:base64key"),
        ("a:!!!", "not valid base64"),
        ("a:" + base64.b64encode(b"short").decode(), "too short"),
        (f"{TEST_PEPPER},{TEST_PEPPER}", "appears twice"),
    ],
)
def test_bad_peppers_fail_fast(tmp_path: Path, peppers: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config.load({"instance_dir": str(tmp_path)}, env=env(SUPPRESS_PEPPERS=peppers))


@pytest.mark.parametrize(
    ("secrets", "which"),
    [
        ("x" * 31, "token secret 1 of 1"),
        ("a-fine-and-long-token-secret-0123456789, short-one", "token secret 2 of 2"),
        ("tiny," + "y" * 40, "token secret 1 of 2"),
    ],
)
def test_short_token_secrets_fail_fast(tmp_path: Path, secrets: str, which: str) -> None:
    with pytest.raises(ConfigError) as info:
        config.load({"instance_dir": str(tmp_path)}, env=env(SUPPRESS_TOKEN_SECRETS=secrets))
    message = info.value.message
    assert message == f"{which} is too short: at least 32 characters are required"
    assert "\n" not in message and not any(part.strip() in message for part in secrets.split(","))


def test_short_token_secrets_in_the_secrets_file_fail_fast_too(tmp_path: Path) -> None:
    path = tmp_path / "secrets.toml"
    path.write_text(f'peppers = "{TEST_PEPPER}"\ntoken_secrets = "short"\n')
    os.chmod(path, 0o600)
    with pytest.raises(ConfigError, match="token secret 1 of 1 is too short"):
        config.load({"instance_dir": str(tmp_path)}, env={})


def test_token_secrets_of_32_characters_are_accepted(tmp_path: Path) -> None:
    secrets = "a" * 32 + ", " + "b" * 64
    cfg = config.load({"instance_dir": str(tmp_path)}, env=env(SUPPRESS_TOKEN_SECRETS=secrets))
    assert cfg.token_secrets == ("a" * 32, "b" * 64)


def test_peppers_keep_their_order_first_is_active(tmp_path: Path) -> None:
    cfg = config.load(
        {"instance_dir": str(tmp_path)}, env=env(SUPPRESS_PEPPERS=f"{PEPPER_B},{TEST_PEPPER}")
    )
    assert [key_id for key_id, _ in cfg.peppers] == ["b", "t1"]


def test_bad_environment_values_are_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="SUPPRESS_SERVER_PORT must be an integer"):
        config.load({"instance_dir": str(tmp_path)}, env=env(SUPPRESS_SERVER_PORT="eighty"))
    with pytest.raises(ConfigError, match="not valid TOML"):
        bad = tmp_path / "bad.toml"
        bad.write_text("[[[")
        config.load({"instance_dir": str(tmp_path)}, env=env(SUPPRESS_CONFIG=str(bad)))


@pytest.mark.parametrize(
    "base_url",
    [
        "http://suppress.example.com",
        "http://10.0.0.5:8000",
        "http://[2001:db8::1]:8000/",
        "http://127.0.0.1.example.com",
        "http://localhost.example.com",
    ],
)
def test_plain_http_base_url_off_loopback_is_refused_at_start(
    tmp_path: Path, base_url: str
) -> None:
    # RFC 8058 §3.1: one-click needs https; the message names the setting that allows it.
    with pytest.raises(ConfigError) as raised:
        config.load({"instance_dir": str(tmp_path)}, env=env(SUPPRESS_BASE_URL=base_url))
    message = str(raised.value)
    assert "\n" not in message
    assert "[unsubscribe] allow_insecure_base_url" in message
    assert "SUPPRESS_UNSUBSCRIBE_ALLOW_INSECURE_BASE_URL" in message


@pytest.mark.parametrize(
    "base_url",
    [
        "http://127.0.0.1:8000",
        "http://127.0.0.2",
        "http://localhost:8000",
        "http://LOCALHOST",
        "http://[::1]:8000",
        "https://suppress.example.com",
        "https://10.0.0.5:8443",
    ],
)
def test_https_or_loopback_base_url_keeps_one_click(tmp_path: Path, base_url: str) -> None:
    cfg = config.load({"instance_dir": str(tmp_path)}, env=env(SUPPRESS_BASE_URL=base_url))
    assert cfg.one_click is True


def test_insecure_base_url_is_allowed_by_toml_or_environment_without_one_click(
    tmp_path: Path,
) -> None:
    insecure = "http://suppress.internal:8000"
    by_env = config.load(
        {"instance_dir": str(tmp_path)},
        env=env(SUPPRESS_BASE_URL=insecure, SUPPRESS_UNSUBSCRIBE_ALLOW_INSECURE_BASE_URL="true"),
    )
    extra = tmp_path / "extra.toml"
    extra.write_text("[unsubscribe]\nallow_insecure_base_url = true\n")
    by_file = config.load(
        {"instance_dir": str(tmp_path)},
        env=env(SUPPRESS_BASE_URL=insecure, SUPPRESS_CONFIG=str(extra)),
    )
    for cfg in (by_env, by_file):
        assert (cfg.base_url, cfg.one_click) == (insecure, False)
    # The default is to refuse, and an allowed https base keeps one-click anyway.
    assert config.load({"instance_dir": str(tmp_path)}, env=env()).one_click is True
    allowed_https = config.load(
        {"instance_dir": str(tmp_path), "unsubscribe": {"allow_insecure_base_url": True}},
        env=env(SUPPRESS_BASE_URL="https://suppress.example.com"),
    )
    assert allowed_https.one_click is True
    with pytest.raises(ConfigError, match="SUPPRESS_UNSUBSCRIBE_ALLOW_INSECURE_BASE_URL must be"):
        config.load(
            {"instance_dir": str(tmp_path)},
            env=env(SUPPRESS_UNSUBSCRIBE_ALLOW_INSECURE_BASE_URL="sometimes"),
        )


@pytest.mark.parametrize("base_url", ["ftp://x.example.com", "http://", "https:///path"])
def test_base_url_without_a_web_scheme_or_host_is_refused(tmp_path: Path, base_url: str) -> None:
    with pytest.raises(ConfigError, match="base_url must"):
        config.load({"instance_dir": str(tmp_path)}, env=env(SUPPRESS_BASE_URL=base_url))


def test_generated_secrets_file_is_0600_and_used(tmp_path: Path) -> None:
    path = tmp_path / "instance" / "secrets.toml"
    assert config.generate_secrets(path) is True
    assert config.generate_secrets(path) is False  # never overwritten
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    cfg = config.load({"instance_dir": str(tmp_path / "instance")}, env={})
    assert len(cfg.peppers) == 1 and len(cfg.peppers[0][1]) == 32
    assert cfg.token_secrets and cfg.token_secrets[0] in path.read_text()


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o277], ids=oct)
def test_generated_secrets_file_and_new_instance_folder_are_private_whatever_the_umask(
    tmp_path: Path, umask: int
) -> None:
    instance = tmp_path / "srv" / "instance"
    old = os.umask(umask)
    try:
        assert config.generate_secrets(instance / "secrets.toml") is True
    finally:
        os.umask(old)
    assert stat.S_IMODE(instance.stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "srv").stat().st_mode) == 0o700
    assert stat.S_IMODE((instance / "secrets.toml").stat().st_mode) == 0o600


def test_secrets_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "secrets.toml"
    config.generate_secrets(path)
    os.chmod(path, 0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        config.load({"instance_dir": str(tmp_path)}, env={})


def test_environment_wins_over_secrets_file(tmp_path: Path) -> None:
    config.generate_secrets(tmp_path / "secrets.toml")
    cfg = config.load({"instance_dir": str(tmp_path)}, env=env())
    assert cfg.peppers[0][0] == "t1"


def test_packaged_defaults_are_the_documented_copy() -> None:
    documented = Path(__file__).resolve().parent.parent / "config" / "default.toml"
    assert config.DEFAULT_FILE.parent == Path(config.__file__).resolve().parent
    assert config.DEFAULT_FILE.read_bytes() == documented.read_bytes()
