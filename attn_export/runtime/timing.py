"""Timing, one way for everything that reports a latency (verify's quick look, quantize's speed-ups,
bench's grid): targets called in alternation, a block of calls each per round, so that machine drift hits
them alike; the first call of each block is not counted (it refills the caches the other targets' calls
evicted), so each target is measured warm, as it runs when deployed alone. A call's time is the device's
own (CUDA events) where the runner reports it, else the host's wall clock around a call that returns only
when the result is ready.

Why blocks: with one call each per round, every call started cold. Measured on an AMD EPYC (Zen 4), 2 cores,
JapaneseVowels model (BiLSTM 96), batch 1 x 16 steps, one thread: torch eager 0.47 ms and ONNX Runtime 0.14 ms
alone, 1.29 ms and 0.40 ms interleaved call by call with OpenVINO and tract: the slowdown belonged to the
method, and it fell hardest on the smallest shapes."""

from __future__ import annotations

import platform
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

__all__ = ["CLOCKS", "ISA_FLAGS", "Budget", "cpu_name", "duration_text", "fit_text", "percentiles", "time_interleaved"]

# the clock a result's timings were read on, as bench.json and the report say it: every row on the CPU, or some
# on a device whose runner reports its own time
CLOCKS = {"host": "host wall clock around each call",
          "device": "device events where the backend reports them (CUDA), else host wall clock around a "
                    "synchronised call"}


@dataclass(frozen=True)
class Budget:
    """How long to time each shape; the defaults give stable p50s on a 2-core machine in ~2 s a shape."""

    warmup: int = 10
    seconds: float = 2.0
    min_iterations: int = 20
    max_iterations: int = 2000
    block: int = 8  # calls per target per round; the first of each is not counted when others run between


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
    """Milliseconds per call for each of ``runs``, timed in alternation: ``budget.block`` calls each per
    round, the first of each block uncounted when there is more than one run (see the module docstring);
    at most ``max_iterations`` counted calls each."""
    if budget.block < 2:
        raise ValueError(f"Budget.block is {budget.block}; expected at least 2 (one call refills the caches)")
    for run in runs:
        for _ in range(budget.warmup):
            run()
    times: List[List[float]] = [[] for _ in runs]
    refill = 1 if len(runs) > 1 else 0
    started = time.perf_counter()
    while True:
        for run, bucket in zip(runs, times):
            for _ in range(refill):
                run()
            for _ in range(min(budget.block - refill, budget.max_iterations - len(bucket))):
                bucket.append(_call_ms(run))
        done = len(times[0])
        if done >= budget.max_iterations:
            break
        if done >= budget.min_iterations and time.perf_counter() - started >= budget.seconds:
            break
    return times


# the instruction sets that decide which precision is fast on a CPU (INT8: VNNI/AMX; BF16: AVX-512 BF16/AMX)
ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16",
             "asimd", "asimddp", "sve")


def cpu_name() -> Tuple[str, List[str]]:
    """This CPU's model name and the ``ISA_FLAGS`` it has (``/proc/cpuinfo``; elsewhere the platform's word
    for the processor and no flags): the speed of a precision is a property of the CPU, so every figure
    names it. On x86 the name ends with the CPU's family and model numbers, which tell its generation where
    the name alone does not: a cloud machine's "AMD EPYC" was a Zen 4 one day (family 25) and a Zen 5 the
    next (family 26), with other speeds."""
    model, flags = platform.processor() or platform.machine(), []  # type: str, List[str]
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            info = f.read(1 << 20)
    except OSError:
        return model, flags
    numbers = {}  # type: Dict[str, str]
    for line in info.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key in ("model name", "Model", "Hardware") and value.strip() and model in ("x86_64", "aarch64", ""):
            model = value.strip()
        elif key in ("cpu family", "model") and value.strip().isdigit():
            numbers.setdefault(key, value.strip())
        elif key in ("flags", "Features") and not flags:
            have = set(value.split())
            flags = [f for f in ISA_FLAGS if f in have]
    if len(numbers) == 2:
        model += f", family {numbers['cpu family']} model {numbers['model']}"
    return model, flags


def duration_text(ms: float) -> str:
    """A duration in milliseconds written with three significant digits in the unit that keeps them (ns, µs,
    ms, s), its sign in front: 0.000593 ms is "593 ns", never "0.0006"; -0.343 is "-343 µs"; 1.2 is
    "1.20 ms", as the console's ms columns write it (``ms_text``), not "1.2 ms"."""
    sign, value = ("-" if ms < 0 else ""), abs(ms)
    for unit, scale in (("s", 1e3), ("ms", 1.0), ("µs", 1e-3), ("ns", 1e-6)):
        if value >= scale or unit == "ns":
            scaled = value / scale
            digits = "0" if scaled == 0 else f"{scaled:,.0f}" if scaled >= 1000 else f"{scaled:#.3g}".rstrip(".")
            return f"{sign}{digits} {unit}"
    raise AssertionError("unreachable")


def ms_text(ms: Optional[float]) -> str:
    """A duration for a column headed "ms": three significant digits, no exponent for anything a timer here
    measures (0.0509, 0.101, 11.6, 1,234), "-" for none: ".3f" had printed 0.051 and 11.550."""
    if ms is None:
        return "-"
    return f"{ms:,.0f}" if abs(ms) >= 100 or ms == 0 else f"{ms:#.3g}"


def fit_text(fit: Dict[str, Any]) -> str:
    """``seq_fit`` as a person reads it: "14.3 µs per step, intercept -343 µs (r² 0.9987)"; from two lengths,
    "(two lengths, no r²)"."""
    said = fit_caveat(fit)
    return (f"{duration_text(fit['ms_per_step'])} per step, intercept {duration_text(fit['intercept_ms'])} "
            + ("(two lengths, no r²)" if fit.get("r2") is None else f"(r² {fit['r2']:.4f})")
            + (f"; {said}" if said else ""))


def fit_caveat(fit: Dict[str, Any]) -> str:
    """Why ``seq_fit`` is no cost to plan with, or "": a poor fit, a negative per-step cost or call time is
    said, not left to be read as one (found by attacking: "intercept -1.16 ms (r² 0.9702)", "r² 0.3005",
    "-1.98 µs per step"), on the console and in the report alike."""
    if fit.get("r2") is not None and fit["r2"] < 0.9:
        return "not a straight line in seq here, so neither figure is a cost to plan with"
    if (fit.get("ms_per_step") or 0) < 0:  # a bench.json may hold null for either (found by review)
        return "a negative per-step cost is timing noise: time longer sequences or for longer"
    if (fit.get("intercept_ms") or 0) < 0:
        return "a negative intercept is no call time: latency grows faster than the line here"
    return ""
