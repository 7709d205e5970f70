"""attn-export: export, quantise, build and verify attention-LSTM sequence models for edge devices.

Importing the package is cheap: torch, onnxruntime and tensorrt are imported only by the modules that
need them.
"""

from __future__ import annotations

__version__ = "0.1.0"
