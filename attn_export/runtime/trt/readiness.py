"""Will this graph parse and build on the TensorRT of a given JetPack or discrete-GPU line? A static check, without
TensorRT or a GPU, against what the onnx-tensorrt parser of that line documents.

    attn-export inspect DIR --target jetpack5                  # the host
    python -m attn_export.runtime info DIR                      # the device: the bundle's own target

``TARGETS`` maps the names users give their devices (``jetpack5``, ``jetpack6``, ``jetpack7``, ``trt10``,
``trt11``) to their TensorRT, CUDA and Python versions, to what their TensorRT module has (a
``precision.Capability``: flags or strongly typed, INT64, ...) and to a ``Parser``: the opset range and the
per-operator support and restrictions of onnx-tensorrt's ``docs/operators.md`` at the revision named in
``Parser.source``, plus what the importer code enforces beyond the table (8.5 never reads LSTM's
``layout``). ``check`` walks every node of a graph (``onnxfile.Graph``, read without onnx) against one
target and returns ``Finding``s; ``builds`` says which engine a precision's file makes on a target, or
why none, by the same decision ``build`` takes there (``precision.decide``); ``trtexec`` writes the
command that builds it with that line's trtexec; ``refuse_other`` stops ``build`` on a machine or a
``--target`` the bundle was not made for.

Hand-written: nothing answers "will this parse on JetPack 5?" before the file reaches the device
(Polygraphy's ``inspect capability`` needs TensorRT and a GPU). Python 3.8-compatible, numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, FrozenSet, List, Mapping, Optional, Sequence, Tuple

from ...errors import BadInput, NotAvailable, printable
from ..onnxfile import Graph, Node
from ..precisions import ONNX_FILES
from ..store.names import STREAM_FILES
from .precision import Capability, decide, parse_version
from .profile import Profile

__all__ = ["EXPORT_OPSETS", "TARGETS", "Finding", "Parser", "Target", "builds", "carried_precision", "check", "graphs_of", "not_current",
           "readiness", "refuse_other", "render", "state_of", "summary", "summary_lines", "target", "trtexec",
           "unpinned_by_trtexec"]

FLOAT, INT8_T, INT64_T, FLOAT16, BFLOAT16, FLOAT8E4M3_T, INT4_T, FLOAT4_T = 1, 3, 7, 10, 16, 17, 22, 23
_TYPE_NAMES = {1: "FP32", 2: "UINT8", 3: "INT8", 4: "UINT16", 5: "INT16", 6: "INT32", 7: "INT64", 8: "STRING",
               9: "BOOL", 10: "FP16", 11: "DOUBLE", 12: "UINT32", 13: "UINT64", 14: "COMPLEX64", 15: "COMPLEX128",
               16: "BF16", 17: "FP8", 22: "INT4", 23: "FP4"}
# the names onnx-tensorrt's importer maps to a TensorRT activation (OnnxAttrs.cpp, 8.5 to 10.1 alike): any other,
# ONNX's Affine included, throws "Unknown activation type" while parsing
LSTM_ACTIVATIONS = frozenset({"Relu", "Tanh", "Sigmoid", "LeakyRelu", "ThresholdedRelu", "ScaledTanh", "HardSigmoid",
                              "Elu", "Softsign", "Softplus"})
# operators every line parses with no restriction that attn-export's graphs can meet, or with the
# restrictions ``_node_rules`` checks
KNOWN = frozenset({"Add", "Sub", "Mul", "Div", "Concat", "Constant", "Identity", "Reshape", "Shape", "Transpose",
                   "Equal", "Less", "LessOrEqual", "Gather", "Gemm", "MatMul", "Softmax", "Tanh", "Where", "Range",
                   "Cast", "ConstantOfShape", "LSTM", "ReduceSum", "Squeeze", "Unsqueeze", "QuantizeLinear",
                   "DequantizeLinear", "Loop", "Scan", "ReverseSequence", "Sigmoid", "Relu", "Conv", "Slice", "Exp",
                   "ReduceMax", "ReduceMin", "Max", "Min", "Not", "And", "Expand", "Tile", "Neg", "Sqrt", "Pow",
                   "Greater", "GreaterOrEqual", "Flatten", "Split", "ReduceMean", "Log"})
NEVER = {"DynamicQuantizeLinear": "ONNX Runtime's dynamic quantisation, which TensorRT's parser does not take",
         "MatMulInteger": ("an integer MatMul of ONNX Runtime's dynamic quantisation, which TensorRT's parser does not "
                           "take"),
         "DynamicQuantizeLSTM": "ONNX Runtime's own operator (com.microsoft), unknown to TensorRT's parser"}
ONNX_DOMAINS = ("", "ai.onnx")
EXPORT_OPSETS = (17, 21)  # the opsets attn-export's export writes (the recipe's export.opset range)


# the element types an importer converts for a graph input or output (convertDtype: onnx2trt_utils.cpp of 8.5-GA,
# importerUtils.cpp of 10.1-GA); any other fails the parse, "Unsupported ONNX data type"
IO_TYPES_85 = frozenset({FLOAT, 2, INT8_T, 6, INT64_T, 9, FLOAT16, 11})
IO_TYPES_10 = IO_TYPES_85 | {BFLOAT16, FLOAT8E4M3_T, INT4_T}


@dataclass(frozen=True)
class Parser:
    """One onnx-tensorrt line: where its facts were read, its opset range, its restrictions."""

    source: str  # repository, ref and commit of the docs/operators.md this row was read from
    opset: Tuple[int, int]
    int64: str  # "cast down" (8.5: INT64 becomes INT32, clamped) or "native"
    bf16: bool
    constant_of_shape: FrozenSet[int]  # value types it lists
    lstm_layout_read: bool  # 8.5's and 10.1's importers never read layout: a layout=1 LSTM is misread, silently
    reverse_sequence_dynamic: bool
    axes: str  # Squeeze/Unsqueeze axes: "initializer" or "constant"
    qdq_all_inputs: bool  # 8.5's Q/DQ importer requires an explicit zero point
    dequantize_types: FrozenSet[int]  # what DequantizeLinear takes as input (never INT32: a quantised bias)
    unsupported: FrozenSet[str]  # the operators its table lists as not supported ("N")
    local_functions: bool = False  # a node calling one of the model's own functions is inlined (10.1's importer)
    io_types: FrozenSet[int] = frozenset()  # ``IO_TYPES_85`` / ``IO_TYPES_10``


@dataclass(frozen=True)
class Target:
    name: str
    device: str
    tensorrt: str
    cuda: str
    python: str
    parser: Parser
    capability: Capability  # what that line's tensorrt module has: the build decisions follow from it
    majors: Tuple[int, ...]  # TensorRT major versions a machine of this target runs
    jetson: bool  # an aarch64 Jetson (JetPack), not a discrete GPU
    trtexec_path: str
    skip_inference: str  # trtexec's flag to build and not benchmark on that line
    notes: Tuple[str, ...] = ()

    @property
    def strongly_typed_only(self) -> bool:
        """TensorRT 11: no --fp16/--int8 flags, no calibrator; precision is the graph's."""
        return not self.capability.fp16_flag


_TRT85 = Parser("onnx/onnx-tensorrt 8.5-GA @ fdeeaca8 (release/8.5-GA @ 3b008c46), docs/operators.md", (7, 17),
                "cast down", False, frozenset({FLOAT}), False, False, "initializer", True, frozenset({INT8_T}),
                frozenset("""Bernoulli BitShift BlackmanWindow Compress ConcatFromSequence ConvInteger DFT Det
                DynamicQuantizeLinear HammingWindow HannWindow HardSwish Hardmax IsInf LayerNormalization
                MatMulInteger MaxRoiPool MaxUnpool MelWeightMatrix Mod Multinomial NegativeLogLikelihoodLoss OneHot
                Optional OptionalGetElement OptionalHasElement QLinearConv QLinearMatMul STFT SequenceAt
                SequenceConstruct SequenceEmpty SequenceErase SequenceInsert SequenceLength SequenceMap
                SoftmaxCrossEntropyLoss SplitToSequence StringNormalizer TfIdfVectorizer Unique""".split()),
                io_types=IO_TYPES_85)
_TRT10 = Parser("onnx/onnx-tensorrt 10.1-GA @ 96e78110, docs/operators.md; 10.3 itself (parser 62bdde2a) not read: "
                "its changelog from 10.1 touches GRU, Squeeze and Slice only", (9, 20), "native", True,
                frozenset({FLOAT, FLOAT16, BFLOAT16, 6, INT64_T, 9}), False, True, "initializer", False,
                frozenset({INT8_T, FLOAT8E4M3_T, INT4_T}),
                frozenset("""AffineGrid Bernoulli BitShift BitwiseAnd BitwiseNot BitwiseOr BitwiseXor BlackmanWindow
                CenterCropPad Compress ConcatFromSequence ConvInteger DFT Det DynamicQuantizeLinear HammingWindow
                HannWindow ImageDecoder MatMulInteger MaxRoiPool MaxUnpool MelWeightMatrix Multinomial
                NegativeLogLikelihoodLoss Optional OptionalGetElement OptionalHasElement QLinearConv QLinearMatMul
                RegexFullMatch STFT SequenceAt SequenceConstruct SequenceEmpty SequenceErase SequenceInsert
                SequenceLength SequenceMap SoftmaxCrossEntropyLoss SplitToSequence StringConcat StringNormalizer
                StringSplit TfIdfVectorizer Unique""".split()), local_functions=True,
                io_types=IO_TYPES_10)
# re-read against the operators.md at 7c51a63a itself ("TensorRT 11.1 supports operators in the inclusive range
# of opset 9 to opset 24"): its "N" operators are this set, ConstantOfShape also takes FP8, FP4 and INT4. Later
# 11.x lines parse more (11.2: DFT; 11.5: opset 25), which 11.1's rules refuse: the older line's rules are the
# conservative ones for every 11.x
_TRT11 = Parser("onnx/onnx-tensorrt @ 7c51a63a (pinned by NVIDIA/TensorRT v11.1), docs/operators.md", (9, 24),
                "native", True, frozenset({FLOAT, FLOAT16, BFLOAT16, 6, INT64_T, 9, FLOAT8E4M3_T, FLOAT4_T, INT4_T}),
                True, True, "constant", False,
                frozenset({INT8_T, FLOAT8E4M3_T, INT4_T, FLOAT4_T}),
                frozenset("""AffineGrid Bernoulli BitShift BitwiseAnd BitwiseNot BitwiseOr BitwiseXor Col2Im
                CenterCropPad Compress ConcatFromSequence ConvInteger DFT Det DynamicQuantizeLinear ImageDecoder
                MatMulInteger MaxRoiPool MaxUnpool MelWeightMatrix Multinomial NegativeLogLikelihoodLoss Optional
                OptionalGetElement OptionalHasElement QLinearConv QLinearMatMul RegexFullMatch SequenceAt
                SequenceConstruct SequenceEmpty SequenceErase SequenceInsert SequenceLength SequenceMap
                SoftmaxCrossEntropyLoss SplitToSequence StringConcat StringNormalizer StringSplit TfIdfVectorizer
                Unique""".split()), local_functions=True,  # as 10.1 (its importer not read at 7c51a63a)
                io_types=IO_TYPES_10)
# Capability(version, strongly_typed, explicit_batch, fp16_flag, int8_flag, int64, progress_monitor,
#            hardware_compat, version_compat, precision_constraints): NVIDIA/TensorRT's Python API of each line
#            (notes/tensorrt.md)
_CAP85 = Capability("8.5.2", False, True, True, True, False, False, False, False, True)
_CAP10 = Capability("10.3", True, True, True, True, True, True, True, True, True)
_CAP11 = Capability("11.1", True, False, False, False, True, True, True, True, False)
_JETSON_TRTEXEC = "/usr/src/tensorrt/bin/trtexec"  # JetPack installs it there, off the PATH
_DISCRETE = "a discrete GPU (x86_64 or SBSA)"

TARGETS: Dict[str, Target] = {
    "jetpack5": Target("jetpack5", "JetPack 5.1.x (Jetson Xavier, Orin)", "8.5.2", "11.4", "3.8", _TRT85, _CAP85,
                       (8,), True, _JETSON_TRTEXEC, "--buildOnly",
                       ("JetPack 6.0 ships TensorRT 8.6, not read here: jetpack5's rules are the nearer ones",)),
    "jetpack6": Target("jetpack6", "JetPack 6.1/6.2 (Jetson Orin)", "10.3", "12.6", "3.10", _TRT10, _CAP10, (10,), True,
                       _JETSON_TRTEXEC, "--skipInference",
                       # found by attacking: said under jetpack5 only, where a JetPack 6.0 user would not look
                       ("JetPack 6.0 ships TensorRT 8.6, not 10.3: check --target jetpack5 for it",)),
    "jetpack7": Target("jetpack7", "JetPack 7.x (Jetson Thor, AGX Orin)", "10.x (JetPack's own)", "13.x", "3.12",
                       _TRT10, _CAP10, (10, 11), True, _JETSON_TRTEXEC, "--skipInference",
                       ("TensorRT 11.4.1 also supports JetPack 7.2.2+ (11.5 supports no Jetson): check trt11 too "
                        "if you install it",)),
    "trt10": Target("trt10", _DISCRETE, "10.x", "12.x", "3.8+", _TRT10, _CAP10, (10,), False, "trtexec",
                    "--skipInference"),
    "trt11": Target("trt11", _DISCRETE, "11.x", "12.x/13.x", "3.10+ (3.11+ from 11.5)", _TRT11, _CAP11, (11,), False,
                    "trtexec", "--skipInference"),
}


@dataclass(frozen=True)
class Finding:
    node: str  # the node's name and operator, or "graph ..."
    rule: str
    target: str
    fix: str
    error: bool = True  # False: a note (it parses, but not as written)

    def __str__(self) -> str:
        return f"{'PROBLEM' if self.error else 'note'} [{self.target}] {self.node}: {self.rule}; {self.fix}"

    def to_dict(self) -> Dict[str, Any]:
        return {"node": self.node, "rule": self.rule, "target": self.target, "fix": self.fix, "error": self.error}


def target(name: str) -> Target:
    if name not in TARGETS:
        raise BadInput(f"--target {name!r} is unknown; expected one of {', '.join(TARGETS)}")
    return TARGETS[name]


def check(graph: Graph, where: Target, precision: Optional[str] = None) -> List[Finding]:
    """Every node of ``graph`` (``onnxfile.parse_graph``'s, subgraphs included) against ``where``'s parser;
    given the ``precision`` the file is offered as, also whether the graph carries it where the build is
    strongly typed (precision from the graph, not from a flag)."""
    p, name = where.parser, where.name
    found: List[Finding] = _precision_rules(graph, where, precision) if precision else []
    opset = next((graph.opsets[d] for d in ONNX_DOMAINS if d in graph.opsets), 0)
    if not p.opset[0] <= opset <= p.opset[1]:
        # an opset export writes (found by attacking: "export with --opset 24", which export refuses)
        lo, hi = max(p.opset[0], EXPORT_OPSETS[0]), min(p.opset[1], EXPORT_OPSETS[1])  # every target's overlap
        fix = f"export with --opset {min(max(opset, lo), hi)}"
        found.append(Finding("graph", f"opset {opset}, the parser of TensorRT {where.tensorrt} takes {p.opset[0]} to "
                                      f"{p.opset[1]}", name, fix))
    if graph.external:  # found by attacking: such a file was "ready" on every target
        tensor, location = graph.external[0]
        more = f" and {len(graph.external) - 1} more" if len(graph.external) > 1 else ""
        found.append(Finding("graph", f"tensor '{tensor}'{more} kept in the external file '{location}', outside "
                                      "the bytes attn-export hashes and ships; every command that runs a model "
                                      "refuses it", name, "every weight inside the .onnx file (onnx.save it as one "
                                                          "file)"))
    for node in graph.nodes:
        if p.local_functions and node.op_type not in KNOWN and node.op_type in graph.functions:
            # the importer inlines the model's own function (by name: its own importers come first, so one
            # named LSTM is still imported as LSTM, found by review), whose nodes are checked as the graph's
            continue
        if node.op_type in NEVER or node.domain not in ONNX_DOMAINS:
            why = NEVER.get(node.op_type, f"an operator of the domain {node.domain!r}, unknown to TensorRT's parser")
            found.append(Finding(node.label, why, name, "build from model.onnx, model.fp16.onnx or "
                                                        "model.int8-qdq.onnx; the dynamic INT8 file is for ONNX "
                                                        "Runtime only"))
        elif node.op_type in p.unsupported:
            found.append(Finding(node.label, f"{node.op_type}, which the parser of TensorRT {where.tensorrt} lists as "
                                             "not supported", name, "export again with attn-export export (its graphs "
                                                                    "do not use it)"))
        elif node.op_type not in KNOWN:
            found.append(Finding(node.label, f"{node.op_type} is not in this table of what TensorRT {where.tensorrt} "
                                             "parses", name, "check docs/operators.md of that line (attn-export's "
                                                             "graphs do not use it)", error=False))
        else:
            found += _node_rules(node, graph, where)
    found += _input_rules(graph, name)
    for value in graph.inputs + graph.outputs:
        # found by attacking: UINT16 or COMPLEX64 I/O was "ready"; and a sequence (no tensor type, 0: review)
        if value.elem_type not in p.io_types and value.elem_type != BFLOAT16:
            shown = _TYPE_NAMES.get(value.elem_type, "no tensor type (a sequence, map or optional)"
                                    if value.elem_type == 0 else f"ONNX type {value.elem_type}")
            found.append(Finding(f"graph {value.name}", f"{shown}, which TensorRT {where.tensorrt}'s parser cannot take "
                                 "as a graph input or output", name, "use model.onnx or model.fp16.onnx"))
        if value.elem_type == BFLOAT16 and not p.bf16:
            found.append(Finding(f"graph {value.name}", f"BF16, which TensorRT {where.tensorrt} does not have", name,
                                 "use model.onnx or model.fp16.onnx"))
        if value.elem_type == INT64_T and p.int64 == "cast down":
            found.append(Finding(f"graph input {value.name}", f"INT64: TensorRT {where.tensorrt} casts it down to "
                                 "INT32 (values past 2^31 - 1 are clamped)", name,
                                 "nothing for lengths and shapes of this size", error=False))
    return found


def _input_rules(graph: Graph, name: str) -> List[Finding]:
    """The inputs ``build`` gives its optimisation profile (``iospec``): ``x`` float32 [batch, seq, features]
    and ``lengths`` int64 [batch], batch and seq dynamic (a stream graph's ``state_in_*`` besides). A graph
    with ``x`` and ``lengths`` that breaks this (an axis frozen, another input) parses, but no engine ``build``
    makes is the one it describes: a problem (found by attacking: a standalone file with its batch frozen was
    "ready"). A graph of other inputs is not attn-export's: judged for TensorRT's parser alone, with a note."""
    # numpy's modules: this module's importers need them only when they check
    from ..iospec import IOSpec
    from ..streaming import state_name

    contract = IOSpec.for_model(features=0, outputs=0).inputs  # names and dtypes; the feature count any
    wanted = [t.name for t in contract]
    fix = "export it with attn-export export (batch and seq dynamic)"
    inputs = {v.name: v for v in graph.inputs}
    if not set(wanted) <= set(inputs):
        return [Finding("graph inputs", f"inputs {sorted(inputs)}, not attn-export's {' and '.join(wanted)}: judged "
                                        "for TensorRT's parser alone", name, "attn-export build takes only its own "
                                                                             "graphs", error=False)]
    other = sorted(n for n in inputs if n not in wanted and not n.startswith(state_name("", "in")))
    found = [Finding("graph inputs", f"inputs {other} besides {' and '.join(wanted)}, which build's profile does "
                                     "not feed", name, fix)] if other else []
    for t in contract:
        value, dims = inputs[t.name], inputs[t.name].dims
        if value.dtype != t.dtype or len(dims) != len(t.dims) or any(isinstance(d, int) for d in dims[:2]):
            shown = "[" + ", ".join("?" if d is None else str(d) for d in dims) + "]"
            want = "[" + ", ".join("features" if isinstance(d, int) else d for d in t.dims) + "]"
            found.append(Finding(f"graph input {value.name}", f"{value.dtype} {shown}, where build's profile needs "
                                                              f"{t.dtype} {want}", name, fix))
    return found


def carried_precision(graph: Graph) -> str:
    """The precision a graph's own nodes and weights carry, for a file whose name does not say it: ONNX
    Runtime's dynamic INT8 operators, a QuantizeLinear/DequantizeLinear pair, FP16 weights, else FP32."""
    ops = {n.op_type for n in graph.nodes}
    if ops & {"DynamicQuantizeLSTM", "DynamicQuantizeLinear", "MatMulInteger", "DynamicQuantizeMatMul"}:
        return "int8-dynamic"
    if {"QuantizeLinear", "DequantizeLinear"} <= ops:
        return "int8-qdq"
    return "fp16" if graph.stores_float16 else "fp32"


def _precision_rules(graph: Graph, where: Target, precision: str) -> List[Finding]:
    try:
        plan = decide(precision, where.capability)
    except (BadInput, NotAvailable):
        return []
    trt, name = where.tensorrt, where.name
    ops = {n.op_type for n in graph.nodes}
    if precision == "fp16" and not graph.stores_float16:
        if plan.strongly_typed:
            return [Finding("graph", f"offered as FP16 but its weights are FP32: TensorRT {trt} builds it strongly "
                                     "typed (precision from the graph), so the engine would be FP32", name,
                            "make the FP16 graph with attn-export quantize --fp16")]
        return [Finding("graph", "offered as FP16 with FP32 weights: the --fp16 builder flag casts them", name,
                        "attn-export quantize --fp16 makes the graph verify judged", error=False)]
    if precision == "int8-qdq" and not {"QuantizeLinear", "DequantizeLinear"} <= ops:
        return [Finding("graph", f"offered as INT8 but holds no QuantizeLinear/DequantizeLinear pair: TensorRT {trt} "
                                 "takes INT8 only from explicit Q/DQ", name,
                        "make it with attn-export quantize --int8 --method qdq")]
    return []


def _node_rules(node: Node, graph: Graph, where: Target) -> List[Finding]:
    p, name, trt = where.parser, where.name, where.tensorrt
    out: List[Finding] = []
    op, a, label = node.op_type, node.attributes, node.label
    if op == "LSTM":
        if a.get("input_forget", 0):
            out.append(Finding(label, "input_forget = 1 (coupled input and forget gates) is unsupported", name,
                               "a model without coupled gates (PyTorch's nn.LSTM never couples them)"))
        if a.get("layout", 0):
            rule = ("layout = 1: this line's importer never reads layout (its source, read) and treats the input as "
                    "sequence-first, so the graph would parse and compute something else" if not p.lstm_layout_read
                    else "layout = 1 is unsupported (its operators.md: layout must be 0)")
            out.append(Finding(label, rule, name, "export again with attn-export export (it writes layout 0)"))
        acts = list(a.get("activations") or ())  # type: ignore[arg-type]
        needed = 6 if a.get("direction") == "bidirectional" else 3
        if acts and len(acts) < needed:  # the importer reads activations.at(2) (and .at(5)): found by attacking
            out.append(Finding(label, f"{len(acts)} activations, where the importer reads {needed} (f, g, h for "
                                      "each direction)", name, "export again with attn-export export (Sigmoid, Tanh, "
                                                               "Tanh)"))
        unknown = sorted({str(act) for act in acts} - LSTM_ACTIVATIONS)
        if unknown:
            out.append(Finding(label, f"activations {unknown}, which TensorRT's LSTM importer does not know (it takes "
                                      f"{', '.join(sorted(LSTM_ACTIVATIONS))})", name,
                               "export again with attn-export export (Sigmoid, Tanh, Tanh)"))
        if a.get("direction") == "bidirectional" and len(acts) == 6 and acts[:3] != acts[3:]:
            out.append(Finding(label, "different activations in the two directions", name,
                               "the same activations both ways"))
        for key in ("activation_alpha", "activation_beta"):  # the importer's own check (found by attacking)
            values = list(a.get(key) or ())  # type: ignore[arg-type]
            half = len(values) // 2
            if a.get("direction") == "bidirectional" and values and (len(values) % 2 or values[:half] != values[half:]):
                out.append(Finding(label, f"{key} differs between the two directions, which the importer refuses",
                                   name, f"the same {key} both ways"))
    elif op == "Squeeze" and not (len(node.inputs) > 1 and node.inputs[1]) and "axes" not in a:
        # every line's importer up to 11.4 asserts "!isDynamic(shape): Cannot infer squeeze dimensions from a
        # dynamic shape! Please re-export your model with the Squeeze axes input set" (found by re-reading
        # TensorRT 11's notes: 11.5 added a Squeeze without axes); a graph whose inputs are all static passes, and
        # so does the Squeeze of a constant (the graph's shapes are not inferred here: any other is taken as dynamic)
        if node.inputs[0] not in graph.constants and any(not isinstance(d, int) for v in graph.inputs for d in v.dims):
            out.append(Finding(label, f"a Squeeze without axes in a graph of dynamic shapes, whose squeezed "
                                      f"dimensions TensorRT {trt}'s importer cannot infer", name,
                               "name the axes (in PyTorch, x.squeeze(dim)) and export again"))
    elif (op in ("Squeeze", "Unsqueeze") or op.startswith("Reduce")) and len(node.inputs) > 1 and node.inputs[1]:
        if node.inputs[1] not in graph.constants:  # a Reduce's axes are an input from opset 18 (ReduceSum: 13)
            need = "an initializer" if op.startswith("Reduce") or p.axes == "initializer" else "resolvable to a constant"
            out.append(Finding(label, f"axes come from the graph at run time; TensorRT {trt} needs them {need}", name,
                               "export again with attn-export export (constant axes)"))
    elif op == "ConstantOfShape":
        value = a.get("value")
        dtype = getattr(value, "data_type", FLOAT)
        if dtype not in p.constant_of_shape:
            out.append(Finding(label, f"a {_TYPE_NAMES.get(dtype, dtype)} ConstantOfShape; TensorRT {trt}'s parser "
                                      f"lists {', '.join(_TYPE_NAMES[t] for t in sorted(p.constant_of_shape))} only",
                               name, "make the FP16 graph again with attn-export quantize --fp16 (it fills in FP32 "
                                     "and casts)" if dtype == FLOAT16 else "export again with attn-export export"))
    elif op == "Cast" and a.get("to") == INT64_T and p.int64 == "cast down":
        out.append(Finding(label, f"a Cast to INT64, which TensorRT {trt} casts down to INT32", name,
                           "nothing for indices and lengths of this size", error=False))
    elif op == "ReverseSequence" and not p.reverse_sequence_dynamic:
        out.append(Finding(label, f"ReverseSequence with dynamic shapes is unsupported in TensorRT {trt}", name,
                           "export again with attn-export export (its portable form has no ReverseSequence)"))
    elif op in ("QuantizeLinear", "DequantizeLinear"):
        fed = graph.constants.get(node.inputs[0]) if op == "DequantizeLinear" else None
        if fed is not None and fed.data_type not in p.dequantize_types:
            kind = _TYPE_NAMES.get(fed.data_type, str(fed.data_type))
            takes = ", ".join(_TYPE_NAMES[t] for t in sorted(p.dequantize_types))
            out.append(Finding(label, f"dequantises {kind} {node.inputs[0]!r}: TensorRT {trt}'s DequantizeLinear takes "
                                      f"{takes} only" + (" (a quantised bias)" if kind == "INT32" else ""), name,
                               "quantise again with attn-export quantize --int8 --method qdq (biases stay FP32)"))
        zero = graph.constants.get(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] else None
        if zero is not None and zero.values is not None and any(zero.values):
            out.append(Finding(label, "a non-zero zero point: TensorRT takes symmetric quantisation only", name,
                               "quantise again with attn-export quantize --int8 --method qdq (symmetric)"))
        if zero is not None and zero.data_type == 2:
            out.append(Finding(label, "a UINT8 zero point: TensorRT quantises to INT8", name,
                               "quantise again with attn-export quantize --int8 --method qdq"))
        if zero is None and p.qdq_all_inputs:
            out.append(Finding(label, f"no explicit zero point: TensorRT {trt}'s importer requires all three inputs",
                               name, "quantise again with attn-export quantize --int8 --method qdq"))
    return out


def builds(precision: str, where: Target, stream: bool = False) -> Tuple[Optional[str], str]:
    """(the engine precision a file of ``precision`` (the stream graph's: ``stream``) builds on ``where``, or
    None; how, or why not): the decision ``build`` itself takes on that line's TensorRT."""
    try:
        plan = decide(precision, where.capability, stream=stream)
    except (BadInput, NotAvailable) as e:
        if precision == "int8-dynamic":
            return None, "ONNX Runtime's dynamic INT8 (DynamicQuantizeLSTM, MatMulInteger): never a TensorRT input"
        return None, str(e)
    how = plan.describe().split(": ", 1)[1]
    if precision == "fp32" and where.strongly_typed_only:
        fp16 = STREAM_FILES["fp16"] if stream else ONNX_FILES["fp16"]
        how += f"; TensorRT 11 has no --fp16 flag: an FP16 engine comes from {fp16}"
    return plan.precision, how


def trtexec(precision: str, where: Target, profile: Profile, workspace_mib: int) -> Optional[str]:
    """The trtexec command that builds ``precision``'s engine on ``where`` as ``build`` does: the graph's
    own file (the stream graph's for a stream profile, one with state), the profile's shapes, the flags
    that line needs (strongly typed where ``build`` is, the builder flag where it is weakly typed, none on
    TensorRT 11, where typing is always strong), TF32 off (every FP32 layer FP32, as ``build``); None when the file
    builds nothing there. Where ``build`` pins the graph's FP32 layers (``BuildPlan.pin_float32``: weak typing with
    ``--fp16``) this line does not: trtexec pins layers only by name (``unpinned_by_trtexec``)."""
    stream = bool(profile.state)
    try:
        plan = decide(precision, where.capability, stream=stream)
    except (BadInput, NotAvailable):
        return None
    shapes = profile.shapes()
    engine = f"trtexec.{'stream.' if stream else ''}{precision}.engine"
    args = [where.trtexec_path, f"--onnx={plan.source}", f"--saveEngine={engine}"]
    for i, end in enumerate(("min", "opt", "max")):
        args.append(f"--{end}Shapes=" + ",".join(f"{name}:{'x'.join(str(d) for d in dims[i])}"
                                                 for name, dims in shapes.items()))
    args.append(f"--memPoolSize=workspace:{workspace_mib}")
    if plan.strongly_typed and where.capability.fp16_flag:  # opt-in on 10.x; the only mode (and no flag) on 11
        args.append("--stronglyTyped")
    args += [f"--{flag.lower()}" for flag in plan.builder_flags]
    args.append("--noTF32")
    args.append(where.skip_inference)
    return " ".join(args)


def unpinned_by_trtexec(precisions: Sequence[str], where: Target) -> Optional[str]:
    """What ``trtexec`` lines of ``precisions`` on ``where`` do not do that ``build`` does (None: nothing): pin
    the FP16 graph's FP32 layers to FP32 where typing is weak (``BuildPlan.pin_float32``)."""
    def pins(precision: str) -> bool:
        try:
            return decide(precision, where.capability).pin_float32
        except (BadInput, NotAvailable):
            return False

    if not any(pins(p) for p in precisions):
        return None
    return (f"On TensorRT {where.tensorrt} (weakly typed) `--fp16` lets TensorRT run in FP16 the layers the FP16 "
            "graph keeps in FP32 (the normalisation, the mask, the softmax). `build` pins them to FP32; `trtexec` "
            "could only by naming each layer, so its FP16 engine is not the one `verify` judges.")


def graphs_of(s: Any) -> Dict[str, Tuple[str, Graph]]:
    """Every ONNX precision file of a store (``store.Store``: a directory or a bundle) that is present and
    readable: name -> (precision, parsed graph), as ``readiness`` takes them. A file the store cannot read
    as a self-contained graph (not ONNX, external data) is left out: the store's own trust check names it
    wherever the file is used."""
    present = set(s.present())
    graphs = {}
    for p, f in [*ONNX_FILES.items(), *STREAM_FILES.items()]:
        if f in present:
            try:
                graphs[f] = (p, s.graph(f))
            except BadInput:
                continue
    return graphs


def not_current(s: Any) -> Dict[str, Tuple[str, str, str]]:
    """Every ONNX precision file a store (``store.Store``) records that is not current (stale after a retrain,
    changed behind the manifest, damaged, or gone (``Store.lacking``): found by attacking, a deleted graph
    kept its "ready" row in the report): name -> (precision, its state, the store's reason without the
    file's own name), as ``readiness`` takes them."""
    held = set(s.present()) | set(s.lacking())
    out = {}
    for p, f in [*ONNX_FILES.items(), *STREAM_FILES.items()]:
        trust = s.state(f) if f in held else None
        if trust is not None and not trust.current:
            why = str(trust.reason)
            for said in (f"{f} is {trust.state}: ", f"{f} "):
                if why.startswith(said):
                    why = why[len(said):]
                    break
            out[f] = (p, trust.state, why)
    return out


def readiness(graphs: Mapping[str, Tuple[str, Graph]], names: Sequence[str],
              stale: Optional[Mapping[str, Tuple[str, str, str]]] = None) -> Dict[str, Any]:
    """Each ONNX file (name -> (precision, parsed graph)) against each target in ``names``: what it builds
    there, or why not, and every finding. A file of ``stale`` (``not_current``) that would build is said to
    be what the store found (its state and why), never ready: its bytes are not the model now (found by a
    user: a stale FP16 graph was "ready" on every line); one withdrawn stays withdrawn."""
    wanted = [target(n) for n in names]
    out: Dict[str, Any] = {}
    for t in wanted:
        rows = {}
        for file, (precision, graph) in graphs.items():
            engine, how = builds(precision, t, file in STREAM_FILES.values())
            findings = [] if engine is None else check(graph, t, precision)
            rows[file] = {"builds": engine, "how": how, "findings": [x.to_dict() for x in findings],
                          "ready": engine is not None and not any(x.error for x in findings)}
        for file, (precision, state, why) in (stale or {}).items():
            engine, how = builds(precision, t, file in STREAM_FILES.values())
            rows[file] = ({"builds": None, "how": how, "findings": [], "ready": False} if engine is None else
                          {"builds": engine, "how": why, "findings": [], "ready": False, "not_current": state})
        out[t.name] = {"device": t.device, "tensorrt": t.tensorrt, "cuda": t.cuda, "python": t.python,
                       "source": t.parser.source, "strongly_typed_only": t.strongly_typed_only,
                       "notes": list(t.notes), "files": rows}
    return out


def state_of(row: Mapping[str, Any]) -> str:
    """A file's state on a target: ready, withdrawn (builds nothing there) or NOT READY (a rule of that
    line's parser is broken)."""
    if not row["builds"]:
        return "withdrawn"
    if row.get("not_current"):
        return str(row["not_current"])
    return "ready" if row["ready"] else "NOT READY"


def summary(r: Mapping[str, Any]) -> Dict[str, Dict[str, str]]:
    """``readiness``'s result in a line per file and target, as ``verify.json`` records it: ``ready
    (how)``, ``withdrawn: why`` or ``NOT READY: the first problem``."""
    out: Dict[str, Dict[str, str]] = {}
    for name, t in r.items():
        for file, row in t["files"].items():
            problems = [f"{x['node']}: {x['rule']}" for x in row["findings"] if x["error"]]
            state = state_of(row)
            out.setdefault(name, {})[file] = (f"ready ({row['how']})" if state == "ready" else
                                             f"NOT READY: {problems[0]}" + (f" (and {len(problems) - 1} more)"
                                                                             if len(problems) > 1 else "")
                                             if state == "NOT READY" else f"{state}: {row['how']}")
    return out


def summary_lines(lines: Mapping[str, Mapping[str, str]]) -> List[str]:
    """``summary``'s result as one line per group of targets that read the files alike (what verify
    prints): the files ready there, the others with their state and reason."""
    groups: Dict[Tuple[Tuple[str, str], ...], List[str]] = {}
    for name, files in lines.items():  # how each line builds a ready file differs; that it is ready does not
        key = tuple((f, "ready" if line.startswith("ready") else line) for f, line in files.items())
        groups.setdefault(key, []).append(name)
    out = []
    for states, names in groups.items():
        ready = [f for f, line in states if line.startswith("ready")]
        other = [f"{line.split(':')[0]} {f} ({line.split(': ', 1)[1]})" for f, line in states
                 if not line.startswith("ready")]
        out.append(f"TensorRT {', '.join(names)} (parser rules, static): "
                   + "; ".join(filter(None, [("ready " + ", ".join(ready)) if ready else "", *other])))
    return out


def render(r: Mapping[str, Any]) -> str:
    """``readiness``'s result as text: per target, each file's state and one line per rule it broke."""
    lines = []
    for name, t in r.items():
        lines.append(f"{name}: {t['device']}, TensorRT {t['tensorrt']}, CUDA {t['cuda']}, Python {t['python']} "
                     f"(rules read from {t['source']})")
        width = max((len(f) for f in t["files"]), default=0) + 1
        for file, row in t["files"].items():
            lines.append(f"  {file:{width}} {state_of(row)}: {row['how']}")
            grouped: Dict[Tuple[bool, str, str], List[str]] = {}  # one line per rule, its nodes named
            for x in row["findings"]:
                grouped.setdefault((x["error"], x["rule"], x["fix"]), []).append(x["node"])
            for (error, rule, fix), nodes in grouped.items():
                at = nodes[0] if len(nodes) == 1 else (f"{len(nodes)} nodes ({', '.join(nodes[:3])}"
                                                       f"{', ...' if len(nodes) > 3 else ''})")
                lines.append(f"    {'PROBLEM' if error else 'note'} {at}: {rule}; {fix}")
        lines += [f"  note: {n}" for n in t["notes"]]
    return "\n".join(printable(line) for line in lines)  # node and file names are data (found by attacking)


def refuse_other(made_for: Optional[str], asked: Optional[str], tensorrt_version: Optional[str] = None,
                 machine: Optional[str] = None) -> None:
    """``build``'s check of a bundle made for ``made_for`` (its ``bundle.json``; None: not a bundle): a
    ``--target`` other than that one is BadInput; a machine whose TensorRT (``tensorrt_version``, and
    ``machine`` as ``platform.machine()`` says it) is not that target's is NotAvailable. One line each,
    naming both targets and the command that makes the right bundle. Before TensorRT is looked for
    (``tensorrt_version`` None), a Jetson's bundle on a ``machine`` that is no Jetson is NotAvailable, saying
    to build on the Jetson, not how to install TensorRT here."""
    if made_for is None:
        if asked is not None:
            target(asked)
        return
    bundled = target(made_for)

    def again(name: str) -> str:  # the bundle that suits target ``name``: a Jetson's, or any for a discrete GPU
        if target(name).jetson:
            return f"bundle again on the host with attn-export bundle --for jetson --target {name}"
        return (f"{name} is a discrete GPU's line: bundle with attn-export bundle --for cpu (its graphs build on "
                "any TensorRT), or build on that machine with attn-export build")

    if asked is not None and asked != made_for:
        target(asked)
        raise BadInput(f"this bundle was made for {made_for} (TensorRT {bundled.tensorrt}), not --target {asked}: "
                       f"its build commands and checks are {made_for}'s; {again(asked)}")
    arm = machine in ("aarch64", "arm64")
    if tensorrt_version is None:
        if bundled.jetson and machine is not None and not arm:
            raise NotAvailable(f"this bundle was made for {made_for} ({bundled.device}), whose engines are built on "
                               f"the Jetson itself, and this machine is {machine}: copy the bundle to the Jetson and "
                               "run this command there (TensorRT comes with JetPack)")
        return
    major = (parse_version(tensorrt_version) or (0,))[0]
    if major not in bundled.majors or (bundled.jetson and not arm):
        here = [t.name for t in TARGETS.values() if major in t.majors and t.jetson == arm]
        raise NotAvailable(f"this bundle was made for {made_for} (TensorRT {bundled.tensorrt}); this machine has "
                           f"TensorRT {tensorrt_version} on {machine}, which is "
                           + (f"{' or '.join(here)}'s: {again(here[0])}" if here else
                              "no target attn-export knows: use a JetPack or TensorRT line from "
                              + ", ".join(TARGETS)))
