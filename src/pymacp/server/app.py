"""Assemble and run a runtime: storage, runtime core, gRPC server, metrics endpoint.

:class:`RuntimeServer` is what ``pymacp serve`` runs, and an async context manager for
embedding a runtime in your own tests::

    async with RuntimeServer.embedded() as server:   # memory-only, ephemeral port
        client = MacpClient(target=server.target, allow_insecure=True)
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Sequence
from dataclasses import replace
from types import TracebackType
from typing import Any

import grpc
from prometheus_client import start_http_server

from ..kernel.identity import Identity
from ..runtime.auth import Authenticator
from ..runtime.clock import Clock, wall_clock_ms
from ..runtime.config import Settings, parse_address
from ..runtime.core import Runtime
from ..runtime.receipts import ReceiptIssuer
from ..storage import Store
from ..storage.memory import MemoryStore
from ..storage.sqlite import SqliteStore
from .interpreter import collect_periodically, tune_interpreter
from .registration import add_service
from .service import MacpService

log = logging.getLogger("pymacp.server")
DATABASE_FILE = "macp.sqlite3"
RECEIPT_KEY_FILE = "receipt-signing-key.pem"
GRPC_OVERHEAD_BYTES = 64 * 1024


class RuntimeServer:
    def __init__(
        self,
        settings: Settings,
        *,
        clock: Clock = wall_clock_ms,
        store: Store | None = None,
        internal_identities: Sequence[tuple[str, Identity]] = (),
    ) -> None:
        self.settings = settings
        self._internal_identities = tuple(internal_identities)
        self._clock = clock
        self._store = store
        self.runtime: Runtime | None = None
        self._server: grpc.aio.Server | None = None
        self._metrics_server: Any = None
        self._collector: asyncio.Task[None] | None = None
        self.port = 0

    @classmethod
    def embedded(cls, **overrides: Any) -> RuntimeServer:
        """A memory-only, plaintext, dev-auth runtime on an ephemeral loopback port."""
        base = Settings(bind_addr="127.0.0.1:0", memory_only=True, allow_insecure=True)
        settings = base.with_overrides(**overrides)
        return cls(settings)

    @property
    def target(self) -> str:
        host, _ = parse_address(self.settings.bind_addr, "MACP_BIND_ADDR")
        return f"{host}:{self.port}" if ":" not in host else f"[{host}]:{self.port}"

    async def start(self) -> None:
        settings = self.settings
        authenticator = Authenticator.from_settings(
            replace(settings.auth, allow_insecure=settings.allow_insecure)
        )
        for token, identity in self._internal_identities:  # components of this process (serve --console)
            authenticator = authenticator.with_internal_identity(token, identity)
        store = self._store or (
            MemoryStore() if settings.memory_only else SqliteStore(settings.data_dir / DATABASE_FILE)
        )
        runtime = Runtime(settings, store, clock=self._clock, receipts=self._receipts())
        await runtime.start()
        self.runtime = runtime
        tune_interpreter()
        self._collector = asyncio.create_task(collect_periodically(), name="pymacp-gc")
        max_message = settings.max_payload_bytes + GRPC_OVERHEAD_BYTES
        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", max_message),
                ("grpc.max_send_message_length", max(max_message, 16 * 1024 * 1024)),
                ("grpc.max_concurrent_streams", settings.max_concurrent_streams),
                ("grpc.keepalive_time_ms", 30_000),
                ("grpc.http2.max_pings_without_data", 0),
                ("grpc.keepalive_permit_without_calls", 1),
                ("grpc.so_reuseport", 0),  # a taken port is an error, not a silent share
            ]
        )
        add_service(MacpService(runtime, authenticator), server)
        try:
            if settings.tls_enabled:
                assert settings.tls_cert_path is not None and settings.tls_key_path is not None
                credentials = grpc.ssl_server_credentials(
                    [(settings.tls_key_path.read_bytes(), settings.tls_cert_path.read_bytes())]
                )
                self.port = server.add_secure_port(settings.bind_addr, credentials)
            else:
                self.port = server.add_insecure_port(settings.bind_addr)
        except RuntimeError:
            self.port = 0
        if self.port == 0:
            await runtime.stop()
            raise OSError(f"could not bind {settings.bind_addr}: is another process listening there?")
        await server.start()
        self._server = server
        if settings.metrics_addr:
            self._start_metrics(settings.metrics_addr, runtime)
        log.info(
            "pymacp runtime listening on %s (%s, %s, auth: %s)",
            self.target,
            "TLS" if settings.tls_enabled else "plaintext",
            "memory only" if settings.memory_only else f"SQLite in {settings.data_dir}",
            authenticator.describe(),
        )

    def _receipts(self) -> ReceiptIssuer:
        settings = self.settings
        if settings.receipt_key_file is not None:
            return ReceiptIssuer.load_or_create(settings.receipt_key_file, issuer=settings.receipt_issuer)
        if settings.memory_only:
            return ReceiptIssuer.ephemeral(settings.receipt_issuer)
        return ReceiptIssuer.load_or_create(
            settings.data_dir / RECEIPT_KEY_FILE, issuer=settings.receipt_issuer
        )

    def _start_metrics(self, address: str, runtime: Runtime) -> None:
        host, port = parse_address(address, "MACP_METRICS_ADDR")
        self._metrics_server, _ = start_http_server(port, addr=host, registry=runtime.metrics.registry)
        log.info("metrics on http://%s:%d/metrics", host, self._metrics_server.server_port)

    @property
    def metrics_port(self) -> int:
        return int(self._metrics_server.server_port) if self._metrics_server is not None else 0

    async def stop(self, grace: float | None = None) -> None:
        """Stop accepting calls, let in-flight ones finish (up to the drain deadline), then close storage."""
        drain = self.settings.shutdown_drain_secs if grace is None else grace
        if self.runtime is not None:
            self.runtime.end_streams()  # watchers and subscribers end now; unary calls get the drain
        if self._server is not None:
            await self._server.stop(drain)
            self._server = None
        if self._metrics_server is not None:
            self._metrics_server.shutdown()
            self._metrics_server = None
        if self._collector is not None:
            self._collector.cancel()
            self._collector = None
        if self.runtime is not None:
            await self.runtime.stop()
            self.runtime = None

    async def __aenter__(self) -> RuntimeServer:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop(grace=0)


async def serve(settings: Settings) -> None:
    """Run until SIGINT or SIGTERM, then drain and stop."""
    server = RuntimeServer(settings)
    await server.start()
    try:
        await until_signalled()
        log.info("shutting down (drain deadline %ss)", settings.shutdown_drain_secs)
    finally:
        await server.stop()


async def until_signalled() -> None:
    """Wait for SIGINT or SIGTERM."""
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    await stopping.wait()  # the handlers stay: a second signal during the drain changes nothing
