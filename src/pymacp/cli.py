"""The ``pymacp`` command line."""

from __future__ import annotations

import asyncio
import importlib
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from . import __version__

if TYPE_CHECKING:
    from .runtime.config import Settings

SERVE_HELP = """Start the MACP runtime (gRPC) on its embedded SQLite storage.

\b
Every option has an environment variable, the same ones the Rust reference
runtime reads, so pymacp is a drop-in replacement. Also read from the
environment only:
  MACP_AUTH_TOKENS_JSON / MACP_AUTH_TOKENS_FILE  static bearer tokens
  MACP_AUTH_ISSUER, MACP_AUTH_AUDIENCE,          JWT bearer auth (RS256/ES256)
  MACP_AUTH_JWKS_JSON / MACP_AUTH_JWKS_URL,
  MACP_AUTH_JWKS_TTL_SECS, MACP_AUTH_JWT_ALGS
  MACP_MAX_PAYLOAD_BYTES (1048576), MACP_SESSION_START_LIMIT_PER_MINUTE (60),
  MACP_MESSAGE_LIMIT_PER_MINUTE (600), MACP_CLEANUP_INTERVAL_SECS (60),
  MACP_SESSION_RETENTION_SECS (3600), MACP_SESSION_DISK_RETENTION_SECS (0 = keep),
  MACP_STRICT_RECOVERY, MACP_SHUTDOWN_DRAIN_SECS (10),
  MACP_LIST_SESSIONS_DEFAULT_PAGE_SIZE (100), MACP_LIST_SESSIONS_MAX_PAGE_SIZE (1000),
  MACP_MAX_CONCURRENT_STREAMS (128), MACP_STREAM_QUEUE_CAPACITY (256),
  MACP_RECEIPT_SIGNING_KEY_FILE, MACP_RECEIPT_ISSUER,
  MACP_POLICIES_DRY_RUN=1 (with MACP_POLICIES_DIR: validate the policy files,
  print OK/REJECTED per file and exit 0 or 1; binds no port, needs no TLS).

\b
Without authentication configured the runtime refuses to start, unless
--allow-insecure (MACP_ALLOW_INSECURE=1) enables development mode, where the
bearer token is taken as the sender's identity.
"""


# The products' commands, imported only when used: `pymacp serve` and `pymacp bus` start
# without loading the console's web stack (a supervisor may judge start-up by how fast a
# misconfigured child exits).
LAZY_COMMANDS = {
    "agents": "pymacp.bus.agents.cli:agents",
    "bench": "pymacp.bench.cli:bench",
    "bus": "pymacp.bus.cli:bus",
    "console": "pymacp.console.cli:console",
}


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *LAZY_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in LAZY_COMMANDS and cmd_name not in self.commands:
            module, _, attribute = LAZY_COMMANDS[cmd_name].partition(":")
            command = getattr(importlib.import_module(module), attribute)
            assert isinstance(command, click.Command)
            self.add_command(command, cmd_name)
        return super().get_command(ctx, cmd_name)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="pymacp")
def main() -> None:
    """pymacp: a MACP (Multi-Agent Coordination Protocol) runtime in Python."""


@main.command(help=SERVE_HELP)
@click.option("--bind", help="HOST:PORT to listen on [MACP_BIND_ADDR, default 127.0.0.1:50051].")
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    help="Where the SQLite log and the receipt key live [MACP_DATA_DIR, default .macp-data].",
)
@click.option("--memory-only", is_flag=True, default=None, help="Keep nothing on disk [MACP_MEMORY_ONLY=1].")
@click.option(
    "--allow-insecure",
    is_flag=True,
    default=None,
    help="Allow plaintext and, without configured auth, dev-mode auth [MACP_ALLOW_INSECURE=1].",
)
@click.option(
    "--tls-cert", type=click.Path(path_type=Path), help="PEM certificate chain [MACP_TLS_CERT_PATH]."
)
@click.option("--tls-key", type=click.Path(path_type=Path), help="PEM private key [MACP_TLS_KEY_PATH].")
@click.option(
    "--policies-dir",
    type=click.Path(path_type=Path),
    help="Load governance policies from *.json files; the registry is then read-only [MACP_POLICIES_DIR]. "
    "With MACP_POLICIES_DRY_RUN=1 the files are only validated, and the command exits 0 or 1.",
)
@click.option(
    "--metrics-addr",
    help="HOST:PORT for the Prometheus /metrics endpoint, off by default [MACP_METRICS_ADDR].",
)
@click.option(
    "--log-format", type=click.Choice(["text", "json"]), help="Log format [MACP_LOG_FORMAT, default text]."
)
@click.option(
    "--log-level",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    help="Log level [MACP_LOG_LEVEL, default INFO].",
)
@click.option(
    "--console",
    "with_console",
    is_flag=True,
    default=None,
    help="Also run the observer console (HTTP API and web UI) in this process [PYMACP_SERVE_CONSOLE=1]. "
    "It reads the PYMACP_CONSOLE_* variables of `pymacp console`, except the runtime address and "
    "token, and keeps its database beside the runtime's (in memory with --memory-only).",
)
@click.option(
    "--console-bind",
    metavar="HOST:PORT",
    help="Console HTTP address [PYMACP_CONSOLE_BIND, default 127.0.0.1:8080].",
)
@click.option("--console-database", metavar="URL", help="Console database URL [PYMACP_CONSOLE_DATABASE].")
@click.option(
    "--console-no-auth",
    is_flag=True,
    default=False,
    help="Run the console without API keys (else PYMACP_CONSOLE_API_KEYS is required) "
    "[PYMACP_CONSOLE_NO_AUTH=1].",
)
def serve(
    bind: str | None,
    data_dir: Path | None,
    memory_only: bool | None,
    allow_insecure: bool | None,
    tls_cert: Path | None,
    tls_key: Path | None,
    policies_dir: Path | None,
    metrics_addr: str | None,
    log_format: str | None,
    log_level: str | None,
    with_console: bool | None,
    console_bind: str | None,
    console_database: str | None,
    console_no_auth: bool,
) -> None:
    from .runtime.auth import AuthConfigError
    from .runtime.config import ConfigError, Settings
    from .runtime.logs import configure
    from .runtime.registries import PolicyDirectoryError
    from .server.app import serve as run
    from .storage import StorageError

    overrides = {
        "bind_addr": bind,
        "data_dir": data_dir,
        "memory_only": memory_only,
        "allow_insecure": allow_insecure,
        "tls_cert_path": tls_cert,
        "tls_key_path": tls_key,
        "policies_dir": policies_dir,
        "metrics_addr": metrics_addr,
        "log_format": log_format,
        "log_level": log_level.upper() if log_level else None,
    }
    try:
        env_settings = Settings.from_env(check=False)
        if _dry_run_requested():
            sys.exit(_dry_run(policies_dir or env_settings.policies_dir))
        settings = env_settings.with_overrides(**overrides)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    configure(settings.log_format, settings.log_level)
    if with_console is None:
        with_console = os.environ.get("PYMACP_SERVE_CONSOLE", "").strip().lower() in {
            "1",
            "true",
            "yes",
            "on",
        }
    try:
        if with_console:
            asyncio.run(_serve_with_console(settings, console_bind, console_database, console_no_auth))
        else:
            asyncio.run(run(settings))
    except (AuthConfigError, StorageError, PolicyDirectoryError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    except KeyboardInterrupt:  # pragma: no cover - signal handlers normally catch it
        pass


async def _serve_with_console(
    settings: Settings, bind: str | None, database: str | None, no_auth: bool
) -> None:
    from .combined import serve_with_console
    from .console.settings import SettingsError, load_settings
    from .console.store.base import StoreError

    try:
        console_settings = load_settings(os.environ, {"bind": bind, "database": database, "no_auth": no_auth})
        console_settings.check()
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None
    given = database is not None or bool(os.environ.get("PYMACP_CONSOLE_DATABASE"))
    try:
        await serve_with_console(settings, console_settings, database_given=given)
    except StoreError as exc:
        raise click.ClickException(f"cannot open the console's database: {exc}") from None


def _dry_run_requested() -> bool:
    return os.environ.get("MACP_POLICIES_DRY_RUN", "").strip().lower() in ("1", "true", "yes", "on")


def _dry_run(directory: Path | None) -> int:
    """Validate a policy directory the way start-up would, print the verdict, return the exit code."""
    from .runtime.registries import PolicyDirectoryError, load_policy_directory

    if directory is None:
        raise click.ClickException("MACP_POLICIES_DRY_RUN needs MACP_POLICIES_DIR (or --policies-dir)")
    if not directory.is_dir():
        raise click.ClickException(f"MACP_POLICIES_DIR={directory}: no such directory")
    try:
        loaded = load_policy_directory(directory, 0)
    except PolicyDirectoryError as exc:
        click.echo(f"REJECTED {exc}", err=True)
        return 1
    if not loaded:
        click.echo(f"WARNING: no *.json policy files in {directory}", err=True)
    for policy_id in sorted(loaded):
        click.echo(f"OK {policy_id}")
    click.echo(f"{len(loaded)} policies valid")
    return 0


if __name__ == "__main__":  # pragma: no cover
    main()
