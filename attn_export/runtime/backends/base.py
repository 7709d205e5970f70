"""The backend protocol: construct cheaply from a checked artefact (``runtime.store.Artifact``: its bytes,
I/O spec and manifest entry; a backend never reads the directory), open as a context manager (load the
session or engine from those bytes, touch the GPU only here), ``infer(dict of arrays) -> dict of arrays``,
close. Timing is not the backend's job.

Python 3.8-compatible: the device runtime uses the ONNX Runtime and TensorRT backends.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ...errors import AttnExportError, NotAvailable, WorkFailed, is_out_of_memory, out_of_memory
from ..limits import check_threads

if TYPE_CHECKING:
    from ..store import Artifact
    from ..trt.profile import Profile

__all__ = ["Backend"]


class Backend:
    """Base class: subclasses set ``name``/``kind`` and implement ``available``, ``_open``, ``_run``."""

    name = "backend"
    kind = "onnx"  # what it runs: "onnx" (an .onnx file), "torch" (the model directory), "engine"
    device = "cpu"
    # the precisions whose artefacts it can run (verify pairs backends with artefacts by this)
    precisions: Tuple[str, ...] = ("fp32", "fp16", "int8-dynamic", "int8-qdq")
    # a backend that computes in a reduced precision of its own (OpenVINO's bf16) runs the FP32 graph and
    # is judged as that precision
    computes: Optional[str] = None
    # slow interpreters (onnx-ref) run only cases up to this many batch x seq cells in verify
    max_cells: Optional[int] = None
    # times ``mean_budget_multiple`` its reduced-precision mean error may reach: the yardstick (PyTorch FP16
    # on the CPU) sums in FP32; a runtime whose FP16 rounds every operation (onnx-ref) has more of its own
    mean_allowance = 1.0
    mean_allowance_why = ""  # said wherever the allowance is (verify's failure, the report's budgets)
    # bench times it unless it is a correctness oracle (then only when named)
    timed = True
    # why verify and bench run it only when named (a precision of its own, verified per CPU); None: always
    opt_in: Optional[str] = None
    # its pass holds only on the CPU verify ran it on (``recommend.judged_elsewhere``): the CPU picks its
    # arithmetic (OpenVINO's bf16 runs AMX or AVX512-BF16 kernels, which round otherwise)
    per_cpu = False
    # Predictor may run on it when named (an oracle may not)
    deployable = True
    # whether ``runner(feeds, cuda_graph=True)`` can capture a CUDA graph (bench times both)
    supports_cuda_graph = False
    # whether it sets its CPU threads from ``threads`` (Predictor refuses a thread count one would ignore)
    threaded = True

    def __init__(self, artifact: Artifact, threads: Optional[int] = None) -> None:
        self.artifact = artifact
        self.spec = artifact.spec
        self.threads = check_threads(threads)
        self._opened = False

    @classmethod
    def available(cls) -> Optional[str]:
        """None when this backend can run here, else the reason it cannot."""
        return None

    @classmethod
    def refuses(cls, precision: str) -> Optional[str]:
        """Why this backend, available, would not run ``precision`` as that precision in this process (the
        GPU EPs' FP32 where nothing turns TF32 off), or None; ``predict``'s auto choice passes it by."""
        return None

    def __enter__(self) -> Backend:
        reason = self.available()
        if reason is not None:
            raise NotAvailable(f"backend {self.name} is not available: {reason}")
        self._open()
        self._opened = True
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._opened = False

    @property
    def opened(self) -> bool:
        """Whether it is open: entered, and not closed since."""
        return self._opened

    def infer(self, feeds: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        """Check ``feeds`` against the I/O spec, run, and return every output by name."""
        if not self._opened:
            raise RuntimeError(f"{self.name}: infer() called outside 'with backend:'")
        self.spec.check_feeds(feeds)
        return self.run_checked(feeds)

    def run_checked(self, feeds: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        """``infer`` for feeds the caller has already checked against the I/O spec (``Predictor`` checks its
        own batches once): every output by name, checked for the shape and dtype the request gives."""
        outputs = self._run(feeds)
        self.spec.check_outputs(outputs, feeds["x"].shape[0], feeds["x"].shape[1], self.name)
        return outputs

    def run_feeds(self, feeds: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        """Every output by name for feeds of a graph whose inputs are more than ``x`` and ``lengths`` (the
        stream graph, ``streaming.Stream``), which checks the feeds and the outputs it uses itself."""
        if not self._opened:
            raise RuntimeError(f"{self.name}: run_feeds() called outside 'with backend:'")
        return self._run(feeds)

    def cannot_run(self, feeds: Mapping[str, np.ndarray], said: str, shown: Optional[str] = None) -> AttnExportError:
        """The one line for a run the runtime refused (``said``: its own message; ``shown``: its line to show,
        else its first): memory that ran out, said anywhere in it, is exit 3 like any other, anything else a
        failed run (exit 1)."""
        memory = is_out_of_memory(said)  # anywhere in it: tract says why on its "Caused by" lines
        said = shown if shown is not None else (said.strip().splitlines() or ["no message"])[0]
        shape = "x".join(str(d) for d in feeds["x"].shape)
        if memory:
            return out_of_memory(said, f"running {self.artifact.name} on x {shape} in {self.name}")
        return WorkFailed(f"{self.name} cannot run {self.artifact.name} on x {shape}: {said}")

    def positional(self, names: Sequence[str]) -> Callable[[Mapping[str, np.ndarray]], List[np.ndarray]]:
        """A call that runs checked feeds and returns the outputs ``names`` in that order: the fewest Python
        steps between two runs (``Predictor``'s one-sequence path). A backend with a cheaper native form
        (ONNX Runtime's ``session.run``) returns that."""

        def run(feeds: Mapping[str, np.ndarray]) -> List[np.ndarray]:
            outputs = self.run_checked(feeds)
            return [outputs[n] for n in names]

        return run

    @classmethod
    def unreadable(cls, artifact: Artifact) -> Optional[str]:
        """None when this runtime reads ``artifact``, else its own reason (for the conformance table)."""
        try:
            with cls(artifact):
                return None
        except AttnExportError as e:
            return str(e)

    def profile(self) -> Optional[Profile]:
        """The input shapes the artefact accepts (an engine's optimisation profile), None for any."""
        return None

    def accepts(self, batch: int, seq: int) -> Optional[str]:
        """None when inputs of this shape are inside what the artefact supports, else why not (an
        engine's optimisation profile, an interpreter's size limit). Verify sweeps only accepted shapes."""
        if self.max_cells is not None and batch * seq > self.max_cells:
            return f"{self.name} runs batch x seq <= {self.max_cells} only (a slow interpreter)"
        return None

    def runner(self, feeds: Mapping[str, np.ndarray], cuda_graph: bool = False) -> Callable[[], Optional[float]]:
        """A zero-argument call for ``bench``: it runs inference on ``feeds`` already placed where the
        backend computes (GPU backends copy the inputs once, here) and returns when the result is ready
        (device synchronised). It returns the device-measured milliseconds (CUDA events) or None, in which
        case bench takes the host's wall clock. ``infer`` stays the end-to-end path, copies included."""
        self.spec.check_feeds(feeds)
        if cuda_graph:
            raise NotImplementedError(f"{self.name} cannot capture CUDA graphs")

        def run() -> Optional[float]:
            self.run_checked(feeds)
            return None

        return run

    def _open(self) -> None:
        raise NotImplementedError

    def _run(self, feeds: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        raise NotImplementedError
