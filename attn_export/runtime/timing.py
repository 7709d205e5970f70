"""Timing, one way for everything that reports a latency (verify's quick look, quantize's speed-ups,
bench's grid): targets called in alternation, one call each per round, so that machine drift hits them
alike; a call's time is the device's own (CUDA events) where the runner reports it, else the host's wall
clock around a call that returns only when the result is ready."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

__all__ = ["Budget", "percentiles", "time_interleaved"]


@dataclass(frozen=True)
class Budget:
    """How long to time each shape; the defaults give stable p50s on a 2-core machine in ~2 s a shape."""

    warmup: int = 10
    seconds: float = 2.0
    min_iterations: int = 20
    max_iterations: int = 2000


def percentiles(times_ms: Sequence[float]) -> Dict[str, float]:
    a = np.asarray(times_ms, dtype=np.float64)
    return {"p50": float(np.percentile(a, 50)), "p90": float(np.percentile(a, 90)),
            "p99": float(np.percentile(a, 99)), "mean": float(a.mean()), "min": float(a.min())}


def _call_ms(run: Callable[[], Optional[float]]) -> float:
    start = time.perf_counter()
    device_ms = run()
    wall = (time.perf_counter() - start) * 1e3
    return wall if device_ms is None else device_ms


def time_interleaved(runs: Sequence[Callable[[], Optional[float]]], budget: Budget = Budget()) -> List[List[float]]:
    """Milliseconds per call for each of ``runs``, timed in alternation (one call each per round)."""
    for run in runs:
        for _ in range(budget.warmup):
            run()
    times: List[List[float]] = [[] for _ in runs]
    started = time.perf_counter()
    while True:
        for run, bucket in zip(runs, times):
            bucket.append(_call_ms(run))
        done = len(times[0])
        if done >= budget.max_iterations:
            break
        if done >= budget.min_iterations and time.perf_counter() - started >= budget.seconds:
            break
    return times
