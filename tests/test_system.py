"""The system-metrics sampler: an injected clock and fake sources, plus one real psutil sample."""

from __future__ import annotations

from typing import Any

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
    for key in ("system.cpu", "system.proc.cpu.percent", "system.proc.memory.rssMB", "system.memory_percent",
                "system.proc.cpu.threads", "system.network.sent", "system.network.recv", "system.disk.in"):
        assert key in values and isinstance(values[key], float), key
    assert values["system.proc.memory.rssMB"] > 1
    assert values["system.proc.cpu.threads"] >= 1


def test_no_gpu_is_skipped_cleanly() -> None:
    try:
        NvmlSource()
    except RuntimeError:
        assert [type(s).__name__ for s in default_sources()] == ["PsutilSource"]
    else:  # a machine with a GPU: both sources
        assert [type(s).__name__ for s in default_sources()] == ["PsutilSource", "NvmlSource"]
