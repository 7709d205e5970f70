"""Precision variants: what each really quantised, that it runs with dynamic axes, true-FP16 numerics
through the reference evaluator, accuracy next to FP32, and the manifest records."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator
from onnxruntime.quantization import QuantType, quantize_dynamic

from attn_export.config import ModelConfig
from attn_export.runtime import store
from attn_export.errors import Untrusted, WorkFailed
from attn_export.portability import divergences
from attn_export.quantize import FP16_KEEP_FP32, _one_node_per_layer, quantize
from conftest import RECIPES, TINY, cli
from test_export import FEATURES, VARIANTS, make_dir


@pytest.fixture(scope="module")
def variants(tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    directory = tmp_path_factory.mktemp("quant") / "art"
    shutil.copytree(tiny_dir, directory)
    result = cli("quantize", str(directory), "--fp16", "--int8", "--json")
    assert result.returncode == 0, result.stderr
    result = cli("quantize", str(directory), "--int8", "--method", "qdq", "--calib-samples", "32", "--json")
    assert result.returncode == 0, result.stderr
    written = json.loads((directory / "quantize.json").read_text())
    # --json prints this run's rows as quantize.json holds them (found by attacking: a list, without sha256)
    assert json.loads(result.stdout) == {"int8-qdq": written["int8-qdq"]} and written["int8-qdq"]["sha256"]
    return directory, written


def _feeds(batch: int, seq: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"x": rng.standard_normal((batch, seq, 4)).astype(np.float32), "lengths": np.full(batch, seq, np.int64)}


@pytest.mark.parametrize("name", ["model.fp16.onnx", "model.int8.onnx", "model.int8-qdq.onnx"])
@pytest.mark.parametrize("batch, seq", [(1, 1), (8, 2048), (1, 2)])
def test_dynamic_axes_survive_every_variant(variants: tuple[Path, dict], name: str, batch: int, seq: int) -> None:
    directory, _ = variants
    session = ort.InferenceSession(str(directory / name), providers=["CPUExecutionProvider"])  # the defaults
    logits, attention = session.run(None, _feeds(batch, seq))
    assert logits.shape == (batch, 3) and attention.shape == (batch, seq)
    assert np.isfinite(logits).all() and logits.dtype == np.float32


def test_qdq_has_symmetric_q_dq_pairs_on_the_score_and_head(variants: tuple[Path, dict]) -> None:
    directory, report = variants
    proto = onnx.load(str(directory / "model.int8-qdq.onnx"))
    onnx.checker.check_model(proto, full_check=True)
    inits = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    qdq = [n for n in proto.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert len(qdq) >= 4
    assert all(not inits[n.input[2]].any() for n in qdq if len(n.input) > 2 and n.input[2] in inits)
    producer = {o: n for n in proto.graph.node for o in n.output}
    for node in proto.graph.node:  # both operands dequantised, but for the attention-weighted sum's weights:
        if node.op_type in ("MatMul", "Gemm"):  # quantised, every weight under 1/254 was 0 (found by attacking)
            float_operands = [producer[i] for i in node.input[:2] if producer[i].op_type != "DequantizeLinear"]
            assert not float_operands or (node.op_type == "MatMul" and [list(n.input[:1]) for n in float_operands]
                                          == [["attention"]]), node.name
    assert report["int8-qdq"]["not_quantized"] == {"LSTM": 1, "MatMul": 1}
    entry = json.loads((directory / "manifest.json").read_text())["artifacts"]["model.int8-qdq.onnx"]
    assert entry["calibration"]["samples"] == 32 and len(entry["calibration"]["sha256"]) == 64
    assert entry["parent"] == "model.onnx"
    assert entry["parent_sha256"] == store.sha256_file(directory / "model.onnx")


def test_fp16_census_counts_float_nodes_kept_in_fp32_not_shape_arithmetic(tmp_path: Path) -> None:
    """"not_quantized" lists the blocked operators that run on float32 data; a Sub or Where of the graph's
    int64 shape arithmetic (the additive query's last valid step) is no FP32 computation left behind."""
    directory = make_dir(tmp_path, VARIANTS["additive-last"])
    for args in (("export", str(directory)), ("quantize", str(directory), "--fp16")):
        result = cli(*args)
        assert result.returncode == 0, result.stderr
    report = json.loads((directory / "quantize.json").read_text())
    proto = onnx.shape_inference.infer_shapes(onnx.load(str(directory / "model.fp16.onnx")))
    types = {v.name: v.type.tensor_type.elem_type for v in [*proto.graph.value_info, *proto.graph.input]}
    types.update({t.name: t.data_type for t in proto.graph.initializer})
    on_float = Counter(n.op_type for n in proto.graph.node if n.op_type in FP16_KEEP_FP32
                       and any(types.get(i) == onnx.TensorProto.FLOAT for i in n.input))
    on_int = Counter(n.op_type for n in proto.graph.node if n.op_type in FP16_KEEP_FP32
                     and types.get(n.input[-1]) == onnx.TensorProto.INT64)
    assert on_int, "the graph has integer Sub/Where nodes, which this test is about"
    assert report["fp16"]["not_quantized"] == dict(on_float)
    assert sum(report["fp16"]["not_quantized"].values()) < sum((on_float + on_int).values())


def test_dynamic_int8_quantises_the_lstm(variants: tuple[Path, dict]) -> None:
    directory, report = variants
    ops = {n.op_type for n in onnx.load(str(directory / "model.int8.onnx")).graph.node}
    assert "DynamicQuantizeLSTM" in ops and "LSTM" not in ops
    assert report["int8-dynamic"]["quantized"]["DynamicQuantizeLSTM"] == 1


@pytest.fixture(scope="module", params=["bidirectional-2layer", "conv-bidirectional"])
def bidirectional(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bidirectional model (two layers; one layer behind a Conv1d) exported and quantised to dynamic INT8."""
    directory = make_dir(tmp_path_factory.mktemp(request.param), VARIANTS[request.param])
    for args in (("export", str(directory)), ("quantize", str(directory), "--int8")):
        result = cli(*args)
        assert result.returncode == 0, result.stderr
    return directory


@pytest.fixture(scope="module")
def one_per_layer(bidirectional: Path) -> tuple[ort.InferenceSession, ort.InferenceSession]:
    """ONNX Runtime sessions of the portable FP32 graph and of the same graph with one LSTM per layer."""
    proto = onnx.load(str(bidirectional / "model.onnx"))
    _one_node_per_layer(proto, bidirectional)
    onnx.checker.check_model(proto, full_check=True)
    return (ort.InferenceSession(str(bidirectional / "model.onnx"), providers=["CPUExecutionProvider"]),
            ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"]))


@settings(max_examples=25, deadline=None)
@given(lengths=st.lists(st.integers(1, 40), min_size=1, max_size=6), seed=st.integers(0, 2**16))
def test_one_lstm_per_layer_computes_what_the_portable_graph_does(
        one_per_layer: tuple[ort.InferenceSession, ort.InferenceSession], lengths: list[int], seed: int) -> None:
    """The rewrite under the dynamic INT8 graph: each layer's two forward-only LSTMs (the second on reversed
    sequences) as one bidirectional LSTM with sequence_lens, on padded batches with garbage in the padding."""
    portable, fused = one_per_layer
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 3, (len(lengths), max(lengths), FEATURES)).astype(np.float32)
    x[np.arange(max(lengths))[None, :] >= np.array(lengths)[:, None]] = 1e3
    feeds = {"x": x, "lengths": np.array(lengths, np.int64)}
    for want, got in zip(portable.run(None, feeds), fused.run(None, feeds)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_dynamic_int8_runs_a_bidirectional_layer_as_one_lstm(bidirectional: Path, tmp_path: Path) -> None:
    """One DynamicQuantizeLSTM per layer, taking lengths, named as the construct it is; and row by row (as
    predict runs it) the numbers of the portable graph quantised the same way, each direction its own node."""
    proto = onnx.load(str(bidirectional / "model.int8.onnx"))
    lstms = [n for n in proto.graph.node if n.op_type == "DynamicQuantizeLSTM"]
    config = json.loads((bidirectional / "model.json").read_text())["recipe"]["model"]
    assert len(lstms) == config["num_layers"] and not [n for n in proto.graph.node if n.op_type == "LSTM"]
    assert all(helper.get_attribute_value(next(a for a in n.attribute if a.name == "direction")) == b"bidirectional"
               and n.input[4] for n in lstms)
    assert [d.construct for d in divergences(proto)] == ["LSTM with a runtime sequence_lens",
                                                         "operators outside the standard ONNX domain"]
    unfused = tmp_path / "unfused.int8.onnx"
    quantize_dynamic(onnx.load(str(bidirectional / "model.onnx")), str(unfused), weight_type=QuantType.QInt8)
    assert [n.op_type for n in onnx.load(str(unfused)).graph.node].count("DynamicQuantizeLSTM") == 2 * len(lstms)
    shipped, reference = (ort.InferenceSession(str(p), providers=["CPUExecutionProvider"])
                          for p in (bidirectional / "model.int8.onnx", unfused))
    rng = np.random.default_rng(0)
    for seq in (1, 2, 7, 40, 300):
        feeds = {"x": rng.normal(0, 3, (1, seq, FEATURES)).astype(np.float32), "lengths": np.array([seq], np.int64)}
        for want, got in zip(reference.run(None, feeds), shipped.run(None, feeds)):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_the_dynamic_graphs_u8_weights_are_given_as_s8_where_vnni_is_and_amx_is_not(bidirectional: Path) -> None:
    """Where VNNI is and AMX is not, ONNX Runtime's u8 x s8 kernels are VNNI's and its u8 x u8 ones are not
    (0.78-0.80x the time at 1 x 128 on a Zen 4, measured): attn-export's sessions get the dynamic graph's u8
    LSTM and MatMulInteger weights and zero points as s8, each byte XOR 0x80, every one of them or none; weight
    minus zero point, the integer each product takes, is unchanged. A ConvInteger's stay u8 (ONNX Runtime
    1.19.2 has no s8 ConvInteger: found by review, every run of a Conv1d model's graph failed on it). None where
    a pair has no zero point, and no traceback for dims whose product wraps (review). ``ort_session`` of the
    shipped graph, as this CPU opens it, gives a plain session's outputs bit for bit over many lengths (on one
    with VNNI and without AMX, through the s8 weights). What it does not prove: the speed, nor the choice on
    other CPUs."""
    from attn_export.runtime.backends.onnxrt import (INTEGER_WEIGHTS, SIGNED_OPERATORS, ort_session, signed_weights,
                                                     signs_weights)
    from attn_export.runtime.onnxfile import parse_graph
    from attn_export.runtime.timing import cpu_name

    vnni, amx = ["avx2", "avx512f", "avx512_vnni"], ["avx512_vnni", "amx_tile", "amx_int8"]
    assert signs_weights("int8-dynamic", "x86_64", vnni) and signs_weights("int8-dynamic", "AMD64", ["avx_vnni"])
    assert not any(signs_weights(p, m, f) for p, m, f in (("int8-dynamic", "x86_64", amx), ("int8-dynamic", "x86_64",
                   ["avx2"]), ("int8-dynamic", "x86_64", []), ("int8-dynamic", "aarch64", vnni),
                   ("int8-qdq", "x86_64", vnni), ("fp32", "x86_64", vnni)))
    path = bidirectional / "model.int8.onnx"
    data = path.read_bytes()
    proto = onnx.load_from_string(data)
    stored = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}

    def inputs(operators: tuple) -> set:
        return {n.input[i] for n in proto.graph.node if n.op_type in operators
                for pair in INTEGER_WEIGHTS[n.op_type] for i in pair}

    names = inputs(SIGNED_OPERATORS)
    signed = signed_weights(parse_graph(data, path))
    assert set(signed) == names and len(names) >= 5  # two layers' W, R and zero points, and the head's MatMulInteger
    assert ("conv" in bidirectional.name) == bool(inputs(("ConvInteger",))), bidirectional  # and its stay u8
    for name, value in signed.items():
        assert stored[name].dtype == np.uint8 and value.dtype == np.int8 and value.shape == stored[name].shape
        np.testing.assert_array_equal(value.astype(np.int16), stored[name].astype(np.int16) - 128)

    def edited(change: Callable[[onnx.ModelProto], None]) -> dict:
        copy = onnx.load_from_string(data)
        change(copy)
        return signed_weights(parse_graph(copy.SerializeToString(), "edited"))

    one = sorted(names)[0]

    def initializer(name: str, value: onnx.TensorProto) -> Callable[[onnx.ModelProto], None]:
        return lambda m: next(t for t in m.graph.initializer if t.name == name).CopyFrom(value)

    s8 = numpy_helper.from_array((stored[one].astype(np.int16) - 128).astype(np.int8), one)
    assert set(edited(initializer(one, s8))) == names - {one}  # one s8 already: used as it is, the rest signed
    assert edited(initializer(one, numpy_helper.from_array(stored[one].astype(np.int32), one))) == {}
    wraps = onnx.TensorProto(name=one, data_type=onnx.TensorProto.UINT8, dims=[2**32, 2**32], raw_data=b"")
    assert edited(initializer(one, wraps)) == {}
    head = next(n for n in proto.graph.node if n.op_type == "MatMulInteger")

    def no_zero_point(m: onnx.ModelProto) -> None:
        node = next(n for n in m.graph.node if n.name == head.name)
        del node.input[3:]

    assert edited(no_zero_point) == {}  # its weight alone shifted would move every product by 128 x sum(a)

    ours = ort_session(store.Artifact.candidate(path, None, "int8-dynamic"))
    assert (len(ours._attn_export_initializers) == len(names)) == signs_weights("int8-dynamic"), cpu_name()
    plain = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    for seq in (1, 2, 3, 7, 16, 40, 128, 300):
        feeds = {"x": rng.normal(0, 3, (1, seq, FEATURES)).astype(np.float32), "lengths": np.array([seq], np.int64)}
        for want, got in zip(plain.run(None, feeds), ours.run(None, feeds)):
            np.testing.assert_array_equal(got, want)


def test_which_lstm_is_the_forward_pass_is_read_from_the_concat_not_the_node_order(bidirectional: Path) -> None:
    """Found by a helper: the rewrite took the first LSTM of each pair as the forward pass, so a valid
    reordering of the same graph (each reversed pass first) joined the weights the wrong way round, silently."""
    proto = onnx.load(str(bidirectional / "model.onnx"))
    known = {i.name for i in proto.graph.input} | {t.name for t in proto.graph.initializer} | {""}
    left, order = list(proto.graph.node), []
    while left:  # another topological order: always the last node that can run
        node = [n for n in left if set(n.input) <= known][-1]
        order.append(node)
        left.remove(node)
        known |= set(node.output)
    del proto.graph.node[:]
    proto.graph.node.extend(order)
    names = [n.name for n in proto.graph.node if n.op_type == "LSTM"]
    assert names != sorted(names, key=lambda n: (len(n), n))  # the reversed passes do come first now
    portable = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    _one_node_per_layer(proto, Path("unused"))
    fused = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {"x": np.random.default_rng(0).normal(0, 3, (3, 9, FEATURES)).astype(np.float32),
             "lengths": np.array([9, 4, 1], np.int64)}
    for want, got in zip(portable.run(None, feeds), fused.run(None, feeds)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_a_graph_whose_lstms_are_not_direction_pairs_is_refused(tmp_path: Path) -> None:
    """A causal model of two layers has two LSTMs, the second reading the first: not the two directions of one
    layer, so the rewrite refuses rather than join them."""
    directory = make_dir(tmp_path, ModelConfig(hidden_size=12, num_layers=2))
    assert cli("export", str(directory)).returncode == 0
    proto = onnx.load(str(directory / "model.onnx"))
    assert [n.op_type for n in proto.graph.node].count("LSTM") == 2
    with pytest.raises(WorkFailed, match="not the pairs of forward-only directions") as said:
        _one_node_per_layer(proto, directory)
    assert str(said.value).endswith(f"run attn-export export {directory} again"), said.value  # its own directory


def test_fp16_graph_computes_in_fp16_with_fp32_io(variants: tuple[Path, dict]) -> None:
    directory, report = variants
    proto = onnx.load(str(directory / "model.fp16.onnx"))
    onnx.checker.check_model(proto, full_check=True)
    io_types = {v.name: v.type.tensor_type.elem_type for v in list(proto.graph.input) + list(proto.graph.output)}
    assert io_types == {"x": TensorProto.FLOAT, "lengths": TensorProto.INT64,
                        "logits": TensorProto.FLOAT, "attention": TensorProto.FLOAT}
    lstm_weights = [i for n in proto.graph.node if n.op_type == "LSTM" for i in n.input[1:3]]
    inits = {t.name: t.data_type for t in proto.graph.initializer}
    assert all(inits[w] == TensorProto.FLOAT16 for w in lstm_weights)
    assert "LSTM" in report["fp16"]["quantized"]
    assert any("ran" in note and "FP16" in note for note in report["fp16"]["notes"])


def test_fp16_true_numerics_agree_with_fp32(variants: tuple[Path, dict]) -> None:
    """The reference evaluator really computes in FP16; unpadded inputs only (it ignores sequence_lens)."""
    directory, _ = variants
    fp16 = ReferenceEvaluator(onnx.load(str(directory / "model.fp16.onnx")))
    fp32 = ort.InferenceSession(str(directory / "model.onnx"), providers=["CPUExecutionProvider"])
    for seed, (batch, seq) in enumerate([(1, 1), (4, 9), (2, 40)]):
        feeds = _feeds(batch, seq, seed)
        got, want = fp16.run(None, feeds), fp32.run(None, feeds)
        np.testing.assert_allclose(got[0], want[0], atol=2e-2, rtol=2e-2)
        np.testing.assert_allclose(got[1], want[1], atol=2e-2)


def test_fp16_stays_finite_on_long_sequences_and_padded_tails(variants: tuple[Path, dict]) -> None:
    directory, _ = variants
    session = ort.InferenceSession(str(directory / "model.fp16.onnx"), providers=["CPUExecutionProvider"])
    feeds = _feeds(2, 4096)
    feeds["lengths"] = np.array([4096, 2], np.int64)
    feeds["x"][1, 2:] = 1e3
    logits, attention = session.run(None, feeds)
    assert np.isfinite(logits).all() and np.isfinite(attention).all()
    assert (attention[1, 2:] == 0).all()


def test_every_variant_is_evaluated_next_to_fp32(variants: tuple[Path, dict]) -> None:
    _, report = variants
    for precision in ("fp16", "int8-dynamic", "int8-qdq"):
        r = report[precision]
        assert r["accuracy_fp32"] is not None and r["latency_ms"] > 0 and r["latency_fp32_ms"] > 0
        assert abs(r["accuracy"] - r["accuracy_fp32"]) <= 0.05, r
        assert r["argmax_agreement"] >= 0.9


def test_a_stale_onnx_is_refused(variants: tuple[Path, dict], tmp_path: Path) -> None:
    directory = tmp_path / "art"
    shutil.copytree(variants[0], directory)
    weights = directory / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    with pytest.raises(Untrusted, match="model.onnx is stale: model.safetensors was changed.*re-run .*attn-export export"):
        quantize(directory, ["int8-dynamic"])


def test_quantize_without_a_precision_is_a_usage_error(tmp_path: Path) -> None:
    result = cli("quantize", str(tmp_path))
    assert result.returncode == 2 and "--fp16" in result.stderr


@pytest.mark.slow
def test_japanese_vowels_variants_meet_the_accuracy_bars(tmp_path: Path) -> None:
    assert cli("train", str(tmp_path), "--recipe", str(RECIPES / "japanese-vowels.toml")).returncode == 0
    assert cli("export", str(tmp_path)).returncode == 0
    assert cli("quantize", str(tmp_path), "--fp16", "--int8").returncode == 0
    assert cli("quantize", str(tmp_path), "--int8", "--method", "qdq").returncode == 0
    report = json.loads((tmp_path / "quantize.json").read_text())
    assert abs(report["int8-dynamic"]["accuracy"] - report["int8-dynamic"]["accuracy_fp32"]) <= 0.01
    assert abs(report["int8-qdq"]["accuracy"] - report["int8-qdq"]["accuracy_fp32"]) <= 0.01
    assert report["fp16"]["argmax_agreement"] >= 0.995


@pytest.mark.slow  # 15-30 s: kept out of the default run's time
def test_an_opset_21_model_gets_a_qdq_graph_onnx_runtime_opens(tmp_path: Path) -> None:
    """Found by attacking: from an opset-21 export, ONNX Runtime could not open the Q/DQ graph its own quantiser
    made (its QDQ propagation: "output_dtype INT8 does not match y_zero_point type UINT8"), so quantize and the
    default ``run`` failed, exit 2, naming a temporary file. The Q/DQ graph is now made at opset 20."""
    directory = tmp_path / "d"
    model = ["--set", "model.bidirectional=true", "--set", "model.num_layers=2", "--set", 'model.attention="additive"',
             "--set", "train.epochs=1", "--set", "train.min_test_accuracy=0"]
    for args in (("train", str(directory), *TINY, *model), ("export", str(directory), "--opset", "21"),
                 ("quantize", str(directory), "--int8", "--method", "qdq")):
        result = cli(*args)
        assert result.returncode == 0, result.stderr
    path = directory / "model.int8-qdq.onnx"
    made = onnx.load(str(path))
    assert [o.version for o in made.opset_import if o.domain in ("", "ai.onnx")] == [20]
    assert {p.key: p.value for p in made.metadata_props}["opset"] == "20"  # what inspect shows beside it
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])  # a plain session, as users open it
    features = json.loads((directory / "model.json").read_text())["input_size"]
    x = np.random.default_rng(0).standard_normal((2, 7, features)).astype(np.float32)
    logits = session.run(["logits"], {"x": x, "lengths": np.array([7, 3], np.int64)})[0]
    assert np.isfinite(logits).all()
    method = store.read_manifest(directory)["artifacts"]["model.int8-qdq.onnx"]["method"]
    assert "made at opset 20 from opset 21" in method


def test_quantize_json_keeps_only_rows_of_files_still_current(variants: tuple[Path, dict], tmp_path: Path) -> None:
    """Found by attacking: after a retrain and a quantize of one precision, quantize.json still held the
    earlier model's rows for the others, beside the new one's, said nowhere. Each row records the sha256 of
    the file it measured; a row whose file is no longer those current bytes is dropped at the next write."""
    directory, report = variants
    manifest = json.loads((directory / "manifest.json").read_text())
    assert set(report) == {"fp16", "int8-dynamic", "int8-qdq"}
    for row in report.values():
        assert row["sha256"] == manifest["artifacts"][row["artifact"]]["sha256"]
    copy = tmp_path / "d"
    shutil.copytree(directory, copy)
    with open(copy / "model.int8.onnx", "ab") as f:  # changed behind the manifest: no longer what was measured
        f.write(b"\0")
    result = cli("quantize", str(copy), "--fp16")
    assert result.returncode == 0, result.stderr
    assert set(json.loads((copy / "quantize.json").read_text())) == {"fp16", "int8-qdq"}


@pytest.mark.parametrize("samples", [-5, 0, 1.5, 100001, True])
def test_the_api_refuses_a_calibration_size_the_command_line_refuses(variants: tuple[Path, dict],
                                                                     samples: object) -> None:
    """Found by attacking: quantize(calib_samples=-5) calibrated on all but 5 training sequences, and 0 on
    the recipe's number; the command line refused both."""
    from attn_export.errors import BadInput
    from attn_export.quantize import quantize

    directory, _ = variants
    with pytest.raises(BadInput, match=r"^calib_samples = .*; expected a whole number of sequences, 1 to 100,000"):
        quantize(directory, ["int8-qdq"], calib_samples=samples)  # type: ignore[arg-type]


def test_the_api_refuses_a_calibration_size_for_no_qdq_graph(variants: tuple[Path, dict]) -> None:
    """Found by attacking: quantize(d, ["fp16"], calib_samples=5) ignored it, where the command line refuses."""
    from attn_export.errors import BadInput
    from attn_export.quantize import quantize

    with pytest.raises(BadInput, match=r"^calib_samples = 5 is read by the Q/DQ graph's calibration only"):
        quantize(variants[0], ["fp16"], calib_samples=5)


def test_calibration_reads_the_training_file_alone_and_says_when_it_has_fewer(tmp_path: Path) -> None:
    """Found by attacking: with the model's test file changed, or gone, quantize --int8 --method qdq was
    refused (exit 2), naming the test data, or "the recipe's training data", though calibration draws on
    training sequences only; and --calib-samples past the training split was cut without a word."""
    rng = np.random.default_rng(0)

    def save(path: Path, n: int) -> None:
        x = rng.standard_normal((n, 6, 4)).astype(np.float32)
        np.savez(path, x=x, lengths=np.full(n, 6), y=np.array(["a", "b"] * (n // 2)))

    save(tmp_path / "train.npz", 40)
    save(tmp_path / "test.npz", 10)
    directory = tmp_path / "m"
    for args in (("train", str(directory), "--set", "data.name=files", "--set", f"data.train={tmp_path / 'train.npz'}",
                  "--set", f"data.test={tmp_path / 'test.npz'}", "--set", "model.hidden_size=4", "--set",
                  "train.epochs=1"), ("export", str(directory))):
        result = cli(*args)
        assert result.returncode == 0, result.stderr
    save(tmp_path / "test.npz", 12)  # the test file changed since training
    made = cli("quantize", str(directory), "--int8", "--method", "qdq", "--calib-samples", "1000")
    assert made.returncode == 0, made.stderr
    assert "calibrated on all 34 training-split sequences, fewer than the 1,000 asked for" in " ".join(made.stderr.split())
    (tmp_path / "test.npz").unlink()  # and gone
    again = cli("quantize", str(directory), "--int8", "--method", "qdq")
    assert again.returncode == 0, again.stderr


def test_the_fp16_fold_is_skipped_without_onnxscript(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fold of weights-only nodes (a learned query's projection) uses onnxscript, of the ``train`` extra: a
    host without it converts the graph as it is (found by review: quantize --fp16 had needed it)."""
    import sys

    from onnx import TensorProto, helper, numpy_helper

    from attn_export.quantize import _fold_weights_only

    w = numpy_helper.from_array(np.ones((2, 2), np.float32), "w")
    q = numpy_helper.from_array(np.ones((1, 2), np.float32), "q")
    graph = helper.make_graph([helper.make_node("MatMul", ["q", "w"], ["p"]), helper.make_node("Add", ["x", "p"], ["y"])],
                              "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])], [w, q])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    folded = _fold_weights_only(proto)
    assert [n.op_type for n in folded.graph.node] == ["Add"] and not folded.graph.value_info
    monkeypatch.setitem(sys.modules, "onnxscript", None)
    assert [n.op_type for n in _fold_weights_only(proto).graph.node] == ["MatMul", "Add"]


def _bf16(values: np.ndarray) -> np.ndarray:
    """``values`` (float16) rounded through bfloat16's 8 mantissa bits, back in float16."""
    bits = values.astype(np.float32).view(np.uint32)
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000).view(np.float32)
    return rounded.astype(np.float16)


@pytest.mark.parametrize("change", ["bf16", "x1.01"])
def test_an_fp16_converter_that_changes_one_weight_is_refused(tiny_dir: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch, change: str) -> None:
    """Found by attacking: an FP16 graph whose LSTM input matrix was rounded to bf16 passed quantize's and
    verify's numeric checks (0.45 of its budget). quantize checks that each FP16 weight is the FP32 graph's
    rounded to the nearest FP16, and writes nothing when one is not (the real converter, wrapped)."""
    import importlib

    q = importlib.import_module("attn_export.quantize")  # the module: attn_export.quantize is the function
    directory = tmp_path / "d"
    shutil.copytree(tiny_dir, directory)
    made = q._make_fp16

    def one_weight_changed(source, target):  # type: ignore[no-untyped-def]
        made(source, target)
        proto = onnx.load(str(target))
        lstm = next(n for n in proto.graph.node if n.op_type == "LSTM")
        weight = next(t for t in proto.graph.initializer if t.name == lstm.input[1])
        values = numpy_helper.to_array(weight)
        changed = _bf16(values) if change == "bf16" else (values.astype(np.float32) * 1.01).astype(np.float16)
        assert not np.array_equal(changed, values)
        weight.CopyFrom(numpy_helper.from_array(changed, weight.name))
        onnx.save(proto, str(target))

    monkeypatch.setattr(q, "_make_fp16", one_weight_changed)
    with pytest.raises(WorkFailed, match=r"^model.fp16.onnx failed its checks: .* is not a tensor of model.onnx "
                                         r"rounded to the nearest FP16"):
        quantize(directory, ["fp16"])
    assert not (directory / "model.fp16.onnx").exists()
    monkeypatch.setattr(q, "_make_fp16", made)
    quantize(directory, ["fp16"])  # the converter as it is passes


def test_a_weight_below_fp16s_smallest_subnormal_is_rounded_as_the_converter_rounds_it(tiny_dir: Path,
                                                                                       tmp_path: Path) -> None:
    """Found by review: ONNX Runtime's converter raises a non-zero weight below FP16's smallest subnormal to
    it (not to 0), and the rounding check refused that correct graph; large models hold such weights."""
    from conftest import rerecord

    directory = tmp_path / "d"
    shutil.copytree(tiny_dir, directory)
    proto = onnx.load(str(directory / "model.onnx"))
    lstm = next(n for n in proto.graph.node if n.op_type == "LSTM")
    weight = next(t for t in proto.graph.initializer if t.name == lstm.input[2])
    values = numpy_helper.to_array(weight).copy()
    smallest = int(np.abs(values).argmin())  # the weight that matters least, made smaller than FP16 can hold
    values.flat[smallest] = 1e-8
    weight.CopyFrom(numpy_helper.from_array(values, weight.name))
    onnx.save(proto, str(directory / "model.onnx"))
    rerecord(directory, "model.onnx")  # as export would have written it
    quantize(directory, ["fp16"])
    made = numpy_helper.to_array(next(t for t in onnx.load(str(directory / "model.fp16.onnx")).graph.initializer
                                      if t.name == weight.name))
    assert made.flat[smallest] > 0  # the converter's smallest subnormal, accepted



def test_an_interrupt_after_one_variant_leaves_quantize_json_describing_the_files_there(
        model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Found by attacking: quantize.json was written once, at the end, so a Ctrl-C after the first variant
    left that file new and its row the earlier file's. Each variant's row is written when it is recorded."""
    import importlib

    q = importlib.import_module("attn_export.quantize")  # the module: the package's name for it is the function

    quantize(model_dir, ["fp16"])
    before = json.loads((model_dir / "quantize.json").read_text())["fp16"]["sha256"]
    make_fp16 = q._make_fp16

    def other_bytes(source: object, target: Path) -> None:  # the same graph with one more metadata entry
        make_fp16(source, target)
        proto = onnx.load(str(target))
        helper.set_model_props(proto, {**{p.key: p.value for p in proto.metadata_props}, "test": "other bytes"})
        onnx.save(proto, str(target))

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(q, "_make_fp16", other_bytes)
    monkeypatch.setattr(q, "_make_int8_dynamic", interrupted)
    with pytest.raises(KeyboardInterrupt):
        quantize(model_dir, ["fp16", "int8-dynamic"])
    rows = json.loads((model_dir / "quantize.json").read_text())
    made = store.Store(model_dir).entry("model.fp16.onnx")["sha256"]
    assert made != before and rows["fp16"]["sha256"] == made, (before, made, rows["fp16"]["sha256"])
    assert "int8-dynamic" not in rows and not (model_dir / "model.int8.onnx").exists()
