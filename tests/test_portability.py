"""One graph that every runtime reads the same way: every model variant and every precision variant,
opened the way users open them (a plain ``InferenceSession(path)`` in a child process, so that a crash
fails the test instead of the run) and run by four independent ONNX implementations (ONNX Runtime,
OpenVINO pinned to f32, tract, onnx's reference evaluator) against PyTorch, padded batches with garbage
in the padding included."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import onnx
import pytest

from attn_export.backends import REGISTRY
from attn_export.runtime.iospec import IOSpec
from attn_export.runtime.trt.readiness import TARGETS as TENSORRT_TARGETS
from attn_export.portability import divergences

from conftest import TINY, cli

RUNTIMES = ("ort-cpu", "openvino-cpu", "tract-cpu", "onnx-ref")
needs_runtimes = pytest.mark.skipif(
    any(REGISTRY[r].available() for r in RUNTIMES),
    reason="needs onnxruntime, openvino and tract: " + "; ".join(str(REGISTRY[r].available()) for r in RUNTIMES
                                                              if REGISTRY[r].available()))

# linear / additive score, conv front-end, bidirectional, two layers: every part of the family
VARIANTS = {
    "linear": [],
    "additive-bidirectional-2layer": ["--set", "model.attention=additive", "--set", "model.bidirectional=true",
                                      "--set", "model.num_layers=2"],
    "conv-bidirectional-2layer-learned": ["--set", "model.conv_channels=[8]", "--set", "model.conv_kernel_sizes=[3]",
                                          "--set", "model.bidirectional=true", "--set", "model.num_layers=2",
                                          "--set", "model.attention=additive", "--set", "model.query=learned"],
}
FILES = ("model.onnx", "model.fp16.onnx", "model.int8.onnx", "model.int8-qdq.onnx")
# what each runtime cannot read, and why (the conformance table must say exactly this)
UNREADABLE = {("tract-cpu", "model.int8.onnx"): "DynamicQuantizeLSTM",
              ("onnx-ref", "model.int8.onnx"): "DynamicQuantizeLSTM",
              ("onnx-ref", "model.int8-qdq.onnx"): "DequantizeLinear"}


# the default run keeps the linear variant; the additive and the conv ones (conv front-end, additive,
# bidirectional, 2 layers) run with the slow tests: together 50 s of the default run's 13 minutes
@pytest.fixture(scope="module", params=[v if v == "linear" else pytest.param(v, marks=pytest.mark.slow)
                                        for v in VARIANTS])
def variant(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, tiny_dir: Path) -> Path:
    """A trained tiny model of the variant with all four precision variants, through the real CLI (the linear
    one is the session's ``tiny_dir``: the same training and export)."""
    directory = tmp_path_factory.mktemp(request.param)
    made = [("train", str(directory), *TINY, *VARIANTS[request.param]), ("export", str(directory))]
    if not VARIANTS[request.param]:
        shutil.copytree(tiny_dir, directory, dirs_exist_ok=True)
        made = []
    for args in (*made, ("quantize", str(directory), "--fp16", "--int8"),
                 ("quantize", str(directory), "--int8", "--method", "qdq", "--calib-samples", "16")):
        result = cli(*args)
        assert result.returncode == 0, result.stderr
    return directory


OPEN = """
import sys
path, runtime = sys.argv[1], sys.argv[2]
if runtime == "onnxruntime":
    import onnxruntime
    onnxruntime.InferenceSession(path)  # every default: ORT_ENABLE_ALL, the providers the package has
else:
    import openvino
    openvino.Core().compile_model(path, "CPU")
"""


@needs_runtimes
@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_every_artefact_opens_with_the_runtimes_defaults(variant: Path, runtime: str) -> None:
    for name in FILES:
        opened = subprocess.run([sys.executable, "-c", OPEN, str(variant / name), runtime], capture_output=True,
                                text=True, timeout=300)
        assert opened.returncode == 0, f"{runtime} cannot open {name} with its defaults " \
                                       f"(exit {opened.returncode}): {opened.stderr[-500:]}"


def test_no_artefact_holds_a_construct_runtimes_read_differently(variant: Path) -> None:
    """No LSTM takes a runtime sequence_lens, no FP16 Gemm, no untyped ConstantOfShape, ...; only the
    dynamic INT8 graph holds ONNX Runtime's own operators and, for a bidirectional model, one LSTM per layer
    taking lengths, by design (ONNX Runtime runs it, one sequence at a time)."""
    int8 = ["operators outside the standard ONNX domain"]
    if "bidirectional" in variant.name:  # each layer one LSTM taking lengths: ONNX Runtime runs it one by one
        int8.insert(0, "LSTM with a runtime sequence_lens")
    for name in FILES:
        found = [d.construct for d in divergences(onnx.load(str(variant / name)))]
        assert found == (int8 if name == "model.int8.onnx" else []), name
    proto = onnx.load(str(variant / "model.onnx"))
    assert all(len(n.input) <= 4 or not n.input[4] for n in proto.graph.node if n.op_type == "LSTM")


@needs_runtimes
def test_four_runtimes_compute_every_variant_like_pytorch(variant: Path, tmp_path: Path) -> None:
    """verify's conformance table: each runtime x artefact passed (FP32 and FP16 by their budgets on the
    whole sweep, seq 1 to 2048 and padded batches with garbage padding), or cannot read, with the reason.
    INT8 decisions are judged on real data elsewhere (test_verify); here INT8 must read and run alike."""
    directory = tmp_path / "d"
    shutil.copytree(variant, directory)
    result = cli("verify", str(directory), "--backends", ",".join(RUNTIMES), "--json",
                 "--set", "verify.int8_min_argmax_agreement=0", "--set", "verify.int8_max_accuracy_drop=1")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    table = {(c["runtime"], c["artifact"]): c for c in report["conformance"]}
    assert set(table) == {(r, f) for r in RUNTIMES for f in FILES}
    for (runtime, name), cell in table.items():
        if (runtime, name) in UNREADABLE:
            assert cell["status"] == "cannot read" and UNREADABLE[runtime, name] in cell["detail"], cell
        else:
            assert cell["status"] == "passed", cell
    for row in report["results"]:
        if row["precision"] not in ("fp32", "fp16"):
            continue
        shapes = {(c["batch"], c["seq"]) for c in row["cases"]}
        assert any(c["padded"] for c in row["cases"]) and (1, 1) in shapes, row["backend"]
        assert row["backend"] == "onnx-ref" or (8, 2048) in shapes  # the interpreter stops at 4096 cells
        assert all(c["ratio"] is None or c["ratio"] <= 1.0 for c in row["cases"])


def test_a_graph_with_a_runtime_sequence_lens_is_refused_and_named(tmp_path: Path) -> None:
    """The graph attn-export wrote before: a bidirectional LSTM fed pack_padded_sequence's lengths."""
    import torch

    from attn_export.checkpoint import load_model
    from attn_export.export import _structure_problems

    directory = tmp_path / "d"
    assert cli("train", str(directory), *TINY, "--set", "model.bidirectional=true", "--set", "train.epochs=1").returncode == 0
    model, info = load_model(directory)
    spec = IOSpec.for_model(model.input_size, model.num_outputs)
    path = tmp_path / "packed.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.randn(2, 5, model.input_size), torch.tensor([5, 3])), str(path),
                          dynamo=False, opset_version=17, input_names=["x", "lengths"],
                          output_names=["logits", "attention"], dynamic_axes=spec.dynamic_axes())
    problems = _structure_problems(onnx.load(str(path)), spec, 2)
    assert any("LSTM with a runtime sequence_lens" in p for p in problems), problems
    described = cli("inspect", str(path), "--json")
    assert described.returncode == 0, described.stderr
    found = {d["construct"]: d for d in json.loads(described.stdout)["divergences"]}
    assert "OpenVINO" in found["LSTM with a runtime sequence_lens"]["runtimes"]
    assert "DIVERGES: LSTM with a runtime sequence_lens" in cli("inspect", str(path)).stdout


def test_the_fp16_graph_normalises_raw_features_in_fp32(variant: Path) -> None:
    """The converter's round trips are gone: x reaches the normalisation uncast (a raw feature of 1000
    would lose 0.25 in FP16), and the head is MatMul + Add (tract mistypes an FP16 Gemm)."""
    proto = onnx.load(str(variant / "model.fp16.onnx"))
    readers = [n for n in proto.graph.node if "x" in n.input]
    assert readers and {n.op_type for n in readers} <= {"Sub", "Shape"}, [n.op_type for n in readers]
    produced = {o: n for n in proto.graph.node for o in n.output}
    for node in proto.graph.node:
        first = produced.get(node.input[0]) if node.op_type == "Cast" and node.input else None
        assert first is None or first.op_type != "Cast", f"cast chain {first.name} -> {node.name}"
    assert "Gemm" not in {n.op_type for n in proto.graph.node}


def test_an_fp16_graph_that_crashes_onnx_runtime_is_refused_with_one_line(tiny_dir: Path, tmp_path: Path) -> None:
    """The converter's own FP16 graph of a unidirectional model (what attn-export shipped before) crashes
    ONNX Runtime 1.32 at its default optimisation level; the ort-cpu backend refuses it instead of dying."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    from dataclasses import replace

    from attn_export.errors import BadInput
    from attn_export.runtime.backends.onnxrt import OrtCpuBackend
    from attn_export.runtime.store import Artifact
    from attn_export.quantize import FP16_KEEP_FP32

    path = tmp_path / "model.fp16.onnx"
    converted = convert_float_to_float16(onnx.load(str(tiny_dir / "model.onnx")), keep_io_types=True,
                                         op_block_list=list(FP16_KEEP_FP32))
    onnx.save(converted, str(path))
    assert "FP16 MatMul of a Transpose by a constant weight" in {d.construct for d in divergences(converted)}
    given = replace(Artifact.candidate(path, IOSpec.for_model(4, 3)), made=False)  # a user's file, not one just made
    with pytest.raises(BadInput, match="re-make it with attn-export quantize --fp16"):
        with OrtCpuBackend(given):
            pass


def test_openvino_bf16_is_verified_and_benched_only_when_named(tiny_dir: Path) -> None:
    """OpenVINO's bf16 is verified per CPU, measured to flip a class far beyond the deployment range on one
    model of ten: the main job skips it with that reason, naming it runs it."""
    from attn_export.runtime.store import Store
    from attn_export.runtime.targets import discover

    reason = REGISTRY["openvino-bf16"].available()
    default = [t for t in discover(Store(tiny_dir)) if t.backend == "openvino-bf16"]
    assert len(default) == 1 and default[0].skip is not None
    if reason is not None:  # what cannot run here says so, not that it is opt-in
        assert default[0].skip == reason
        pytest.skip(reason)
    assert default[0].skip.startswith("opt-in") and "--backends openvino-bf16" in default[0].skip
    assert [(t.artifact, t.skip) for t in discover(Store(tiny_dir), "openvino-bf16")] == [("model.onnx", None)]


def test_every_artefact_of_every_variant_is_ready_on_every_tensorrt_target(variant: Path) -> None:
    """The static TensorRT check (``runtime.trt.readiness``) on every variant, the deep ones included: each
    graph TensorRT can take is ready on every target; the dynamic INT8 file is withdrawn with its reason."""
    result = cli("inspect", str(variant), *[a for t in TENSORRT_TARGETS for a in ("--target", t)], "--json")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    for name, t in json.loads(result.stdout).items():
        for file in FILES:
            row = t["files"][file]
            if file == "model.int8.onnx":
                assert row["builds"] is None and "never a TensorRT input" in row["how"], (name, row)
            else:
                assert row["ready"], (name, file, [f for f in row["findings"] if f["error"]])
