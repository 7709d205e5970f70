"""One graph that every runtime reads the same way: the constructs independent ONNX implementations are
known to treat differently, and the pass that keeps them out of what attn-export writes.

    findings = divergences(proto)          # [Divergence(construct, nodes, runtimes)], for inspect and export
    make_portable(proto)                   # in place: what export and quantize apply before writing
    prune(proto)                           # in place: the nodes and initializers nothing reads, removed

Each entry of :data:`CONSTRUCTS` was seen here or is documented upstream; ``export`` refuses a graph with
any of them, ``inspect`` names them in any ONNX file, and the conformance table of ``verify`` shows what
each runtime really computed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

__all__ = ["CONSTRUCTS", "Construct", "Divergence", "divergences", "make_portable", "matmul_before_transpose",
           "prune"]

LSTM_SEQUENCE_LENS = 4  # the ONNX LSTM's input position


@dataclass(frozen=True)
class Construct:
    name: str
    runtimes: str  # who treats it differently, and how (measured or documented)
    matches: Callable[[Any, dict[str, Any]], bool]  # (node, tensor types by name) -> found


@dataclass(frozen=True)
class Divergence:
    construct: str
    runtimes: str
    nodes: list[str]

    def __str__(self) -> str:
        shown = ", ".join(self.nodes[:3]) + (f" and {len(self.nodes) - 3} more" if len(self.nodes) > 3 else "")
        return f"{self.construct} ({shown}): {self.runtimes}"


def _attribute(node: Any, name: str, default: Any = None) -> Any:
    import onnx

    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


_FLOAT16 = 10  # onnx.TensorProto.FLOAT16
_FED_BY_TRANSPOSE = "(MatMul nodes of a Transpose by a weight)"  # a key of the type table no tensor can have


def _float16_gemm(node: Any, types: dict[str, Any]) -> bool:
    return node.op_type == "Gemm" and any(types.get(i) == _FLOAT16 for i in node.input)


CONSTRUCTS = (
    Construct("LSTM with a runtime sequence_lens",
              "OpenVINO 2026.4 computes padded bidirectional batches differently (logits off by 1.7 to 7.3, "
              "measured); tract 0.23.9 refuses it (\"Non constant seq_len is not supported\"); ONNX Runtime's "
              "TensorRT provider has a reported bug with it (microsoft/onnxruntime#16885); onnx 1.23.2's "
              "reference evaluator ignores it",
              lambda n, t: n.op_type in ("LSTM", "DynamicQuantizeLSTM") and len(n.input) > LSTM_SEQUENCE_LENS
              and bool(n.input[LSTM_SEQUENCE_LENS])),
    Construct("LSTM with layout=1", "TensorRT's ONNX parser ignores the layout attribute",
              lambda n, t: n.op_type == "LSTM" and _attribute(n, "layout", 0) != 0),
    Construct("ConstantOfShape without a value attribute",
              "the ONNX default is a float32 zero; tract 0.23.9 types it as float64 and refuses the graph",
              lambda n, t: n.op_type == "ConstantOfShape" and not any(a.name == "value" for a in n.attribute)),
    Construct("GatherElements", "onnx 1.23.2's reference evaluator fails on axes longer than 64 (np.choose)",
              lambda n, t: n.op_type == "GatherElements"),
    Construct("Gemm in FP16", "tract 0.23.9 types its output as FP32 and refuses the graph", _float16_gemm),
    Construct("operators outside the standard ONNX domain",
              "only a runtime that implements that domain reads them. ONNX Runtime's com.microsoft operators "
              "(DynamicQuantizeLSTM, ...): tract 0.23.9 and onnx's reference "
              "evaluator cannot read them, TensorRT cannot build them; OpenVINO 2026.4 reads DynamicQuantizeLSTM "
              "with a dynamic quantisation of its own (other numbers, measured)",
              lambda n, t: n.domain not in ("", "ai.onnx")),
    Construct("FP16 MatMul of a Transpose by a constant weight",
              "ONNX Runtime 1.31.1 and 1.32.0 crash (segmentation fault) creating a CPU session at the default "
              "optimisation level (its MatmulTransposeFusion and NchwcTransformer together)",
              lambda n, t: n.op_type == "MatMul" and len(n.input) == 2 and t.get(n.input[0]) == _FLOAT16
              and n.name in t.get(_FED_BY_TRANSPOSE, ())),
    Construct("Loop or Scan", "the recurrence was not exported as an LSTM node: TensorRT builds it slowly, if at all",
              lambda n, t: n.op_type in ("Loop", "Scan")),
)


def _types(proto: Any) -> dict[str, Any]:
    """Element type of every tensor shape inference can type (initializers, inputs, intermediates)."""
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(proto)
    except Exception:  # a graph the checker refuses still gets its other constructs named
        inferred = proto
    values = list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output)
    types = {v.name: v.type.tensor_type.elem_type for v in values}
    types.update({t.name: t.data_type for t in inferred.graph.initializer})
    produced = {o: n.op_type for n in proto.graph.node for o in n.output}
    weights = {t.name for t in proto.graph.initializer}
    types[_FED_BY_TRANSPOSE] = {n.name for n in proto.graph.node if n.op_type == "MatMul" and len(n.input) == 2
                                and produced.get(n.input[0]) == "Transpose" and n.input[1] in weights}
    return types


def divergences(proto: Any) -> list[Divergence]:
    """Every construct of :data:`CONSTRUCTS` found in ``proto``'s main graph, with the nodes showing it."""
    types = _types(proto)
    found = []
    for construct in CONSTRUCTS:
        nodes = [n.name or n.op_type for n in proto.graph.node if construct.matches(n, types)]
        if nodes:
            found.append(Divergence(construct.name, construct.runtimes, nodes))
    return found


def _consumers(nodes: Iterable[Any]) -> dict[str, int]:
    count: dict[str, int] = {}
    for node in nodes:
        for name in node.input:
            count[name] = count.get(name, 0) + 1
    return count


def matmul_before_transpose(proto: Any) -> None:
    """An FP16 ``MatMul(Transpose(X), W)`` with a constant W, whose Transpose keeps the last axis, becomes
    ``Transpose(MatMul(X, W))`` (in place): the same numbers, and no Transpose feeds an FP16 MatMul, which
    crashes ONNX Runtime 1.31/1.32 at its default optimisation level (``CONSTRUCTS``)."""
    from onnx import helper

    types = _types(proto)
    produced = {o: n for n in proto.graph.node for o in n.output}
    weights = {t.name for t in proto.graph.initializer}
    for matmul in [n for n in proto.graph.node if n.op_type == "MatMul"]:
        transpose = produced.get(matmul.input[0])
        if (transpose is None or transpose.op_type != "Transpose" or matmul.input[1] not in weights
                or types.get(matmul.input[0]) != _FLOAT16):
            continue
        perm = list(_attribute(transpose, "perm") or [])
        if not perm or perm[-1] != len(perm) - 1:
            continue
        product = f"{matmul.output[0]}.untransposed"
        index = list(proto.graph.node).index(matmul)
        proto.graph.node.remove(matmul)
        proto.graph.node.insert(index, helper.make_node("MatMul", [transpose.input[0], matmul.input[1]], [product],
                                                        name=matmul.name))
        proto.graph.node.insert(index + 1, helper.make_node("Transpose", [product], [matmul.output[0]], perm=perm,
                                                            name=f"{matmul.name}.transpose"))


def fp32_fills(proto: Any) -> None:
    """An FP16 ``ConstantOfShape`` becomes an FP32 one and a ``Cast`` to FP16 (in place): the same tensor,
    exactly (a fill is one number, exact in both), and a graph TensorRT 8.5's parser reads: its
    operators.md lists ConstantOfShape for FP32 only (``runtime.trt.readiness``: JetPack 5)."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    for node in [n for n in proto.graph.node if n.op_type == "ConstantOfShape"]:
        value = _attribute(node, "value")
        if value is None or value.data_type != TensorProto.FLOAT16:
            continue
        fill = numpy_helper.to_array(value).astype(np.float32)
        for attribute in [a for a in node.attribute if a.name == "value"]:
            node.attribute.remove(attribute)
        node.attribute.append(helper.make_attribute("value", numpy_helper.from_array(fill)))
        wanted = node.output[0]
        node.output[0] = f"{wanted}.fp32"
        index = list(proto.graph.node).index(node)
        proto.graph.node.insert(index + 1, helper.make_node("Cast", [node.output[0]], [wanted],
                                                            to=TensorProto.FLOAT16, name=f"{node.name}.cast"))


def make_portable(proto: Any) -> None:
    """Rewrite ``proto`` (in place) into the plainest equivalent: the exporters' value_info hints go (the
    dynamo exporter leaves the example's length in them, which ONNX Runtime warns about and other readers
    may trust); a ConstantOfShape without a value (the LSTMs' zero initial states, from the dynamo
    exporter) gets its default spelled out, float32 zero, which tract otherwise types as float64; nodes
    nobody reads are removed. (Leaving the zero initial states to the LSTM's default instead makes tract
    0.23.9 panic on the symbolic batch.)"""
    import numpy as np
    from onnx import helper, numpy_helper

    del proto.graph.value_info[:]
    for node in proto.graph.node:
        if node.op_type == "ConstantOfShape" and _attribute(node, "value") is None:
            node.attribute.append(helper.make_attribute("value", numpy_helper.from_array(np.zeros(1, np.float32))))
    prune(proto)


def prune(proto: Any) -> None:
    """Remove the nodes nobody reads and the initializers no node reads (in place)."""
    outputs = {o.name for o in proto.graph.output}
    while True:
        readers = _consumers(proto.graph.node)
        dead = [n for n in proto.graph.node if not any(readers.get(o) or o in outputs for o in n.output)]
        if not dead:
            break
        for node in dead:
            proto.graph.node.remove(node)
    used = _consumers(proto.graph.node)
    for init in [t for t in proto.graph.initializer if t.name not in used]:
        proto.graph.initializer.remove(init)
