"""The NVML ``gpu`` check: unknown without NVML, thresholds on what NVML reports.

This machine has no NVIDIA driver, so the first test runs the real NVML binding and sees it
fail to load. The threshold tests need GPU readings, which only a GPU gives: they use a small
stand-in for the ``pynvml`` module with the same calls and error class.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from fleetwatch.health._status import HealthStatus
from fleetwatch.health.checks._gpu import GpuCheck


async def test_without_nvml_the_check_is_unknown_with_the_reason() -> None:
    """No driver: unknown (not a failure), and the output says NVML is unavailable and why."""
    pynvml = pytest.importorskip("pynvml")
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        pass
    else:  # pragma: no cover - only on a GPU machine
        pynvml.nvmlShutdown()
        pytest.skip("this machine has NVML; tests/checks/test_gpu_device.py covers it")
    observation = await GpuCheck().check()
    assert observation.status is HealthStatus.UNKNOWN
    assert observation.output.startswith("NVML unavailable: ")


class FakeNvml:
    """Stands in for pynvml with one GPU whose readings the test sets."""

    NVML_MEMORY_ERROR_TYPE_UNCORRECTED = 1
    NVML_VOLATILE_ECC = 0
    NVML_TEMPERATURE_GPU = 0

    class NVMLError(Exception):
        pass

    def __init__(self, **reading: Any) -> None:
        self.reading = {
            "used": 10,
            "total": 100,
            "temperature": 50,
            "ecc": 0,
            "pending": 0,
            "util": 30,
        } | reading
        self.shutdowns = 0

    def nvmlInit(self) -> None:
        pass

    def nvmlShutdown(self) -> None:
        self.shutdowns += 1

    def nvmlDeviceGetCount(self) -> int:
        return 1

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        return index

    def nvmlDeviceGetName(self, handle: int) -> bytes:
        return b"Test GPU"

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> SimpleNamespace:
        return SimpleNamespace(used=self.reading["used"], total=self.reading["total"])

    def nvmlDeviceGetUtilizationRates(self, handle: int) -> SimpleNamespace:
        return SimpleNamespace(gpu=self.reading["util"])

    def nvmlDeviceGetPowerUsage(self, handle: int) -> int:
        return 250_000

    def nvmlDeviceGetEnforcedPowerLimit(self, handle: int) -> int:
        return 300_000

    def nvmlDeviceGetTemperature(self, handle: int, sensor: int) -> int:
        return int(self.reading["temperature"])

    def nvmlDeviceGetTotalEccErrors(self, handle: int, kind: int, counter: int) -> int:
        if self.reading["ecc"] is None:
            raise self.NVMLError("Not Supported")
        return int(self.reading["ecc"])

    def nvmlDeviceGetRetiredPagesPendingStatus(self, handle: int) -> int:
        return int(self.reading["pending"])


async def run(nvml: FakeNvml) -> Any:
    return await GpuCheck(nvml=nvml).check()  # type: ignore[arg-type]


async def test_a_healthy_gpu_reports_its_readings() -> None:
    """Within thresholds: healthy, memory use as the observed value, details per GPU."""
    nvml = FakeNvml()
    observation = await run(nvml)
    assert observation.status is HealthStatus.HEALTHY
    assert observation.observed_value == 10.0
    assert observation.details["gpus"][0]["power_w"] == 250.0
    assert nvml.shutdowns == 1


async def test_uncorrected_ecc_errors_are_unhealthy() -> None:
    """Uncorrected ECC errors since boot: unhealthy, with the count."""
    observation = await run(FakeNvml(ecc=3))
    assert observation.status is HealthStatus.UNHEALTHY
    assert "3 uncorrected ECC errors" in observation.output


async def test_pages_pending_retirement_are_unhealthy() -> None:
    """Retired pages pending: unhealthy until the GPU is reset."""
    observation = await run(FakeNvml(pending=1))
    assert observation.status is HealthStatus.UNHEALTHY


async def test_heat_and_full_memory_degrade() -> None:
    """86 C and 96 % memory degrade; 96 C fails."""
    warm = await run(FakeNvml(temperature=86, used=96))
    assert warm.status is HealthStatus.DEGRADED
    assert "86C" in warm.output
    assert "memory 96% used" in warm.output
    assert (await run(FakeNvml(temperature=96))).status is HealthStatus.UNHEALTHY


async def test_unsupported_queries_are_left_out() -> None:
    """A GPU without ECC (NVML 'Not Supported') is judged on what it does report."""
    observation = await run(FakeNvml(ecc=None))
    assert observation.status is HealthStatus.HEALTHY
    assert observation.details["gpus"][0]["ecc_uncorrected"] is None
