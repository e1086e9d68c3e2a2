"""ConsoleSettings from the environment and the command line, and the errors for bad values."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from pymacp.console.cli import console
from pymacp.console.settings import OPTIONS, ConsoleSettings, SettingsError, load_settings
from readme_support import readme_section

KEY = "k" * 16


def test_defaults() -> None:
    settings = load_settings({})

    assert (settings.runtime, settings.bind, settings.api_keys, settings.no_auth) == (
        "127.0.0.1:50051",
        "127.0.0.1:8080",
        (),
        False,
    )
    assert settings.database.startswith("sqlite:///")


def test_the_environment_is_read_and_the_command_line_wins() -> None:
    environ = {
        "PYMACP_CONSOLE_RUNTIME": "10.0.0.5:7000",
        "PYMACP_CONSOLE_BIND": "[::1]:9000",
        "PYMACP_CONSOLE_API_KEYS": f" {KEY} , {KEY}x ,, {KEY} ",
        "PYMACP_CONSOLE_DATABASE": "postgresql://console@db/console",
        "PYMACP_CONSOLE_RATE_LIMIT": "0",
        "PYMACP_CONSOLE_DISCOVERY": "off",
    }

    settings = load_settings(environ, {"runtime": "127.0.0.1:50052", "rate_limit_per_minute": None})

    assert settings.runtime == "127.0.0.1:50052"
    assert (settings.bind_host, settings.bind_port, settings.bind) == ("::1", 9000, "[::1]:9000")
    assert settings.api_keys == (KEY, f"{KEY}x")
    assert settings.rate_limit_per_minute == 0
    core = settings.core_config()
    assert (core.runtime_target, core.database_url, core.discovery) == (
        "127.0.0.1:50052",
        "postgresql://console@db/console",
        False,
    )


def test_a_ca_file_implies_tls() -> None:
    settings = load_settings({"PYMACP_CONSOLE_RUNTIME_CA": "/etc/ca.pem"})
    assert settings.runtime_tls is True
    assert settings.core_config().runtime_root_cert == "/etc/ca.pem"


@pytest.mark.parametrize(
    ("environ", "overrides", "named"),
    [
        ({"PYMACP_CONSOLE_BIND": "8080"}, {}, "PYMACP_CONSOLE_BIND"),
        ({}, {"bind": "localhost:99999"}, "--bind (PYMACP_CONSOLE_BIND)"),
        ({"PYMACP_CONSOLE_BIND": "::1:80"}, {}, "brackets"),
        ({"PYMACP_CONSOLE_RUNTIME": "host:0"}, {}, "PYMACP_CONSOLE_RUNTIME"),
        ({"PYMACP_CONSOLE_DATABASE": "mysql://x"}, {}, "PYMACP_CONSOLE_DATABASE"),
        ({"PYMACP_CONSOLE_HEARTBEAT_MS": "10"}, {}, "PYMACP_CONSOLE_HEARTBEAT_MS"),
        ({"PYMACP_CONSOLE_RATE_LIMIT": "lots"}, {}, "PYMACP_CONSOLE_RATE_LIMIT"),
        ({"PYMACP_CONSOLE_NO_AUTH": "maybe"}, {}, "PYMACP_CONSOLE_NO_AUTH"),
    ],
)
def test_bad_values_name_their_source(environ: dict[str, str], overrides: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError) as err:
        load_settings(environ, overrides)
    assert named in str(err.value)


def test_short_keys_are_refused_without_echoing_them() -> None:
    with pytest.raises(SettingsError) as err:
        load_settings({"PYMACP_CONSOLE_API_KEYS": f"{KEY},short-secret"})

    assert "position 2" in str(err.value)
    assert "short-secret" not in str(err.value)


def test_no_keys_and_no_no_auth_is_refused() -> None:
    with pytest.raises(SettingsError) as err:
        ConsoleSettings().check()
    assert "PYMACP_CONSOLE_API_KEYS" in str(err.value)
    assert "--no-auth" in str(err.value)
    assert ConsoleSettings(no_auth=True).check().auth_enabled is False
    assert ConsoleSettings(api_keys=(KEY,)).check().auth_enabled is True


def test_no_auth_from_the_environment_or_the_flag() -> None:
    assert load_settings({"PYMACP_CONSOLE_NO_AUTH": "1"}).no_auth is True
    assert load_settings({}, {"no_auth": True}).no_auth is True
    assert load_settings({}, {"no_auth": False}).no_auth is False


def test_the_log_level_has_a_variable_too() -> None:
    result = CliRunner().invoke(console, ["--bind", "nonsense"], env={"PYMACP_CONSOLE_LOG_LEVEL": "LOUD"})

    assert result.exit_code != 0
    assert "LOUD" in result.output


def test_the_command_refuses_bad_settings_before_binding() -> None:
    result = CliRunner().invoke(console, ["--bind", "nonsense"], env={"PYMACP_CONSOLE_NO_AUTH": "1"})

    assert result.exit_code != 0
    assert "--bind (PYMACP_CONSOLE_BIND)" in result.output


def test_every_option_has_help_and_a_documented_variable() -> None:
    docs = readme_section("The observer console")
    for option in OPTIONS:
        assert option.help
        assert option.env in docs, option.env
        if option.flag:
            assert option.flag in docs, option.flag
