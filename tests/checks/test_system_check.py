"""The system check: thresholds, cgroup v2 limits, and never blocking the event loop."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

from fleetwatch.health import CheckSettings, HealthStatus, run_check
from fleetwatch.health.checks import CgroupLimits, SystemCheck


def _fake_cgroup(root: Path, *, cpu_max: str, memory_max: str, current: int) -> Path:
    """A cgroup v2 hierarchy laid out as the kernel shows it (files in a temp dir)."""
    group = root / "kubepods" / "pod1"
    group.mkdir(parents=True)
    (root / "cgroup.controllers").write_text("cpu memory io\n")
    (group / "cpu.max").write_text(f"{cpu_max}\n")
    (group / "cpu.stat").write_text("usage_usec 1000000\nuser_usec 800000\n")
    (group / "memory.max").write_text(f"{memory_max}\n")
    (group / "memory.current").write_text(f"{current}\n")
    (group / "memory.stat").write_text("anon 100\ninactive_file 100000\n")
    self_cgroup = root / "self-cgroup"
    self_cgroup.write_text("0::/kubepods/pod1\n")
    return self_cgroup


async def test_host_sample_reports_all_figures() -> None:
    """Outside limits, CPU, memory and disk come from the host, with free amounts in metadata."""
    result = await run_check(SystemCheck(use_cgroup=False), CheckSettings("host"))
    assert result.status in (HealthStatus.HEALTHY, HealthStatus.DEGRADED)
    assert result.observed_unit == "%"
    for key in ("cpu_percent", "memory_percent", "disk_percent"):
        assert 0.0 <= result.metadata[key] <= 100.0
    assert result.metadata["memory_available_bytes"] > 0
    assert result.metadata["disk_free_bytes"] > 0
    assert result.metadata["limits"] == "host"


async def test_thresholds_turn_degraded() -> None:
    """A disk threshold below current use is degraded and names the path."""
    check = SystemCheck(use_cgroup=False, disk_threshold=0.001)
    result = await run_check(check, CheckSettings("host"))
    assert result.status is HealthStatus.DEGRADED
    assert "Disk / high" in result.output


async def test_cgroup_limits_replace_host_figures(tmp_path: Path) -> None:
    """In a container, memory is judged against memory.max (working set), CPU against cpu.max."""
    self_cgroup = _fake_cgroup(
        tmp_path, cpu_max="50000 100000", memory_max="1000000", current=1_050_000
    )
    limits = CgroupLimits.discover(tmp_path, self_cgroup)
    assert limits is not None
    assert limits.cpu_cores == 0.5
    assert limits.memory_bytes == 1_000_000
    assert limits.memory_used_bytes() == 950_000
    check = SystemCheck(cgroup=limits)
    cpu_stat = limits.directory / "cpu.stat"
    await asyncio.sleep(0.1)
    # 0.04 s of CPU over the sample window (at least MIN_CPU_WINDOW_S = 0.25 s) on half a core
    cpu_stat.write_text("usage_usec 1040000\n")
    result = await run_check(check, CheckSettings("host"))
    assert result.metadata["limits"] == "cgroup"
    assert result.metadata["cpu_limit_cores"] == 0.5
    assert result.metadata["memory_percent"] == 95.0
    assert result.metadata["memory_available_bytes"] == 50_000
    assert 1.0 < result.metadata["cpu_percent"] <= 32.0
    assert result.status is HealthStatus.DEGRADED
    assert "Memory high: 95.0%" in result.output


def test_a_parent_limit_binds_when_tighter(tmp_path: Path) -> None:
    """A memory limit on the pod's parent group binds when it is tighter than the leaf's."""
    self_cgroup = _fake_cgroup(tmp_path, cpu_max="max", memory_max="max", current=1)
    parent = tmp_path / "kubepods"
    (parent / "memory.max").write_text("2000000\n")
    (parent / "memory.current").write_text("1900000\n")
    (parent / "cpu.max").write_text("200000 100000\n")
    limits = CgroupLimits.discover(tmp_path, self_cgroup)
    assert limits is not None
    assert (limits.memory_bytes, limits.memory_directory) == (2_000_000, parent)
    assert (limits.cpu_cores, limits.cpu_directory) == (2.0, parent)
    assert limits.memory_used_bytes() == 1_900_000


def test_unlimited_cgroup_falls_back_to_host(tmp_path: Path) -> None:
    """cpu.max and memory.max of 'max' mean no limit: host figures are used."""
    self_cgroup = _fake_cgroup(tmp_path, cpu_max="max 100000", memory_max="max", current=1)
    limits = CgroupLimits.discover(tmp_path, self_cgroup)
    assert limits is not None
    assert (limits.cpu_cores, limits.memory_bytes) == (None, None)
    assert SystemCheck(cgroup=limits).sample().source == "host"


def test_no_cgroup_v2(tmp_path: Path) -> None:
    """Without cgroup.controllers (cgroup v1 or none) there are no limits to apply."""
    assert CgroupLimits.discover(tmp_path, tmp_path / "missing") is None


async def test_check_never_blocks_the_event_loop() -> None:
    """Repeated checks keep the loop responsive (the seed stalled it 1 s each time)."""
    check = SystemCheck()
    worst = 0.0

    async def ticker() -> None:
        nonlocal worst
        while True:
            before = time.perf_counter()
            await asyncio.sleep(0.005)
            worst = max(worst, time.perf_counter() - before - 0.005)

    task = asyncio.create_task(ticker())
    for _ in range(10):
        await run_check(check, CheckSettings("host"))
    task.cancel()
    assert worst < 0.1


async def test_cpu_use_is_measured_between_samples() -> None:
    """A busy process shows up in the CPU figure (the baseline survives worker threads)."""
    busy = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "import time\nend = time.time() + 5\nwhile time.time() < end: pass"
    )
    try:
        await asyncio.sleep(0.3)
        result = await run_check(SystemCheck(use_cgroup=False), CheckSettings("host"))
    finally:
        busy.kill()
        await busy.wait()
    assert result.metadata["cpu_percent"] > 100 / (os.cpu_count() or 1) / 2
