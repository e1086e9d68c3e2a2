"""``pymacp console``: the command line, built from the settings table so the two agree."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import textwrap
from collections.abc import Callable
from typing import Any

import click

from .settings import OPTIONS, ConsoleSettings, SettingsError, load_settings
from .store.base import StoreError

CONSOLE_HELP = """Run the observer console: an HTTP API and a live web UI for the sessions
of a MACP runtime. The console connects to the runtime with an observer identity and
never sends on an agent's behalf.

\b
Every flag has an environment variable (shown in brackets); a flag beats the
variable. Only in the environment:
{env_only}

\b
API keys are required: set PYMACP_CONSOLE_API_KEYS, or pass --no-auth to run
without authentication on a trusted machine. The UI is at http://HOST:PORT/.
"""


def _env_only_help() -> str:
    lines = []
    for option in OPTIONS:
        if option.flag is None:
            lines.append(f"  {option.env} (default {option.default})")
            lines.extend(textwrap.wrap(option.help, 72, initial_indent="      ", subsequent_indent="      "))
    return "\n".join(lines)


def _with_options(command: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed([o for o in OPTIONS if o.flag is not None]):
        assert option.flag is not None
        text = f"{option.help} [{option.env}, default {option.default}]"
        decorator = (
            click.option(option.flag, option.name, is_flag=True, default=False, help=text)
            if option.is_flag
            else click.option(option.flag, option.name, metavar=_metavar(option.name), help=text)
        )
        command = decorator(command)
    return command


def _metavar(name: str) -> str:
    return {"runtime": "HOST:PORT", "bind": "HOST:PORT", "database": "URL", "runtime_ca": "PEM"}.get(
        name, "VALUE" if name != "runtime_token" else "TOKEN"
    )


@click.command("console", help=CONSOLE_HELP.format(env_only=_env_only_help()))
@_with_options
@click.option(
    "--log-level",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    default="INFO",
    envvar="PYMACP_CONSOLE_LOG_LEVEL",
    help="Log level [PYMACP_CONSOLE_LOG_LEVEL, default INFO].",
)
def console(log_level: str, **values: Any) -> None:
    try:
        settings = load_settings(os.environ, values).check()
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    try:
        asyncio.run(_serve(settings))
    except OSError as exc:
        raise click.ClickException(
            f"cannot serve on {settings.bind}: {exc} "
            "(choose another address with --bind / PYMACP_CONSOLE_BIND)"
        ) from None
    except (StoreError, ValueError) as exc:
        raise click.ClickException(f"cannot open the console's database: {exc}") from None


async def _serve(settings: ConsoleSettings) -> None:
    from .server import ConsoleServer

    server = ConsoleServer(settings)
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # pragma: no cover - not on Windows
            loop.add_signal_handler(sig, stop.set)
    auth = "API keys" if settings.auth_enabled else "NO AUTHENTICATION (--no-auth)"
    # Tests and scripts read the real port from this line when binding port 0.
    click.echo(f"pymacp console listening on {server.url} (runtime {settings.runtime}; {auth})", err=True)
    waiter = asyncio.ensure_future(server.wait())
    stopper = asyncio.ensure_future(stop.wait())
    await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
    stopper.cancel()
    await server.stop()
    waiter.cancel()
