"""``openvino-cpu`` and ``openvino-bf16``: Intel's OpenVINO Runtime on the CPU, an ONNX implementation
independent of ONNX Runtime. Python 3.8-compatible; imports openvino only when asked.

OpenVINO computes in bf16 by default on CPUs with AVX512-BF16 or AMX, whatever the graph says, so:

- ``openvino-cpu`` pins ``INFERENCE_PRECISION_HINT`` to f32 and checks the compiled model kept it: it runs
  the FP32, FP16 (weights decompressed to f32), INT8 Q/DQ and dynamic INT8 graphs;
- ``openvino-bf16`` runs ``model.onnx`` with the hint at bf16: a reduced-precision target of its own, judged
  like FP16 against the model's own bf16 error. It is available only where the CPU computes bf16;
  verify and bench run it only when named (``opt_in``), and predict only where verify passed that very pair
  (``dispatch.choose``).
"""

from __future__ import annotations

import ctypes
import sys
from contextlib import contextmanager
from typing import Any, Dict, Iterator, Mapping, Optional, Tuple

import numpy as np

from ...errors import BadInput, NotAvailable
from ..limits import missing
from .base import Backend

__all__ = ["OpenVinoBf16Backend", "OpenVinoCpuBackend"]

DEVICE = "CPU"


def _core() -> Any:
    import openvino

    return openvino.Core()


class _SignalStack(ctypes.Structure):  # the C library's stack_t
    _fields_ = [("ss_sp", ctypes.c_void_p), ("ss_flags", ctypes.c_int), ("ss_size", ctypes.c_size_t)]


@contextmanager
def _signal_stack_kept() -> Iterator[None]:
    """The calling thread's alternate signal stack, put back as it was when the block ends. OpenVINO 2026.4's CPU
    plugin gives the thread a stack of its own while it compiles a model, and puts back the one it found when a
    compiled model is released: released in another order than compiled (bench holds several), the thread was
    left on a stack OpenVINO had freed, and the next signal (a Ctrl-C) wrote its frame there, into the heap:
    the process crashed (SIGSEGV, exit 139) instead of ending in one line, its clean-up never ran (found by
    attacking ``run``; seen with gdb: ``sigaltstack`` from libopenvino_intel_cpu_plugin.so). Linux only, where
    it was seen; elsewhere the block just runs."""
    if not sys.platform.startswith("linux"):
        yield
        return
    libc = ctypes.CDLL(None, use_errno=True)
    before = _SignalStack()
    if libc.sigaltstack(None, ctypes.byref(before)) != 0:  # cannot read it: nothing to put back
        yield
        return
    try:
        yield
    finally:
        libc.sigaltstack(ctypes.byref(before), None)


class OpenVinoCpuBackend(Backend):
    name = "openvino-cpu"
    kind = "onnx"
    precisions: Tuple[str, ...] = ("fp32", "fp16", "int8-dynamic", "int8-qdq")
    hint = "f32"

    @classmethod
    def available(cls) -> Optional[str]:
        return missing("openvino", "pip install openvino")

    def _open(self) -> None:
        with _signal_stack_kept():
            self._compile()

    def _compile(self) -> None:
        config: Dict[str, Any] = {"INFERENCE_PRECISION_HINT": self.hint}
        if self.threads:
            config["INFERENCE_NUM_THREADS"] = self.threads
        core = _core()
        try:  # the bytes the store checked, never the path
            compiled = core.compile_model(core.read_model(self.artifact.data), DEVICE, config)
        except RuntimeError as e:  # OpenVINO reports unreadable graphs as RuntimeError
            raise BadInput(f"OpenVINO cannot read {self.artifact.name}: {_last_line(e)}") from None
        import openvino

        computed = compiled.get_property("INFERENCE_PRECISION_HINT")
        if computed != getattr(openvino.Type, self.hint):
            raise NotAvailable(f"OpenVINO compiled {self.artifact.name} for {computed}, not {self.hint}")
        self.request = compiled.create_infer_request()
        # a tensor may carry several names (the graph's and its producer's): index by the spec's
        wanted = set(self.spec.output_names)
        self.outputs = {next(iter(o.get_names() & wanted), o.get_any_name()): i for i, o in enumerate(compiled.outputs)}

    def _run(self, feeds: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        try:
            results = self.request.infer(dict(feeds), share_inputs=True)
        except RuntimeError as e:
            raise self.cannot_run(feeds, str(e), shown=_last_line(e)) from None
        values = list(results.values())
        return {n: np.asarray(values[i], dtype=np.float32) for n, i in self.outputs.items()}

    def close(self) -> None:
        with _signal_stack_kept():  # the compiled model is released here
            self.request = None
        super().close()


class OpenVinoBf16Backend(OpenVinoCpuBackend):
    name = "openvino-bf16"
    precisions = ("fp32",)
    computes = "bf16"
    hint = "bf16"
    # measured: within its bf16 budget inside the deployment range on every model tried, but on one of ten
    # quickstart models (seed 5) one batch-1 seq-2048 row came out 9.4 off (93x its budget, class flipped)
    opt_in = ("opt-in (OpenVINO's own bf16, verified on this CPU only; it flipped a class at seq 2048 on 1 of 10 "
              "quickstart models): name it, --backends openvino-bf16")
    per_cpu = True

    @classmethod
    def available(cls) -> Optional[str]:
        reason = super().available()
        if reason is not None:
            return reason
        with _signal_stack_kept():  # asking starts the CPU plugin, which sets the stack too
            capabilities = _core().get_property(DEVICE, "OPTIMIZATION_CAPABILITIES")
        if "BF16" not in capabilities:
            from ..timing import cpu_name

            # found by attacking: it said OpenVINO "would compute f32"; an Ice Lake Xeon (AVX-512, no BF16)
            # computes bf16 all the same, emulated: 12x f32's time at 1 x 128 on JapaneseVowels. Without AVX-512
            # its CPU plugin takes no bf16 hint and computes f32 (its precision_support.cpp; found by review)
            does = ("would emulate it, many times slower than f32 (12x on an Ice Lake Xeon)"
                    if "avx512f" in cpu_name()[1] else "would compute f32")
            return f"this CPU has no native bf16 arithmetic (AVX512-BF16 or AMX): OpenVINO {does}"
        return None


def _last_line(e: BaseException) -> str:
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    return lines[-1] if lines else type(e).__name__
