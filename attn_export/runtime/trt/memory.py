"""Device memory, one stream, CUDA-event timing and CUDA graphs, through cuda-python.

The TensorRT runtime needs raw device pointers and a stream handle; cuda-python (``cuda.bindings.runtime``,
or the older ``cuda.cudart``) provides them without torch, which a device usually does not have. Nothing
here is imported until a backend opens.
"""

from __future__ import annotations

from typing import Any, Callable, List, Optional

import numpy as np

from ...errors import NotAvailable, WorkFailed

__all__ = ["CUDA_PYTHON_HINT", "DeviceMemory", "memory_missing", "open_memory"]

# cuda-python's major must be the machine's CUDA's (JetPack 5: 11), and a bare pip install takes the newest:
# a Jetson bundle's requirements.txt pins it (found by attacking: the hint contradicted that pin)
CUDA_PYTHON_HINT = ("pip install 'cuda-python==MAJOR.*' for this machine's CUDA major, e.g. 12; a Jetson bundle: "
                    "python3 -m pip install -r requirements.txt, which pins it")


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
        try:
            fn()
        except BaseException:  # end the capture, or the stream stays capturing and every later call fails (review)
            err, graph = self._rt.cudaStreamEndCapture(self._stream)  # its own error is not the one to report
            if err == self._rt.cudaError_t.cudaSuccess and graph:
                self._rt.cudaGraphDestroy(graph)
            raise
        (graph,) = self._call("cudaStreamEndCapture", self._stream)
        try:
            (graph_exec,) = self._call("cudaGraphInstantiateWithFlags", graph, 0)
        except WorkFailed:
            self._rt.cudaGraphDestroy(graph)
            raise
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


def memory_missing() -> Optional[str]:
    """None when device buffers can be had here, else why not."""
    try:
        _cudart()
    except ImportError:
        return f"cuda-python is not installed ({CUDA_PYTHON_HINT})"
    return None


def select_device(index: int) -> None:
    """Make CUDA device ``index`` this thread's current device, the one TensorRT's builder builds and times on
    (found by review: ``BuildOptions.device`` recorded device 1's name while the builder ran on device 0)."""
    missing = memory_missing()
    if missing is not None:
        raise NotAvailable(f"building on CUDA device {index} needs cuda-python to select it: {missing}")
    rt = _cudart()
    (err,) = rt.cudaSetDevice(index)
    if err != rt.cudaError_t.cudaSuccess:
        raise WorkFailed(f"cudaSetDevice({index}) failed: {rt.cudaGetErrorString(err)[1]!r}")


def open_memory(index: int = 0) -> DeviceMemory:
    """Device memory through cuda-python."""
    try:
        return _CudaPythonMemory(index)
    except ImportError:
        raise NotAvailable(f"device buffers need cuda-python ({CUDA_PYTHON_HINT})") from None
