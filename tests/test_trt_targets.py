"""TensorRT readiness without TensorRT: every artefact checked statically against the onnx-tensorrt parser
rules of each target (``attn_export.runtime.trt.readiness``, which reads graphs without onnx, as the device
does). What this proves: the graphs meet the documented rules of each line's operators.md; it does not
prove that TensorRT builds them (no TensorRT here)."""

from __future__ import annotations

import json
import platform
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import cli, rerecord
from onnx import TensorProto, helper

from attn_export.errors import BadInput
from attn_export.runtime.onnxfile import parse_graph
from attn_export.runtime.trt.readiness import TARGETS, check


def _check(model: onnx.ModelProto, target: str, precision: str | None = None) -> list:
    """The check as every caller runs it: on the model's bytes, read without onnx."""
    return check(parse_graph(model.SerializeToString(), "fixture"), TARGETS[target], precision)



@pytest.fixture(scope="module")
def variants_dir(tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model with every precision file: FP16, dynamic INT8 and Q/DQ INT8."""
    directory = tmp_path_factory.mktemp("targets") / "d"
    shutil.copytree(tiny_dir, directory)
    for args in (("quantize", str(directory), "--fp16", "--int8"),
                 ("quantize", str(directory), "--int8", "--method", "qdq", "--calib-samples", "16")):
        result = cli(*args)
        assert result.returncode == 0, result.stderr
    return directory


def test_every_artefact_is_ready_or_withdrawn_with_its_reason_on_every_target(variants_dir: Path) -> None:
    result = cli("inspect", str(variants_dir), "--target", "jetpack5", "--target", "jetpack6", "--target", "jetpack7",
                 "--target", "trt10", "--target", "trt11", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert set(report) == {"jetpack5", "jetpack6", "jetpack7", "trt10", "trt11"}
    for name, t in report.items():
        files = t["files"]
        assert files["model.int8.onnx"]["builds"] is None and "never a TensorRT input" in files["model.int8.onnx"]["how"]
        for f in ("model.onnx", "model.fp16.onnx", "model.int8-qdq.onnx"):
            assert files[f]["ready"], (name, f, files[f]["findings"])
            # every operator the graphs hold is in the parser's table (the masked softmax's ReduceMin was not, and
            # each line said "attn-export's graphs do not use it")
            assert not [x for x in files[f]["findings"] if "is not in this table" in x["rule"]], (name, f)
        assert "docs/operators.md" in t["source"]
    assert "no --fp16 flag" in report["trt11"]["files"]["model.onnx"]["how"]
    # how each line builds it is build()'s own decision there: the FP16 flag on 8.5, strongly typed after
    assert "builder flag FP16" in report["jetpack5"]["files"]["model.fp16.onnx"]["how"]
    assert "strongly typed" in report["trt10"]["files"]["model.fp16.onnx"]["how"]


def test_a_file_that_is_not_current_is_never_ready(variants_dir: Path, tmp_path: Path) -> None:
    """Found by a user: after a retrain and export, verify called the stale FP16 graph "ready" on every line.
    A stale or damaged file says what the store found instead; the dynamic INT8 file stays withdrawn (it
    builds nothing, current or not); the current model.onnx is judged by its rules."""
    directory = tmp_path / "d"
    shutil.copytree(variants_dir, directory)
    proto = onnx.load(str(directory / "model.onnx"))
    proto.graph.doc_string = "exported again"  # other bytes: every variant now descends from an older graph
    onnx.save(proto, str(directory / "model.onnx"))
    rerecord(directory, "model.onnx")
    (directory / "model.int8-qdq.onnx").write_bytes((directory / "model.int8-qdq.onnx").read_bytes()[:3000])
    result = cli("inspect", str(directory), "--target", "jetpack6", "--target", "trt11", "--json")
    assert result.returncode == 1  # not current: inspect's own exit
    for name, t in json.loads(result.stdout).items():
        files = t["files"]
        assert files["model.onnx"]["ready"] and "not_current" not in files["model.onnx"], name
        assert files["model.fp16.onnx"]["not_current"] == "stale" and not files["model.fp16.onnx"]["ready"]
        assert files["model.fp16.onnx"]["how"].startswith("its parent model.onnx changed"), files["model.fp16.onnx"]
        assert files["model.int8-qdq.onnx"]["not_current"] in ("changed", "damaged"), files["model.int8-qdq.onnx"]
        assert files["model.int8.onnx"]["builds"] is None and "never a TensorRT input" in files["model.int8.onnx"]["how"]
    shown = cli("inspect", str(directory), "--target", "jetpack6").stdout
    assert re.search(r"model\.fp16\.onnx +stale: its parent model\.onnx changed", shown), shown
    assert not re.search(r"model\.(fp16|int8-qdq)\.onnx +ready", shown), shown


def _report_readiness(directory: Path) -> tuple[dict[str, set[str]], str]:
    """``report``'s TensorRT readiness table: file -> the cells of its row, and the section's text."""
    result = cli("report", str(directory))
    assert result.returncode == 0, result.stderr
    section = (directory / "report.md").read_text().split("## TensorRT readiness", 1)[1]
    table = section.split("\n\n", 2)[1]
    return {line.split("|")[1].strip(" `"): {c.strip() for c in line.split("|")[2:-1]}
            for line in table.splitlines()[2:]}, section


def test_the_report_never_calls_a_graph_that_is_not_current_ready(variants_dir: Path, tmp_path: Path) -> None:
    """Found by attacking: verify and inspect said "stale" for the graphs of an older model.onnx, but the
    report rendered verify.json's recorded readiness, "ready" on every line. It now says what the store
    finds, as they do."""
    directory = tmp_path / "d"
    shutil.copytree(variants_dir, directory)
    verified = cli("verify", str(directory), "--backends", "ort-cpu")
    assert verified.returncode == 0, verified.stderr
    rows, _ = _report_readiness(directory)
    assert rows["model.fp16.onnx"] == rows["model.int8-qdq.onnx"] == rows["model.onnx"] == {"ready"}, rows
    proto = onnx.load(str(directory / "model.onnx"))
    proto.graph.doc_string = "exported again"  # every variant now descends from an older graph
    onnx.save(proto, str(directory / "model.onnx"))
    rerecord(directory, "model.onnx")
    rows, section = _report_readiness(directory)
    assert rows["model.fp16.onnx"] == rows["model.int8-qdq.onnx"] == {"stale"}, section
    assert rows["model.onnx"] == {"ready"}, section
    assert "its parent model.onnx changed" in section


def test_the_report_checks_the_files_as_they_are_and_a_deleted_one_is_listed_missing(
        variants_dir: Path, tmp_path: Path) -> None:
    """Found by attacking: the report repeated verify.json's "ready" for a model.onnx exported again at opset 19
    (which TensorRT 8.5 cannot parse: inspect --target jetpack5 said NOT READY) and for a deleted
    model.fp16.onnx, and inspect and the device's info had no line at all for the deleted file."""
    directory = tmp_path / "d"
    shutil.copytree(variants_dir, directory)
    verified = cli("verify", str(directory), "--backends", "ort-cpu")
    assert verified.returncode == 0, verified.stderr
    (directory / "model.fp16.onnx").unlink()
    proto = onnx.load(str(directory / "model.onnx"))
    proto.opset_import[0].version = 19  # what export --opset 19 declares; the operators used are the same
    onnx.save(proto, str(directory / "model.onnx"))
    rerecord(directory, "model.onnx")
    rows, section = _report_readiness(directory)
    assert rows["model.fp16.onnx"] == {"missing"}, section
    assert "NOT READY" in rows["model.onnx"] and "opset 19" in section, section
    again = cli("verify", str(directory), "--backends", "ort-cpu")
    assert re.search(r"not current \S*model\.fp16\.onnx is missing", again.stdout + again.stderr), again.stdout
    rows, section = _report_readiness(directory)
    assert rows["model.fp16.onnx"] == {"missing"}, section
    assert "NOT READY" in rows["model.onnx"] and "opset 19" in section, section
    listed = cli("inspect", str(directory))
    assert re.search(r"model\.fp16\.onnx +- +\S*model\.fp16\.onnx is missing", listed.stdout), listed.stdout
    info = subprocess.run([sys.executable, "-m", "attn_export.runtime", "info", str(directory)], capture_output=True,
                          text=True, timeout=300)
    assert re.search(r"model\.fp16\.onnx +\S*model\.fp16\.onnx is missing", info.stdout), info.stdout + info.stderr


def test_jetpack5_reads_every_file_its_notes_say_what_it_casts(variants_dir: Path) -> None:
    """TensorRT 8.5's operators.md lists ConstantOfShape for FP32 only, and the FP16 graph filled a tensor with
    an FP16 ConstantOfShape (found by this check): the FP16 graph now fills in FP32 and casts. INT64 casts are
    notes (8.5 casts INT64 down to INT32), not problems."""
    result = cli("inspect", str(variants_dir), "--target", "jetpack5")
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"model\.fp16\.onnx +ready", result.stdout) and "casts it down to INT32" in result.stdout
    fp16 = onnx.load(str(variants_dir / "model.fp16.onnx"))
    fills = [n for n in fp16.graph.node if n.op_type == "ConstantOfShape"]
    assert fills and all(a.t.data_type == TensorProto.FLOAT for n in fills for a in n.attribute if a.name == "value")
    found = _check(_fill_model(TensorProto.FLOAT16), "jetpack5")
    assert any("FP16 ConstantOfShape; TensorRT 8.5.2's parser lists FP32 only" in f.rule for f in found if f.error)


def _fill_model(dtype: int) -> onnx.ModelProto:
    shape = helper.make_tensor_value_info("shape", TensorProto.INT64, [2])
    y = helper.make_tensor_value_info("y", dtype, None)
    value = helper.make_tensor("v", dtype, [1], [0.0])
    node = helper.make_node("ConstantOfShape", ["shape"], ["y"], name="fill", value=value)
    return helper.make_model(helper.make_graph([node], "g", [shape], [y]), opset_imports=[helper.make_opsetid("", 17)])


def _lstm_model(opset: int = 17, domain_op: bool = False, **lstm: object) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [5, 1, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    w = helper.make_tensor("W", TensorProto.FLOAT, [1, 8, 3], np.zeros(24, np.float32))
    r = helper.make_tensor("R", TensorProto.FLOAT, [1, 8, 2], np.zeros(16, np.float32))
    nodes = [helper.make_node("LSTM", ["x", "W", "R"], ["y"], name="lstm0", hidden_size=2, **lstm)]
    if domain_op:
        nodes.append(helper.make_node("DynamicQuantizeLSTM", ["x"], ["q"], name="dq", domain="com.microsoft"))
    graph = helper.make_graph(nodes, "g", [x], [y], [w, r])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _small(nodes: list, inputs: list, initializers: list = (), opset: int = 17,
           output_type: int = TensorProto.FLOAT) -> onnx.ModelProto:
    y = helper.make_tensor_value_info(nodes[-1].output[0], output_type, None)
    return helper.make_model(helper.make_graph(nodes, "g", inputs, [y], list(initializers)),
                             opset_imports=[helper.make_opsetid("", opset)])


_X = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])
_SCALE = helper.make_tensor("s", TensorProto.FLOAT, [], [0.1])


def _qdq(zero: onnx.TensorProto | None) -> onnx.ModelProto:
    extra = ["z"] if zero is not None else []
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", *extra], ["q"], name="quant"),
             helper.make_node("DequantizeLinear", ["q", "s", *extra], ["y"], name="dequant")]
    return _small(nodes, [_X], [_SCALE] + ([zero] if zero is not None else []))


def _dequantised_bias() -> onnx.ModelProto:
    """ONNX Runtime's quantize_static by default (QuantizeBias): an INT32 bias behind a DequantizeLinear."""
    bias = helper.make_tensor("b", TensorProto.INT32, [3], [1, 2, 3])
    zero = helper.make_tensor("bz", TensorProto.INT32, [], [0])
    nodes = [helper.make_node("DequantizeLinear", ["b", "s", "bz"], ["bf"], name="bias_dq"),
             helper.make_node("Add", ["x", "bf"], ["y"], name="add")]
    return _small(nodes, [_X], [_SCALE, bias, zero])


def _op(op_type: str) -> onnx.ModelProto:
    return _small([helper.make_node(op_type, ["x"], ["y"], name="op")], [_X])


def _reverse() -> onnx.ModelProto:
    seq = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["seq", 2, 3])
    lengths = helper.make_tensor_value_info("lengths", TensorProto.INT64, [2])
    node = helper.make_node("ReverseSequence", ["x", "lengths"], ["y"], name="rev", batch_axis=1, time_axis=0)
    return _small([node], [seq, lengths])


def _unsqueeze_by_graph() -> onnx.ModelProto:
    axes = helper.make_tensor_value_info("axes", TensorProto.INT64, [1])
    return _small([helper.make_node("Unsqueeze", ["x", "axes"], ["y"], name="unsq")], [_X, axes])


def _squeeze_all(dims: list) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)
    return _small([helper.make_node("Squeeze", ["x"], ["y"], name="squeeze")], [x])


def _bf16_input() -> onnx.ModelProto:
    return _typed_input(TensorProto.BFLOAT16)


def _sequence_io() -> onnx.ModelProto:
    s = helper.make_tensor_sequence_value_info("s", TensorProto.FLOAT, [3])
    graph = helper.make_graph([helper.make_node("Identity", ["s"], ["t"], name="id")], "g", [s],
                              [helper.make_tensor_sequence_value_info("t", TensorProto.FLOAT, [3])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _typed_input(elem_type: int) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", elem_type, [2, 3])
    return _small([helper.make_node("Identity", ["x"], ["y"], name="id")], [x], output_type=elem_type)


ALL = {"jetpack5", "jetpack6", "jetpack7", "trt10", "trt11"}
STRONGLY_TYPED = ALL - {"jetpack5"}  # build() is strongly typed wherever TensorRT has the flag

# one negative fixture per rule: (fixture, precision it is offered as, the targets that must flag it, words)
RULES = [
    ("lstm layout 1", lambda: _lstm_model(layout=1), None, ALL, "layout = 1"),
    ("coupled gates", lambda: _lstm_model(input_forget=1), None, ALL, "input_forget = 1"),
    ("activations differ", lambda: _lstm_model(
        direction="bidirectional", activations=["Sigmoid", "Tanh", "Tanh", "Sigmoid", "Relu", "Tanh"]), None, ALL,
     "different activations in the two directions"),
    ("opset 18", lambda: _lstm_model(opset=18), None, {"jetpack5"}, "opset 18, the parser of TensorRT"),
    ("opset 21", lambda: _lstm_model(opset=21), None, ALL - {"trt11"}, "opset 21, the parser of TensorRT"),
    ("opset 8", lambda: _lstm_model(opset=8), None, STRONGLY_TYPED, "opset 8, the parser of TensorRT"),
    ("dynamic-quantised LSTM", lambda: _lstm_model(domain_op=True), "fp32", ALL, "ONNX Runtime's own operator"),
    ("FP16 fill", lambda: _fill_model(TensorProto.FLOAT16), None, {"jetpack5"}, "FP16 ConstantOfShape"),
    ("ReverseSequence", _reverse, None, {"jetpack5"}, "ReverseSequence with dynamic shapes"),
    ("axes from the graph", _unsqueeze_by_graph, None, ALL, "axes come from the graph at run time"),
    ("Squeeze without axes", lambda: _squeeze_all(["batch", 1]), None, ALL, "a Squeeze without axes"),
    ("static Squeeze without axes", lambda: _squeeze_all([2, 1]), None, set(), "a Squeeze without axes"),
    ("asymmetric", lambda: _qdq(helper.make_tensor("z", TensorProto.INT8, [], [3])), None, ALL,
     "non-zero zero point"),
    ("uint8 zero point", lambda: _qdq(helper.make_tensor("z", TensorProto.UINT8, [], [0])), None, ALL,
     "UINT8 zero point"),
    ("no zero point", lambda: _qdq(None), None, {"jetpack5"}, "no explicit zero point"),
    ("INT32 bias dequantised", _dequantised_bias, None, ALL, "dequantises INT32 'b'"),
    ("activation TensorRT lacks", lambda: _lstm_model(activations=["Sigmoid", "Affine", "Tanh"]), None, ALL,
     "activations ['Affine'], which TensorRT's LSTM importer does not know"),
    ("Unique", lambda: _op("Unique"), None, ALL, "Unique, which the parser of TensorRT"),
    ("HardSwish before 8.6", lambda: _op("HardSwish"), None, {"jetpack5"}, "HardSwish, which the parser"),
    ("STFT before 10.15", lambda: _op("STFT"), None, ALL - {"trt11"}, "STFT, which the parser"),
    ("BF16 input", _bf16_input, None, {"jetpack5"}, "BF16, which TensorRT"),
    # found by attacking: I/O of a type no line's parser converts was "ready" everywhere
    ("UINT16 input", lambda: _typed_input(TensorProto.UINT16), None, ALL, "UINT16, which TensorRT"),
    ("COMPLEX64 input", lambda: _typed_input(TensorProto.COMPLEX64), None, ALL, "COMPLEX64, which TensorRT"),
    ("FP8 input before 10", lambda: _typed_input(TensorProto.FLOAT8E4M3FN), None, {"jetpack5"}, "FP8, which TensorRT"),
    ("sequence input", _sequence_io, None, ALL, "no tensor type (a sequence, map or optional), which TensorRT"),
    ("FP32 weights offered as FP16", lambda: _lstm_model(), "fp16", STRONGLY_TYPED, "offered as FP16 but its "
                                                                                   "weights are FP32"),
    ("INT8 without Q/DQ", lambda: _lstm_model(), "int8-qdq", ALL, "holds no QuantizeLinear/DequantizeLinear"),
]


@pytest.mark.parametrize("make, precision, flagged, said", [r[1:] for r in RULES], ids=[r[0] for r in RULES])
def test_each_rule_flags_its_targets_and_no_other(make, precision: str | None, flagged: set[str], said: str) -> None:
    """Each fixture breaks one rule: every target whose parser has that rule names the node, the rule, the
    version and a fix; every other target finds nothing of it."""
    model = make()
    for name in ALL:
        found = [f for f in _check(model, name, precision) if f.error and said in f.rule]
        assert bool(found) == (name in flagged), (name, [str(f) for f in _check(model, name, precision)])
        assert all(f.target == name and f.fix and f.node for f in found)


@pytest.mark.parametrize("dtype, fix", [(TensorProto.FLOAT16, "quantize --fp16"),
                                        (TensorProto.INT64, "export again with attn-export export")])
def test_a_fill_jetpack5_cannot_parse_is_sent_to_the_command_that_wrote_it(dtype: int, fix: str) -> None:
    """An INT64 fill sits in an FP32 graph: remaking the FP16 graph (the FP16 fill's fix) would not touch it."""
    found = [f for f in _check(_fill_model(dtype), "jetpack5") if f.error and "ConstantOfShape" in f.rule]
    assert len(found) == 1 and fix in found[0].fix, [str(f) for f in found]


@pytest.mark.parametrize("opset, target, fix", [(99, "trt11", "export with --opset 21"),
                                                (6, "trt11", "export with --opset 17"),
                                                (18, "jetpack5", "export with --opset 17"),
                                                (21, "jetpack6", "export with --opset 20")])
def test_an_opset_fix_names_one_export_writes(opset: int, target: str, fix: str) -> None:
    """Found by attacking: "export with --opset 24" (TensorRT 11's parser takes it), "--opset 9" and "7", which
    export refuses (it writes 17 to 21): the fix is the nearest opset both the parser and export take."""
    from attn_export.runtime.trt.readiness import EXPORT_OPSETS, TARGETS

    found = [f for f in _check(_lstm_model(opset=opset), target) if f.node == "graph"]
    assert [f.fix for f in found] == [fix]
    for t in TARGETS.values():  # what the fix relies on: every parser takes some opset export writes
        assert max(t.parser.opset[0], EXPORT_OPSETS[0]) <= min(t.parser.opset[1], EXPORT_OPSETS[1]), t.name


def test_a_jetpack_6_0_user_is_told_where_its_tensorrt_is(variants_dir: Path) -> None:
    """Found by attacking: JetPack 6.0 (TensorRT 8.6) was named under jetpack5 only; its user picks jetpack6."""
    result = cli("inspect", str(variants_dir / "model.onnx"), "--target", "jetpack6")
    assert result.returncode == 0, result.stderr
    assert "note: JetPack 6.0 ships TensorRT 8.6, not 10.3: check --target jetpack5 for it" in result.stdout + \
        result.stderr


def test_the_rules_say_what_each_importer_does_with_layout() -> None:
    """8.5's and 10.1's importers never read layout (found by review in 10.1-GA's source), so a layout=1 LSTM
    parses and computes something else: the finding says so; 11's operators.md refuses it (its importer unread)."""
    for target in ("jetpack5", "jetpack6", "trt10"):
        assert "importer never reads layout" in _check(_lstm_model(layout=1), target)[0].rule, target
    assert "operators.md: layout must be 0" in _check(_lstm_model(layout=1), "trt11")[0].rule


def test_an_unknown_target_is_one_line(variants_dir: Path) -> None:
    result = cli("inspect", str(variants_dir), "--target", "jetson-nano")
    assert result.returncode == 2 and result.stderr.strip() == (
        "Error: --target 'jetson-nano' is unknown; expected one of jetpack5, jetpack6, jetpack7, trt10, trt11")


def test_a_file_not_current_is_not_ready_and_named(variants_dir: Path, tmp_path: Path) -> None:
    """inspect DIR --target listed a truncated model.onnx nowhere and a retrained directory's stale graphs as
    "ready", exit 0: a file the store will not vouch for is now named with its reason, and the exit is 1."""
    directory = tmp_path / "d"
    shutil.copytree(variants_dir, directory)
    (directory / "model.fp16.onnx").write_bytes((directory / "model.fp16.onnx").read_bytes()[:1000])
    result = cli("inspect", str(directory), "--target", "jetpack6")
    assert result.returncode == 1, result.stderr
    assert "not current: model.fp16.onnx was changed after it was recorded" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("Error: ")
    (directory / "model.fp16.onnx").unlink()  # recorded, then deleted: it was named nowhere, exit 0
    result = cli("inspect", str(directory), "--target", "jetpack6")
    assert result.returncode == 1, result.stderr
    assert f"not current: {directory / 'model.fp16.onnx'} is missing; run attn-export quantize" in result.stderr


def test_a_file_that_is_not_onnx_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "junk.onnx").write_bytes(b"junk")
    result = cli("inspect", str(tmp_path / "junk.onnx"), "--target", "jetpack5")
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and "is not a readable ONNX model" in lines[0], result.stderr


def _foreign(path: Path, nodes: list, inputs: list, domain: str | None = None) -> Path:
    """A hand-built model (not attn-export's): relu-like nodes over float inputs, opset 17."""
    graph = helper.make_graph(nodes, "foreign", [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 4])
                                                 for n in inputs],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    opsets = [helper.make_opsetid("", 17)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    path.write_bytes(helper.make_model(graph, opset_imports=opsets).SerializeToString())
    return path


def test_a_foreign_graph_is_judged_as_what_it_is(tmp_path: Path) -> None:
    """Found by attacking: inspect --target called a graph onnx.checker refuses (a node reading a tensor no one
    makes) "ready", described any file as "model.onnx ... lengths as int32" (a Relu graph with no lengths
    input) and plain inspect said nothing of the checker. Now the checker's refusal is a PROBLEM on every
    target (exit 1) and an INVALID line; a valid foreign graph is described by its own name and inputs."""
    broken = _foreign(tmp_path / "broken.onnx", [helper.make_node("Relu", ["zzz"], ["y"])], ["x"])
    result = cli("inspect", str(broken), "--target", "jetpack5", "--target", "trt11")
    assert result.returncode == 1 and result.stdout.count("onnx.checker refuses it") == 2, result.stdout
    assert "not ready: broken.onnx on jetpack5, broken.onnx on trt11" in result.stderr, result.stderr
    plain = cli("inspect", str(broken))
    assert plain.returncode == 0 and "INVALID: onnx.checker refuses it:" in plain.stdout, plain.stdout
    relu = _foreign(tmp_path / "relu.onnx", [helper.make_node("Relu", ["x"], ["y"])], ["x"])
    result = cli("inspect", str(relu), "--target", "jetpack5", "--json")
    assert result.returncode == 0, result.stderr
    how = json.loads(result.stdout)["jetpack5"]["files"]["relu.onnx"]["how"]
    assert how.startswith("relu.onnx, ") and "lengths" not in how and "model.onnx" not in how, how
    assert "INVALID" not in cli("inspect", str(relu)).stdout
    custom = _foreign(tmp_path / "custom.onnx", [helper.make_node("Foo", ["x"], ["y"], domain="my.domain")], ["x"],
                      domain="my.domain")
    said = cli("inspect", str(custom)).stdout
    assert "DIVERGES: operators outside the standard ONNX domain" in said
    assert "only a runtime that implements that domain reads them" in said


def _nested(depth: int, megabytes: int) -> bytes:
    """A model whose main graph holds an If ``depth`` levels deep, a constant of ``megabytes`` at the bottom."""
    big = helper.make_tensor("w", TensorProto.FLOAT, [megabytes << 18], np.zeros(megabytes << 18, np.float32).tobytes(),
                             raw=True)
    inner = helper.make_graph([helper.make_node("Constant", [], ["y"], value=big)], "bottom", [],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    small = helper.make_graph([helper.make_node("Constant", [], ["y"], value=helper.make_tensor(
        "s", TensorProto.FLOAT, [1], [0.0]))], "small", [], [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    for level in range(depth):
        node = helper.make_node("If", ["c"], ["y"], then_branch=inner, else_branch=small)
        inputs = [helper.make_tensor_value_info("c", TensorProto.BOOL, [])] if level == depth - 1 else []
        inner = helper.make_graph([node], f"level{level}", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT,
                                                                                                   None)])
    return helper.make_model(inner, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def _read_measured(data: bytes) -> tuple:
    """The graph ``parse_graph`` reads from ``data``, and the most memory Python held meanwhile (tracemalloc)."""
    import tracemalloc

    tracemalloc.start()
    try:
        graph = parse_graph(data, "measured.onnx")
        return graph, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_the_reader_holds_a_nested_graph_in_about_its_own_size() -> None:
    """Found by attacking: each level of a nested subgraph copied its whole body, so a 20 MB constant under 30
    levels took 2 GB to read (the device reads graphs this way, on 8 GB Jetsons). Read as views of the file's
    bytes, Python allocates a fraction of the file, whatever the depth."""
    data = _nested(30, 4)
    graph, peak = _read_measured(data)
    assert sum(n.op_type == "If" for n in graph.nodes) == 30 and graph.opsets == {"": 17}
    assert peak < len(data) / 4, (peak, len(data))  # copied at each level it was ~90x the file


def test_the_reader_skips_what_protobuf_skips_and_bounds_what_it_decodes(tmp_path: Path) -> None:
    """Found by attacking: an unknown field written as a (proto2) group, which onnx and ONNX Runtime skip, made
    the file unreadable; a dynamic axis written as -1 (other exporters) read as 2^64 - 1; 30 M packed dims or
    int64 values took 30-40 s and up to 3.7 GB as Python ints. A graph's own functions are known by name."""
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [-1, -1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [-1, -1, 4])],
                              [helper.make_tensor("many", TensorProto.INT64, [1_000_000], np.arange(1_000_000)),
                               helper.make_tensor("axes", TensorProto.INT64, [2], [0, -1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    group = bytes([(100 << 3 | 3) & 0x7F | 0x80, (100 << 3 | 3) >> 7]) + b"\x08\x01" + bytes(
        [(100 << 3 | 4) & 0x7F | 0x80, (100 << 3 | 4) >> 7])  # field 100 as a group holding a varint, then its end
    read = parse_graph(model.SerializeToString() + group, "grouped.onnx")
    assert [n.op_type for n in read.nodes] == ["Relu"] and read.inputs[0].dims == (-1, -1, 4)
    assert read.constants["many"].values is None and read.constants["axes"].values == (0, -1)
    with pytest.raises(BadInput, match="the end of group 100, which no field started"):
        parse_graph(model.SerializeToString() + group[-2:], "cut.onnx")
    # a million packed dims, and 4 MB of raw_data under dims [1] (found by review: 50 M Python ints)
    dims = helper.make_tensor("dims", TensorProto.INT8, [1], [0])
    dims.dims.extend([1] * 1_000_000)
    lying = TensorProto(name="lying", data_type=TensorProto.INT8, dims=[1], raw_data=bytes(4 << 20))
    graph.initializer.extend([dims, lying])
    data = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
    read, peak = _read_measured(data)
    assert read.constants["dims"].values is None and read.constants["lying"].values is None
    assert peak < len(data), (peak, len(data))  # decoded whole: ~40 MB of ints for the dims, 4 M for the bytes
    fixed32 = helper.make_tensor("f", TensorProto.INT64, [1], [1])
    broken = onnx.load_from_string(model.SerializeToString())
    broken.graph.initializer.append(fixed32)
    tail = bytes([1 << 3 | 5]) + b"\x00\x00\x80\x3f"  # a 32-bit field where dims (field 1) belong
    raw = broken.SerializeToString()
    tensor = fixed32.SerializeToString()
    with pytest.raises(BadInput, match="not a readable ONNX model"):  # was an AssertionError's traceback
        parse_graph(raw.replace(tensor, tensor + tail).replace(
            bytes([5 << 3 | 2, len(tensor)]) + tensor, bytes([5 << 3 | 2, len(tensor) + len(tail)]) + tensor),
            "fixed32.onnx")


def test_external_data_short_activations_and_the_models_own_functions_on_each_target(tmp_path: Path) -> None:
    """Found by attacking: a file keeping its weights in an external file (absolute, `../`, missing) was "ready"
    on every target; an LSTM listing 2 activations was ready where the importer reads a third (at(2)), and
    one whose directions' activation alphas differ, which the importer refuses; a node
    calling one of the model's own functions was unknown to every line, where 10.1's importer inlines it."""
    weight = helper.make_tensor("w", TensorProto.FLOAT, [4], [1.0, 2.0, 3.0, 4.0])
    weight.data_location = TensorProto.EXTERNAL
    entry = weight.external_data.add()
    entry.key, entry.value = "location", "../../etc/passwd"
    weight.ClearField("float_data")
    outside = helper.make_model(helper.make_graph(
        [helper.make_node("Add", ["x", "w"], ["y"])], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])], [weight]),
        opset_imports=[helper.make_opsetid("", 17)])
    for target in TARGETS:
        assert any("kept in the external file '../../etc/passwd'" in f.rule for f in _check(outside, target)), target
    path = tmp_path / "outside.onnx"
    path.write_bytes(outside.SerializeToString())
    result = cli("inspect", str(path), "--target", "jetpack5", "--target", "trt11")
    assert result.returncode == 1 and result.stdout.count("kept in the external file") == 2, result.stdout

    lstm = helper.make_node("LSTM", ["x", "W", "R"], ["y"], hidden_size=2, activations=["Sigmoid", "Tanh"])
    short = helper.make_model(helper.make_graph(
        [lstm], "g", [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("x", "W", "R")],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]), opset_imports=[helper.make_opsetid("", 17)])
    for target in TARGETS:
        assert any("2 activations, where the importer reads 3" in f.rule for f in _check(short, target)), target
    lstm = helper.make_node("LSTM", ["x", "W", "R"], ["y"], hidden_size=2, direction="bidirectional",
                            activations=["Sigmoid", "Tanh", "Tanh", "Sigmoid", "Tanh"])  # it reads at(5) too
    five = helper.make_model(helper.make_graph(
        [lstm], "g", [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("x", "W", "R")],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]), opset_imports=[helper.make_opsetid("", 17)])
    assert any("5 activations, where the importer reads 6" in f.rule for f in _check(five, "trt10"))
    for alphas, flagged in (([0.1, 0.9], True), ([0.1, 0.1], False)):  # each direction's LeakyRelu alphas
        lstm = helper.make_node("LSTM", ["x", "W", "R"], ["y"], hidden_size=2, direction="bidirectional",
                                activations=["LeakyRelu"] * 6, activation_alpha=alphas)
        alpha = helper.make_model(helper.make_graph(
            [lstm], "g", [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("x", "W", "R")],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]), opset_imports=[helper.make_opsetid("", 17)])
        said = [f.rule for f in _check(alpha, "jetpack5")]
        assert any("activation_alpha differs between the two directions" in r for r in said) == flagged, said

    body = onnx.helper.make_function("custom", "MyAdd", ["a", "b"], ["c"], [helper.make_node("Add", ["a", "b"], ["c"])],
                                     [helper.make_opsetid("", 17)])
    calls = helper.make_model(helper.make_graph(
        [helper.make_node("MyAdd", ["x", "x"], ["y"], domain="custom")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])]),
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("custom", 1)], functions=[body])
    unknown = {t for t in TARGETS if any("unknown to TensorRT's parser" in f.rule for f in _check(calls, t))}
    assert unknown == {"jetpack5"}, unknown
    # a function named as an operator TensorRT imports itself is imported as that operator: still checked
    named = helper.make_function("custom", "LSTM", ["a"], ["c"], [helper.make_node("Relu", ["a"], ["c"])],
                                 [helper.make_opsetid("", 17)])
    layout = helper.make_node("LSTM", ["x", "W", "R"], ["y"], hidden_size=2, layout=1)
    hidden = helper.make_model(helper.make_graph(
        [layout], "g", [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("x", "W", "R")],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]),
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("custom", 1)], functions=[named])
    assert any("layout = 1: this line's importer never reads layout" in f.rule for f in _check(hidden, "trt10"))


def test_inspect_of_a_matmul_without_inputs_is_no_traceback(tmp_path: Path) -> None:
    """Found by attacking: plain inspect of a MatMul with no inputs raised an IndexError from the portability
    scan, before onnx's checker said what is wrong."""
    path = _foreign(tmp_path / "m.onnx", [helper.make_node("MatMul", [], ["y"])], ["x"])
    result = cli("inspect", str(path))
    assert "Traceback" not in result.stderr and "INVALID: onnx.checker refuses it" in result.stdout, result


def test_plain_inspect_counts_parameters_without_wrapping(tmp_path: Path) -> None:
    """Found by attacking: a claimed [2^32, 2^32] initializer counted 0 parameters (int64 wrapped) and one of
    dims [-2, 2] counted -4; the INVALID line says what is wrong with them, the count no longer lies."""
    from attn_export.inspect import describe_onnx

    model = onnx.load(str(_foreign(tmp_path / "p.onnx", [helper.make_node("Relu", ["x"], ["y"])], ["x"])))
    for name, dims in (("huge", [2 ** 32, 2 ** 32]), ("negative", [-2, 2])):
        tensor = model.graph.initializer.add()
        tensor.name, tensor.data_type = name, TensorProto.FLOAT
        tensor.dims.extend(dims)
    path = tmp_path / "claims.onnx"
    path.write_bytes(model.SerializeToString())
    assert describe_onnx(path)["parameters"] == 2 ** 64


def _edited(source: Path, path: Path, edit) -> Path:
    proto = onnx.load(str(source))
    edit(proto.graph)
    onnx.save(proto, str(path))
    return path


def _freeze(axis: int, name: str = "x"):
    def edit(graph: onnx.GraphProto) -> None:
        dim = next(v for v in graph.input if v.name == name).type.tensor_type.shape.dim[axis]
        dim.ClearField("dim_param")
        dim.dim_value = 1
    return edit


def _rename_x(graph: onnx.GraphProto) -> None:
    graph.input[0].name = "input"
    for node in graph.node:
        node.input[:] = ["input" if i == "x" else i for i in node.input]


def _int32_lengths(graph: onnx.GraphProto) -> None:
    next(v for v in graph.input if v.name == "lengths").type.tensor_type.elem_type = TensorProto.INT32


@pytest.mark.parametrize("edit, said", [(_freeze(0), "graph input x: float32 [1, seq, "),
                                        (_freeze(1), "graph input x: float32 [batch, 1, "),
                                        (_freeze(0, "lengths"), "graph input lengths: int64 [1]"),
                                        (_int32_lengths, "graph input lengths: int32 [batch]")],
                         ids=["batch frozen", "seq frozen", "lengths frozen", "lengths int32"])
def test_an_attn_export_graph_off_its_input_contract_is_not_ready(variants_dir: Path, tmp_path: Path, edit,
                                                                  said: str) -> None:
    """Found by attacking: a standalone model.onnx with its batch axis frozen was "ready" on every target,
    though build's profile (x [batch, seq, features], lengths [batch], both axes dynamic) cannot be set on it.
    Inside a directory the manifest's lineage catches such an edit; a file alone is checked by its inputs."""
    path = _edited(variants_dir / "model.onnx", tmp_path / "edited.onnx", edit)
    result = cli("inspect", str(path), "--target", "jetpack5", "--target", "trt11", "--json")
    assert result.returncode == 1, result.stderr
    for target in ("jetpack5", "trt11"):
        row = json.loads(result.stdout)[target]["files"]["edited.onnx"]
        assert not row["ready"] and any(f["error"] and f"{f['node']}: {f['rule']}".startswith(said)
                                        for f in row["findings"]), row


def test_a_graph_of_other_inputs_is_judged_for_the_parser_alone_and_says_so(variants_dir: Path,
                                                                            tmp_path: Path) -> None:
    path = _edited(variants_dir / "model.onnx", tmp_path / "renamed.onnx", _rename_x)
    result = cli("inspect", str(path), "--target", "jetpack6", "--json")
    assert result.returncode == 0, result.stderr
    row = json.loads(result.stdout)["jetpack6"]["files"]["renamed.onnx"]
    assert row["ready"] and [f["rule"] for f in row["findings"]] == [
        "inputs ['input', 'lengths'], not attn-export's x and lengths: judged for TensorRT's parser alone"]


@pytest.mark.parametrize("name, how", [("model.fp16.onnx", "builder flag FP16"),
                                       ("model.int8-qdq.onnx", "builder flag INT8"),
                                       ("model.int8.onnx", "never a TensorRT input")])
def test_a_renamed_file_is_judged_by_the_precision_its_graph_carries(variants_dir: Path, tmp_path: Path,
                                                                     name: str, how: str) -> None:
    """Found by attacking: a standalone file's precision was read off its name, so a renamed FP16 graph was
    planned as an FP32 build on JetPack 5 (no FP16 flag) and a renamed dynamic INT8 graph was NOT READY
    rather than withdrawn."""
    shutil.copyfile(variants_dir / name, tmp_path / "renamed.onnx")
    result = cli("inspect", str(tmp_path / "renamed.onnx"), "--target", "jetpack5", "--json")
    assert result.returncode == 0, result.stderr
    assert how in json.loads(result.stdout)["jetpack5"]["files"]["renamed.onnx"]["how"]


def _next_pow2(n: int) -> int:
    return 1 << (n - 1).bit_length()


@pytest.mark.parametrize("jetpack", ["jetpack5", "jetpack6", "jetpack7"])
def test_the_jetson_bundle_names_its_target_and_writes_that_lines_build_commands(
        variants_dir: Path, tmp_path: Path, jetpack: str) -> None:
    """The README's build commands, read as text: the profile from the training lengths (opt = median, max =
    4 x longest rounded up to a power of two, batch 1..32), per TensorRT line the flags build() itself uses
    there (8.5: weakly typed, --fp16 / --int8; 10.x: --stronglyTyped, no precision flag), FP32 without
    TF32, and no command for the dynamic INT8 file, which says why."""
    made = cli("bundle", str(variants_dir), "--for", "jetson", "--target", jetpack, "--out",
               str(tmp_path / "b.tar.gz"), "--json")
    assert made.returncode == 0, made.stderr
    result = json.loads(made.stdout)
    assert result["target"] == jetpack
    assert any("model.int8.onnx builds no engine" in n and "never a TensorRT input" in n for n in result["notes"])
    with tarfile.open(tmp_path / "b.tar.gz") as tar:
        readme = tar.extractfile("README.md").read().decode()  # type: ignore[union-attr]
        listing = json.loads(tar.extractfile("bundle.json").read())  # type: ignore[union-attr]
    assert listing["target"] == jetpack and listing["tensorrt"] == TARGETS[jetpack].tensorrt
    assert f"This bundle was made for `{jetpack}`" in readme
    # static rules, said as such, with where they were read (found by attacking: "checked against the ONNX
    # parser of TensorRT 8.5.2", where no parser ran; jetpack7's rules are 10.1-GA's)
    flat = " ".join(readme.split())
    assert f"checked, statically, against what the ONNX parser for TensorRT {TARGETS[jetpack].tensorrt} documents; " \
           f"`info` shows the findings. The rules were read from: {TARGETS[jetpack].parser.source}." in flat, flat[:1500]
    assert "No TensorRT, GPU or `trtexec` ran for those checks, and attn-export's own tests never ran the commands " \
           "below on a Jetson" in flat

    model = json.loads((variants_dir / "model.json").read_text())
    lengths, features = model["train_lengths"], model["input_size"]
    opt, longest = lengths["median"], _next_pow2(4 * lengths["max"])
    shapes = (f"--minShapes=x:1x1x{features},lengths:1 --optShapes=x:1x{opt}x{features},lengths:1 "
              f"--maxShapes=x:32x{longest}x{features},lengths:32")
    trtexec = [line.strip() for line in readme.splitlines() if "bin/trtexec " in line]
    builds = [line.strip() for line in readme.splitlines() if "attn_export.runtime build ." in line]
    assert len(trtexec) == len(builds) == 3, readme  # fp32, fp16, int8-qdq; never model.int8.onnx
    by_source = {line.split("--onnx=")[1].split()[0]: line for line in trtexec}
    assert set(by_source) == {"model.onnx", "model.fp16.onnx", "model.int8-qdq.onnx"}
    for line in trtexec:
        assert line.startswith("/usr/src/tensorrt/bin/trtexec --onnx=") and shapes in line, line
        assert "--memPoolSize=workspace:1024" in line
    # TF32 off on every line, as build clears it (found by review: an INT8 engine's LSTM, float, ran TF32)
    assert all("--noTF32" in line for line in trtexec), trtexec
    # found by review: on 8.5 --fp16 lets TensorRT run the FP16 graph's FP32 layers in FP16; build pins them,
    # trtexec cannot without naming each layer, and the README says so where that is the line's build
    unpinned = "`build` pins them to FP32; `trtexec` could only by naming each layer"
    assert (unpinned in " ".join(readme.split())) is (jetpack == "jetpack5"), readme
    if jetpack == "jetpack5":
        assert by_source["model.fp16.onnx"].endswith("--fp16 --noTF32 --buildOnly")
        assert by_source["model.int8-qdq.onnx"].endswith("--int8 --noTF32 --buildOnly")
        assert not any("--stronglyTyped" in line for line in trtexec)
    else:
        assert all("--stronglyTyped" in line and line.endswith("--skipInference") for line in trtexec)
        assert not any(flag in line for line in trtexec for flag in ("--fp16", "--int8", "--buildOnly"))
    profile = f"--target {jetpack} --max-batch 32 --min-seq 1 --opt-seq {opt} --max-seq {longest}"
    assert [b.split("build . ")[1] for b in builds] == [profile, f"--fp16 {profile}", f"--int8 {profile}"]


@pytest.mark.parametrize("stream, fp16", [(False, "model.fp16.onnx"), (True, "model.stream.fp16.onnx")])
def test_tensorrt_11_sends_an_fp16_engine_to_the_fp16_graph_of_the_same_kind(stream: bool, fp16: str) -> None:
    from attn_export.runtime.trt.readiness import builds

    precision, how = builds("fp32", TARGETS["trt11"], stream=stream)
    assert precision == "fp32" and how.endswith(f"an FP16 engine comes from {fp16}"), how


def test_trtexec_on_tensorrt_11_takes_no_precision_flag() -> None:
    """TensorRT 11's trtexec has no --fp16/--int8 and is strongly typed: the graph carries the precision."""
    from attn_export.runtime.trt.profile import Profile, Range
    from attn_export.runtime.trt.readiness import trtexec

    profile = Profile(Range(1, 4, 8), Range(2, 16, 64), 5)
    lines = {p: trtexec(p, TARGETS["trt11"], profile, 512) for p in ("fp32", "fp16", "int8-qdq", "int8-dynamic")}
    assert lines["int8-dynamic"] is None
    for p in ("fp32", "fp16", "int8-qdq"):
        line = lines[p]
        assert line is not None and line.startswith("trtexec ")
        assert "--minShapes=x:1x2x5,lengths:1 --optShapes=x:4x16x5,lengths:4 --maxShapes=x:8x64x5,lengths:8" in line
        assert not any(flag in line for flag in ("--fp16", "--int8", "--stronglyTyped", "--buildOnly"))
    assert all("--noTF32" in str(line) for p, line in lines.items() if p != "int8-dynamic")


def test_a_jetson_bundle_takes_jetpacks_only_and_a_cpu_bundle_no_target(variants_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "b.tar.gz"
    for args, said in ((("--for", "jetson", "--target", "trt11"), "--target trt11 is a TensorRT line for discrete "
                                                                  "GPUs; --for jetson takes one of jetpack5, jetpack6, "
                                                                  "jetpack7"),
                       (("--for", "cpu", "--target", "jetpack5"), "--target jetpack5 names a TensorRT line"),
                       (("--for", "jetson", "--target", "orin"), "--target 'orin' is unknown")):
        result = cli("bundle", str(variants_dir), "--out", str(out), *args)
        assert result.returncode == 2 and said in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and not out.exists()


def test_the_device_refuses_to_build_a_bundle_made_for_another_target(variants_dir: Path, tmp_path: Path) -> None:
    """The device's build, run from the unpacked bundle as its README says: --target of another line is one
    line, exit 2, before TensorRT is looked for; the bundle's own target goes on to look for it (none here:
    exit 3). Its info shows the readiness of every file for the bundle's target, read in place."""
    from test_device_package import device_cli

    from attn_export.runtime.bundle import pack, unpack

    archive = pack(variants_dir, tmp_path / "b.tar.gz", "jetson", "jetpack5").path
    device = unpack(archive, tmp_path / "device")
    listing = sorted(p.name for p in device.iterdir())
    other = device_cli(device, "build", ".", "--fp16", "--target", "jetpack6")
    assert other.returncode == 2 and other.stderr.strip() == (
        "Error: this bundle was made for jetpack5 (TensorRT 8.5.2), not --target jetpack6: its build commands and "
        "checks are jetpack5's; bundle again on the host with attn-export bundle --for jetson --target jetpack6")
    discrete = device_cli(device, "build", ".", "--fp16", "--target", "trt10")  # no Jetson bundle fits: say which
    assert discrete.returncode == 2 and discrete.stderr.strip().endswith(
        "trt10 is a discrete GPU's line: bundle with attn-export bundle --for cpu (its graphs build on any TensorRT), "
        "or build on that machine with attn-export build"), discrete.stderr
    own = device_cli(device, "build", ".", "--fp16", "--target", "jetpack5")
    assert own.returncode == 3, own.stderr
    if platform.machine() in ("aarch64", "arm64"):
        assert own.stderr.startswith("Error: cannot build a TensorRT engine here:"), own.stderr
    else:  # no Jetson: where to build, not how to install TensorRT on this machine
        assert own.stderr.strip() == (
            f"Error: this bundle was made for jetpack5 ({TARGETS['jetpack5'].device}), whose engines are built on "
            f"the Jetson itself, and this machine is {platform.machine()}: copy the bundle to the Jetson and run this "
            "command there (TensorRT comes with JetPack)"), own.stderr
    assert sorted(p.name for p in device.iterdir()) == listing
    info = device_cli(device, "info", str(archive), "--json")
    assert info.returncode == 0, info.stderr
    report = json.loads(info.stdout)
    assert report["made_for"] == "jetpack5" and set(report["tensorrt"]) == {"jetpack5"}
    rows = report["tensorrt"]["jetpack5"]["files"]
    assert rows["model.fp16.onnx"]["ready"] and rows["model.int8.onnx"]["builds"] is None


@pytest.mark.parametrize("made_for, version, machine, refused", [
    ("jetpack5", "8.5.2.2", "aarch64", None),
    ("jetpack5", "10.3.0.30", "aarch64", "which is jetpack6 or jetpack7's: bundle again on the host with "
                                         "attn-export bundle --for jetson --target jetpack6"),
    ("jetpack6", "10.3.0.30", "aarch64", None),
    ("jetpack6", "10.3.0.30", "x86_64", "which is trt10's: trt10 is a discrete GPU's line: bundle with attn-export "
                                        "bundle --for cpu (its graphs build on any TensorRT)"),
    ("jetpack6", "11.4.1", "aarch64", "which is jetpack7's"),  # TensorRT 11.4.1+ runs on JetPack 7.2.2+
    ("trt11", "12.0", "x86_64", "which is no target attn-export knows"),
])
def test_build_checks_the_installed_tensorrt_against_the_bundles_target(
        made_for: str, version: str, machine: str, refused: str | None) -> None:
    """What build checks once TensorRT is imported (it cannot be imported here: the decision alone)."""
    from attn_export.errors import NotAvailable
    from attn_export.runtime.trt.readiness import refuse_other

    if refused is None:
        refuse_other(made_for, None, version, machine)
        return
    with pytest.raises(NotAvailable, match=re.escape(refused)):
        refuse_other(made_for, None, version, machine)


def _lint(path: Path, tmp_path: Path) -> tuple[subprocess.CompletedProcess[str], dict]:
    out = tmp_path / f"{path.name}.lint.json"
    result = subprocess.run([str(Path(sys.executable).parent / "polygraphy"), "check", "lint", str(path), "-o", str(out)],
                            capture_output=True, text=True, timeout=300)
    return result, json.loads(out.read_text()) if out.exists() else {}


def test_polygraphy_lint_passes_every_artefact(variants_dir: Path, tmp_path: Path) -> None:
    """Polygraphy's ``check lint`` (ONNX's checker and ONNX Runtime, no TensorRT) reads every graph this tool
    writes without a failing node or an error; and it is no rubber stamp: a graph with a dangling input fails."""
    for path in sorted(variants_dir.glob("*.onnx")):
        result, report = _lint(path, tmp_path)
        assert result.returncode == 0, (path.name, result.stdout[-2000:], result.stderr[-2000:])
        assert report["summary"]["failing"] == [] and report["summary"]["passing"], path.name
        assert not [e for e in report["lint_entries"] if e.get("level") in ("exception", "error")], path.name
    broken = helper.make_model(helper.make_graph(
        [helper.make_node("Add", ["x", "missing"], ["y"], name="add")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])]), opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(broken, tmp_path / "broken.onnx")
    result, _ = _lint(tmp_path / "broken.onnx", tmp_path)
    assert result.returncode != 0


@pytest.mark.slow
@pytest.mark.parametrize("recipe", ["quickstart", "japanese-vowels", "basic-motions"])
def test_every_artefact_of_each_recipe_is_ready_on_every_target(recipe: str, tmp_path: Path) -> None:
    """Each recipe's own architecture (bidirectional additive with the last-state query, a Conv1d front-end,
    the linear score) on its own data, trained one epoch (readiness is a property of the graph, not of the
    weights), every precision file made: ready on every target, the dynamic INT8 file withdrawn."""
    root = Path(__file__).resolve().parent.parent
    directory = tmp_path / recipe
    for args in (("train", str(directory), "--recipe", str(root / "recipes" / f"{recipe}.toml"), "--set",
                  "train.epochs=1", "--set", "train.min_test_accuracy=0"), ("export", str(directory)), ("quantize", str(directory), "--fp16", "--int8"),
                 ("quantize", str(directory), "--int8", "--method", "qdq", "--calib-samples", "16")):
        result = cli(*args)
        assert result.returncode == 0, result.stderr
    result = cli("inspect", str(directory), *[a for t in TARGETS for a in ("--target", t)], "--json")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    for name, t in json.loads(result.stdout).items():
        assert {f: row["ready"] for f, row in t["files"].items()} == {
            "model.onnx": True, "model.fp16.onnx": True, "model.int8.onnx": False, "model.int8-qdq.onnx": True}, name
