"""Device memory, one stream, CUDA-event timing and CUDA graphs, through torch or cuda-python.

The TensorRT runtime needs raw device pointers and a stream handle; either library provides them. torch is
preferred where it has CUDA (one less package on a workstation); cuda-python (``cuda.bindings.runtime``, or
the older ``cuda.cudart``) serves the device side, which must run without torch. Nothing here is imported
until a backend opens. Python 3.8-compatible.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional

import numpy as np

from ..errors import NotAvailable, WorkFailed

__all__ = ["DeviceMemory", "memory_missing", "open_memory"]


class DeviceMemory:
    """Buffers on one device and one stream; copies are asynchronous on that stream."""

    kind = "none"
    stream_handle = 0

    def alloc(self, nbytes: int) -> int:
        raise NotImplementedError

    def to_device(self, ptr: int, host: np.ndarray) -> None:
        raise NotImplementedError

    def to_host(self, host: np.ndarray, ptr: int) -> None:
        raise NotImplementedError

    def synchronize(self) -> None:
        raise NotImplementedError

    def timed(self, fn: Callable[[], None]) -> float:
        """Run ``fn`` (which enqueues on the stream) between two CUDA events; the device milliseconds."""
        raise NotImplementedError

    def capture(self, fn: Callable[[], None]) -> Callable[[], None]:
        """Capture what ``fn`` enqueues into a CUDA graph (after one warm-up run); the graph's launcher."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class _TorchMemory(DeviceMemory):
    kind = "torch"

    def __init__(self, index: int) -> None:
        import torch

        self._torch = torch
        self._device = torch.device("cuda", index)
        self._stream = torch.cuda.Stream(device=self._device)
        self.stream_handle = int(self._stream.cuda_stream)
        self._buffers: Dict[int, torch.Tensor] = {}
        self._graphs: List[torch.cuda.CUDAGraph] = []

    def alloc(self, nbytes: int) -> int:
        t = self._torch.empty(max(nbytes, 1), dtype=self._torch.uint8, device=self._device)
        self._buffers[t.data_ptr()] = t
        return int(t.data_ptr())

    def _bytes(self, host: np.ndarray) -> Any:
        return self._torch.from_numpy(np.ascontiguousarray(host).view(np.uint8).reshape(-1))

    def to_device(self, ptr: int, host: np.ndarray) -> None:
        with self._torch.cuda.stream(self._stream):
            self._buffers[ptr][: host.nbytes].copy_(self._bytes(host), non_blocking=True)

    def to_host(self, host: np.ndarray, ptr: int) -> None:
        if not host.flags.c_contiguous:
            raise ValueError("to_host needs a C-contiguous array")
        with self._torch.cuda.stream(self._stream):
            self._torch.from_numpy(host.view(np.uint8).reshape(-1)).copy_(self._buffers[ptr][: host.nbytes])

    def synchronize(self) -> None:
        self._stream.synchronize()

    def timed(self, fn: Callable[[], None]) -> float:
        start = self._torch.cuda.Event(enable_timing=True)
        end = self._torch.cuda.Event(enable_timing=True)
        start.record(self._stream)
        fn()
        end.record(self._stream)
        end.synchronize()
        return float(start.elapsed_time(end))

    def capture(self, fn: Callable[[], None]) -> Callable[[], None]:
        fn()
        self.synchronize()
        graph = self._torch.cuda.CUDAGraph()
        with self._torch.cuda.graph(graph, stream=self._stream):
            fn()
        self._graphs.append(graph)
        torch, stream = self._torch, self._stream

        def launch() -> None:
            with torch.cuda.stream(stream):
                graph.replay()

        return launch

    def close(self) -> None:
        self.synchronize()
        self._graphs.clear()
        self._buffers.clear()


def _cudart() -> Any:
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        from cuda import cudart  # older cuda-python
    return cudart


class _CudaPythonMemory(DeviceMemory):
    kind = "cuda-python"

    def __init__(self, index: int) -> None:
        self._rt = _cudart()
        self._call("cudaSetDevice", index)
        (stream,) = self._call("cudaStreamCreate")
        self._stream = stream
        self.stream_handle = int(stream)
        self._pointers: List[int] = []
        self._graphs: List[Any] = []

    def _call(self, name: str, *args: Any) -> Any:
        result = getattr(self._rt, name)(*args)
        err, rest = result[0], result[1:]
        if err != self._rt.cudaError_t.cudaSuccess:
            _, text = self._rt.cudaGetErrorString(err)
            raise WorkFailed(f"{name} failed: {text.decode() if isinstance(text, bytes) else text}")
        return rest

    def alloc(self, nbytes: int) -> int:
        (ptr,) = self._call("cudaMalloc", max(nbytes, 1))
        self._pointers.append(int(ptr))
        return int(ptr)

    def to_device(self, ptr: int, host: np.ndarray) -> None:
        host = np.ascontiguousarray(host)
        self._call("cudaMemcpyAsync", ptr, host.ctypes.data, host.nbytes,
                   self._rt.cudaMemcpyKind.cudaMemcpyHostToDevice, self._stream)
        self.synchronize()  # the source is pageable memory the caller may free as soon as this returns

    def to_host(self, host: np.ndarray, ptr: int) -> None:
        if not host.flags.c_contiguous:
            raise ValueError("to_host needs a C-contiguous array")
        self._call("cudaMemcpyAsync", host.ctypes.data, ptr, host.nbytes,
                   self._rt.cudaMemcpyKind.cudaMemcpyDeviceToHost, self._stream)

    def synchronize(self) -> None:
        self._call("cudaStreamSynchronize", self._stream)

    def timed(self, fn: Callable[[], None]) -> float:
        (start,) = self._call("cudaEventCreate")
        (end,) = self._call("cudaEventCreate")
        try:
            self._call("cudaEventRecord", start, self._stream)
            fn()
            self._call("cudaEventRecord", end, self._stream)
            self._call("cudaEventSynchronize", end)
            (ms,) = self._call("cudaEventElapsedTime", start, end)
            return float(ms)
        finally:
            self._call("cudaEventDestroy", start)
            self._call("cudaEventDestroy", end)

    def capture(self, fn: Callable[[], None]) -> Callable[[], None]:
        fn()
        self.synchronize()
        self._call("cudaStreamBeginCapture", self._stream,
                   self._rt.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal)
        fn()
        (graph,) = self._call("cudaStreamEndCapture", self._stream)
        (graph_exec,) = self._call("cudaGraphInstantiateWithFlags", graph, 0)
        self._graphs.append((graph, graph_exec))

        def launch() -> None:
            self._call("cudaGraphLaunch", graph_exec, self._stream)

        return launch

    def close(self) -> None:
        self.synchronize()
        for graph, graph_exec in self._graphs:
            self._call("cudaGraphExecDestroy", graph_exec)
            self._call("cudaGraphDestroy", graph)
        for ptr in self._pointers:
            self._call("cudaFree", ptr)
        self._call("cudaStreamDestroy", self._stream)
        self._graphs, self._pointers = [], []


def _torch_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def memory_missing() -> Optional[str]:
    """None when device buffers can be had here, else why not."""
    if _torch_cuda():
        return None
    try:
        _cudart()
    except ImportError:
        return "neither torch with CUDA nor cuda-python is installed (pip install cuda-python)"
    return None


def open_memory(index: int = 0, prefer: Optional[str] = None) -> DeviceMemory:
    """Device memory through torch (when it has CUDA) or cuda-python; ``prefer`` forces one."""
    if prefer in (None, "torch") and _torch_cuda():
        return _TorchMemory(index)
    if prefer == "torch":
        raise NotAvailable("torch with CUDA is not available for device buffers")
    try:
        return _CudaPythonMemory(index)
    except ImportError:
        raise NotAvailable("device buffers need torch with CUDA or cuda-python (pip install cuda-python)") from None
