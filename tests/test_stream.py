"""Streaming: ``model.stream.onnx`` fed chunk by chunk equals the whole-sequence model on every prefix, on
every runtime that reads it (ONNX Runtime, OpenVINO, tract, onnx's reference evaluator), from an all-zero
state; padding and empty chunks change nothing; the device's ``Predictor.stream`` and ``predict --stream``
on both command lines, and what cannot stream is one line saying why."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from conftest import TINY, cli, mark_verified, rerecord, wrong_decisions_where
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import numpy_helper

from attn_export.backends import REGISTRY
from attn_export.errors import BadInput, WorkFailed
from attn_export.runtime import Predictor
from attn_export.runtime import store
from attn_export.quantize import _cell_state_only
from attn_export.runtime.streaming import SCHEDULES, STATE, not_streamable, replay, schedule, state_name, zero_state

RUNTIMES = ("ort-cpu", "openvino-cpu", "tract-cpu", "onnx-ref")
VARIANTS = {
    "linear": [],
    "additive-learned-2layer": ["--set", "model.attention=additive", "--set", "model.query=learned",
                                "--set", "model.num_layers=2"],
}
# a command's behaviour, the same for both variants: the second is in the slow run only (the stream's arithmetic
# is tested on both in the default run)
SECOND_VARIANT_SLOW = pytest.mark.parametrize(
    "streamed", ["linear", pytest.param("additive-learned-2layer", marks=pytest.mark.slow)], indirect=True)


@pytest.fixture(scope="module", params=list(VARIANTS))
def streamed(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, tiny_dir: Path) -> Path:
    """A trained tiny causal model of the variant with its stream graphs (FP32 and FP16), through the CLI (the
    linear one trained as the session's ``tiny_dir`` is: copied)."""
    directory = tmp_path_factory.mktemp(request.param)
    made = [("train", str(directory), *TINY, *VARIANTS[request.param])]
    if not VARIANTS[request.param]:
        shutil.copytree(tiny_dir, directory, dirs_exist_ok=True)
        made = []
    for args in (*made, ("export", str(directory), "--stream"),
                 ("quantize", str(directory), "--fp16")):  # model.fp16.onnx and model.stream.fp16.onnx
        result = cli(*args)
        assert result.returncode == 0, result.stderr
    return directory


def _open(directory: Path, runtime: str, name: str):  # type: ignore[no-untyped-def]
    s = store.Store(directory)
    return REGISTRY[runtime](s.open(name, need="current"), threads=1)


def _prefix(whole, x: np.ndarray, seen: np.ndarray, head: str) -> np.ndarray:  # type: ignore[no-untyped-def]
    top = max(int(seen.max()), 1)
    return whole.run_feeds({"x": np.ascontiguousarray(x[:, :top]), "lengths": np.maximum(seen, 1)})[head]


def _rule(directory: Path) -> tuple[float, float]:
    info = store.Store(directory).info
    return info.verify.fp32_atol, info.verify.fp32_rtol


def _sequences(directory: Path, lengths: list[int], seed: int) -> np.ndarray:
    info = store.Store(directory).info
    rng = np.random.default_rng(seed)
    return (np.asarray(info.mean) + np.asarray(info.std) * rng.standard_normal(
        (len(lengths), max(lengths), info.input_size))).astype(np.float32)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_every_schedule_equals_the_whole_model_on_every_prefix_on_every_runtime(streamed: Path, runtime: str) -> None:
    """Chunk 1, a prime, uneven chunks with an empty one, one chunk longer than the sequence; rows ending at
    different chunks and then receiving no new steps; padding full of garbage: after every chunk, each row's
    answer is model.onnx's on that row's prefix (same runtime) within the FP32 rule."""
    atol, rtol = _rule(streamed)
    lengths = np.array([23, 11, 1], np.int64)
    x = _sequences(streamed, list(lengths), seed=1)
    with _open(streamed, runtime, store.STREAM_ONNX) as stream, _open(streamed, runtime, store.ONNX_FP32) as whole:
        head = stream.spec.head_output
        for name in SCHEDULES:
            updates = replay(stream.run_feeds, stream.spec, x, lengths, schedule(name, 23))
            assert (updates[-1].seen == lengths).all()
            for update in updates:
                began = update.seen > 0
                got, want = update.outputs[head][began], _prefix(whole, x, update.seen, head)[began]
                assert np.all(np.abs(got - want) <= atol + rtol * np.abs(want)), (name, update.seen, got - want)


def test_the_fp16_streams_running_sums_hold_past_2048_steps_in_true_fp16(streamed: Path) -> None:
    """Found by attacking the stream: model.stream.fp16.onnx computed its step count and running sums in
    FP16, so in a runtime that computes FP16 as FP16 (tract) the count stopped at 2048 and the answer drifted
    (0.27 off in the logits after 4,048 steps; ONNX Runtime's CPU, computing them in FP32, hid it). 2,049
    steps in one chunk, then 500 of one step (FP16 has no odd integer past 2048, and a term of about 1 is
    lost on a sum of 500): the count is exact and the sum and the answer stay with the FP32 stream's."""
    info = store.Store(streamed).info
    sizes = [2049] + [1] * 500
    x = _sequences(streamed, [sum(sizes)], seed=3)
    lengths = np.array([sum(sizes)], np.int64)
    with _open(streamed, "tract-cpu", store.STREAM_FP16) as fp16, _open(streamed, "ort-cpu", store.STREAM_ONNX) as fp32:
        head = fp16.spec.head_output
        got = replay(fp16.run_feeds, fp16.spec, x, lengths, sizes)[-1].outputs
        want = replay(fp32.run_feeds, fp32.spec, x, lengths, sizes)[-1].outputs
    assert got[state_name("steps", "out")][0, 0] == sum(sizes)
    total, ref = got[state_name("sum", "out")][0, 0], want[state_name("sum", "out")][0, 0]
    assert abs(total / ref - 1) < 0.01, (total, ref)
    atol, rtol = 10 * info.verify.fp16_atol, 10 * info.verify.fp16_rtol
    assert np.all(np.abs(got[head] - want[head]) <= atol + rtol * np.abs(want[head])), got[head] - want[head]


def test_every_fp16_graph_opens_silently_in_a_plain_session(streamed: Path) -> None:
    """Found by attacking: a learned query's FP16 graph computed ``query_proj(query)``, weights alone, at run
    time in FP16, which ONNX Runtime cannot fold on the CPU: a plain ``InferenceSession(path)`` printed two
    warnings. Quantize folds what depends on weights alone in FP32 first; no node is left whose inputs are
    all initializers (found by review: folding had added casts of the FP32 normalisation constants to FP32)."""
    for name in ("model.fp16.onnx", store.STREAM_FP16):
        proto = onnx.load(streamed / name)
        constant = {t.name for t in proto.graph.initializer}
        assert not [n.name for n in proto.graph.node if n.input and all(i in constant for i in n.input if i)], name
        opened = subprocess.run([sys.executable, "-c", f"import onnxruntime\nonnxruntime.InferenceSession({str(streamed / name)!r})"],
                                capture_output=True, text=True, timeout=300)
        assert opened.returncode == 0 and opened.stderr == "", (name, opened.stderr)


@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_chunking_of_any_rows_equals_the_prefixes(streamed: Path, data: st.DataObject) -> None:
    """A property over chunkings (sizes 0-9, an empty chunk allowed) and row lengths (1-30), on ONNX
    Runtime: the stream's answer after every chunk is model.onnx's on each row's prefix."""
    atol, rtol = _rule(streamed)
    lengths = np.array(data.draw(st.lists(st.integers(1, 30), min_size=1, max_size=4)), np.int64)
    sizes = data.draw(st.lists(st.integers(0, 9), min_size=1, max_size=12))
    while sum(sizes) < lengths.max():
        sizes.append(9)
    x = _sequences(streamed, list(lengths), seed=len(sizes))
    with _open(streamed, "ort-cpu", store.STREAM_ONNX) as stream, _open(streamed, "ort-cpu", store.ONNX_FP32) as whole:
        head = stream.spec.head_output
        for update in replay(stream.run_feeds, stream.spec, x, lengths, sizes):
            began = update.seen > 0
            got, want = update.outputs[head][began], _prefix(whole, x, update.seen, head)[began]
            assert np.all(np.abs(got - want) <= atol + rtol * np.abs(want)), (sizes, update.seen)


@settings(max_examples=10, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_the_prefixes_verify_compares_a_stream_with_are_each_rows_own(streamed: Path, data: st.DataObject) -> None:
    """verify runs the whole-sequence graph on many rows' prefixes at once (``_prefix_answers``): each answer
    is that row's prefix run alone, keyed by (row, length), only for rows begun and not complete; on the
    interpreter no run exceeds its cell limit, whose runs it packs to fill."""
    from attn_export.runtime.compare import SweepCase
    from attn_export.runtime.streaming import Update
    from attn_export.runtime.verify import _prefix_answers

    lengths = np.array(data.draw(st.lists(st.integers(1, 300), min_size=1, max_size=5)), np.int64)
    x = _sequences(streamed, list(lengths), seed=int(lengths.sum()))
    updates = [Update({}, np.minimum(lengths, data.draw(st.integers(0, 310)))) for _ in range(data.draw(
        st.integers(1, 40)))]
    wanted = {(b, int(t)) for u in updates for b, t in enumerate(u.seen) if 0 < t < lengths[b]}
    for runtime in ("onnx-ref", "ort-cpu"):
        with _open(streamed, runtime, store.ONNX_FP32) as whole:
            head, shapes, run = whole.spec.head_output, [], whole.run_feeds
            whole.run_feeds = lambda feeds: shapes.append(feeds["x"].shape[:2]) or run(feeds)  # type: ignore
            answers = _prefix_answers(whole, SweepCase(x, lengths, True), updates, head)
            assert set(answers) == wanted
            assert all(whole.accepts(b, t) is None for b, t in shapes), shapes
            for (b, t), got in answers.items():
                alone = np.asarray(run({"x": x[b:b + 1, :t], "lengths": np.array([t])})[head][0], np.float64)
                assert np.allclose(got, alone, rtol=1e-5, atol=1e-6), (runtime, b, t, got - alone)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_zeros_made_outside_the_tool_start_a_stream_and_empty_rows_keep_their_state(streamed: Path,
                                                                                     runtime: str) -> None:
    """The start state is all zeros: built here from the graph's own declared inputs (onnx, not
    attn-export), it gives model.onnx's answer on the first chunk. A row with no new steps keeps its state
    bit for bit, and the padding's values change no output at all."""
    proto = onnx.load(str(streamed / store.STREAM_ONNX))
    batch = 2
    zeros = {v.name: np.zeros([batch] + [d.dim_value for d in v.type.tensor_type.shape.dim[1:]], np.float32)
             for v in proto.graph.input if v.name.startswith("state_in_")}
    assert sorted(zeros) == sorted(state_name(n, "in") for n in STATE)
    outs = sorted(v.name for v in proto.graph.output if v.name.startswith("state_out_"))
    assert [n.replace("_out_", "_in_") for n in outs] == sorted(zeros)  # sorted orders agree, in and out
    x = _sequences(streamed, [6, 6], seed=2)
    atol, rtol = _rule(streamed)
    with _open(streamed, runtime, store.STREAM_ONNX) as stream, _open(streamed, runtime, store.ONNX_FP32) as whole:
        head = stream.spec.head_output
        lengths = np.array([6, 0], np.int64)
        first = stream.run_feeds({"x": x, "lengths": lengths, **zeros})
        want = _prefix(whole, x[:1], np.array([6]), head)
        assert np.all(np.abs(first[head][:1] - want) <= atol + rtol * np.abs(want))
        state = {n: first[n.replace("_in_", "_out_")] for n in zeros}
        garbage = x.copy()
        garbage[1] = 1e3
        again = stream.run_feeds({"x": garbage, "lengths": np.array([0, 0], np.int64), **state})
        cleaner = stream.run_feeds({"x": np.zeros_like(x), "lengths": np.array([0, 0], np.int64), **state})
        for name in zeros:
            out = name.replace("_in_", "_out_")
            assert np.array_equal(again[out], state[name]), name  # nothing new: the state is unchanged
            assert np.array_equal(again[out], cleaner[out])
        assert np.array_equal(again[head], cleaner[head])
    assert zero_state(stream.spec, batch).keys() == zeros.keys()


def test_predictor_stream_pushes_resets_and_matches_predict(streamed: Path) -> None:
    x = _sequences(streamed, [17, 17], seed=3)
    with Predictor.load(streamed, allow_unverified=True) as predictor:
        stream = predictor.stream(batch=2)
        for start in range(0, 17, 4):
            piece = x[:, start:start + 4]
            updates = stream.push(piece, lengths=[piece.shape[1], min(piece.shape[1], max(0, 9 - start))])
        whole = predictor.predict([x[0], x[1, :9]])
        assert stream.steps.tolist() == [17, 9]
        for got, want in zip(updates, whole):
            assert got.label == want.label and np.allclose(got.probabilities, want.probabilities, atol=1e-5)
        stream.reset(rows=[0])
        assert stream.steps.tolist() == [0, 9]
        one = predictor.stream()
        assert one.push(x[0, :5])[0].label == predictor.predict([x[0, :5]])[0].label
        # found by attacking: each stream opened a session of its own, kept until the predictor closed (1 MB a
        # stream); they share one, each with its own state
        assert one.backend is stream.backend and stream.steps.tolist() == [0, 9]
        with pytest.raises(Exception, match=r"lengths must lie in 0\.\.4"):
            stream.push(x[:, :4], lengths=[5, 0])
        with pytest.raises(BadInput, match=r"^lengths cannot be read as an array \(.*\); expected 2 integers in "
                                           r"0\.\.4$"):  # ragged: numpy's ValueError (found by attacking)
            stream.push(x[:, :4], lengths=[[1], [1, 2]])
        with pytest.raises(Exception, match="chunk has shape"):
            stream.push(x[:1, :4])
        steps = stream.steps.tolist()  # the README: an empty chunk is refused; a length 0 keeps a row's state
        with pytest.raises(BadInput, match=r"chunk has shape \[2, 0, \d+\]; expected \[2, steps >= 1, "):
            stream.push(x[:, :0])
        stream.push(x[:, :1], lengths=[0, 0])
        assert stream.steps.tolist() == steps
        # found by attacking the API: each was a TypeError/ValueError, a wrong row reset, or a wrapped number
        stream.reset(rows=np.int64(1))
        assert stream.steps.tolist() == [0, 0]
        stream.reset(rows=np.array(1))  # a 0-d array: a TypeError, found by review
        for rows in (True, [1.5], 1.0, "0"):  # 1.0 was a TypeError
            with pytest.raises(BadInput, match="expected a row number or a list of them"):
                stream.reset(rows=rows)
        with pytest.raises(BadInput, match="got 1..9223372036854775808"):
            stream.push(x[:, :4], lengths=np.array([2 ** 63, 1], np.uint64))
        with pytest.raises(BadInput, match="chunk is not real numbers"):
            stream.push([[["a"] * x.shape[2]] * 3] * 2)
        with pytest.raises(BadInput, match=r"chunk is not real numbers \(dtype complex64\)"):  # was cut to its
            stream.push(x[:, :4].astype(np.complex64) * 1j)  # real part: zeros, and an answer
        for batch in (True, 2.0, 0):  # the first two were TypeErrors
            with pytest.raises(BadInput, match="expected a whole number of rows, 1 to 4096"):
                predictor.stream(batch=batch)  # type: ignore[arg-type]
        assert len(predictor._streams) == 1  # a refused stream opened nothing
    with pytest.raises(BadInput, match="this stream's Predictor is closed"):
        stream.push(x[:, :4])
    with pytest.raises(BadInput, match="this Predictor is closed"):
        predictor.stream()


@pytest.mark.parametrize("streamed", ["linear"], indirect=True)
def test_an_int8_stream_of_several_rows_gives_each_row_its_own_answer(streamed: Path, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """model.stream.int8.onnx takes one quantisation scale over the rows it is fed, like model.int8.onnx, so a
    stream of several rows runs each row alone (``stream_run``), in ``push`` and in verify: before, a glitch
    of 1e4 in one row moved another row's answer (a JapaneseVowels stream: another class after 5 steps). The
    real quantize, verify and ONNX Runtime, every stream run recorded."""
    from attn_export.runtime.backends.base import Backend
    from attn_export.runtime.verify import verify

    directory = tmp_path / "d"
    shutil.copytree(streamed, directory)
    assert cli("quantize", str(directory), "--int8").returncode == 0
    x = _sequences(directory, [12, 12, 12], seed=8)
    glitched = x.copy()
    glitched[1, 3, 0] = 1e4
    with Predictor.load(directory, precision="int8-dynamic", allow_unverified=True) as int8:
        alone, several = int8.stream(), int8.stream(batch=3)
        for start in range(0, 12, 5):
            want = alone.push(x[0, start:start + 5])[0]
            piece = glitched[:, start:start + 5]
            got = several.push(piece, lengths=[piece.shape[1], piece.shape[1], min(piece.shape[1],
                                                                                   max(0, 7 - start))])
            assert np.array_equal(got[0].probabilities, want.probabilities), start
        assert several.steps.tolist() == [12, 12, 7]
    from attn_export.runtime.bundle import pack

    with tarfile.open(pack(directory, tmp_path / "cpu.tar.gz", "cpu").path) as tar:  # how to run it by hand
        readme = " ".join(tar.extractfile("README.md").read().decode().split())  # type: ignore[union-attr]
    # said once for both INT8 graphs, and no word of OpenVINO's bidirectional batches: this model is causal
    # (found by attacking: two near-identical paragraphs, each on "a bidirectional model's")
    assert (f"`model.int8.onnx` and `{store.STREAM_FILES['int8-dynamic']}` run one sequence at a time" in readme
            and readme.count("one sequence per run") == 1 and "OpenVINO" not in readme.split("one sequence per")[1])
    runs: list[tuple[str, int]] = []
    run_feeds = Backend.run_feeds

    def recorded(self: Backend, feeds: dict) -> dict:
        runs.append((self.artifact.name, feeds["x"].shape[0]))
        return run_feeds(self, feeds)

    monkeypatch.setattr(Backend, "run_feeds", recorded)
    verify(directory, backends="ort-cpu")  # a tiny model's INT8 may fail its decision limits: not the point
    int8_rows = [rows for name, rows in runs if name == store.STREAM_FILES["int8-dynamic"]]
    assert int8_rows and set(int8_rows) == {1}
    assert any(rows > 1 for name, rows in runs if name == store.STREAM_ONNX)


def test_a_saved_state_resumes_a_stream_and_a_foreign_one_is_refused(streamed: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Found by attacking: ``stream.state = other`` took another model's state, or another batch's, to ONNX
    Runtime's own error (exit 1), a list to an AttributeError, and negative steps silently. A state saved
    from a stream resumes it exactly; anything else is one line, BadInput."""
    from attn_export.errors import BadInput

    x = _sequences(streamed, [30], seed=8)
    with Predictor.load(streamed, allow_unverified=True) as predictor:
        first, second = predictor.stream(), predictor.stream()
        first.push(x[:, :12])
        second.state = {k: v.copy() for k, v in first.state.items()}  # saved, then restored elsewhere
        a, b = first.push(x[:, 12:]), second.push(x[:, 12:])
        assert a[0].label == b[0].label and np.array_equal(a[0].probabilities, b[0].probabilities)
        assert second.steps.tolist() == [30]
        wide = predictor.stream(batch=2)
        bad = {k: v.copy() for k, v in first.state.items()}
        bad["state_in_steps"][:] = -3
        for state, said in ((wide.state, "expected float32 [1, "), ([1, 2], "expected a mapping of"),
                            ({"state_in_h": first.state["state_in_h"]}, "expected a mapping of"),
                            (bad, "state steps must be whole numbers >= 0")):
            with pytest.raises(BadInput, match=re.escape(said)):
                second.state = state
        assert second.steps.tolist() == [30]  # a refused state changes nothing
        with pytest.raises(ValueError, match="read-only"):  # a write into the state it gives skipped every check
            second.state["state_in_steps"][:] = -5
        # past float32's exact count (4.7 hours at 1 kHz) the stream says so, once (found by attacking: nothing)
        from attn_export.runtime.streaming import STEPS_EXACT

        near = {k: v.copy() for k, v in second.state.items()}
        near["state_in_steps"][:] = STEPS_EXACT - 1
        second.state = near
        for _ in range(3):
            second.push(x[:, :1])
        assert second.steps.tolist() == [STEPS_EXACT]
        # predict --stream takes the stream's notes after its pushes, which add this one (found by review)
        from attn_export.runtime import streaming
        from attn_export.runtime.cli import stream_document

        monkeypatch.setattr(streaming, "STEPS_EXACT", 5)
        document = stream_document(predictor, ["s"], [x[0, :12]], 4)
        assert any("a row has seen 5 steps" in n for n in document["notes"]), document["notes"]
        assert [n for n in second.notes if "16,777,216 steps" in n] == [
            "a row has seen 16,777,216 steps: its float32 step count is no longer exact, and the attention's running "
            "sums lose the precision to take in more steps as they grow; reset the row (a new window) for an exact "
            "stream"]


def test_a_long_chunk_is_fed_in_pieces_with_the_same_answer(streamed: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The graph's triangular product is [chunk, chunk] (a chunk of 40,000 steps asked ONNX Runtime for
    6.4 GB): push feeds it at most PIECE steps at a time; rows that end inside the chunk keep their state
    in the pieces after, and the answer is the whole-sequence model's."""
    from attn_export.runtime import streaming

    x = _sequences(streamed, [300, 300], seed=5)
    with Predictor.load(streamed, allow_unverified=True) as predictor:
        stream = predictor.stream(batch=2)
        widths: list[tuple[int, ...]] = []
        run = stream.backend.run_feeds
        monkeypatch.setattr(stream.backend, "run_feeds", lambda feeds: widths.append(feeds["x"].shape) or run(feeds))
        got = stream.push(x, lengths=[300, 140])
        assert widths == [(2, streaming.PIECE, x.shape[2])] * 3  # the last one padded: one shape for an engine
        assert stream.steps.tolist() == [300, 140]
        for update, want in zip(got, predictor.predict([x[0], x[1, :140]])):
            assert update.label == want.label and np.allclose(update.probabilities, want.probabilities, atol=1e-5)
        widths.clear()
        stream.reset()
        stream.push(x, lengths=[5, 0])  # no piece past the longest row
        assert widths == [(2, streaming.PIECE, x.shape[2])] and stream.steps.tolist() == [5, 0]
        before = {k: v.copy() for k, v in stream.state.items()}
        calls = iter([run, None])  # found by review: a push that failed in its second piece had kept the first

        def fails_second(feeds):  # type: ignore[no-untyped-def]
            call = next(calls)
            if call is None:
                raise WorkFailed("the runtime failed")
            return call(feeds)

        monkeypatch.setattr(stream.backend, "run_feeds", fails_second)
        with pytest.raises(WorkFailed, match="the runtime failed"):
            stream.push(x)
        assert stream.steps.tolist() == [5, 0]
        assert all(np.array_equal(before[k], v) for k, v in stream.state.items())


def test_predict_stream_of_one_long_chunk_fits_in_memory(streamed: Path, tmp_path: Path) -> None:
    """Found by a user: the device's predict --stream 40000 on a 40,000-step sequence failed under 3 GB of
    address space with ONNX Runtime's own log line and exit 1; fed in pieces, it answers as predict does."""
    import resource

    steps = 40_000
    x = _sequences(streamed, [steps], seed=6)
    np.savez(tmp_path / "long.npz", x=x, lengths=np.array([steps]))
    limit = 3 * 2 ** 30

    def run(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "attn_export.runtime", "predict", str(streamed),
                               str(tmp_path / "long.npz"), "--allow-unverified", "--json", *extra],
                              capture_output=True, text=True, timeout=300,
                              preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit)))

    streamed_run, whole = run("--stream", str(steps)), run()
    assert streamed_run.returncode == 0, streamed_run.stderr
    assert whole.returncode == 0, whole.stderr
    assert streamed_run.stderr.count("onnxruntime") == 0
    (update,) = json.loads(streamed_run.stdout)["updates"]
    (want,) = json.loads(whole.stdout)["predictions"]
    assert (update["steps"], update["label"]) == (steps, want["label"])
    assert abs(update["probability"] - want["probability"]) < 1e-4


@SECOND_VARIANT_SLOW
def test_onnx_runtime_running_out_of_memory_is_exit_3_not_a_failed_run(streamed: Path) -> None:
    """The same graph fed the 40,000-step chunk whole, straight through the backend (no pieces), under 3 GB:
    ONNX Runtime's allocation failure is memory (exit 3, NotAvailable), in one line; its own log is silent."""
    code = f"""
import resource, sys, numpy as np
limit = 3 * 2 ** 30
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
from attn_export.errors import NotAvailable
from attn_export.runtime.backends.onnxrt import OrtCpuBackend
from attn_export.runtime.store import Store
from attn_export.runtime.streaming import zero_state
with OrtCpuBackend(Store({str(streamed)!r}).open("model.stream.onnx", need="current"), threads=1) as b:
    x = np.zeros((1, 40000, b.spec.features), np.float32)
    try:
        b.run_feeds({{"x": x, "lengths": np.array([40000]), **zero_state(b.spec, 1)}})
    except NotAvailable as e:
        print(e)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("this process ran out of memory running model.stream.onnx on x 1x40000x")
    assert "in ort-cpu (" in result.stdout and "Failed to allocate memory" in result.stdout
    assert result.stderr == ""  # ONNX Runtime's own coloured error line is not printed


def test_an_int8_stream_wrong_only_on_a_first_chunk_of_one_step_fails(streamed: Path, tmp_path: Path) -> None:
    """Found by attacking: an INT8 stream was judged at chunk 7 alone, so one wrong only when its first chunk is
    one step passed. It is replayed under every schedule, and a decision moved by more than the file's own error
    where the test split judges it fails."""
    directory = tmp_path / "d"
    shutil.copytree(streamed, directory)
    assert cli("quantize", str(directory), "--int8").returncode == 0
    name = store.STREAM_FILES["int8-dynamic"]
    make = onnx.helper.make_node
    wrong_decisions_where(directory / name, [  # a first chunk of one step (chunk 7's first is 7 wide)
        make("Shape", ["x"], ["bug.x"]), make("Gather", ["bug.x", "bug.axis1"], ["bug.width"], axis=0),
        make("Constant", [], ["bug.one"], value=numpy_helper.from_array(np.array([1], np.int64))),
        make("Equal", ["bug.width", "bug.one"], ["bug.narrow"]),
        make("ReduceMax", ["state_in_steps"], ["bug.seen"], keepdims=0),
        make("Constant", [], ["bug.zero"], value=numpy_helper.from_array(np.array(0, np.float32))),
        make("Equal", ["bug.seen", "bug.zero"], ["bug.first"]),
        make("And", ["bug.narrow", "bug.first"], ["bug.where"])], "bug.where")
    rerecord(directory, name, parent=store.STREAM_ONNX)
    result = cli("verify", str(directory), "--backends", "ort-cpu", "--json")
    assert result.returncode == 1, result.stderr
    row = next(r for r in json.loads(result.stdout)["results"] if r["artifact"] == name)
    problems = [p for c in row["cases"] for p in c["problems"]]
    assert any("streamed chunk 1;" in p and "the test split does not judge" in p for p in problems), row["problems"]
    limits = store.Store(directory).info.verify
    assert row["argmax_agreement"] >= limits.int8_min_argmax_agreement  # the streamed test split alone passes it


def test_predict_stream_says_the_stream_graphs_trust_not_the_whole_graphs(streamed: Path, tmp_path: Path) -> None:
    """Found by attacking: with model.onnx verified and the stream graph exported after, predict --stream
    --allow-unverified said nothing of the never verified graph it ran (and, with both unverified, named
    model.onnx, which it does not run); and it said how far verify had replayed a graph verify never ran."""
    directory = tmp_path / "d"
    shutil.copytree(streamed, directory)
    mark_verified(directory, store.ONNX_FP32)
    x = _sequences(directory, [600], seed=3)
    np.savez(tmp_path / "in.npz", x=x, lengths=np.array([600]))
    flags = (str(tmp_path / "in.npz"), "--allow-unverified", "--stream", "300")
    for result in (cli("predict", *flags, "--dir", str(directory), "--json"),
                   subprocess.run([sys.executable, "-m", "attn_export.runtime", "predict", str(directory), *flags,
                                   "--json"], capture_output=True, text=True, timeout=300)):
        assert result.returncode == 0, result.stderr
        notes = json.loads(result.stdout)["notes"]
        assert f"{store.STREAM_ONNX} has never been verified (loaded with allow_unverified)" in notes, notes
        assert not any(n.startswith(f"{store.ONNX_FP32} ") for n in notes), notes
        assert not any("replays" in n for n in notes), notes
    text = cli("predict", *flags, "--dir", str(directory))
    assert f"note: {store.STREAM_ONNX} has never been verified" in text.stderr, text.stderr
    # which runtimes verify passed each graph on: the stream graph's, not model.onnx's (found by review)
    for whole, streamed_on, said in ((("tract-cpu",), ("ort-cpu",), None),
                                     (("ort-cpu",), ("tract-cpu",), f"{store.STREAM_ONNX} passed verify on tract-cpu, "
                                                                    "never on ort-cpu, which runs it now")):
        mark_verified(directory, store.ONNX_FP32, backends=whole)
        mark_verified(directory, store.STREAM_ONNX, backends=streamed_on)
        result = cli("predict", *flags, "--dir", str(directory), "--backend", "ort-cpu", "--json")
        assert result.returncode == 0, result.stderr
        notes = json.loads(result.stdout)["notes"]
        assert [n for n in notes if "passed verify on" in n and "never on" in n] == (
            [] if said is None else [n for n in notes if n.startswith(said)]), notes
        assert said is None or any(n.startswith(said) for n in notes), notes


@SECOND_VARIANT_SLOW
def test_predict_stream_on_both_command_lines(streamed: Path, tmp_path: Path) -> None:
    """Both CLIs print one row per chunk; each sequence's last row is predict's own answer for it, and true
    labels in the input are judged on it as predict judges its answer (they were ignored)."""
    x = _sequences(streamed, [13, 13], seed=4)
    labels = store.Store(streamed).info.labels
    np.savez(tmp_path / "in.npz", x=x, lengths=np.array([13, 6]), y=np.array([labels[0], labels[1]]))
    whole_document = json.loads(cli("predict", str(tmp_path / "in.npz"), "--dir", str(streamed), "--allow-unverified",
                                    "--json").stdout)
    plain = whole_document["predictions"]
    host = cli("predict", str(tmp_path / "in.npz"), "--dir", str(streamed), "--allow-unverified", "--stream", "5",
               "--json")
    device = subprocess.run([sys.executable, "-m", "attn_export.runtime", "predict", str(streamed),
                             str(tmp_path / "in.npz"), "--allow-unverified", "--stream", "5", "--json"],
                            capture_output=True, text=True, timeout=300)
    for result in (host, device):
        assert result.returncode == 0, result.stderr
        document = json.loads(result.stdout)  # what ran, on both command lines alike
        assert (document["artifact"], document["precision"], document["stream"]) == (store.STREAM_ONNX, "fp32", 5)
        updates = document["updates"]
        assert [(u["id"], u["chunk"], u["steps"]) for u in updates] == [
            ("0", 1, 5), ("0", 2, 10), ("0", 3, 13), ("1", 1, 5), ("1", 2, 6)]
        for last, want in zip((updates[2], updates[4]), plain):
            assert last["label"] == want["label"] and abs(last["probability"] - want["probability"]) < 1e-5
            assert last["true"] == want["true"]
        assert [document[k] for k in ("count", "accuracy", "correct")] == [
            whole_document[k] for k in ("count", "accuracy", "correct")]
    text = cli("predict", str(tmp_path / "in.npz"), "--dir", str(streamed), "--allow-unverified", "--stream", "5")
    assert text.returncode == 0 and text.stdout.splitlines()[0] == "id\tchunk\tsteps\tlabel\tprobability"
    assert f"accuracy {whole_document['accuracy']:.4f} ({whole_document['correct']}/2, each sequence's last update)" \
        in text.stderr
    whole = cli("predict", str(tmp_path / "in.npz"), "--dir", str(streamed), "--allow-unverified", "--stream",
                str(10 ** 6), "--json")  # a chunk longer than any sequence: one update each, nothing padded
    assert whole.returncode == 0, whole.stderr
    assert [(u["chunk"], u["steps"]) for u in json.loads(whole.stdout)["updates"]] == [(1, 13), (1, 6)]


@SECOND_VARIANT_SLOW
def test_predict_stream_says_when_a_sequence_runs_past_what_verify_replayed(streamed: Path, tmp_path: Path) -> None:
    """verify replays a stream graph up to ``STREAM_MAX_SEQ`` steps: a longer sequence streamed by predict is
    said to run past it, on both command lines (found by attacking: nothing was said). A never verified one
    says that instead, at any length."""
    from attn_export.runtime.verify import STREAM_MAX_SEQ

    directory = tmp_path / "d"
    shutil.copytree(streamed, directory)
    mark_verified(directory, store.STREAM_ONNX)
    for steps, said in ((STREAM_MAX_SEQ, False), (STREAM_MAX_SEQ + 1, True)):
        np.savez(tmp_path / "in.npz", x=_sequences(directory, [steps, 3], seed=2), lengths=np.array([steps, 3]))
        flags = ("--allow-unverified", "--stream", "256", "--json")
        host = cli("predict", str(tmp_path / "in.npz"), "--dir", str(directory), *flags)
        device = subprocess.run([sys.executable, "-m", "attn_export.runtime", "predict", str(directory),
                                 str(tmp_path / "in.npz"), *flags], capture_output=True, text=True, timeout=300)
        for result in (host, device):
            assert result.returncode == 0, result.stderr
            notes = json.loads(result.stdout)["notes"]
            note = (f"1 of 2 sequence(s) are longer than the {STREAM_MAX_SEQ} steps over which verify replays the "
                    "FP32 stream graph")
            assert any(n.startswith(note) for n in notes) == said, notes


@SECOND_VARIANT_SLOW
def test_predict_stream_writes_an_id_the_outputs_encoding_cannot_hold_escaped(streamed: Path, tmp_path: Path) -> None:
    """Found by attacking: the host's predict --stream wrote raw UTF-8 on an ASCII stdout, where predict
    without --stream and the device escape it: a program reading the ids got other text."""
    features = store.Store(streamed).info.input_size
    rows = "".join(f"\u0448{i},{','.join(['0.5'] * features)}\n" for i in range(2) for _ in range(3))
    (tmp_path / "in.csv").write_text("sequence," + ",".join(f"f{k}" for k in range(features)) + "\n" + rows,
                                     encoding="utf-8")
    flags = (str(tmp_path / "in.csv"), "--stream", "2", "--allow-unverified")
    host = cli("predict", *flags, "--dir", str(streamed), env={"PYTHONIOENCODING": "ascii"})
    device = subprocess.run([sys.executable, "-m", "attn_export.runtime", "predict", str(streamed), *flags],
                            capture_output=True, timeout=120, env={**os.environ, "PYTHONIOENCODING": "ascii"})
    assert host.returncode == 0 and device.returncode == 0, host.stderr + device.stderr.decode()
    assert host.stdout.encode() == device.stdout and b"\\u04480\t" in device.stdout, (host.stdout, device.stdout)


@SECOND_VARIANT_SLOW
def test_verify_judges_the_stream_graph_on_every_runtime(streamed: Path, tmp_path: Path) -> None:
    """verify replays every schedule of every sweep case on each runtime: passed, tied to its sha256; the
    conformance table has its column; then Predictor.stream needs no allow_unverified. A retrain makes it
    stale, and the stream is refused."""
    directory = tmp_path / "d"
    shutil.copytree(streamed, directory)
    result = cli("verify", str(directory), "--backends", ",".join(RUNTIMES), "--json")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr
    report = json.loads(result.stdout)
    for name in (store.STREAM_ONNX, store.STREAM_FP16):  # FP16: judged by its own budget, on every runtime
        rows = {r["backend"]: r for r in report["results"] if r["artifact"] == name}
        assert set(rows) == set(RUNTIMES) and all(r["status"] == "passed" for r in rows.values()), name
        assert all(len(r["cases"]) >= len(SCHEDULES) for r in rows.values())
    assert {c["artifact"] for c in report["conformance"]} >= {store.STREAM_ONNX, store.STREAM_FP16}
    # predict --stream's note names the longest case verify replayed (found by attacking: it named 512, where
    # the longest was 301)
    longest = max(c["seq"] for r in report["results"] if r["artifact"] == store.STREAM_ONNX for c in r["cases"])
    with Predictor.load(directory) as predictor:
        predictor.stream()
        assert predictor.beyond_streamed(list(_sequences(directory, [longest], seed=6))) is None
        note = predictor.beyond_streamed(list(_sequences(directory, [longest + 1], seed=6)))
        assert note is not None and f"longer than the {longest} steps over which verify replays" in note, note
    # the runtime that streams: its own rows (found by review: every runtime's, where one runtime, an
    # interpreter with a size limit, replays fewer). tract's longest cases taken out of its row, the verdicts
    # recorded from that verify.json
    before = store.sha256_file(directory / store.VERIFY_JSON)
    recorded = json.loads((directory / store.VERIFY_JSON).read_text())
    tract = next(r for r in recorded["results"] if r["artifact"] == store.STREAM_ONNX and r["backend"] == "tract-cpu")
    tract["cases"] = [c for c in tract["cases"] if c["seq"] < longest]
    shorter = max(c["seq"] for c in tract["cases"])
    store.write_json(directory / store.VERIFY_JSON, recorded)
    manifest = store.read_manifest(directory)
    for entry in manifest["artifacts"].values():
        if (entry.get("verified") or {}).get("verify_sha256") == before:
            entry["verified"]["verify_sha256"] = store.sha256_file(directory / store.VERIFY_JSON)
    store.write_json(directory / store.MANIFEST, manifest)
    for runtime, limit in (("ort-cpu", longest), ("tract-cpu", shorter)):
        with Predictor.load(directory, backend=runtime) as predictor:
            note = predictor.beyond_streamed(list(_sequences(directory, [limit + 1], seed=6)))
            assert note is not None and f"longer than the {limit} steps over which verify replays" in note, note
    x = _sequences(directory, [7], seed=6)
    with Predictor.load(directory, precision="fp16") as half:  # the FP16 stream, for an FP16 predictor
        assert half.stream().push(x[0])[0].label == half.predict([x[0]])[0].label
    for method in ("dynamic", "qdq"):  # INT8: the stream graph's variants too, its cell-state products in FP32
        assert cli("quantize", str(directory), "--int8", "--method", method).returncode == 0
    kept = _cell_state_only(onnx.load(directory / store.STREAM_ONNX))
    assert kept, "the gates recomputed for the carried cell state"
    qdq = onnx.load(directory / store.STREAM_FILES["int8-qdq"])
    dequantized = {o for n in qdq.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    by_name = {n.name: n for n in qdq.graph.node}
    assert all(not set(by_name[k].input) & dequantized for k in kept)
    assert any(n.op_type == "MatMul" and set(n.input) & dequantized for n in qdq.graph.node)  # the rest is INT8
    int8_streams = [store.STREAM_FILES[p] for p in ("int8-dynamic", "int8-qdq")]
    result = cli("verify", str(directory), "--backends", "ort-cpu,openvino-cpu", "--json")
    assert result.returncode in (0, 1), result.stdout[-2000:] + result.stderr  # a tiny model's INT8 may flip
    report = json.loads(result.stdout)
    limits = store.Store(directory).info.verify  # the recipe's own bars
    for name in int8_streams:  # judged like the INT8 graphs: structure per update, decisions on the test split
        rows = [r for r in report["results"] if r["artifact"] == name]
        assert {r["backend"] for r in rows} == {"ort-cpu", "openvino-cpu"}, name
        for r in rows:
            assert {c["judged_by"] for c in r["cases"]} == {"structure"} and all(c["passed"] for c in r["cases"])
            within = (r["argmax_agreement"] >= limits.int8_min_argmax_agreement
                      and r["accuracy_delta"] >= -limits.int8_max_accuracy_drop)
            assert (r["status"] == "passed") == within, r  # the recipe's INT8 decision limits, nothing else
            assert r["cut"]["rows"] > 0 and r["cut"]["own"] == 0, r["cut"]  # streamed cut short: as re-quantised
    passed = {a: all(r["status"] == "passed" for r in report["results"] if r["artifact"] == a)
              for a in ("model.int8.onnx", store.STREAM_FILES["int8-dynamic"])}
    if passed["model.int8.onnx"]:  # the predictor's own graph passed: the stream's verdict decides
        with Predictor.load(directory, precision="int8-dynamic") as int8:
            if passed[store.STREAM_FILES["int8-dynamic"]]:
                answer = int8.stream().push(x[0])
                assert len(answer) == 1 and np.isfinite(answer[0].probabilities).all()
            else:
                with pytest.raises(Exception, match="model.stream.int8.onnx failed verification"):
                    int8.stream()
    assert cli("train", str(directory), *TINY, "--set", "train.seed=5", *(
        VARIANTS["linear"] if "linear" in streamed.name else VARIANTS["additive-learned-2layer"])).returncode == 0
    refused = subprocess.run([sys.executable, "-c", "from attn_export.runtime import Predictor\n"
                              f"Predictor.load({str(directory)!r}, allow_unverified=True)"], capture_output=True,
                             text=True)
    assert refused.returncode != 0
    with pytest.raises(Exception, match="model.stream.onnx is stale"):
        store.Store(directory).open(store.STREAM_ONNX, need="current")
    # a plain export remakes the stream graph the directory holds (found by attacking: it was left stale, and
    # predict --stream named it only after an export and a verify); quantize then makes its variant
    exported = cli("export", str(directory))
    assert exported.returncode == 0 and f"{store.STREAM_ONNX} (opset" in exported.stderr, exported.stderr
    assert store.Store(directory).state(store.STREAM_ONNX).current
    assert cli("quantize", str(directory), "--fp16").returncode == 0
    assert store.Store(directory).state(store.STREAM_FP16).current
    # retrained as a model that cannot stream: export --stream would refuse, so no advice to run it (found by
    # attacking: run printed it once per precision)
    assert cli("train", str(directory), *TINY, "--set", "model.bidirectional=true").returncode == 0
    where = store.directory_word(directory)
    stale = store.Store(directory)
    assert stale.remake(store.STREAM_FP16) == (
        f"the model cannot stream now ({not_streamable({'bidirectional': True})}): re-run attn-export export {where}, "
        "which removes the stream graphs")
    # and the stream graphs removed by hand (found by attacking: then "missing; run export --stream first")
    by_hand = tmp_path / "by_hand"
    shutil.copytree(directory, by_hand)
    for name in store.STREAM_FILES.values():
        (by_hand / name).unlink(missing_ok=True)
    reason = str(store.Store(by_hand).state(store.STREAM_ONNX).reason)
    assert f"attn-export export {store.directory_word(by_hand)} removes the stream graphs" in reason, reason
    assert "--stream" not in reason
    edited = tmp_path / "edited"  # changed by hand: export would leave it (review: the hint said it removes it)
    shutil.copytree(directory, edited)
    (edited / store.STREAM_FP16).write_bytes((edited / store.STREAM_FP16).read_bytes() + b"\0")
    assert f"remove {edited / store.STREAM_FP16} (and the other stream graphs) by hand" in str(
        store.Store(edited).remake(store.STREAM_FP16))
    for source in (directory, by_hand):  # a plain export removes them (and the records of those gone), as run does
        exported = cli("export", str(source))
        said = " ".join(exported.stderr.split())
        assert exported.returncode == 0 and f"removed {', '.join(store.STREAM_FILES.values())}: made from an " \
                                            "earlier model, and this one cannot stream (" in said, said
        assert not set(store.STREAM_FILES.values()) & (set(store.Store(source).entries) | {
            p.name for p in source.iterdir()})
    made = cli("quantize", str(directory), "--fp16")
    said = " ".join(made.stdout.split() + made.stderr.split())
    assert made.returncode == 0 and "model.stream" not in said, said


@pytest.mark.parametrize("streamed", ["linear"], indirect=True)
def test_a_stream_shared_by_threads_loses_no_chunk(streamed: Path) -> None:
    """Found by attacking: four threads pushing on one stream lost more than half their chunks (each push
    wrote back the state it had read); pushes and resets now take turns. The state after them is the one
    of the same chunks pushed one after another (every chunk is the same)."""
    import threading

    x = _sequences(streamed, [3], seed=2)[0]
    with Predictor.load(streamed, allow_unverified=True) as predictor:
        shared, alone = predictor.stream(), predictor.stream()
        threads = [threading.Thread(target=lambda: [shared.push(x) for _ in range(25)]) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for _ in range(100):
            alone.push(x)
        assert shared.steps.tolist() == alone.steps.tolist() == [300]
        assert all(np.array_equal(shared.state[k], alone.state[k]) for k in alone.state)
    with pytest.raises(BadInput, match="this stream's Predictor is closed"):  # it had reset silently
        shared.reset()


@pytest.mark.parametrize("bug, said", [
    ("wide", "the stream graph disagrees with PyTorch on the prefix after chunk 6 of 'widening'"),
    ("count", "state_out_steps is"),
])
@pytest.mark.parametrize("streamed", ["linear"], indirect=True)
def test_the_stream_parity_catches_a_state_bug_in_wide_chunks_and_a_wrong_step_count(
        streamed: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bug: str, said: str) -> None:
    """Found by attacking (each passed export's parity and verify on four runtimes): h reset in every chunk
    wider than 16 steps (predict --stream 32 answered 0.90 for 0.9987), and a step count one too many (a row
    that had seen nothing answered NaN). The schedules now hold chunks of 16 and widths doubling to 128, and
    replay checks the count exactly. The bug is put into attn-export's own stream cell, so export records it
    as its own, as a converter bug would be."""
    import torch

    import attn_export.stream as stream_module

    made = stream_module.StreamCell.forward

    def buggy(self, x, lengths, acc, c, h, peak, seen, total):  # type: ignore[no-untyped-def]
        if bug == "wide":
            h = torch.where(torch.ones_like(x[0, :, 0]).sum() > 16, torch.zeros_like(h), h)
        out = list(made(self, x, lengths, acc, c, h, peak, seen, total))
        if bug == "count":
            out[-2] = out[-2] + 1  # state_out_steps, the fifth of the six states
        return tuple(out)

    monkeypatch.setattr(stream_module.StreamCell, "forward", buggy)
    directory = tmp_path / "d"
    shutil.copytree(streamed, directory)
    before = (directory / "model.stream.onnx").read_bytes()
    with pytest.raises(WorkFailed) as refused:
        stream_module.export_stream(directory)
    assert said in str(refused.value), str(refused.value)
    assert (directory / "model.stream.onnx").read_bytes() == before  # nothing written


@pytest.mark.parametrize("streamed", ["linear"], indirect=True)
def test_a_stream_whose_comparator_cannot_run_here_is_not_judged_not_failed(
        streamed: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Found by review: a stream's whole-sequence comparator that its runtime cannot open here (an ONNX Runtime
    older than the one tested) failed the stream, a verdict that would outlive an upgrade. It is "not judged"
    now. A double: ort-cpu refuses model.onnx when opened, as an old ONNX Runtime refuses a graph; it does
    not prove what such a runtime does."""
    from attn_export.errors import NotAvailable
    from attn_export.runtime.backends.onnxrt import OrtCpuBackend
    from attn_export.runtime.verify import verify

    directory = tmp_path / "d"
    shutil.copytree(streamed, directory)
    opened = OrtCpuBackend.__enter__

    def old_for_the_whole(self):  # type: ignore[no-untyped-def]
        if self.artifact.name == "model.onnx":
            raise NotAvailable("ONNX Runtime 1.11.1, older than 1.19.2, cannot load model.onnx (simulated)")
        return opened(self)

    monkeypatch.setattr(OrtCpuBackend, "__enter__", old_for_the_whole)
    result = verify(directory, ["ort-cpu"])
    rows = {(r.target.backend, str(r.target.artifact)): r for r in result.results}
    stream = rows[("ort-cpu", "model.stream.onnx")]
    assert stream.status == "skipped" and stream.reason is not None and stream.reason.startswith(
        "not judged: its earlier prefixes are compared with ort-cpu model.onnx, which cannot run here"), stream
    assert rows[("ort-cpu", "model.stream.fp16.onnx")].status == "passed"


@pytest.mark.parametrize("backend", ["openvino-cpu", "tract-cpu"])
@pytest.mark.parametrize("streamed", ["linear"], indirect=True)
def test_a_runtime_of_one_call_at_a_time_takes_predict_and_push_in_turn(
        streamed: Path, backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Found by attacking: one predict and one push at once on an OpenVINO Predictor hung the process for good
    (both threads inside OpenVINO's infer, 0 % CPU), about one run in three; the stream graph's session had a
    lock of its own. It shares the predictor's now: a push waits for the predict it meets. A double holds the
    predict inside the runtime until the push has had time to start; it proves the order, not the hang (which
    this machine no longer reproduced)."""
    import threading

    if REGISTRY[backend].available() is not None:
        pytest.skip(f"needs {backend}: {REGISTRY[backend].available()}")
    cls = REGISTRY[backend]
    run, inside, release, order = cls._run, threading.Event(), threading.Event(), []

    def held(self, feeds):  # type: ignore[no-untyped-def]
        order.append(f"in {self.artifact.name}")
        if self.artifact.name == "model.onnx":
            inside.set()
            release.wait(30)
        out = run(self, feeds)
        order.append(f"out {self.artifact.name}")
        return out

    monkeypatch.setattr(cls, "_run", held)
    x = _sequences(streamed, [3], seed=2)[0]
    with Predictor.load(streamed, backend=backend, allow_unverified=True) as predictor:
        stream = predictor.stream()
        predicting = threading.Thread(target=predictor.predict, args=([x],))
        predicting.start()
        assert inside.wait(30)
        pushing = threading.Thread(target=stream.push, args=(x,))
        pushing.start()
        pushing.join(0.5)  # without the shared lock the push ran now, inside the predict
        release.set()
        predicting.join(30)
        pushing.join(30)
    assert order == ["in model.onnx", "out model.onnx", "in model.stream.onnx", "out model.stream.onnx"], order


@pytest.mark.parametrize("backend", ["openvino-cpu", "tract-cpu"])
@pytest.mark.parametrize("streamed", ["linear"], indirect=True)
def test_a_predictor_closed_between_two_batches_says_so_on_every_runtime(streamed: Path, backend: str) -> None:
    """Found by attacking: close() from another thread between two batches of one predict left OpenVINO's and
    tract's next batch an AttributeError on None. A double closes the predictor as close() would have, right
    after the first batch: deterministic, where two threads would race for the lock."""
    if REGISTRY[backend].available() is not None:
        pytest.skip(f"needs {backend}: {REGISTRY[backend].available()}")
    x = _sequences(streamed, [3], seed=2)[0]
    predictor = Predictor.load(streamed, backend=backend, allow_unverified=True)
    real = predictor._infer

    def then_closed(feeds):  # type: ignore[no-untyped-def]
        out = real(feeds)
        predictor._closed = True
        predictor._backend.close()
        return out

    predictor._infer = then_closed  # type: ignore[method-assign]
    with pytest.raises(BadInput, match="^this Predictor was closed while it predicted; load it again$"):
        predictor.predict([x, x], batch_size=1)


@pytest.mark.parametrize("streamed", ["linear"], indirect=True)
def test_push_takes_the_numbers_predict_takes(streamed: Path) -> None:
    """Found by attacking: push read an object array of '0.5' strings or of bools as numbers, which predict
    refuses; both refuse it now."""
    x = _sequences(streamed, [3], seed=2)[0]
    with Predictor.load(streamed, allow_unverified=True) as predictor:
        stream = predictor.stream()
        for chunk in (x.astype(str).astype(object), (x > 0).astype(object)):
            with pytest.raises(BadInput, match="chunk is not real numbers .dtype object."):
                stream.push(chunk)
            with pytest.raises(BadInput, match="dtype object; expected real numbers"):
                predictor.predict([chunk])
        assert stream.steps.tolist() == [0]


@pytest.mark.parametrize("streamed", ["linear"], indirect=True)
def test_a_stream_refused_after_the_directory_changed_says_to_load_again(streamed: Path, tmp_path: Path) -> None:
    """Found by attacking: after a retrain and export --stream elsewhere, a predictor loaded before opened no
    stream (right: it serves the model it loaded) and advised the export just run; it says to load again."""
    directory = tmp_path / "d"
    shutil.copytree(streamed, directory)
    with Predictor.load(directory, allow_unverified=True) as predictor:
        graph = directory / store.STREAM_ONNX
        graph.write_bytes(graph.read_bytes() + b"\0")
        rerecord(directory, store.STREAM_ONNX)  # as an export elsewhere records it
        with pytest.raises(BadInput, match="has changed since this Predictor was loaded: load it again") as said:
            predictor.stream()
        assert "export" not in str(said.value), said.value  # found by attacking: it advised re-running export
    with Predictor.load(directory, allow_unverified=True) as again:  # the directory as it is now
        with pytest.raises(BadInput) as refused:
            again.stream()
    assert "since this Predictor was loaded" not in str(refused.value)


@pytest.mark.parametrize("streamed", ["linear"], indirect=True)
@pytest.mark.parametrize("spoil", ["changed", "dangling link"])
def test_a_plain_export_leaves_a_stream_graph_it_did_not_make_alone(streamed: Path, tmp_path: Path, spoil: str) -> None:
    """Found by review: a plain export remade (overwrote) a stream graph changed by hand or unrecorded, and
    failed, after writing model.onnx, on one it could not read. It remakes only one recorded from earlier
    weights; anything else is the store's to refuse, and the export succeeds."""
    directory = tmp_path / "d"
    shutil.copytree(streamed, directory)
    graph = directory / store.STREAM_ONNX
    if spoil == "changed":
        graph.write_bytes(graph.read_bytes() + b"\0")
    else:
        graph.unlink()
        graph.symlink_to(directory / "nowhere.onnx")
    before = graph.read_bytes() if spoil == "changed" else None
    result = cli("export", str(directory))
    assert result.returncode == 0 and store.STREAM_ONNX not in result.stderr, result.stderr
    assert (graph.read_bytes() if spoil == "changed" else None) == before and graph.is_symlink() == (spoil != "changed")


@pytest.mark.slow  # a verify per variant, on the file that bounds the default run's time
def test_a_stream_failed_against_a_failed_whole_graph_names_that_graph_to_fix_first(streamed: Path,
                                                                                     tmp_path: Path) -> None:
    """Found by attacking: with ``model.fp16.onnx`` damaged, the untouched FP16 stream failed on its prefixes
    (they are compared with that graph) and its hint said to move the budgets. It now names the graph."""
    directory = tmp_path / "d"
    shutil.copytree(streamed, directory)
    proto = onnx.load(directory / "model.fp16.onnx")
    weight = max((t for t in proto.graph.initializer if t.data_type == onnx.TensorProto.FLOAT16),
                 key=lambda t: numpy_helper.to_array(t).size)  # the largest FP16 tensor: an LSTM's weights
    weight.CopyFrom(numpy_helper.from_array((numpy_helper.to_array(weight) * 1.5).astype(np.float16), weight.name))
    onnx.save(proto, directory / "model.fp16.onnx")
    rerecord(directory, "model.fp16.onnx", parent="model.onnx")
    result = cli("verify", str(directory), "--backends", "ort-cpu", "--json")
    assert result.returncode == 1, result.stderr[-2000:]
    rows = {r["artifact"]: r for r in json.loads(result.stdout)["results"] if r["backend"] == "ort-cpu"}
    assert rows["model.fp16.onnx"]["status"] == "failed"
    stream = rows[store.STREAM_FP16]
    assert stream["status"] == "failed" and "against model.fp16.onnx on the prefix" in stream["problems"][0]
    assert stream["hint"] == ("model.fp16.onnx, which its earlier updates are compared with, failed on ort-cpu in "
                              "this verify too: fix model.fp16.onnx first, then verify again")
    assert rows[store.STREAM_ONNX]["status"] == "passed" and rows[store.STREAM_ONNX]["hint"] is None
    assert "fix model.fp16.onnx first" in result.stderr


def test_why_a_front_end_cannot_stream_is_true_of_its_kernels() -> None:
    """Found by a user: a kernel-1 Conv1d (it reads no later step) was said to look kernel // 2 steps ahead."""
    from attn_export.config import ModelConfig
    from attn_export.runtime.streaming import not_streamable

    assert "looks kernel // 2 steps ahead" in (not_streamable({"conv_channels": [4, 4], "conv_kernel_sizes": [1, 3]})
                                               or "")
    pointwise = not_streamable(ModelConfig(conv_channels=(4,), conv_kernel_sizes=(1,))) or ""
    assert "kernel 1: it reads no later step" in pointwise and "ahead" not in pointwise
    assert not_streamable(ModelConfig()) is None


@pytest.mark.parametrize("setting, said", [  # one in the default run; each costs a training run
    (["--set", "model.bidirectional=true"], "it is bidirectional"),
    pytest.param(["--set", "model.conv_channels=[4]", "--set", "model.conv_kernel_sizes=[3]"], "Conv1d front-end looks",
                 marks=pytest.mark.slow),
    pytest.param(["--set", "model.attention=additive"], "query is the last state", marks=pytest.mark.slow),
])
def test_a_model_that_cannot_stream_is_one_line_saying_why(tmp_path: Path, setting: list[str], said: str) -> None:
    assert cli("train", str(tmp_path), *TINY, "--set", "train.epochs=1", *setting).returncode == 0
    result = cli("export", str(tmp_path), "--stream")
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and said in lines[-1] and lines[-1].startswith("Error: "), result.stderr
    assert "cannot stream exactly" in lines[-1] and "Traceback" not in result.stderr
    assert not (tmp_path / store.STREAM_ONNX).exists()
    assert not (tmp_path / store.ONNX_FP32).exists() and len(lines) == 1  # refused before anything is written
    np.savez(tmp_path / "x.npz", x=np.zeros((1, 5, 4), np.float32), lengths=np.array([5]))
    predict = ("predict", str(tmp_path / "x.npz"), "--dir", str(tmp_path), "--allow-unverified", "--stream", "2")
    first = cli(*predict)  # found by a user: with no model.onnx yet, it said "run export", then refused to stream
    assert first.returncode == 2 and first.stderr.strip().startswith(
        f"Error: {tmp_path}: its model cannot stream exactly: "), first.stderr
    assert said in first.stderr and len(first.stderr.strip().splitlines()) == 1
    assert cli("export", str(tmp_path)).returncode == 0
    assert cli(*predict).stderr == first.stderr
    result = cli("bench", str(tmp_path), "--stream")  # it said "run export --stream", which refuses
    assert result.returncode == 2 and result.stderr.strip().startswith(
        f"Error: {tmp_path} has no model.stream.onnx: its model cannot stream exactly: "), result.stderr
    assert said in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_a_model_without_a_head_streams_its_context(tmp_path: Path) -> None:
    """An imported LSTM + score with no head (its output is the context) crashed export --stream with a
    traceback (the stream cell returned the context twice). It streams, and verify passes it on every prefix."""
    import torch

    torch.manual_seed(0)
    lstm, score = torch.nn.LSTM(4, 16, batch_first=True), torch.nn.Linear(16, 1)
    torch.save({**{f"lstm.{k}": v for k, v in lstm.state_dict().items()},
                **{f"score.{k}": v for k, v in score.state_dict().items()}}, tmp_path / "nohead.pt")
    directory = tmp_path / "d"
    for args in (("load", str(tmp_path / "nohead.pt"), str(directory)), ("export", str(directory), "--stream")):
        result = cli(*args)
        assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    outputs = [o.name for o in onnx.load(str(directory / store.STREAM_ONNX)).graph.output]
    assert outputs == ["context", *sorted(state_name(n, "out") for n in STATE)]
    result = cli("verify", str(directory), "--backends", "ort-cpu", "--json")
    rows = {r["artifact"]: r["status"] for r in json.loads(result.stdout)["results"] if r["backend"] == "ort-cpu"}
    assert result.returncode == 0 and rows[store.STREAM_ONNX] == "passed", result.stdout[-2000:]


@SECOND_VARIANT_SLOW
def test_a_stream_whose_comparator_cannot_be_used_is_not_judged(streamed: Path, tmp_path: Path) -> None:
    """model.stream.fp16.onnx's earlier prefixes are compared with model.fp16.onnx; with that file gone or
    swapped, verify recorded a failed verdict on the untouched stream graph, and predict --stream refused it
    from then on. It is now not judged (skipped, with the reason) and keeps the verdict it had."""
    directory = tmp_path / "d"
    shutil.copytree(streamed, directory)
    assert cli("verify", str(directory), "--backends", "ort-cpu").returncode == 0
    before = json.loads((directory / store.MANIFEST).read_text())["artifacts"][store.STREAM_FP16]["verified"]
    (directory / store.ONNX_FILES["fp16"]).unlink()
    result = cli("verify", str(directory), "--backends", "ort-cpu", "--json")
    row = next(r for r in json.loads(result.stdout)["results"]
               if r["artifact"] == store.STREAM_FP16)
    assert row["status"] == "skipped" and row["reason"].startswith(
        "not judged: its earlier prefixes are compared with model.fp16.onnx, which cannot be used:"), row
    assert json.loads((directory / store.MANIFEST).read_text())["artifacts"][store.STREAM_FP16]["verified"] == before
    info = subprocess.run([sys.executable, "-m", "attn_export.runtime", "info", str(directory), "--json"],
                          capture_output=True, text=True, timeout=300)
    files = json.loads(info.stdout)["artifacts"]
    assert files[store.STREAM_ONNX]["verifiable"] and files[store.STREAM_ONNX]["verified"] is True


@SECOND_VARIANT_SLOW
def test_run_removes_what_an_earlier_model_left_and_this_one_cannot_remake(streamed: Path, tmp_path: Path) -> None:
    """A bidirectional model run where a causal one had its stream graphs: they stayed, stale, failing every
    verify and bundle after, and export --stream (the fix they named) refuses a bidirectional model. run
    removes the graphs of an earlier model that it did not remake; a file changed by hand is left alone."""
    from attn_export.pipeline import remove_leftovers

    directory = tmp_path / "d"
    shutil.copytree(streamed, directory)
    assert cli("train", str(directory), *TINY, "--set", "train.epochs=1", "--set", "model.bidirectional=true",
               "--set", "model.attention=linear").returncode == 0
    assert cli("export", str(directory)).returncode == 0  # which removes the stream graphs itself, as run does
    assert not (directory / store.STREAM_ONNX).exists()
    kept = directory / store.ONNX_FILES["fp16"]
    kept.write_bytes(kept.read_bytes() + b"\0")  # changed by hand: not this run's to delete
    gone = store.ONNX_FILES["int8-dynamic"]  # recorded, then deleted by hand: "missing" on every run after
    manifest = json.loads((directory / store.MANIFEST).read_text())
    manifest["artifacts"][gone] = manifest["artifacts"][store.ONNX_FILES["fp16"]]
    (directory / store.MANIFEST).write_text(json.dumps(manifest))
    assert remove_leftovers(directory) == [gone]
    assert kept.exists()
    recorded = json.loads((directory / store.MANIFEST).read_text())["artifacts"]
    assert store.STREAM_ONNX not in recorded and gone not in recorded


@SECOND_VARIANT_SLOW
def test_a_run_that_removes_the_stream_graphs_does_not_also_advise_removing_them(streamed: Path,
                                                                                 tmp_path: Path) -> None:
    """Found by attacking: a bidirectional run over a causal model's directory had quantize say "model.stream.
    fp16.onnx not made ...: remove the stream graphs" (in quantize.json too), then removed them itself. A model
    that cannot stream has its predecessor's stream graphs removed before quantize, which then has nothing to
    say of them. The run is stopped in process where quantize ends, as the CLI's signal handler would stop it
    (what it prints of a stage is its summary: tested with the whole run in test_cli)."""
    from attn_export.config import load_recipe
    from attn_export.pipeline import run

    directory = tmp_path / "d"
    shutil.copytree(streamed, directory)
    said: list[str] = []

    def stop_after_quantize(stage: Any) -> None:
        said.append(stage.summary)
        if stage.name == "quantize":
            raise KeyboardInterrupt

    recipe = load_recipe(None, [*TINY[1::2], "train.epochs=1", "model.bidirectional=true"])
    with pytest.raises(KeyboardInterrupt):
        run(recipe, directory, on_stage=stop_after_quantize)
    assert "remove the stream graphs" not in " ".join(said) and "remove the stream graphs" not in (
        directory / "quantize.json").read_text()
    assert "removed what an earlier model left and this recipe does not make: model.stream.onnx" in said[-1], said
    assert not any(directory.glob("model.stream*"))


@SECOND_VARIANT_SLOW
def test_bench_stream_times_updates_against_rerunning_the_prefix(streamed: Path, tmp_path: Path) -> None:
    """The numbers are measured, never asserted: the table's shape, the positions of every update, the state's
    size (independent of the segment), the file and the plot."""
    directory = tmp_path / "d"
    shutil.copytree(streamed, directory)
    result = cli("bench", str(directory), "--stream", "--segments", "8,32", "--chunks", "1,8", "--seconds", "0.05",
                 "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert [(r["segment"], r["chunk"], r["updates"]) for r in report["results"]] == [
        (8, 1, 8), (8, 8, 1), (32, 1, 32), (32, 8, 4)]
    for r in report["results"]:
        assert r["positions"][-1] == r["segment"] and len(r["stream_ms"]) == r["updates"]
        assert r["sampled"][0] == r["positions"][0] and r["sampled"][-1] == r["segment"]
        assert r["segment_ratio"] > 0 and r["on_paper_segment_ratio"] == (r["segment"] + r["chunk"]) / (2 * r["chunk"])
    info = store.Store(directory).info
    layers, hidden = info.recipe["model"]["num_layers"], info.recipe["model"]["hidden_size"]
    assert report["state_bytes_per_row"] == 4 * (hidden + 2 * layers * hidden + 3)
    assert report["drift"]["steps"] == 4096 and sorted(report["drift"]["ratio_to_fp32_rule"]) == ["1024", "256", "4096"]
    assert report["machine"]["cpu"] and (directory / "bench_stream.json").is_file()
    assert (directory / "bench_stream_latency.png").stat().st_size > 0
    # --json prints the file (found by attacking: the plot's name was on stdout only)
    assert json.loads((directory / "bench_stream.json").read_text()) == report
    # the bytes it timed are recorded, and inspect flags the result once they are gone (found by attacking: a run
    # of a model that cannot stream removed the stream graphs, and this result stayed a plain "result")
    def problems() -> list[str]:
        described = json.loads(cli("inspect", str(directory), "--json").stdout)
        return described["artifacts"]["bench_stream.json"]["problems"]

    assert set(report["artifacts"]) == {store.STREAM_ONNX, store.ONNX_FP32} and problems() == []
    (directory / store.STREAM_ONNX).unlink()
    assert [p for p in problems() if p.startswith("not current") and store.STREAM_ONNX in p], problems()


def test_a_stream_whose_predictor_is_closed_while_it_pushes_says_so(streamed: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Found by attacking: a Predictor closed by another thread while a stream pushed gave that thread a bare
    RuntimeError (or "'NoneType' object has no attribute 'run'"), where predict says it was closed. A double
    closes it inside the call, then the real, closed backend runs."""
    x = _sequences(streamed, [20], seed=3)
    predictor = Predictor.load(streamed, allow_unverified=True)
    stream = predictor.stream(batch=1)
    run = stream.backend.run_feeds
    monkeypatch.setattr(stream.backend, "run_feeds", lambda feeds: (predictor.close(), run(feeds))[1])
    with pytest.raises(BadInput, match="^this stream's Predictor was closed while it pushed; load it again and "
                                       "open a new stream$"):
        stream.push(x)


@SECOND_VARIANT_SLOW
def test_a_triton_bundle_needs_a_pass_on_the_runtime_triton_serves_with(streamed: Path, tmp_path: Path) -> None:
    """Found by attacking: graphs that verify had run on tract alone were bundled for Triton, whose ONNX
    Runtime backend serves them, and its README said verify judged them where they run."""
    directory = tmp_path / "d"
    shutil.copytree(streamed, directory)
    verified = cli("verify", str(directory), "--backends", "tract-cpu")
    assert verified.returncode == 0, verified.stderr
    made = cli("bundle", str(directory), "--for", "triton", "--out", str(tmp_path / "t.tar.gz"))
    assert made.returncode == 2 and " ".join(made.stderr.split()) == (
        "Error: not bundling for Triton, whose ONNX Runtime backend serves these graphs on the CPU: model.onnx on "
        "tract-cpu only; model.stream.onnx on tract-cpu only; expected a pass on ort-cpu (run attn-export verify "
        f"{directory} --backends ort-cpu)"), made.stderr
    assert not (tmp_path / "t.tar.gz").exists()


@SECOND_VARIANT_SLOW
def test_the_triton_bundle_is_a_model_repository_triton_itself_parses(streamed: Path, tmp_path: Path) -> None:
    """bundle --for triton: each config.pbtxt parsed into Triton's own ModelConfig (tritonclient's
    model_config_pb2, protobuf's text_format), against the graph it serves: inputs and outputs by name,
    type and shape; the whole model with dynamic batching; the stream model with the sequence batcher keeping
    every state_in_*/state_out_* pair, zeros at the start. No Triton server runs here."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    from attn_export.runtime.bundle import unpack

    directory = tmp_path / "d"
    shutil.copytree(streamed, directory)
    made = cli("bundle", str(directory), "--for", "triton", "--out", str(tmp_path / "t.tar.gz"))
    assert made.returncode == 2 and made.stderr.strip() == (  # Triton checks nothing: only what verify passed
        "Error: not bundling for Triton, which serves a graph without checking it: model.onnx has never been "
        "verified; model.stream.onnx has never been verified; expected graphs that attn-export verify passed "
        f"(run attn-export verify {directory})"), made.stderr
    mark_verified(directory, store.ONNX_FP32)
    mark_verified(directory, store.STREAM_ONNX, passed=False)
    made = cli("bundle", str(directory), "--for", "triton", "--out", str(tmp_path / "t.tar.gz"))
    assert made.returncode == 2 and "model.stream.onnx failed verification (see verify.json)" in made.stderr
    assert not (tmp_path / "t.tar.gz").exists()
    mark_verified(directory, store.STREAM_ONNX)
    made = cli("bundle", str(directory), "--for", "triton", "--out", str(tmp_path / "t.tar.gz"))
    assert made.returncode == 0, made.stderr
    repo = unpack(tmp_path / "t.tar.gz", tmp_path / "t") / "model_repository"
    readme = " ".join((repo.parent / "README.md").read_text().split())  # what a client must know (found by attacking)
    assert "A request holds at most 32 rows (`max_batch_size`" in readme
    # a length past the steps read another client's row under dynamic batching, or failed the whole batch,
    # where the README said only "numbers that mean nothing" (found by attacking)
    assert "can read another row of the batch (under dynamic batching, another client's request) or fail the run " \
           "of every request batched with it: check each length before sending" in readme
    # its commands run as written: the image tag was "<yy.mm>", a redirect to bash; the server ran in the
    # foreground; a path with a space split -v (found by attacking)
    assert "<" not in readme.split("docker run")[1].split("tritonserver --model")[0]
    assert 'docker run -d --rm --name attn-triton' in readme and '-v "$PWD/model_repository:/models"' in readme
    # curl's --retry gives up on a refused or reset connection before the server listens (review): a loop
    assert "for i in $(seq 60); do curl -sf localhost:8000/v2/health/ready && break; sleep 2; done" in readme
    # and says so when it gave up, where it had gone on silently to a client that could not connect (found by
    # attacking): the README's own line, run with no server listening
    said = "Triton is not ready after 2 min: docker logs attn-triton"
    ready = next(line.strip() for line in (repo.parent / "README.md").read_text().splitlines() if said in line)
    if shutil.which("curl"):
        quiet = subprocess.run(["bash", "-c", ready.replace("localhost:8000", "127.0.0.1:9")], capture_output=True,
                               text=True, timeout=60)
        assert quiet.stdout.strip() == said, quiet
    assert "A chunk's length must lie in 0..steps of that chunk (0 keeps the state as it was)" in readme
    assert "so does a value in a valid step that is not finite, or that the model's normalisation takes past " \
           "float32" in readme  # a NaN in a chunk spoiled the state Triton keeps (found by attacking)
    assert "A stream request holds one row, one sequence (the sequence batcher refuses more)" in readme
    assert "A sequence that sends nothing for 60 seconds is ended by Triton and its state dropped" in readme
    types = {onnx.TensorProto.FLOAT: model_config_pb2.TYPE_FP32, onnx.TensorProto.INT64: model_config_pb2.TYPE_INT64}
    for model, source in (("attention_lstm", store.ONNX_FP32), ("attention_lstm_stream", store.STREAM_ONNX)):
        graph_bytes = (repo / model / "1" / "model.onnx").read_bytes()
        assert graph_bytes == (directory / source).read_bytes()
        config = text_format.Parse((repo / model / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
        assert config.name == model and config.platform == "onnxruntime_onnx" and config.max_batch_size == 32
        # on the CPU, where verify judged it: Triton's default is an instance per GPU, on the CUDA provider,
        # never verified, FP32 as TF32 (found by attacking)
        assert [g.kind for g in config.instance_group] == [model_config_pb2.ModelInstanceGroup.KIND_CPU]
        # one instance: Triton's default is two on the CPU, each with ONNX Runtime's threads on every core
        assert [g.count for g in config.instance_group] == [1]
        graph = onnx.load_from_string(graph_bytes).graph
        declared = {v.name: v.type.tensor_type for v in list(graph.input) + list(graph.output)}
        served = list(config.input) + list(config.output)
        for t in served:
            tensor = declared[t.name]
            dims = [d.dim_value or -1 for d in tensor.shape.dim[1:]]
            assert t.data_type == types[tensor.elem_type], t.name
            assert (list(t.dims), list(t.reshape.shape)) == (([1], []) if not dims else (dims, [])), t.name
        states = list(config.sequence_batching.state)
        if source == store.ONNX_FP32:
            assert config.HasField("dynamic_batching") and not states
            assert sorted(t.name for t in served) == sorted(declared)
            continue
        assert not config.HasField("dynamic_batching")
        assert [(s.input_name, s.output_name) for s in states] == [
            (state_name(n, "in"), state_name(n, "out")) for n in STATE]
        for s in states:
            dims = [d.dim_value for d in declared[s.input_name].shape.dim[1:]]
            assert list(s.dims) == dims and s.data_type == model_config_pb2.TYPE_FP32
            assert [(i.zero_data, list(i.dims)) for i in s.initial_state] == [(True, dims)]
        assert sorted(n for s in states for n in (s.input_name, s.output_name)) == sorted(
            n for n in declared if n.startswith("state_"))  # every state pair kept by Triton, none served
    readme = (repo.parent / "README.md").read_text()
    assert "sequence_id=sequence_id" in readme and "no Triton server" in readme and "only graphs that" in readme
    # a verdict passed under a loosened budget was said on the host's console only: a Triton bundle has no
    # info to ask, so its README says it (found by attacking)
    assert "verified with --set" not in readme
    manifest = store.read_manifest(directory)
    manifest["artifacts"][store.ONNX_FP32]["verified"]["overrides"] = ["verify.fp32_atol=1"]
    store.write_json(directory / store.MANIFEST, manifest)
    made = cli("bundle", str(directory), "--for", "triton", "--out", str(tmp_path / "loose.tar.gz"))
    assert made.returncode == 0, made.stderr
    loose = " ".join((unpack(tmp_path / "loose.tar.gz", tmp_path / "loose") / "README.md").read_text().split())
    assert "## Said when this bundle was made - verified with --set verify.fp32_atol=1, not the recipe's own " \
           "[verify] settings" in loose
    assert triton_client_models(readme) == ["attention_lstm", "attention_lstm_stream"]
    assert "runtime/" not in readme and "Predictor" not in readme  # no device package in a Triton bundle
    assert "each length of `attention_lstm` must lie in 1..steps" in readme  # found by a user
    assert "class `labels[i]` of `model.json`" in readme
    assert "dynamic batching, which joins only requests of one `steps`" in " ".join(readme.split())
    assert "unless the server runs with `NVIDIA_TF32_OVERRIDE=0`" in " ".join(readme.split())
    assert not (repo.parent / "runtime").exists()
    np.savez(tmp_path / "x.npz", x=np.zeros((1, 5, store.Store(directory).info.input_size), np.float32),
             lengths=np.array([5]))
    for bundle in (tmp_path / "t.tar.gz", tmp_path / "t"):  # it said "model.onnx is missing; run export"
        refused = cli("predict", str(tmp_path / "x.npz"), "--dir", str(bundle))
        assert refused.returncode == 2 and refused.stderr.strip() == (
            f"Error: {bundle} is a Triton bundle: a model repository for tritonserver (its README.md says how to "
            "serve it), which the device package does not run; expected an artefact directory, or a bundle made "
            "with --for cpu or --for jetson"), refused.stderr
    # every command that writes a directory says the same, before it takes the lock (found by attacking: verify
    # was exit 3 "pip install onnxruntime" and left a lock file; quantize and export said a file was missing)
    unpacked = tmp_path / "t"
    before = sorted(p.name for p in unpacked.iterdir())
    for args in (("verify", str(unpacked)), ("bench", str(unpacked)), ("quantize", str(unpacked), "--fp16"),
                 ("export", str(unpacked)), ("report", str(unpacked))):
        refused = cli(*args)
        assert refused.returncode == 2 and refused.stderr.startswith(f"Error: {unpacked} is a Triton bundle"), \
            (args, refused.stderr)
    assert sorted(p.name for p in unpacked.iterdir()) == before


@SECOND_VARIANT_SLOW
def test_a_cpu_bundle_streams_on_the_device(streamed: Path, tmp_path: Path) -> None:
    """The stream graph travels in the bundle; the device's predict --stream runs it from the unpacked bundle
    as its README runs commands (PYTHONPATH=runtime, without the host's libraries)."""
    from test_device_package import device_cli

    from attn_export.runtime.bundle import pack, unpack

    device = unpack(pack(streamed, tmp_path / "b.tar.gz", "cpu").path, tmp_path / "device")
    assert (device / store.STREAM_ONNX).read_bytes() == (streamed / store.STREAM_ONNX).read_bytes()
    x = _sequences(streamed, [9], seed=5)
    np.savez(device / "in.npz", x=x, lengths=np.array([9]))
    result = device_cli(device, "predict", ".", "in.npz", "--stream", "4", "--allow-unverified")
    assert result.returncode == 0, result.stderr
    assert [line.split("\t")[:3] for line in result.stdout.splitlines()[1:]] == [["0", "1", "4"], ["0", "2", "8"],
                                                                                ["0", "3", "9"]]
    from test_device_package import readme_commands

    # found by a user: the README said nothing of streaming; its command, as written (unverified here)
    shown = [c for c in readme_commands((device / "README.md").read_text()) if "--stream" in c]
    assert shown == ["PYTHONPATH=runtime python3 -m attn_export.runtime predict . INPUT.npz --stream 16 --precision "
                     "fp32"], shown
    np.savez(device / "INPUT.npz", x=_sequences(streamed, [40], seed=6), lengths=np.array([40]))
    result = device_cli(device, *shown[0].split()[4:], "--allow-unverified")
    assert result.returncode == 0, result.stderr
    assert [line.split("\t")[2] for line in result.stdout.splitlines()[1:]] == ["16", "32", "40"]


def test_a_jetson_bundle_builds_the_stream_graph_on_the_device(streamed: Path, tmp_path: Path) -> None:
    """A Jetson bundle's README gives build --stream and trtexec commands for each stream graph ready there,
    every state shape written out; the device's build takes --stream and, with no GPU or TensorRT here,
    refuses in one line, exit 3, writing nothing."""
    from test_device_package import device_cli

    from attn_export.runtime.bundle import pack, unpack

    device = unpack(pack(streamed, tmp_path / "j.tar.gz", "jetson").path, tmp_path / "jetson")
    readme = (device / "README.md").read_text()
    for precision, flag in (("fp32", ""), ("fp16", "--fp16 ")):
        assert f"runtime build . {flag}--stream --target jetpack6 --max-batch 32 --min-seq 1 --opt-seq 16" in readme
        line = next(x for x in readme.splitlines() if f"--onnx={store.STREAM_FILES[precision]} " in x)
        hidden = int(json.loads((streamed / store.MODEL_JSON).read_text())["recipe"]["model"]["hidden_size"])
        assert f"--saveEngine=trtexec.stream.{precision}.engine" in line and f"state_in_acc:32x{hidden}" in line
    before = sorted(p.name for p in device.iterdir())
    result = device_cli(device, "build", ".", "--stream", "--fp16")
    assert result.returncode == 3 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert sorted(p.name for p in device.iterdir()) == before


def test_the_stream_graphs_are_ready_for_every_tensorrt_line(streamed: Path) -> None:
    """The static TensorRT check covers the stream graphs as build inputs: FP32 and FP16 ready on every
    target, each built from its own stream file (build --stream), with no parser finding that is an error."""
    from attn_export.runtime.trt.readiness import TARGETS

    result = cli("inspect", str(streamed), *[a for t in TARGETS for a in ("--target", t)], "--json")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr
    for name, t in json.loads(result.stdout).items():
        for precision in ("fp32", "fp16"):
            row = t["files"][store.STREAM_FILES[precision]]
            assert row["ready"] and row["builds"] == precision, (name, row["findings"])
            assert store.STREAM_FILES[precision] in row["how"], row["how"]


OPEN = """
import sys
import numpy as np
path, runtime = sys.argv[1], sys.argv[2]
if runtime == "onnxruntime":
    import onnxruntime
    session = onnxruntime.InferenceSession(path)  # every default: ORT_ENABLE_ALL, the providers the package has
    print(sorted(i.name for i in session.get_inputs()))
else:
    import openvino
    model = openvino.Core().compile_model(path, "CPU")  # its defaults: bf16 where the CPU has it
    print(sorted(i.get_any_name() for i in model.inputs))
"""


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_the_stream_graph_opens_with_each_runtimes_defaults(streamed: Path, runtime: str) -> None:
    """A plain InferenceSession(path) and OpenVINO's compile_model with no options, in a fresh process."""
    opened = subprocess.run([sys.executable, "-c", OPEN, str(streamed / store.STREAM_ONNX), runtime],
                            capture_output=True, text=True, timeout=300)
    assert opened.returncode == 0, opened.stderr[-2000:]
    assert opened.stdout.strip() == str(sorted(["x", "lengths"] + [state_name(n, "in") for n in STATE]))


def test_bench_stream_bounds_its_lists(streamed: Path) -> None:
    result = cli("bench", str(streamed), "--stream", "--segments", "1,2,3,4,5,6,7,8,9", "--chunks", "1")
    assert result.returncode == 2 and "at most 8 values" in result.stderr and "Traceback" not in result.stderr


@SECOND_VARIANT_SLOW
def test_bench_stream_times_every_step_and_names_what_it_leaves_out(streamed: Path, tmp_path: Path) -> None:
    """Segment 16 in chunks of 7 timed 2 updates (14 steps), and chunk 100 was dropped without a word: the
    last, shorter chunk is timed, and a chunk longer than its segment is named as not timed."""
    directory = tmp_path / "d"
    shutil.copytree(streamed, directory)
    result = cli("bench", str(directory), "--stream", "--segments", "16", "--chunks", "7,100", "--seconds", "0.05")
    assert result.returncode == 0, result.stderr
    assert "not timed: segment 16, chunk 100: the chunk is longer than the segment" in result.stderr
    report = json.loads((directory / "bench_stream.json").read_text())
    (row,) = report["results"]
    assert (row["chunk"], row["updates"], row["positions"]) == (7, 3, [7, 14, 16])
    assert report["not_timed"] == ["segment 16, chunk 100: the chunk is longer than the segment"]
    # neither graph verified (the fixture's): said as plain bench labels such rows (found by attacking: nothing)
    assert report["verified"] == {store.STREAM_ONNX: False, store.ONNX_FP32: False}
    assert f"{store.ONNX_FP32} (not verified)" in " ".join(result.stderr.split())
    mark_verified(directory, store.STREAM_ONNX)
    mark_verified(directory, store.ONNX_FP32)
    again = cli("bench", str(directory), "--stream", "--segments", "16", "--chunks", "7", "--seconds", "0.05")
    assert again.returncode == 0 and "not verified" not in again.stderr, again.stderr
    assert json.loads((directory / "bench_stream.json").read_text())["verified"] == {
        store.STREAM_ONNX: True, store.ONNX_FP32: True}
    mark_verified(directory, store.STREAM_ONNX, backends=("tract-cpu",))  # not the runtime timed (review)
    again = cli("bench", str(directory), "--stream", "--segments", "16", "--chunks", "7", "--seconds", "0.05")
    assert json.loads((directory / "bench_stream.json").read_text())["verified"][store.STREAM_ONNX] is False


def triton_client_models(readme: str) -> list[str]:
    """The models a Triton bundle README's client code asks for; the code itself must compile."""
    block = readme.split("import numpy as np, tritonclient.http as http")[1].split("\nEach `config.pbtxt`")[0]
    code = "import numpy as np, tritonclient.http as http" + "\n".join(
        line[4:] if line.startswith("    ") else line for line in block.splitlines())
    compile(code, "README.md", "exec")
    return re.findall(r'client\.infer\("([a-z_]+)"', code)


def test_a_triton_bundle_without_a_stream_model_shows_client_code_for_what_it_serves(model_dir: Path,
                                                                                     tmp_path: Path) -> None:
    """Found by attacking: for a model that does not stream, the Triton bundle's README showed client code
    for attention_lstm_stream only, a model the bundle does not ship. It now shows a request to
    attention_lstm, and the stream code only where the stream model ships."""
    from attn_export.runtime.bundle import unpack

    mark_verified(model_dir, store.ONNX_FP32)
    made = cli("bundle", str(model_dir), "--for", "triton", "--out", str(tmp_path / "t.tar.gz"))
    assert made.returncode == 0, made.stderr
    unpacked = unpack(tmp_path / "t.tar.gz", tmp_path / "t")
    assert sorted(p.name for p in (unpacked / "model_repository").iterdir()) == ["attention_lstm"]
    readme = (unpacked / "README.md").read_text()
    said = readme.split("## Said when this bundle was made")
    assert triton_client_models(readme) == ["attention_lstm"] and "attention_lstm_stream" not in said[0]
    # why it is missing, in the README too: it was said on the host's console only (found by attacking)
    assert f"- no attention_lstm_stream: no {store.STREAM_ONNX} here" in said[1]
    assert f"note: no attention_lstm_stream: no {store.STREAM_ONNX} here (run attn-export export {model_dir} --stream, " \
           f"then attn-export verify {model_dir})" in " ".join(made.stderr.split())  # said, not left to be noticed (found by attacking)
    again = cli("bundle", str(unpacked), "--for", "triton", "--out", str(tmp_path / "u.tar.gz"))
    assert again.returncode == 2 and again.stderr.startswith(f"Error: {unpacked} is a Triton bundle"), again.stderr
    # found by attacking: a recorded model.onnx deleted was left out of the repository, whose README still served it
    (model_dir / store.ONNX_FP32).unlink()
    missing = cli("bundle", str(model_dir), "--for", "triton", "--out", str(tmp_path / "m.tar.gz"))
    assert missing.returncode == 2 and f"{store.ONNX_FP32} is missing" in missing.stderr, missing.stderr
    assert not (tmp_path / "m.tar.gz").exists() and not (tmp_path / "u.tar.gz").exists()


def test_an_fp16_stream_refuses_a_value_past_what_it_holds_but_not_in_a_rows_padding(streamed: Path) -> None:
    """The FP16 stream graph casts to FP16 after the normalisation like model.fp16.onnx: a value past mean +-
    65504 std in a valid step is refused (one line, its row and step); the same value in a step past a row's
    length is padding, replaced before the graph sees it, and accepted."""
    info = store.Store(streamed).info
    far = np.float32(info.mean[0] + 1e6 * info.std[0])
    with Predictor.load(streamed, precision="fp16", allow_unverified=True) as half:
        stream = half.stream(batch=2)
        chunk = np.zeros((2, 3, info.input_size), np.float32)
        chunk[1, 2, 0] = far
        assert len(stream.push(chunk, lengths=[3, 2])) == 2  # row 1's step 2 is padding
        with pytest.raises(BadInput, match=r"^chunk holds .* at row 1, step 2, feature 0: 1e\+06 standard deviations "
                                           r".* that model\.stream\.fp16\.onnx \(FP16\) holds"):  # what runs it
            stream.push(chunk)


@pytest.mark.parametrize("streamed", ["linear"], indirect=True)
def test_bench_against_torch_with_only_stream_graphs_verified_says_so(streamed: Path, tmp_path: Path) -> None:
    """Found by attacking: model.onnx exported again (other bytes, never verified) while the stream graphs
    stayed verified; bench --against torch timed PyTorch alone, exit 0, advised --backends ort-cpu that was
    already given, and replaced bench.json. A stream graph is not timed against PyTorch (bench --stream)."""
    directory = tmp_path / "d"
    shutil.copytree(streamed, directory)
    assert cli("verify", str(directory), "--backends", "torch-cpu,ort-cpu").returncode == 0
    assert cli("export", str(directory), "--opset", "18").returncode == 0  # new bytes: model.onnx unverified
    (directory / "bench.json").write_text("{}")  # whatever was there stays
    result = cli("bench", str(directory), "--against", "torch", "--seconds", "0.05", "--backends", "ort-cpu")
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert "the whole-sequence graphs verify passed on the bytes here, and there are none" in lines[0]
    assert (directory / "bench.json").read_text() == "{}"


@pytest.mark.parametrize("streamed", ["linear"], indirect=True)
def test_bench_stream_takes_the_directory_lock(streamed: Path, tmp_path: Path) -> None:
    """Found by attacking: every writing command but bench --stream refused a directory another process was
    writing; it wrote bench_stream.json into it."""
    import fcntl

    directory = tmp_path / "d"
    shutil.copytree(streamed, directory)
    with open(directory / store.LOCK, "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        result = cli("bench", str(directory), "--stream", "--segments", "16", "--chunks", "4", "--seconds", "0.05")
    assert result.returncode == 1 and "is being written by another attn-export process" in result.stderr
    assert not list(directory.glob("bench_stream*"))


def test_a_value_that_normalises_past_float32_is_refused_by_fp32_predict_and_stream(tmp_path: Path) -> None:
    """Found by attacking: a step of float32's largest value (a sensor's "no data") normalised to inf in a
    model whose features have a std below 1; the stream graph then carried NaN in its state, and every later
    update answered NaN, exit 0. FP32 now has an input range too, float32's own after normalising: whole
    predict and a stream refuse the value in one line, and the stream keeps its state."""
    rng = np.random.default_rng(0)
    y = np.arange(80) % 2
    x = (rng.normal(size=(80, 12, 3)) * 0.1 + 0.3 * y[:, None, None]).astype(np.float32)  # std about 0.2
    np.savez(tmp_path / "small.npz", x=x, y=y)
    directory = tmp_path / "m"
    for args in (("train", str(directory), "--set", 'data.name="files"', "--set",
                  f'data.train="{tmp_path / "small.npz"}"', "--set", "model.hidden_size=8", "--set", "train.epochs=1"),
                 ("export", str(directory), "--stream")):
        result = cli(*args)
        assert result.returncode == 0, result.stderr
    huge = x[:1, :6].copy()
    huge[0, 2, 1] = np.finfo(np.float32).max
    with Predictor.load(directory, allow_unverified=True) as predictor:
        with pytest.raises(BadInput, match=r"^sequence 0 holds 3\.40282e\+38 at step 2, feature 1: .* standard "
                                           r"deviations from the training mean, past the 3\.40282e\+38 that "
                                           r"model\.onnx \(FP32\) holds after normalising; expected values within "
                                           r"[^;]* for that feature$"):
            predictor.predict([huge[0]])
        stream = predictor.stream()
        stream.push(x[:1, :2])
        with pytest.raises(BadInput, match=r"^chunk holds 3\.40282e\+38 at row 0, step 2, feature 1"):
            stream.push(huge)
        assert stream.steps.tolist() == [2]
        fresh = predictor.stream()
        fresh.push(x[:1, :2])
        assert np.array_equal(stream.push(x[:1, 2:6])[0].probabilities, fresh.push(x[:1, 2:6])[0].probabilities)

        def spoiled(feeds):  # type: ignore[no-untyped-def]
            """A runtime answering NaN state (a test double: which inputs make a real one do so is not shown)."""
            out = real(feeds)
            return {k: (np.full_like(v, np.nan) if k == state_name("c", "out") else v) for k, v in out.items()}

        real = stream.backend.run_feeds
        stream.backend.run_feeds = spoiled  # type: ignore[method-assign]
        with pytest.raises(WorkFailed, match=r"computed a non-finite .* from this chunk; expected finite state \(the "
                                             r"stream keeps its state from before the chunk\)"):
            stream.push(x[:1, 6:8])
        stream.backend.run_feeds = real  # type: ignore[method-assign]
        assert stream.steps.tolist() == [6]


def test_a_schedule_is_run_on_an_engine_only_when_its_profile_takes_every_chunk_it_feeds() -> None:
    """Found by review: verify checked a schedule's widest chunk against an engine's profile only, so one whose
    profile starts at 4 steps was fed the widening schedule's chunks of 1 and 2 and failed. A stand-in for the
    engine's profile check (``accepts``: what TensorRT's backend answers; TensorRT itself is not here)."""
    from attn_export.runtime.verify import _outside

    class Profile:
        def accepts(self, batch: int, seq: int) -> str | None:
            return None if 4 <= seq <= 64 else f"chunk {seq} outside the profile's 4..64"

    for name in SCHEDULES:
        sizes = schedule(name, 40)
        widths = {max(size, 1) for size in sizes}
        said = _outside(Profile(), 1, sizes)  # type: ignore[arg-type]
        assert (said is None) == all(4 <= w <= 64 for w in widths), (name, sizes, said)
    assert _outside(Profile(), 1, schedule("widening", 40)) == "chunk 1 outside the profile's 4..64"
    assert _outside(Profile(), 1, [7, 0, 7]) == "chunk 1 outside the profile's 4..64"  # no new step: fed 1 wide


@SECOND_VARIANT_SLOW
def test_a_stream_engine_whose_profile_starts_above_a_chunk_is_fed_padding(streamed: Path) -> None:
    """Found by attacking: a stream engine built with ``--min-seq 16`` refused an 8-step chunk (the last
    chunk of ``predict --stream 16`` on a 40-step sequence), and one built with ``--min-batch 3`` a stream of
    one row. Short chunks and few rows are now padded up to the profile (steps past ``lengths``, rows of
    length 0), which changes no answer. The engine is a stand-in: model.stream.onnx on ONNX Runtime,
    refusing shapes outside its profile as ``backends/tensorrt.py`` does; it does not prove TensorRT runs them."""
    from attn_export.runtime.backends.onnxrt import OrtCpuBackend
    from attn_export.runtime.streaming import Stream, state_dims
    from attn_export.runtime.trt.profile import Profile, Range

    atol, rtol = _rule(streamed)
    s = store.Store(streamed)
    artifact = s.open(store.STREAM_ONNX, need="current")
    shapes: list[tuple[int, int]] = []

    class Engine(OrtCpuBackend):
        limits = Profile(Range(3, 3, 8), Range(16, 16, 256), s.info.input_size,
                         tuple(state_dims(OrtCpuBackend(artifact).spec).items()))

        def profile(self) -> Profile:
            return self.limits

        def run_feeds(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            why = self.limits.accepts(*feeds["x"].shape[:2])
            if why is not None:
                raise BadInput(why)
            shapes.append(feeds["x"].shape[:2])
            return super().run_feeds(feeds)

    rng = np.random.default_rng(5)
    for rows in (1, 2, 4):
        x = _sequences(streamed, [300] * rows, seed=rows)
        with Engine(artifact, threads=1) as engine, OrtCpuBackend(artifact, threads=1) as plain:
            padded, free = (Stream(b, rows, lambda row: row, lambda x, valid: None) for b in (engine, plain))
            start = 0
            for width in (1, 8, 15, 16, 17, 40, 3, 130):
                lengths = rng.integers(0, width + 1, rows)
                chunk = x[:, start:start + width]
                got, want = padded.push(chunk, lengths), free.push(chunk, lengths)
                assert np.allclose(np.stack(got), np.stack(want), atol=atol, rtol=rtol), (rows, width)
                start += width
            for name in padded.state:
                assert np.allclose(padded.state[name], free.state[name], atol=atol, rtol=rtol), name
    assert min(b for b, _ in shapes) == 3 and min(t for _, t in shapes) == 16, shapes


@pytest.mark.parametrize("low, high", [(2, 6), (4, 8), (1, 3), (5, 5)])
def test_the_prefixes_verify_compares_a_stream_with_fit_an_engines_batch_range(low: int, high: int) -> None:
    """Found by review: an engine whose profile starts above batch 1 (``build.min_batch``) was fed a prefix
    alone, so a correct stream engine failed verify. Each run is now filled up to a batch the profile takes,
    with its last prefix again, and every prefix keyed to its own answer. TensorRT's profile check
    (``Profile.accepts``) on a stand-in that answers each row with its prefix length: TensorRT itself is not
    here, so this does not prove an engine runs these shapes."""
    from attn_export.runtime.compare import SweepCase
    from attn_export.runtime.streaming import Update
    from attn_export.runtime.trt.profile import Profile, Range
    from attn_export.runtime.verify import PREFIX_BATCH, _prefix_answers

    profile = Profile(Range(low, low, high), Range(1, 64, 2048), 2)
    batches: list[int] = []

    class Engine:
        def accepts(self, batch: int, seq: int) -> str | None:
            return profile.accepts(batch, seq)

        def run_feeds(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            assert profile.accepts(*feeds["x"].shape[:2]) is None, feeds["x"].shape
            batches.append(len(feeds["lengths"]))
            return {"logits": np.stack([feeds["lengths"], -feeds["lengths"]], 1).astype(np.float32)}

    lengths = np.array([17, 18, 5][:min(3, high)], np.int64)
    updates = [Update({}, np.minimum(lengths, pos)) for name in SCHEDULES for pos in np.cumsum(schedule(name, 18))]
    answers = _prefix_answers(Engine(), SweepCase(np.zeros((len(lengths), 18, 2), np.float32), lengths, True),
                              updates, "logits")
    assert set(answers) == {(b, t) for b, n in enumerate(lengths) for t in range(1, int(n))}
    assert all(answer.tolist() == [t, -t] for (_, t), answer in answers.items())
    assert all(low <= b <= min(high, PREFIX_BATCH) for b in batches), batches
