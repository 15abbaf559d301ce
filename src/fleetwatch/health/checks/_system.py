"""``system`` check: CPU, memory and disk against thresholds, aware of cgroup v2 limits.

CPU is sampled without blocking: each execution compares CPU time used since the previous one
(``psutil.cpu_percent(interval=1)``, the usual call, would stall the event loop for a second
on every check). File reads run in a worker thread. Inside a container with cgroup v2 limits,
usage is measured against the container's limits, not the host's: a container at 95% of its
memory limit is about to be OOM-killed even if the host is idle.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from fleetwatch.health._result import Observation
from fleetwatch.health._status import HealthStatus

#: Default thresholds, in percent.
DEFAULT_CPU_THRESHOLD = 80.0
DEFAULT_MEMORY_THRESHOLD = 85.0
DEFAULT_DISK_THRESHOLD = 90.0
#: CPU use over a shorter window is noise; a check that comes sooner (the first run of a
#: one-shot ``fleetwatch check``) waits, asynchronously, until this much time has passed.
MIN_CPU_WINDOW_S = 0.25


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _host_cpu_times() -> tuple[float, float]:
    """Busy and total CPU seconds of the host, all cores together.

    Idle and iowait count as idle. Guest time is already inside user and nice, so it is taken
    out of the total once (as psutil does), or VM hosts would look less busy than they are.
    """
    times = psutil.cpu_times()
    total = sum(times) - getattr(times, "guest", 0.0) - getattr(times, "guest_nice", 0.0)
    idle = times.idle + getattr(times, "iowait", 0.0)
    return total - idle, total


def _cpu_limit(directory: Path) -> float | None:
    cpu_max = (_read(directory / "cpu.max") or "max").split()
    if not cpu_max or cpu_max[0] == "max":
        return None
    period = int(cpu_max[1]) if len(cpu_max) > 1 else 100_000
    return int(cpu_max[0]) / period


def _memory_limit(directory: Path) -> int | None:
    memory_max = _read(directory / "memory.max") or "max"
    return None if memory_max == "max" else int(memory_max)


@dataclass(frozen=True, slots=True)
class CgroupLimits:
    """The cgroup v2 limits that bind this process, and the groups that set them.

    A limit may be set on the process's own group or on any ancestor (a systemd slice, a
    Kubernetes pod above its containers); the tightest one binds, and usage is measured in the
    group that sets it, since everything in that group shares the limit.
    """

    directory: Path
    cpu_cores: float | None
    memory_bytes: int | None
    cpu_directory: Path | None = None
    memory_directory: Path | None = None

    @classmethod
    def discover(
        cls, root: Path = Path("/sys/fs/cgroup"), self_cgroup: Path = Path("/proc/self/cgroup")
    ) -> CgroupLimits | None:
        """Find this process's cgroup v2 limits; ``None`` on cgroup v1 or no cgroup."""
        if not (root / "cgroup.controllers").exists():
            return None
        relative = "/"
        for line in (_read(self_cgroup) or "").splitlines():
            if line.startswith("0::"):
                relative = line[3:] or "/"
        directory = root / relative.lstrip("/")
        if not directory.is_dir():
            directory = root  # a cgroup namespace shows our own group as the root
        cpu: tuple[float, Path] | None = None
        memory: tuple[int, Path] | None = None
        level = directory
        while True:
            cores, limit = _cpu_limit(level), _memory_limit(level)
            if cores is not None and (cpu is None or cores < cpu[0]):
                cpu = (cores, level)
            if limit is not None and (memory is None or limit < memory[0]):
                memory = (limit, level)
            if level == root or root not in level.parents:
                break
            level = level.parent
        return cls(
            directory,
            cpu[0] if cpu else None,
            memory[0] if memory else None,
            cpu[1] if cpu else None,
            memory[1] if memory else None,
        )

    def cpu_usage_seconds(self) -> float | None:
        """CPU time used by the group that sets the CPU limit, from its ``cpu.stat``."""
        directory = self.cpu_directory or self.directory
        for line in (_read(directory / "cpu.stat") or "").splitlines():
            key, _, value = line.partition(" ")
            if key == "usage_usec":
                return int(value) / 1e6
        return None

    def memory_used_bytes(self) -> int | None:
        """Working set: ``memory.current`` less reclaimable page cache, as Kubernetes counts."""
        directory = self.memory_directory or self.directory
        current = _read(directory / "memory.current")
        if current is None:
            return None
        inactive = 0
        for line in (_read(directory / "memory.stat") or "").splitlines():
            key, _, value = line.partition(" ")
            if key == "inactive_file":
                inactive = int(value)
        return max(0, int(current) - inactive)


@dataclass(frozen=True, slots=True)
class SystemSample:
    """One reading of CPU, memory and disk use."""

    cpu_percent: float
    memory_percent: float
    memory_available_bytes: int
    disk_percent: float
    disk_free_bytes: int
    source: str
    cpu_limit_cores: float | None


class SystemCheck:
    """CPU, memory and disk of ``path``; any above its threshold is degraded.

    Non-critical by default in configuration: a busy LLM host runs hot on purpose.
    """

    component_type = "system"
    measurement = "utilization"

    def __init__(
        self,
        *,
        path: str = "/",
        cpu_threshold: float = DEFAULT_CPU_THRESHOLD,
        memory_threshold: float = DEFAULT_MEMORY_THRESHOLD,
        disk_threshold: float = DEFAULT_DISK_THRESHOLD,
        cgroup: CgroupLimits | None = None,
        use_cgroup: bool = True,
    ) -> None:
        self.path = path
        self._thresholds = (cpu_threshold, memory_threshold, disk_threshold)
        self._cgroup = (
            cgroup if cgroup is not None else (CgroupLimits.discover() if use_cgroup else None)
        )
        # Our own baseline, so the first check already measures a real interval. (psutil's
        # cpu_percent(None) keeps its baseline per thread, and samples run in worker threads.)
        self._last_cpu = (time.monotonic(), self._cgroup_cpu(), _host_cpu_times())

    def _cgroup_cpu(self) -> float | None:
        if self._cgroup is None or self._cgroup.cpu_cores is None:
            return None
        return self._cgroup.cpu_usage_seconds()

    def sample(self) -> SystemSample:
        """Read CPU, memory and disk now. Blocking file I/O: call it from a thread."""
        now, used, host = time.monotonic(), self._cgroup_cpu(), _host_cpu_times()
        then, used_before, host_before = self._last_cpu
        self._last_cpu = (now, used, host)
        cgroup = self._cgroup
        source = "host"
        if cgroup and cgroup.cpu_cores and used is not None and used_before is not None:
            cpu = 100.0 * (used - used_before) / max(now - then, 1e-6) / cgroup.cpu_cores
            source = "cgroup"
        else:
            busy, total = host[0] - host_before[0], host[1] - host_before[1]
            cpu = 100.0 * busy / total if total > 0 else 0.0
        memory_used = cgroup.memory_used_bytes() if cgroup and cgroup.memory_bytes else None
        if cgroup and cgroup.memory_bytes and memory_used is not None:
            memory_percent = 100.0 * memory_used / cgroup.memory_bytes
            available = max(0, cgroup.memory_bytes - memory_used)
            source = "cgroup"
        else:
            vm = psutil.virtual_memory()
            memory_percent, available = vm.percent, vm.available
        disk = psutil.disk_usage(self.path)
        return SystemSample(
            cpu_percent=round(cpu, 2),
            memory_percent=round(memory_percent, 2),
            memory_available_bytes=int(available),
            disk_percent=round(100.0 * disk.used / disk.total, 2) if disk.total else 0.0,
            disk_free_bytes=int(disk.free),
            source=source,
            cpu_limit_cores=cgroup.cpu_cores if cgroup else None,
        )

    async def check(self) -> Observation:
        since_last = time.monotonic() - self._last_cpu[0]
        if since_last < MIN_CPU_WINDOW_S:
            await asyncio.sleep(MIN_CPU_WINDOW_S - since_last)
        s = await asyncio.to_thread(self.sample)
        cpu_max, memory_max, disk_max = self._thresholds
        issues = [
            f"{label} high: {value:.1f}% > {limit:g}%"
            for label, value, limit in (
                ("CPU", s.cpu_percent, cpu_max),
                ("Memory", s.memory_percent, memory_max),
                (f"Disk {self.path}", s.disk_percent, disk_max),
            )
            if value > limit
        ]
        figures = (
            f"cpu {s.cpu_percent:.1f}%, memory {s.memory_percent:.1f}%, disk {s.disk_percent:.1f}%"
        )
        status = HealthStatus.DEGRADED if issues else HealthStatus.HEALTHY
        output = "; ".join(issues) if issues else f"System resources healthy ({figures})"
        metadata = {
            "cpu_percent": s.cpu_percent,
            "memory_percent": s.memory_percent,
            "disk_percent": s.disk_percent,
            "memory_available_bytes": s.memory_available_bytes,
            "disk_free_bytes": s.disk_free_bytes,
            "limits": s.source,
            "cpu_limit_cores": s.cpu_limit_cores,
            "path": self.path,
        }
        worst = max(s.cpu_percent, s.memory_percent, s.disk_percent)
        return Observation(status, output, worst, "%", metadata)
