"""``ort-cuda`` and ``ort-trt``: ONNX Runtime's CUDA and TensorRT execution providers.

Both need the ``onnxruntime-gpu`` package (it replaces ``onnxruntime``; the two install the same module and
must never both be installed). A provider that is not there is NotAvailable (exit 3) naming the requested and
the available providers: never a silent fallback to the CPU. Python 3.8-compatible.

- ``ort-cuda``: cuDNN's LSTM; ``runner()`` binds inputs and outputs on the device once (I/O binding).
  Runs FP32, FP16 and Q/DQ graphs, not the dynamic INT8 graph (its ops are CPU-only contrib ops).
- ``ort-trt``: TensorRT inside ONNX Runtime, with an engine cache beside the artefacts, one folder per
  graph's sha256 (``.ort-trt-cache/<sha256>/``: ONNX Runtime keys its engines by names and versions, never by
  the weights, so a retrained graph would run an old engine), a timing cache, explicit profile shapes (the same
  derivation as ``build``), ``trt_fp16_enable`` for the FP16 graph and ``trt_int8_enable`` for the Q/DQ one, and
  the CUDA EP after it for any node TensorRT does not take (ONNX Runtime's advice; the CPU otherwise). Unlike
  ``build``, the EP cannot pin the FP16 graph's FP32 layers where it builds weakly typed: ``trt_fp16_enable``
  lets TensorRT run them in FP16 (the README says so).

FP32 means FP32, as everywhere here: on Ampere and later GPUs TF32 (a 10-bit mantissa) is the NVIDIA libraries'
default. The CUDA EP is told ``use_tf32 = 0`` (ONNX Runtime 1.18+); the TensorRT EP has no such switch (only
the environment's ``NVIDIA_TF32_OVERRIDE=0``, which the command lines set unless it is set), so an FP32 graph
without it, or on an older CUDA EP, is NotAvailable, saying so; so is the Q/DQ graph, whose LSTM and attention
stay FP32 (``TF32_PRECISIONS``).
"""

from __future__ import annotations

import os
from typing import Any, Callable, Dict, List, Mapping, Optional

import numpy as np

from ...errors import TF32_OVERRIDE, BadInput, NotAvailable
from ..limits import missing
from ..streaming import state_dims
from ..trt.precision import parse_version
from ..trt.profile import Profile, recipe_profile
from .onnxrt import OrtCpuBackend, Provider, ort_providers

__all__ = ["OrtCudaBackend", "OrtTrtBackend", "ort_distribution"]

CACHE_DIR = ".ort-trt-cache"
USE_TF32_SINCE = (1, 18)  # the CUDA EP's ``use_tf32`` option (microsoft/onnxruntime#19357)
# the precisions whose graph has FP32 matrix products: FP32, and the Q/DQ graph, whose LSTM and attention stay
# float (found by review: they ran TF32 on a GPU, an error verify's CPU never measured)
TF32_PRECISIONS = ("fp32", "int8-qdq")


def ort_distribution() -> Optional[str]:
    """Which package provides the ``onnxruntime`` module: onnxruntime, onnxruntime-gpu, ... (or None)."""
    from importlib import metadata

    found = []
    for dist in ("onnxruntime-gpu", "onnxruntime", "onnxruntime-directml", "onnxruntime-openvino"):
        try:
            found.append(f"{dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            continue
    return ", ".join(found) if found else None


def _missing_provider(provider: str) -> Optional[str]:
    problem = missing("onnxruntime", "pip install onnxruntime-gpu; on a Jetson, NVIDIA's wheel for its JetPack")
    providers = ort_providers()
    if problem is not None or providers is None:
        return problem or "onnxruntime is not installed (pip install onnxruntime-gpu)"
    if provider in providers:
        return None
    dist = ort_distribution() or "onnxruntime"
    hint = ("the CPU package is installed: pip uninstall onnxruntime && pip install onnxruntime-gpu"
            if "onnxruntime-gpu" not in dist else "onnxruntime-gpu cannot load its CUDA/TensorRT libraries")
    return f"ONNX Runtime ({dist}) has no {provider}; available: {', '.join(providers)} ({hint})"


class OrtCudaBackend(OrtCpuBackend):
    name = "ort-cuda"
    kind = "onnx"
    device = "cuda"
    provider = "CUDAExecutionProvider"
    precisions = ("fp32", "fp16", "int8-qdq")

    @classmethod
    def available(cls) -> Optional[str]:
        return _missing_provider(cls.provider)

    @classmethod
    def refuses(cls, precision: str) -> Optional[str]:
        why = None if precision not in TF32_PRECISIONS or os.environ.get(TF32_OVERRIDE) == "0" else cls._switch()
        if why is None:
            return None
        what = "FP32" if precision == "fp32" else f"the {precision} graph's FP32 layers"
        return (f"{cls.name} would run {what} with TF32 on an Ampere or later GPU: {why}; expected "
                f"{TF32_OVERRIDE}=0 in the environment before the process starts (attn-export's command lines set "
                "it unless it is set)")

    @classmethod
    def _switch(cls) -> Optional[str]:
        """Why no provider option turns TF32 off here (None: ``use_tf32`` does)."""
        import onnxruntime

        if parse_version(onnxruntime.__version__) >= USE_TF32_SINCE:
            return None
        return f"ONNX Runtime {onnxruntime.__version__}'s CUDA EP has no use_tf32 option (1.18 and later have)"

    def provider_options(self) -> Dict[str, Any]:
        options: Dict[str, Any] = {"device_id": 0}
        if self.artifact.precision in TF32_PRECISIONS:
            self._refuse_tf32()
            if OrtCudaBackend._switch() is None:
                options["use_tf32"] = 0
        return options

    def _refuse_tf32(self) -> None:
        reason = self.refuses(str(self.artifact.precision))
        if reason is not None:
            raise NotAvailable(reason)

    def runner(self, feeds: Mapping[str, np.ndarray], cuda_graph: bool = False) -> Callable[[], Optional[float]]:
        """Inputs copied to the device and outputs bound there once (I/O binding); each call runs and
        synchronises. Host wall clock (ONNX Runtime exposes no CUDA events)."""
        import onnxruntime

        self.spec.check_feeds(feeds)
        if cuda_graph:
            raise NotImplementedError(f"{self.name} does not capture CUDA graphs here")
        binding = self.session.io_binding()
        for name, array in feeds.items():
            binding.bind_ortvalue_input(name, onnxruntime.OrtValue.ortvalue_from_numpy(array, "cuda", 0))
        for name in self.output_names:
            binding.bind_output(name, "cuda", 0)
        session = self.session

        def run() -> Optional[float]:
            session.run_with_iobinding(binding)
            binding.synchronize_outputs()
            return None

        return run


class OrtTrtBackend(OrtCudaBackend):
    name = "ort-trt"
    provider = "TensorrtExecutionProvider"

    _profile: Optional[Profile] = None

    def profile(self) -> Profile:
        """The explicit profile: model.json's [build] table and training lengths, as ``build`` derives them
        (without them ONNX Runtime rebuilds its engine whenever a shape leaves the range seen), read once."""
        if self._profile is None:
            info = self.artifact.info
            assert info is not None
            self._profile, _ = recipe_profile(info, state_dims(self.spec) or None)  # a stream graph: its state too
        return self._profile

    def accepts(self, batch: int, seq: int) -> Optional[str]:
        try:
            return self.profile().accepts(batch, seq)
        except BadInput as e:
            return str(e)

    def providers(self) -> List[Provider]:
        return [(self.provider, self.provider_options()), (OrtCudaBackend.provider, super().provider_options())]

    @classmethod
    def _switch(cls) -> Optional[str]:
        return "ONNX Runtime's TensorRT EP has no TF32 switch (microsoft/onnxruntime#26029)"

    def provider_options(self) -> Dict[str, Any]:
        if self.artifact.precision in TF32_PRECISIONS:
            self._refuse_tf32()
        cache = self.artifact.directory / CACHE_DIR / self.artifact.sha256
        for path in (cache.parent, cache):
            if path.is_symlink():  # ONNX Runtime would write its engines wherever the link points
                raise BadInput(f"{path} is a symbolic link; attn-export never writes through a link in an "
                               "artefact directory: expected a directory or none (remove the link)")
        cache.mkdir(parents=True, exist_ok=True)
        options: Dict[str, Any] = {
            "device_id": 0,
            "trt_engine_cache_enable": True,
            "trt_engine_cache_path": str(cache),
            "trt_timing_cache_enable": True,
            "trt_timing_cache_path": str(cache),
            "trt_fp16_enable": self._is_fp16(),
            # a Q/DQ graph needs the INT8 flag where the EP builds weakly typed, or TensorRT refuses its
            # quantised layers ("int8 is not configured in the builder", microsoft/onnxruntime#13381: review)
            "trt_int8_enable": self.artifact.precision == "int8-qdq",
        }
        options.update(self.profile().ort_trt_options())
        return options

    def _is_fp16(self) -> bool:
        return self.artifact.graph is not None and self.artifact.graph.stores_float16

    def _run(self, feeds: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        batch, seq = feeds["x"].shape[:2]
        reason = self.profile().accepts(int(batch), int(seq))
        if reason is not None:
            raise BadInput(f"ort-trt: {reason}")
        return super()._run(feeds)
