"""GPU backends and TensorRT engines on real hardware. Marked ``gpu`` (a CUDA device via torch) or
``tensorrt`` (TensorRT and a CUDA device) and skipped automatically elsewhere (conftest.py). None of these
ran where this was written (no GPU, no TensorRT); ``scripts/gpu_check.sh`` runs the ``gpu`` ones on a lent
GPU machine.

The reference is torch-cpu FP32 on the sweep stored in ``reference.npz``, judged by verify's rules
(``compare.rule_for``): GPU FP32 with its own floor (cuDNN/TensorRT sum in another order), FP16 by the
budget derived from the model's own FP16 error, INT8 by structure (its decisions are judged on data).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from attn_export.runtime import store
from attn_export.backends import get
from attn_export.runtime.compare import compare_case, rule_for
from attn_export.config import VerifyConfig
from attn_export.errors import BadInput, NotAvailable
from attn_export.runtime.reference import read_reference
from attn_export.runtime.iospec import IOSpec
from attn_export.runtime.store import Store
from conftest import cli

RULES = {p: rule_for(p, VerifyConfig(), "cuda", 256) for p in ("fp32", "fp16", "int8-qdq")}


def _spec(directory: Path) -> IOSpec:
    info = json.loads((directory / "model.json").read_text())
    return IOSpec.for_model(info["input_size"], info["num_outputs"], info["recipe"]["model"]["head"])


def _cases(directory: Path) -> tuple[list, list, str]:
    reference = read_reference((directory / store.REFERENCE).read_bytes(), directory / store.REFERENCE)
    return reference.cases, reference.references, reference.meta["head"]


@pytest.fixture()
def work_dir(tiny_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny artefacts (engines and variants are written into it)."""
    target = tmp_path / "a"
    shutil.copytree(tiny_dir, target)
    return target


# --- torch-cuda ----------------------------------------------------------------------------------------

@pytest.mark.gpu
def test_torch_cuda_matches_torch_cpu(tiny_dir: Path) -> None:
    cases, refs, head = _cases(tiny_dir)
    with get("torch-cuda")(Store(tiny_dir).open(store.WEIGHTS)) as backend:
        results = [compare_case(c, r, backend.infer(c.feeds), head, RULES["fp32"])
                   for c, r in zip(cases, refs)]
    failed = [str(r) for r in results if not r]
    assert not failed, failed


@pytest.mark.gpu
def test_torch_cuda_runner_returns_cuda_event_milliseconds(tiny_dir: Path) -> None:
    spec = _spec(tiny_dir)
    feeds = {"x": np.random.default_rng(0).standard_normal((4, 32, spec.features)).astype(np.float32),
             "lengths": np.array([32, 20, 7, 1], dtype=np.int64)}
    with get("torch-cuda")(Store(tiny_dir).open(store.WEIGHTS)) as backend:
        run = backend.runner(feeds)
        times = [run() for _ in range(5)]
        with pytest.raises(NotImplementedError):
            backend.runner(feeds, cuda_graph=True)
    assert all(isinstance(t, float) and t > 0 for t in times), times


@pytest.mark.gpu
def test_device_query_agrees_with_torch() -> None:
    import torch

    from attn_export.runtime.trt.device import query_gpus

    gpus = query_gpus()
    assert gpus.reason is None and len(gpus.gpus) == torch.cuda.device_count()
    major, minor = torch.cuda.get_device_capability(0)
    assert gpus.gpus[0].compute_capability == f"{major}.{minor}"
    assert gpus.gpus[0].name == torch.cuda.get_device_name(0)
    assert gpus.gpus[0].integrated == bool(torch.cuda.get_device_properties(0).is_integrated)


@pytest.mark.gpu
def test_device_memory_round_trip_timing_and_graph() -> None:
    """The buffers the TensorRT backend uses (cuda-python), without TensorRT: copies, events, graph capture."""
    from attn_export.runtime.trt.memory import open_memory

    pytest.importorskip("cuda")
    memory = open_memory(0)
    try:
        host = np.arange(1000, dtype=np.float32)
        ptr = memory.alloc(host.nbytes)
        memory.to_device(ptr, host)
        back = np.empty_like(host)
        memory.to_host(back, ptr)
        memory.synchronize()
        np.testing.assert_array_equal(back, host)
        other = memory.alloc(host.nbytes)
        assert memory.timed(lambda: memory.to_device(other, host)) >= 0.0  # events around enqueued work
    finally:
        memory.close()


@pytest.mark.gpu
def test_device_memory_graph_capture_replays_what_it_captured() -> None:
    """The capture path the TensorRT runner takes (begin capture, instantiate, launch, destroy), with a
    memset standing in for TensorRT's enqueue: the replayed graph must write the device buffer again."""
    from attn_export.runtime.trt.memory import open_memory

    pytest.importorskip("cuda")
    memory = open_memory(0)
    try:
        n = 4096
        ptr = memory.alloc(n)
        value = [0]

        def enqueue() -> None:  # captured once with value 7: replays keep writing 7
            memory._call("cudaMemsetAsync", ptr, value[0], n, memory._stream)

        value[0] = 7
        launch = memory.capture(enqueue)
        memory.to_device(ptr, np.zeros(n, np.uint8))
        assert memory.timed(launch) >= 0.0
        back = np.empty(n, np.uint8)
        memory.to_host(back, ptr)
        memory.synchronize()
        assert (back == 7).all()
    finally:
        memory.close()


# --- ort-cuda / ort-trt --------------------------------------------------------------------------------

@pytest.mark.gpu
@pytest.mark.parametrize("name", ["ort-cuda", "ort-trt"])
def test_ort_gpu_providers_match_torch_or_refuse_with_exit_3(tiny_dir: Path, name: str) -> None:
    cls = get(name)
    reason = cls.available()
    if reason is not None:
        assert "available: " in reason or "not installed" in reason
        with pytest.raises(NotAvailable) as e:
            cls(Store(tiny_dir).open("model.onnx")).__enter__()
        assert e.value.exit_code == 3
        pytest.skip(reason)
    cases, refs, head = _cases(tiny_dir)
    with cls(Store(tiny_dir).open("model.onnx")) as backend:
        results = [compare_case(c, r, backend.infer(c.feeds), head, RULES["fp32"])
                   for c, r in zip(cases, refs) if backend.accepts(*c.x.shape[:2]) is None]
        assert results
        run = backend.runner(cases[0].feeds)
        run()
    failed = [str(r) for r in results if not r]
    assert not failed, failed


# --- TensorRT engines ----------------------------------------------------------------------------------

def _build(directory: Path, precision: str, **options: object) -> str:
    from attn_export.runtime.trt.build import BuildOptions, build_engine

    built = build_engine(directory, BuildOptions(precision=precision, max_seq=2048, **options))  # type: ignore[arg-type]
    return built.engine


@pytest.mark.tensorrt
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8-qdq"])
def test_engine_parity(work_dir: Path, precision: str) -> None:
    if precision == "int8-qdq":
        assert cli("quantize", str(work_dir), "--int8", "--method", "qdq").returncode == 0
    name = _build(work_dir, precision)
    entry = store.read_manifest(work_dir)["artifacts"][name]
    assert entry["precision"] == precision and entry["parent"] == {"fp32": "model.onnx", "fp16": "model.fp16.onnx",
                                                                   "int8-qdq": "model.int8-qdq.onnx"}[precision]
    cases, refs, head = _cases(work_dir)
    results = []
    with get("tensorrt")(Store(work_dir).open(name)) as backend:
        for case, ref in zip(cases, refs):
            if backend.accepts(*case.x.shape[:2]) is not None:
                continue
            out = backend.infer(case.feeds)
            results.append(compare_case(case, ref, out, head, RULES[precision]))
        assert results
        timings = [backend.runner(cases[0].feeds)() for _ in range(3)]
        assert all(t is not None and t > 0 for t in timings)
        try:
            graph = backend.runner(cases[0].feeds, cuda_graph=True)
            assert graph() is not None
        except NotAvailable as e:  # loops may not be capturable: the message says so
            assert "CUDA graph" in str(e)
    failed = [str(r) for r in results if not r]
    assert not failed, failed


@pytest.mark.tensorrt
def test_build_fp16_makes_the_fp16_graph_and_says_so(work_dir: Path) -> None:
    (work_dir / "model.fp16.onnx").unlink(missing_ok=True)
    result = cli("build", str(work_dir), "--fp16", "--max-seq", "256")
    assert result.returncode == 0, result.stderr
    assert "model.fp16.onnx is missing: making it" in result.stderr
    assert (work_dir / "model.fp16.onnx").is_file()
    engines = list(work_dir.glob("model.fp16.*.engine"))
    assert len(engines) == 1
    entry = store.read_manifest(work_dir)["artifacts"][engines[0].name]
    assert entry["profile"]["x"]["max"][1] == 256 and entry["build_seconds"] > 0
    assert entry["io_spec"]["inputs"][1]["dtype"] in ("int64", "int32")


@pytest.mark.tensorrt
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_a_stream_engine_streams_like_the_stream_graph_and_verify_judges_it(work_dir: Path, precision: str) -> None:
    """build --stream makes model.stream.<precision>.*.engine from the stream graph, with the chunk axis and
    the state in its profile; verify replays every schedule on it (passed); a Predictor on the engine
    streams on it, its last answer the predictor's own."""
    assert cli("export", str(work_dir), "--stream").returncode == 0
    flags = ["--fp16"] if precision == "fp16" else []
    result = cli("build", str(work_dir), "--stream", *flags, "--max-batch", "16", "--json")
    assert result.returncode == 0, result.stderr
    built = json.loads(result.stdout)
    assert built["engine"].startswith(f"model.stream.{precision}.") and built["parent"] == store.STREAM_FILES[precision]
    assert "state_in_c" in built["profile"] and built["profile"]["state_in_c"]["max"][0] == 16
    assert cli("build", str(work_dir), *flags).returncode == 0  # the whole engine, the prefixes' comparator
    report = cli("verify", str(work_dir), "--backends", "tensorrt", "--json")
    assert report.returncode == 0, report.stdout[-2000:] + report.stderr
    rows = [r for r in json.loads(report.stdout)["results"] if r["artifact"] == built["engine"]]
    assert len(rows) == 1 and rows[0]["status"] == "passed" and len(rows[0]["cases"]) >= 4
    from attn_export.runtime import Predictor

    x = np.random.default_rng(0).standard_normal((9, _spec(work_dir).features)).astype(np.float32)
    with Predictor.load(work_dir, backend="tensorrt", precision=precision) as predictor:
        stream = predictor.stream()
        assert stream.backend.artifact.name == built["engine"]
        answers = [stream.push(x[k:k + 3])[0] for k in range(0, 9, 3)]
        assert answers[-1].label == predictor.predict([x])[0].label


@pytest.mark.tensorrt
def test_engine_refusals(work_dir: Path) -> None:
    name = _build(work_dir, "fp32")
    spec = _spec(work_dir)
    manifest_path = work_dir / store.MANIFEST
    original = manifest_path.read_text()
    feeds = {"x": np.zeros((1, 4096, spec.features), np.float32), "lengths": np.array([4096], np.int64)}
    with get("tensorrt")(Store(work_dir).open(name)) as backend:  # outside the profile: the limits in the message
        with pytest.raises(BadInput, match="seq 4096 is outside 1..2048"):
            backend.infer(feeds)
    manifest = json.loads(original)
    manifest["artifacts"][name]["gpu"] = "Some Other GPU"
    manifest["artifacts"][name]["compute_capability"] = "1.0"
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(NotAvailable, match="built for compute capability 1.0"):
        Store(work_dir).open(name)
    manifest_path.write_text(original)
    data = bytearray((work_dir / name).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (work_dir / name).write_bytes(bytes(data))
    with pytest.raises(BadInput, match="changed after it was recorded"):
        Store(work_dir).open(name)


@pytest.mark.tensorrt
def test_version_compatible_engine_needs_the_opt_in(work_dir: Path) -> None:
    name = _build(work_dir, "fp32", version_compat=True)
    assert name.endswith(".vc.engine")
    with pytest.raises(BadInput, match="embeds host code"):
        Store(work_dir).open(name)
    cases, _, _ = _cases(work_dir)
    with get("tensorrt")(Store(work_dir).open(name, allow_host_code=True)) as backend:
        backend.infer(cases[0].feeds)
