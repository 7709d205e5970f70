"""TensorRT readiness without TensorRT: every artefact checked statically against the onnx-tensorrt parser
rules of each target (``attn_export.trt_targets``). What this proves: the graphs meet the documented
rules of each line's operators.md; it does not prove that TensorRT builds them (no TensorRT here)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import cli
from onnx import TensorProto, helper

from attn_export.trt_targets import TARGETS, check



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
        assert "docs/operators.md" in t["source"]
    assert "no --fp16 flag" in report["trt11"]["files"]["model.onnx"]["how"]
    assert "with --fp16" in report["trt10"]["files"]["model.onnx"]["how"]


def test_jetpack5_reads_every_file_its_notes_say_what_it_casts(variants_dir: Path) -> None:
    """TensorRT 8.5's operators.md lists ConstantOfShape for FP32 only, and the FP16 graph filled a tensor with
    an FP16 ConstantOfShape (found by this check): the FP16 graph now fills in FP32 and casts. INT64 casts are
    notes (8.5 casts INT64 down to INT32), not problems."""
    result = cli("inspect", str(variants_dir), "--target", "jetpack5")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "model.fp16.onnx          ready" in result.stdout and "casts it down to INT32" in result.stdout
    fp16 = onnx.load(str(variants_dir / "model.fp16.onnx"))
    fills = [n for n in fp16.graph.node if n.op_type == "ConstantOfShape"]
    assert fills and all(a.t.data_type == TensorProto.FLOAT for n in fills for a in n.attribute if a.name == "value")
    found = check(_fill_model(TensorProto.FLOAT16), TARGETS["jetpack5"])
    assert any("FP16 ConstantOfShape; TensorRT 8.5.2's parser lists FP32 only" in f.rule for f in found if f.error)
    assert not [f for f in check(_fill_model(TensorProto.FLOAT16), TARGETS["jetpack6"]) if f.error]


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


@pytest.mark.parametrize("model, target, said", [
    (_lstm_model(layout=1), "jetpack5", "8.5's importer never reads layout"),
    (_lstm_model(layout=1), "trt10", "layout = 1 is unsupported (layout must be 0)"),
    (_lstm_model(input_forget=1), "trt11", "input_forget = 1 (coupled input and forget gates) is unsupported"),
    (_lstm_model(opset=18), "jetpack5", "opset 18, the parser of TensorRT 8.5.2 takes 7 to 17"),
    (_lstm_model(domain_op=True), "jetpack6", "ONNX Runtime's own operator (com.microsoft)"),
    (_lstm_model(direction="bidirectional", activations=["Sigmoid", "Tanh", "Tanh", "Sigmoid", "Relu", "Tanh"]),
     "jetpack6", "different activations in the two directions"),
])
def test_each_rule_names_the_node_the_version_and_the_fix(model: onnx.ModelProto, target: str, said: str) -> None:
    found = [f for f in check(model, TARGETS[target]) if f.error]
    assert any(said in f.rule for f in found), [str(f) for f in found]
    assert all(f.target == target and f.fix for f in found)


def test_axes_from_the_graph_and_asymmetric_quantisation_are_named() -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])
    axes = helper.make_tensor_value_info("axes", TensorProto.INT64, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    scale = helper.make_tensor("s", TensorProto.FLOAT, [], [0.1])
    zero = helper.make_tensor("z", TensorProto.INT8, [], [3])
    nodes = [helper.make_node("Unsqueeze", ["x", "axes"], ["u"], name="unsq"),
             helper.make_node("QuantizeLinear", ["u", "s", "z"], ["q"], name="quant"),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"], name="dequant")]
    model = helper.make_model(helper.make_graph(nodes, "g", [x, axes], [y], [scale, zero]),
                              opset_imports=[helper.make_opsetid("", 17)])
    rules = {f.node: f.rule for f in check(model, TARGETS["jetpack6"]) if f.error}
    assert "axes come from the graph at run time" in rules["unsq (Unsqueeze)"]
    assert "non-zero zero point" in rules["quant (QuantizeLinear)"]


def test_an_unknown_target_is_one_line(variants_dir: Path) -> None:
    result = cli("inspect", str(variants_dir), "--target", "jetson-nano")
    assert result.returncode == 2 and result.stderr.strip() == (
        "Error: --target 'jetson-nano' is unknown; expected one of jetpack5, jetpack6, jetpack7, trt10, trt11")


def test_a_file_that_is_not_onnx_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "junk.onnx").write_bytes(b"junk")
    result = cli("inspect", str(tmp_path / "junk.onnx"), "--target", "jetpack5")
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and "is not a readable ONNX model" in lines[0], result.stderr
