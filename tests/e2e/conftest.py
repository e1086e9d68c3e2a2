"""Fixtures for the end-to-end tests: one real ``pymacp serve`` process per test module.

One process per module keeps the suite quick on a small machine; tests isolate themselves
by using fresh session ids, and everything a test opens is closed after it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from macp_sdk import MacpClient

from e2e_support import E2E_ENV, Connections, make_client
from runtime_process import RuntimeProcess, running_runtime


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RuntimeProcess]:
    with running_runtime(tmp_path_factory.mktemp("e2e") / "data", env=E2E_ENV) as process:
        yield process


@pytest.fixture(scope="module")
def client(runtime: RuntimeProcess) -> Iterator[MacpClient]:
    """One channel for the whole module; each call picks its identity with ``auth=``."""
    with make_client(runtime.target) as c:
        yield c


@pytest.fixture
def connect(runtime: RuntimeProcess) -> Iterator[Connections]:
    """Clients, streams and watcher threads for one test, all closed when it ends."""
    connections = Connections(runtime.target)
    try:
        yield connections
    finally:
        connections.close()
