"""``gpu`` check through NVML (``nvidia-ml-py``): memory, utilisation, temperature, power, ECC.

NVML is read in a worker thread (its calls block). A machine without NVIDIA's driver is not
failing: the check reports ``unknown`` with the reason ("NVML Shared Library Not Found").
Thresholds per GPU: memory used and temperature degrade the check; uncorrected ECC errors
since boot, or pages waiting to be retired (rows to be remapped on newer GPUs), make it
unhealthy, since the GPU may return wrong numbers.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from fleetwatch.health._result import Observation
from fleetwatch.health._status import HealthStatus

DEFAULT_MEMORY_WARN = 0.95
DEFAULT_TEMPERATURE_WARN_C = 85.0
DEFAULT_TEMPERATURE_FAIL_C = 95.0


@dataclass(frozen=True, slots=True)
class GpuReading:
    """One GPU as NVML reports it (``None`` where the GPU does not support a query)."""

    index: int
    name: str
    memory_used_ratio: float
    utilisation_pct: float | None
    temperature_c: float | None
    power_w: float | None
    power_limit_w: float | None
    ecc_uncorrected: int | None
    retired_pages_pending: bool | None

    def problems(self, check: GpuCheck) -> tuple[list[str], list[str]]:
        """(failures, warnings) against the check's thresholds."""
        fail: list[str] = []
        warn: list[str] = []
        tag = f"GPU {self.index}"
        if self.ecc_uncorrected:
            fail.append(f"{tag}: {self.ecc_uncorrected} uncorrected ECC errors")
        if self.retired_pages_pending:
            fail.append(f"{tag}: memory pages pending retirement (reset the GPU)")
        if self.temperature_c is not None:
            if self.temperature_c >= check.temperature_fail_c:
                fail.append(f"{tag}: {self.temperature_c:.0f}C")
            elif self.temperature_c >= check.temperature_warn_c:
                warn.append(f"{tag}: {self.temperature_c:.0f}C")
        if self.memory_used_ratio >= check.memory_warn:
            warn.append(f"{tag}: memory {self.memory_used_ratio:.0%} used")
        return fail, warn

    def as_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "name": self.name,
            "memory_used_ratio": round(self.memory_used_ratio, 4),
            "utilisation_pct": self.utilisation_pct,
            "temperature_c": self.temperature_c,
            "power_w": self.power_w,
            "power_limit_w": self.power_limit_w,
            "ecc_uncorrected": self.ecc_uncorrected,
            "retired_pages_pending": self.retired_pages_pending,
        }


class GpuCheck:
    """NVIDIA GPUs on this machine (all, or the ``indices`` given)."""

    component_type = "system"
    measurement = "memoryUtilization"

    def __init__(
        self,
        *,
        indices: tuple[int, ...] | None = None,
        memory_warn: float = DEFAULT_MEMORY_WARN,
        temperature_warn_c: float = DEFAULT_TEMPERATURE_WARN_C,
        temperature_fail_c: float = DEFAULT_TEMPERATURE_FAIL_C,
        nvml: ModuleType | None = None,
    ) -> None:
        self.indices = indices
        self.memory_warn = memory_warn
        self.temperature_warn_c = temperature_warn_c
        self.temperature_fail_c = temperature_fail_c
        self._nvml = nvml

    async def check(self) -> Observation:
        try:
            readings = await asyncio.to_thread(self._read)
        except _NvmlUnavailableError as exc:
            return Observation(HealthStatus.UNKNOWN, f"NVML unavailable: {exc}")
        if not readings:
            return Observation(HealthStatus.UNKNOWN, "NVML found no GPU")
        failures: list[str] = []
        warnings: list[str] = []
        for reading in readings:
            fail, warn = reading.problems(self)
            failures += fail
            warnings += warn
        worst = max(r.memory_used_ratio for r in readings)
        details = {"gpus": [r.as_dict() for r in readings]}
        metadata = {"gpus": len(readings), "max_memory_used_ratio": round(worst, 4)}
        if failures:
            status, output = HealthStatus.UNHEALTHY, "; ".join(failures + warnings)
        elif warnings:
            status, output = HealthStatus.DEGRADED, "; ".join(warnings)
        else:
            status, output = HealthStatus.HEALTHY, f"{len(readings)} GPU(s) healthy"
        return Observation(status, output, round(worst * 100, 1), "%", metadata, details)

    def _module(self) -> ModuleType:
        if self._nvml is not None:
            return self._nvml
        try:
            import pynvml  # noqa: PLC0415 - optional at run time: only this check needs it
        except ImportError as exc:  # nvidia-ml-py is the `gpu` extra
            raise _NvmlUnavailableError(
                "nvidia-ml-py is not installed (the 'gpu' extra: pip install '.[gpu]')"
            ) from exc
        module: ModuleType = pynvml
        return module

    def _read(self) -> list[GpuReading]:
        nvml = self._module()
        try:
            nvml.nvmlInit()
        except nvml.NVMLError as exc:
            raise _NvmlUnavailableError(str(exc) or type(exc).__name__) from exc
        try:
            count = nvml.nvmlDeviceGetCount()
            wanted = self.indices if self.indices is not None else tuple(range(count))
            return [self._reading(nvml, i) for i in wanted if 0 <= i < count]
        finally:
            with contextlib.suppress(nvml.NVMLError):
                nvml.nvmlShutdown()

    @staticmethod
    def _reading(nvml: ModuleType, index: int) -> GpuReading:
        handle = nvml.nvmlDeviceGetHandleByIndex(index)

        def optional(call: Any, *args: Any) -> Any:
            try:
                return call(handle, *args)
            except nvml.NVMLError:  # not supported on this GPU (ECC on consumer cards, say)
                return None

        name = nvml.nvmlDeviceGetName(handle)
        memory = nvml.nvmlDeviceGetMemoryInfo(handle)
        rates = optional(nvml.nvmlDeviceGetUtilizationRates)
        power_mw = optional(nvml.nvmlDeviceGetPowerUsage)
        limit_mw = optional(nvml.nvmlDeviceGetEnforcedPowerLimit)
        ecc = optional(
            nvml.nvmlDeviceGetTotalEccErrors,
            nvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED,
            nvml.NVML_VOLATILE_ECC,
        )
        pending = optional(nvml.nvmlDeviceGetRetiredPagesPendingStatus)
        return GpuReading(
            index=index,
            name=name.decode() if isinstance(name, bytes) else str(name),
            memory_used_ratio=memory.used / memory.total if memory.total else 0.0,
            utilisation_pct=None if rates is None else float(rates.gpu),
            temperature_c=_float(
                optional(nvml.nvmlDeviceGetTemperature, nvml.NVML_TEMPERATURE_GPU)
            ),
            power_w=None if power_mw is None else power_mw / 1000,
            power_limit_w=None if limit_mw is None else limit_mw / 1000,
            ecc_uncorrected=None if ecc is None else int(ecc),
            retired_pages_pending=None if pending is None else bool(pending),
        )


class _NvmlUnavailableError(Exception):
    pass


def _float(value: Any) -> float | None:
    return None if value is None else float(value)
