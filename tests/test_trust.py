"""What runs is what was verified: every artefact kind x every way it can go stale, foreign or contradict
``model.json``, against every command that could run or vouch for it.

The directory is made once for real (train, export, quantize --fp16 / --int8 / --int8 --method qdq, verify
on ONNX Runtime) plus one engine record: TensorRT cannot run here, so the engine's bytes are a stand-in and
its checks stop where a GPU would be needed (this proves the store's decision on it, not TensorRT's).
Each case copies that directory, breaks one thing the way a user or an attacker would, and asks:

- the store: the file is not current, and the reason names it; opening it for use raises;
- ``Predictor.load`` (what both ``predict`` commands run), ``bundle``, the device's ``info``, ``report`` and
  ``verify`` refuse or flag it, and nothing runs it (a verify row for it has no cases);
- through the real command lines (a few cases in the default run, every case under ``-m slow``): exit code
  as documented and one ``Error:`` line naming the file.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest

from attn_export.errors import AttnExportError, BadInput, NotAvailable, Untrusted
from attn_export.runtime import Predictor, store
from attn_export.runtime.bundle import pack
from attn_export.runtime.cli import main as device_main
from attn_export.runtime.store import Store
from attn_export.runtime.trt.compat import Here
from conftest import JETSON, ROOT, TINY, cli, mark_verified, rerecord

ENGINE = "model.fp16.orin.trt10.3.engine"
ORIN = Here("10.3.0", "Orin", "8.7", JETSON)
KINDS = {"fp32": "model.onnx", "fp16": "model.fp16.onnx", "int8-dynamic": "model.int8.onnx",
         "int8-qdq": "model.int8-qdq.onnx", "engine": ENGINE}


@pytest.fixture(scope="module")
def verified_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every artefact kind, made by the real commands and verified; the engine recorded as build would."""
    directory = tmp_path_factory.mktemp("trust") / "d"
    steps = [("train", str(directory), *TINY, "--set", "export.parity_max_seq=64"), ("export", str(directory)),
             ("quantize", str(directory), "--fp16", "--int8"),
             ("quantize", str(directory), "--int8", "--method", "qdq"),
             ("verify", str(directory), "--backends", "ort-cpu")]
    for args in steps:
        result = cli(*args)
        assert result.returncode == 0, result.stderr
    (directory / ENGINE).write_bytes(b"a stand-in for a plan TensorRT would build")
    spec = Store(directory).info.spec
    rerecord(directory, ENGINE, parent="model.fp16.onnx", command="build fp16", precision="fp16",
             tensorrt="10.3.0", gpu="Orin", compute_capability="8.7", platform=JETSON, io_spec=spec.to_dict(),
             profile={"x": {"min": [1, 1, spec.features], "opt": [1, 16, spec.features],
                            "max": [8, 256, spec.features]}})
    mark_verified(directory, ENGINE)
    np.savez(directory.parent / "input.npz", x=np.ones((2, 9, spec.features), np.float32),
             lengths=np.array([9, 4]))
    return directory


# ---- the ways an artefact goes wrong; each returns what the reason must say ---------------------------


def _touch_onnx(path: Path) -> None:
    """Other bytes that are still a valid graph of the same shape (a metadata entry)."""
    proto = onnx.load(str(path))
    onnx.helper.set_model_props(proto, {**{p.key: p.value for p in proto.metadata_props}, "swapped": "yes"})
    onnx.save(proto, str(path))


def _touch(directory: Path, name: str) -> None:
    if name.endswith(".onnx"):
        _touch_onnx(directory / name)
    else:
        (directory / name).write_bytes((directory / name).read_bytes() + b"\0")


def _parent(directory: Path, name: str) -> str:
    return store.read_manifest(directory)["artifacts"][name]["parent"]


def retrained(directory: Path, name: str) -> str:
    """Retrained weights: model.safetensors and model.json written and recorded anew, as train does."""
    from attn_export.checkpoint import load_model, save_model
    from attn_export.config import recipe_from_dict

    model, info = load_model(directory)
    for p in model.parameters():
        p.data += 0.01
    save_model(directory, model, recipe_from_dict(dict(info.recipe)), info.labels, "train", "retrained",
               info.train_lengths)
    return "is stale"


def model_json_edited(directory: Path, name: str) -> str:
    info = json.loads((directory / "model.json").read_text())
    info["labels"] = ["x", "y", "z"][: len(info["labels"])]
    (directory / "model.json").write_text(json.dumps(info))
    return "model.json was changed after it was recorded"


def _swap(directory: Path, name: str) -> None:
    """``name`` replaced by other bytes and recorded again, as if the command that makes it had run: the
    file itself looks fine, what was made from it does not."""
    _touch(directory, name)
    if name == store.WEIGHTS:
        store.record(directory, store.WEIGHTS, "train", versions={})
    else:
        rerecord(directory, name, parent=_parent(directory, name))


def parent_swapped(directory: Path, name: str) -> str:
    parent = _parent(directory, name)
    _swap(directory, parent)
    return f"is stale: its parent {parent} changed"


def grandparent_swapped(directory: Path, name: str) -> str:
    parent = _parent(directory, name)
    _swap(directory, _parent(directory, parent))
    return f"{parent} is stale"


def external_data(directory: Path, name: str) -> str:
    """The graph re-saved with its weights in w.bin and recorded; then w.bin changed."""
    path = directory / name
    proto = onnx.load(str(path))
    onnx.save(proto, str(path), save_as_external_data=True, location="w.bin", size_threshold=0)
    rerecord(directory, name, parent=_parent(directory, name))
    (directory / "w.bin").write_bytes((directory / "w.bin").read_bytes()[::-1])
    return "in the external file 'w.bin'"


def contradicting(directory: Path, name: str) -> str:
    """model.json says 5 classes, recorded as if train had written it; the graphs and engine have 3."""
    info = json.loads((directory / "model.json").read_text())
    info["num_outputs"], info["labels"] = 5, list("abcde")
    (directory / "model.json").write_text(json.dumps(info))
    rerecord(directory, "model.json")
    return "contradicts model.json"


def shorter_training(directory: Path, name: str) -> str:
    """model.json's training lengths cut to one step and recorded as if train had written it: verify would
    judge reduced precisions within four steps (found by attacking: a failing FP16 graph passed that way)."""
    info = json.loads((directory / "model.json").read_text())
    info["train_lengths"] = {"min": 1, "median": 1, "max": 1}
    (directory / "model.json").write_text(json.dumps(info))
    rerecord(directory, "model.json")
    return "contradicts model.json: its training lengths are"


WAYS: dict[str, Callable[[Path, str], str]] = {
    "weights retrained": retrained, "model.json changed": model_json_edited, "parent swapped": parent_swapped,
    "grandparent swapped": grandparent_swapped, "external data changed": external_data,
    "model.json contradicts the graph": contradicting, "training lengths edited": shorter_training,
}


def _applies(way: str, kind: str) -> bool:
    if kind == "fp32" and way == "grandparent swapped":  # model.onnx's parent is the root of the lineage
        return False
    # an engine is one file; its training lengths are its profile's, which its manifest entry records
    return not (kind == "engine" and way in ("external data changed", "training lengths edited"))


CASES = [pytest.param(kind, way, id=f"{kind}-{way.replace(' ', '-')}") for kind in KINDS for way in WAYS
         if _applies(way, kind)]
# through the real command lines in the default run (all of them under -m slow)
QUICK_CLI = {("fp16", "weights retrained"), ("int8-qdq", "parent swapped"), ("fp32", "model.json contradicts the graph"),
             ("engine", "grandparent swapped"), ("int8-dynamic", "external data changed")}


def _broken(verified_dir: Path, tmp_path: Path, kind: str, way: str) -> tuple[Path, str, str]:
    directory = tmp_path / "d"
    shutil.copytree(verified_dir, directory)
    name = KINDS[kind]
    said = WAYS[way](directory, name)
    return directory, name, said



@pytest.mark.parametrize("kind, way", CASES)
def test_every_reader_refuses_or_flags_what_is_no_longer_what_was_verified(verified_dir: Path, tmp_path: Path,
                                                                           kind: str, way: str) -> None:
    directory, name, said = _broken(verified_dir, tmp_path, kind, way)
    trust = Store(directory).state(name)
    assert not trust.current and name in str(trust.reason) and said in str(trust.reason), trust

    with pytest.raises(Untrusted, match=name.replace(".", r"\.")):
        Store(directory).open(name, need="verified", here=ORIN)
    if kind != "engine":
        with pytest.raises(BadInput, match=name.replace(".", r"\.")):
            Predictor.load(directory, precision=kind)
    with pytest.raises(Untrusted, match=name.replace(".", r"\.")):
        pack(directory, tmp_path / "b.tar.gz", "jetson")
    assert not (tmp_path / "b.tar.gz").exists()


def _info_line(directory: Path, name: str, capsys: pytest.CaptureFixture[str]) -> str:
    assert device_main(["info", str(directory)]) == 0
    return next(line for line in capsys.readouterr().out.splitlines() if line.strip().startswith(name + " "))


@pytest.mark.slow
@pytest.mark.parametrize("kind, way", CASES)
def test_info_report_and_verify_flag_it_and_never_run_it(verified_dir: Path, tmp_path: Path, kind: str, way: str,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    from attn_export.report import write_report
    from attn_export.verify import verify

    directory, name, said = _broken(verified_dir, tmp_path, kind, way)
    line = _info_line(directory, name, capsys)
    assert said in line and "verified" not in line.split(said)[-1], line
    report = write_report(directory).read_text()
    assert f"not current: {name}" in report.replace("\\", ""), report[:600]
    # an engine is not what verify judged here (no TensorRT): the verification of the graphs may stand
    assert kind == "engine" or "Verification PASSED" not in report, report[:600]
    try:
        result = verify(directory, "ort-cpu")
    except AttnExportError as e:  # what every target needs cannot be believed: nothing is run at all
        assert any(f in str(e) for f in ("model.json", "reference.npz", "model.safetensors")), e
        return
    row = next((r for r in result.results if r.target.artifact == name), None)
    if row is None:  # no backend asked for runs it (an engine under --backends ort-cpu): still said to be stale
        assert any(name in u and said in u for u in result.untrusted), result.untrusted
    else:
        assert row.status in ("failed", "skipped") and not row.cases and said in str(row.reason), row.reason
    assert not result.passed or kind == "engine"


@pytest.mark.parametrize("kind, way", [c for c in CASES if tuple(c.values) in QUICK_CLI])
def test_the_command_lines_refuse_with_one_line_and_the_documented_exit_code(verified_dir: Path, tmp_path: Path,
                                                                             kind: str, way: str) -> None:
    _command_lines(verified_dir, tmp_path, kind, way)


@pytest.mark.slow
@pytest.mark.parametrize("kind, way", [c for c in CASES if tuple(c.values) not in QUICK_CLI])
def test_the_command_lines_refuse_every_case(verified_dir: Path, tmp_path: Path, kind: str, way: str) -> None:
    _command_lines(verified_dir, tmp_path, kind, way)


def _device(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "attn_export.runtime", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)


def _one_error_line(result: subprocess.CompletedProcess[str], code: int, name: str) -> None:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == code, (result.returncode, result.stderr)
    assert len(lines) == 1 and lines[0].startswith("Error: ") and name in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def _command_lines(verified_dir: Path, tmp_path: Path, kind: str, way: str) -> None:
    directory, name, said = _broken(verified_dir, tmp_path, kind, way)
    data = str(verified_dir.parent / "input.npz")
    if kind == "engine":  # no TensorRT here: the engine is refused as unrunnable (3) before its bytes are read
        _one_error_line(_device("predict", str(directory), data, "--backend", "tensorrt"), 3, "tensorrt")
    else:
        _one_error_line(cli("predict", data, "--dir", str(directory), "--precision", kind), 2, name)
        _one_error_line(_device("predict", str(directory), data, "--precision", kind), 2, name)
    _one_error_line(cli("bundle", str(directory), "--out", str(tmp_path / "b.tar.gz"), "--for", "jetson"), 2, name)
    info = _device("info", str(directory))
    assert info.returncode == 0 and said in next(line for line in info.stdout.splitlines()
                                                  if line.strip().startswith(name + " "))
    verify = cli("verify", str(directory), "--backends", "ort-cpu")
    if kind == "engine":  # skipped here (no TensorRT), and said to be stale
        assert said in verify.stderr.replace("\n", " ") or verify.returncode != 0
    else:
        assert verify.returncode in (1, 2) and "Traceback" not in verify.stderr
        assert any(f in verify.stderr for f in (name, "model.json", "reference.npz")), verify.stderr


# ---- the bytes checked are the bytes run ------------------------------------------------------------


def test_a_file_swapped_after_the_check_is_not_what_runs(verified_dir: Path, tmp_path: Path) -> None:
    """The store reads a file once: swapping it after the check changes nothing that was handed out."""
    from attn_export.runtime.backends.onnxrt import OrtCpuBackend

    directory = tmp_path / "d"
    shutil.copytree(verified_dir, directory)
    s = Store(directory)
    assert s.state("model.onnx").verified is True
    original = (directory / "model.onnx").read_bytes()
    _touch_onnx(directory / "model.onnx")
    artifact = s.open("model.onnx", need="verified")
    assert artifact.data == original
    feeds = {"x": np.ones((1, 5, artifact.spec.features), np.float32), "lengths": np.array([5])}
    with OrtCpuBackend(artifact) as backend:
        assert backend.infer(feeds)["logits"].shape == (1, len(s.info.labels))
    with pytest.raises(Untrusted, match="changed after it was recorded"):
        Store(directory).open("model.onnx", need="verified")


def test_a_swap_race_never_runs_unrecorded_bytes(verified_dir: Path, tmp_path: Path) -> None:
    """A writer replaces model.onnx with another model's graph (recorded nowhere) and back, as fast as it
    can, while predictions are loaded and made: every prediction made is the verified model's, whatever the
    timing; the others are refused. Nothing depends on who wins the race."""
    directory = tmp_path / "d"
    shutil.copytree(verified_dir, directory)
    good = (directory / "model.onnx").read_bytes()
    other = tmp_path / "other.onnx"
    other.write_bytes(good)
    proto = onnx.load(str(other))
    weight = next(t for t in proto.graph.initializer if t.dims and len(t.dims) == 2)
    values = onnx.numpy_helper.to_array(weight) * 3.0
    weight.CopyFrom(onnx.numpy_helper.from_array(values, weight.name))
    onnx.save(proto, str(other))
    bad = other.read_bytes()
    x = [np.random.default_rng(1).standard_normal((12, Store(directory).info.input_size)).astype(np.float32)]
    with Predictor.load(directory) as predictor:
        expected = predictor.predict(x)[0].probabilities
    stop = threading.Event()

    def swap() -> None:
        staging = directory / ".swap.tmp"
        while not stop.is_set():
            for data in (bad, good):
                staging.write_bytes(data)
                staging.replace(directory / "model.onnx")

    writer = threading.Thread(target=swap)
    writer.start()
    ran = refused = 0
    try:
        for _ in range(60):
            try:
                with Predictor.load(directory) as predictor:
                    got = predictor.predict(x)[0].probabilities
            except Untrusted as e:
                assert "model.onnx was changed after it was recorded" in str(e)
                refused += 1
                continue
            np.testing.assert_array_equal(got, expected)
            ran += 1
    finally:
        stop.set()
        writer.join()
    assert ran + refused == 60


# ---- non-finite references and budgets ----------------------------------------------------------------


def _rewrite_reference(directory: Path, change: Callable[[str, np.ndarray], np.ndarray]) -> None:
    path = directory / "reference.npz"
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: change(k, z[k]) for k in z.files}
    np.savez_compressed(path, **arrays)  # type: ignore[arg-type]
    rerecord(directory, "reference.npz")


@pytest.mark.parametrize("what, change, said", [
    ("NaN logits", lambda k, v: np.full_like(v, np.nan) if k == "c0.out.logits" else v, "holds NaN or Inf"),
    ("inf intrinsic error", lambda k, v: np.full_like(v, np.inf) if ".intrinsic.fp32." in k else v,
     "the model's own FP32 computation overflows on"),
    ("negative intrinsic error", lambda k, v: -np.abs(v) - 1 if ".intrinsic.fp16." in k else v,
     "intrinsic FP16 error"),
])
def test_a_non_finite_reference_or_budget_fails_verify_naming_the_case(verified_dir: Path, tmp_path: Path,
                                                                       what: str, change: Callable, said: str) -> None:
    from attn_export.runtime.verify import verify

    directory = tmp_path / "d"
    shutil.copytree(verified_dir, directory)
    _rewrite_reference(directory, change)
    result = verify(directory, "ort-cpu")  # the device's verify: reference.npz is all it judges by
    assert not result.passed, what
    failed = [r for r in result.results if r.status == "failed"]
    assert failed and all(said in (r.reason or "") and "batch" in (r.reason or "") for r in failed[:1]), \
        [r.reason for r in failed]


@pytest.mark.parametrize("change, said", [
    (lambda k, v: np.zeros((), v.dtype) if k == "c0.x" else v, "c0.x is float32 of shape []; expected rank 3"),
    (lambda k, v: v[:, :1] if k == "c1.out.logits" else v, None),
    (lambda k, v: np.array("{" * 200000 + "}" * 200000) if k == "meta" else v, "nests deeper than 64 levels"),
])
def test_a_damaged_reference_is_one_line(verified_dir: Path, tmp_path: Path, change: Callable,
                                         said: str | None) -> None:
    directory = tmp_path / "d"
    shutil.copytree(verified_dir, directory)
    _rewrite_reference(directory, change)
    result = _device("verify", str(directory), "--backends", "ort-cpu")
    lines = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert result.returncode in (1, 2) and len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    if said is not None:
        assert said in lines[0], lines[0]


def test_a_reference_whose_header_claims_terabytes_is_refused_before_allocating(verified_dir: Path,
                                                                               tmp_path: Path) -> None:
    """An .npy header may declare any shape: the reader checks it against the bytes the archive holds."""
    import zipfile

    directory = tmp_path / "d"
    shutil.copytree(verified_dir, directory)
    path = directory / "reference.npz"
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (1 << 40,)})
    with zipfile.ZipFile(path, "a") as zf:
        zf.writestr("c0.huge.npy", header.getvalue() + b"\0" * 16)
    rerecord(directory, "reference.npz")
    result = _device("verify", str(directory), "--backends", "ort-cpu")
    assert result.returncode == 2 and "declares shape (1099511627776,)" in result.stderr, result.stderr
    assert result.stderr.count("Error:") == 1


def test_a_foreign_engine_for_auto_is_skipped_with_a_note_and_the_onnx_runs(verified_dir: Path, tmp_path: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """With TensorRT present (stood in for: the GPU query), an engine built for another GPU is not run."""
    from attn_export.runtime.store import trust

    directory = tmp_path / "d"
    shutil.copytree(verified_dir, directory)
    monkeypatch.setattr(trust, "this_machine", lambda: Here("10.3.0", "NVIDIA H100", "9.0", JETSON))
    with pytest.raises(NotAvailable, match="foreign engine: it was built for compute capability 8.7"):
        Store(directory).open(ENGINE, need="verified")


def test_bytes_written_again_identical_keep_their_verdict_and_other_bytes_lose_it(verified_dir: Path,
                                                                                    tmp_path: Path) -> None:
    """quantize run again writes the same bytes from the same parent: verify's verdict is tied to the bytes,
    so it stands and predict serves them; the same bytes recorded from another parent's bytes lose it."""
    directory = tmp_path / "d"
    shutil.copytree(verified_dir, directory)
    assert cli("quantize", str(directory), "--fp16", "--int8").returncode == 0
    with Store(directory) as s:
        assert [s.state(n).verified for n in ("model.fp16.onnx", "model.int8.onnx")] == [True, True]
    Predictor.load(directory, precision="int8-dynamic")
    entry = store.read_manifest(directory)["artifacts"]["model.int8.onnx"]
    store.record(directory, "model.int8.onnx", "quantize int8", parent="model.onnx", parent_sha256="0" * 64)
    with Store(directory) as s:
        assert s.state("model.int8.onnx").verified is None
    assert entry["verified"]["sha256"] == entry["sha256"]


def test_a_link_to_nothing_at_a_recorded_artefact_is_missing_everywhere(tiny_dir: Path, tmp_path: Path) -> None:
    """Found by attacking: a dangling link at model.fp16.onnx was neither present nor lacking: verify passed
    over it (PASSED, the file never named) while inspect stopped on it for the whole directory. It is missing,
    as a deleted file is."""
    from attn_export.inspect import describe_directory

    directory = tmp_path / "d"
    shutil.copytree(tiny_dir, directory)
    assert cli("quantize", str(directory), "--fp16").returncode == 0
    (directory / "model.fp16.onnx").unlink()
    (directory / "model.fp16.onnx").symlink_to(tmp_path / "nowhere")
    with Store(directory) as s:
        assert "model.fp16.onnx" in s.lacking() and s.state("model.fp16.onnx").state == "missing"
    assert describe_directory(directory)["artifacts"]["model.fp16.onnx"]["state"] == "missing"
    verified = cli("verify", str(directory), "--backends", "ort-cpu")  # as for a deleted file: named, missing
    said = " ".join(verified.stderr.split() + verified.stdout.split())
    assert verified.returncode == 0 and "model.fp16.onnx is missing; run attn-export quantize" in said, said[-800:]


def test_quantize_json_of_files_made_again_since_is_not_current_in_inspect(tiny_dir: Path, tmp_path: Path) -> None:
    """Found by attacking: after a retrain (or a quantize interrupted before it wrote quantize.json) its rows
    described files that were no longer there, and inspect listed it as a plain result."""
    from attn_export.inspect import describe_directory

    directory = tmp_path / "d"
    shutil.copytree(tiny_dir, directory)
    assert cli("quantize", str(directory), "--fp16").returncode == 0
    assert describe_directory(directory)["artifacts"]["quantize.json"]["problems"] == []
    assert cli("train", str(directory), *TINY, "--set", "train.seed=3").returncode == 0
    said = describe_directory(directory)["artifacts"]["quantize.json"]["problems"]
    assert said and all(p.startswith("not current: ") for p in said) and any("model.fp16.onnx" in p for p in said), \
        said


def test_a_report_rendered_from_files_changed_since_is_not_current_in_inspect(tiny_dir: Path, tmp_path: Path) -> None:
    """Found by attacking: after a train into the directory (or a run killed after its train), the old
    report.md said PASSED of weights that were gone, and inspect listed it, and the attention figure drawn
    with it, as plain results. report.md records the sha256 of what it was rendered from; inspect compares."""
    from attn_export.inspect import describe_directory

    directory = tmp_path / "d"
    shutil.copytree(tiny_dir, directory)
    assert cli("verify", str(directory), "--backends", "ort-cpu").returncode == 0
    assert cli("report", str(directory)).returncode == 0
    files = describe_directory(directory)["artifacts"]
    assert files["report.md"]["problems"] == [] and files["attention.png"]["problems"] == []
    # the first bench after it: the report says "Not measured yet" (found by review: a result made since was
    # not looked for)
    assert cli("bench", str(directory), "--backends", "ort-cpu", "--batch", "1", "--seq", "8", "--seconds",
               "0.05").returncode == 0
    assert describe_directory(directory)["artifacts"]["report.md"]["problems"] == [
        "not current: bench.json was made since this report"]
    assert cli("report", str(directory)).returncode == 0
    assert cli("train", str(directory), *TINY, "--set", "train.seed=3").returncode == 0
    files = describe_directory(directory)["artifacts"]
    assert "not current: model.safetensors changed since this report" in files["report.md"]["problems"]
    assert files["attention.png"]["problems"] == ["not current: drawn with report.md, which is not current"]
    assert cli("report", str(directory)).returncode == 0  # rendered again: it describes what is here (stale files)
    assert describe_directory(directory)["artifacts"]["report.md"]["problems"] == []
    (directory / "model.onnx").unlink()
    assert describe_directory(directory)["artifacts"]["report.md"]["problems"] == [
        "not current: model.onnx is gone since this report"]
    assert cli("report", str(directory)).returncode == 0
    (directory / "verify.json").unlink()
    (directory / "verify.json").symlink_to(directory / "nowhere.json")  # a link to nothing: gone
    assert describe_directory(directory)["artifacts"]["report.md"]["problems"] == [
        "not current: verify.json is gone since this report"]
    (directory / "verify.json").unlink()
    (directory / "verify.json").mkdir()  # unreadable: inspect still answers
    (directory / "manifest.json").unlink()
    said = describe_directory(directory)["artifacts"]["report.md"]["problems"]
    assert said[-1].startswith("not current: verify.json cannot be read (") and said[:-1] == [
        f"not current: {name} is no longer recorded in manifest.json" for name in ("metrics.json", "model.json",
                                                                                    "model.safetensors",
                                                                                    "reference.npz")], said
    report = directory / "report.md"
    report.write_text(report.read_text(encoding="utf-8").rstrip().rsplit("\n", 1)[0] + "\n", encoding="utf-8")
    assert describe_directory(directory)["artifacts"]["report.md"]["problems"] == [
        f"not current: it records no sha256 of what it was rendered from (made by an older attn-export, or edited): "
        f"run attn-export report {directory}"]


def test_a_verdict_stands_only_under_the_settings_it_was_judged_under(verified_dir: Path, tmp_path: Path) -> None:
    """Found by attacking: a retrain to identical weights with a tighter [verify] bar kept every earlier pass,
    and predict said the INT8 file had been judged under the new bar. A verdict records the settings its rule
    read (``ModelInfo.judged_under``) and stands only while model.json still says them."""
    directory = tmp_path / "d"
    shutil.copytree(verified_dir, directory)
    info = json.loads((directory / "model.json").read_text())
    bar = info["recipe"]["verify"]["int8_min_argmax_agreement"]
    info["recipe"]["verify"]["int8_min_argmax_agreement"] = 1.0  # as train writes it: same weights, new recipe
    info["recipe"]["build"]["max_seq"] = 1024  # the deployment range reduced precisions are judged within
    (directory / "model.json").write_text(json.dumps(info))
    rerecord(directory, "model.json")
    s = Store(directory)
    for name in ("model.int8.onnx", "model.int8-qdq.onnx"):
        moved = s.state(name)
        assert moved.current and moved.verified is None, moved
        assert (f"passed verify under settings model.json no longer has (int8_min_argmax_agreement {bar} -> 1.0, "
                "build.max_seq 0 -> 1024)") in moved.verdict, moved.verdict
    assert "build.max_seq" in s.state("model.fp16.onnx").verdict and s.state("model.fp16.onnx").verified is None
    assert s.state("model.onnx").verified is True  # FP32's rule reads neither: its verdict stands
    with pytest.raises(Untrusted, match=rf"int8_min_argmax_agreement {bar} -> 1\.0.*; verify it"):
        Predictor.load(directory, precision="int8-dynamic")
    assert cli("report", str(directory)).returncode == 0  # and the report says so (review: it said PASSED)
    report = (directory / "report.md").read_text()
    assert "Verification PASSED" not in report and "passed verify under settings model.json no longer has" in report
    assert cli("verify", str(directory), "--backends", "ort-cpu").returncode in (0, 1)
    again = Store(directory)  # judged again under model.json's settings, whichever way it went
    assert all(again.state(n).verified is not None for n in ("model.int8.onnx", "model.fp16.onnx"))


def test_the_fix_for_a_file_whose_parent_is_gone_remakes_the_parent_first(verified_dir: Path, tmp_path: Path) -> None:
    """Found by attacking: with model.onnx deleted, model.fp16.onnx's fix was "re-run quantize --fp16", which
    quantize refuses (model.onnx is missing)."""
    directory = tmp_path / "d"
    shutil.copytree(verified_dir, directory)
    (directory / "model.onnx").unlink()
    where = store.directory_word(directory)
    assert Store(directory).remake("model.fp16.onnx") == (f"re-run attn-export export {where}, then attn-export "
                                                          f"quantize {where} --fp16")


@pytest.mark.parametrize("what", ["directory", "fifo"])
def test_a_directory_or_fifo_at_an_artefacts_path_is_that_files_reason_not_inspects_error(
        verified_dir: Path, tmp_path: Path, what: str) -> None:
    """Found by attacking: a directory or a FIFO at model.fp16.onnx stopped inspect for the whole directory
    (a link to nothing no longer did). It is that file's state, damaged, with the reason; the rest is listed."""
    import os

    from attn_export.inspect import describe_directory

    directory = tmp_path / "d"
    shutil.copytree(verified_dir, directory)
    (directory / "model.fp16.onnx").unlink()
    if what == "directory":
        (directory / "model.fp16.onnx").mkdir()
    else:
        os.mkfifo(directory / "model.fp16.onnx")
    said = "is a directory" if what == "directory" else "is a FIFO (named pipe)"
    trust = Store(directory).state("model.fp16.onnx")
    assert trust.state == "damaged" and said in str(trust.reason), trust
    files = describe_directory(directory)["artifacts"]
    assert files["model.fp16.onnx"]["state"] == "damaged" and files["model.fp16.onnx"]["size_bytes"] is None
    assert said in files["model.fp16.onnx"]["problems"][0]
    assert files["model.onnx"]["state"] == "current"
    result = cli("inspect", str(directory))
    assert result.returncode == 0 and "model.fp16.onnx" in result.stdout, result.stderr
    refused = cli("bundle", str(directory), "--out", str(tmp_path / "b.tar.gz"), "--for", "cpu")  # (review:
    assert refused.returncode == 2 and said in refused.stderr, refused.stderr  # it was dropped without a word)
    assert not (tmp_path / "b.tar.gz").exists()


def test_the_fix_for_a_q_dq_graph_of_a_model_loaded_without_data_is_not_a_quantize_that_refuses(
        verified_dir: Path, tmp_path: Path) -> None:
    """Found by attacking: after `load` into an earlier run's directory, the stale Q/DQ graph's fix was "re-run
    attn-export quantize DIR --int8 --method qdq", which refuses: calibration needs training data, which a model
    loaded without a recipe's [data] has none of."""
    directory = tmp_path / "d"
    shutil.copytree(verified_dir, directory)
    info = json.loads((directory / "model.json").read_text())
    info["recipe"]["data"]["name"] = "none"  # as load records a checkpoint given no recipe's data
    (directory / "model.json").write_text(json.dumps(info))
    rerecord(directory, "model.json")
    _swap(directory, "model.onnx")  # exported again: the Q/DQ graph made from the earlier one is stale
    fix = Store(directory).remake("model.int8-qdq.onnx")
    assert fix is not None and fix.startswith(f"remove {directory / 'model.int8-qdq.onnx'}: Q/DQ calibration draws "
                                              "on the training data"), fix
    assert Store(directory).remake("model.int8.onnx") == (  # the dynamic graph needs no data: quantize remakes it
        f"re-run attn-export quantize {store.directory_word(directory)} --int8")
