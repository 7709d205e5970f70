"""Reduced-precision ONNX variants, proven on the CPU before any GPU sees them.

    attn-export quantize [DIR] --fp16 | --int8 [--method dynamic|qdq] [--calib-samples N]

- ``model.int8.onnx``: ONNX Runtime's dynamic INT8 (quantises the LSTM itself: DynamicQuantizeLSTM);
  the CPU deployment choice. It uses ORT contrib ops, so TensorRT cannot build it.
- ``model.int8-qdq.onnx``: static INT8 in explicit Q/DQ form, calibrated on real training sequences,
  symmetric activations (zero points 0), per-channel weights: what TensorRT's explicit quantisation
  consumes. Standard tools do not quantise ``LSTM``: INT8 reaches the MatMul/Gemm/Conv nodes only.
- ``model.fp16.onnx``: FP16 compute with FP32 inputs and outputs, the graph a strongly typed TensorRT
  build consumes. Kept in FP32 on purpose: the input normalisation (``Sub``/``Div`` on raw features,
  which need not fit FP16's range or precision), the masked softmax (``Where``, ``Softmax``: the
  attention distribution is what users inspect) and the ``ReduceSum`` that picks the additive query.
  Its numerics are checked with ONNX's reference evaluator, which really computes in FP16 (ONNX Runtime's
  CPU provider casts many FP16 operators to FP32; the share it ran in FP16 is reported), judged by the
  FP16 rule ``verify`` applies (each row within its budget, derived from the model's own FP16 error), on
  the recorded sweep's cases it runs; ``verify`` judges the training lengths and the test split.

Each variant is checked (onnx.checker full check, dynamic axes at batch 1/8 and seq 1/2048), evaluated
on the recipe's test split next to FP32, timed at batch 1, seq 128, and recorded in the manifest.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from .runtime import schema, store
from .runtime.compare import Reference, Rule, SweepCase, compare_case
from .errors import AttnExportError, BadInput, DataError, MissingPrerequisite, NotAvailable, WorkFailed, printable
from .runtime.reference import read_reference
from .runtime.backends.onnxrt import INTEGER_WEIGHTS, OrtCpuBackend, ort_session
from .runtime.store import Artifact
from .runtime.interrupt import holding
from .runtime.iospec import CLASSIFIERS, IOSpec, class_logits
from .runtime.timing import Budget, time_interleaved
from .runtime.modelinfo import ModelInfo
from .config import MAX_CALIB_SAMPLES
from .runtime.limits import whole
from .runtime.precisions import one_by_one
from .export import FOLD_LIMIT
from .portability import fp32_fills, make_portable, matmul_before_transpose, prune

__all__ = ["FILES", "VariantReport", "quantize", "labelled_test_split"]

FILES = {p: f for p, f in store.ONNX_FILES.items() if p != "fp32"}  # what quantize makes
REPORT = store.QUANTIZE_JSON
# Graph ops kept in FP32 by the FP16 conversion, and why: see the module docstring.
FP16_KEEP_FP32 = ("Sub", "Div", "Where", "Softmax", "ReduceSum")
QDQ_OPS = ("MatMul", "Gemm", "Conv")
LATENCY_SHAPE = (1, 128)


@dataclass
class VariantReport:
    precision: str
    artifact: str
    method: str
    quantized: dict[str, int]
    not_quantized: dict[str, int]
    accuracy: float | None = None
    accuracy_fp32: float | None = None
    accuracy_torch: float | None = None
    argmax_agreement: float | None = None
    logits_max_abs: float | None = None
    attention_max_abs: float | None = None
    latency_ms: float | None = None
    latency_fp32_ms: float | None = None
    notes: list[str] = field(default_factory=list)
    stream: str | None = None  # the stream graph's variant made with it (verify judges it)

    @property
    def speedup(self) -> float | None:
        if self.latency_ms and self.latency_fp32_ms:
            return self.latency_fp32_ms / self.latency_ms
        return None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "speedup": self.speedup}


def _ort():  # type: ignore[no-untyped-def]
    try:
        import onnxruntime
    except ImportError:
        raise NotAvailable("quantize needs onnxruntime: pip install 'attn-export[cpu]'") from None
    return onnxruntime


def _session(artifact: Artifact, threads: int = 1, optimized: Path | None = None) -> Any:
    _ort()
    return ort_session(artifact, threads=threads, optimized=optimized)


def _paired_latency_ms(a: Any, b: Any, feeds: dict[str, np.ndarray], runs: int = 300) -> tuple[float, float]:
    """Median latency of two sessions, timed alternately (``runtime.timing``) so drift hits both alike."""
    def runner(session: Any) -> Callable[[], None]:
        return lambda: session.run(None, feeds) and None  # None: the host clock times it

    times = time_interleaved([runner(a), runner(b)], Budget(warmup=20, seconds=0.0, min_iterations=runs,
                                                             max_iterations=runs))
    return float(np.median(times[0])), float(np.median(times[1]))


def _calibration(info: ModelInfo, samples: int) -> tuple[list[np.ndarray], str]:
    """``samples`` real training sequences (seeded choice) and the sha256 of their bytes."""
    from .config import recipe_from_dict
    from .data import load_splits

    recipe = recipe_from_dict(info.recipe)
    try:
        splits = load_splits(recipe.data, read_test=False)  # its test file is none of calibration's business
    except (DataError, NotAvailable) as e:
        raise MissingPrerequisite(f"calibration needs the recipe's training data: {e}") from None
    changed = _changed_data(info, splits.files)
    if changed is not None:
        raise DataError(f"the recipe's {changed} changed since training (sha256 differs), and INT8 "
                        "calibration draws on the data the model was trained on; expected the file it was trained on")
    train = splits.train
    if train.features != info.input_size:
        raise MissingPrerequisite(
            f"the recipe's data has {train.features} features, the model {info.input_size}: "
            "INT8 Q/DQ calibration needs the model's real training data (set [data] in the recipe)"
        )
    order = np.random.default_rng(recipe.data.seed).permutation(train.n)[:samples]
    chosen = [train.sequences[i] for i in order]
    digest = hashlib.sha256()
    for seq in chosen:
        digest.update(np.ascontiguousarray(seq).tobytes())
    return chosen, digest.hexdigest()


def _make_fp16(source: Artifact, target: Path) -> None:
    """ONNX Runtime's float16 converter, then the graph every runtime reads alike (``_plain_fp16``); a
    stream graph's running attention state stays FP32 (``_stream_accumulators``)."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16
    from onnxruntime.transformers.onnx_model import OnnxModel

    proto = _fold_weights_only(onnx.load_from_string(source.data))  # its weights checked by ``quantize`` first
    converted = convert_float_to_float16(proto, keep_io_types=True, op_block_list=list(FP16_KEEP_FP32),
                                         node_block_list=_stream_accumulators(proto))
    _plain_fp16(converted)
    matmul_before_transpose(converted)
    fp32_fills(converted)
    make_portable(converted)
    # the converter appends its input casts after their consumers; the checker requires topological order
    graph = OnnxModel(converted)
    graph.topological_sort()
    onnx.save(graph.model, str(target))


WEIGHT_LEAST = 16  # values in a tensor checked by ``_not_rounded``: smaller ones are shapes, fills and scalars


def _tensors(proto: Any) -> dict[str, np.ndarray]:
    """A graph's initializers and Constant nodes' values, by name."""
    from onnx import numpy_helper

    values = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    values.update({n.output[0]: numpy_helper.to_array(a.t) for n in proto.graph.node if n.op_type == "Constant"
                   for a in n.attribute if a.name == "value"})
    return values


def _not_rounded(made: Artifact, source: Artifact) -> list[str]:
    """Each float tensor of the FP16 graph ``made`` (of ``WEIGHT_LEAST`` values or more) holds the values of
    one of ``source``'s (the FP32 graph, with what depends on weights alone folded as ``_make_fp16`` folds it)
    rounded to the nearest FP16 as the converter rounds (a non-zero value below FP16's smallest subnormal to
    that, not to 0: found by review), or as they are where a node stays FP32, in any order (a transpose).
    Found by attacking: an FP16 graph with one LSTM matrix rounded to bf16 passed every numeric check (0.45 of
    its budget): a converter that rounds otherwise, or changes a weight, is refused whatever the numbers say."""
    import onnx
    from onnxruntime.transformers.float16 import convert_np_to_float16

    weights = {}
    for name, value in _tensors(_fold_weights_only(onnx.load_from_string(source.data))).items():
        if value.dtype == np.float32 and value.size >= WEIGHT_LEAST:
            for form in (value, value.astype(np.float16), convert_np_to_float16(value)):
                weights[form.dtype.str, np.sort(form.ravel()).tobytes()] = name
    return [f"{name} ({value.dtype} {list(value.shape)}) is not a tensor of {source.name} rounded to the nearest "
            "FP16 (nor kept as it is): its converter rounded or changed weights"
            for name, value in _tensors(onnx.load_from_string(made.data)).items()
            if value.dtype in (np.float16, np.float32) and value.size >= WEIGHT_LEAST
            and (value.dtype.str, np.sort(value.ravel()).tobytes()) not in weights]


def _fold_weights_only(proto: Any) -> Any:
    """What depends on weights alone (a learned query's projection), computed in FP32 and kept as an
    initializer: in FP16, ONNX Runtime has no CPU kernel to fold it with, and a plain InferenceSession warned
    twice (found by attacking). onnxscript's folding, one conversion to its IR and back, and only where there
    is such a node (its import is about a second) and onnxscript is installed (the ``train`` extra; without
    it the graph is as before, warnings and all). The value_info its IR writes is dropped: the float16
    converter would read it and cast every FP32 initializer of an FP32-kept node to FP32 (found by review)."""
    weights = {t.name for t in proto.graph.initializer}
    if not any(n.input and all(i in weights for i in n.input if i) for n in proto.graph.node):
        return proto
    try:
        from onnxscript import ir, optimizer
    except ImportError:
        return proto
    model = ir.serde.deserialize_model(proto)
    optimizer.fold_constants(model, input_size_limit=FOLD_LIMIT, output_size_limit=FOLD_LIMIT)
    optimizer.remove_unused_nodes(model)
    folded = ir.serde.serialize_model(model)
    del folded.graph.value_info[:]
    return folded


FP16_MAX = float(np.finfo(np.float16).max)  # 65504


def _refuse_beyond_fp16(proto: Any, name: str) -> None:
    """A weight (an initializer a MatMul, Gemm, LSTM or Conv reads) that FP16 cannot hold, named: the
    converter clipped it, and the FP16 check failed eight times over on "the reference's intrinsic FP16
    error ... is not a finite non-negative number", naming no weight (found by attacking, a head scaled by
    1e6). Constants of the operators kept in FP32 (the masking fills) are not weights."""
    from onnx import TensorProto, numpy_helper

    readers = {i: node.name for node in proto.graph.node if node.op_type in ("MatMul", "Gemm", "LSTM", "Conv")
               for i in node.input}
    for init in proto.graph.initializer:
        if init.name in readers and init.data_type == TensorProto.FLOAT:
            values = numpy_helper.to_array(init)
            largest = float(np.abs(values).max()) if values.size else 0.0
            if largest > FP16_MAX:
                # the exporter's own name ('onnx::MatMul_150') says nothing; the node reading it names the module
                # ('/score/MatMul'): found by attacking
                node = readers[init.name]
                raise WorkFailed(f"{name} holds weights beyond FP16's range: {init.name!r}"
                                 + (f" (read by {node})" if node and node != init.name else "")
                                 + f" reaches {largest:.3g}, past {FP16_MAX:g}; expected weights FP16 holds (FP32 and "
                                   "INT8 run this model)")


def _refuse_fp16_overflow(references: Sequence[Any], name: str) -> None:
    """The model's own FP16 computation overflowing on sweep rows (a reference's intrinsic FP16 error that is
    not finite), refused in one line: every check of such a row failed on "the reference's intrinsic FP16
    error ... is not a finite non-negative number", eight times over, saying nothing of why (found by
    attacking: a head whose weights FP16 holds, 3e4, took the logits to 1.8e6)."""
    rows = [np.logical_or.reduce([~np.isfinite(v) for v in r.intrinsic["fp16"].values()]) for r in references]
    overflowing = sum(int(bad.sum()) for bad in rows)
    if overflowing:
        largest = max(float(np.abs(v).max()) for r in references for v in r.outputs.values())
        # the outputs' size is no cause: an attention score past FP16 overflowed under outputs of 6 (attacking)
        raise WorkFailed(f"{name}: this model's own FP16 computation overflows on {overflowing} of "
                         f"{sum(len(bad) for bad in rows)} sweep rows (an activation inside, such as an attention "
                         f"score, or an input after normalisation, past FP16's {FP16_MAX:g}; its FP32 outputs reach "
                         f"{largest:.3g}), so no FP16 budget exists; expected a model whose activations FP16 holds "
                         "(FP32 and INT8 run this model)")


def _stream_accumulators(proto: Any) -> list[str]:
    """The nodes of a stream graph on a path from a state input of the attention's online softmax
    (``ATTENTION_STATE``: steps seen, running maximum, sum and weighted sum) to a state output, and the
    Casts that feed them (``lengths`` into the step count); none in a whole-sequence graph. FP16 leaves
    them in FP32, as the whole-sequence graph's softmax and sums are: computed in FP16, the step count
    stops at 2048 (FP16's last run of exact integers) and the running sum stops taking small terms, and
    in a true-FP16 runtime (tract) the quickstart's stream was 0.27 off in the logits after 4,048 steps,
    20x its FP16 budget, while the whole-sequence graph stayed within 6e-4. They are [batch, chunk] or
    [batch, D] wide, nothing next to the LSTM."""
    from .runtime.streaming import ATTENTION_STATE, state_name

    inputs = {state_name(n, "in") for n in ATTENTION_STATE}
    outputs = {state_name(n, "out") for n in ATTENTION_STATE}
    nodes = list(proto.graph.node)  # the exporter's topological order
    reached = set(inputs)
    for node in nodes:
        if reached.intersection(node.input):
            reached.update(node.output)
    needed = set(outputs)
    for node in reversed(nodes):
        if needed.intersection(node.output):
            needed.update(node.input)
    kept = {n.name for n in nodes if reached.intersection(n.output) and needed.intersection(n.output)}
    fed = {i for n in nodes if n.name in kept for i in n.input}
    kept |= {n.name for n in nodes if n.op_type == "Cast" and fed.intersection(n.output)}
    return sorted(kept)


def _plain_fp16(proto: Any) -> None:
    """Undo the converter's round trips and spell the head's FP16 Gemm as MatMul + Add (in place).

    The converter casts every value that crosses between an FP32 and an FP16 node, including ``x`` into
    FP16 and straight back for the FP32 normalisation (raw features rounded to FP16 before it: a feature of
    1000 loses 0.25) and FP32 results into FP16 and back between two FP32 nodes. A cast pair that returns
    to its source type is removed, so FP32 stays FP32 until an FP16 node reads it, and a Shape reads the
    uncast tensor. tract 0.23.9 mistypes an FP16 Gemm's output and refuses the graph; MatMul + Add computes
    the same."""
    from onnx import TensorProto, helper, numpy_helper

    from .portability import _types

    types = _types(proto)
    produced = {o: n for n in proto.graph.node for o in n.output}
    outputs = {o.name for o in proto.graph.output}
    rename: dict[str, str] = {}
    for node in list(proto.graph.node):
        first = produced.get(node.input[0]) if node.op_type == "Cast" else None
        if first is None or first.op_type != "Cast" or types.get(first.input[0]) != node.attribute[0].i:
            continue
        if node.output[0] in outputs:  # a graph output keeps its name
            index = list(proto.graph.node).index(node)
            proto.graph.node.remove(node)
            proto.graph.node.insert(index, helper.make_node("Identity", [first.input[0]], [node.output[0]]))
        else:
            rename[node.output[0]] = first.input[0]
            proto.graph.node.remove(node)
    for node in proto.graph.node:
        for i, name in enumerate(node.input):
            while name in rename:
                name = rename[name]
            node.input[i] = name
        source = produced.get(node.input[0]) if node.op_type == "Shape" else None
        if source is not None and source.op_type == "Cast":  # a shape needs no cast (of all of x, per call)
            node.input[0] = source.input[0]
    inits = {t.name: t for t in proto.graph.initializer}
    for node in list(proto.graph.node):
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if (node.op_type != "Gemm" or types.get(node.input[0]) != TensorProto.FLOAT16 or node.input[1] not in inits
                or attrs.get("transA", 0) or attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0):
            continue
        weight = numpy_helper.to_array(inits[node.input[1]])
        weight = weight.T if attrs.get("transB", 0) else weight  # (in, out)
        name = f"{node.input[1]}.matmul"
        proto.graph.initializer.append(numpy_helper.from_array(weight.copy(), name))
        index = list(proto.graph.node).index(node)
        proto.graph.node.remove(node)
        product = f"{node.output[0]}.matmul"
        replacement = [helper.make_node("MatMul", [node.input[0], name], [product], name=f"{node.name}.matmul")]
        if len(node.input) > 2 and node.input[2]:
            replacement.append(helper.make_node("Add", [product, node.input[2]], [node.output[0]],
                                                name=f"{node.name}.bias"))
        else:
            replacement[0].output[0] = node.output[0]
        for offset, new in enumerate(replacement):
            proto.graph.node.insert(index + offset, new)


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """ORT's quantiser logs a pre-processing suggestion on the root logger; the graph is already final."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def _cell_state_only(proto: Any) -> list[str]:
    """The products in a stream graph that feed nothing but the LSTM's carried cell state (``state_out_c``):
    the gates recomputed over the chunk and their triangular product (``stream``). INT8 leaves them in FP32:
    quantised, their error lands in a state carried to every later chunk and compounds over the stream (an
    INT8 Q/DQ stream with them quantised agreed with PyTorch on 0.9625 of the quickstart's test split in
    OpenVINO, against 1.0 for the whole-sequence graph). Every other product is quantised as in the
    whole-sequence graph."""
    from .runtime.streaming import state_name

    consumers: dict[str, list[Any]] = {}
    for node in proto.graph.node:
        for i in node.input:
            consumers.setdefault(i, []).append(node)
    outputs = {o.name for o in proto.graph.output}
    memo: dict[str, set[str]] = {}

    def reaches(tensor: str) -> set[str]:  # the graph outputs this tensor flows into
        if tensor not in memo:
            memo[tensor] = set()
            found = {tensor} & outputs
            for node in consumers.get(tensor, []):
                for o in node.output:
                    found |= reaches(o)
            memo[tensor] = found
        return memo[tensor]

    only_c = {state_name("c", "out")}
    return [n.name for n in proto.graph.node if n.op_type in QDQ_OPS
            and set().union(*(reaches(o) for o in n.output)) == only_c]


def _activation_products(proto: Any) -> list[str]:
    """The products of two activations (no input a constant): the attention-weighted sum of the LSTM's outputs
    (and a stream graph's chunk of it). Static INT8 leaves them in FP32, as dynamic INT8 does: quantised, the
    attention weights (0 to 1, one per step) get a scale of 1/127, so every weight under 1/254 became 0 and
    a long sequence lost most of its context (found by attacking with one's own data: a model of test accuracy
    1.0 fell to chance at 500 steps in the Q/DQ graph, FP32 still 1.0)."""
    constants = {t.name for t in proto.graph.initializer} | {o for n in proto.graph.node if n.op_type == "Constant"
                                                             for o in n.output}
    return [n.name for n in proto.graph.node if n.op_type == "MatMul" and not constants & set(n.input)]


FORWARD_ONLY = {"direction": b"forward", "input_forget": 0, "layout": 0}  # an LSTM's settings besides hidden_size


def _one_node_per_layer(proto: Any, directory: Path) -> None:
    """Each layer's two forward-only LSTMs of the portable graph, the second run on length-reversed
    sequences (``AttentionLSTM._recur_reversed``), become one bidirectional LSTM that takes ``lengths`` as its
    sequence_lens (in place); the reversals' gathers go with them. The same function in ONNX Runtime (outputs
    at the padding are zero instead of the forward pass run on, and no valid step reads them: tested on padded
    batches), one kernel call per layer instead of two. Only for the dynamic INT8 graph, which ONNX Runtime
    runs one sequence at a time (``Precision.per_row``): OpenVINO computes a padded batch of it differently
    and tract refuses it (``portability.CONSTRUCTS``), and ONNX Runtime's own path with sequence lengths is
    slower on a batch (README, issue 25). WorkFailed where the LSTMs are not in pairs of independent nodes
    joined by one Concat on the last axis, as export writes them (which is the forward pass is read from
    the Concat's order, not from the nodes')."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    nodes = list(proto.graph.node)
    weights = {t.name: t for t in proto.graph.initializer}
    lstms = [n for n in nodes if n.op_type == "LSTM"]
    above: dict[str, set[int]] = {}  # tensor -> the LSTM nodes (by index) it is computed from
    for index, node in enumerate(nodes):
        found = set().union(*(above.get(i, set()) for i in node.input)) | ({index} if node.op_type == "LSTM" else set())
        above.update((o, found) for o in node.output)
    length32 = "lengths.int32"
    replaced: dict[int, list[Any]] = {}  # the index of each layer's Concat -> the nodes in its place
    for layer, pair in enumerate(zip(lstms[0::2], lstms[1::2])):
        ids = {nodes.index(n) for n in pair}
        join = next((i for i, n in enumerate(nodes) if n.output and ids <= above.get(n.output[0], set())), None)
        concat = nodes[join] if join is not None else None
        # which is which: the forward pass feeds the Concat's first input, the reversed one its second
        feeds = ([above.get(i, set()) & ids for i in concat.input]
                 if concat is not None and concat.op_type == "Concat" else [])
        order = [nodes[min(f)] for f in feeds if len(f) == 1]
        settings = [{a.name: helper.get_attribute_value(a) for a in n.attribute} for n in pair]
        axis = {a.name: helper.get_attribute_value(a) for a in concat.attribute}.get("axis") if concat else None
        if (len(lstms) % 2 or len(feeds) != 2 or len(order) != 2 or order[0] is order[1] or axis not in (2, -1)
                or any(ids & above.get(n.input[0], set()) for n in pair) or settings[0] != settings[1]
                or not {k: v for k, v in settings[0].items() if k != "hidden_size"}.items() <= FORWARD_ONLY.items()
                or any(len(n.input) < 4 or not set(n.input[1:4]) <= set(weights) for n in pair)):
            raise WorkFailed("the FP32 graph's LSTMs are not the pairs of forward-only directions export writes; "
                             f"run {store.made_by(store.ONNX_FP32, directory)} again")
        forward, backward = order
        out = nodes[join].output[0]
        joined = [numpy_helper.from_array(np.concatenate([numpy_helper.to_array(weights[n.input[k]])
                                                          for n in (forward, backward)]), f"{out}.{part}")
                  for k, part in ((1, "W"), (2, "R"), (3, "B"))]
        proto.graph.initializer.extend(joined)
        hidden = int(settings[0]["hidden_size"])
        replaced[join] = [
            *([helper.make_node("Cast", ["lengths"], [length32], to=TensorProto.INT32, name=length32)]
              if layer == 0 else []),
            helper.make_node("LSTM", [forward.input[0], *(t.name for t in joined), length32], [f"{out}.Y"],
                             name=f"/lstm/layer{layer}", hidden_size=hidden, direction="bidirectional"),
            helper.make_node("Transpose", [f"{out}.Y"], [f"{out}.batch_first"], perm=[2, 0, 1, 3],
                             name=f"/lstm/layer{layer}/transpose"),
            helper.make_node("Constant", [], [f"{out}.shape"], name=f"/lstm/layer{layer}/shape",
                             value=numpy_helper.from_array(np.array([0, 0, 2 * hidden], np.int64))),
            helper.make_node("Reshape", [f"{out}.batch_first", f"{out}.shape"], [out],
                             name=f"/lstm/layer{layer}/reshape")]
    rebuilt = [m for i, n in enumerate(nodes) for m in replaced.get(i, [n])]
    del proto.graph.node[:]
    proto.graph.node.extend(rebuilt)
    prune(proto)


DYNAMIC_METHOD = ("onnxruntime quantize_dynamic (symmetric INT8 weights, stored as u8 with zero point 128; LSTM as "
                  "DynamicQuantizeLSTM)")


def _make_int8_dynamic(source: Artifact, target: Path, bidirectional: bool = False) -> None:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    proto = onnx.load_from_string(source.data)
    if bidirectional:
        _one_node_per_layer(proto, source.directory)
    with _quiet_root_logger():
        quantize_dynamic(proto, str(target), weight_type=QuantType.QInt8, nodes_to_exclude=_cell_state_only(proto))
    made = onnx.load(str(target))
    _unsigned_weights(made)
    onnx.save(made, str(target))


def _unsigned_weights(proto: Any) -> None:
    """Stores the s8 weights of ``proto``'s integer operators (``INTEGER_WEIGHTS``), with their zero points, as
    u8, each value plus 128: the same integers, multiplied u8 x u8, which ONNX Runtime adds exactly on every
    CPU, so a plain ``InferenceSession`` computes on an x86 CPU without VNNI the integers verify's CPU computed
    (u8 x s8 saturates there: ``exact_int8``). Hand-written: ONNX Runtime's quantiser makes an LSTM's weights s8
    whatever ``weight_type`` says (its operators/lstm.py), and its QUInt8 elsewhere is another grid, not these
    integers."""
    from onnx import TensorProto, numpy_helper

    tensors = {t.name: t for t in proto.graph.initializer}
    shifted: set[str] = set()
    for node in proto.graph.node:
        for pair in INTEGER_WEIGHTS.get(node.op_type, ()):
            names = [node.input[i] if i < len(node.input) else "" for i in pair]
            if not all(name in tensors for name in names):  # ONNX Runtime's quantiser writes both, as initializers
                raise WorkFailed(f"the dynamic INT8 graph's {node.op_type} {node.name!r} has no initializer at inputs "
                                 f"{pair} (its weight and zero point), so its weights cannot be stored as u8")
            for name in set(names) - shifted:
                if tensors[name].data_type == TensorProto.INT8:
                    values = numpy_helper.to_array(tensors[name]).astype(np.int16) + 128
                    tensors[name].CopyFrom(numpy_helper.from_array(values.astype(np.uint8), name))
                shifted.add(name)


QDQ_METHOD = ("onnxruntime quantize_static QDQ (MinMax, symmetric, per-channel weights, float biases; products of "
              "two activations in FP32)")
# found by attacking: from an opset-21 model, ONNX Runtime 1.32 could not open its own quantiser's Q/DQ graph
# with its default optimisations ("QuantizeLinear ... output_dtype INT8 does not match y_zero_point type
# UINT8": the QDQ propagation of onnxruntime#27845), so Q/DQ graphs are made at opset 20 at most; opset 21
# changed no operator that the exported graphs use other than by new types (int4, float8) they do not use
QDQ_MAX_OPSET = 20


def _make_int8_qdq(source: Artifact, target: Path, calibration: list[np.ndarray]) -> str:
    """Static Q/DQ INT8 of ``source``, calibrated on ``calibration``: each sequence alone (no padding in the
    ranges), a stream graph's from its zero state with the whole sequence as one chunk (every activation
    the whole-sequence graph sees, at the same scale). Returns the method, as quantize.json records it."""
    import onnx
    from onnx import version_converter
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    from .runtime.streaming import zero_state

    start = zero_state(source.spec, 1)  # a stream graph's state inputs; none for the whole-sequence graph

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.feeds = iter({"x": s[None].astype(np.float32), "lengths": np.array([len(s)], np.int64), **start}
                              for s in calibration)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.feeds, None)

    proto = onnx.load_from_string(source.data)
    opset = next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
    method = QDQ_METHOD
    if opset > QDQ_MAX_OPSET:
        proto = version_converter.convert_version(proto, QDQ_MAX_OPSET)
        for prop in proto.metadata_props:  # the metadata says the graph's own opset (it had kept 21: found by attacking)
            if prop.key == "opset":
                prop.value = str(QDQ_MAX_OPSET)
        method += f", made at opset {QDQ_MAX_OPSET} from opset {opset} (ONNX Runtime cannot open opset-21 Q/DQ)"
    with _quiet_root_logger():
        quantize_static(proto, str(target), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        nodes_to_exclude=_cell_state_only(proto) + _activation_products(proto),
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                        op_types_to_quantize=list(QDQ_OPS),
                        # biases stay float: TensorRT's DequantizeLinear takes INT8 only, never the INT32 bias
                        # ONNX Runtime writes by default (found by review: every target was "ready" for it)
                        extra_options={"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False})
    return method


def _qdq_census(proto: Any) -> tuple[dict[str, int], dict[str, int], list[str]]:
    """(quantised op counts, unquantised compute op counts, problems) of a Q/DQ graph."""
    from onnx import numpy_helper

    produced_by = {o: n for n in proto.graph.node for o in n.output}
    inits = {t.name: t for t in proto.graph.initializer}
    quantized: Counter[str] = Counter()
    plain: Counter[str] = Counter()
    for node in proto.graph.node:
        if node.op_type in QDQ_OPS + ("LSTM",):  # quantised: both operands dequantised (a bias stays float)
            fed = all(produced_by.get(i) is not None and produced_by[i].op_type == "DequantizeLinear"
                      for i in node.input[:2])
            (quantized if fed else plain)[node.op_type] += 1
    problems = []
    pairs = [n for n in proto.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    if not pairs:
        problems.append("the graph has no Q/DQ nodes")
    for node in pairs:
        if len(node.input) > 2 and node.input[2] in inits:
            if np.any(numpy_helper.to_array(inits[node.input[2]]) != 0):
                problems.append(f"{node.name} has a non-zero zero point (TensorRT needs symmetric INT8)")
    for op in ("Gemm", "Conv"):
        if plain[op]:
            problems.append(f"{plain[op]} {op} node(s) were not quantised")
    if not quantized["MatMul"] and not quantized["Gemm"]:
        problems.append("neither the attention score nor the head was quantised")
    quantized["QuantizeLinear"] = sum(1 for n in pairs if n.op_type == "QuantizeLinear")
    quantized["DequantizeLinear"] = sum(1 for n in pairs if n.op_type == "DequantizeLinear")
    return dict(quantized), dict(plain), problems


def _dynamic_census(proto: Any) -> tuple[dict[str, int], dict[str, int]]:
    ops = Counter(n.op_type for n in proto.graph.node)
    quantized = {k: ops[k] for k in ("DynamicQuantizeLSTM", "MatMulInteger", "ConvInteger",
                                     "DynamicQuantizeLinear") if ops[k]}
    plain = {k: ops[k] for k in ("LSTM", "MatMul", "Gemm", "Conv") if ops[k]}
    return quantized, plain


def _float_types(proto: Any) -> dict[str, int]:
    import onnx

    inferred = onnx.shape_inference.infer_shapes(proto)
    types = {v.name: v.type.tensor_type.elem_type for v in
             list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output)}
    types.update({t.name: t.data_type for t in inferred.graph.initializer})
    return types


def _nodes_taking(proto: Any, elem_type: int, types: dict[str, int] | None = None) -> set[str]:
    """Names of compute nodes (not Cast or Shape) that take an input of ``elem_type`` (a TensorProto type);
    ``types``: ``_float_types(proto)`` when already computed."""
    types = _float_types(proto) if types is None else types
    return {n.name for n in proto.graph.node
            if n.op_type not in ("Cast", "Shape") and any(types.get(i) == elem_type for i in n.input)}


def _fp16_census(made: Artifact) -> tuple[dict[str, int], dict[str, int], list[str]]:
    import tempfile

    import onnx

    proto = onnx.load_from_string(made.data)
    types = _float_types(proto)
    declared = _nodes_taking(proto, onnx.TensorProto.FLOAT16, types)
    # ONNX Runtime writes its optimised graph where it is told, following links: never inside DIR
    with tempfile.TemporaryDirectory(prefix="attn-export-fp16-") as scratch:
        optimized = Path(scratch) / "optimized.onnx"
        _session(made, optimized=optimized)
        ran = _nodes_taking(onnx.load(str(optimized)), onnx.TensorProto.FLOAT16) & declared
    fp16_ops = Counter(n.op_type for n in proto.graph.node if n.name in declared)
    # kept in FP32: the blocked operators on float32 data, not the int64 shape arithmetic of the same types
    fp32 = _nodes_taking(proto, onnx.TensorProto.FLOAT, types)
    fp32_ops = Counter(n.op_type for n in proto.graph.node if n.op_type in FP16_KEEP_FP32 and n.name in fp32)
    cast_back = sorted({n.op_type for n in proto.graph.node if n.name in declared - ran})
    note = (f"ONNX Runtime CPU keeps {len(ran)} of the graph's {len(declared)} FP16 nodes in FP16 and runs the other "
            f"{len(declared - ran)} in FP32, casting around them ({', '.join(cast_back) or 'none'}); FP16 "
            "numerics are checked with the reference evaluator instead")
    return dict(fp16_ops), dict(fp32_ops), [note]


def _check_runs(made: Artifact, spec: IOSpec, cases: list[SweepCase], precision: str) -> list[str]:
    """Dynamic axes survive (batch 1 and 8, seq 1 and 2048): outputs have the right shapes, finite."""
    problems = []
    session = _session(made)
    names = [o.name for o in session.get_outputs()]
    for case in cases:
        out = dict(zip(names, session.run(None, case.feeds)))
        head = out[spec.head_output]
        batch, seq = case.x.shape[:2]
        if head.shape != (batch, spec.outputs[0].dims[1]) or out["attention"].shape != (batch, seq):
            problems.append(f"{case.label}: output shapes {head.shape}, {out['attention'].shape} "
                            f"do not follow the input's batch {batch} and seq {seq}")
        elif not (np.isfinite(head).all() and np.isfinite(out["attention"]).all()):
            problems.append(f"{case.label}: NaN or Inf in the {precision} outputs")
    return problems


def _fp16_reference_check(made: Artifact, spec: IOSpec, cases: list[SweepCase], refs: list[Reference],
                          rule: Rule) -> tuple[list[str], float, int]:
    """True-FP16 numerics: the reference evaluator on the sweep cases it runs (padded ones included),
    against PyTorch FP32, each row within its FP16 budget: the problems, the largest error and the longest
    case it ran."""
    from .backends.onnxref import OnnxRefBackend

    problems, worst, longest = [], 0.0, 0
    with OnnxRefBackend(made) as ref_backend:
        for case, ref in zip(cases, refs):
            if ref_backend.accepts(*case.x.shape[:2]) is not None:
                continue
            result = compare_case(case, ref, ref_backend.infer(case.feeds), spec.head_output, rule)
            worst, longest = max(worst, result.max_abs), max(longest, int(case.x.shape[1]))
            if not result:
                problems.append(f"onnx-ref FP16 {case.label}: " + "; ".join(result.problems))
    return problems, worst, longest


def _long_padded_cases(spec: IOSpec, mean: Sequence[float], std: Sequence[float]) -> list[SweepCase]:
    """seq 4096 and a batch whose tails are mostly padding: FP16 must stay finite there."""
    rng = np.random.default_rng(7)
    x = (np.asarray(mean) + np.asarray(std) * rng.standard_normal((2, 4096, spec.features))).astype(np.float32)
    lengths = np.array([4096, 3], np.int64)
    x[1, 3:] = rng.uniform(-1e3, 1e3, (4093, spec.features))
    return [SweepCase(x, lengths, True)]


def _evaluate(made: Artifact, fp32: Artifact, spec: IOSpec, test: Any) -> dict[str, float]:
    from .data import pad

    a, b = _session(made), _session(fp32)
    names = [o.name for o in a.get_outputs()]
    correct = correct32 = agree = 0
    logits_err = attention_err = 0.0
    order = np.argsort(test.lengths, kind="stable")
    batch = 1 if one_by_one(made.precision) else 64  # as predict runs it
    for start in range(0, test.n, batch):
        index = order[start : start + batch]
        x, lengths = pad([test.sequences[i] for i in index])
        feeds = {"x": x, "lengths": lengths}
        got = dict(zip(names, a.run(None, feeds)))
        ref = dict(zip(names, b.run(None, feeds)))
        head, head32 = got[spec.head_output], ref[spec.head_output]
        decided, decided32 = class_logits(head).argmax(1), class_logits(head32).argmax(1)  # binary: logit > 0
        correct += int((decided == test.y[index]).sum())
        correct32 += int((decided32 == test.y[index]).sum())
        agree += int((decided == decided32).sum())
        logits_err = max(logits_err, float(np.abs(head - head32).max()))
        attention_err = max(attention_err, float(np.abs(got["attention"] - ref["attention"]).max()))
    return {"accuracy": correct / test.n, "accuracy_fp32": correct32 / test.n, "argmax_agreement": agree / test.n,
            "logits_max_abs": logits_err, "attention_max_abs": attention_err}


def labelled_test_split(info: ModelInfo) -> tuple[Any, str | None]:
    from .config import recipe_from_dict
    from .data import load_splits

    if info.head not in CLASSIFIERS or not info.labels:
        return None, "no labelled test split for this model (not a classifier)"
    try:
        splits = load_splits(recipe_from_dict(info.recipe).data)
    except (DataError, NotAvailable) as e:
        return None, f"test split unavailable: {e}"
    changed = _changed_data(info, splits.files)
    if changed is not None:
        return None, (f"the recipe's {changed} changed since training (sha256 differs), and the test split is "
                      "read with it; expected the files the model was trained on")
    test = splits.test
    if test.features != info.input_size:
        return None, "the recipe's data does not match the model's features"
    if test.n == 0:
        return None, "the test split is empty: the recipe's data leaves no test sequences"
    return test, None


def _changed_data(info: ModelInfo, files: dict[str, dict[str, str]]) -> str | None:
    """The first data file whose sha256 differs from the one training recorded in metrics.json ("training data
    PATH", "test data PATH"), so that no
    accuracy is judged or calibration drawn on other data than the model's; None when all match, or when
    training recorded none (synthetic data, a model imported with attn-export load, or trained before the
    files were recorded)."""
    s = store.Store(info.path.parent)
    trust = s.state(store.METRICS)
    if trust.state == "missing":
        return None
    if not trust.current:  # what training recorded cannot be believed: no data can be shown to be its data
        return f"{store.METRICS} ({trust.reason})"
    metrics = store.parse_json(s.read(store.METRICS) or b"", info.path.parent / store.METRICS)
    recorded = metrics.get("data_files") if isinstance(metrics, dict) else None
    if not isinstance(recorded, dict):
        return None
    for role, now in files.items():
        then = recorded.get(role)
        if not isinstance(then, dict) or then.get("sha256") != now["sha256"]:
            # named by its role (found by attacking: a changed training file was called "the test split data")
            return f"{'training' if role == 'train' else role} data {now['path']}"
    return None


@store.writes_directory("quantize")
def quantize(
    directory: Path,
    precisions: list[str],
    calib_samples: int | None = None,
) -> list[VariantReport]:
    """Make each requested variant (``fp16``, ``int8-dynamic``, ``int8-qdq``) of DIR/model.onnx."""
    import onnx

    from .runtime.compare import rule_for
    from .config import recipe_from_dict
    from .runtime.verify import deployment_max_seq

    if calib_samples is not None and (not whole(calib_samples) or not 1 <= calib_samples <= MAX_CALIB_SAMPLES):
        # -5 had calibrated on all but 5 sequences, and 0 on the recipe's number (found by attacking)
        raise BadInput(f"calib_samples = {calib_samples!r}; expected a whole number of sequences, 1 to "
                       f"{MAX_CALIB_SAMPLES:,}, or None for the recipe's")
    if isinstance(precisions, (str, bytes)):  # iterated, it was one precision per character (found by attacking)
        raise BadInput(f"precisions = {precisions!r} is one string; expected a list of them, e.g. [{precisions!r}]")
    if not isinstance(precisions, (list, tuple)):  # found by attacking: 5 was a TypeError from inside
        raise BadInput(f"precisions = {precisions!r} is of type {type(precisions).__name__}; expected a list of them")
    for p in precisions:
        if not isinstance(p, str) or p not in FILES:  # a list inside was "unhashable type"
            raise BadInput(f"precision '{p}' is unknown; expected one of {', '.join(FILES)}")
    if calib_samples is not None and "int8-qdq" not in precisions:  # the CLI refuses it too (found by attacking)
        raise BadInput(f"calib_samples = {calib_samples!r} is read by the Q/DQ graph's calibration only; expected "
                       "'int8-qdq' among precisions, or calib_samples=None")
    s = store.Store(directory)
    source = s.open(store.ONNX_FP32, need="current")
    info = s.model()
    recipe = recipe_from_dict(info.recipe)
    spec = info.spec
    opened_reference = s.open(store.REFERENCE, need="current")
    reference_path = opened_reference.path
    reference = read_reference(opened_reference.data, reference_path)
    cases, refs = reference.cases, reference.references
    axes = [c for c in cases if (c.x.shape[0], c.x.shape[1]) in {(1, 1), (8, 2048)} or c.padded]
    test, test_reason = labelled_test_split(info)
    metrics = s.read(store.METRICS) if s.state(store.METRICS).current else None
    torch_accuracy = (store.parse_json(metrics, directory / store.METRICS, schema.METRICS)["test"]["accuracy"]
                      if metrics is not None else None)
    rng = np.random.default_rng(0)
    latency_feeds: dict[str, np.ndarray] = {"x": rng.standard_normal((*LATENCY_SHAPE, spec.features)).astype(np.float32),
                     "lengths": np.full(LATENCY_SHAPE[0], LATENCY_SHAPE[1], np.int64)}

    order = [p for p in FILES if p in precisions]  # FP16 first, each once
    if "fp16" in order:  # refused before any variant is made (found by attacking: --fp16 --int8 made neither)
        others = ", ".join(FILES[p] for p in order if p != "fp16")
        try:
            _refuse_beyond_fp16(onnx.load_from_string(source.data), source.name)  # names the weight: first
            reference.require_intrinsic("fp16", reference_path, directory)
            _refuse_fp16_overflow(refs, FILES["fp16"])
        except AttnExportError as e:
            raise (type(e)(f"{e}; nothing was made: run quantize without FP16 to make {others}") if others
                   else e) from None
    reports = []
    calibrated: tuple[list[np.ndarray], str] | None = None  # the Q/DQ graphs' calibration, made once
    for precision in order:
        name = FILES[precision]
        extra: dict[str, Any] = {}
        notes: list[str] = []
        with holding() as hold:
            with store.atomic_path(directory / name) as tmp:
                if precision == "fp16":
                    _make_fp16(source, tmp)
                    made = Artifact.candidate(tmp, spec, precision, info)
                    quantized, plain, notes = _fp16_census(made)
                    method = "fp16 (onnxruntime.transformers.float16, FP32 I/O)"
                    rule = rule_for("fp16", recipe.verify, "cpu", deployment_max_seq(info, recipe.verify))
                    problems, worst, longest = _fp16_reference_check(made, spec, cases, refs, rule)
                    problems += _not_rounded(made, source)
                    problems += _check_runs(made, spec, _long_padded_cases(spec, info.mean, info.std), precision)
                    # found by a user: "proven" here, then failed by verify at 1,008 steps, a training length
                    notes.append(f"onnx-ref (true FP16) max |logits - PyTorch FP32| = {worst:.3g} on the recorded sweep's "
                                 f"cases of up to {longest} steps; verify judges the training lengths and the test split")
                    extra["kept_fp32"] = list(FP16_KEEP_FP32)
                elif precision == "int8-dynamic":
                    _make_int8_dynamic(source, tmp, bidirectional=recipe.model.bidirectional)
                    made = Artifact.candidate(tmp, spec, precision, info)
                    quantized, plain = _dynamic_census(onnx.load_from_string(made.data))
                    method = DYNAMIC_METHOD
                    problems = []
                else:
                    samples = recipe.quantize.calib_samples if calib_samples is None else int(calib_samples)
                    calibration, calib_sha = calibrated = _calibration(info, samples)
                    method = _make_int8_qdq(source, tmp, calibration)
                    made = Artifact.candidate(tmp, spec, precision, info)
                    quantized, plain, problems = _qdq_census(onnx.load_from_string(made.data))
                    extra["calibration"] = {"samples": len(calibration), "sha256": calib_sha,
                                            "source": "training split"}
                    if len(calibration) < samples:  # said, not only recorded in the manifest (found by attacking)
                        asked = "the recipe's" if calib_samples is None else "the"
                        notes.append(f"calibrated on all {len(calibration):,} training-split sequences, fewer than "
                                     f"{asked} {samples:,} asked for")
                if precision != "int8-dynamic":  # the dynamic graph uses ORT contrib ops the checker cannot type
                    onnx.checker.check_model(onnx.load_from_string(made.data), full_check=True)
                problems += _check_runs(made, spec, axes, precision)
                if problems:
                    raise WorkFailed(f"{name} failed its checks: " + "; ".join(problems))
                report = VariantReport(precision, name, method, quantized, plain, notes=notes,
                                       accuracy_torch=torch_accuracy)
                if test is not None:
                    for key, value in _evaluate(made, source, spec, test).items():
                        setattr(report, key, value)
                else:
                    report.notes.append(str(test_reason))
                report.latency_ms, report.latency_fp32_ms = _paired_latency_ms(
                    _session(made), _session(source), latency_feeds)
                hold()  # from the rename to the record and its row (``interrupt.holding``)
            store.record(directory, name, f"quantize {precision}", parent=store.ONNX_FP32, parent_sha256=source.sha256,
                             versions={"onnx": onnx.__version__, "onnxruntime": _ort().__version__},
                             precision=precision, method=method, quantized=quantized, not_quantized=plain,
                             **extra)
            reports.append(report)
            _write_report(directory, reports)  # its row now: an interrupt before the next left an older one (attacking)
    stream = s.state(store.STREAM_ONNX)
    if stream.current:
        for report in reports:
            _make_stream_variant(s, directory, info, report.precision, calibrated)
            report.stream = store.STREAM_FILES[report.precision]
    elif stream.state != "missing":  # found by a user: after a retrain and export, it was left stale silently
        from .runtime.streaming import not_streamable

        cannot = not_streamable(info.recipe.get("model", {}))  # then export --stream refuses: no such advice
        for report in reports:
            report.notes.append(f"{store.STREAM_FILES[report.precision]} not made: {stream.reason}; " + (
                f"the model cannot stream now ({cannot}): {store.made_by(store.ONNX_FP32, directory)} removes the "
                "stream graphs" if cannot else
                f"run {store.made_by(store.STREAM_ONNX, directory)}, then this quantize again"))
    _write_report(directory, reports)
    return reports


def requantised(s: store.Store, info: ModelInfo, name: str, precision: str) -> Artifact | str:
    """The INT8 graph ``name`` made again, here, by quantize's own recipe from the current graph it was made
    from (its Q/DQ calibration drawn again and checked against the sha256 its manifest entry recorded), in
    memory: what verify judges the file's decisions against where the quantiser itself moves them
    (``runtime.verify._judge_cut``). ``precision``: ``int8-dynamic`` or ``int8-qdq``. A string: why it cannot be
    made here."""
    import tempfile

    from .config import recipe_from_dict

    entry = s.entry(name) or {}
    parent = entry.get("parent")
    if not s.state(name).current:  # verify fails it for that, unrun
        return str(s.state(name).reason)
    if parent not in (store.ONNX_FP32, store.STREAM_ONNX):
        return f"its manifest entry does not say which graph here it was made from (parent {parent!r})"
    try:
        source = s.open(parent, need="current")
        calibration: list[np.ndarray] = []
        if precision == "int8-qdq":
            recorded = entry.get("calibration") or {}
            if not whole(recorded.get("samples")):
                return "its manifest entry records no calibration to draw again"
            calibration, sha = _calibration(info, int(recorded["samples"]))
            if sha != recorded.get("sha256"):
                return (f"its calibration sequences cannot be drawn again: the {len(calibration)} drawn now differ "
                        "from those its manifest entry records (sha256)")
        with tempfile.TemporaryDirectory(prefix="attn-export-requantise.") as tmp:
            target = Path(tmp) / name
            if precision == "int8-dynamic":
                _make_int8_dynamic(source, target, bidirectional=recipe_from_dict(info.recipe).model.bidirectional)
            else:
                _make_int8_qdq(source, target, calibration)
            made = Artifact.candidate(target, source.spec, precision, info)
    except ImportError as e:
        return f"onnxruntime.quantization cannot be imported here ({e})"
    except AttnExportError as e:
        return f"{parent} cannot be quantised again here: {e}"
    except Exception as e:  # the quantiser's own refusal, of any type (found by the suite: ONNX's shape inference
        # on a graph that declares another opset than its operators'): nothing to judge against, said so
        return f"{parent} cannot be quantised again here: {type(e).__name__}: {printable(str(e), 300)}"
    return replace(made, directory=s.directory, name=f"{name} re-quantised here")


def _make_stream_variant(s: store.Store, directory: Path, info: ModelInfo, precision: str,
                         calibrated: tuple[list[np.ndarray], str] | None) -> None:
    """The stream graph's variant at ``precision``, made by the same converter as the whole-sequence
    graph's (FP32 inputs, outputs and state; INT8 Q/DQ calibrated on the same training sequences,
    ``calibrated``: the sequences and their sha256): checked
    by ONNX's checker (not the dynamic INT8 graph: ORT contrib ops) and run in ONNX Runtime over an uneven
    schedule, finite; verify judges it by its precision's rule on every update."""
    import onnx

    from .runtime.streaming import replay, schedule, stream_run

    name = store.STREAM_FILES[precision]
    source = s.open(store.STREAM_ONNX, need="current")
    extra: dict[str, Any] = {}
    with holding() as hold:
        with store.atomic_path(directory / name) as tmp:
            if precision == "fp16":
                _make_fp16(source, tmp)
                method = "fp16 (onnxruntime.transformers.float16; FP32 I/O, state and the attention's running sums)"
            elif precision == "int8-dynamic":
                _make_int8_dynamic(source, tmp)
                method = DYNAMIC_METHOD
            else:
                assert calibrated is not None
                calibration, calib_sha = calibrated
                method = _make_int8_qdq(source, tmp, calibration)
                extra["calibration"] = {"samples": len(calibration), "sha256": calib_sha, "source": "training split"}
            made = Artifact.candidate(tmp, source.spec, precision, info)
            if precision != "int8-dynamic":
                onnx.checker.check_model(onnx.load_from_string(made.data), full_check=True)
            if precision == "fp16" and (problems := _not_rounded(made, source)):
                raise WorkFailed(f"{name} failed its checks: " + "; ".join(problems))
            x = np.random.default_rng(0).standard_normal((2, 9, info.input_size)).astype(np.float32)
            with OrtCpuBackend(made, threads=1) as backend:
                updates = replay(stream_run(backend.run_feeds, precision), made.spec, x, np.array([9, 4]),
                                 schedule("uneven", 9))
            if not all(np.isfinite(v).all() for u in updates for v in u.outputs.values()):
                raise WorkFailed(f"{name} gives non-finite outputs in ONNX Runtime")
            hold()  # from the rename to the record (``interrupt.holding``)
        store.record(directory, name, f"quantize {precision}", parent=store.STREAM_ONNX, parent_sha256=source.sha256,
                     versions={"onnx": onnx.__version__, "onnxruntime": _ort().__version__}, precision=precision,
                     method=method, **extra)


def _write_report(directory: Path, reports: list[VariantReport]) -> None:
    """quantize.json: this run's rows, each with the sha256 of the file it measured, and the earlier rows
    whose file is still current and still those bytes (rows of an earlier model's variants had stood beside
    the new model's, said nowhere: found by attacking)."""
    path = directory / REPORT
    s = store.Store(directory)

    def measured(row: Any) -> bool:
        entry = s.entry(str(row.get("artifact"))) if isinstance(row, dict) else None
        return bool(entry and row.get("sha256") == entry["sha256"] and s.state(str(row["artifact"])).current)

    existing = store.read_json(path) if path.is_file() else {}
    rows = {precision: row for precision, row in existing.items() if measured(row)}
    rows.update({r.precision: {**r.to_dict(), "sha256": (s.entry(r.artifact) or {}).get("sha256")} for r in reports})
    store.write_json(path, rows)
