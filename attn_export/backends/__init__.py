"""The backend registry: names to backend classes. Importing it imports no runtime library (torch,
onnxruntime, tensorrt, cuda-python are imported when a backend is asked whether it is available or opened).

``get(name)`` returns the class; ``status()`` says for every backend whether it can run here and why not.
"""

from __future__ import annotations

from typing import Dict, Optional, Type

from ..errors import BadInput
from .base import Backend
from .cuda import TorchCudaBackend
from .onnxref import OnnxRefBackend
from .onnxrt import OrtCpuBackend
from .openvino_cpu import OpenVinoBf16Backend, OpenVinoCpuBackend
from .ortgpu import OrtCudaBackend, OrtTrtBackend
from .pyt import TorchCpuBackend
from .tensorrt import TensorRTBackend
from .tract_cpu import TractCpuBackend

__all__ = ["REGISTRY", "Backend", "get", "status"]

REGISTRY: Dict[str, Type[Backend]] = {
    b.name: b for b in (TorchCpuBackend, TorchCudaBackend, OrtCpuBackend, OrtCudaBackend, OrtTrtBackend,
                        TensorRTBackend, OnnxRefBackend, OpenVinoCpuBackend, OpenVinoBf16Backend, TractCpuBackend)
}


def get(name: str) -> Type[Backend]:
    try:
        return REGISTRY[name]
    except KeyError:
        raise BadInput(f"unknown backend '{name}'; expected one of {', '.join(REGISTRY)}") from None


def status() -> Dict[str, Optional[str]]:
    """Every backend's name -> None if available here, else the reason it is not."""
    return {name: cls.available() for name, cls in REGISTRY.items()}
