"""``ort-cpu``: ONNX Runtime's CPU execution provider, and ``ort_session``: the one place an ONNX Runtime
session is made (every ORT backend, ``quantize`` and ``Predictor`` open theirs here), from the bytes the
store checked (never the path: a file swapped since is not what runs), refusing a construct that crashes
ONNX Runtime, with the options users get by default.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Mapping, Optional, Sequence, Set, Tuple, Union

import numpy as np

from ...errors import BadInput, NotAvailable, WorkFailed, printable
from ..limits import missing
from ..onnxfile import Graph, refuse_known_crash
from ..trt.precision import parse_version
from .base import Backend

if TYPE_CHECKING:
    from ..store import Artifact

__all__ = ["EXACT_INT8", "INTEGER_WEIGHTS", "ORT_MIN", "OrtCpuBackend", "Provider", "VNNI", "exact_int8",
           "int8_kernels", "ort_providers", "ort_session", "plain_session_needs", "signed_weights", "signs_weights"]

# the oldest ONNX Runtime the device package is tested with (the last release for Python 3.8: JetPack 5's
# Python); a CPU bundle's requirements.txt and the host's extras (pyproject.toml) ask for it or later, so pip
# replaces an older one already there
ORT_MIN = "1.19.2"

Provider = Union[str, Tuple[str, Dict[str, Any]]]

# ONNX Runtime's INT8 kernels on an x86 CPU without VNNI (SSE4.1, AVX2, AVX-512 without VNNI) add each pair of
# u8 x s8 products in 16 bits, saturating (VPMADDUBSW); with VNNI or AMX they add them in 32 bits, exactly. So
# on a CPU without it a session of an INT8 graph gets the option that keeps its products exact: a dynamic
# graph's s8 weights shifted to u8 (u8 x u8), a Q/DQ graph's activations kept s8 (s8 x s8, which symmetric
# quantisation keeps in range; chosen when the Q/DQ graph still quantised the attention's product of two
# activations, which the other option left u8 x s8; both together fail to load: no s8 x u8 QGemm). An INT8
# graph then gives on every x86 CPU the integers a VNNI one
# gives, so a verdict judged on one holds on the other (measured under QEMU's Haswell, README). Where VNNI is,
# the products are exact either way: the Q/DQ graph's option is not set there (s8 x s8 took 1.13-1.16x the
# time at 1 x 128 and 32 x 128 on an Intel Xeon with AMX). A dynamic graph attn-export makes stores its weights
# as u8 (``INTEGER_WEIGHTS``), so a plain session of it needs no option (``plain_session_needs``); where AMX is,
# the u8 x u8 kernels are also the faster ones at batch 1, the only batch predict, verify and bench run it at
# (0.79-0.89x the time of AMX's u8 x s8 on an Intel Xeon), and an older graph's s8 weights get the option that
# makes them u8. Where VNNI is and AMX is not, ONNX Runtime's u8 x s8 kernels are VNNI's (VPDPBUSD, and a
# single-row one) and its u8 x u8 ones are not: attn-export's sessions open the dynamic graph with its u8
# weights as s8 there (``signed_weights``: the same integers, each byte XOR 0x80), no option (0.78-0.80x the
# time at 1 x 128 on an AMD EPYC Zen 4 with ONNX Runtime 1.32, outputs bit for bit the same; 1.19.2, a device's,
# times both alike).
EXACT_INT8 = {"int8-dynamic": ("session.x64quantprecision", "1"), "int8-qdq": ("session.qdqisint8allowed", "1")}
# a dynamic INT8 graph's integer operators (ONNX Runtime's quantize_dynamic): op_type -> the (constant weight,
# its zero point) input pairs, which ONNX Runtime multiplies by u8 activations. Stored as s8 they make u8 x s8
# products; shifted to u8 (+128, zero point 128: the same integers) they make u8 x u8, which ONNX Runtime adds
# exactly on every CPU, as the option does inside a session
INTEGER_WEIGHTS = {"DynamicQuantizeLSTM": ((1, 9), (2, 11)), "MatMulInteger": ((1, 3),), "ConvInteger": ((1, 3),)}
INT8 = 3  # TensorProto.DataType
ON_EVERY_X86 = ("int8-dynamic",)  # its option set where AMX is too (above)
VNNI = ("avx512_vnni", "avx_vnni", "amx_int8")  # the ISA flags whose INT8 products are exact (``timing.ISA_FLAGS``)
AMX = "amx_int8"  # where ONNX Runtime's u8 x s8 kernels are AMX's tiles, slower for one row than its u8 x u8 ones
UINT8 = 2  # TensorProto.DataType
SIGNED_OPERATORS = ("DynamicQuantizeLSTM", "MatMulInteger")  # whose u8 weights ``signed_weights`` gives as s8
X86 = ("x86_64", "amd64", "i386", "i686", "x86")


def exact_int8(precision: Optional[str], machine: Optional[str] = None,
               isa: Optional[Sequence[str]] = None) -> Optional[Tuple[str, str]]:
    """The session option that keeps ``precision``'s integer products exact on this CPU (``EXACT_INT8``), or
    None where it has none, or its default kernels are exact already and faster (not x86; a Q/DQ graph on a
    CPU with VNNI; a dynamic graph on one with VNNI and without AMX, opened with s8 weights: ``signs_weights``).
    ``machine`` and ``isa`` default to this CPU's (``platform.machine``, ``timing.cpu_name``);
    an x86 CPU whose flags are unknown (no /proc/cpuinfo) gets the option."""
    import platform

    from ..timing import cpu_name

    if precision not in EXACT_INT8 or (machine or platform.machine()).lower() not in X86:
        return None
    flags = set(cpu_name()[1] if isa is None else isa)
    if flags & set(VNNI) and (precision not in ON_EVERY_X86 or signs_weights(precision, machine, list(flags))):
        return None
    return EXACT_INT8[precision]


def signs_weights(precision: Optional[str], machine: Optional[str] = None,
                  isa: Optional[Sequence[str]] = None) -> bool:
    """Whether attn-export's sessions open ``precision``'s graph with the u8 weights of its integer operators
    as s8 (``signed_weights``): a dynamic INT8 graph on an x86 CPU with VNNI and without AMX, where ONNX
    Runtime's u8 x s8 kernels are the faster ones and exact (``EXACT_INT8``'s comment). ``machine`` and
    ``isa`` default to this CPU's."""
    import platform

    from ..timing import cpu_name

    if precision not in ON_EVERY_X86 or (machine or platform.machine()).lower() not in X86:
        return False
    flags = set(cpu_name()[1] if isa is None else isa)
    return bool(flags & set(VNNI)) and AMX not in flags


def signed_weights(graph: Graph) -> Dict[str, np.ndarray]:
    """The u8 weights and zero points of ``graph``'s ``DynamicQuantizeLSTM`` and ``MatMulInteger`` nodes
    (``SIGNED_OPERATORS``) as s8, by initializer name: each byte XOR 0x80, its value minus 128, so weight minus
    zero point, the integer each product takes, is unchanged. All or none: empty where a pair has no zero
    point input (ONNX's default 0 would not move with its weight), where one of them is not a u8 initializer
    whose bytes the file holds (an s8 one is used as it is), or is read by another node too. A ``ConvInteger``'s
    stay u8: ONNX Runtime before 1.24 has no s8 weights for it (1.19.2, a device's, failed every run)."""
    pairs = [(node, pair) for node in graph.nodes if node.op_type in SIGNED_OPERATORS
             for pair in INTEGER_WEIGHTS[node.op_type]]
    names: Set[str] = set()
    for node, pair in pairs:
        if any(i >= len(node.inputs) or not node.inputs[i] for i in pair):
            return {}
        names.update(node.inputs[i] for i in pair)
    readers = sum(1 for node in graph.nodes for name in node.inputs if name in names)
    if readers != sum(1 for node, pair in pairs for i in pair):  # one also read elsewhere, or twice
        return {}
    signed: Dict[str, np.ndarray] = {}
    for name in sorted(names):
        constant = graph.constants.get(name)
        if constant is None or name not in graph.initializer_types:
            return {}
        if constant.data_type == INT8:
            continue
        count = 1
        for d in constant.dims:  # Python's integers: no product wraps round to the raw data's length (review)
            count *= d
        if constant.data_type != UINT8 or constant.raw is None or len(constant.raw) != count or len(constant.dims) > 32:
            return {}  # 32: numpy's most dimensions
        values = np.frombuffer(constant.raw, np.uint8).reshape(constant.dims).copy()  # a scalar stays 0-d
        values ^= np.uint8(0x80)  # numpy 1.x: a Python int here is int64, which it will not cast
        signed[name] = values.view(np.int8)
    return signed


def plain_session_needs(precision: Optional[str], graph: Graph) -> Optional[str]:
    """The session option (``EXACT_INT8``'s key) that a plain ``InferenceSession`` of ``graph`` needs on an x86
    CPU without VNNI to give the integers verify judged: a Q/DQ graph's always (ONNX Runtime turns its s8
    activations into u8 when it loads it), a dynamic graph's only where a weight of its integer operators is
    s8 (``INTEGER_WEIGHTS``: a graph made before attn-export stored them as u8); None otherwise."""
    if precision not in EXACT_INT8:
        return None
    signed = any(getattr(graph.constants.get(node.inputs[weight]), "data_type", None) == INT8 for node in graph.nodes
                 for weight, _ in INTEGER_WEIGHTS.get(node.op_type, ()) if weight < len(node.inputs))
    return EXACT_INT8[precision][0] if precision == "int8-qdq" or signed else None


def ort_providers() -> Optional[List[str]]:
    try:
        import onnxruntime
    except ImportError:
        return None
    return list(onnxruntime.get_available_providers())


def ort_session(artifact: Artifact, providers: Sequence[Provider] = ("CPUExecutionProvider",),
                threads: Optional[int] = None, optimized: Optional[Path] = None) -> Any:
    """An ONNX Runtime session for ``artifact``'s bytes: ONNX Runtime's default options (the graph must open
    the way users open it) but for quiet logs, ``threads`` and exact INT8 products (``exact_int8``);
    ``optimized`` writes the graph as ONNX Runtime runs it (no optimisation but the mandatory ones) for
    inspection. The first provider must be active, or
    NotAvailable: never a silent fallback to the CPU."""
    import onnxruntime

    assert artifact.graph is not None
    try:
        refuse_known_crash(artifact.graph, f"the {artifact.name} just made" if artifact.made else artifact.path)
    except BadInput as e:  # a graph this process just made (``made``): the work failed, not the user's input
        raise (WorkFailed(str(e)) if artifact.made else e) from None
    # its own log is coloured lines before our one line: errors only while a session is made (why a GPU
    # provider did not load), none from a run (the error it raises is our line)
    onnxruntime.set_default_logger_severity(3)
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 4
    # ONNX Runtime reads an added initializer from its buffer for the session's life: kept on the session
    kept = int8_kernels(options, artifact.precision, artifact.graph)
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    if optimized is not None:
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
        options.optimized_model_filepath = str(optimized)
    first = providers[0] if isinstance(providers[0], str) else providers[0][0]
    try:
        session = onnxruntime.InferenceSession(artifact.data, sess_options=options, providers=list(providers))
    except Exception as e:  # onnxruntime raises its own Fail/InvalidGraph types, not exported stably
        if artifact.made:  # a graph this process just made: the work failed, nothing the user gave was bad
            raise WorkFailed(f"ONNX Runtime cannot load the {artifact.name} just made (not written) on {first}: "
                             f"{str(e).splitlines()[0]}") from None
        why = str(e).splitlines()[0]
        # an ONNX Runtime older than the one tested: not the file's fault, and not a verdict on it (found by
        # attacking: 1.11's refusal of opset 17 was a failure verify recorded, which a newer one could not clear)
        if parse_version(onnxruntime.__version__) < parse_version(ORT_MIN):
            raise NotAvailable(f"ONNX Runtime {onnxruntime.__version__}, older than {ORT_MIN} (the oldest the device "
                               f"package is tested with), cannot load {artifact.path} on {first} "
                               f"({printable(why, 160)}); expected ONNX Runtime {ORT_MIN} or later (a CPU bundle's "
                               "requirements.txt installs it; on a Jetson, NVIDIA's onnxruntime-gpu wheel)") from None
        raise BadInput(f"ONNX Runtime cannot load {artifact.path} on {first}: {why}") from None
    if first not in session.get_providers():
        raise NotAvailable(f"{first} was requested; the session has only {', '.join(session.get_providers())}")
    session.disable_fallback()  # a provider failing at run time is an error here, never a quiet rerun on the CPU
    session._attn_export_initializers = kept
    return session


def int8_kernels(options: Any, precision: Optional[str], graph: Graph) -> List[Any]:
    """Sets ``options`` for ``precision``'s INT8 kernels on this CPU: the option that keeps its products exact
    (``exact_int8``), or its u8 weights added as s8 (``signed_weights``, where ``signs_weights``). Returns the
    OrtValues added, which must outlive the session."""
    import onnxruntime

    exact = exact_int8(precision)
    if exact is not None:
        options.add_session_config_entry(*exact)
    kept = []
    for name, array in (signed_weights(graph) if signs_weights(precision) else {}).items():
        value = onnxruntime.OrtValue.ortvalue_from_numpy(array)
        options.add_initializer(name, value)
        kept.append(value)
    return kept


class OrtCpuBackend(Backend):
    name = "ort-cpu"
    kind = "onnx"
    provider = "CPUExecutionProvider"

    @classmethod
    def available(cls) -> Optional[str]:
        problem = missing("onnxruntime", "pip install onnxruntime")
        providers = ort_providers()
        if problem is not None or providers is None:
            return problem or "onnxruntime is not installed (pip install onnxruntime)"
        if cls.provider not in providers:
            return f"ONNX Runtime has no {cls.provider} (available: {', '.join(providers)})"
        return None

    def provider_options(self) -> Dict[str, Any]:
        return {}

    def providers(self) -> List[Provider]:
        """The providers the session is made with, in ONNX Runtime's order of preference: this one first."""
        return [(self.provider, self.provider_options())]

    def _open(self) -> None:
        self.session = ort_session(self.artifact, self.providers(), self.threads)
        self.output_names = [o.name for o in self.session.get_outputs()]

    def _run(self, feeds: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        try:
            outputs = self.session.run(self.output_names, feeds)
        except Exception as e:  # onnxruntime's Fail/InvalidArgument/RuntimeException are not exported stably
            raise self.cannot_run(feeds, str(e)) from None
        return dict(zip(self.output_names, outputs))

    def positional(self, names: Sequence[str]) -> Callable[[Mapping[str, np.ndarray]], List[np.ndarray]]:
        """The session's own ``run`` on ``names``: outputs by position, no intermediate dict (every Python step
        between two runs measured as overhead on a small model). An error from it is re-run through
        ``_run`` so that the caller gets the one-line message."""
        run, slow = self.session.run, self._run
        wanted = list(names)

        def call(feeds: Mapping[str, np.ndarray]) -> List[np.ndarray]:
            try:
                return run(wanted, feeds)
            except Exception:  # noqa: BLE001  # onnxruntime's own types; _run says what went wrong, in one line
                outputs = slow(feeds)
                return [outputs[n] for n in wanted]

        return call

    def close(self) -> None:
        self.session = None
        super().close()
