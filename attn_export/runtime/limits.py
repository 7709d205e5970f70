"""What this process may use: CPU cores and memory, as the kernel, the container and ``ulimit`` say, and
the checks that keep a value a user types from taking more than that (numpy-free, for the device too).

    usable_cpus()                      # cores in the affinity mask, capped by a cgroup CPU quota
    check_threads(n, "--threads")      # None, or 1..usable_cpus(); else BadInput naming the bound
    available_memory()                 # bytes this process can still allocate (None: cannot tell)
    check_memory(need, "what", "fix")  # NotAvailable with both numbers when ``need`` does not fit

Every thread count and every allocation a user can size goes through these before anything is started
or allocated: a thread pool of 100,000 or a 30 GiB sweep is one line, not a machine taken.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import math
import os
import re
from typing import TYPE_CHECKING, Any, List, Optional, Tuple

from ..errors import BadInput, NotAvailable, is_out_of_memory, out_of_memory

if TYPE_CHECKING:
    from .modelinfo import ModelInfo

__all__ = ["MAX_BATCH", "available_memory", "check_batch_size", "check_memory", "check_threads", "inference_bytes",
           "missing", "size_text", "usable_cpus", "whole"]


DEFAULT_BATCH = 32  # predict's sequences per padded batch, unless --batch-size says otherwise
MAX_BATCH = 65536  # sequences in one padded batch: past this a batch only costs memory, on every backend


def _proc_number(path: str, key: str) -> Optional[int]:
    """The number after ``key`` in a /proc or /sys file (a "kB" unit made bytes), or the whole file's
    number when ``key`` is empty; None when the file or the key is absent (not Linux, no cgroup)."""
    try:
        with open(path) as f:
            text = f.read(65536)
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(key):
            parts = line[len(key):].split()
            if parts and parts[0].isdigit():
                return int(parts[0]) * (1024 if parts[1:] == ["kB"] else 1)
    return None


def _cgroup_cpus() -> Optional[int]:
    """The container's CPU quota in whole cores (cgroup v2 ``cpu.max``, or v1's cfs quota), None if unset."""
    try:
        with open("/sys/fs/cgroup/cpu.max") as f:
            quota, period = (f.read(256).split() + ["100000"])[:2]
        if quota != "max" and quota.isdigit() and period.isdigit() and int(period) > 0:
            return max(1, math.ceil(int(quota) / int(period)))
        return None
    except OSError:
        pass
    quota_us = _proc_number("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "")  # -1 (unset) does not parse: None
    period_us = _proc_number("/sys/fs/cgroup/cpu/cpu.cfs_period_us", "")
    if quota_us and period_us:
        return max(1, math.ceil(quota_us / period_us))
    return None


def usable_cpus() -> int:
    """Cores this process may run on: its affinity mask (``taskset``, a container's cpuset), capped by a
    cgroup CPU quota (``docker --cpus``)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cores = os.cpu_count() or 1
    quota = _cgroup_cpus()
    return max(1, min(cores, quota) if quota else cores)


def whole(value: Any) -> bool:
    """An integer, Python's or numpy's, and not a bool (which Python counts as one)."""
    import numpy as np

    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def check_batch_size(value: Any, where: str = "batch_size") -> int:
    """``value`` as an int when it is a whole number in 1..MAX_BATCH (numpy's integers too); else one
    BadInput line (a 1.5 had become 1, a 0 had been taken for 1, a "4" a TypeError: found by attacking)."""
    if not whole(value) or not 1 <= value <= MAX_BATCH:
        raise BadInput(f"{where} = {value!r}; expected a whole number, 1 to {MAX_BATCH}")
    return int(value)


def check_threads(threads: Optional[int], where: str = "threads") -> Optional[int]:
    """``threads`` when it is None (the runtime's default) or 1..usable_cpus(); else one BadInput line. More
    threads than cores only adds contention: 100,000 made 4,039 threads and 16 GB before this check."""
    if threads is None:
        return None
    if not whole(threads):
        raise BadInput(f"{where} {threads!r} is not a whole number; expected 1 to {usable_cpus()}")
    threads = int(threads)
    cores = usable_cpus()
    if not 1 <= threads <= cores:
        raise BadInput(f"{where} {threads} is outside 1 to {cores}; expected at most the {cores} CPU core(s) this "
                       "process may use (its affinity mask and cgroup quota), or the runtime's default (0 on the command "
                       "line, None in Python)")
    return threads


def available_memory() -> Optional[int]:
    """Bytes this process can still allocate, as well as the machine says: the least of the kernel's
    MemAvailable, the container's (cgroup v2 or v1) limit less its usage, and ``ulimit -v`` less this
    process's address space; None where none can be read (not Linux). An allocation past it is an OOM
    kill or a MemoryError traceback, so it is refused up front."""
    found: List[int] = []
    available = _proc_number("/proc/meminfo", "MemAvailable:")
    if available is not None:
        found.append(available)
    for limit, usage in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                         ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        cap, used = _proc_number(limit, ""), _proc_number(usage, "")
        if cap is not None and used is not None:
            found.append(cap - used)
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_AS)[0]
        if soft != resource.RLIM_INFINITY:
            found.append(soft - (_proc_number("/proc/self/status", "VmSize:") or 0))
    except (ImportError, OSError, ValueError):  # no resource module (Windows)
        pass
    return max(min(found), 0) if found else None


def size_text(n: int) -> str:
    """``n`` bytes for a message: MiB under a GiB (a 180 MB limit is not "0.00 GiB"), GiB from there."""
    return f"{n / 2**20:,.1f} MiB" if n < 2**30 else f"{n / 2**30:,.2f} GiB"


def check_memory(need: int, what: str, fix: str) -> None:
    """NotAvailable (exit 3) naming ``what``, the bytes it needs and the bytes available, and ``fix``, when
    ``need`` is past what this process can allocate."""
    free = available_memory()
    if free is not None and need > free:
        raise NotAvailable(f"{what} needs about {size_text(need)}; this process has {size_text(free)} "
                           f"available; expected {fix}")


def inference_bytes(info: "ModelInfo", batch: int, seq: int, copies: int) -> int:
    """Host bytes one inference of shape ``batch`` x ``seq`` needs, roughly, held ``copies`` times at once
    (each backend keeps its own buffers for a shape: measured 5.6 GB for five CPU targets at batch 32, seq
    100k, hidden 16, where this says 5.7): the input once, and per copy its normalised input, the conv
    front-end's channels, every LSTM layer's outputs, the input gates computed for all steps at once (4 per
    hidden unit and direction) and the attention's few, in float32."""
    model = info.recipe["model"]
    hidden = int(model.get("hidden_size", 0)) * (2 if model.get("bidirectional") else 1)
    per_copy = (info.input_size + sum(int(c) for c in model.get("conv_channels", ()))
                + int(model.get("num_layers", 1)) * hidden + 4 * hidden + 4)
    return 4 * batch * seq * (info.input_size + copies * per_copy)


def missing(module: str, install: str, minimum: Optional[str] = None) -> Optional[str]:
    """None when ``module`` imports (at version ``minimum`` or later, when given); else why not, told apart:
    not installed (``install`` says how), too old, or installed and failed to load, with its own first
    line, and said to be memory when it is (under ``ulimit -v`` a shared library that cannot be mapped
    raises ImportError, not MemoryError)."""
    try:
        importlib.import_module(module)
        if minimum is not None:
            version = importlib.metadata.version(module)
            if _release(version) < _release(minimum):
                return f"{module} {version} is older than {minimum}, the oldest this backend runs on ({install})"
        return None
    except MemoryError:
        first = "MemoryError"
    except (ImportError, OSError) as e:  # a library loaded by ctypes raises OSError
        try:
            installed = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):  # a finder that refuses the name: not importable here
            installed = False
        if not installed:
            return f"{module} is not installed ({install})"
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
    if is_out_of_memory(first):
        return f"{module} is installed but could not be loaded: {out_of_memory(first)}"
    return f"{module} is installed but could not be loaded: {first}"


def _release(version: str) -> Tuple[int, ...]:
    """``0.23.9`` -> (0, 23, 9): the leading release numbers of a version string."""
    return tuple(int(part) for part in re.findall(r"\d+", version.split("+")[0].split("-")[0])[:3])
