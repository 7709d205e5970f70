"""ONNX export with dynamic batch and sequence axes, checked and proven before it is written.

    attn-export export [DIR] [--opset 17] [--exporter torchscript|dynamo]

Writes DIR/model.onnx (inputs x, lengths; outputs logits|prediction|context, attention) and
DIR/reference.npz (the parity sweep's inputs with PyTorch FP32's outputs, so the device can check parity
without torch). Before anything is written the graph must pass onnx.checker (full check), strict shape
inference, the structural checks below, and a parity sweep against PyTorch in ONNX Runtime; a failure
leaves the directory as it was.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import time
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__, artifacts
from .backends.onnxrt import OrtCpuBackend
from .compare import CaseResult, SweepCase, compare_case, sweep_cases
from .errors import BadInput, ParityError, WorkFailed
from .iospec import IOSpec

__all__ = ["EXPORTERS", "ExportResult", "export_onnx", "read_reference", "write_reference"]

EXPORTERS = ("torchscript", "dynamo")
MIN_OPSET, MAX_OPSET = 14, 21
FP32_ATOL, FP32_RTOL = 1e-5, 1e-4


@dataclass
class ExportResult:
    path: Path
    exporter: str
    opset: int
    seconds: float
    size_bytes: int
    ops: dict[str, int]
    cases: list[CaseResult] = field(default_factory=list)


def _torch_export(model: Any, spec: IOSpec, path: Path, opset: int, exporter: str) -> None:
    import torch

    x = torch.randn(2, 5, spec.features)
    lengths = torch.tensor([5, 3], dtype=torch.int64)  # mixed lengths: the padded path gets traced
    names = dict(input_names=[t.name for t in spec.inputs], output_names=list(spec.output_names))
    quiet = io.StringIO()
    onnx_logger = logging.getLogger("torch.onnx")
    level = onnx_logger.level
    onnx_logger.setLevel(logging.ERROR)  # the dynamo exporter logs opset and torchvision notes as warnings
    with warnings.catch_warnings(), contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
        warnings.simplefilter("ignore")
        if exporter == "torchscript":
            torch.onnx.export(model, (x, lengths), str(path), opset_version=opset, dynamo=False,
                              dynamic_axes=spec.dynamic_axes(), do_constant_folding=True, **names)
        else:
            model.bidirectional_impl = "reversed"  # torch.export cannot trace pack_padded_sequence
            batch, seq = torch.export.Dim("batch"), torch.export.Dim("seq")
            try:
                torch.onnx.export(model, (x, lengths), str(path), opset_version=opset, dynamo=True,
                                  dynamic_shapes={"x": {0: batch, 1: seq}, "lengths": {0: batch}},
                                  external_data=False, **names)
            finally:
                model.bidirectional_impl = "packed"
    onnx_logger.setLevel(level)


def _declare_output_shapes(proto: Any, spec: IOSpec) -> None:
    """Write the spec's output shapes into the graph. The dynamo exporter annotates ``attention`` with the
    example's length (5) although the graph computes it from ``x``'s shape; the parity sweep below runs
    every output at many lengths, so a truly frozen axis still fails the export."""
    declared = {t.name: t for t in spec.outputs}
    for value in proto.graph.output:
        dims = value.type.tensor_type.shape.dim
        for d, want in zip(dims, declared[value.name].dims):
            if isinstance(want, str):
                d.dim_param = want
            else:
                d.dim_value = want


def _structure_problems(proto: Any, spec: IOSpec, lstm_nodes: int) -> list[str]:
    """What would make the graph wrong for our contract or for TensorRT, as a list of messages."""
    problems = []
    ops = Counter(n.op_type for n in proto.graph.node)
    if ops["LSTM"] != lstm_nodes:
        problems.append(f"expected {lstm_nodes} ONNX LSTM node(s), found {ops['LSTM']} (unrolled or lost)")
    for loop in ("Loop", "Scan"):
        if ops[loop]:
            problems.append(f"graph contains {loop}: the recurrence was not exported as an LSTM node")
    for node in proto.graph.node:
        if node.op_type == "LSTM":
            for a in node.attribute:
                if a.name == "layout" and a.i != 0:
                    problems.append("an LSTM node uses layout=1, which TensorRT's parser ignores")
    declared = {t.name: t for t in spec.inputs + spec.outputs}
    for value in list(proto.graph.input) + list(proto.graph.output):
        want = declared.get(value.name)
        if want is None:
            problems.append(f"unexpected graph input/output '{value.name}'")
            continue
        dims = value.type.tensor_type.shape.dim
        if len(dims) != len(want.dims):
            problems.append(f"{value.name} has rank {len(dims)}, expected {len(want.dims)}")
            continue
        for i, (d, w) in enumerate(zip(dims, want.dims)):
            if isinstance(w, str) and d.dim_param != w:
                problems.append(f"{value.name} axis {i} is {d.dim_value or d.dim_param!r}, expected symbolic '{w}'")
    return problems


def _metadata(info: dict[str, Any], spec: IOSpec, source_sha256: str, exporter: str, opset: int) -> dict[str, str]:
    return {
        "attn_export_version": __version__,
        "labels": json.dumps(info["labels"]),
        "model_config": json.dumps(info["model"]),
        "normalization": json.dumps(info["normalization"]),
        "train_lengths": json.dumps(info.get("train_lengths")),
        "source": artifacts.WEIGHTS,
        "source_sha256": source_sha256,
        "exporter": exporter,
        "opset": str(opset),
        "io_spec": spec.to_json(),
    }


def write_reference(path: Path, cases: list[SweepCase], outputs: list[dict[str, np.ndarray]], meta: dict) -> None:
    arrays: dict[str, np.ndarray] = {"meta": np.array(json.dumps(meta))}
    for i, (case, out) in enumerate(zip(cases, outputs)):
        arrays[f"c{i}.x"] = case.x
        arrays[f"c{i}.lengths"] = case.lengths
        arrays[f"c{i}.padded"] = np.array(case.padded)
        for name, value in out.items():
            arrays[f"c{i}.out.{name}"] = value
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    artifacts.write_bytes(path, buffer.getvalue())


def read_reference(path: Path) -> tuple[list[SweepCase], list[dict[str, np.ndarray]], dict]:
    """The sweep saved by export: cases, the reference outputs per case, and its metadata."""
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except (OSError, ValueError) as e:
        raise BadInput(f"{path} is not a readable reference.npz: {e}") from None
    meta = json.loads(str(data["meta"]))
    cases, outputs = [], []
    for i in range(meta["cases"]):
        cases.append(SweepCase(data[f"c{i}.x"], data[f"c{i}.lengths"], bool(data[f"c{i}.padded"])))
        prefix = f"c{i}.out."
        outputs.append({k[len(prefix):]: v for k, v in data.items() if k.startswith(prefix)})
    return cases, outputs, meta


@artifacts.writes_directory("export")
def export_onnx(
    directory: Path,
    opset: int = 17,
    exporter: str = "torchscript",
    parity_max_seq: int = 2048,
    threads: int | None = None,
) -> ExportResult:
    """Export DIR's model to DIR/model.onnx and DIR/reference.npz; see the module docstring."""
    import onnx
    import torch

    from .checkpoint import load_model

    if exporter not in EXPORTERS:
        raise BadInput(f"exporter '{exporter}' is unknown; expected one of {', '.join(EXPORTERS)}")
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise BadInput(f"opset {opset} is outside {MIN_OPSET}..{MAX_OPSET} (17 is what TensorRT 8.5 parses)")
    model, info = load_model(directory)
    spec = IOSpec.for_model(model.input_size, model.num_outputs, model.config.head)
    weights_sha = artifacts.sha256_file(directory / artifacts.WEIGHTS)
    lstm_nodes = model.config.num_layers * (2 if exporter == "dynamo" and model.config.bidirectional else 1)

    started = time.perf_counter()
    with artifacts.atomic_path(directory / artifacts.ONNX_FP32) as tmp:
        _torch_export(model, spec, tmp, opset, exporter)
        seconds = time.perf_counter() - started
        proto = onnx.load(str(tmp))
        actual_opset = next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
        for key, value in _metadata(info, spec, weights_sha, exporter, actual_opset).items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        proto.producer_name, proto.producer_version = "attn-export", __version__
        try:
            onnx.checker.check_model(proto, full_check=True)
            onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True)
        except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
            raise WorkFailed(f"exported graph fails ONNX validation: {str(e).splitlines()[0]}") from None
        if {o.name for o in proto.graph.output} == set(spec.output_names):
            _declare_output_shapes(proto, spec)
        problems = _structure_problems(proto, spec, lstm_nodes)
        if problems:
            raise WorkFailed("exported graph is not what attn-export promises: " + "; ".join(problems))
        onnx.save(proto, str(tmp))

        stats = info.get("train_lengths") or {}
        cases = sweep_cases(model.input_size, parity_max_seq, info["normalization"]["mean"],
                            info["normalization"]["std"], typical=int(stats.get("median", 16)))
        with torch.inference_mode():
            refs = []
            for case in cases:
                head, attention = model(torch.from_numpy(case.x), torch.from_numpy(case.lengths))
                refs.append({spec.head_output: head.numpy(), "attention": attention.numpy()})
        results = []
        with OrtCpuBackend(tmp, spec, threads=threads) as backend:
            for case, ref in zip(cases, refs):
                results.append(compare_case(case, ref, backend.infer(case.feeds), spec.head_output,
                                            FP32_ATOL, FP32_RTOL))
        failed = [r for r in results if not r]
        if failed:
            raise ParityError(f"ONNX Runtime disagrees with PyTorch on {len(failed)} of {len(results)} cases: "
                              + " | ".join(str(r) for r in failed))
        meta = {"cases": len(cases), "head": spec.head_output, "source_sha256": weights_sha,
                "io_spec": spec.to_dict(), "labels": info["labels"]}
        write_reference(directory / artifacts.REFERENCE, cases, refs, meta)
    size = (directory / artifacts.ONNX_FP32).stat().st_size
    versions = {"torch": torch.__version__, "onnx": onnx.__version__}
    artifacts.record(directory, artifacts.ONNX_FP32, f"export --opset {opset} --exporter {exporter}",
                     parent=artifacts.WEIGHTS, versions=versions, exporter=exporter, opset=actual_opset,
                     export_seconds=round(seconds, 3),
                     parity={"passed": True, "cases": len(results),
                             "max_abs": max(r.max_abs for r in results)})
    artifacts.record(directory, artifacts.REFERENCE, "export", parent=artifacts.WEIGHTS, versions=versions)
    return ExportResult(directory / artifacts.ONNX_FP32, exporter, actual_opset, seconds, size,
                        dict(Counter(n.op_type for n in proto.graph.node)), results)
