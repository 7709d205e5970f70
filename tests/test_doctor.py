"""``attn-export doctor``: every backend with its availability and reason, versions, GPUs, providers and the
TensorRT build path; on this GPU-less machine each GPU backend says why it cannot run."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from attn_export.backends import REGISTRY
from conftest import cli

GPU_BACKENDS = ("torch-cuda", "ort-cuda", "ort-trt", "tensorrt")


def _report() -> dict:
    result = cli("doctor", "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_doctor_json_lists_every_backend_with_a_reason_when_unavailable() -> None:
    report = _report()
    names = [b["name"] for b in report["backends"]]
    assert names == list(REGISTRY)
    assert set(GPU_BACKENDS) <= set(names)
    for b in report["backends"]:
        assert b["available"] is (b["reason"] is None)
        assert b["precisions"]
    by_name = {b["name"]: b for b in report["backends"]}
    assert by_name["tensorrt"]["kind"] == "engine" and by_name["torch-cuda"]["precisions"] == ["fp32"]
    assert "int8-dynamic" not in by_name["ort-cuda"]["precisions"]
    # openvino-bf16 runs the FP32 graph but computes bf16, as verify.json judges it (it read fp32 alone)
    assert by_name["openvino-bf16"]["precisions"] == ["fp32"] and by_name["openvino-bf16"]["computes"] == "bf16"
    assert by_name["ort-cpu"]["computes"] is None


def test_doctor_reports_versions_gpus_providers_and_build_paths() -> None:
    report = _report()
    assert report["packages"]["onnx"]
    assert set(report["tensorrt"]["build_paths"]) == {"fp32", "fp16", "int8-qdq"}
    assert "gpus" in report["gpus"] and ("reason" in report["gpus"])
    try:
        import onnxruntime
    except ImportError:
        assert report["onnxruntime_providers"] is None
    else:
        assert report["onnxruntime_providers"] == onnxruntime.get_available_providers()
        # a bare version, as every package's (it was "onnxruntime 1.32.0"); which package gives it, apart
        assert report["packages"]["onnxruntime"] == onnxruntime.__version__
        assert set(report["onnxruntime_packages"]) & {"onnxruntime", "onnxruntime-gpu"}
    from importlib import metadata

    for dist in ("openvino", "tract"):  # the two CPU runtimes a bundle may ship (they were not listed)
        try:
            assert report["packages"][dist] == metadata.version(dist)
        except metadata.PackageNotFoundError:
            assert report["packages"][dist] is None
    try:
        import torch
    except ImportError:
        return
    assert report["torch"]["version"] == torch.__version__


def test_doctor_on_a_machine_without_gpu_says_why_for_each_gpu_backend() -> None:
    report = _report()
    if report["gpus"]["gpus"]:
        pytest.skip("this machine has a GPU")
    by_name = {b["name"]: b for b in report["backends"]}
    for name in GPU_BACKENDS:
        assert not by_name[name]["available"], name
        assert by_name[name]["reason"], name
    assert "no NVIDIA driver" in report["gpus"]["reason"] or "no CUDA device" in report["gpus"]["reason"]
    assert "TensorRT" in by_name["tensorrt"]["reason"] or "driver" in by_name["tensorrt"]["reason"]
    if report["onnxruntime_providers"] is not None and "CUDAExecutionProvider" not in report["onnxruntime_providers"]:
        reason = by_name["ort-cuda"]["reason"]
        assert "CUDAExecutionProvider" in reason and "available: " in reason and "onnxruntime-gpu" in reason


def test_doctor_text_output() -> None:
    result = cli("doctor")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for name in REGISTRY:
        assert f"  {name}" in out
    assert "TensorRT build paths" in out and "GPUs:" in out and "ONNX Runtime providers:" in out


def test_doctor_names_the_cpu_and_how_onnx_runtime_adds_its_int8_products() -> None:
    """The speed of a precision and ONNX Runtime's INT8 arithmetic are the CPU's: doctor names the CPU and,
    per INT8 graph, the session option attn-export opens it with (``exact_int8``: on an x86 CPU without VNNI,
    the one that keeps its products exact), as predict and verify open it."""
    from attn_export.runtime.backends.onnxrt import exact_int8, signs_weights
    from attn_export.runtime.timing import cpu_name

    report = _report()
    name, isa = cpu_name()
    assert (report["cpu"]["name"], report["cpu"]["isa"]) == (name, isa)
    expected = {"model.int8.onnx": exact_int8("int8-dynamic"), "model.int8-qdq.onnx": exact_int8("int8-qdq")}
    assert report["cpu"]["onnxruntime_int8"] == {f: "=".join(o) if o else None for f, o in expected.items()}
    signed = ["model.int8.onnx"] if signs_weights("int8-dynamic") else []
    assert report["cpu"]["onnxruntime_int8_signed"] == signed
    out = cli("doctor").stdout
    assert f"CPU: {name}" in out
    shown = "; ".join(f"{f} {'with ' + '='.join(o) if o else 'with its u8 weights as s8' if f in signed else 'as is'}"
                      for f, o in expected.items())
    assert f"ONNX Runtime INT8 sessions here (stream graphs alike): {shown} (" in out, out


def test_the_stubs_are_not_mistaken_for_tensorrt() -> None:
    """tensorrt-stubs makes ``import tensorrt`` succeed (an empty namespace package)."""
    from attn_export.runtime.trt.importer import tensorrt_missing

    try:
        import tensorrt
    except ImportError:
        assert tensorrt_missing() is not None
        return
    if getattr(tensorrt, "__version__", None) is None:
        reason = tensorrt_missing()
        assert reason is not None and "type stubs" in reason


def test_backend_modules_import_without_torch_tensorrt_or_cuda() -> None:
    """The device side has neither torch nor (maybe) cuda-python: the registry and the TensorRT modules import
    with those blocked, and asking availability says why instead of raising."""
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('torch', 'tensorrt', 'cuda', 'onnxruntime'):\n"
        "            raise ImportError(f'blocked {name}', name=name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "from attn_export.backends import status\n"
        "import attn_export.runtime.trt.build, attn_export.runtime.trt.memory, attn_export.doctor\n"
        "s = status()\n"
        "print({k: v is None for k, v in s.items()})\n"
        "print(s['tensorrt'])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "'torch-cuda': False" in out.stdout and "'tensorrt': False" in out.stdout
    assert "TensorRT is not installed" in out.stdout


def test_a_driver_library_lacking_a_call_is_one_reason_not_a_traceback(tmp_path) -> None:
    """Found by attacking: a libcuda.so.1 without cuGetErrorString (a stub), whose cuInit fails, made doctor
    and build die with an AttributeError traceback. The library here is a stub compiled for the test: what it
    proves is doctor's answer to a library that lacks a call, nothing about a real driver."""
    import shutil

    if shutil.which("cc") is None:
        pytest.skip("needs a C compiler to make the stub library")
    source = tmp_path / "stub.c"
    source.write_text("int cuInit(unsigned f) { return 100; }\n"
                      "int cuDriverGetVersion(int *v) { *v = 12040; return 0; }\n")
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(tmp_path / "libcuda.so.1"), str(source)], check=True)
    result = cli("doctor", "--json", env={"LD_LIBRARY_PATH": str(tmp_path)})
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert "libcuda.so.1 has no cuGetErrorString: not an NVIDIA driver this query can use" in result.stdout
