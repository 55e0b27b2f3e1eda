"""Layered configuration and secrets: defaults, TOML file, environment, overrides; fail fast."""

from __future__ import annotations

import base64
import os
import stat
import tomllib
from pathlib import Path
from typing import Any, get_args

import pytest
from pydantic import ValidationError

from suppress import config, sources
from suppress.errors import ConfigError
from suppress.settings import AuditSettings, Settings, SourceFormat, SourceSettings

from .conftest import TEST_PEPPER

PEPPER_B = "b:" + base64.b64encode(b"b" * 32).decode()
DOCUMENTED = Path(__file__).resolve().parent.parent / "config" / "default.toml"


def env(**values: str) -> dict[str, str]:
    secret = "s1-token-secret-for-tests-0123456789"
    return {"SUPPRESS_PEPPERS": TEST_PEPPER, "SUPPRESS_TOKEN_SECRETS": secret, **values}


def test_defaults_come_from_default_toml(tmp_path: Path) -> None:
    cfg = config.load({"instance_dir": str(tmp_path)}, env=env())
    assert cfg.database_url == f"sqlite:///{tmp_path / 'suppress.db'}"
    assert cfg.max_json_bytes == 1024 * 1024
    assert cfg.settings.server.port == 8000
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
    assert (cfg.settings.server.workers, cfg.settings.server.port) == (3, 9100)
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
    with pytest.raises(ConfigError) as refused:
        config.load({"instance_dir": str(tmp_path)}, env=env(SUPPRESS_SERVER_PORT="eighty"))
    assert refused.value.message == (
        "SUPPRESS_SERVER_PORT ([server] port): must be an integer, not 'eighty'"
    )
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
    with pytest.raises(
        ConfigError,
        match=r"^SUPPRESS_UNSUBSCRIBE_ALLOW_INSECURE_BASE_URL \(\[unsubscribe\] "
        r"allow_insecure_base_url\): must be true or false, not 'sometimes'$",
    ):
        config.load(
            {"instance_dir": str(tmp_path)},
            env=env(SUPPRESS_UNSUBSCRIBE_ALLOW_INSECURE_BASE_URL="sometimes"),
        )


@pytest.mark.parametrize("base_url", ["ftp://x.example.com", "http://", "https:///path"])
def test_base_url_without_a_web_scheme_or_host_is_refused(tmp_path: Path, base_url: str) -> None:
    with pytest.raises(ConfigError, match=r"^SUPPRESS_BASE_URL \(base_url\): must (start|name)"):
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


# --- typed settings: one validation at start ----------------------------------------------------


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "suppress.toml"
    path.write_text(text)
    return str(path)


def refusal(tmp_path: Path, text: str = "", overrides: Any = None, **values: str) -> ConfigError:
    """The ConfigError of loading `text` as the SUPPRESS_CONFIG file (and env values)."""
    if text:
        values["SUPPRESS_CONFIG"] = write(tmp_path, text)
    with pytest.raises(ConfigError) as refused:
        config.load({"instance_dir": str(tmp_path), **(overrides or {})}, env=env(**values))
    assert "\n" not in refused.value.message
    return refused.value


def test_the_models_defaults_are_default_toml() -> None:
    documented = tomllib.loads(DOCUMENTED.read_text("utf-8"))
    # Every key of the documented file is a model field and vice versa, with the same default.
    assert Settings().model_dump() == documented
    assert Settings.model_validate(documented) == Settings()


def test_the_documented_source_and_audit_examples_are_what_the_models_take() -> None:
    # default.toml shows one [[reconcile.sources]] and one [[reconcile.audits]] table in
    # comments ("#   key = value"): uncommented, they hold every key of the entry models.
    text = DOCUMENTED.read_text("utf-8")
    section = text[text.index("\n[reconcile]\n") : text.index("\n[scheduler]\n")]
    example = "\n".join(line[4:] for line in section.splitlines() if line.startswith("#   "))
    entries = tomllib.loads(example)["reconcile"]
    assert set(entries) == {"sources", "audits"}
    parsed = Settings.model_validate({"reconcile": entries}).reconcile
    assert set(entries["sources"][0]) == set(SourceSettings.model_fields)
    assert set(entries["audits"][0]) == set(AuditSettings.model_fields)
    assert (parsed.sources[0].format, parsed.audits[0].list) == ("sendgrid", "news")


def test_source_formats_are_the_formats_with_a_parser() -> None:
    assert get_args(SourceFormat) == sources.FORMATS


def test_every_setting_keeps_its_environment_name(tmp_path: Path) -> None:
    names = config.env_names()
    # The names operators use today (README, deploy/suppress.env, docs/operations.md).
    for name in (
        "SUPPRESS_BASE_URL",
        "SUPPRESS_INSTANCE_DIR",
        "SUPPRESS_DATABASE_URL",
        "SUPPRESS_DATABASE_STATEMENT_TIMEOUT_MS",
        "SUPPRESS_SERVER_HOST",
        "SUPPRESS_SERVER_PORT",
        "SUPPRESS_SERVER_WORKERS",
        "SUPPRESS_SERVER_TIMEOUT",
        "SUPPRESS_SERVER_PROXY_HOPS",
        "SUPPRESS_PROXY_HOPS",
        "SUPPRESS_UNSUBSCRIBE_ALLOW_INSECURE_BASE_URL",
        "SUPPRESS_RATELIMIT_PAGES",
        "SUPPRESS_RATELIMIT_API",
        "SUPPRESS_RATELIMIT_STORAGE_URL",
        "SUPPRESS_RATELIMIT_ENABLED",
    ):
        assert name in names
    # One per scalar key of default.toml, SUPPRESS_<SECTION>_<KEY>, and each one takes effect.
    documented = tomllib.loads(DOCUMENTED.read_text("utf-8"))

    def scalars_of(table: dict[str, Any], at: tuple[str, ...]) -> set[tuple[str, ...]]:
        found: set[tuple[str, ...]] = set()
        for key, value in table.items():
            if isinstance(value, dict):
                found |= scalars_of(value, at + (key,))
            elif not isinstance(value, list):
                found.add(at + (key,))
        return found

    assert set(names.values()) == scalars_of(documented, ())
    # DESIGN §9 spells the receivers' names SUPPRESS_WEBHOOK_<PROVIDER>_<KEY>.
    for name in (
        "SUPPRESS_WEBHOOK_SENDGRID_PUBLIC_KEY",
        "SUPPRESS_WEBHOOK_MAILGUN_SIGNING_KEY",
        "SUPPRESS_WEBHOOK_POSTMARK_BASIC_AUTH",
        "SUPPRESS_WEBHOOK_BREVO_TOKEN",
        "SUPPRESS_WEBHOOK_SES_TOPIC_ARNS",
        "SUPPRESS_WEBHOOK_SES_LIST",
    ):
        assert names[name][0] == "webhooks", name
    changed: dict[str, str] = {}
    for name, loc in names.items():
        default = Settings().model_dump()
        for part in loc:
            default = default[part]
        if isinstance(default, bool):
            changed[name] = "false" if default else "true"
        elif isinstance(default, int | float) and name != "SUPPRESS_PROXY_HOPS":
            changed[name] = str(int(default) + 1)
    cfg = config.load({"instance_dir": str(tmp_path)}, env=env(**changed))
    for name, text in changed.items():
        value: Any = cfg.settings.model_dump()
        for part in names[name]:
            value = value[part]
        assert str(value).lower() in (text, text + ".0"), name


def test_a_mistyped_key_in_a_section_is_refused_with_its_name(tmp_path: Path) -> None:
    refused = refusal(tmp_path, "[server]\nwokers = 4\n")
    assert refused.message == "[server] wokers: unknown setting (did you mean workers?)"
    assert refused.problems == (refused.message,)


def test_a_mistyped_key_or_section_at_the_top_level_is_refused(tmp_path: Path) -> None:
    refused = refusal(tmp_path, 'base_ur = "https://x.example.com"\n[sever]\nport = 1\n')
    assert refused.problems == (
        "base_ur: unknown setting (did you mean base_url?)",
        "[sever]: unknown section (did you mean server?)",
    )
    assert refusal(tmp_path, "colour = 1\n").message == "colour: unknown setting"


def test_a_mistyped_key_in_a_reconcile_source_is_refused(tmp_path: Path) -> None:
    refused = refusal(
        tmp_path,
        '[[reconcile.sources]]\nname = "sg"\nfolder = "/srv/sg"\nlist = "news"\n'
        '[[reconcile.sources]]\nname = "mc"\nfolde = "/srv/mc"\nlist = "news"\n',
    )
    assert refused.problems == (
        "[[reconcile.sources]] #2 folder: required",
        "[[reconcile.sources]] #2 folde: unknown setting (did you mean folder?)",
    )
    assert refused.message.startswith("2 configuration problems: [[reconcile.sources]] #2")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('[server]\nworkers = "4"\n', "[server] workers: must be an integer, not '4'"),
        ("[server]\nworkers = 4.0\n", "[server] workers: must be an integer, not 4.0"),
        ("[server]\nworkers = true\n", "[server] workers: must be an integer, not true"),
        ("[ratelimit]\npages = 120\n", "[ratelimit] pages: must be a string (in quotes), not 120"),
        (
            '[unsubscribe]\nallow_insecure_base_url = "yes"\n',
            "[unsubscribe] allow_insecure_base_url: must be true or false, not 'yes'",
        ),
        ("server = 8000\n", "[server]: must be a table, not 8000"),
        ("[reconcile]\nsources = 1\n", "[reconcile] sources: must be a list, not 1"),
        ("base_url = 7\n", "base_url: must be a string (in quotes), not 7"),
    ],
)
def test_a_value_of_the_wrong_type_is_refused(tmp_path: Path, text: str, problem: str) -> None:
    assert refusal(tmp_path, text).problems == (problem,)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[server]\nworkers = 65\n", "[server] workers: must be at most 64, not 65"),
        ("[server]\nport = 0\n", "[server] port: must be at least 1, not 0"),
        ("[server]\ntimeout = 86401\n", "[server] timeout: must be at most 86400, not 86401"),
        ("[server]\nproxy_hops = -1\n", "[server] proxy_hops: must be at least 0, not -1"),
        ("[database]\npool_size = 0\n", "[database] pool_size: must be at least 1, not 0"),
        ("[api]\nidempotency_hours = 0\n", "[api] idempotency_hours: must be at least 1, not 0"),
        ("[metrics]\ngauge_ttl_seconds = -1\n", "[metrics] gauge_ttl_seconds: must be at least 0"),
    ],
)
def test_a_value_out_of_range_is_refused(tmp_path: Path, text: str, problem: str) -> None:
    assert refusal(tmp_path, text).problems[0].startswith(problem)


@pytest.mark.parametrize(
    ("section", "problem"),
    [
        ({"ratelimit": {"pages": "lots"}}, "[ratelimit] pages: must be a rate such as"),
        ({"ratelimit": {"api": "5 per fortnight"}}, "[ratelimit] api: must be a rate such as"),
        ({"ratelimit": {"api": ""}}, "[ratelimit] api: must be a rate such as"),
        ({"pages": {"default_language": "xx"}}, "[pages] default_language: 'xx' has no catalog"),
        ({"scheduler": {"timezone": "Mars/Olympus"}}, "[scheduler] timezone: must be an IANA"),
    ],
)
def test_the_checks_components_made_are_made_at_load(
    tmp_path: Path, section: dict[str, Any], problem: str
) -> None:
    assert refusal(tmp_path, overrides=section).message.startswith(problem)


def test_several_problems_are_reported_at_once(tmp_path: Path) -> None:
    refused = refusal(
        tmp_path,
        '[server]\nwokers = 4\nport = 0\n[scheduler]\ntimezone = "Mars/Olympus"\n',
        SUPPRESS_SERVER_TIMEOUT="soon",
        SUPPRESS_PEPPERS="nocolon",
    )
    assert refused.problems == (
        "SUPPRESS_SERVER_TIMEOUT ([server] timeout): must be an integer, not 'soon'",
        "[server] port: must be at least 1, not 0",
        "[server] wokers: unknown setting (did you mean workers?)",
        "[scheduler] timezone: must be an IANA time zone such as Europe/Stockholm, not "
        "'Mars/Olympus'",
    )  # secrets are read once the settings are right: the pepper is not reported yet
    assert refused.message == "4 configuration problems: " + "; ".join(refused.problems)


def test_both_secrets_problems_are_reported_at_once(tmp_path: Path) -> None:
    refused = refusal(tmp_path, SUPPRESS_PEPPERS="nocolon", SUPPRESS_TOKEN_SECRETS="short")
    assert len(refused.problems) == 2
    assert refused.problems[0].startswith("peppers must look like")
    assert refused.problems[1] == (
        "token secret 1 of 1 is too short: at least 32 characters are required"
    )
    assert "nocolon" not in refused.message and "short," not in refused.message


def test_a_bad_environment_value_names_its_variable_and_key(tmp_path: Path) -> None:
    assert refusal(tmp_path, SUPPRESS_SERVER_WORKERS="100000").problems == (
        "SUPPRESS_SERVER_WORKERS ([server] workers): must be at most 64, not 100000",
    )
    assert refusal(tmp_path, SUPPRESS_RATELIMIT_PAGES="lots").message.startswith(
        "SUPPRESS_RATELIMIT_PAGES ([ratelimit] pages): must be a rate such as '120 per minute'"
    )
    # The short name is the one named when it set the value.
    assert refusal(tmp_path, SUPPRESS_PROXY_HOPS="11").message == (
        "SUPPRESS_PROXY_HOPS ([server] proxy_hops): must be at most 10, not 11"
    )
    # A value the file gave, the environment left alone: the key, no variable.
    refused = refusal(tmp_path, "[server]\nworkers = 100\n", SUPPRESS_SERVER_PORT="9000")
    assert refused.message == "[server] workers: must be at most 64, not 100"
    # Overrides come last: the value is theirs, not the variable's.
    overridden = refusal(
        tmp_path, overrides={"server": {"workers": 99}}, SUPPRESS_SERVER_WORKERS="3"
    )
    assert overridden.message == "[server] workers: must be at most 64, not 99"


def test_values_that_may_hold_an_address_or_a_password_are_not_repeated(tmp_path: Path) -> None:
    refused = refusal(
        tmp_path,
        '[ratelimit]\npages = "olle.berg@example.se"\n[scheduler]\ntimezone = "x"\n',
        SUPPRESS_SERVER_PORT="redis://:hunter2@redis.internal",
        SUPPRESS_BASE_URL="http://user:hunter2@suppress.example.com",
    )
    assert len(refused.problems) == 4
    assert "@" not in refused.message and "hunter2" not in refused.message
    assert "[ratelimit] pages: must be a rate such as '120 per minute'" in refused.problems
    assert "SUPPRESS_SERVER_PORT ([server] port): must be an integer" in refused.problems


def test_a_valid_full_configuration_loads_typed(tmp_path: Path) -> None:
    exports = tmp_path / "exports"
    text = f"""
base_url = "https://suppress.example.com/"
instance_dir = "{tmp_path / "inst"}"
[database]
url = "sqlite:///{tmp_path / "full.db"}"
sqlite_busy_timeout_ms = 2500
statement_timeout_ms = 0
pool_size = 10
[secrets]
file = "{tmp_path / "secrets.toml"}"
[server]
host = "0.0.0.0"
port = 8080
workers = 8
timeout = 1200
proxy_hops = 2
[api]
max_json_bytes = 2097152
idempotency_hours = 72
[metrics]
gauge_ttl_seconds = 0.5
[unsubscribe]
allow_insecure_base_url = true
[pages]
default_language = "en"
[ratelimit]
pages = "10 per second; 200 per minute"
api = "500 per second"
storage_url = "redis://redis.internal:6379/0"
enabled = false
[reconcile]
reports_folder = "{tmp_path / "reports"}"
soft_bounce_days = 14
[[reconcile.sources]]
name = "sendgrid"
folder = "{exports / "sg"}"
format = "sendgrid"
list = "global"
reason = ""
[[reconcile.sources]]
name = "plain"
folder = "{exports / "plain"}"
list = "news"
reason = "complaint"
[[reconcile.audits]]
name = "crm-news"
file = "{exports / "crm.csv"}"
list = "news"
[scheduler]
timezone = "UTC"
reconcile_at = "03:15"
verify_audit_at = 04:00:30
expire_minute = 0
misfire_grace_seconds = 3600
lease_seconds = 60
lease_wait_seconds = 120
catch_up_minutes = 5
"""
    cfg = config.load(env=env(SUPPRESS_CONFIG=write(tmp_path, text)))
    s = cfg.settings
    assert (cfg.base_url, cfg.one_click, cfg.proxy_hops) == (
        "https://suppress.example.com",
        True,
        2,
    )
    assert cfg.instance_dir == (tmp_path / "inst").resolve()
    assert (cfg.pool_size, cfg.statement_timeout_ms, cfg.max_json_bytes) == (10, 0, 2097152)
    assert (s.server.host, s.server.port, s.server.workers, s.server.timeout) == (
        "0.0.0.0",
        8080,
        8,
        1200,
    )
    assert (s.metrics.gauge_ttl_seconds, s.pages.default_language) == (0.5, "en")
    assert (s.ratelimit.pages, s.ratelimit.enabled) == ("10 per second; 200 per minute", False)
    assert [(x.name, x.format, x.reason) for x in s.reconcile.sources] == [
        ("sendgrid", "sendgrid", ""),
        ("plain", "generic", "complaint"),
    ]
    assert s.reconcile.audits[0].file == str(exports / "crm.csv")
    assert (s.scheduler.zone.key, s.scheduler.reconcile_time.minute) == ("UTC", 15)
    assert s.scheduler.verify_audit_at == "04:00:30"  # an unquoted TOML time is taken too
    with pytest.raises(ValidationError):  # validated once, then never changed
        s.server.workers = 64  # type: ignore[misc]


# --- refusals that once were tracebacks or silent ---------------------------------------------


def load_error(tmp_path: Path, **values: str) -> ConfigError:
    with pytest.raises(ConfigError) as refused:
        config.load({"instance_dir": str(tmp_path)}, env=env(**values))
    return refused.value


def test_a_configuration_file_that_cannot_be_read_is_one_line(tmp_path: Path) -> None:
    latin = tmp_path / "latin.toml"
    latin.write_bytes(b'[server]\nhost = "\xff"\n')
    assert "is not UTF-8 text" in load_error(tmp_path, SUPPRESS_CONFIG=str(latin)).message
    folder = load_error(tmp_path, SUPPRESS_CONFIG=str(tmp_path)).message
    assert folder == f"configuration file {tmp_path} is a folder, not a file"


@pytest.mark.parametrize(
    "url",
    ["notaurl:x", "mysql://root@127.0.0.1/test", "postgresql+psycopg2://u@h/d", "sqlite+x:///y"],
)
def test_a_database_url_we_cannot_use_is_refused_at_start(tmp_path: Path, url: str) -> None:
    message = load_error(tmp_path, SUPPRESS_DATABASE_URL=url).message
    assert message.startswith("SUPPRESS_DATABASE_URL ([database] url): ")
    assert "\n" not in message


@pytest.mark.parametrize(
    "url", ["sqlite:///x.db", "postgresql+psycopg://postgres@127.0.0.1:5432/test", ""]
)
def test_the_database_urls_we_can_use_are_taken(tmp_path: Path, url: str) -> None:
    assert config.load({"instance_dir": str(tmp_path)}, env=env(SUPPRESS_DATABASE_URL=url))


def test_a_rate_limit_storage_we_cannot_use_is_refused_at_start(tmp_path: Path) -> None:
    message = load_error(tmp_path, SUPPRESS_RATELIMIT_STORAGE_URL="bogus://x").message
    assert message.startswith("SUPPRESS_RATELIMIT_STORAGE_URL ([ratelimit] storage_url): must be")
    for url in ("memory://", "redis://127.0.0.1:6379/0", "rediss://h:6380/1"):
        assert config.load(
            {"instance_dir": str(tmp_path)}, env=env(SUPPRESS_RATELIMIT_STORAGE_URL=url)
        )


def test_a_mistyped_environment_name_of_a_section_is_refused(tmp_path: Path) -> None:
    refused = load_error(tmp_path, SUPPRESS_SERVER_WOKERS="4")
    assert refused.message == (
        "SUPPRESS_SERVER_WOKERS: unknown setting (did you mean SUPPRESS_SERVER_WORKERS?)"
    )
    # Names of no section are other programs' (the client's SUPPRESS_URL, the tests' own).
    assert config.load(
        {"instance_dir": str(tmp_path)},
        env=env(SUPPRESS_URL="http://x", SUPPRESS_TEST_PYTHON="/x", SUPPRESS_TOKEN="t"),
    )


def test_a_secret_put_in_an_ordinary_setting_is_not_repeated(tmp_path: Path) -> None:
    secret = env()["SUPPRESS_TOKEN_SECRETS"]
    pepper_key = TEST_PEPPER.partition(":")[2]
    for name in ("SUPPRESS_BASE_URL", "SUPPRESS_PAGES_DEFAULT_LANGUAGE"):
        for value in (secret, pepper_key):
            refused = load_error(tmp_path, **{name: value})
            assert value not in refused.message and "[secret]" in refused.message, name


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SUPPRESS_SCHEDULER_LEASE_SECONDS", "400000000000"),
        ("SUPPRESS_SCHEDULER_LEASE_WAIT_SECONDS", "86401"),
        ("SUPPRESS_SCHEDULER_CATCH_UP_MINUTES", "1441"),
        ("SUPPRESS_SCHEDULER_MISFIRE_GRACE_SECONDS", "999999999999"),
        ("SUPPRESS_API_IDEMPOTENCY_HOURS", "20000000"),
        ("SUPPRESS_RECONCILE_SOFT_BOUNCE_DAYS", "99999999"),
    ],
)
def test_durations_that_would_overflow_a_date_are_refused_at_start(
    tmp_path: Path, name: str, value: str
) -> None:
    message = load_error(tmp_path, **{name: value}).message
    assert message.startswith(f"{name} (") and "must be at most" in message


@pytest.mark.parametrize(
    ("name", "value", "problem"),
    [
        ("SUPPRESS_WEBHOOK_BREVO_TOKEN", "tiny-tok", "at least 16 characters"),
        ("SUPPRESS_WEBHOOK_MAILGUN_SIGNING_KEY", "key-123", "at least 16 characters"),
        ("SUPPRESS_WEBHOOK_POSTMARK_BASIC_AUTH", "user:pass", "at least 16 characters"),
        ("SUPPRESS_WEBHOOK_POSTMARK_BASIC_AUTH", "no-colon-at-all-here", "user:password"),
        ("SUPPRESS_WEBHOOK_SES_TOPIC_ARNS", " , ", "names no topic"),
        ("SUPPRESS_WEBHOOK_SES_TOPIC_ARNS", "arn:aws:sns:x", "SNS topic ARN"),
        ("SUPPRESS_WEBHOOK_SENDGRID_PUBLIC_KEY", "bm90IGEga2V5", "verification key"),
        ("SUPPRESS_WEBHOOK_SES_LIST", "Bad List", "list names"),
    ],
)
def test_a_weak_or_wrong_webhook_setting_is_refused_without_showing_a_secret(
    tmp_path: Path, name: str, value: str, problem: str
) -> None:
    with pytest.raises(ConfigError) as refused:
        config.load({"instance_dir": str(tmp_path)}, env=env(**{name: value}))
    assert refused.value.message.startswith(name)
    assert problem in refused.value.message
    if "TOPIC" not in name and "LIST" not in name:
        assert value not in refused.value.message
