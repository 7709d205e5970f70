"""``torch-cuda``: the PyTorch model in FP32 on a CUDA device (cuDNN's LSTM; the GPU baseline TensorRT
has to beat). Python 3.8-compatible; imports torch only when asked."""

from __future__ import annotations

from typing import Callable, Dict, Mapping, Optional, Tuple

import numpy as np

from .pyt import TorchCpuBackend

__all__ = ["TorchCudaBackend"]


class TorchCudaBackend(TorchCpuBackend):
    name = "torch-cuda"
    kind = "torch"
    device = "cuda"
    precisions = ("fp32",)
    _tf32: Optional[Tuple[bool, bool]] = None  # (cudnn, matmul) TF32 switches to restore on close

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
        """FP32 means FP32: cuDNN's RNNs and cuBLAS may use TF32 (a 10-bit mantissa) on Ampere and later,
        which moved logits by 3.4e-3 on an H200 (seen with verify); it is switched off while the backend is
        open and restored on close."""
        import torch

        super()._open()
        self._tf32 = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
        self._device = torch.device("cuda", 0)
        self.model = self.model.to(self._device)

    def close(self) -> None:
        saved = self._tf32
        if saved is not None:
            import torch

            torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
            self._tf32 = None
        super().close()

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
