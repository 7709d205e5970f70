"""The device's backends: names to backend classes, for ONNX files and TensorRT engines. Importing it
imports no runtime library (onnxruntime, tensorrt, openvino, tract are imported when a backend is asked
whether it is available, or opened). The host adds its own (``attn_export.backends``: the PyTorch model
and onnx's reference evaluator), which need torch or onnx.

``get(name)`` returns the class; ``status()`` says for every backend whether it can run here and why not.
"""

from __future__ import annotations

from typing import Dict, Mapping, Optional, Type

from ...errors import BadInput
from .base import Backend
from .onnxrt import OrtCpuBackend
from .openvino_cpu import OpenVinoBf16Backend, OpenVinoCpuBackend
from .ortgpu import OrtCudaBackend, OrtTrtBackend
from .tensorrt import TensorRTBackend
from .tract_cpu import TractCpuBackend

__all__ = ["REGISTRY", "Backend", "get", "status"]

REGISTRY: Dict[str, Type[Backend]] = {
    b.name: b for b in (OrtCpuBackend, OrtCudaBackend, OrtTrtBackend, TensorRTBackend, OpenVinoCpuBackend,
                        OpenVinoBf16Backend, TractCpuBackend)
}


def get(name: str, registry: Optional[Mapping[str, Type[Backend]]] = None) -> Type[Backend]:
    table = REGISTRY if registry is None else registry
    try:
        return table[name]
    except KeyError:
        raise BadInput(f"unknown backend '{name}'; expected one of {', '.join(table)}") from None


def status(registry: Optional[Mapping[str, Type[Backend]]] = None) -> Dict[str, Optional[str]]:
    """Every backend's name -> None if available here, else the reason it is not."""
    return {name: cls.available() for name, cls in (REGISTRY if registry is None else registry).items()}
