"""The one place that imports ``tensorrt``: lazily, with an error that says what is missing and how to get it.

``tensorrt-stubs`` installs a ``tensorrt`` directory holding only ``.pyi`` files; Python imports that as an
empty namespace package, so "importable" is not "installed": the real module has ``__version__`` and
``Builder``.
"""

from __future__ import annotations

import importlib
import os
from typing import Optional

from ...errors import NotAvailable

__all__ = ["HOW_TO_GET", "require_tensorrt", "is_jetson", "tensorrt_missing"]

HOW_TO_GET = ("get it with: pip install tensorrt-cu12 (tensorrt-cu13 for CUDA 13); on Jetson it comes with "
              "JetPack: sudo apt install python3-libnvinfer")


def is_jetson() -> bool:
    return os.path.exists("/etc/nv_tegra_release")


def _how() -> str:
    if is_jetson():
        return "on Jetson it comes with JetPack: sudo apt install nvidia-jetpack (or python3-libnvinfer)"
    return HOW_TO_GET


def tensorrt_missing() -> Optional[str]:
    """None when the TensorRT Python bindings are installed and load, else why not and how to get them."""
    try:
        trt = importlib.import_module("tensorrt")
    except ImportError as e:
        if getattr(e, "name", None) == "tensorrt":
            return f"TensorRT is not installed; {_how()}"
        return f"TensorRT is installed but does not load ({str(e).splitlines()[0]}); {_how()}"
    except OSError as e:  # the bindings load libnvinfer when imported
        return f"TensorRT is installed but its libraries do not load ({str(e).splitlines()[0]})"
    if getattr(trt, "__version__", None) is None or not hasattr(trt, "Builder"):
        return f"TensorRT is not installed (only its type stubs, tensorrt-stubs, are); {_how()}"
    return None


def require_tensorrt() -> None:
    """Raise NotAvailable (exit 3) naming what is missing; after it, ``import tensorrt as trt`` is safe
    (callers import it themselves so that mypy checks their calls against the stubs)."""
    reason = tensorrt_missing()
    if reason is not None:
        raise NotAvailable(reason)
