"""``tract-cpu``: Sonos' tract, the Rust inference engine used on ARM edge devices: a third ONNX
implementation, independent of ONNX Runtime and OpenVINO. Python 3.8-compatible; imports tract only when
asked.

tract 0.23.9 aborts the whole process (a Rust panic that cannot unwind) on some graphs it cannot type,
so a graph is first loaded in a child process; only one that loads there is loaded here. tract loads only
from a path: the bytes the store checked are written to a private temporary file (mode 0600 in a 0700
directory), which the child and this process load, and which is gone once the model is in memory. It runs
FP32, FP16 and Q/DQ graphs, not ONNX Runtime's contrib operators (``model.int8.onnx``). Outputs are named
by the graph's own output order (tract returns them by position).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, Mapping, Optional

import numpy as np

from ...errors import BadInput, is_out_of_memory, out_of_memory
from ..limits import missing
from .base import Backend

__all__ = ["TractCpuBackend"]

PROBE = "import sys, tract; tract.onnx().load(sys.argv[1]).into_model()"
PROBE_SECONDS = 120
TRACT_MIN = "0.23.9"  # the oldest tract with the API used here (0.21 has no `onnx().load`); pyproject's tract extra
TRACT_PYTHON = (3, 9)  # the oldest Python tract 0.23.9 has wheels for


def _load_error(path: Path) -> Optional[str]:
    """None when tract loads ``path`` in a child process, else its reason (a panic included)."""
    try:
        done = subprocess.run([sys.executable, "-c", PROBE, str(path)], capture_output=True, text=True,
                              timeout=PROBE_SECONDS)
    except subprocess.TimeoutExpired:
        return f"tract did not load it within {PROBE_SECONDS} s"
    if done.returncode == 0:
        return None
    lines = [line.strip() for line in done.stderr.splitlines() if line.strip()]
    memory = next((line for line in lines if is_out_of_memory(line)), None)
    if memory is not None:  # said first: a panic's other lines would hide it
        return memory[:300]
    said = [line for line in lines if "panicked" in line or "Caused by" in line or line.startswith(("TractError", "0:", "1:"))]
    detail = next((line for line in lines if "Err` value" in line or "Failed analyse" in line
                   or "Translating node" in line or "Unimplemented" in line), None)
    return (detail or (said[-1] if said else (lines[-1] if lines else f"exit status {done.returncode}")))[:300]


class TractCpuBackend(Backend):
    name = "tract-cpu"
    kind = "onnx"
    precisions = ("fp32", "fp16", "int8-qdq")
    threaded = False  # tract's Python API takes no thread count

    @classmethod
    def available(cls) -> Optional[str]:
        return missing("tract", f"pip install 'tract>={TRACT_MIN}', which needs Python "
                       f"{'.'.join(map(str, TRACT_PYTHON))} or newer", TRACT_MIN)

    def _open(self) -> None:
        import tract

        private = Path(tempfile.mkdtemp(prefix="attn-export-tract-"))
        try:
            path = private / self.artifact.name
            path.write_bytes(self.artifact.data)
            reason = _load_error(path)
            if reason is not None and is_out_of_memory(reason):  # the library or the model did not fit: not the file
                raise out_of_memory(reason, f"loading {self.artifact.name} in tract")
            if reason is not None:
                raise BadInput(f"tract cannot read {self.artifact.name}: {reason}")
            self.runnable = tract.onnx().load(str(path)).into_model().into_runnable()
        finally:
            shutil.rmtree(private, ignore_errors=True)
        assert self.artifact.graph is not None
        self.input_names = [i.name for i in self.artifact.graph.inputs]  # tract takes its inputs in graph order
        self.output_names = [o.name for o in self.artifact.graph.outputs]

    def _run(self, feeds: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        import tract

        try:
            outputs = self.runnable.run([feeds[name] for name in self.input_names])
        except tract.TractError as e:
            raise self.cannot_run(feeds, str(e)) from None
        return {n: np.asarray(o.to_numpy(), dtype=np.float32) for n, o in zip(self.output_names, outputs)}

    def close(self) -> None:
        self.runnable = None
        super().close()
