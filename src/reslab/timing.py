"""Timing helpers shared by the benchmarks and the reports of quantize and prune."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np


def timed_calls(run: Callable[[], Any], seconds: float = 2.0, min_calls: int = 3, warmup: float = 0.5) -> list[float]:
    """Seconds per call of ``run``, repeated for about ``seconds`` (at least ``min_calls`` times),
    after ``warmup`` seconds of untimed calls (kernel selection, caches, clock ramp-up)."""
    start = time.perf_counter()
    run()
    while time.perf_counter() - start < warmup:
        run()
    times: list[float] = []
    start = time.perf_counter()
    while time.perf_counter() - start < seconds or len(times) < min_calls:
        t = time.perf_counter()
        run()
        times.append(time.perf_counter() - t)
    return times


def images_per_second(run: Callable[[np.ndarray], Any], batch: np.ndarray, seconds: float = 2.0) -> float:
    """Median images/s of ``run(batch)``."""
    return len(batch) / statistics.median(timed_calls(lambda: run(batch), seconds))


def interleaved_images_per_second(runs: dict[str, Callable[[np.ndarray], Any]], batch: np.ndarray,
                                  rounds: int = 3, seconds: float = 1.0) -> dict[str, float]:
    """Median images/s of each ``run(batch)``, measured in alternating rounds so that a shared
    machine's drift (clock, other load) falls on every side alike."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            times[name] += timed_calls(lambda run=run: run(batch), seconds)
    return {name: len(batch) / statistics.median(t) for name, t in times.items()}
