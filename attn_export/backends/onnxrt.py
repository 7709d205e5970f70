"""``ort-cpu``: ONNX Runtime's CPU execution provider. Python 3.8-compatible."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Mapping, Optional

import numpy as np

from ..artifacts import check_external_data
from ..errors import BadInput, NotAvailable, WorkFailed
from .base import Backend

__all__ = ["OrtCpuBackend", "is_fp16_graph", "ort_providers", "refuse_known_crash"]

CRASHES_ONNXRUNTIME = "FP16 MatMul of a Transpose by a constant weight"  # attn_export.portability.CONSTRUCTS


def refuse_known_crash(path: Path) -> None:
    """Refuse, with one line, a graph holding a construct that crashes ONNX Runtime at its default
    optimisation level (a segmentation fault takes the whole process, no error is raised): FP16 graphs
    that attn-export wrote before 0.1.0's portable form. Without onnx installed there is no graph to read
    here, and the file's sha256 in the manifest is what vouches for it."""
    try:
        import onnx
    except ImportError:
        return
    from ..portability import divergences

    found = [d for d in divergences(onnx.load(str(path), load_external_data=False)) if d.construct == CRASHES_ONNXRUNTIME]
    if found:
        raise BadInput(f"{path} holds {found[0]}; re-make it with attn-export quantize --fp16")


def is_fp16_graph(path: Path) -> bool:
    """Whether the model stores FP16 weights (the FP16 variant). Without onnx (a device may have only
    onnxruntime) the artefact's fixed name tells: ``model.fp16.onnx``."""
    try:
        import onnx
    except ImportError:
        return ".fp16." in Path(path).name

    proto = onnx.load(str(path), load_external_data=False)
    return any(t.data_type == onnx.TensorProto.FLOAT16 for t in proto.graph.initializer)


def ort_providers() -> Optional[List[str]]:
    try:
        import onnxruntime
    except ImportError:
        return None
    return list(onnxruntime.get_available_providers())


class OrtCpuBackend(Backend):
    name = "ort-cpu"
    kind = "onnx"
    provider = "CPUExecutionProvider"

    @classmethod
    def available(cls) -> Optional[str]:
        providers = ort_providers()
        if providers is None:
            return "onnxruntime is not installed (pip install 'attn-export[cpu]')"
        if cls.provider not in providers:
            return f"ONNX Runtime has no {cls.provider} (available: {', '.join(providers)})"
        return None

    def session_options(self):  # type: ignore[no-untyped-def]
        import onnxruntime

        options = onnxruntime.SessionOptions()  # every default users get, ORT_ENABLE_ALL included
        options.log_severity_level = 3
        if self.threads:
            options.intra_op_num_threads = self.threads
            options.inter_op_num_threads = 1
        return options

    def _open(self) -> None:
        import onnxruntime

        check_external_data(self.artifact)
        refuse_known_crash(self.artifact)
        try:
            self.session = onnxruntime.InferenceSession(
                str(self.artifact), sess_options=self.session_options(), providers=[self.provider]
            )
        except Exception as e:  # onnxruntime raises its own Fail/InvalidGraph types, not exported stably
            raise BadInput(f"ONNX Runtime cannot load {self.artifact}: {str(e).splitlines()[0]}") from None
        if self.provider not in self.session.get_providers():
            raise NotAvailable(f"{self.provider} requested; the session has {self.session.get_providers()}")
        self.output_names = [o.name for o in self.session.get_outputs()]

    def _run(self, feeds: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        try:
            outputs = self.session.run(self.output_names, dict(feeds))
        except Exception as e:  # onnxruntime's Fail/InvalidArgument/RuntimeException are not exported stably
            shape = "x".join(str(d) for d in feeds["x"].shape)
            raise WorkFailed(f"{self.name} cannot run {self.artifact.name} on x {shape}: "
                             f"{str(e).splitlines()[0]}") from None
        return dict(zip(self.output_names, outputs))

    def close(self) -> None:
        self.session = None
        super().close()
