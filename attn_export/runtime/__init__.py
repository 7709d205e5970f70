"""The device package: everything a deployed model needs on the device, and nothing else.

    from attn_export.runtime import Predictor
    with Predictor.load("artifacts", precision="fp32") as predictor:   # a directory or a bundle .tar.gz
        predictions = predictor.predict([seq_a, seq_b])

    python -m attn_export.runtime verify | predict | build | info DIR

Python 3.8 or newer (JetPack 5's TensorRT bindings live in the system Python 3.8), numpy, and ONNX Runtime
or TensorRT with cuda-python: no torch, onnx, typer, rich or matplotlib (a test derives this from the
import graph, and a bundle ships exactly these modules, ``bundle.runtime_files``). It holds the artefact
store and its one trust check (``store``: names, files, manifest, trust), the typed ``model.json``
(``modelinfo``), the graph reader (``onnxfile``), the I/O contract (``iospec``), the precision table (``precisions``), input readers (``readers``, ``inputs``), every inference backend
that deploys (``backends``) and the choice among them (``dispatch``), the TensorRT build (``trt``), verification against ``reference.npz``
(``verify``, ``compare``, ``reference``), ``Predictor`` and the command line (``cli``). The host package
(training, export, quantize, bench, report, ``attn-export``) imports it, never the reverse.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Prediction", "Predictor"]


def __getattr__(name: str) -> Any:
    """``Predictor`` and ``Prediction`` load on first use: a numpy-free submodule (``trt.compat``, say)
    imports without numpy."""
    if name in __all__:
        from . import predictor

        return getattr(predictor, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
