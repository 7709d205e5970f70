"""ONNX export with dynamic batch and sequence axes, checked and proven before it is written.

    attn-export export [DIR] [--opset 17] [--exporter torchscript|dynamo]

Writes DIR/model.onnx (inputs x, lengths; outputs logits|prediction|context, attention) and
DIR/reference.npz (the parity sweep's inputs with PyTorch FP32's outputs and each row's intrinsic error
per precision, so the device checks parity by the same budgets without torch). Before anything is written
the graph must pass onnx.checker (full check), strict shape inference, the structural checks below, and a
parity sweep against PyTorch in ONNX Runtime, judged by the FP32 rule ``verify`` uses; a failure leaves the
directory as it was.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


from . import __version__
from .runtime import store
from .runtime.backends.onnxrt import OrtCpuBackend
from .runtime.compare import CaseResult, Reference, compare_case, rule_for, sweep_cases
from .errors import ParityError, WorkFailed
from .runtime.interrupt import holding
from .runtime.iospec import IOSpec
from .runtime.limits import check_memory, check_threads, inference_bytes
from .runtime.modelinfo import ModelInfo
from .portability import divergences, make_portable
from .runtime.reference import reference_bytes
from .runtime.store import Artifact
from .runtime.verify import deployment_max_seq

__all__ = ["ExportResult", "export_onnx"]


@dataclass
class ExportResult:
    path: Path
    exporter: str
    opset: int
    seconds: float
    size_bytes: int
    ops: dict[str, int]
    cases: list[CaseResult] = field(default_factory=list)


# the loggers PyTorch's exporters say their progress and notes through (onnxscript: "version conversion is
# not supported ... fallback is enabled" at every dynamo export below opset 18)
_EXPORTER_LOGGERS = ("torch.onnx", "onnxscript")


@contextlib.contextmanager
def quiet_exporter() -> Iterator[None]:
    """Around ``torch.onnx.export`` (given ``verbose=False``): its warnings and its loggers' notes below ERROR
    are not shown. The process's stdout and stderr are left alone: they were redirected here, which took
    whatever another thread of a library user printed meanwhile (found by review)."""
    loggers = [logging.getLogger(name) for name in _EXPORTER_LOGGERS]
    levels = [logger.level for logger in loggers]
    try:
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def _torch_export(model: Any, spec: IOSpec, path: Path, opset: int, exporter: str) -> None:
    import torch

    x = torch.randn(2, 5, spec.features)
    lengths = torch.tensor([5, 3], dtype=torch.int64)  # mixed lengths: the padded path gets traced
    names = dict(input_names=[t.name for t in spec.inputs], output_names=list(spec.output_names))
    model.bidirectional_impl = "reversed"  # the portable form: no LSTM takes a runtime sequence_lens
    try:
        with quiet_exporter():
            if exporter == "torchscript":
                torch.onnx.export(model, (x, lengths), str(path), opset_version=opset, dynamo=False, verbose=False,
                                  dynamic_axes=spec.dynamic_axes(), do_constant_folding=True, **names)
            else:
                batch, seq = torch.export.Dim("batch"), torch.export.Dim("seq")
                torch.onnx.export(model, (x, lengths), str(path), opset_version=opset, dynamo=True, verbose=False,
                                  dynamic_shapes={"x": {0: batch, 1: seq}, "lengths": {0: batch}},
                                  external_data=False, **names)
                _fold_weights(path)
    finally:
        model.bidirectional_impl = "packed"


# Larger than any weight a model may have (an LSTM of 8192 units: 4 * 8192 * 8192 values in R).
FOLD_LIMIT = 1 << 28


def _fold_weights(path: Path) -> None:
    """Fold what the dynamo exporter leaves computed from weights at run time. It reorders the LSTM's gates
    by Slice/Concat, and its optimiser folds no tensor past 8192 values, so an LSTM of 96 units got its
    recurrence weight R from an Unsqueeze, which ONNX Runtime's quantiser cannot take: the INT8 graph kept
    both LSTMs in FP32, with no word (found by attacking). onnxscript's optimiser, with a limit above any
    weight, makes them initializers, as the TorchScript exporter's constant folding does. The exporter's
    value_info is dropped first: it annotates some intermediates with the example's length (5), and the
    optimiser folded a stacked one-direction LSTM's Reshape to that constant shape, so every other length
    failed (found by attacking); the shapes are inferred again from the symbolic inputs."""
    import onnx
    from onnxscript import optimizer

    proto = onnx.load(str(path))
    del proto.graph.value_info[:]
    proto = optimizer.optimize(proto, input_size_limit=FOLD_LIMIT, output_size_limit=FOLD_LIMIT)
    onnx.save(proto, str(path))


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
                if a.name == "direction" and a.s != b"forward":
                    problems.append(f"LSTM node {node.name} runs {a.s.decode()}: expected one forward LSTM per "
                                    "direction, the backward one over length-reversed rows")
    problems += [f"graph contains {d}" for d in divergences(proto)]
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


def _metadata(info: ModelInfo, spec: IOSpec, source_sha256: str, exporter: str, opset: int) -> dict[str, str]:
    return {
        "attn_export_version": __version__,
        "labels": json.dumps(list(info.labels)),
        "model_config": json.dumps(info.recipe["model"]),
        "normalization": json.dumps({"mean": list(info.mean), "std": list(info.std)}),
        "train_lengths": json.dumps(info.train_lengths),
        "source": store.WEIGHTS,
        "source_sha256": source_sha256,
        "exporter": exporter,
        "opset": str(opset),
        "io_spec": spec.to_json(),
    }


@store.writes_directory("export")
def export_onnx(
    directory: Path,
    opset: int | None = None,
    exporter: str | None = None,
    parity_max_seq: int | None = None,
    threads: int | None = 1,
    progress: Callable[[str, int, int], None] | None = None,
) -> ExportResult:
    """Export DIR's model to DIR/model.onnx and DIR/reference.npz; see the module docstring. ``opset``,
    ``exporter`` and ``parity_max_seq`` default to the recipe's ``[export]`` table (in ``model.json``) and are
    checked by its schema (one range of opsets, one list of exporters). ``progress`` hears (what is being
    done, done, total) through the parity sweep. ``threads``: PyTorch's and ONNX Runtime's (None: their
    defaults), one by default like train, verify and bench (``model.torch_threads``)."""
    import dataclasses

    import onnx
    import torch

    from .checkpoint import build_model
    from .config import recipe_from_dict
    from .intrinsic import REALISATIONS, intrinsic_errors
    from .model import torch_threads

    check_threads(threads)
    weights = store.Store(directory).open(store.WEIGHTS, need="current")  # and model.json current
    info = weights.info
    assert info is not None
    model = build_model(info, weights.data, str(weights.path))
    given = {"opset": opset, "exporter": exporter, "parity_max_seq": parity_max_seq}
    cfg = dataclasses.replace(recipe_from_dict(dict(info.recipe)).export,
                              **{k: v for k, v in given.items() if v is not None})
    opset, exporter, parity_max_seq = cfg.opset, cfg.exporter, cfg.parity_max_seq
    # the parity sweep's longest cases, run by PyTorch in float32 and float64 (2 copies) and ONNX Runtime
    check_memory(max(inference_bytes(info, 1, parity_max_seq, 4), inference_bytes(info, 8, min(parity_max_seq, 2048), 4)),
                 f"the parity sweep to export.parity_max_seq = {parity_max_seq}", "a smaller export.parity_max_seq")
    spec = IOSpec.for_model(model.input_size, model.num_outputs, model.config.head)
    weights_sha = weights.sha256  # of the bytes the model was built from
    lstm_nodes = model.config.num_layers * (2 if model.config.bidirectional else 1)  # one per direction per layer

    started = time.perf_counter()
    with holding() as hold:
        # both files are complete before either is renamed into place (reference.npz first, then the graph)
        with store.atomic_path(directory / store.ONNX_FP32) as tmp, \
                store.atomic_path(directory / store.REFERENCE) as tmp_reference, torch_threads(threads):
            _torch_export(model, spec, tmp, opset, exporter)
            seconds = time.perf_counter() - started
            proto = onnx.load(str(tmp))
            actual_opset = next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
            for key, value in _metadata(info, spec, weights_sha, exporter, actual_opset).items():
                entry = proto.metadata_props.add()
                entry.key, entry.value = key, value
            proto.producer_name, proto.producer_version = "attn-export", __version__
            make_portable(proto)
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

            stats = info.train_lengths or {}
            cases = sweep_cases(model.input_size, parity_max_seq, info.mean, info.std, typical=int(stats.get("median", 16)),
                                deploy=deployment_max_seq(info, info.verify))
            say = progress or (lambda what, done, total: None)
            steps = 3 * len(cases)  # PyTorch's reference, the intrinsic errors, ONNX Runtime's parity: per case
            with torch.inference_mode():
                outputs = []
                for k, case in enumerate(cases):
                    say(f"PyTorch reference {case.label}", k, steps)
                    head, attention = model(torch.from_numpy(case.x), torch.from_numpy(case.lengths))
                    outputs.append({spec.head_output: head.numpy(), "attention": attention.numpy()})
            errors = intrinsic_errors(model, [c.feeds for c in cases], outputs, spec.output_names,
                                      progress=lambda k: say(f"intrinsic error {cases[k].label}", len(cases) + k, steps))
            refs = [Reference(o, e) for o, e in zip(outputs, errors)]
            rule = rule_for("fp32", info.verify)
            results = []
            with OrtCpuBackend(Artifact.candidate(tmp, spec, "fp32", info), threads=threads) as backend:
                for k, (case, ref) in enumerate(zip(cases, refs)):
                    say(f"ONNX Runtime parity {case.label}", 2 * len(cases) + k, steps)
                    results.append(compare_case(case, ref, backend.infer(case.feeds), spec.head_output, rule))
            failed = [r for r in results if not r]
            if failed:
                raise ParityError(f"ONNX Runtime disagrees with PyTorch on {len(failed)} of {len(results)} cases: "
                                  + " | ".join(str(r) for r in failed))
            meta = {"head": spec.head_output, "source_sha256": weights_sha, "io_spec": spec.to_dict(),
                    "labels": list(info.labels),
                    "intrinsic": {"precisions": sorted(errors[0]) if errors else [], "realisations": REALISATIONS,
                                  "method": "per row: max |model at that precision - model in FP32| (attn_export.intrinsic)"}}
            tmp_reference.write_bytes(reference_bytes(cases, refs, meta))
            hold()  # from the renames to the records (``interrupt.holding``)
        size = (directory / store.ONNX_FP32).stat().st_size
        versions = {"torch": torch.__version__, "onnx": onnx.__version__}
        store.record(directory, store.ONNX_FP32, f"export --opset {opset} --exporter {exporter}",
                     parent=store.WEIGHTS, parent_sha256=weights_sha, versions=versions, exporter=exporter,
                     opset=actual_opset, export_seconds=round(seconds, 3), threads=threads,
                     parity={"passed": True, "cases": len(results), "max_abs": max(r.max_abs for r in results)})
        store.record(directory, store.REFERENCE, "export", parent=store.WEIGHTS, parent_sha256=weights_sha,
                     versions=versions)
    return ExportResult(directory / store.ONNX_FP32, exporter, actual_opset, seconds, size,
                        dict(Counter(n.op_type for n in proto.graph.node)), results)
