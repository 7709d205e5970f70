"""``torch-cpu``: the PyTorch model itself, FP32 on the CPU; the reference every other backend meets."""

from __future__ import annotations

from typing import Dict, Mapping, Optional

import numpy as np

from ..runtime.backends.base import Backend

__all__ = ["TorchCpuBackend"]


class TorchCpuBackend(Backend):
    name = "torch-cpu"
    kind = "torch"
    precisions = ("fp32",)

    @classmethod
    def available(cls) -> Optional[str]:
        try:
            import torch  # noqa: F401
        except ImportError:
            return "torch is not installed (pip install 'attn-export[train]')"
        return None

    def _open(self) -> None:
        import torch

        from ..checkpoint import build_model

        assert self.artifact.info is not None
        self.model = build_model(self.artifact.info, self.artifact.data, str(self.artifact.path))
        if self.threads:
            torch.set_num_threads(self.threads)

    def _run(self, feeds: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        import torch

        with torch.inference_mode():
            head, attention = self.model(torch.from_numpy(feeds["x"]), torch.from_numpy(feeds["lengths"]))
        return {self.spec.outputs[0].name: head.numpy(), "attention": attention.numpy()}
