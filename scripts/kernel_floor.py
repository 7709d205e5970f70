"""How much of issue 25's goals the recurrent kernels leave: each graph's LSTM nodes timed alone, beside the
whole graph and PyTorch eager. Measured, not asserted.

    .venv/bin/python scripts/kernel_floor.py DIR [--seconds 3] [--threads 1]

DIR is a trained artefact directory with ``model.onnx`` (and ``model.int8.onnx`` when quantised). For each
graph its recurrent nodes (``LSTM``, ONNX Runtime's ``DynamicQuantizeLSTM``) are cut out into a graph of
their own, fed the tensors they receive inside the whole graph (captured by running it once with those
tensors exposed as outputs; it stops unless the nodes alone then give exactly what they gave there), and
timed in ONNX Runtime on the CPU beside the whole graph and PyTorch eager, interleaved
(``time_interleaved``: one block each per round, so machine drift hits all alike), at 1 x 16, 1 x 128 and
32 x 128. A per-row precision (dynamic INT8) runs a batch one sequence at a time, as predict and bench run
it, its nodes alone too.

The goals of issue 25 are 4x PyTorch eager at batch 1 and 2x at batch 32: ``budget`` is PyTorch's p50
divided by that, and ``nodes / budget`` over 1.00 means the recurrent kernels alone take more than the whole
graph may, so no change to the rest of the graph reaches the goal with this runtime's kernel. ``G MAC/s``
is the nodes' rate on the LSTM's multiply-adds (directions x 4 x hidden x (input + hidden) per row and step),
to set against the CPU's own FMA peak.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import helper, numpy_helper

from attn_export.bench import check_seconds
from attn_export.checkpoint import load_model
from attn_export.errors import AttnExportError
from attn_export.runtime.backends.onnxrt import int8_kernels
from attn_export.runtime.limits import check_threads
from attn_export.runtime.onnxfile import parse_graph
from attn_export.runtime.precisions import ONNX_FILES, one_by_one
from attn_export.runtime.timing import Budget, cpu_name, percentiles, time_interleaved

SHAPES = ((1, 16), (1, 128), (32, 128))
RECURRENT = ("LSTM", "DynamicQuantizeLSTM")


def _goal(batch: int) -> float:
    return 4.0 if batch == 1 else 2.0


def _session(model: onnx.ModelProto | str, threads: int, precision: str) -> ort.InferenceSession:
    """A session with the options attn-export's own get (``int8_kernels``: an INT8 graph's integer kernels)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    data = Path(model).read_bytes() if isinstance(model, str) else model.SerializeToString()
    kept = int8_kernels(options, precision, parse_graph(data, "the graph timed"))
    session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    session.kept = kept  # ONNX Runtime reads the added initializers from these for the session's life
    return session


def _cut(graph: onnx.ModelProto) -> tuple[onnx.ModelProto, list[str], list[onnx.NodeProto]]:
    """The recurrent nodes alone, with the names of the tensors they take from the rest of the graph."""
    initializers = {i.name: i for i in graph.graph.initializer}
    nodes = [n for n in graph.graph.node if n.op_type in RECURRENT]
    if not nodes:
        raise SystemExit(f"{graph.graph.name}: no LSTM node to time")
    outputs = [o for n in nodes for o in n.output if o]
    fed = list(dict.fromkeys(name for n in nodes for name in n.input
                             if name and name not in initializers and name not in outputs))
    used = [initializers[name] for n in nodes for name in n.input if name in initializers]
    cut = helper.make_graph(nodes, "recurrent", [helper.make_empty_tensor_value_info(name) for name in fed],
                            [helper.make_empty_tensor_value_info(o) for o in outputs],
                            list({i.name: i for i in used}.values()))
    return helper.make_model(cut, opset_imports=graph.opset_import, ir_version=graph.ir_version), fed, nodes


def _typed(model: onnx.ModelProto, values: dict[str, np.ndarray]) -> onnx.ModelProto:
    for vi in model.graph.input:
        tensor = numpy_helper.from_array(values[vi.name])
        vi.CopyFrom(helper.make_tensor_value_info(vi.name, tensor.data_type, [None] * len(tensor.dims)))
    return model


def _captured(path: str, names: list[str], feeds: dict[str, np.ndarray], threads: int,
              precision: str) -> dict[str, np.ndarray]:
    """The tensors ``names`` (what the recurrent nodes take and give) inside the whole graph for ``feeds``."""
    whole = onnx.load(path)
    whole.graph.output.extend(helper.make_empty_tensor_value_info(name) for name in names)
    return dict(zip(names, _session(whole, threads, precision).run(names, feeds)))


def _same_inside(path: str, alone: ort.InferenceSession, given: list[str], inside: list[dict[str, np.ndarray]],
                 captured: list[dict[str, np.ndarray]]) -> None:
    """Stop unless the nodes alone, fed ``captured``, give exactly the ``given`` tensors they gave ``inside``."""
    for one, feeds in zip(inside, captured):
        if not all(np.array_equal(one[name], value) for name, value in zip(given, alone.run(given, feeds))):
            raise SystemExit(f"{path}: the LSTM nodes alone do not give what they give inside the graph")


def _each(session: ort.InferenceSession, feeds: list[dict[str, np.ndarray]]) -> None:
    for one in feeds:
        session.run(None, one)


def _macs(nodes: list[onnx.NodeProto], captured: dict[str, np.ndarray]) -> int:
    """Multiply-adds per row and step of ``nodes`` (input and recurrent products of every gate)."""
    total = 0
    for n in nodes:
        attributes = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        hidden = int(attributes["hidden_size"])
        directions = 2 if attributes.get("direction", b"forward") == b"bidirectional" else 1
        total += directions * 4 * hidden * (captured[n.input[0]].shape[-1] + hidden)
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--threads", type=int, default=1, help="1 to the usable cores; 0: each runtime's default")
    args = parser.parse_args()
    try:  # the bounds and the store's refusals of attn-export bench, in its one line
        check_seconds(args.seconds)
        check_threads(args.threads or None, "--threads")  # 0: each runtime's default
        model, info = load_model(args.directory)
    except AttnExportError as e:
        raise SystemExit(f"Error: {e}") from None
    if args.threads:
        torch.set_num_threads(args.threads)
    features = info.spec.features
    graphs = {p: Path(args.directory) / f for p, f in ONNX_FILES.items() if p in ("fp32", "int8-dynamic")}
    graphs = {p: str(f) for p, f in graphs.items() if f.exists()}
    cpu, isa = cpu_name()
    print(f"{cpu} ({', '.join(isa) or 'no listed ISA flags'}), {args.threads or 'default'} thread(s), "
          f"{args.seconds} s per shape, interleaved; p50 ms")
    print(f"{'shape':9} {'torch eager':>11} {'graph':24} {'whole':>8} {'LSTM nodes':>10} {'budget':>8} "
          f"{'nodes / budget':>14} {'G MAC/s':>8}")
    rng = np.random.default_rng(0)
    for batch, seq in SHAPES:
        x = rng.standard_normal((batch, seq, features)).astype(np.float32)
        lengths = np.full(batch, seq, np.int64)
        rows = [(x[i:i + 1], lengths[i:i + 1]) for i in range(batch)]
        tx, tl = torch.from_numpy(x), torch.from_numpy(lengths)

        def eager() -> None:
            with torch.inference_mode():
                model(tx, tl)

        runs, labels = [eager], []
        for precision, path in graphs.items():
            parts = rows if one_by_one(precision) else [(x, lengths)]
            cut, fed, nodes = _cut(onnx.load(path))
            whole = _session(path, args.threads, precision)
            given = [o.name for o in cut.graph.output]
            inside = [_captured(path, fed + given, {"x": a, "lengths": b}, args.threads, precision) for a, b in parts]
            captured = [{name: one[name] for name in fed} for one in inside]
            alone = _session(_typed(cut, captured[0]), args.threads, precision)
            _same_inside(path, alone, given, inside, captured)
            whole_feeds = [{"x": a, "lengths": b} for a, b in parts]
            runs.append(lambda s=whole, f=whole_feeds: _each(s, f))
            runs.append(lambda s=alone, f=captured: _each(s, f))
            labels.append((f"{Path(path).name}{' (1 by 1)' if len(parts) > 1 else ''}",
                           _macs(nodes, captured[0]) * batch * seq))
        times = [percentiles(t)["p50"] for t in time_interleaved(
            runs, Budget(warmup=5, seconds=args.seconds, min_iterations=20, max_iterations=100000))]
        budget = times[0] / _goal(batch)
        for k, (label, macs) in enumerate(labels):
            whole_ms, nodes_ms = times[1 + 2 * k], times[2 + 2 * k]
            print(f"{f'{batch} x {seq}':9} {times[0]:11.3f} {label:24} {whole_ms:8.3f} {nodes_ms:10.3f} {budget:8.3f} "
                  f"{nodes_ms / budget:14.2f} {macs / nodes_ms / 1e6:8.1f}")


if __name__ == "__main__":
    main()
