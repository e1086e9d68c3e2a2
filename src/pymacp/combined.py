"""``pymacp serve --console``: the runtime and the observer console in one process.

The console still talks to the runtime only over gRPC, on the runtime's own listening
address, exactly as a separate ``pymacp console`` would. Its identity is an observer
token generated here at start-up and registered with the runtime as an in-process
identity: it never leaves the process, works whatever authentication the runtime is
configured with (development mode included), and grants reading only — the identity
cannot start sessions, and the console never sends envelopes.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import replace

from .console.server import ConsoleServer
from .console.settings import ConsoleSettings
from .kernel.identity import Identity
from .runtime.config import Settings, parse_address
from .server.app import RuntimeServer, until_signalled

log = logging.getLogger("pymacp")

CONSOLE_SENDER = "pymacp-console"
CONSOLE_DATABASE_FILE = "console.sqlite3"
LOOPBACK = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}  # a wildcard bind is reached on loopback


def console_identity() -> tuple[str, Identity]:
    token = secrets.token_urlsafe(32)
    return token, Identity(sender=CONSOLE_SENDER, can_start_sessions=False, is_observer=True)


def console_settings_for(
    runtime: Settings, console: ConsoleSettings, port: int, token: str, *, database_given: bool
) -> ConsoleSettings:
    """The console's settings when it runs beside ``runtime`` (listening on ``port``).

    The runtime address, token and TLS come from the runtime; unless one was given, the
    database is a file beside the runtime's log, or memory when the runtime keeps nothing
    on disk. Everything else (API keys, bind address, ...) is the console's own configuration.
    """
    host, _ = parse_address(runtime.bind_addr, "MACP_BIND_ADDR")
    host = LOOPBACK.get(host, host)
    database = console.database
    if not database_given:
        database = (
            "sqlite:///:memory:"
            if runtime.memory_only
            else f"sqlite:///{(runtime.data_dir / CONSOLE_DATABASE_FILE).resolve()}"
        )
    return replace(
        console,
        runtime=f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
        runtime_token=token,
        runtime_tls=runtime.tls_enabled,
        runtime_ca=str(runtime.tls_cert_path) if runtime.tls_enabled and runtime.tls_cert_path else None,
        database=database,
    )


async def serve_with_console(settings: Settings, console: ConsoleSettings, *, database_given: bool) -> None:
    """Run the runtime and the console until SIGINT or SIGTERM; stop the console first."""
    token, identity = console_identity()
    server = RuntimeServer(settings, internal_identities=[(token, identity)])
    await server.start()
    try:
        own = console_settings_for(settings, console, server.port, token, database_given=database_given)
        web = ConsoleServer(own.check())
        await web.start()
        try:
            await until_signalled()
            log.info("shutting down (drain deadline %ss)", settings.shutdown_drain_secs)
        finally:
            await web.stop()
    finally:
        await server.stop()
