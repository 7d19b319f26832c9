"""System metrics: a sampler thread reading psutil (and NVML when a GPU exists).

Names follow W&B's (``system.cpu``, ``system.proc.memory.rssMB``, ``system.gpu.0.gpu``...) so
dashboards carry over. Sources are small objects with ``sample() -> dict[str, float]``; the
sampler takes them, a clock and a wait function as arguments, so tests drive it without sleeping.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol

Emit = Callable[[list[dict[str, Any]]], None]
CHILDREN_RESCAN = 5.0
"""Seconds between looks for new child processes (a dead one drops out at once)."""


class Source(Protocol):
    def sample(self) -> dict[str, float]: ...


class PsutilSource:
    """CPU, memory, disk, network and threads of this process tree and the machine."""

    def __init__(self, pid: int | None = None, disk_path: str = "/") -> None:
        import psutil

        self._psutil = psutil
        self._proc = psutil.Process(pid or os.getpid())
        self._disk_path = disk_path
        self._net0 = self._net()
        self._disk0 = self._disk()
        self._proc.cpu_percent(None)
        psutil.cpu_percent(None)
        self._children: dict[int, Any] = {}
        self._next_scan = 0.0
        self._total_mem = psutil.virtual_memory().total

    def _net(self) -> tuple[int, int]:
        try:
            c = self._psutil.net_io_counters()
            return int(c.bytes_sent), int(c.bytes_recv)
        except Exception:
            return 0, 0

    def _disk(self) -> tuple[int, int]:
        try:
            c = self._psutil.disk_io_counters()
            return (int(c.read_bytes), int(c.write_bytes)) if c else (0, 0)
        except Exception:
            return 0, 0

    def _tree(self) -> list[Any]:
        now = time.monotonic()
        if now < self._next_scan:  # finding children reads every /proc/<pid>/stat: 70 % of a sample
            return [self._proc, *self._children.values()]
        self._next_scan = now + CHILDREN_RESCAN
        try:
            kids = self._proc.children(recursive=True)
        except self._psutil.Error:
            kids = []
        live: dict[int, Any] = {}
        for k in kids:  # keep Process objects so cpu_percent has a previous reading
            live[k.pid] = self._children.get(k.pid, k)
            if k.pid not in self._children:
                try:
                    k.cpu_percent(None)
                except self._psutil.Error:
                    pass
        self._children = live
        return [self._proc, *live.values()]

    def sample(self) -> dict[str, float]:
        ps = self._psutil
        out: dict[str, float] = {}
        cpu = rss = 0.0
        threads = 0
        for p in self._tree():
            try:
                with p.oneshot():
                    cpu += p.cpu_percent(None)
                    rss += p.memory_info().rss
                    threads += p.num_threads()
            except ps.Error:
                continue
        ncpu = ps.cpu_count() or 1
        out["system.cpu"] = cpu / ncpu  # W&B: the process's CPU %, normalized by the CPU count
        for i, pct in enumerate(ps.cpu_percent(None, percpu=True)):
            out[f"system.cpu.{i}.cpu_percent"] = float(pct)
        out["system.proc.cpu.threads"] = float(threads)
        out["system.proc.memory.rssMB"] = rss / 2**20
        out["system.proc.memory.percent"] = 100.0 * rss / self._total_mem if self._total_mem else 0.0
        vm = ps.virtual_memory()
        out["system.memory_percent"] = float(vm.percent)
        out["system.proc.memory.availableMB"] = vm.available / 2**20
        try:
            du = ps.disk_usage(self._disk_path)
            out[f"system.disk.{self._disk_path}.usagePercent"] = float(du.percent)
            out[f"system.disk.{self._disk_path}.usageGB"] = du.used / 2**30
        except (OSError, ps.Error):
            pass
        r, w = self._disk()
        out["system.disk.in"] = (r - self._disk0[0]) / 2**20
        out["system.disk.out"] = (w - self._disk0[1]) / 2**20
        sent, recv = self._net()
        out["system.network.sent"] = float(sent - self._net0[0])
        out["system.network.recv"] = float(recv - self._net0[1])
        return out


class NvmlSource:
    """Per GPU: utilization, memory, temperature, power and clocks (``system.gpu.<i>.*``).

    Raises RuntimeError from the constructor when NVML or a GPU is not available.

    Args:
        nvml: the NVML bindings (default: ``pynvml``, from nvidia-ml-py); tests pass a stub device.
    """

    def __init__(self, nvml: Any = None) -> None:
        try:
            if nvml is None:
                import pynvml as default_nvml

                nvml = default_nvml
            pynvml = nvml
            pynvml.nvmlInit()
            count = pynvml.nvmlDeviceGetCount()
        except Exception as e:  # no library, no driver, no device
            raise RuntimeError(f"NVML not available: {e}") from e
        if count == 0:
            raise RuntimeError("NVML reports no GPU")
        self._nvml = pynvml
        self._handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]

    def sample(self) -> dict[str, float]:
        n = self._nvml
        out: dict[str, float] = {}
        for i, h in enumerate(self._handles):
            p = f"system.gpu.{i}."
            for name, read in (
                ("gpu", lambda h=h: n.nvmlDeviceGetUtilizationRates(h).gpu),
                ("memory", lambda h=h: n.nvmlDeviceGetUtilizationRates(h).memory),
                ("temp", lambda h=h: n.nvmlDeviceGetTemperature(h, n.NVML_TEMPERATURE_GPU)),
                ("powerWatts", lambda h=h: n.nvmlDeviceGetPowerUsage(h) / 1000.0),
                ("enforcedPowerLimitWatts", lambda h=h: n.nvmlDeviceGetEnforcedPowerLimit(h) / 1000.0),
                ("smClock", lambda h=h: n.nvmlDeviceGetClockInfo(h, n.NVML_CLOCK_SM)),
                ("memoryClock", lambda h=h: n.nvmlDeviceGetClockInfo(h, n.NVML_CLOCK_MEM)),
                ("graphicsClock", lambda h=h: n.nvmlDeviceGetClockInfo(h, n.NVML_CLOCK_GRAPHICS)),
            ):
                try:
                    out[p + name] = float(read())
                except Exception:  # a reading this device does not support: left out
                    pass
            try:
                mem = n.nvmlDeviceGetMemoryInfo(h)
                out[p + "memoryAllocated"] = 100.0 * mem.used / mem.total
                out[p + "memoryAllocatedBytes"] = float(mem.used)
                out[p + "memoryTotalBytes"] = float(mem.total)
            except Exception:
                pass
            if p + "powerWatts" in out and out.get(p + "enforcedPowerLimitWatts"):
                out[p + "powerPercent"] = 100.0 * out[p + "powerWatts"] / out[p + "enforcedPowerLimitWatts"]
        return out


def default_sources(nvml: Any = None) -> list[Source]:
    """psutil always; NVML when a GPU answers (skipped cleanly otherwise)."""
    sources: list[Source] = [PsutilSource()]
    try:
        sources.append(NvmlSource(nvml))
    except RuntimeError:
        pass
    return sources


class Sampler(threading.Thread):
    """Samples every ``interval`` seconds and emits batches of ``{"ts", "values"}`` samples.

    Args:
        sources: what to read, or a function returning it, called on the sampler's thread (so
            importing psutil and starting NVML never delay ``init()``); a source that raises is
            reported once and dropped.
        emit: receives a list of samples, at most every ``flush_every`` samples.
        clock: wall-clock time of a sample; ``wait(seconds) -> bool`` returns True to stop.
    """

    def __init__(self, sources: Iterable[Source] | Callable[[], Iterable[Source]], emit: Emit, interval: float,
                 *, flush_every: int = 4,
                 clock: Callable[[], float] = time.time, wait: Callable[[float], bool] | None = None,
                 on_error: Callable[[str], None] | None = None) -> None:
        super().__init__(name="runstream-system", daemon=True)
        self._make_sources = sources if callable(sources) else None
        self.sources: list[Source] = [] if callable(sources) else list(sources)
        self.emit = emit
        self.interval = max(0.1, float(interval))
        self.flush_every = max(1, flush_every)
        self.clock = clock
        self._stop_event = threading.Event()
        self.wait = wait or self._stop_event.wait
        self.on_error = on_error
        self._pending: list[dict[str, Any]] = []
        self.ready = threading.Event()
        """Set once the sources are made (psutil imported, NVML asked): sampling from here on."""

    def sample_once(self) -> dict[str, Any]:
        values: dict[str, float] = {}
        for src in list(self.sources):
            try:
                values.update(src.sample())
            except Exception as e:
                self.sources.remove(src)
                if self.on_error:
                    self.on_error(f"system metrics: {type(src).__name__} failed and is turned off: {e}")
        sample = {"ts": self.clock(), "values": values}
        self._pending.append(sample)
        return sample

    def flush(self) -> None:
        if self._pending:
            batch, self._pending = self._pending, []
            self.emit(batch)

    def run(self) -> None:
        if self._make_sources is not None:
            try:
                self.sources = list(self._make_sources())
            except Exception as e:
                self.sources = []
                if self.on_error:
                    self.on_error(f"system metrics are off: the sources failed to start: {e}")
        self.ready.set()
        while not self.wait(self.interval):
            self.sample_once()
            if len(self._pending) >= self.flush_every:
                self.flush()
        self.flush()

    def start_unless_stopped(self) -> None:
        """Start the thread unless :meth:`stop` came first (the run ended before it started)."""
        if not self._stop_event.is_set():
            self.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop sampling and hand out what is pending. A sampler still making its sources (a run
        that ends within milliseconds of starting) is not waited for: it has taken no sample, and
        it ends by itself as soon as its sources are made."""
        self._stop_event.set()
        if self.is_alive() and not self.ready.is_set():
            return
        if self.is_alive():
            self.join(timeout)
        else:
            self.flush()
