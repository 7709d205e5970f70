"""``torch-cuda``: the PyTorch model in FP32 on a CUDA device (cuDNN's LSTM; the GPU baseline TensorRT
has to beat). Python 3.8-compatible; imports torch only when asked."""

from __future__ import annotations

from typing import Callable, Dict, Mapping, Optional

import numpy as np

from .pyt import TorchCpuBackend

__all__ = ["TorchCudaBackend"]


class TorchCudaBackend(TorchCpuBackend):
    name = "torch-cuda"
    kind = "torch"
    device = "cuda"
    precisions = ("fp32",)

    @classmethod
    def available(cls) -> Optional[str]:
        try:
            import torch
        except ImportError:
            return "torch is not installed (pip install 'attn-export[train]' with a CUDA build of torch)"
        if torch.version.cuda is None:
            return f"torch {torch.__version__} is a CPU-only build (install a CUDA build of torch)"
        if not torch.cuda.is_available():
            return "torch finds no CUDA device"
        return None

    def _open(self) -> None:
        import torch

        super()._open()
        self._device = torch.device("cuda", 0)
        self.model = self.model.to(self._device)

    def _run(self, feeds: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        import torch

        with torch.inference_mode():
            x = torch.from_numpy(feeds["x"]).to(self._device)
            lengths = torch.from_numpy(feeds["lengths"]).to(self._device)
            head, attention = self.model(x, lengths)
        return {self.spec.outputs[0].name: head.cpu().numpy(), "attention": attention.cpu().numpy()}

    def runner(self, feeds: Mapping[str, np.ndarray], cuda_graph: bool = False) -> Callable[[], Optional[float]]:
        """Inputs copied to the device once; each call runs the model between two CUDA events and returns
        the device milliseconds."""
        import torch

        self.spec.check_feeds(feeds)
        if cuda_graph:
            raise NotImplementedError(f"{self.name} cannot capture CUDA graphs (the LSTM's masking is data-dependent)")
        x = torch.from_numpy(feeds["x"]).to(self._device)
        lengths = torch.from_numpy(feeds["lengths"]).to(self._device)
        model = self.model

        def run() -> Optional[float]:
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            with torch.inference_mode():
                start.record()
                model(x, lengths)
                end.record()
            end.synchronize()
            return float(start.elapsed_time(end))

        return run
