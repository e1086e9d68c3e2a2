"""What the HTTP layer needs from the console's core, as a structural type.

:class:`pymacp.console.service.ConsoleCore` satisfies it; tests may pass a small fake.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import prometheus_client

from .descriptor import RunDescriptor
from .models import Run, RunEvent, RunPage


class Feed(Protocol):
    async def wait(self, timeout: float) -> bool: ...

    def close(self) -> None: ...


class Backend(Protocol):
    @property
    def runtime_ready(self) -> bool: ...

    @property
    def store_ready(self) -> bool: ...

    async def submit(self, descriptor: RunDescriptor) -> tuple[Run, bool]: ...

    async def list_runs(
        self,
        *,
        status: str | None = None,
        mode: str | None = None,
        source: str | None = None,
        session_id: str | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> RunPage: ...

    async def get_run(self, run_id: str) -> Run | None: ...

    async def events(self, run_id: str, *, after_seq: int = 0, limit: int = 500) -> list[RunEvent]: ...

    async def view(self, run_id: str) -> Mapping[str, Any] | None: ...

    def changes(self, run_id: str | None) -> Feed: ...

    async def cancel(self, run_id: str, reason: str | None) -> Run: ...

    def metrics_registry(self) -> prometheus_client.CollectorRegistry | None: ...
