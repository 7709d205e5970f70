"""``onnx-ref``: ONNX's reference evaluator, slow and exact per operator definition: true FP16 numerics,
and an independent reading of the graph. Since no exported LSTM takes a runtime ``sequence_lens`` (which
onnx 1.23.2's evaluator ignores) it judges padded batches too; it is an interpreter, so verify gives it
cases up to ``max_cells`` batch x seq cells and bench times it only when named.

It cannot read ONNX Runtime's contrib operators (``model.int8.onnx``) nor, in onnx 1.23.2, Q/DQ graphs at
opset 17 (its DequantizeLinear starts at opset 19): the conformance table says so.
"""

from __future__ import annotations

from typing import Dict, Mapping

import numpy as np

from ..errors import BadInput, WorkFailed
from ..runtime.backends.base import Backend

__all__ = ["OnnxRefBackend"]


class OnnxRefBackend(Backend):
    name = "onnx-ref"
    kind = "onnx"
    precisions = ("fp32", "fp16")
    max_cells = 4096  # measured: FP16 batch 8 x seq 2048 takes 7 s in the interpreter, seq 2048 one second
    # true FP16 sums in FP16: its mean error / intrinsic measured 0.69-1.53 on correct graphs (25 trained
    # models), 3.5-5.6x ONNX Runtime's on the same graph, where mean_budget_multiple 1.5 had failed one
    mean_allowance = 2.0
    mean_allowance_why = "its FP16 rounds every operation, sums included"
    timed = False
    deployable = False

    def _open(self) -> None:
        import onnx
        from onnx.reference import ReferenceEvaluator

        try:
            self.evaluator = ReferenceEvaluator(onnx.load_from_string(self.artifact.data))
        except (NotImplementedError, RuntimeError) as e:  # an operator (or an opset of it) it does not implement
            refused = WorkFailed if self.artifact.made else BadInput  # a graph just made: the work failed
            raise refused(f"onnx's reference evaluator cannot read {self.artifact.name}: "
                          f"{str(e).splitlines()[0]}") from None
        self.output_names = list(self.evaluator.output_names)

    def _run(self, feeds: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        # FP16 sigmoid overflows exp(-x) to inf for large negative x: 1 / (1 + inf) = 0 is the right limit
        with np.errstate(over="ignore"):
            outputs = self.evaluator.run(None, dict(feeds))
        return dict(zip(self.output_names, outputs))
