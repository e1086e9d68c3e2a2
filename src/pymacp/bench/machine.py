"""The machine a run was measured on, and the cost of one fsync on the runtime's disk.

Benchmark figures only mean something next to the hardware that produced them, so the
JSON report carries the CPU, memory, Python, kernel and the disk under the data
directory. The fsync unit is measured the simplest way a durable store can pay it: write
4 KiB to one file and ``os.fsync`` it, many times over, and take the median.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

FSYNC_BLOCK = 4096


def fsync_seconds(directory: Path, samples: int) -> float:
    """Median time of write(4 KiB) + fsync on one file in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "fsync-probe.bin"
    block = os.urandom(FSYNC_BLOCK)
    timings: list[float] = []
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for _ in range(samples):
            began = time.perf_counter()
            os.write(fd, block)
            os.fsync(fd)
            timings.append(time.perf_counter() - began)
    finally:
        os.close(fd)
        path.unlink(missing_ok=True)
    return statistics.median(timings)


def _first_value(path: str, key: str) -> str:
    try:
        for line in Path(path).read_text().splitlines():
            name, _, value = line.partition(":")
            if name.strip() == key:
                return value.strip()
    except OSError:
        pass
    return "unknown"


def _disk(directory: Path) -> dict[str, Any]:
    """The mount holding ``directory`` (longest matching mount point in /proc/mounts)."""
    real = str(directory.resolve())
    best = ("", "unknown", "unknown")
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            device, mount_point, fstype, *_ = line.split()
            inside = real == mount_point or real.startswith(mount_point.rstrip("/") + "/")
            if inside and len(mount_point) > len(best[0]):
                best = (mount_point, device, fstype)
    except OSError:
        pass
    mount_point, device, fstype = best
    info: dict[str, Any] = {"path": real, "mount_point": mount_point, "device": device, "fstype": fstype}
    block = Path(device).name
    rotational = Path(f"/sys/block/{block}/queue/rotational")
    if rotational.exists():
        info["rotational"] = rotational.read_text().strip() == "1"
    stat = os.statvfs(real)
    info["free_bytes"] = stat.f_bavail * stat.f_frsize
    return info


def machine_info(data_dir: Path) -> dict[str, Any]:
    mem_kib = _first_value("/proc/meminfo", "MemTotal").split()[0]
    return {
        "cpu_model": _first_value("/proc/cpuinfo", "model name"),
        "cpu_count": os.cpu_count(),
        "memory_bytes": int(mem_kib) * 1024 if mem_kib.isdigit() else None,
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "kernel": platform.release(),
        "data_dir_disk": _disk(data_dir),
    }
