"""``onnx-ref``: ONNX's reference evaluator, slow and exact per operator definition (true FP16 numerics).

onnx 1.23.2's evaluator ignores the LSTM operator's ``sequence_lens``: it is a valid oracle only for
unpadded inputs (every length equal to seq), and this backend refuses padded batches.
"""

from __future__ import annotations

from typing import Dict, Mapping

import numpy as np

from ..artifacts import check_external_data
from ..errors import BadInput
from .base import Backend

__all__ = ["OnnxRefBackend"]


class OnnxRefBackend(Backend):
    name = "onnx-ref"
    kind = "onnx"
    precisions = ("fp16",)  # its job: true FP16 numerics, which ONNX Runtime CPU does not compute
    unpadded_only = True

    def _open(self) -> None:
        import onnx
        from onnx.reference import ReferenceEvaluator

        check_external_data(self.artifact)
        self.evaluator = ReferenceEvaluator(onnx.load(str(self.artifact)))
        self.output_names = list(self.evaluator.output_names)

    def _run(self, feeds: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        if (feeds["lengths"] != feeds["x"].shape[1]).any():
            raise BadInput("onnx-ref runs unpadded inputs only (every length equal to seq): "
                           "the reference evaluator ignores the LSTM's sequence_lens")
        outputs = self.evaluator.run(None, dict(feeds))
        return dict(zip(self.output_names, outputs))
