"""The system-metrics sampler: an injected clock and fake sources, plus one real psutil sample."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from runstream.system import NvmlSource, PsutilSource, Sampler, default_sources


class FakeSource:
    def __init__(self) -> None:
        self.n = 0

    def sample(self) -> dict[str, float]:
        self.n += 1
        return {"system.cpu": float(self.n)}


class Broken:
    def sample(self) -> dict[str, float]:
        raise OSError("sensor gone")


def test_sampler_batches_samples_with_the_injected_clock() -> None:
    ticks = iter([False, False, False, False, False, True])  # five intervals, then stop
    now = iter(range(100, 200))
    batches: list[list[dict[str, Any]]] = []
    errors: list[str] = []
    s = Sampler([FakeSource(), Broken()], batches.append, interval=15, flush_every=2,
                clock=lambda: float(next(now)), wait=lambda _s: next(ticks), on_error=errors.append)
    s.run()  # in this thread: the fake wait drives it
    assert [len(b) for b in batches] == [2, 2, 1]
    flat = [x for b in batches for x in b]
    assert [x["ts"] for x in flat] == [100.0, 101.0, 102.0, 103.0, 104.0]
    assert [x["values"]["system.cpu"] for x in flat] == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert len(errors) == 1 and "Broken" in errors[0] and "sensor gone" in errors[0]


def test_interval_floor() -> None:
    assert Sampler([], lambda b: None, interval=0.01).interval == 0.1


def test_real_psutil_sample() -> None:
    values = PsutilSource().sample()
    for key in ("system.cpu", "system.cpu.0.cpu_percent", "system.proc.memory.rssMB", "system.proc.memory.percent",
                "system.memory_percent", "system.proc.cpu.threads", "system.network.sent", "system.network.recv",
                "system.disk.in", "system.disk.out", "system.disk./.usagePercent", "system.disk./.usageGB"):
        assert key in values and isinstance(values[key], float), key
    assert values["system.proc.memory.rssMB"] > 1
    assert values["system.proc.cpu.threads"] >= 1
    assert 0 <= values["system.disk./.usagePercent"] <= 100


class _Util:
    def __init__(self, gpu: int, memory: int) -> None:
        self.gpu, self.memory = gpu, memory


class _Mem:
    def __init__(self, used: int, total: int) -> None:
        self.used, self.total = used, total


class StubNvml:
    """Two fake GPUs behind NVML's function names; GPU 1 cannot report its clocks."""

    NVML_TEMPERATURE_GPU, NVML_CLOCK_SM, NVML_CLOCK_MEM, NVML_CLOCK_GRAPHICS = 0, 1, 2, 3

    def nvmlInit(self) -> None:
        pass

    def nvmlDeviceGetCount(self) -> int:
        return 2

    def nvmlDeviceGetHandleByIndex(self, i: int) -> int:
        return i

    def nvmlDeviceGetUtilizationRates(self, h: int) -> _Util:
        return _Util(50 + h, 20 + h)

    def nvmlDeviceGetTemperature(self, h: int, sensor: int) -> int:
        return 60 + h

    def nvmlDeviceGetPowerUsage(self, h: int) -> int:
        return 150_000  # mW

    def nvmlDeviceGetEnforcedPowerLimit(self, h: int) -> int:
        return 300_000

    def nvmlDeviceGetClockInfo(self, h: int, kind: int) -> int:
        if h == 1:
            raise RuntimeError("NVML_ERROR_NOT_SUPPORTED")
        return {1: 1980, 2: 2619, 3: 1755}[kind]

    def nvmlDeviceGetMemoryInfo(self, h: int) -> _Mem:
        return _Mem(used=2**30, total=4 * 2**30)


def test_gpu_names_from_a_stub_device() -> None:
    values = NvmlSource(StubNvml()).sample()
    assert values == {
        "system.gpu.0.gpu": 50.0, "system.gpu.0.memory": 20.0, "system.gpu.0.temp": 60.0,
        "system.gpu.0.powerWatts": 150.0, "system.gpu.0.enforcedPowerLimitWatts": 300.0,
        "system.gpu.0.powerPercent": 50.0, "system.gpu.0.smClock": 1980.0, "system.gpu.0.memoryClock": 2619.0,
        "system.gpu.0.graphicsClock": 1755.0, "system.gpu.0.memoryAllocated": 25.0,
        "system.gpu.0.memoryAllocatedBytes": float(2**30), "system.gpu.0.memoryTotalBytes": float(4 * 2**30),
        "system.gpu.1.gpu": 51.0, "system.gpu.1.memory": 21.0, "system.gpu.1.temp": 61.0,
        "system.gpu.1.powerWatts": 150.0, "system.gpu.1.enforcedPowerLimitWatts": 300.0,
        "system.gpu.1.powerPercent": 50.0, "system.gpu.1.memoryAllocated": 25.0,
        "system.gpu.1.memoryAllocatedBytes": float(2**30), "system.gpu.1.memoryTotalBytes": float(4 * 2**30),
    }
    assert [type(s).__name__ for s in default_sources(StubNvml())] == ["PsutilSource", "NvmlSource"]


def test_a_missing_nvml_or_no_device_is_a_clean_skip() -> None:
    class NoDevice(StubNvml):
        def nvmlDeviceGetCount(self) -> int:
            return 0

    class NoDriver(StubNvml):
        def nvmlInit(self) -> None:
            raise OSError("libnvidia-ml.so.1: cannot open shared object file")

    for nvml in (NoDevice(), NoDriver()):
        with pytest.raises(RuntimeError, match="NVML"):
            NvmlSource(nvml)
        assert [type(s).__name__ for s in default_sources(nvml)] == ["PsutilSource"]


def test_sources_made_on_the_sampler_thread() -> None:
    made: list[str] = []

    def make() -> list[FakeSource]:
        made.append(threading.current_thread().name)
        return [FakeSource()]

    ticks = iter([False, False, True])
    batches: list[list[dict[str, Any]]] = []
    s = Sampler(make, batches.append, interval=0.1, flush_every=10, clock=lambda: 1.0, wait=lambda _s: next(ticks))
    assert made == []  # nothing made (psutil not imported) until the thread runs
    s.start()
    s.join(10)
    assert made == ["runstream-system"]
    assert [x["values"] for b in batches for x in b] == [{"system.cpu": 1.0}, {"system.cpu": 2.0}]


def test_no_gpu_is_skipped_cleanly() -> None:
    try:
        NvmlSource()
    except RuntimeError:
        assert [type(s).__name__ for s in default_sources()] == ["PsutilSource"]
    else:  # a machine with a GPU: both sources
        assert [type(s).__name__ for s in default_sources()] == ["PsutilSource", "NvmlSource"]
