"""Whether an engine was built for this machine: its GPU, compute capability and TensorRT version against
this machine's (hardware- and version-compatible builds relax this within TensorRT's rules).

The store (``runtime.store``) asks this before a byte of an engine reaches TensorRT, after its own checks
(recorded, unchanged, current lineage, host code allowed). Pure Python; Python 3.8-compatible.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from typing import Any, List, Mapping

from ...errors import NotAvailable, listed
from .precision import parse_version

__all__ = ["HOST_CODE_ENV", "Here", "foreign_problems", "platform_of", "this_machine"]

HOST_CODE_ENV = "ATTN_EXPORT_ALLOW_ENGINE_HOST_CODE"
# compute capabilities a hardware-compatible engine runs on, by the level it was built with
_AMPERE = (8, 0)
# the later TensorRT majors whose runtime runs a version-compatible engine of a major, beyond later versions of its
# own: TensorRT 11.4.1's support matrix, "TensorRT 10 version-compatible engines can run with a TensorRT 11
# runtime, and TensorRT 8 version-compatible engines can run with a TensorRT 10 runtime. No other combination
# across major versions is supported"; 10.x's guide adds TensorRT 9 for 8 (found by re-reading TensorRT 11's
# documents: an 8.6 engine was accepted on TensorRT 11)
LATER_MAJORS = {8: (9, 10), 10: (11,)}


@dataclass(frozen=True)
class Here:
    """This machine as an engine sees it."""

    tensorrt: str  # trt.__version__
    gpu: str  # device name
    compute_capability: str  # "8.7"
    platform: str  # platform_of: the CPU architecture and whether the GPU is integrated


def platform_of(gpu: Any) -> str:
    """What an engine is tied to beyond its GPU and TensorRT (notes/tensorrt.md 6.2: an x86 engine never runs
    on a Jetson, hardware compatibility or not): this CPU's architecture, and the GPU's kind (``device.Gpu``)."""
    kind = "an integrated GPU (Jetson)" if gpu.integrated else "a discrete GPU"
    return f"{platform.machine() or 'an unknown CPU'} with {kind}"


def _cc(text: str) -> tuple:
    return parse_version(str(text))


def foreign_problems(entry: Mapping[str, Any], here: Here) -> List[str]:
    """Why an engine recorded as ``entry`` cannot run here (empty when it can)."""
    problems = []
    if entry.get("platform") != here.platform:
        problems.append(f"it was built on {entry['platform']} and this machine is {here.platform}"
                        if entry.get("platform") else "its record names no platform it was built on (recorded "
                                                      "before attn-export kept it)")
    built, now = parse_version(str(entry.get("tensorrt", ""))), parse_version(here.tensorrt)
    if entry.get("version_compatible"):
        if not built or now < built:
            problems.append(f"it is version-compatible from TensorRT {entry.get('tensorrt')} on, and this machine "
                            f"has the older TensorRT {here.tensorrt}")
        elif now[0] != built[0] and now[0] not in LATER_MAJORS.get(built[0], ()):
            runs = listed((str(m) for m in (built[0], *LATER_MAJORS.get(built[0], ()))), "or")
            problems.append(f"it is version-compatible from TensorRT {entry.get('tensorrt')} on, which a runtime of "
                            f"TensorRT {runs} runs, and this machine has TensorRT {here.tensorrt}")
    elif built != now:
        problems.append(f"it was built with TensorRT {entry.get('tensorrt')} and this machine has TensorRT "
                        f"{here.tensorrt}")
    level = str(entry.get("hardware_compatibility") or "none").lower()
    cc_built, cc_here = _cc(entry.get("compute_capability", "")), _cc(here.compute_capability)
    if level == "ampere_plus":
        if cc_here < _AMPERE:
            problems.append(f"it is hardware-compatible with Ampere and newer (compute 8.0+) and this GPU, "
                            f"{here.gpu}, has compute {here.compute_capability}")
    elif cc_built != cc_here:
        problems.append(f"it was built for compute capability {entry.get('compute_capability')} "
                        f"({entry.get('gpu')}) and this GPU, {here.gpu}, has compute {here.compute_capability}")
    elif level == "none" and str(entry.get("gpu")) != here.gpu:
        problems.append(f"it was built and tuned for {entry.get('gpu')} and this GPU is {here.gpu} (same compute "
                        "capability; build with --hardware-compat to share engines between them)")
    return problems


def this_machine() -> Here:
    """This machine as an engine sees it; NotAvailable (exit 3) without a GPU or TensorRT."""
    from .device import query_gpus
    from .importer import require_tensorrt

    query = query_gpus()
    if not query.gpus:
        raise NotAvailable(f"an engine needs a CUDA device: {query.reason}")
    require_tensorrt()
    import tensorrt

    gpu = query.gpus[0]
    return Here(str(tensorrt.__version__), gpu.name, gpu.compute_capability, platform_of(gpu))
