"""The ``gpu`` check on a real NVIDIA GPU; skipped where NVML cannot load (no driver).

Runs on the lent GPU machine: ``.venv/bin/python -m pytest tests/checks/test_gpu_device.py``.
"""

from __future__ import annotations

import pytest

from fleetwatch.health._status import HealthStatus
from fleetwatch.health.checks._gpu import GpuCheck


def _nvml_present() -> bool:
    try:
        import pynvml  # noqa: PLC0415

        pynvml.nvmlInit()
        pynvml.nvmlShutdown()
    except Exception:
        return False
    return True


pytestmark = pytest.mark.skipif(not _nvml_present(), reason="no NVIDIA driver (NVML) here")


async def test_real_gpus_are_read() -> None:
    """Every GPU is read: a name, memory use between 0 and 1, and a verdict other than unknown."""
    observation = await GpuCheck().check()
    assert observation.status is not HealthStatus.UNKNOWN
    assert observation.details is not None
    gpus = observation.details["gpus"]
    assert gpus
    for gpu in gpus:
        assert gpu["name"]
        assert 0 <= gpu["memory_used_ratio"] <= 1
        assert gpu["temperature_c"] is None or 0 < gpu["temperature_c"] < 130


async def test_an_absurd_memory_threshold_degrades() -> None:
    """With memory_warn at 0.0001 any GPU in use is degraded, naming its memory share."""
    observation = await GpuCheck(memory_warn=0.0001).check()
    assert observation.status in (HealthStatus.DEGRADED, HealthStatus.UNHEALTHY)
