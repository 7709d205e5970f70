"""Will this graph parse and build on the TensorRT of a given JetPack or x86 line? A static check, without
TensorRT or a GPU, against what the onnx-tensorrt parser of that line documents.

    attn-export inspect model.onnx --target jetpack5      # findings: node, rule, version, what to do

``TARGETS`` maps the names users give their devices (``jetpack5``, ``jetpack6``, ``jetpack7``, ``trt10``,
``trt11``) to their TensorRT, CUDA and Python versions and to a ``Parser``: the opset range and the
per-operator support and restrictions of onnx-tensorrt's ``docs/operators.md`` at the revision named in
``Parser.source`` (read for this table; see the README for what could not be read), plus what the
importer code enforces beyond the table (e.g. 8.5 never reads LSTM's ``layout``). ``check`` walks every
node of a graph against one target and returns ``Finding``s; ``builds`` says which engine precision each
file of a directory builds on that target, or why none (the dynamic INT8 file is ONNX Runtime's own
operator, never a TensorRT input; TensorRT 11 takes FP16 only from an FP16 graph and INT8 only as Q/DQ).

Hand-written: nothing answers "will this parse on JetPack 5?" before the file reaches the device
(Polygraphy's ``inspect capability`` needs TensorRT and a GPU).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .errors import BadInput

__all__ = ["TARGETS", "Finding", "Parser", "Target", "builds", "check", "target"]

FLOAT, INT8_T, INT64_T, FLOAT16, BFLOAT16 = 1, 3, 7, 10, 16
_TYPE_NAMES = {1: "FP32", 2: "UINT8", 3: "INT8", 6: "INT32", 7: "INT64", 9: "BOOL", 10: "FP16", 11: "DOUBLE",
               16: "BF16"}
# operators every line parses with no restriction that attn-export's graphs can meet
_PLAIN = frozenset({"Add", "Sub", "Mul", "Div", "Concat", "Constant", "Identity", "Reshape", "Shape", "Transpose",
                    "Equal", "Less", "LessOrEqual", "Gather", "Gemm", "MatMul", "Softmax", "Tanh", "Where", "Range",
                    "Cast", "ConstantOfShape", "LSTM", "ReduceSum", "Squeeze", "Unsqueeze", "QuantizeLinear",
                    "DequantizeLinear", "Loop", "Scan", "ReverseSequence", "Sigmoid", "Relu", "Conv", "Slice", "Exp",
                    "ReduceMax", "Max", "Min", "Not", "And", "Expand", "Tile", "Neg", "Sqrt", "Pow", "Greater",
                    "GreaterOrEqual", "Flatten", "Split", "ReduceMean"})
NEVER = {"DynamicQuantizeLinear": "ONNX Runtime's dynamic quantisation, which TensorRT does not have",
         "MatMulInteger": "an integer MatMul of ONNX Runtime's dynamic quantisation, which TensorRT does not have",
         "DynamicQuantizeLSTM": "ONNX Runtime's own operator (com.microsoft), unknown to TensorRT's parser"}


@dataclass(frozen=True)
class Parser:
    """One onnx-tensorrt line: where its facts were read, its opset range, its restrictions."""

    source: str  # repository, ref and commit of the docs/operators.md this row was read from
    opset: tuple[int, int]
    int64: str  # "cast down" (8.5: INT64 becomes INT32, clamped) or "native"
    bf16: bool
    constant_of_shape: frozenset[int]  # value types it lists
    lstm_layout_read: bool  # 8.5's importer never reads layout: a layout=1 LSTM is misread, silently
    reverse_sequence_dynamic: bool
    axes: str  # Squeeze/Unsqueeze axes: "initializer" or "constant"
    qdq_all_inputs: bool  # 8.5's Q/DQ importer requires an explicit zero point


@dataclass(frozen=True)
class Target:
    name: str
    device: str
    tensorrt: str
    cuda: str
    python: str
    parser: Parser
    strongly_typed: bool  # TensorRT 11: no --fp16/--int8 flags, no calibrator; precision is the graph's
    notes: tuple[str, ...] = ()


_TRT85 = Parser("onnx/onnx-tensorrt 8.5-GA @ fdeeaca8 (release/8.5-GA @ 3b008c46), docs/operators.md", (7, 17),
                "cast down", False, frozenset({FLOAT}), False, False, "initializer", True)
_TRT10 = Parser("onnx/onnx-tensorrt 10.1-GA @ 96e78110, docs/operators.md; 10.3 itself (parser 62bdde2a) not read: "
                "its changelog from 10.1 touches GRU, Squeeze and Slice only", (9, 20), "native", True,
                frozenset({FLOAT, FLOAT16, BFLOAT16, 6, INT64_T, 9}), True, True, "initializer", False)
_TRT11 = Parser("onnx/onnx-tensorrt @ 7c51a63a (pinned by NVIDIA/TensorRT v11.1), docs/operators.md", (9, 24),
                "native", True, frozenset({FLOAT, FLOAT16, BFLOAT16, 6, INT64_T, 9}), True, True, "constant", False)

TARGETS: dict[str, Target] = {
    "jetpack5": Target("jetpack5", "Jetson (JetPack 5.1.x: Xavier, Orin)", "8.5.2", "11.4", "3.8", _TRT85, False),
    "jetpack6": Target("jetpack6", "Jetson Orin (JetPack 6.1/6.2)", "10.3", "12.6", "3.10", _TRT10, False,
                       ("JetPack 6.0 ships TensorRT 8.6, not read here: use jetpack5's rules or move to 6.1+",)),
    "jetpack7": Target("jetpack7", "Jetson Thor / AGX Orin (JetPack 7.x)", "10.x (JetPack's own)", "13.x", "3.12",
                       _TRT10, False, ("TensorRT 11.4.1+ also supports JetPack 7.2.2+: check trt11 too if you "
                                       "install it",)),
    "trt10": Target("trt10", "x86 GPU", "10.x", "12.x", "3.8+", _TRT10, False),
    "trt11": Target("trt11", "x86 GPU", "11.x", "12.x/13.x", "3.10+", _TRT11, True),
}


@dataclass(frozen=True)
class Finding:
    node: str  # the node's name and operator, or "graph"
    rule: str
    target: str
    fix: str
    error: bool = True  # False: a note (it parses, but not as written)

    def __str__(self) -> str:
        return f"{'PROBLEM' if self.error else 'note'} [{self.target}] {self.node}: {self.rule}; {self.fix}"

    def to_dict(self) -> dict[str, Any]:
        return {"node": self.node, "rule": self.rule, "target": self.target, "fix": self.fix, "error": self.error}


def target(name: str) -> Target:
    if name not in TARGETS:
        raise BadInput(f"--target {name!r} is unknown; expected one of {', '.join(TARGETS)}")
    return TARGETS[name]


def _attr(node: Any, name: str, default: Any = None) -> Any:
    import onnx

    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


@dataclass
class _Graph:
    """What the rules need of a model: constants by name, and every node (subgraphs included)."""

    constants: dict[str, Any] = field(default_factory=dict)
    nodes: list[Any] = field(default_factory=list)


def _walk(graph: Any, into: _Graph) -> None:
    from onnx import numpy_helper

    for init in graph.initializer:
        into.constants[init.name] = numpy_helper.to_array(init)
    for node in graph.node:
        into.nodes.append(node)
        if node.op_type == "Constant" and _attr(node, "value") is not None:
            into.constants[node.output[0]] = numpy_helper.to_array(_attr(node, "value"))
        for a in node.attribute:
            if a.g is not None and a.g.node:
                _walk(a.g, into)


def check(model: Any, where: Target) -> list[Finding]:
    """Every node of ``model`` (an ``onnx.ModelProto``) against ``where``'s parser; see the module docstring."""
    p, name = where.parser, where.name
    found: list[Finding] = []
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if not p.opset[0] <= opset <= p.opset[1]:
        found.append(Finding("graph", f"opset {opset}, the parser of TensorRT {where.tensorrt} takes {p.opset[0]} to "
                                      f"{p.opset[1]}", name, f"export with --opset {min(max(opset, p.opset[0]), p.opset[1])}"))
    graph = _Graph()
    _walk(model.graph, graph)
    for node in graph.nodes:
        label = f"{node.name or node.output[0]} ({node.op_type})"
        if node.op_type in NEVER or node.domain not in ("", "ai.onnx"):
            why = NEVER.get(node.op_type, f"an operator of the domain {node.domain!r}, unknown to TensorRT's parser")
            found.append(Finding(label, why, name, "build from model.onnx, model.fp16.onnx or model.int8-qdq.onnx; "
                                                   "the dynamic INT8 file is for ONNX Runtime only"))
            continue
        if node.op_type not in _PLAIN:
            found.append(Finding(label, f"{node.op_type} is not in this table of what TensorRT {where.tensorrt} "
                                        "parses", name, "check docs/operators.md of that line (attn-export's graphs "
                                                        "do not use it)", error=False))
            continue
        found += _node_rules(node, label, graph, where)
    for value in list(model.graph.input) + list(model.graph.output):
        elem = value.type.tensor_type.elem_type
        if elem == BFLOAT16 and not p.bf16:
            found.append(Finding(f"graph {value.name}", f"BF16, which TensorRT {where.tensorrt} does not have", name,
                                 "use model.onnx or model.fp16.onnx"))
        if elem == INT64_T and p.int64 == "cast down":
            found.append(Finding(f"graph input {value.name}", f"INT64: TensorRT {where.tensorrt} casts it down to "
                                 "INT32 (values past 2^31 - 1 are clamped)", name,
                                 "nothing for lengths and shapes of this size", error=False))
    return found


def _node_rules(node: Any, label: str, graph: _Graph, where: Target) -> list[Finding]:
    p, name, trt = where.parser, where.name, where.tensorrt
    out: list[Finding] = []
    op = node.op_type
    if op == "LSTM":
        if _attr(node, "input_forget", 0) != 0:
            out.append(Finding(label, "input_forget = 1 (coupled input and forget gates) is unsupported", name,
                               "a model without coupled gates (PyTorch's nn.LSTM never couples them)"))
        if _attr(node, "layout", 0) != 0:
            rule = ("layout = 1: TensorRT 8.5's importer never reads layout and treats the input as sequence-first, "
                    "so the graph would parse and compute something else" if not p.lstm_layout_read
                    else "layout = 1 is unsupported (layout must be 0)")
            out.append(Finding(label, rule, name, "export again with attn-export export (it writes layout 0)"))
        acts = [a.decode() if isinstance(a, bytes) else a for a in (_attr(node, "activations") or [])]
        if _attr(node, "direction", b"forward") in (b"bidirectional", "bidirectional") and len(acts) == 6 \
                and acts[:3] != acts[3:]:
            out.append(Finding(label, "different activations in the two directions", name,
                               "the same activations both ways"))
    elif op in ("Squeeze", "Unsqueeze", "ReduceSum") and len(node.input) > 1 and node.input[1]:
        if node.input[1] not in graph.constants:
            need = "an initializer" if op == "ReduceSum" or p.axes == "initializer" else "resolvable to a constant"
            out.append(Finding(label, f"axes come from the graph at run time; TensorRT {trt} needs them {need}", name,
                               "export again with attn-export export (constant axes)"))
    elif op == "ConstantOfShape":
        value = _attr(node, "value")
        dtype = value.data_type if value is not None else FLOAT
        if dtype not in p.constant_of_shape:
            out.append(Finding(label, f"a {_TYPE_NAMES.get(dtype, dtype)} ConstantOfShape; TensorRT {trt}'s parser "
                                      f"lists {', '.join(_TYPE_NAMES[t] for t in sorted(p.constant_of_shape))} only",
                               name, "build the FP16 engine from model.onnx with --fp16 on this line instead"))
    elif op == "Cast" and _attr(node, "to") == INT64_T and p.int64 == "cast down":
        out.append(Finding(label, f"a Cast to INT64, which TensorRT {trt} casts down to INT32", name,
                           "nothing for indices and lengths of this size", error=False))
    elif op == "ReverseSequence" and not p.reverse_sequence_dynamic:
        out.append(Finding(label, f"ReverseSequence with dynamic shapes is unsupported in TensorRT {trt}", name,
                           "export again with attn-export export (its portable form has no ReverseSequence)"))
    elif op in ("QuantizeLinear", "DequantizeLinear"):
        zero = graph.constants.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        if zero is not None and zero.any():
            out.append(Finding(label, "a non-zero zero point: TensorRT takes symmetric quantisation only", name,
                               "quantise again with attn-export quantize --int8 --method qdq (symmetric)"))
        if zero is not None and zero.dtype.name == "uint8":
            out.append(Finding(label, "a UINT8 zero point: TensorRT quantises to INT8", name,
                               "quantise again with attn-export quantize --int8 --method qdq"))
        if zero is None and p.qdq_all_inputs:
            out.append(Finding(label, f"no explicit zero point: TensorRT {trt}'s importer requires all three inputs",
                               name, "quantise again with attn-export quantize --int8 --method qdq"))
    return out


def builds(precision: str, where: Target) -> tuple[str | None, str | None]:
    """(engine precision a file of ``precision`` builds on ``where``, or None; why not, or how): the build
    rules of the line."""
    if precision == "int8-dynamic":
        return None, "ONNX Runtime's dynamic INT8 (DynamicQuantizeLSTM, MatMulInteger): never a TensorRT input"
    if precision == "fp32":
        if where.strongly_typed:
            return "fp32", ("FP32 only: TensorRT 11 has no --fp16 flag; an FP16 engine comes from model.fp16.onnx")
        return "fp32", "FP32, or FP16 with --fp16 (weights cast by the builder)"
    if precision == "fp16":
        return "fp16", "FP16 (the graph's own types)"
    if precision == "int8-qdq":
        return "int8", "INT8 through its Q/DQ nodes (explicit quantisation)"
    return None, f"{precision}: not a TensorRT precision"
