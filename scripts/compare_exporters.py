"""Measure the two PyTorch exporters side by side on one trained artefact directory.

    python scripts/compare_exporters.py DIR [--runs 500]

For each exporter: export wall time, graph size and node count, and ONNX Runtime CPU latency at batch 1,
seq 128 (median of --runs, one intra-op thread, both sessions timed interleaved in one process so drift
hits both alike). DIR is left with the torchscript export (the default) at the end.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from attn_export.export import export_onnx


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--runs", type=int, default=500)
    args = parser.parse_args()
    sessions, rows = {}, []
    with tempfile.TemporaryDirectory() as scratch:
        for exporter in ("dynamo", "torchscript"):
            result = export_onnx(args.directory, exporter=exporter)
            kept = Path(scratch) / f"{exporter}.onnx"
            shutil.copy(result.path, kept)
            options = ort.SessionOptions()
            options.intra_op_num_threads = 1
            sessions[exporter] = ort.InferenceSession(str(kept), options, providers=["CPUExecutionProvider"])
            rows.append((exporter, result.seconds, result.size_bytes, sum(result.ops.values()), result.ops.get("LSTM")))
        features = sessions["torchscript"].get_inputs()[0].shape[2]
        feeds = {"x": np.random.default_rng(0).standard_normal((1, 128, features)).astype(np.float32),
                 "lengths": np.array([128], np.int64)}
        times: dict[str, list[float]] = {name: [] for name in sessions}
        for _ in range(20):
            for s in sessions.values():
                s.run(None, feeds)
        for _ in range(args.runs):
            for name, s in sessions.items():
                start = time.perf_counter()
                s.run(None, feeds)
                times[name].append(time.perf_counter() - start)
    print("exporter     export_s  bytes     nodes  LSTM  ort_ms_b1_s128(median)")
    for exporter, seconds, size, nodes, lstm in rows:
        print(f"{exporter:12} {seconds:8.2f}  {size:8,}  {nodes:5}  {lstm:4}  {np.median(times[exporter]) * 1e3:.3f}")
    ratio = np.median(times["dynamo"]) / np.median(times["torchscript"])
    print(f"dynamo / torchscript latency ratio: {ratio:.2f}")


if __name__ == "__main__":
    main()
