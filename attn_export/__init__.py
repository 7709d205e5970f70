"""attn-export: export, quantise, build and verify attention-LSTM sequence models for edge devices.

The Python API mirrors the command line, one function per stage, all working on one artefact directory:

    from pathlib import Path
    import attn_export as ax

    out = Path("artifacts")
    recipe = ax.load_recipe("recipes/quickstart.toml", ["train.epochs=5"])
    ax.train(recipe, out)                                  # model.safetensors, model.json, metrics.json
    ax.export_onnx(out)                                    # model.onnx + reference.npz, parity-checked
    ax.quantize(out, ["fp16", "int8-dynamic"])             # model.fp16.onnx, model.int8.onnx
    ax.verify(out)                                         # verify.json; verdicts in manifest.json
    with ax.Predictor.load(out, precision="int8-dynamic") as predictor:
        predictions = predictor.predict(list_of_arrays)    # [Prediction(label, index, probabilities, attention)]

``run`` does every stage at once (``attn-export run``). ``build_engine(out, BuildOptions(precision="fp16"))``
(TensorRT) needs a GPU and TensorRT. Importing the package is cheap: every name above is
imported on first use, so ``import attn_export`` loads none of torch, onnxruntime, tensorrt, typer or rich.

``train``, ``quantize`` and ``verify`` are both stage modules and the functions they define; the package
attribute is always the function (``from attn_export.train import ...`` still reaches the module).
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any, List

__version__ = "0.1.0"

__all__ = [
    "BuildOptions",
    "Prediction",
    "Predictor",
    "__version__",
    "build_engine",
    "export_onnx",
    "load_recipe",
    "quantize",
    "run",
    "train",
    "verify",
]

# public name -> (module, attribute), imported on first use
_LAZY = {
    "train": (".train", "train"),
    "export_onnx": (".export", "export_onnx"),
    "quantize": (".quantize", "quantize"),
    "build_engine": (".runtime.trt.build", "build_engine"),
    "BuildOptions": (".runtime.trt.build", "BuildOptions"),
    "verify": (".verify", "verify"),
    "Predictor": (".runtime", "Predictor"),
    "Prediction": (".runtime", "Prediction"),
    "load_recipe": (".config", "load_recipe"),
    "run": (".pipeline", "run"),
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module, attribute = _LAZY[name]
    try:
        imported = importlib.import_module(module, __name__)
    except ModuleNotFoundError as e:  # a bundle ships the device package only (found by attacking: a bare
        if not (e.name or "").startswith(f"{__name__}."):  # "No module named 'attn_export.pipeline'")
            raise
        raise ImportError(f"attn_export.{name} is not in the device package a bundle ships (attn_export.runtime: "
                          f"Predictor); it is on the host: pip install attn-export") from None
    value = getattr(imported, attribute)
    globals()[name] = value
    return value


def _shipped(name: str) -> bool:
    """Whether ``name``'s module is here: a bundle ships the device package only, and ``from attn_export import
    *`` there had failed on the host's names (found by attacking)."""
    from importlib.util import find_spec

    module = _LAZY[name][0] if name in _LAZY else None
    # the device package is attn_export.runtime, which a bundle always ships; a host module is asked for by its
    # spec alone (finding a direct child imports nothing)
    return module is None or module.startswith(".runtime") or find_spec(module, __name__) is not None


__all__ = [name for name in __all__ if _shipped(name)]


def __dir__() -> List[str]:
    """The public names, and the module's own dunders: not the helpers it imports (``importlib``, ``Any``)."""
    return sorted(set(__all__) | {name for name in globals() if name.startswith("__")})


class _Package(types.ModuleType):
    """Importing a submodule binds it as an attribute of its package; where a stage's function shares its
    module's name (``train``, ``quantize``, ``verify``) the function keeps the name."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _LAZY and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
