"""``pymacp agents``: the MACP bridge and the dispatch service, as one process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from typing import TYPE_CHECKING

import click

from ..config import ConfigError

if TYPE_CHECKING:
    from .service import AgentsService

MIN_API_KEY_CHARS = 16

AGENTS_HELP = """Run worker pools as MACP participants (the bridge) and dispatch tasks to
them over HTTP (POST /dispatch, with SSE events and signed completion callbacks).

\b
The config file (JSON, or TOML if it ends in .toml) names the pools, the MACP
participant each pool acts as and its runtime token, the per-pool cap on
concurrent tasks, and the dispatcher's token (it starts the task sessions):
  {"dispatcher": {"tokenEnv": "DISPATCHER_TOKEN"},
   "pools": [{"id": "tasks", "command": "python3",
              "args": ["-m", "pymacp.bus.agents.examples.task_worker"],
              "instances": 2, "participant": "agent://tasks",
              "tokenEnv": "TASKS_TOKEN", "cap": 2, "queueLimit": 100}]}
In production also limit where callbacks may go, e.g.
  "callbacks": {"allowedHosts": ["hooks.example.com", "*.internal.example"]}
(without it any http(s) URL a dispatcher gives is called back).

\b
Every flag has an environment variable (in brackets); a flag beats the variable.
Only in the environment:
  PYMACP_AGENTS_API_KEYS         comma-separated API keys for the HTTP API (each at
                                 least 16 characters); required unless --no-auth
  PYMACP_AGENTS_CALLBACK_SECRET  the HMAC-SHA256 key that signs callbacks (at least
                                 16 characters; the config may name another variable)
"""


def _host_port(value: str, flag: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise click.BadParameter(f"{value!r}: expected HOST:PORT with a port 0-65535", param_hint=flag)
    return host.removeprefix("[").removesuffix("]"), int(port)


def _api_keys(raw: str | None) -> tuple[str, ...]:
    keys = tuple(key.strip() for key in (raw or "").split(",") if key.strip())
    short = [key for key in keys if len(key) < MIN_API_KEY_CHARS]
    if short:
        raise click.ClickException(
            f"PYMACP_AGENTS_API_KEYS: every key must be at least {MIN_API_KEY_CHARS} characters "
            f"({len(short)} is shorter)"
        )
    return keys


@click.command("agents", help=AGENTS_HELP)
@click.option(
    "--config",
    "config_path",
    envvar="PYMACP_AGENTS_CONFIG",
    required=True,
    metavar="FILE",
    help="The pools, participants, tokens and caps [PYMACP_AGENTS_CONFIG].",
)
@click.option(
    "--runtime",
    envvar="PYMACP_AGENTS_RUNTIME",
    default="127.0.0.1:50051",
    metavar="HOST:PORT",
    help="The MACP runtime's gRPC address [PYMACP_AGENTS_RUNTIME, default 127.0.0.1:50051].",
)
@click.option(
    "--runtime-tls",
    is_flag=True,
    envvar="PYMACP_AGENTS_RUNTIME_TLS",
    help="Connect to the runtime over TLS [PYMACP_AGENTS_RUNTIME_TLS=1].",
)
@click.option(
    "--runtime-ca",
    envvar="PYMACP_AGENTS_RUNTIME_CA",
    metavar="PEM",
    help="CA certificate to trust for the runtime's TLS [PYMACP_AGENTS_RUNTIME_CA].",
)
@click.option(
    "--bind",
    envvar="PYMACP_AGENTS_BIND",
    default="127.0.0.1:8090",
    metavar="HOST:PORT",
    help="Where the dispatch API listens; port 0 picks a free one "
    "[PYMACP_AGENTS_BIND, default 127.0.0.1:8090].",
)
@click.option(
    "--no-auth",
    is_flag=True,
    envvar="PYMACP_AGENTS_NO_AUTH",
    help="Serve the API without API keys, on a trusted machine only [PYMACP_AGENTS_NO_AUTH=1].",
)
@click.option(
    "--log-level",
    envvar="PYMACP_AGENTS_LOG_LEVEL",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    default="INFO",
    help="Least severe log level written to stderr [PYMACP_AGENTS_LOG_LEVEL, default INFO].",
)
def agents(
    config_path: str,
    runtime: str,
    runtime_tls: bool,
    runtime_ca: str | None,
    bind: str,
    no_auth: bool,
    log_level: str,
) -> None:
    # Workers are forked while gRPC runs; with gRPC's fork handlers on, a child can abort
    # between fork and exec. This must be set before gRPC starts, hence before these imports.
    os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "0")
    from .config import load_agents_config
    from .service import AgentsService, ServiceSettings

    _host_port(runtime, "--runtime")
    host, port = _host_port(bind, "--bind")
    keys = _api_keys(os.environ.get("PYMACP_AGENTS_API_KEYS"))
    if not keys and not no_auth:
        raise click.ClickException(
            "no API keys configured: set PYMACP_AGENTS_API_KEYS to a comma-separated list of keys "
            f"(each at least {MIN_API_KEY_CHARS} characters), or pass --no-auth "
            "(PYMACP_AGENTS_NO_AUTH=1) to run without authentication on a trusted machine"
        )
    try:
        config = load_agents_config(config_path)
    except ConfigError as exc:
        raise click.ClickException(f"config: {exc}") from None
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    # httpx logs every request with its URL; a callback URL may carry a token in its query.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    settings = ServiceSettings(
        runtime=runtime,
        bind_host=host,
        bind_port=port,
        runtime_tls=runtime_tls,
        runtime_ca=runtime_ca,
        api_keys=keys,
    )
    try:
        asyncio.run(_serve(AgentsService(config, settings)))
    except OSError as exc:
        raise click.ClickException(
            f"cannot serve on {bind}: {exc} (choose another address with --bind / PYMACP_AGENTS_BIND)"
        ) from None


async def _serve(service: AgentsService) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # pragma: no cover - not on Windows
            loop.add_signal_handler(signum, stop.set)
    await service.start()
    pools = "; ".join(
        f"pool {p.id!r} x{p.process.instances} as {p.participant!r}, cap {p.cap}"
        for p in service.config.pools
    )
    auth = "API keys" if service.settings.api_keys else "NO AUTHENTICATION (--no-auth)"
    # Tests and scripts read the real port from this line when binding port 0.
    click.echo(
        f"pymacp agents listening on {service.url} (runtime {service.settings.runtime}; {pools}; {auth})",
        err=True,
    )
    try:
        await stop.wait()
    finally:
        await service.stop()
