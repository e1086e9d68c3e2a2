"""The runtime's clock: the only place that reads wall time (the kernel takes it as an argument)."""

from __future__ import annotations

import time
from collections.abc import Callable

Clock = Callable[[], int]


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000
