"""Engine file names: ``model[.stream].<precision>.<gpu>.trt<major.minor>[.<compat>].engine``.

An engine runs only on the TensorRT version and GPU it was built for (unless built compatible), so its name
says which: ``model.fp16.orin.trt10.3.engine``, ``model.fp32.h100-80gb-hbm3.trt11.4.engine``,
``model.int8-qdq.rtx-4090.trt10.16.ampere-plus.vc.engine``; one of the stream graph (``build --stream``):
``model.stream.fp16.orin.trt10.3.engine``. Pure Python; Python 3.8-compatible.
"""

from __future__ import annotations

import re
from typing import Optional

from ...errors import BadInput
from ..precisions import ENGINE_PRECISIONS
from .precision import parse_version

__all__ = ["ENGINE_SUFFIX", "engine_name", "gpu_slug"]

ENGINE_SUFFIX = ".engine"
# words every NVIDIA device name carries that tell devices apart no better than the rest does
_NOISE = ("nvidia", "geforce", "tesla", "quadro")


def gpu_slug(name: str) -> str:
    """A file-name-safe, lower-case form of a GPU name: ``NVIDIA GeForce RTX 4090`` -> ``rtx-4090``."""
    words = re.split(r"[^0-9a-z]+", name.lower())
    kept = [w for w in words if w and w not in _NOISE]
    slug = "-".join(kept)[:40].strip("-")
    return slug or "gpu"


def engine_name(precision: str, gpu_name: str, trt_version: str, hardware_compat: Optional[str] = None,
                version_compat: bool = False, stream: bool = False) -> str:
    """The engine's file name; ``stream``: built from the stream graph, ``model.stream.<precision>...``."""
    if precision not in ENGINE_PRECISIONS:
        raise BadInput(f"precision '{precision}' has no engine; expected one of {', '.join(ENGINE_PRECISIONS)}")
    v = parse_version(trt_version)
    if len(v) < 2:
        raise BadInput(f"TensorRT version '{trt_version}' is not major.minor[.patch]")
    parts = ["model", *(["stream"] if stream else []), precision, gpu_slug(gpu_name), f"trt{v[0]}.{v[1]}"]
    if hardware_compat:
        parts.append(gpu_slug(hardware_compat))
    if version_compat:
        parts.append("vc")
    return ".".join(parts) + ENGINE_SUFFIX
