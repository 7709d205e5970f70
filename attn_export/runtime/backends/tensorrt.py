"""``tensorrt``: a built engine on TensorRT's native runtime, with the name-based API (TensorRT 8.5+):
``set_input_shape``, ``set_tensor_address``, ``execute_async_v3``. Buffers come from torch or cuda-python
(``attn_export.trt.memory``), so it runs on a device without torch. Python 3.8-compatible.

The engine is untrusted until the store vouches for it (``runtime.store``): its sha256, its whole lineage,
the GPU and TensorRT it was built for, and (for version-compatible engines, which embed host code) the
user's opt-in are all checked before this backend is made; TensorRT then deserialises the very bytes the
store hashed. Inputs outside the optimisation profile are refused with the profile's limits; ``lengths``
is cast to int32 where the engine has no INT64.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Dict, Mapping, Optional

import numpy as np

from ...errors import BadInput, NotAvailable, WorkFailed
from ..precisions import build_flag
from ..store.names import build_command
from ..trt.device import query_gpus
from ..trt.importer import tensorrt_missing
from ..trt.memory import DeviceMemory, memory_missing, open_memory
from ..trt.profile import Profile
from .base import Backend

if TYPE_CHECKING:
    import tensorrt as trt

    from ..store import Artifact

__all__ = ["TensorRTBackend"]


def _numpy_dtypes() -> Dict[Any, Any]:
    import tensorrt as trt

    table: Dict[Any, Any] = {trt.DataType.FLOAT: np.float32, trt.DataType.HALF: np.float16,
                             trt.DataType.INT32: np.int32, trt.DataType.BOOL: np.bool_}
    if hasattr(trt.DataType, "INT64"):
        table[trt.DataType.INT64] = np.int64
    return table


class TensorRTBackend(Backend):
    name = "tensorrt"
    kind = "engine"
    device = "cuda"
    precisions = ("fp32", "fp16", "int8-qdq")
    supports_cuda_graph = True
    threaded = False  # the engine runs on the GPU: no CPU threads to set

    def __init__(self, artifact: Artifact, threads: Optional[int] = None) -> None:
        super().__init__(artifact, threads)
        self.memory: Optional[DeviceMemory] = None

    @classmethod
    def available(cls) -> Optional[str]:
        gpus = query_gpus()
        reasons = [r for r in (None if gpus.gpus else gpus.reason, tensorrt_missing(), memory_missing()) if r]
        return "; ".join(reasons) if reasons else None

    def profile(self) -> Profile:
        """The engine's optimisation profile, from its manifest entry (no GPU needed)."""
        profile = self.artifact.profile
        if profile is None:
            raise BadInput(f"{self.artifact.name} is not recorded in manifest.json with its profile; rebuild it "
                           f"with {build_command(self.artifact.directory, build_flag(self.artifact.precision))}")
        return profile

    def accepts(self, batch: int, seq: int) -> Optional[str]:
        try:
            return self.profile().accepts(batch, seq)
        except BadInput as e:
            return str(e)

    def _open(self) -> None:
        import tensorrt as trt

        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        if self.artifact.entry.get("host_code"):
            self._runtime.engine_host_code_allowed = True  # the user opted in (the store checked it)
        engine = self._runtime.deserialize_cuda_engine(self.artifact.data)
        if engine is None:
            raise WorkFailed(f"TensorRT {trt.__version__} could not deserialise {self.artifact.name}")
        self._engine: trt.ICudaEngine = engine
        context = engine.create_execution_context()
        if context is None:  # e.g. too little device memory for its activations (review: was an AttributeError)
            raise WorkFailed(f"TensorRT {trt.__version__} could not create an execution context for "
                             f"{self.artifact.name} (too little free device memory?)")
        self._context: trt.IExecutionContext = context
        dtypes = _numpy_dtypes()
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        declared = [t.name for t in self.spec.inputs + self.spec.outputs]
        if sorted(names) != sorted(declared):
            raise WorkFailed(f"{self.artifact.name} has tensors {sorted(names)}; its manifest entry records "
                             f"{sorted(declared)}")
        self._inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self._outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        self._dtypes = {n: np.dtype(dtypes[engine.get_tensor_dtype(n)]) for n in names}
        self.memory = open_memory(0)
        self._pointers = {n: self.memory.alloc(self._max_bytes(n)) for n in names}
        for n, ptr in self._pointers.items():
            self._context.set_tensor_address(n, ptr)

    def _max_bytes(self, name: str) -> int:
        """Bytes of ``name`` at the profile's largest shape: buffers are allocated once, at open."""
        profile = self.profile()
        tensor = next(t for t in self.spec.inputs + self.spec.outputs if t.name == name)
        size = 1
        for d in tensor.dims:
            size *= profile.batch.max if d == "batch" else profile.seq.max if d == profile.axis else int(d)
        return size * self._dtypes[name].itemsize

    def _stage(self, feeds: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        """Set shapes, copy the inputs to the device, and return empty host arrays for the outputs."""
        batch, seq = feeds["x"].shape[:2]
        reason = self.profile().accepts(int(batch), int(seq))
        if reason is not None:
            raise BadInput(f"{self.artifact.name}: {reason}")
        assert self.memory is not None
        for n in self._inputs:
            host = np.ascontiguousarray(feeds[n], dtype=self._dtypes[n])  # lengths: int64 -> int32 on TensorRT 8.x
            if not self._context.set_input_shape(n, tuple(host.shape)):
                raise BadInput(f"{self.artifact.name} refuses {n} of shape {host.shape}")
            self.memory.to_device(self._pointers[n], host)
        outputs: Dict[str, np.ndarray] = {}
        for n in self._outputs:
            dims = self._context.get_tensor_shape(n)
            shape = tuple(int(dims[i]) for i in range(len(dims)))
            outputs[n] = np.empty(shape, dtype=self._dtypes[n])
        return outputs

    def _enqueue(self) -> None:
        assert self.memory is not None
        if not self._context.execute_async_v3(self.memory.stream_handle):
            raise WorkFailed(f"TensorRT failed to enqueue {self.artifact.name}")

    def _run(self, feeds: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        assert self.memory is not None
        outputs = self._stage(feeds)
        self._enqueue()
        for n, host in outputs.items():
            self.memory.to_host(host, self._pointers[n])
        self.memory.synchronize()
        return {n: host.astype(np.float32) if host.dtype == np.float16 else host for n, host in outputs.items()}

    def runner(self, feeds: Mapping[str, np.ndarray], cuda_graph: bool = False) -> Callable[[], Optional[float]]:
        """Inputs staged on the device once; each call enqueues (or launches the captured graph) and
        returns the CUDA-event milliseconds."""
        self.spec.check_feeds(feeds)
        memory = self.memory
        if memory is None:
            raise RuntimeError(f"{self.name}: runner() called outside 'with backend:'")
        self._stage(feeds)
        launch = self._enqueue
        if cuda_graph:
            try:
                launch = memory.capture(self._enqueue)
            except (RuntimeError, WorkFailed) as e:  # engines with loops may not be capturable
                raise NotAvailable(f"{self.artifact.name} cannot be captured in a CUDA graph: {e}") from None

        def run() -> Optional[float]:
            return memory.timed(launch)

        return run

    def close(self) -> None:
        if self.memory is not None:
            self.memory.close()
            self.memory = None
        for attr in ("_context", "_engine", "_runtime"):
            if hasattr(self, attr):
                delattr(self, attr)  # context before engine before runtime: TensorRT's destruction order
        super().close()
