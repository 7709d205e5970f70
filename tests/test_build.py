"""``attn-export build`` without a GPU: every decision that needs no GPU (profile derivation, the
version-gated precision path, engine names, the manifest checks an engine must pass before it is
deserialised, error messages), and the clean refusal on a machine without GPU or TensorRT. No fake
``tensorrt`` module: the capability is a plain value, as ``Capability.probe`` reads it off the real one."""

from __future__ import annotations

import hashlib
import json
import re
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from attn_export.runtime import store
from attn_export.errors import BadInput, ConfigError, NotAvailable, Untrusted, WorkFailed
from attn_export.quantize import FILES
from attn_export.runtime.iospec import IOSpec
from attn_export.runtime.store import Store
from attn_export.runtime.trt.compat import Here, foreign_problems
from attn_export.runtime.trt.naming import engine_name, gpu_slug
from attn_export.runtime.precisions import ENGINE_PRECISIONS, ONNX_FILES
from attn_export.runtime.trt.precision import Capability, decide, parse_version, plan_summary
from attn_export.runtime.trt.profile import STREAM_OPT_CHUNK, Profile, Range, derive_profile, stream_profile
from conftest import JETSON, cli, mark_verified

TRAIN = {"min": 5, "median": 17, "max": 24}


def cap(version: str, **has: bool) -> Capability:
    """A TensorRT as ``Capability.probe`` would describe it, by version family."""
    major = parse_version(version)[0]
    fields = dict(
        version=version,
        strongly_typed=major >= 9,
        explicit_batch=major < 11,
        fp16_flag=major < 11,
        int8_flag=major < 11,
        int64=major >= 10,
        progress_monitor=major >= 10,
        hardware_compat=parse_version(version) >= (8, 6),
        version_compat=parse_version(version) >= (8, 6),
    )
    fields.update(has)
    return Capability(**fields)  # type: ignore[arg-type]


# --- profiles ------------------------------------------------------------------------------------------

def test_profile_defaults_come_from_the_training_lengths() -> None:
    profile, notes = derive_profile(12, TRAIN)
    assert profile.batch == Range(1, 1, 32)
    assert profile.seq == Range(1, 17, 128)  # opt: median; max: 4 x 24 = 96 -> 128
    assert profile.seq.max >= 4 * TRAIN["max"]
    assert any("median" in n for n in notes) and any("4 x the longest" in n for n in notes)
    assert profile.shapes() == {"x": ((1, 1, 12), (1, 17, 12), (32, 128, 12)), "lengths": ((1,), (1,), (32,))}


def test_profile_explicit_values_win_and_round_trip_through_the_manifest_form() -> None:
    profile, notes = derive_profile(3, TRAIN, max_batch=8, min_seq=2, opt_seq=32, max_seq=64)
    assert profile == Profile(Range(1, 1, 8), Range(2, 32, 64), 3)
    assert notes == []
    d = profile.to_dict()
    assert d["x"] == {"min": [1, 2, 3], "opt": [1, 32, 3], "max": [8, 64, 3]}
    assert d["lengths"] == {"min": [1], "opt": [1], "max": [8]}
    assert Profile.from_dict(json.loads(json.dumps(d))) == profile


def test_profile_opt_is_clamped_into_an_explicit_range_and_short_max_is_noted() -> None:
    profile, notes = derive_profile(3, TRAIN, max_seq=10)
    assert profile.seq == Range(1, 10, 10)
    assert any("below the longest training sequence (24)" in n for n in notes)


def test_profile_needs_training_lengths_or_explicit_values() -> None:
    with pytest.raises(BadInput, match="build.opt_seq and build.max_seq in the model.s recipe .*--opt-seq and "
                                       "--max-seq"):
        derive_profile(3, None)
    profile, _ = derive_profile(3, None, opt_seq=8, max_seq=16)
    assert profile.seq == Range(1, 8, 16)


@pytest.mark.parametrize("kwargs, match", [
    ({"min_seq": 50, "max_seq": 40}, "seq profile min 50 / opt 40 / max 40"),
    ({"opt_batch": 4, "max_batch": 2}, "batch profile min 1 / opt 4 / max 2"),
    ({"max_seq": -1}, "build.max_seq = -1"),
])
def test_profile_out_of_order_is_a_config_error_naming_the_keys(kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        derive_profile(3, TRAIN, **kwargs)


def test_profile_accepts_names_the_limits() -> None:
    profile = Profile(Range(1, 1, 8), Range(1, 16, 64), 3)
    assert profile.accepts(8, 64) is None and profile.accepts(1, 1) is None
    reason = profile.accepts(9, 65)
    assert reason is not None
    assert "batch 9 is outside 1..8" in reason and "seq 65 is outside 1..64" in reason
    assert "--max-seq" in reason


def test_profile_ort_trt_options() -> None:
    options = Profile(Range(1, 1, 8), Range(1, 16, 64), 3).ort_trt_options()
    assert options == {"trt_profile_min_shapes": "x:1x1x3,lengths:1", "trt_profile_opt_shapes": "x:1x16x3,lengths:1",
                       "trt_profile_max_shapes": "x:8x64x3,lengths:8"}


# --- precision path ------------------------------------------------------------------------------------

def test_sources_are_the_quantize_files() -> None:
    assert {p: decide(p, cap("10.3.0")).source for p in ("fp32", "fp16", "int8-qdq")} == {
        "fp32": store.ONNX_FP32, "fp16": FILES["fp16"], "int8-qdq": FILES["int8-qdq"]}


@pytest.mark.parametrize("stream", [False, True])
def test_a_missing_qdq_graph_names_the_commands_for_its_directory(model_dir: Path, stream: bool) -> None:
    """Found by review: "run attn-export quantize --int8 --method qdq first", copied as printed, acted on
    ./artifacts. What build needs first, before TensorRT is touched (this runs without it), names the
    directory (the stream graph is exported: no export first); on a device, which has no quantiser, it is made on
    the host."""
    from attn_export.errors import MissingPrerequisite
    from attn_export.runtime.trt.build import _source

    if stream:
        exported = cli("export", str(model_dir), "--stream")
        assert exported.returncode == 0, exported.stderr
    def quantize(directory: Path, precision: str) -> None:  # the host's quantize: never reached for Q/DQ
        raise AssertionError("build made the Q/DQ graph itself")

    plan = decide("int8-qdq", cap("10.3.0"), stream=stream)
    with pytest.raises(MissingPrerequisite) as said:
        _source(model_dir, plan, print, quantize)
    where = store.directory_word(model_dir)
    assert f"run attn-export quantize {where} --int8 --method qdq" in str(said.value), said.value
    # the stream graph is there once exported: nothing to do first (found by attacking: the hint asked for it)
    assert "(after attn-export export" not in str(said.value), said.value
    with pytest.raises(MissingPrerequisite) as on_device:  # no quantiser there: made on the host (review)
        _source(model_dir, plan, print, None)
    assert "make it on the host (attn-export quantize --int8 --method qdq" in str(on_device.value), on_device.value


@pytest.mark.parametrize("precision", ["fp16", "int8-qdq", "fp32"])
def test_tensorrt_11_is_strongly_typed_from_the_precision_graph(precision: str) -> None:
    plan = decide(precision, cap("11.4.0"))
    assert plan.strongly_typed and plan.builder_flags == () and not plan.explicit_batch
    assert plan.source == ONNX_FILES[precision]
    assert plan.lengths_dtype == "int64"
    assert not plan.pin_float32  # strongly typed: the graph's types are the engine's


def test_tensorrt_10_prefers_strong_typing_over_the_deprecated_flags() -> None:
    plan = decide("fp16", cap("10.3.0"))
    assert plan.strongly_typed and plan.builder_flags == ()
    assert "strongly typed" in plan.describe()


@pytest.mark.parametrize("precision, flag", [("fp16", "FP16"), ("int8-qdq", "INT8")])
def test_tensorrt_8_5_falls_back_to_the_builder_flag_and_int32_lengths(precision: str, flag: str) -> None:
    plan = decide(precision, cap("8.5.2"))
    assert not plan.strongly_typed and plan.explicit_batch
    assert plan.builder_flags == (flag,)
    assert plan.source == ONNX_FILES[precision]  # the precision still comes from its own graph
    assert plan.lengths_dtype == "int32"
    assert "builder flag" in plan.describe() and "lengths as int32" in plan.describe()
    # found by review: weakly typed, --fp16 lets TensorRT run any layer in FP16, the FP16 graph's FP32 ones
    # (normalisation, mask, softmax) too; those are pinned. A Q/DQ graph's precision is its Q/DQ placement
    assert plan.pin_float32 is (precision == "fp16")
    assert ("the graph's FP32 layers pinned to FP32" in plan.describe()) is (precision == "fp16")


def test_a_weak_fp16_build_that_cannot_pin_the_fp32_layers_is_refused() -> None:
    with pytest.raises(NotAvailable, match="no OBEY_PRECISION_CONSTRAINTS .* which verify never judged"):
        decide("fp16", cap("8.5.2", precision_constraints=False))
    assert not decide("int8-qdq", cap("8.5.2", precision_constraints=False)).pin_float32


def test_the_layers_pinned_are_those_whose_every_output_is_float32() -> None:
    """The selection over TensorRT's network API (num_layers, get_layer, num_outputs, get_output(k).dtype),
    here on plain objects: it does not prove what types TensorRT's parser gives a weakly typed network's
    tensors (the docs say the graph's; no TensorRT runs here), only which layers are then pinned."""
    from types import SimpleNamespace as NS

    from attn_export.runtime.trt.precision import float32_layers

    def layer(name: str, *dtypes: str) -> NS:
        outputs = [NS(dtype=d) for d in dtypes]
        return NS(name=name, num_outputs=len(outputs), get_output=outputs.__getitem__)

    layers = [layer("normalise", "float32"), layer("lstm", "float16", "float16"), layer("shape", "int32"),
              layer("split", "float32", "float16"), layer("softmax", "float32"), layer("none")]
    network = NS(num_layers=len(layers), get_layer=layers.__getitem__)
    assert [x.name for x in float32_layers(network, "float32")] == ["normalise", "softmax"]


@pytest.mark.parametrize("integrated, cc, level, refused", [
    (True, "8.7", "ampere-plus", "not on JetPack"), (True, "8.7", "same-compute-capability", "not on JetPack"),
    (False, "7.5", "ampere-plus", "only on an Ampere or later GPU"), (False, "7.5", "same-compute-capability", None),
    (False, "8.0", "ampere-plus", None), (False, "9.0", None, None), (True, "8.7", None, None)])
def test_hardware_compatibility_is_refused_where_tensorrt_cannot_build_it(integrated: bool, cc: str,
                                                                           level: str | None,
                                                                           refused: str | None) -> None:
    """Found by review: TensorRT builds hardware-compatible engines only on discrete GPUs, AMPERE_PLUS only from
    Ampere on; it was a late build error. Refused (NotAvailable) before anything is built."""
    from attn_export.runtime.trt.build import hardware_compat_problem
    from attn_export.runtime.trt.device import Gpu

    problem = hardware_compat_problem(level, Gpu(0, "GPU", cc, 8192, integrated))
    assert (problem is None) is (refused is None) and (refused is None or refused in str(problem)), problem


def test_a_precision_neither_way_can_honour_is_an_error_not_a_downgrade() -> None:
    weird = cap("8.5.2", fp16_flag=False)
    with pytest.raises(NotAvailable, match="cannot honour fp16"):
        decide("fp16", weird)
    assert decide("fp32", weird).builder_flags == ()
    assert plan_summary(weird)["fp16"].startswith("impossible")


def test_compatibility_needs_tensorrt_8_6() -> None:
    with pytest.raises(NotAvailable, match="version-compatible"):
        decide("fp32", cap("8.5.2", version_compat=False), version_compatible=True)
    with pytest.raises(NotAvailable, match="hardware-compatible"):
        decide("fp32", cap("8.5.2", hardware_compat=False), hardware_compatible=True)
    assert decide("fp32", cap("10.3.0"), version_compatible=True, hardware_compatible=True).strongly_typed


def test_int8_dynamic_is_not_an_engine_precision() -> None:
    with pytest.raises(BadInput, match="int8-dynamic is ONNX Runtime's CPU format"):
        decide("int8-dynamic", cap("10.3.0"))


def test_plan_summary_without_tensorrt() -> None:
    assert plan_summary(None) == {"fp32": "no TensorRT", "fp16": "no TensorRT", "int8-qdq": "no TensorRT"}


def test_parse_version() -> None:
    assert parse_version("10.3.0.26") == (10, 3, 0, 26)
    assert parse_version("11.4.0.106") > parse_version("10.16.1")
    assert parse_version("8.5.2.2") < (8, 6)


# --- names ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("gpu, slug", [
    ("Orin", "orin"), ("NVIDIA GeForce RTX 4090", "rtx-4090"), ("NVIDIA H100 80GB HBM3", "h100-80gb-hbm3"),
    ("Tesla T4", "t4"), ("../../etc/passwd", "etc-passwd"), ("NVIDIA", "gpu"),
])
def test_gpu_slug_is_file_name_safe(gpu: str, slug: str) -> None:
    assert gpu_slug(gpu) == slug


def test_engine_name_carries_precision_gpu_and_tensorrt_version() -> None:
    assert engine_name("fp16", "Orin", "10.3.0") == "model.fp16.orin.trt10.3.engine"  # DESIGN's example
    assert engine_name("int8-qdq", "NVIDIA GeForce RTX 4090", "11.4.0.106") == "model.int8-qdq.rtx-4090.trt11.4.engine"
    assert (engine_name("fp32", "NVIDIA A100-SXM4-40GB", "10.16.1", "ampere-plus", True)
            == "model.fp32.a100-sxm4-40gb.trt10.16.ampere-plus.vc.engine")
    with pytest.raises(BadInput):
        engine_name("int8-dynamic", "Orin", "10.3.0")
    with pytest.raises(BadInput):
        engine_name("fp16", "Orin", "ten")


# --- the store's checks before an engine is deserialised -----------------------------------------------

ORIN = Here("10.3.0", "Orin", "8.7", JETSON)
X86 = "x86_64 with a discrete GPU"
ENGINE = "model.fp32.orin.trt10.3.engine"


def _engine_dir(directory: Path, **extra: object) -> tuple[Path, str]:
    """An engine as build records it, made from the directory's model.onnx (the plan's bytes are not a real
    engine: nothing here deserialises it)."""
    (directory / ENGINE).write_bytes(b"plan")
    spec = Store(directory).info.spec
    fields: dict = dict(tensorrt="10.3.0", gpu="Orin", compute_capability="8.7", platform=JETSON, precision="fp32",
                        profile=Profile(Range(1, 1, 8), Range(1, 16, 64), spec.features).to_dict(),
                        io_spec=spec.to_dict())
    fields.update(extra)
    store.record(directory, ENGINE, "build fp32", parent="model.onnx",
                 parent_sha256=_sha(directory / "model.onnx"), **fields)
    return directory, ENGINE


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_recorded_engine_for_this_machine_opens_with_its_bytes_and_profile(model_dir: Path) -> None:
    d, name = _engine_dir(model_dir)
    artifact = Store(d).open(name, here=ORIN)
    assert (artifact.kind, artifact.data, artifact.precision) == ("engine", b"plan", "fp32")
    assert artifact.profile.seq.max == 64 and artifact.sha256 == _sha(d / name)


def test_an_unrecorded_engine_is_refused(model_dir: Path) -> None:
    (model_dir / "x.engine").write_bytes(b"plan")
    with pytest.raises(Untrusted, match="x.engine is not recorded in manifest.json"):
        Store(model_dir).open("x.engine", here=ORIN)


def test_a_changed_engine_is_refused_before_deserialising(model_dir: Path) -> None:
    d, name = _engine_dir(model_dir)
    (d / name).write_bytes(b"evil plan")
    # the step runs as printed: the directory (review: a bare "python3 -m attn_export.runtime build")
    with pytest.raises(Untrusted, match="changed after it was recorded.*re-run python3 -m attn_export.runtime build "
                                        f"{re.escape(store.directory_word(d))}$"):
        Store(d).open(name, here=ORIN)


def test_an_engine_whose_source_or_its_ancestors_changed_is_stale(model_dir: Path) -> None:
    d, name = _engine_dir(model_dir)
    (d / "model.onnx").write_bytes((d / "model.onnx").read_bytes() + b" ")
    with pytest.raises(Untrusted, match="is stale: model.onnx was changed after it was recorded.*"
                                        f"re-run attn-export export {d}, then python3 -m attn_export.runtime build {d}"):
        Store(d).open(name, here=ORIN)


def test_an_engine_that_contradicts_model_json_is_refused(model_dir: Path) -> None:
    spec = Store(model_dir).info.spec
    other = IOSpec.for_model(spec.features + 1, 2).to_dict()
    d, name = _engine_dir(model_dir, io_spec=other)
    with pytest.raises(Untrusted, match=f"contradicts model.json: its x has {spec.features + 1} features per step"):
        Store(d).open(name, here=ORIN)


@pytest.mark.parametrize("here, match", [
    (Here("10.3.1", "Orin", "8.7", JETSON), "built with TensorRT 10.3.0 and this machine has TensorRT 10.3.1"),
    (Here("10.3.0", "NVIDIA GeForce RTX 3090", "8.6", JETSON), "built for compute capability 8.7 \\(Orin\\) and this GPU"),
    (Here("10.3.0", "Jetson AGX Orin", "8.7", JETSON), "built and tuned for Orin and this GPU is Jetson AGX Orin"),
])
def test_a_foreign_engine_is_refused_with_exit_3_and_says_why(model_dir: Path, here: Here, match: str) -> None:
    d, name = _engine_dir(model_dir)
    with pytest.raises(NotAvailable, match=match) as e:
        Store(d).open(name, here=here)
    assert e.value.exit_code == 3
    assert "build the engine on this device (python3 -m attn_export.runtime build" in str(e.value)


def test_without_a_gpu_a_current_engine_cannot_be_judged_here(model_dir: Path) -> None:
    """This machine has no GPU: the store cannot tell whether the engine is foreign, so it refuses (exit 3)."""
    d, name = _engine_dir(model_dir)
    with pytest.raises(NotAvailable, match="an engine needs a CUDA device"):
        Store(d).open(name)


def test_compatible_engines_follow_tensorrt_rules() -> None:
    entry = {"tensorrt": "10.3.0", "gpu": "NVIDIA A100", "compute_capability": "8.0", "platform": X86,
             "hardware_compatibility": "ampere_plus", "version_compatible": True}
    assert foreign_problems(entry, Here("11.4.0", "NVIDIA H100", "9.0", X86)) == []
    newer_to_older = foreign_problems(entry, Here("10.2.0", "NVIDIA H100", "9.0", X86))
    assert len(newer_to_older) == 1 and "older TensorRT 10.2.0" in newer_to_older[0]
    turing = foreign_problems(entry, Here("10.3.0", "Tesla T4", "7.5", X86))
    assert len(turing) == 1 and "Ampere and newer" in turing[0]
    same_cc = {**entry, "hardware_compatibility": "same_compute_capability", "version_compatible": False}
    assert foreign_problems(same_cc, Here("10.3.0", "NVIDIA A30", "8.0", X86)) == []
    # across majors only 8 -> 9 or 10 and 10 -> 11 (TensorRT 11.4.1's support matrix): an 8.6 engine never on 11
    old = {**entry, "tensorrt": "8.6.1"}
    assert foreign_problems(old, Here("10.3.0", "NVIDIA H100", "9.0", X86)) == []
    assert foreign_problems(old, Here("11.4.0", "NVIDIA H100", "9.0", X86)) == [
        "it is version-compatible from TensorRT 8.6.1 on, which a runtime of TensorRT 8, 9 or 10 runs, and this "
        "machine has TensorRT 11.4.0"]
    assert len(foreign_problems({**entry, "tensorrt": "11.1.0"}, Here("12.0.0", "NVIDIA H100", "9.0", X86))) == 1


def test_an_engine_runs_only_on_the_platform_it_was_built_on() -> None:
    """Hardware and version compatibility relax the GPU and TensorRT, never the platform: an x86 engine built
    Ampere-plus, compute 8.0, is refused on an Orin (compute 8.7, Ampere); so is one whose record names none."""
    entry = {"tensorrt": "10.3.0", "gpu": "NVIDIA A100-SXM4-80GB", "compute_capability": "8.0", "platform": X86,
             "hardware_compatibility": "ampere_plus", "version_compatible": True}
    assert foreign_problems(entry, Here("10.3.0", "NVIDIA A30", "8.0", X86)) == []
    assert foreign_problems(entry, Here("10.3.0", "Orin", "8.7", JETSON)) == [
        f"it was built on {X86} and this machine is {JETSON}"]
    unrecorded = foreign_problems({k: v for k, v in entry.items() if k != "platform"}, Here("10.3.0", "A30", "8.0", X86))
    assert len(unrecorded) == 1 and "names no platform" in unrecorded[0]


def test_the_platform_names_the_cpu_and_the_kind_of_gpu() -> None:
    from attn_export.runtime.trt.compat import platform_of
    from attn_export.runtime.trt.device import Gpu

    jetson, card = Gpu(0, "Orin", "8.7", 7620, True), Gpu(0, "NVIDIA A30", "8.0", 24000, False)
    assert platform_of(jetson).endswith("with an integrated GPU (Jetson)")
    assert platform_of(card).endswith("with a discrete GPU") and platform_of(card) != platform_of(jetson)


def test_host_code_loads_only_on_opt_in(model_dir: Path) -> None:
    d, name = _engine_dir(model_dir, host_code=True, version_compatible=True)
    with pytest.raises(Untrusted, match="embeds host code.*ATTN_EXPORT_ALLOW_ENGINE_HOST_CODE=1"):
        Store(d).open(name, here=ORIN)
    assert Store(d).open(name, here=ORIN, allow_host_code=True).entry["host_code"]


def test_the_tensorrt_backend_reads_its_profile_from_the_artifact_without_a_gpu(model_dir: Path) -> None:
    from attn_export.backends import get

    d, name = _engine_dir(model_dir)
    backend = get("tensorrt")(Store(d).open(name, here=ORIN))
    assert backend.accepts(8, 64) is None
    reason = backend.accepts(1, 65)
    assert reason is not None and "seq 65 is outside 1..64" in reason



# --- the stream graph's engine (build --stream) ---------------------------------------------------------

STATE = {"state_in_acc": (16,), "state_in_c": (2, 16), "state_in_max": (1,)}


def test_a_stream_profile_has_a_chunk_axis_and_a_state_that_follows_the_batch() -> None:
    profile, notes = stream_profile(3, TRAIN, STATE, max_batch=8)
    assert profile.axis == "chunk" and profile.seq == Range(1, STREAM_OPT_CHUNK, 128)  # a chunk may be a sequence
    assert profile.shapes()["state_in_c"] == ((1, 2, 16), (1, 2, 16), (8, 2, 16))
    assert Profile.from_dict(profile.to_dict()) == profile  # the manifest's form keeps the state
    assert any(n.startswith("max chunk 128") for n in notes)
    reason = profile.accepts(1, 200)
    assert reason is not None and "chunk 200 is outside 1..128" in reason and "build DIR --stream" in reason
    short, _ = stream_profile(3, TRAIN, STATE, max_chunk=8)  # the opt chunk follows a smaller max down
    assert short.seq == Range(1, 8, 8)
    assert derive_profile(3, TRAIN)[0].axis == "seq" and not derive_profile(3, TRAIN)[0].state


def test_stream_builds_take_the_stream_graph_of_each_precision_and_are_named_so() -> None:
    for precision in ENGINE_PRECISIONS:
        for version in ("8.5.2", "10.3.0", "11.4.0"):
            plan = decide(precision, cap(version), stream=True)
            assert plan.source == store.STREAM_FILES[precision]
            assert plan == replace(decide(precision, cap(version)), source=plan.source)  # built the same way
    assert engine_name("fp16", "Orin", "10.3.0", stream=True) == "model.stream.fp16.orin.trt10.3.engine"


def test_trtexec_builds_a_stream_graph_with_every_state_shape() -> None:
    from attn_export.runtime.trt.readiness import TARGETS, trtexec

    profile, _ = stream_profile(3, TRAIN, STATE, max_batch=8)
    line = trtexec("fp16", TARGETS["jetpack6"], profile, 512)
    assert line is not None and "--onnx=model.stream.fp16.onnx" in line
    assert "--saveEngine=trtexec.stream.fp16.engine" in line
    assert "--maxShapes=x:8x128x3,lengths:8,state_in_acc:8x16,state_in_c:8x2x16,state_in_max:8x1 " in line


def test_a_stream_engine_is_checked_against_the_stream_spec_and_chosen_only_for_streams(model_dir: Path) -> None:
    """An engine recorded from model.stream.onnx is a stream engine: its io_spec is held to the stream
    graph's (the whole model's contradicts it), its profile has the chunk axis, and the dispatcher's
    engine search keeps stream and whole engines apart (no GPU here: the one engine each search tries is
    skipped, and noted)."""
    from attn_export.runtime.dispatch import find_engine
    from attn_export.runtime.streaming import state_dims, stream_spec

    assert cli("export", str(model_dir), "--stream").returncode == 0
    _engine_dir(model_dir)
    info = Store(model_dir).info
    spec = stream_spec(info)
    name = "model.stream.fp32.orin.trt10.3.engine"
    (model_dir / name).write_bytes(b"stream plan")
    fields: dict = dict(tensorrt="10.3.0", gpu="Orin", compute_capability="8.7", platform=JETSON, precision="fp32",
                        profile=stream_profile(spec.features, info.train_lengths, state_dims(spec))[0].to_dict())
    store.record(model_dir, name, "build fp32", parent=store.STREAM_ONNX,
                 parent_sha256=_sha(model_dir / store.STREAM_ONNX), io_spec=spec.to_dict(), **fields)
    s = Store(model_dir)
    assert s.is_stream(name) and not s.is_stream(ENGINE)
    artifact = s.open(name, here=ORIN, need="current")
    assert artifact.spec == spec and artifact.profile.axis == "chunk"
    from attn_export.backends import get

    assert "chunk 4096 is outside" in str(get("tensorrt")(artifact).accepts(1, 4096))
    for stream in (True, False):  # two fp32 engines here; each search tries one
        notes: list[str] = []
        assert find_engine(Store(model_dir), "fp32", True, notes, stream=stream) is None
        assert len(notes) == 1 and "needs a CUDA device" in notes[0], notes
    store.record(model_dir, name, "build fp32", parent=store.STREAM_ONNX,
                 parent_sha256=_sha(model_dir / store.STREAM_ONNX), io_spec=info.spec.to_dict(), **fields)
    with pytest.raises(Untrusted, match="contradicts model.json: it takes inputs"):
        Store(model_dir).open(name, here=ORIN, need="current")


def test_build_rejects_two_precisions() -> None:
    result = cli("build", "--fp16", "--int8")
    assert result.returncode == 2 and "exclude each other" in result.stderr


def test_build_help_does_not_import_heavy_modules() -> None:
    import subprocess
    import sys

    code = ("import sys\nfrom attn_export.cli import main\nrc = main(['build', '--help'])\n"
            "print('HEAVY', [m for m in ('torch', 'onnxruntime', 'tensorrt', 'onnx') if m in sys.modules], rc)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "HEAVY [] 0" in out.stdout, out.stdout + out.stderr


# --- ONNX Runtime's GPU providers and CUDA graphs: what they are told, without a GPU -------------------------
# None of these runs a GPU provider or CUDA: they prove what the session is asked for and what bench does with
# a refusal, not that ONNX Runtime or CUDA behave as their documentation says.

def test_ort_trt_keeps_its_engines_apart_for_every_graph_bytes(model_dir: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Found by review: ONNX Runtime keys a cached engine by names and versions, never by the weights, so a
    retrained model.onnx (same names) would have run the old engine. The cache is a folder per sha256."""
    import onnx
    from onnx import numpy_helper

    from attn_export.runtime.backends.ortgpu import CACHE_DIR, OrtTrtBackend
    from conftest import rerecord

    monkeypatch.setenv("NVIDIA_TF32_OVERRIDE", "0")
    before = OrtTrtBackend(Store(model_dir).open("model.onnx")).provider_options()
    proto = onnx.load(str(model_dir / "model.onnx"))
    init = max(proto.graph.initializer, key=lambda t: int(np.prod(t.dims)))
    init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * 1.01, init.name))  # new weights, same names
    onnx.save(proto, str(model_dir / "model.onnx"))
    rerecord(model_dir, "model.onnx")
    mark_verified(model_dir, "model.onnx")
    after = OrtTrtBackend(Store(model_dir).open("model.onnx")).provider_options()
    for options, name in ((before, "before"), (after, "after")):
        assert options["trt_engine_cache_path"] == options["trt_timing_cache_path"], name
        assert Path(options["trt_engine_cache_path"]).parent == model_dir / CACHE_DIR
    assert Path(after["trt_engine_cache_path"]).name == store.sha256_file(model_dir / "model.onnx")
    assert before["trt_engine_cache_path"] != after["trt_engine_cache_path"]
    assert Path(after["trt_engine_cache_path"]).is_dir()


def test_fp32_on_onnx_runtimes_gpu_providers_is_fp32_or_refused(model_dir: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Found by review: both EPs let NVIDIA's libraries use TF32 for FP32 (Ampere and later). The CUDA EP is
    told not to (1.18+); without that option, and always on the TensorRT EP, it takes NVIDIA_TF32_OVERRIDE=0."""
    import onnxruntime

    from attn_export.runtime.backends.ortgpu import OrtCudaBackend, OrtTrtBackend

    artifact = Store(model_dir).open("model.onnx")
    monkeypatch.delenv("NVIDIA_TF32_OVERRIDE", raising=False)
    assert OrtCudaBackend(artifact).provider_options() == {"device_id": 0, "use_tf32": 0}
    with pytest.raises(NotAvailable, match="NVIDIA_TF32_OVERRIDE=0 in the environment") as e:
        OrtTrtBackend(artifact).provider_options()
    assert "TensorRT EP has no TF32 switch" in str(e.value)
    monkeypatch.setattr(onnxruntime, "__version__", "1.17.3")
    with pytest.raises(NotAvailable, match="1.17.3's CUDA EP has no use_tf32 option"):
        OrtCudaBackend(artifact).provider_options()
    monkeypatch.setenv("NVIDIA_TF32_OVERRIDE", "0")
    assert OrtCudaBackend(artifact).provider_options() == {"device_id": 0}
    providers = OrtTrtBackend(artifact).providers()  # nodes TensorRT does not take go to CUDA, not the CPU
    assert [p[0] for p in providers] == ["TensorrtExecutionProvider", "CUDAExecutionProvider"]


def test_the_qdq_graph_on_onnx_runtimes_tensorrt_ep_is_int8_with_its_float_layers_fp32(
        model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Found by review: where the TensorRT EP builds weakly typed, a Q/DQ graph without trt_int8_enable is
    refused by TensorRT ("int8 is not configured in the builder", microsoft/onnxruntime#13381); and its LSTM and
    attention, float, ran TF32. The options only: no GPU here runs the EP."""
    from attn_export.runtime.backends.ortgpu import OrtCudaBackend, OrtTrtBackend

    fp32 = Store(model_dir).open("model.onnx")
    qdq = replace(fp32, precision="int8-qdq")  # the precision is what the options are chosen by
    monkeypatch.delenv("NVIDIA_TF32_OVERRIDE", raising=False)
    with pytest.raises(NotAvailable, match="ort-trt would run the int8-qdq graph's FP32 layers with TF32"):
        OrtTrtBackend(qdq).provider_options()
    assert OrtCudaBackend(qdq).provider_options() == {"device_id": 0, "use_tf32": 0}
    monkeypatch.setenv("NVIDIA_TF32_OVERRIDE", "0")
    options = OrtTrtBackend(qdq).provider_options()
    assert options["trt_int8_enable"] is True and options["trt_fp16_enable"] is False
    assert OrtTrtBackend(fp32).provider_options()["trt_int8_enable"] is False


def test_the_command_lines_turn_tf32_off_unless_told_otherwise(tmp_path: Path) -> None:
    (tmp_path / "probe_tf32.py").write_text("import os\n\ndef main():\n"
                                            "    print(os.environ.get('NVIDIA_TF32_OVERRIDE'))\n    return 0\n")
    code = "from attn_export.errors import run_command_line; run_command_line('probe_tf32')"
    for given, seen in ((None, "0"), ("1", "1")):
        env = {k: v for k, v in os.environ.items() if k != "NVIDIA_TF32_OVERRIDE"}
        env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), env.get("PYTHONPATH", "")])
        if given is not None:
            env["NVIDIA_TF32_OVERRIDE"] = given
        result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
        assert (result.returncode, result.stdout.strip()) == (0, seen), result.stderr


def test_a_cuda_graph_bench_cannot_capture_skips_that_row_only(tiny_dir: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Found by review: one engine a CUDA graph cannot capture ended the whole bench (exit 3). ort-cpu stands in
    for an engine here (its runner refuses the capture as the TensorRT backend's does)."""
    from attn_export import bench
    from attn_export.runtime.backends.onnxrt import OrtCpuBackend
    from attn_export.runtime.timing import Budget

    directory = tmp_path / "d"
    shutil.copytree(tiny_dir, directory)
    plain = OrtCpuBackend.runner

    def runner(self: OrtCpuBackend, feeds: Any, cuda_graph: bool = False) -> Any:
        if cuda_graph:
            raise NotAvailable(f"{self.artifact.name} cannot be captured in a CUDA graph: a loop")
        return plain(self, feeds)

    monkeypatch.setattr(OrtCpuBackend, "supports_cuda_graph", True)
    monkeypatch.setattr(OrtCpuBackend, "runner", runner)
    result = bench.bench(directory, backends="torch-cpu,ort-cpu", batches=(1,), seqs=(8,),
                         budget=Budget(warmup=1, seconds=0.1, min_iterations=3), plots=False)
    rows = result["results"]
    assert {(r["backend"], r["cuda_graph"]) for r in rows if "latency_ms" in r} == {("torch-cpu", False),
                                                                                   ("ort-cpu", False)}
    assert [(r["backend"], r["cuda_graph"], r["skipped"]) for r in rows if "skipped" in r] == [
        ("ort-cpu", True, "model.onnx cannot be captured in a CUDA graph: a loop")]


def test_a_capture_that_fails_is_ended_before_the_error_goes_on() -> None:
    """Found by review: an enqueue failing inside a capture left the stream capturing, so the close that followed
    failed too and hid the first error. A stand-in for cuda-python records the calls: it proves the order of
    calls, not what CUDA does with them."""
    from types import SimpleNamespace

    from attn_export.runtime.trt.memory import _CudaPythonMemory

    calls: list[str] = []

    def call(name: str, *result: object) -> Any:
        def f(*_: object) -> tuple:
            calls.append(name)
            return (0, *result)
        return f

    rt = SimpleNamespace(cudaError_t=SimpleNamespace(cudaSuccess=0),
                         cudaStreamCaptureMode=SimpleNamespace(cudaStreamCaptureModeThreadLocal=2),
                         cudaStreamSynchronize=call("sync"), cudaStreamBeginCapture=call("begin"),
                         cudaStreamEndCapture=call("end", "graph"), cudaGraphDestroy=call("destroy"),
                         cudaGraphInstantiateWithFlags=call("instantiate", "exec"))
    memory = _CudaPythonMemory.__new__(_CudaPythonMemory)
    memory._rt, memory._stream, memory._graphs = rt, "stream", []
    enqueued: list[int] = []

    def enqueue() -> None:
        enqueued.append(1)
        if len(enqueued) == 2:
            raise WorkFailed("execute_async_v3 failed")

    with pytest.raises(WorkFailed, match="execute_async_v3"):
        memory.capture(enqueue)
    assert calls == ["sync", "begin", "end", "destroy"] and memory._graphs == []
    calls.clear()
    enqueued.clear()
    memory.capture(lambda: enqueued.append(1))
    assert calls == ["sync", "begin", "end", "instantiate"] and memory._graphs == [("graph", "exec")]


def test_predicts_own_choice_passes_a_gpu_ep_by_that_would_run_fp32_as_tf32(model_dir: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Found by review: with both EPs there, auto chose ort-trt for FP32 and then refused it (no TF32 switch),
    where ort-cuda runs true FP32. The providers are said to be there (no onnxruntime-gpu here): this proves
    the choice, not a session."""
    from attn_export.runtime.backends.ortgpu import OrtCudaBackend, OrtTrtBackend
    from attn_export.runtime.dispatch import choose

    for cls in (OrtCudaBackend, OrtTrtBackend):
        monkeypatch.setattr(cls, "available", classmethod(lambda cls: None))
    monkeypatch.delenv("NVIDIA_TF32_OVERRIDE", raising=False)
    chosen, artifact, notes = choose(Store(model_dir), "auto", "fp32", False)
    assert chosen is OrtCudaBackend and artifact.name == "model.onnx"
    assert any(n.startswith("not chosen: ort-trt would run FP32 with TF32") for n in notes), notes
    monkeypatch.setenv("NVIDIA_TF32_OVERRIDE", "0")
    assert choose(Store(model_dir), "auto", "fp32", False)[0] is OrtTrtBackend
