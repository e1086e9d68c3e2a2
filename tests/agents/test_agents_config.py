"""The ``pymacp agents`` config file: what it accepts, and the field every refusal names."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pymacp.bus.agents.config import load_agents_config, parse_agents_config
from pymacp.bus.config import ConfigError

ENV = {"D_TOKEN": "dispatcher-token", "T_TOKEN": "tasks-token", "SECRET": "s" * 32}


def document(**changes: Any) -> dict[str, Any]:
    pool = {
        "id": "tasks",
        "command": "python3",
        "args": ["-m", "pymacp.bus.agents.examples.task_worker"],
        "instances": 2,
        "participant": "agent://tasks",
        "tokenEnv": "T_TOKEN",
    }
    base: dict[str, Any] = {"dispatcher": {"tokenEnv": "D_TOKEN"}, "pools": [pool]}
    base.update(changes)
    return base


def parse(doc: dict[str, Any], env: dict[str, str] | None = None) -> Any:
    return parse_agents_config(json.dumps(doc), ENV if env is None else env)


def test_defaults_and_secrets_resolved_from_the_environment() -> None:
    config = parse(document(callbacks={"secretEnv": "SECRET", "backoffMs": 50}))
    (pool,) = config.pools
    assert (pool.id, pool.participant, pool.token) == ("tasks", "agent://tasks", "tasks-token")
    assert (pool.cap, pool.queue_limit, pool.task_ttl_ms) == (2, 100, 600_000)  # cap defaults to instances
    assert pool.process.args == ("-m", "pymacp.bus.agents.examples.task_worker")
    assert config.dispatcher_token == "dispatcher-token"
    assert (config.callbacks.secret, config.callbacks.backoff_ms) == ("s" * 32, 50)
    assert config.limits.max_restarts == 5
    # secrets never show up in a repr (and so in a log line)
    assert (
        "tasks-token" not in repr(config)
        and "dispatcher-token" not in repr(config)
        and "sss" not in repr(config)
    )


def test_without_a_secret_callbacks_are_simply_off() -> None:
    assert parse(document()).callbacks.secret is None


def test_allowed_hosts_are_exact_names_addresses_and_subdomain_patterns() -> None:
    hosts = ["Hooks.Example.COM.", "*.internal.example", "10.0.0.7", "[::1]"]
    settings = parse(document(callbacks={"allowedHosts": hosts})).callbacks
    assert settings.allowed_hosts == ("hooks.example.com", "*.internal.example", "10.0.0.7", "::1")
    allowed = ["hooks.example.com", "HOOKS.example.com.", "a.internal.example", "a.b.internal.example"]
    allowed += ["10.0.0.7", "::1"]
    assert all(settings.allows(host) for host in allowed)
    refused = ["example.com", "hooks.example.com.evil", "internal.example", "xinternal.example"]
    refused += ["10.0.0.8", "127.0.0.1", ""]
    assert not any(settings.allows(host) for host in refused)
    assert parse(document()).callbacks.allows("anything.example")  # no list: any host


@pytest.mark.parametrize(
    "hosts",
    [
        [],
        "hooks.example.com",
        [""],
        [7],
        ["https://hooks.example.com"],
        ["hooks.example.com:8443"],
        ["*"],
        ["a*.example.com"],
        ["hooks.example.com/path"],
    ],
)
def test_allowed_hosts_refuse_what_is_not_a_host(hosts: Any) -> None:
    with pytest.raises(ConfigError, match=r"callbacks\.allowedHosts"):
        parse(document(callbacks={"allowedHosts": hosts}))


def test_toml_works_too(tmp_path: Path) -> None:
    path = tmp_path / "agents.toml"
    path.write_text(
        '[dispatcher]\ntoken = "inline-token"\n\n'
        '[[pools]]\nid = "tasks"\ncommand = "python3"\ninstances = 1\n'
        'participant = "agent://tasks"\ntoken = "t"\ncap = 3\nqueueLimit = 0\n'
    )
    config = load_agents_config(path, {})
    assert (config.pools[0].cap, config.pools[0].queue_limit, config.dispatcher_token) == (
        3,
        0,
        "inline-token",
    )


def tasks_pool(**changes: Any) -> dict[str, Any]:
    pool: dict[str, Any] = dict(document()["pools"][0])
    pool.update(changes)
    return {k: v for k, v in pool.items() if v is not None}


@pytest.mark.parametrize(
    ("doc", "env", "message"),
    [
        ({"pools": []}, None, "at least one worker pool"),
        (document(pools=[tasks_pool(participant=None)]), None, "pool 'tasks' needs 'participant'"),
        (document(pools=[tasks_pool(tokenEnv=None)]), None, "pool 'tasks' needs exactly one of 'tokenEnv'"),
        (document(pools=[tasks_pool(token="x")]), None, "exactly one of 'tokenEnv'"),
        (document(), {"D_TOKEN": "d"}, "environment variable T_TOKEN (its tokenEnv) is not set"),
        (document(pools=[tasks_pool(tokenenv="T_TOKEN")]), None, "unknown key 'tokenenv' in pool 'tasks'"),
        (document(pools=[tasks_pool(cap=-1)]), None, "pool 'tasks': 'cap' must be an integer >= 0"),
        (document(pools=[tasks_pool(queueLimit="10")]), None, "'queueLimit' must be an integer"),
        (
            document(pools=[tasks_pool(taskTtlMs=0)]),
            None,
            "'taskTtlMs' must be an integer between 1 and 86400000",
        ),
        (document(pools=[tasks_pool(instances=0)]), None, "at least 1 instance"),
        (document(pools=[tasks_pool(command="")]), None, "missing required 'command'"),
        (document(pools=[tasks_pool(), tasks_pool()]), None, "used twice"),
        (
            document(pools=[tasks_pool(), tasks_pool(id="other")]),
            None,
            "both use participant 'agent://tasks'",
        ),
        ({"pools": [tasks_pool()]}, None, "'dispatcher' is required"),
        (document(dispatcher={"tokenEnv": "NOPE"}), None, "dispatcher: environment variable NOPE"),
        (document(extra=1), None, "unknown key 'extra' in the top level"),
        (
            document(callbacks={"secretEnv": "MISSING"}),
            None,
            "callbacks.secretEnv: environment variable MISSING",
        ),
        (document(callbacks={"secretEnv": "SHORT"}), {**ENV, "SHORT": "abc"}, "too short"),
        (document(callbacks={"maxAttempts": 0}), None, "'maxAttempts' must be an integer between 1 and 100"),
        (document(limits={"max_restarts": -1}), None, "limits.max_restarts"),
    ],
)
def test_refusals_name_the_field(doc: dict[str, Any], env: dict[str, str] | None, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(doc, env)
    assert message in str(caught.value)


def test_unreadable_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot open config file"):
        load_agents_config(tmp_path / "missing.json", ENV)
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(ConfigError, match="is not valid JSON"):
        load_agents_config(bad, ENV)
    bad_toml = tmp_path / "bad.toml"
    bad_toml.write_text("[pools\n")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        load_agents_config(bad_toml, ENV)
    with pytest.raises(ConfigError, match="must be an object"):
        parse_agents_config("[1]", ENV)
