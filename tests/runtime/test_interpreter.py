"""Interpreter settings of a server process: the switch interval, and the garbage-collection timer
that reclaims frozen cycles on its reclaim rounds."""

from __future__ import annotations

import asyncio
import gc
import subprocess
import sys
import weakref
from collections.abc import Callable

import pytest

from pymacp.server.interpreter import collect_periodically


class Node:
    def __init__(self) -> None:
        self.partner: Node | None = None


def _cycle() -> tuple[Node, weakref.ref[Node]]:
    a, b = Node(), Node()
    a.partner, b.partner = b, a
    return a, weakref.ref(b)


async def _collect_until(done: Callable[[], bool], reclaim_every: int, within_s: float = 10.0) -> None:
    collector = asyncio.create_task(collect_periodically(0.01, reclaim_every))
    try:
        async with asyncio.timeout(within_s):
            while not done():
                await asyncio.sleep(0.01)
    except TimeoutError:
        pass
    finally:
        collector.cancel()
        await asyncio.gather(collector, return_exceptions=True)


def test_a_cycle_frozen_while_alive_is_reclaimed_only_by_an_unfreezing_round() -> None:
    async def scenario() -> tuple[bool, bool]:
        held, watched = _cycle()
        gc.unfreeze()
        # Plain rounds only: the live cycle is frozen by the first one.
        await _collect_until(lambda: gc.get_freeze_count() > 0, reclaim_every=1_000_000)
        del held  # garbage from now on, but frozen
        rounds_later = asyncio.get_running_loop().time() + 0.2
        await _collect_until(lambda: asyncio.get_running_loop().time() > rounds_later, 1_000_000)
        survived_plain_rounds = watched() is not None
        await _collect_until(lambda: watched() is None, reclaim_every=2)  # every 2nd round unfreezes
        return survived_plain_rounds, watched() is not None

    try:
        survived_plain, survived_reclaim = asyncio.run(scenario())
    finally:
        gc.unfreeze()
        gc.collect()
    assert survived_plain, "a plain round collected a frozen cycle: the test proves nothing"
    assert not survived_reclaim, "the unfreezing round did not reclaim the frozen cycle"


def test_a_server_process_restores_the_default_switch_interval_and_full_collections_stop() -> None:
    code = (
        "import gc, sys\n"
        "from pymacp.server.interpreter import tune_interpreter\n"
        "sys.setswitchinterval(0.0001)\n"
        "tune_interpreter()\n"
        "print(sys.getswitchinterval(), gc.get_threshold()[2], gc.get_freeze_count() > 0)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    interval, oldest_threshold, frozen = result.stdout.split()
    assert float(interval) == pytest.approx(0.005)  # CPython's default, not what was set before
    assert int(oldest_threshold) >= 1_000_000  # full collections only on the timer
    assert frozen == "True"
