"""Fixtures for the console core's tests (see core_support.py for the helpers)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from core_support import RUNTIME_ENV, core_config

from pymacp.console.service import ConsoleCore
from runtime_process import RuntimeProcess, running_runtime


@pytest.fixture(scope="module")
def macp_runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RuntimeProcess]:
    """One runtime per test module; tests isolate themselves with fresh session ids."""
    with running_runtime(tmp_path_factory.mktemp("console") / "data", env=RUNTIME_ENV) as process:
        yield process


@pytest.fixture
async def console_core(macp_runtime: RuntimeProcess, tmp_path: Path) -> AsyncIterator[ConsoleCore]:
    console = ConsoleCore(core_config(tmp_path / "console.db", macp_runtime.target))
    await console.start()
    try:
        yield console
    finally:
        await console.aclose()
