"""The latency cost of the portable graph, side by side with the graph attn-export wrote before it.

    python scripts/compare_graphs.py DIR [--seconds 3] [--threads 1]

DIR is a trained artefact directory (a bidirectional model shows the difference: a unidirectional one
exports the same LSTM either way). Two graphs of the same weights, written to a scratch folder:

- ``portable``: what ``attn-export export`` writes: one forward LSTM per direction, the backward one over
  length-reversed rows (a Gather from ``lengths``), no runtime ``sequence_lens``;
- ``sequence_lens``: the previous default, one bidirectional LSTM node fed ``pack_padded_sequence``'s
  lengths (read differently by OpenVINO and tract: README, "One graph, every runtime").

Both run in ONNX Runtime on the CPU at batch 1 x seq 16 and 128 and batch 32 x seq 128, timed interleaved
(``bench.time_interleaved``: one call each per round, so machine drift hits both alike).
"""

from __future__ import annotations

import argparse
import tempfile
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

from attn_export.bench import Budget, percentiles, time_interleaved
from attn_export.checkpoint import load_model
from attn_export.export import _torch_export
from attn_export.runtime.iospec import IOSpec
from attn_export.portability import make_portable

SHAPES = ((1, 16), (1, 128), (32, 128))


def _sequence_lens_graph(model: torch.nn.Module, spec: IOSpec, path: Path) -> None:
    model.bidirectional_impl = "packed"  # pack_padded_sequence -> the ONNX LSTM's sequence_lens
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.randn(2, 5, spec.features), torch.tensor([5, 3])), str(path),
                          dynamo=False, opset_version=17, dynamic_axes=spec.dynamic_axes(),
                          input_names=[t.name for t in spec.inputs], output_names=list(spec.output_names))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    model, _ = load_model(args.directory)
    spec = IOSpec.for_model(model.input_size, model.num_outputs, model.config.head)
    with tempfile.TemporaryDirectory() as scratch:
        paths = {"portable": Path(scratch) / "portable.onnx", "sequence_lens": Path(scratch) / "packed.onnx"}
        _torch_export(model, spec, paths["portable"], 17, "torchscript")
        proto = onnx.load(str(paths["portable"]))
        make_portable(proto)
        onnx.save(proto, str(paths["portable"]))
        _sequence_lens_graph(model, spec, paths["sequence_lens"])
        options = ort.SessionOptions()
        options.intra_op_num_threads = args.threads
        options.inter_op_num_threads = 1
        sessions = {k: ort.InferenceSession(str(p), options, providers=["CPUExecutionProvider"])
                    for k, p in paths.items()}
        nodes = {k: len(onnx.load(str(p)).graph.node) for k, p in paths.items()}
        rng = np.random.default_rng(0)
        print(f"{'shape':12} {'portable p50 ms':>16} {'sequence_lens p50 ms':>21} {'portable / old':>15}")
        for batch, seq in SHAPES:
            feeds = {"x": rng.standard_normal((batch, seq, spec.features)).astype(np.float32),
                     "lengths": np.full(batch, seq, np.int64)}
            runs = [lambda s=s: (s.run(None, feeds), None)[1] for s in sessions.values()]
            times = time_interleaved(runs, Budget(warmup=20, seconds=args.seconds, min_iterations=50,
                                                  max_iterations=100000))
            p50 = [percentiles(t)["p50"] for t in times]
            print(f"b{batch} s{seq:<8} {p50[0]:16.3f} {p50[1]:21.3f} {p50[0] / p50[1]:14.2f}x")
    print(f"nodes: portable {nodes['portable']}, sequence_lens {nodes['sequence_lens']}; "
          f"{args.threads} thread(s), {args.seconds} s per shape, interleaved")


if __name__ == "__main__":
    main()
