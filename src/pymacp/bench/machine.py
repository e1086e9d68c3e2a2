"""The machine a run was measured on, and the cost of one fsync on the runtime's disk.

Benchmark figures only mean something next to the hardware that produced them, so the
JSON report carries the CPU, memory, Python, kernel and the disk under the data
directory. The fsync unit is measured the simplest way a durable store can pay it: write
4 KiB to one file and ``os.fsync`` it, many times over, and take the median.

On a virtual machine the hypervisor may run other guests on "our" cores: the time it takes
is *steal*, counted in /proc/stat. A scenario measured while much CPU was stolen is less
trustworthy (its runtime and baseline runs may have been slowed unequally), so each
scenario records the share stolen while it ran (:class:`CpuClock`), and process CPU time
(:func:`process_cpu_seconds`) lets a scenario report what the server spent per envelope.

Two cores shared by a server and its load generator are also contended from inside the
machine: a server thread that is ready to run may wait for a CPU while client processes
hold both. The kernel counts that wait per thread (:func:`cpu_wait_seconds`, from
``/proc/<pid>/task/<tid>/schedstat``): time that stretches every latency measured there.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FSYNC_BLOCK = 4096
STEAL_WARNING = 0.05  # share of CPU time stolen above which a scenario's figures are flagged
_STEAL_FIELD = 7  # the 8th number of /proc/stat's "cpu" line (see proc(5))


@dataclass(frozen=True, slots=True)
class CpuClock:
    """A reading of the machine's CPU time counters (clock ticks, summed over all CPUs)."""

    total: int
    steal: int

    @classmethod
    def read(cls, stat: Path = Path("/proc/stat")) -> CpuClock | None:
        """The counters now; None where the kernel does not publish them (not Linux)."""
        try:
            first = stat.read_text().splitlines()[0].split()
            # guest and guest_nice (fields 9 and 10) are already counted in user and nice
            ticks = [int(value) for value in first[1:9]]
        except (OSError, IndexError, ValueError):
            return None
        if first[0] != "cpu":
            return None
        steal = ticks[_STEAL_FIELD] if len(ticks) > _STEAL_FIELD else 0  # kernels before 2.6.11
        return cls(sum(ticks), steal)

    def steal_share(self, later: CpuClock | None) -> float | None:
        """The share of all CPU time between the two readings that the hypervisor took."""
        if later is None or later.total <= self.total:
            return None
        return (later.steal - self.steal) / (later.total - self.total)


def process_cpu_seconds(pid: int) -> float | None:
    """User plus system CPU time of every thread of process ``pid`` so far; None if unreadable."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # the command name may contain spaces
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_wait_seconds(pid: int, tid: int | None = None) -> float | None:
    """Time thread ``tid`` of process ``pid`` (its main thread by default) has spent ready to
    run but waiting for a CPU; None where the kernel does not report it (no schedstats)."""
    try:
        fields = Path(f"/proc/{pid}/task/{pid if tid is None else tid}/schedstat").read_text().split()
        return int(fields[1]) / 1e9  # on-CPU ns, runqueue-wait ns, time slices (see proc(5))
    except (OSError, IndexError, ValueError):
        return None


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
