"""All backends: the device's (``attn_export.runtime.backends``: ONNX Runtime, TensorRT, OpenVINO, tract)
and the host's, which need torch or onnx: ``torch-cpu`` (the reference), ``torch-cuda`` and ``onnx-ref``.
Importing it imports no runtime library.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Type

from ..runtime import backends as device
from ..runtime.backends import Backend
from .cuda import TorchCudaBackend
from .onnxref import OnnxRefBackend
from .pyt import TorchCpuBackend

__all__ = ["REGISTRY", "Backend", "get", "status"]

_ALL: List[Type[Backend]] = [TorchCpuBackend, TorchCudaBackend, *device.REGISTRY.values(), OnnxRefBackend]
REGISTRY: Dict[str, Type[Backend]] = {b.name: b for b in _ALL}


def get(name: str) -> Type[Backend]:
    return device.get(name, REGISTRY)


def status() -> Dict[str, Optional[str]]:
    return device.status(REGISTRY)
