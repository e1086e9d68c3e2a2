"""``pymacp bus``: the stdio_bus kernel's command line, plus a few switches of its own."""

from __future__ import annotations

import logging
import sys
import time

import click

from .config import ConfigError

BUS_HELP = """Route NDJSON JSON-RPC between clients and pools of worker processes.

\b
A drop-in for the stdio_bus kernel: the same command line, config file and
routing, so the stdiobus SDKs work unchanged (point SubprocessOptions.binary_path
at an executable that runs `pymacp bus`, or name it `stdio_bus` on PATH).

\b
Config file (JSON):
  {"pools": [{"id": "echo", "command": "python3",
              "args": ["-m", "pymacp.bus.examples.echo_worker"], "instances": 2}],
   "limits": {"max_input_buffer": 10485760, "max_output_queue": 41943040,
              "max_restarts": 5, "restart_window_sec": 60,
              "drain_timeout_sec": 30, "backpressure_timeout_sec": 60}}

\b
Unlike the kernel, the bus answers invalid JSON with a -32700 error and goes on,
forwards lines of any size up to max_input_buffer intact, answers a request it
cannot route or whose worker died with a JSON-RPC error (see --strict-parity),
exits promptly on stdin EOF (--stdio) or SIGTERM, and never leaves workers behind.
Protocol traffic goes to stdout, logs (and the workers' stderr) to stderr.
"""


class _KernelFormatter(logging.Formatter):
    """The kernel's log line: ``[2026-11-02T10:00:00] [WARN] message``."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(record.created))
        level = "WARN" if record.levelno == logging.WARNING else record.levelname
        line = f"[{stamp}] [{level}] {record.getMessage()}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def _configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_KernelFormatter())
    logger = logging.getLogger("pymacp.bus")
    logger.handlers[:] = [handler]
    logger.setLevel(level)
    logger.propagate = False


def _host_port(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise click.BadParameter(f"{value!r}: expected HOST:PORT with a port 0-65535", param_hint="--tcp")
    return host.removeprefix("[").removesuffix("]"), int(port)


@click.command("bus", help=BUS_HELP)
@click.option("--config", "config_path", metavar="PATH", help="Read the config from this JSON file.")
@click.option(
    "--config-fd",
    type=int,
    metavar="N",
    help="Read the config from file descriptor N until EOF (how the stdiobus SDK passes it).",
)
@click.option("--stdio", is_flag=True, help="Serve one client on stdin/stdout (the default).")
@click.option("--tcp", metavar="HOST:PORT", help="Listen for clients on TCP (port 0: any free port, logged).")
@click.option("--unix", "unix_path", metavar="PATH", help="Listen for clients on a unix socket.")
@click.option(
    "--strict-parity",
    is_flag=True,
    help="Behave like the C kernel where it is silent: drop a request that cannot be routed, or "
    "whose worker died, without an error reply (the client times out).",
)
@click.option(
    "--log-level",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    default="INFO",
    show_default=True,
    help="Least severe log level written to stderr.",
)
def bus(
    config_path: str | None,
    config_fd: int | None,
    stdio: bool,
    tcp: str | None,
    unix_path: str | None,
    strict_parity: bool,
    log_level: str,
) -> None:
    import asyncio

    from .app import Listen, run_bus
    from .config import load_config, read_config_fd

    if (config_path is None) == (config_fd is None):
        raise click.UsageError("give exactly one of --config PATH and --config-fd N")
    if sum((stdio, tcp is not None, unix_path is not None)) > 1:
        raise click.UsageError("--stdio, --tcp and --unix exclude each other")
    listen = Listen("unix", path=unix_path) if unix_path is not None else Listen()
    if tcp is not None:
        host, port = _host_port(tcp)
        listen = Listen("tcp", host=host, port=port)
    _configure_logging(log_level.upper())
    try:
        config = load_config(config_path) if config_path is not None else read_config_fd(config_fd or 0)
        if not (stdio or tcp or unix_path) and config.mode not in (None, "stdio"):
            flag = "--tcp HOST:PORT" if config.mode == "tcp" else "--unix PATH"
            raise ConfigError(f"transport.mode {config.mode!r} needs {flag} on the command line")
    except ConfigError as exc:
        click.echo(f"config: {exc}", err=True)
        sys.exit(1)
    try:
        code = asyncio.run(run_bus(config, listen, strict=strict_parity))
    except OSError as exc:  # e.g. the TCP port is taken, the socket path is not writable
        click.echo(f"pymacp bus: {exc}", err=True)
        sys.exit(1)
    sys.exit(code)
