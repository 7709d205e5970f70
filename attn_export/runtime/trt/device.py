"""The CUDA devices of this machine, asked of the NVIDIA driver itself (``libcuda`` through ctypes).

Neither torch nor cuda-python is needed, so ``doctor`` and ``build`` can say "no GPU" (and why) on a
Jetson that has only TensorRT, and on a CPU box. Python 3.8-compatible.
"""

from __future__ import annotations

import ctypes
import sys
from dataclasses import asdict, dataclass
from typing import Any, Dict, List, Optional, Tuple

__all__ = ["Gpu", "GpuQuery", "query_gpus"]

_CC_MAJOR, _CC_MINOR = 75, 76  # CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR / _MINOR
_INTEGRATED = 18  # CU_DEVICE_ATTRIBUTE_INTEGRATED: a Jetson's GPU shares the CPU's memory
_LIBRARIES = ("nvcuda.dll",) if sys.platform.startswith("win") else ("libcuda.so.1", "libcuda.so")


@dataclass(frozen=True)
class Gpu:
    index: int
    name: str
    compute_capability: str  # "8.7"
    memory_mib: int
    integrated: bool  # on the same chip as the CPU (a Jetson), not a discrete card

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class GpuQuery:
    """The devices, the driver's CUDA version, and why there are none when there are none."""

    gpus: Tuple[Gpu, ...]
    driver_cuda: Optional[str]
    reason: Optional[str]

    def to_dict(self) -> Dict[str, Any]:
        return {"gpus": [g.to_dict() for g in self.gpus], "driver_cuda": self.driver_cuda, "reason": self.reason}


def _load() -> Tuple[Optional[Any], str]:
    errors = []
    for name in _LIBRARIES:
        try:
            return ctypes.CDLL(name), name
        except OSError as e:
            errors.append(str(e))
    return None, "; ".join(errors)


# the driver API this query calls: a library without one of them (a stub) is no driver it can use (found by
# attacking: doctor and build died with an AttributeError traceback)
_CALLS = ("cuInit", "cuGetErrorString", "cuDriverGetVersion", "cuDeviceGetCount", "cuDeviceGet", "cuDeviceGetName",
          "cuDeviceGetAttribute", "cuDeviceTotalMem_v2")


def query_gpus() -> GpuQuery:
    lib, library = _load()
    if lib is None:
        return GpuQuery((), None, f"no NVIDIA driver ({_LIBRARIES[0]} not found)")
    lacking = [call for call in _CALLS if not hasattr(lib, call)]
    if lacking:
        return GpuQuery((), None, f"{library} has no {lacking[0]}: not an NVIDIA driver this query can use")

    def check(result: int, what: str) -> Optional[str]:
        if result == 0:
            return None
        text = ctypes.c_char_p()
        lib.cuGetErrorString(result, ctypes.byref(text))
        return f"{what} failed: {text.value.decode() if text.value else result}"

    problem = check(lib.cuInit(0), "cuInit")
    if problem:
        return GpuQuery((), None, f"the NVIDIA driver has no usable device ({problem})")
    version = ctypes.c_int()
    lib.cuDriverGetVersion(ctypes.byref(version))
    driver_cuda = f"{version.value // 1000}.{version.value % 1000 // 10}"
    count = ctypes.c_int()
    problem = check(lib.cuDeviceGetCount(ctypes.byref(count)), "cuDeviceGetCount")
    if problem or count.value == 0:
        return GpuQuery((), driver_cuda, problem or "the NVIDIA driver reports no CUDA device")
    gpus: List[Gpu] = []
    for i in range(count.value):
        device = ctypes.c_int()
        if check(lib.cuDeviceGet(ctypes.byref(device), i), "cuDeviceGet"):
            continue
        name = ctypes.create_string_buffer(256)
        lib.cuDeviceGetName(name, 256, device)
        major, minor = ctypes.c_int(), ctypes.c_int()
        lib.cuDeviceGetAttribute(ctypes.byref(major), _CC_MAJOR, device)
        lib.cuDeviceGetAttribute(ctypes.byref(minor), _CC_MINOR, device)
        integrated = ctypes.c_int()
        lib.cuDeviceGetAttribute(ctypes.byref(integrated), _INTEGRATED, device)
        memory = ctypes.c_size_t()
        lib.cuDeviceTotalMem_v2(ctypes.byref(memory), device)
        gpus.append(Gpu(i, name.value.decode(errors="replace"), f"{major.value}.{minor.value}",
                        memory.value // (1 << 20), bool(integrated.value)))
    return GpuQuery(tuple(gpus), driver_cuda, None if gpus else "no CUDA device could be opened")
