"""Bundles: what goes in, a round trip through bundle / unbundle and the runtime, and archives that must be
refused without writing anything outside the target."""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnx.numpy_helper
import pytest

from attn_export.runtime import store
from attn_export.runtime.bundle import BUNDLE_JSON, MAX_RATIO, pack, unpack
from attn_export.runtime.dispatch import verify_by_name
from attn_export.errors import BadInput, DataError, MissingPrerequisite, Untrusted
from attn_export.runtime import Predictor

from conftest import cli, mark_verified, rerecord, wrong_decisions_where
from test_runtime import BLOCKER, one_by_one, save_inputs, sequences


def names(archive: Path) -> list[str]:
    with tarfile.open(archive) as tar:
        return tar.getnames()


def test_bundle_holds_what_a_device_needs(model_dir: Path, tmp_path: Path) -> None:
    (model_dir / "model.fp32.Orin.trt10.3.0.engine").write_bytes(b"engine")
    rerecord(model_dir, "model.fp32.Orin.trt10.3.0.engine", parent="model.onnx", command="build", precision="fp32",
             io_spec=store.Store(model_dir).info.spec.to_dict())
    cpu = pack(model_dir, tmp_path / "cpu.tar.gz", "cpu")
    members = names(cpu.path)
    for name in ("model.json", "manifest.json", "model.onnx", "reference.npz", "README.md", "requirements.txt",
                 BUNDLE_JSON, "runtime/attn_export/runtime/predictor.py",
                 "runtime/attn_export/runtime/backends/onnxrt.py", "runtime/attn_export/runtime/inputs.py",
                 "runtime/attn_export/runtime/bundle.py"):
        assert name in members, name
    assert "model.safetensors" not in members and "metrics.json" not in members
    with tarfile.open(cpu.path) as tar:  # no INT8 graph here: nothing to say about running one
        readme = tar.extractfile("README.md").read().decode()  # type: ignore[union-attr]
        assert "one sequence at a time" not in readme and "VNNI" not in readme
    assert not any(n.endswith(".engine") for n in members)
    assert not any(Path(n).name in ("train.py", "model.py", "checkpoint.py") for n in members)
    jetson = pack(model_dir, tmp_path / "jetson.tar.gz", "jetson")
    assert "model.fp32.Orin.trt10.3.0.engine" in names(jetson.path)
    with tarfile.open(jetson.path) as tar:
        readme = tar.extractfile("README.md").read().decode()  # type: ignore[union-attr]
        listing = json.loads(tar.extractfile(BUNDLE_JSON).read())  # type: ignore[union-attr]
    # the README builds what the bundled ONNX files allow: FP32 only here, and the bundle says why
    assert "PYTHONPATH=runtime python3 -m attn_export.runtime build . --target jetpack6 " in readme  # the default
    assert "build . --fp16" not in readme
    assert any("no model.fp16.onnx" in n and "attn-export quantize --fp16" in n for n in jetson.notes)
    assert not any("no TensorRT engine" in n for n in jetson.notes)  # this one holds an engine
    assert "PYTHONPATH=runtime python3 -m attn_export.runtime verify ." in readme
    with tarfile.open(jetson.path) as tar:  # cuda-python of the JetPack's CUDA major (13 needs a CUDA 13 driver)
        requirements = tar.extractfile("requirements.txt").read().decode()  # type: ignore[union-attr]
    assert "cuda-python==12.*" in requirements.split()
    with tarfile.open(pack(model_dir, tmp_path / "jp5.tar.gz", "jetson", "jetpack5").path) as tar:
        assert "cuda-python==11.*" in tar.extractfile("requirements.txt").read().decode().split()  # type: ignore[union-attr]
    assert listing["for"] == "jetson" and listing["target"] == "jetpack6" and listing["files"]["model.onnx"]["sha256"] == \
        store.sha256_file(model_dir / "model.onnx")


def test_a_cpu_bundle_names_the_session_option_for_each_graph_a_plain_session_needs_it_for(
        model_dir: Path, tmp_path: Path) -> None:
    """On an x86 CPU without VNNI a plain ``InferenceSession`` saturates u8 x s8 products, so a CPU bundle's
    README names the option that keeps them exact (``plain_session_needs``), read from each packed graph's bytes:
    the Q/DQ graph's always; the dynamic graph's not since quantize stores its weights as u8 (u8 x u8), but for
    one made before, whose s8 weights this test writes back (the same integers) and records as quantize's."""
    from onnx import TensorProto

    from attn_export.runtime.backends.onnxrt import INTEGER_WEIGHTS

    for args in (("--int8",), ("--int8", "--method", "qdq")):
        assert cli("quantize", str(model_dir), *args).returncode == 0

    def readme() -> tuple[str, list[str]]:
        bundled = pack(model_dir, tmp_path / "cpu.tar.gz", "cpu")
        with tarfile.open(bundled.path) as tar:
            text = " ".join(tar.extractfile("README.md").read().decode().split())  # type: ignore[union-attr]
        return text, [n for n in bundled.notes if "made before" in n]

    keys = ("`options.add_session_config_entry(KEY, \"1\")` and pass `sess_options=options`, with KEY "
            "- `session.qdqisint8allowed` for `model.int8-qdq.onnx`")
    text, older = readme()
    assert "saturate, so `model.int8-qdq.onnx` would not give the answers verify judged" in text and keys in text
    assert ("`model.int8.onnx` stores its weights as u8, so ONNX Runtime multiplies u8 x u8, which it adds exactly "
            "on every CPU (u8 x s8 it saturates on an x86 CPU without VNNI): a plain `InferenceSession` of it needs "
            "no session option for its integer products to be the ones verify's CPU computed.") in text
    assert "session.x64quantprecision" not in text and older == []
    proto = onnx.load(str(model_dir / "model.int8.onnx"))
    tensors = {t.name: t for t in proto.graph.initializer}
    weights = {n.input[i] for n in proto.graph.node for pair in INTEGER_WEIGHTS.get(n.op_type, ()) for i in pair}
    assert weights and all(tensors[w].data_type == TensorProto.UINT8 for w in weights)
    for w in weights:
        signed = (onnx.numpy_helper.to_array(tensors[w]).astype(np.int16) - 128).astype(np.int8)
        tensors[w].CopyFrom(onnx.numpy_helper.from_array(signed, w))
    onnx.save(proto, str(model_dir / "model.int8.onnx"))
    rerecord(model_dir, "model.int8.onnx", parent="model.onnx", command="quantize int8-dynamic",
             precision="int8-dynamic")
    text, older = readme()
    assert ("saturate, so `model.int8.onnx` and `model.int8-qdq.onnx` would not give the answers verify judged"
            in text), text
    assert ("with KEY - `session.x64quantprecision` for `model.int8.onnx` - `session.qdqisint8allowed` for "
            "`model.int8-qdq.onnx`") in text and "stores its weights as u8" not in text
    assert older == ["model.int8.onnx was made before attn-export stored a dynamic INT8 graph's weights as u8: a "
                     "plain InferenceSession of it needs a session option on an x86 CPU without VNNI (the README says "
                     "which); attn-export quantize DIR --int8 remakes it (then verify DIR and bundle again)"]


def test_a_file_shipped_unverified_is_named_with_where_it_can_be_verified(model_dir: Path, tmp_path: Path) -> None:
    """Found by attacking: never-verified INT8 graphs were bundled without a word; on the device verify said
    PASSED (it judges INT8 by structure only and records no verdict) and predict refused them, telling it to
    run the device's verify, which cannot help. Bundle now names each file the device will refuse, INT8 to be
    verified on the host; the device's refusal says the same."""
    assert cli("quantize", str(model_dir), "--fp16", "--int8").returncode == 0  # neither verified
    bundled = pack(model_dir, tmp_path / "cpu.tar.gz", "cpu")
    with tarfile.open(bundled.path) as tar:  # how to run the INT8 graph by hand, where one ships
        readme = " ".join(tar.extractfile("README.md").read().decode().split())  # type: ignore[union-attr]
    assert "`model.int8.onnx` runs one sequence at a time" in readme and "give it one sequence per run" in readme
    # and that, its weights stored as u8, a plain session of it needs no option on any CPU (next test)
    assert "`model.int8.onnx` stores its weights as u8" in readme and "session.x64quantprecision" not in readme
    unproven = [n for n in bundled.notes if n.startswith("never verified")]
    where = store.directory_word(model_dir)  # the host's command names it; the device's copy is the device's
    assert unproven == [
        "never verified, so the device refuses it until verify passes: model.fp16.onnx; verify it (attn-export verify "
        f"{where}; on a device, PYTHONPATH=runtime python3 -m attn_export.runtime verify DIR)",
        "never verified, so the device refuses it until verify passes: model.int8.onnx; verify it on the host "
        f"(attn-export verify {where}) and bundle again: a device judges INT8 by structure only, which records no "
        "verdict"]
    assert not any("model.onnx;" in n for n in bundled.notes)  # verified: nothing to say
    with pytest.raises(Untrusted, match=re.escape("model.int8.onnx has never been verified; verify it on the host "
                                                  "(attn-export verify DIR) and bundle again")):
        Predictor.load(bundled.path, precision="int8-dynamic")
    with pytest.raises(Untrusted, match=re.escape(f"model.int8.onnx has never been verified; verify it (attn-export "
                                                  f"verify {store.directory_word(model_dir)}; on a device")):
        Predictor.load(model_dir, precision="int8-dynamic")  # on the host the host's verify does it
    # found by review: unpacked, the device's verify was "PYTHONPATH=runtime ..." here and had the package's path
    # in verify_by_name's hints: one spelling now, the package the directory ships
    assert cli("unbundle", str(bundled.path), str(tmp_path / "dev")).returncode == 0
    shipped = f"PYTHONPATH={store.directory_word(tmp_path / 'dev' / 'runtime')} python3 -m attn_export.runtime verify"
    with pytest.raises(Untrusted) as refused:
        Predictor.load(tmp_path / "dev", precision="fp16")
    assert f"verify it ({shipped} {store.directory_word(tmp_path / 'dev')})" in str(refused.value), refused.value
    assert verify_by_name(store.Store(tmp_path / "dev"), "tract-cpu").startswith(shipped)
    assert not any(n.startswith("never verified") for n in pack(model_dir, tmp_path / "j.tar.gz", "jetson").notes)
    # found by review: an INT8 engine is built and verified on the device, never on the host
    engine = "model.int8-qdq.Orin.trt10.3.0.engine"
    (model_dir / engine).write_bytes(b"engine")
    rerecord(model_dir, engine, parent="model.onnx", command="build", precision="int8-qdq",
             io_spec=store.Store(model_dir).info.spec.to_dict())
    s = store.Store(model_dir)
    assert s.host_judges("model.int8.onnx") and not s.host_judges(engine) and not s.host_judges("model.fp16.onnx")
    assert s.how_to_verify(engine, for_device=True).startswith(f"(attn-export verify {store.directory_word(model_dir)}; "
                                                                "on a device")
    mark_verified(model_dir, "model.int8.onnx", passed=False)
    failed = pack(model_dir, tmp_path / "failed.tar.gz", "cpu")  # left out: the next test
    assert "model.int8.onnx" not in names(failed.path) and "model.fp16.onnx" in names(failed.path)


def test_a_graph_that_failed_verify_is_left_out_of_a_cpu_bundle_so_the_devices_verify_passes(
        model_dir: Path, tmp_path: Path) -> None:
    """Found by attacking: a CPU bundle shipped a graph that failed verify, so the device's first `verify .`, the
    README's second command, failed on it again, and predict refused it anyway. It is left out now, with a note;
    the device says why it is not there; a failed FP32 graph, which every other one derives from, is refused."""
    assert cli("quantize", str(model_dir), "--fp16").returncode == 0
    wrong_decisions_where(model_dir / "model.fp16.onnx", [  # every decision flipped
        onnx.helper.make_node("Constant", [], ["bug.where"], value=onnx.numpy_helper.from_array(np.array([[True]])))],
        "bug.where")
    rerecord(model_dir, "model.fp16.onnx", parent="model.onnx", command="quantize", precision="fp16")
    assert cli("verify", str(model_dir), "--backends", "ort-cpu").returncode == 1
    bundled = pack(model_dir, tmp_path / "cpu.tar.gz", "cpu")
    assert "model.fp16.onnx" not in names(bundled.path) and "model.onnx" in names(bundled.path)
    assert ("left out, failed verify: model.fp16.onnx; a device refuses it, and its `verify .` would fail on it again "
            f"(attn-export verify {model_dir} says why; fix it and bundle again)") in bundled.notes, bundled.notes
    folder = unpack(bundled.path, tmp_path / "device")
    ran = device("verify", ".", runtime=folder / "runtime", cwd=folder)
    assert ran.returncode == 0 and "PASSED" in ran.stderr, ran.stderr
    save_inputs(tmp_path / "in.npz", sequences(model_dir, 2))
    refused = device("predict", ".", str(tmp_path / "in.npz"), "--precision", "fp16", runtime=folder / "runtime",
                     cwd=folder)
    assert refused.returncode == 2, refused.stderr
    assert "model.fp16.onnx is not in this bundle" in refused.stderr and "failed verify" in refused.stderr
    mark_verified(model_dir, "model.onnx", passed=False)
    with pytest.raises(Untrusted, match=re.escape("not bundling for a CPU: model.onnx and model.fp16.onnx failed verify, "
                                                  "which leaves no FP32 graph to run or derive from")):
        pack(model_dir, tmp_path / "none.tar.gz", "cpu")
    assert not (tmp_path / "none.tar.gz").exists()


def test_bundle_refuses_an_untrustworthy_directory(model_dir: Path, tmp_path: Path) -> None:
    path = model_dir / "model.onnx"
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(Untrusted, match="model.onnx was changed after it was recorded"):
        pack(model_dir, tmp_path / "b.tar.gz")
    assert not (tmp_path / "b.tar.gz").exists()
    with pytest.raises(BadInput, match="bundle target 'phone' is unknown"):
        pack(model_dir, tmp_path / "b.tar.gz", "phone")


def test_round_trip_and_runtime_from_archive(model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = pack(model_dir, tmp_path / "b.tar.gz").path
    target = unpack(archive, tmp_path / "device")
    assert (target / "model.onnx").read_bytes() == (model_dir / "model.onnx").read_bytes()
    seqs = sequences(model_dir, 12)
    refs = one_by_one(model_dir, seqs)
    scratch = tmp_path / "tmpdir"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    for source in (target, archive):
        with Predictor.load(source) as predictor:
            preds = predictor.predict(seqs)
            assert any("model.safetensors is not here" in n for n in predictor.notes)
        assert [p.index for p in preds] == [int(r["logits"][0].argmax()) for r in refs]
    assert not any(scratch.iterdir())  # the archive is read in place: nothing extracted
    with pytest.raises(BadInput, match=r"exists and is not empty \(it holds README.md and \d+ more\); expected a "
                                        "new directory or an empty one"):
        unpack(archive, target)


def test_bundled_runtime_runs_alone_without_torch(model_dir: Path, tmp_path: Path) -> None:
    """The bundle's own runtime/ (not the repository) with torch, typer, rich and onnx unimportable."""
    device = unpack(pack(model_dir, tmp_path / "b.tar.gz").path, tmp_path / "device")
    seqs = sequences(model_dir, 10)
    save_inputs(device / "in.npz", seqs)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = "runtime"
    code = BLOCKER + ("import runpy, sys\nsys.argv = ['x', '.', 'in.npz', '--json']\n"
                      "import attn_export\nassert attn_export.__file__.startswith(%r), attn_export.__file__\n"
                      "runpy.run_module('attn_export.runtime', run_name='__main__')" % str(device / "runtime"))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=device, env=env,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    refs = one_by_one(model_dir, seqs)
    assert [p["index"] for p in out["predictions"]] == [int(r["logits"][0].argmax()) for r in refs]
    # the host's stages are not in the device package: said as such (found by attacking: a bare
    # "No module named 'attn_export.pipeline'")
    # (-S: no site-packages, where this test's own editable install of attn-export would answer)
    host = subprocess.run([sys.executable, "-S", "-c", "import attn_export as ax\nax.run"], capture_output=True,
                          text=True, cwd=device, env=env, timeout=300)
    assert host.returncode == 1 and host.stderr.strip().splitlines()[-1] == (
        "ImportError: attn_export.run is not in the device package a bundle ships (attn_export.runtime: Predictor); "
        "it is on the host: pip install attn-export"), host.stderr
    # and its __all__ and dir() offer only what it ships (found by attacking: `from attn_export import *` failed)
    listed = subprocess.run([sys.executable, "-S", "-c", "import attn_export as ax\nprint(ax.__all__, "
                             "[n for n in dir(ax) if not n.startswith('__')])"], capture_output=True, text=True,
                            cwd=device, env=env, timeout=300)
    assert listed.stdout.split("] [") == ["['BuildOptions', 'Prediction', 'Predictor', '__version__', 'build_engine'",
                                          "'BuildOptions', 'Prediction', 'Predictor', 'build_engine']\n"], listed


def device(*args: str, runtime: Path, cwd: Path, prelude: str = BLOCKER) -> subprocess.CompletedProcess[str]:
    """The device's command line from ``runtime`` (a bundle's runtime/ folder), torch, typer, rich and onnx
    unimportable, as a device runs it: ``PYTHONPATH=runtime python3 -m attn_export.runtime ARGS``."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(runtime)
    code = prelude + "import runpy, sys\nsys.argv = ['x', *%r]\nrunpy.run_module('attn_export.runtime', " \
        "run_name='__main__')" % (list(args),)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


def test_a_device_unpacks_a_bundle_with_every_check_using_its_own_runtime(model_dir: Path, tmp_path: Path) -> None:
    """Found by attacking: a device (JetPack 5's Python 3.8 cannot install the host package) had only plain
    tar, which checks nothing against bundle.json. The device's command line unpacks as unbundle does: its
    runtime/ taken out of the archive first, then every file checked before anything is written."""
    archive = pack(model_dir, tmp_path / "b.tar.gz").path
    with tarfile.open(archive) as tar:  # what `tar -xzf b.tar.gz -C rt runtime` does
        tar.extractall(tmp_path / "rt", members=[m for m in tar.getmembers() if m.name.startswith("runtime/")])
    made = device("unpack", str(archive), "dev", runtime=tmp_path / "rt" / "runtime", cwd=tmp_path)
    assert made.returncode == 0 and made.stderr == f"unpacked {archive} -> dev\n", made.stderr
    assert (tmp_path / "dev" / BUNDLE_JSON).is_file() and store.Store(tmp_path / "dev").lacking() == []
    said = "PYTHONPATH=/tmp/ax/runtime python3 -m attn_export.runtime unpack BUNDLE.tar.gz DIR"
    assert said in (tmp_path / "dev" / "README.md").read_text()  # the bundle's README says how
    shown = device("info", ".", runtime=tmp_path / "dev" / "runtime", cwd=tmp_path / "dev")
    assert shown.returncode == 0 and "model.onnx" in shown.stdout, shown.stderr
    with tarfile.open(archive) as tar:
        members = [(m, tar.extractfile(m).read() if m.isreg() else None) for m in tar.getmembers()]  # type: ignore[union-attr]
    bad = hostile(tmp_path / "bad.tar.gz", [(m, d.replace(b"labels", b"LABELS") if m.name == "model.json" else d)
                                            for m, d in members])
    refused = device("unpack", str(bad), "other", runtime=tmp_path / "rt" / "runtime", cwd=tmp_path)
    assert refused.returncode == 2 and refused.stderr.startswith("Error: ") and "Traceback" not in refused.stderr
    assert "model.json does not match its sha256 in bundle.json" in refused.stderr and not (tmp_path / "other").exists()
    again = device("unpack", str(archive), "dev", runtime=tmp_path / "rt" / "runtime", cwd=tmp_path)
    assert again.returncode == 2 and "is not empty (it holds" in again.stderr
    # found by attacking: before `pip install -r requirements.txt`, a traceback ending in "No module named 'numpy'"
    bare = device("info", ".", runtime=tmp_path / "dev" / "runtime", cwd=tmp_path / "dev",
                  prelude="import sys\nsys.modules['numpy'] = None\n")
    assert bare.returncode == 3 and bare.stderr == (
        "Error: attn_export needs the Python package 'numpy', which is not installed for this Python; expected its "
        "requirements installed (pip install attn-export; in a bundle: python3 -m pip install -r requirements.txt)\n"
    ), bare.stderr
    # found by review: the host's own requirements (typer here) are said the same way; a module no requirement
    # names (a C module of the standard library, a host package imported by device code) stays a traceback
    for blocked, code, said in (("typer", 3, "Error: attn_export needs the Python package 'typer', which is not "
                                             "installed"), ("_lzma", 1, "Traceback")):
        host = subprocess.run([sys.executable, "-c", f"import sys\nsys.modules[{blocked!r}] = None\n"
                               "sys.argv = ['attn-export', '--help']\nfrom attn_export.errors import run_command_line\n"
                               f"run_command_line({'attn_export.cli' if blocked == 'typer' else 'lzma'!r})"],
                              capture_output=True, text=True, timeout=300)
        assert host.returncode == code and host.stderr.startswith(said), host.stderr


def test_cli_bundle_unbundle_predict(model_dir: Path, tmp_path: Path) -> None:
    archive = tmp_path / "m.tar.gz"
    result = cli("bundle", str(model_dir), "--out", str(archive), "--for", "cpu")
    assert result.returncode == 0, result.stderr
    assert "model.onnx" in result.stderr
    result = cli("unbundle", str(archive), str(tmp_path / "dev"))
    assert result.returncode == 0, result.stderr
    seqs = sequences(model_dir, 5)
    save_inputs(tmp_path / "in.npz", seqs)
    for source in (tmp_path / "dev", archive):
        result = cli("predict", str(tmp_path / "in.npz"), "--dir", str(source), "--json")
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["count"] == 5
    again = cli("unbundle", str(archive), str(tmp_path / "dev"))
    assert again.returncode == 2 and again.stderr.startswith("Error: ") and "is not empty (it holds" in again.stderr
    here = tmp_path / "here"  # found by attacking: "." in an empty directory said "Error: .: Invalid argument";
    for name in ("dot", "named"):  # an existing empty directory is now filled in place, so it may be the cwd
        (here / name).mkdir(parents=True)
        made = cli("unbundle", str(archive), "." if name == "dot" else str(here / name), cwd=here / name)
        assert made.returncode == 0, made.stderr
        assert (here / name / BUNDLE_JSON).is_file() and store.Store(here / name).lacking() == []


def test_an_existing_empty_directory_is_filled_in_place(model_dir: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Found by attacking: unbundle replaced an existing empty directory by a rename, so an empty mount point
    (a volume, an SD card) failed with "Device or resource busy", and a directory's mode and group were lost.
    It is now filled in place (the same inode, its mode kept), bundle.json last; a failure part way removes
    what was moved. (A mount point itself cannot be made here: the in-place path is what is tested.)"""
    archive = pack(model_dir, tmp_path / "m.tar.gz", "cpu").path
    target = tmp_path / "shared"
    target.mkdir()
    os.chmod(target, 0o2770)
    before = os.stat(target)
    assert unpack(archive, target) == target
    after = os.stat(target)
    assert (after.st_ino, after.st_mode) == (before.st_ino, before.st_mode)
    assert {p.name for p in target.iterdir()} == {n.split("/", 1)[0] for n in names(archive)}
    assert store.Store(target).lacking() == []
    failing = tmp_path / "failing"
    failing.mkdir()
    real = os.replace

    def replace(src: object, dst: object) -> None:
        if Path(str(dst)).name == BUNDLE_JSON:
            raise OSError(28, "No space left on device", str(dst))
        real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(Exception, match="No space left on device"):
        unpack(archive, failing)
    assert list(failing.iterdir()) == []
    monkeypatch.setattr(os, "replace", real)
    (failing / ".unbundle-in-progress").mkdir()  # what a killed unbundle leaves: ls shows nothing (review)
    with pytest.raises(BadInput, match=r"holds \.unbundle-in-progress, an unbundle's that is running or was "
                                       r"interrupted: if none runs, empty the directory and unbundle again"):
        unpack(archive, failing)


def test_a_killed_unbundles_hidden_copy_is_removed_by_the_next_unbundle_beside_it(
        model_dir: Path, tmp_path: Path) -> None:
    """An unbundle killed (SIGKILL, power cut) before its last rename left its half-unpacked copy, hidden
    (``.device.unbundle-XXXX``), beside the target for good (found by attacking). The copy is named by its
    process: the next unbundle there removes a dead process's, and keeps a live one's and any other name."""
    archive = pack(model_dir, tmp_path / "m.tar.gz", "cpu").path
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a pid that no process has now (reaped)
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    host = store.staging_prefix("")[len(str(os.getpid())):]  # "@HOST-"
    try:
        copies = {who: tmp_path / name for who, name in (
            ("dead", f".device.unbundle-{dead.pid}{host}abcd1234"),
            ("live", f".device.unbundle-{live.pid}{host}abcd1234"),
            ("mine", f".device.unbundle-{os.getpid()}{host}abcd1234"),  # another thread's, in this process
            ("other host", f".device.unbundle-{dead.pid}@elsewhere-abcd1234"),  # a shared volume's (review)
            ("a user's", f".device.unbundle-{dead.pid}{host}notes"),  # not mkdtemp's shape (review)
            ("another target's", f".device.unbundle-5-z.unbundle-{dead.pid}{host}abcd1234"))}
        for copy in copies.values():
            copy.mkdir()
            (copy / "model.onnx").write_bytes(b"half")
        unpack(archive, tmp_path / "device")
        assert [who for who, copy in copies.items() if not copy.exists()] == ["dead"]
        assert (tmp_path / "device" / BUNDLE_JSON).is_file()
    finally:
        live.kill()
        live.wait()
    # a pid past C's int is no process (review: os.kill raised OverflowError, a traceback)
    assert store.files._alive(2 ** 40) is False
    # a folder one may write into but not list (found by review: unbundle failed there) is left alone; the
    # listing is made to refuse, since this suite runs as root, whom no permission stops
    real = Path.iterdir

    def unlistable(self: Path):  # type: ignore[no-untyped-def]
        if self == tmp_path:
            raise PermissionError(13, "Permission denied", str(self))
        return real(self)

    try:
        Path.iterdir = unlistable  # type: ignore[method-assign]
        assert store.sweep_staging(tmp_path, ".device.unbundle-") == []
    finally:
        Path.iterdir = real  # type: ignore[method-assign]


def test_a_recorded_file_is_missing_where_it_should_be_not_where_it_was_never_shipped(
        model_dir: Path, tmp_path: Path) -> None:
    """Store.lacking, the one rule inspect, info, verify and the readiness tables list gone files by: an
    unpacked bundle's weights were never shipped (not missing); a shipped graph deleted on the device is; a
    directory standing at a recorded name is not "missing" and stops neither inspect nor info (found by
    reviewing: each of the four places had its own copy of the rule, and inspect's listed the weights)."""
    archive = tmp_path / "m.tar.gz"
    assert cli("bundle", str(model_dir), "--out", str(archive), "--for", "cpu").returncode == 0
    dev = tmp_path / "dev"
    assert unpack(archive, dev) is not None
    assert store.Store(dev).lacking() == []
    shown = cli("inspect", str(dev))
    assert shown.returncode == 0 and f"  {store.WEIGHTS} " not in shown.stdout, shown.stdout  # no line of its own
    (dev / "model.onnx").unlink()
    assert store.Store(dev).lacking() == ["model.onnx"]
    def info() -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "attn_export.runtime", "info", str(dev)], capture_output=True,
                              text=True, timeout=300)

    listed = info()
    # shipped, then lost on the device: unpacked again, not made again on the host (found by attacking)
    assert listed.returncode == 0 and "model.onnx is missing, which this bundle shipped (bundle.json lists it); " \
        "expected the bundle as it was unpacked: unpack its .tar.gz again" in " ".join(listed.stdout.split()), \
        listed.stdout
    (dev / "model.onnx").mkdir()
    assert store.Store(dev).lacking() == []
    for ran in (cli("inspect", str(dev)), info()):
        assert ran.returncode == 0, ran.stderr


def test_info_lists_a_graph_the_manifest_does_not_record(model_dir: Path, tmp_path: Path) -> None:
    """Found by attacking: a stream graph copied into an unpacked bundle failed verify there ("not recorded"),
    while info listed every file ok and never named it. info now lists it with verify's reason."""
    archive = tmp_path / "m.tar.gz"
    assert cli("bundle", str(model_dir), "--out", str(archive), "--for", "cpu").returncode == 0
    dev = unpack(archive, tmp_path / "dev")
    shutil.copy(dev / "model.onnx", dev / store.STREAM_ONNX)
    listed = subprocess.run([sys.executable, "-m", "attn_export.runtime", "info", str(dev), "--json"],
                            capture_output=True, text=True, timeout=300)
    assert listed.returncode == 0, listed.stderr
    row = json.loads(listed.stdout)["artifacts"][store.STREAM_ONNX]
    assert row["state"] == "unrecorded" and "is not recorded in manifest.json" in row["problems"][0], row
    ran = subprocess.run([sys.executable, "-m", "attn_export.runtime", "verify", str(dev)], capture_output=True,
                         text=True, timeout=300)
    assert ran.returncode != 0 and store.STREAM_ONNX in ran.stderr, ran.stderr


def test_a_device_is_told_what_a_device_can_do_when_its_manifest_or_model_json_is_wrong(
        model_dir: Path, tmp_path: Path) -> None:
    """Found by attacking the device: with the bundle's manifest.json gone, info listed no file and exit 0 (predict
    and verify refused every one), and verify told the device to re-run attn-export train, which it has not."""
    archive = tmp_path / "m.tar.gz"
    assert cli("bundle", str(model_dir), "--out", str(archive), "--for", "cpu").returncode == 0
    edited, lost = unpack(archive, tmp_path / "edited"), unpack(archive, tmp_path / "lost")
    (lost / store.MANIFEST).unlink()
    (lost / "model.fp16.orin.trt10.3.engine").write_bytes(b"an engine built here")  # named by no list
    info = json.loads((edited / store.MODEL_JSON).read_text())
    info["labels"] = ["x", "y", "z"][: len(info["labels"])]
    (edited / store.MODEL_JSON).write_text(json.dumps(info))

    def device(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "attn_export.runtime", *args], capture_output=True, text=True,
                              timeout=300)

    listed = device("info", str(lost))
    lines = {line.split()[0]: line for line in listed.stdout.splitlines() if line.startswith("  ")}
    assert "unpack its .tar.gz again" in lines[store.MANIFEST], listed.stdout
    for name in (store.MODEL_JSON, "model.onnx", "model.fp16.orin.trt10.3.engine"):
        assert f"{name} is not recorded in manifest.json" in lines[name], listed.stdout
    assert store.LOCK not in lines
    for directory, said in ((lost, "unpack the bundle's .tar.gz again"),
                            (edited, "expected model.json as the bundle shipped it (bundle.json lists other bytes, "
                                     "or none here): unpack the bundle's .tar.gz again")):
        ran = device("verify", str(directory))
        assert ran.returncode == 2 and ran.stderr.strip().endswith(said), ran.stderr
    # a graph's bytes changed on the device: the archive holds them, the host has nothing to remake (found by
    # attacking: "on the host, re-run attn-export export, and bundle again")
    flipped = unpack(archive, tmp_path / "flipped")
    data = bytearray((flipped / "model.onnx").read_bytes())
    data[-1] ^= 1
    (flipped / "model.onnx").write_bytes(bytes(data))
    save_inputs(tmp_path / "in.npz", sequences(model_dir, 2))
    ran = device("predict", str(flipped), str(tmp_path / "in.npz"))
    assert ran.returncode == 2 and "expected model.onnx as the bundle shipped it (bundle.json lists other bytes, or " \
        "none here): unpack the bundle's .tar.gz again" in " ".join(ran.stderr.split()), ran.stderr


# --------------------------------------------------------------------------------------------------
# hostile archives


def hostile(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def regular(name: str, data: bytes = b"x") -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), data


def link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tuple[tarfile.TarInfo, None]:
    """A member that is not a regular file: a link, or (with ``kind``) a fifo or device."""
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info, None


@pytest.mark.parametrize("in_place", [False, True])
def test_every_unbundled_file_is_fsynced_before_it_is_moved_into_the_target(
        model_dir: Path, tmp_path: Path, disk_calls: list[tuple[str, str, str]], in_place: bool) -> None:
    """Each extracted file is fsynced while it is still in the staging directory, before any rename puts it
    in the target (a new directory, or an empty one filled in place). What this records is the order of the
    calls; that a power cut then leaves no empty file is the file system's promise, not tested here."""
    archive = pack(model_dir, tmp_path / "m.tar.gz", "cpu").path
    target = tmp_path / "device"
    if in_place:
        target.mkdir()
    disk_calls.clear()  # what pack did
    events = disk_calls
    unpack(archive, target)
    first_move = next(i for i, (kind, _, _) in enumerate(events) if kind == "replace")
    staged = (target / ".unbundle-in-progress") if in_place else tmp_path  # then .device.unbundle-XXXX

    def inside(path: str) -> Path:
        parts = Path(path).relative_to(staged).parts
        return Path(*parts[0 if in_place else 1:])

    synced = {inside(path) for kind, path, _ in events[:first_move] if kind == "fsync"}
    shipped = {Path(p) for p in json.loads((target / BUNDLE_JSON).read_text())["files"]} | {Path(BUNDLE_JSON)}
    assert shipped <= synced, shipped - synced
    directories = {p.parent for p in shipped}  # the names in each directory too, the staging root included
    assert directories <= synced, directories - synced
    last_move = max(i for i, (kind, _, _) in enumerate(events) if kind == "replace")
    holder = str(target if in_place else target.parent)  # whose entries the last rename changed
    assert ("fsync", holder, holder) in events[last_move:], events[last_move:]


@pytest.mark.parametrize("members, message", [
    ([regular("ok.txt"), regular("../escaped.txt")], "climbs out of the target with '..'"),
    ([regular("a/../../escaped.txt")], "climbs out"),
    ([regular("/tmp/absolute-escape.txt")], "is an absolute path"),
    ([regular("ok.txt"), link("evil", "/etc/passwd")], "is a symbolic link"),
    ([link("evil", "../outside")], "is a symbolic link"),
    ([regular("ok.txt"), link("hard", "ok.txt", tarfile.LNKTYPE)], "is a hard link"),
    ([link("fifo", "", tarfile.FIFOTYPE)], "not a regular file"),
    ([link("disk", "", tarfile.BLKTYPE)], "not a regular file"),
    ([regular("big.bin", b"y" * 5000)], "over the 4,096-byte limit"),
    ([regular("same.txt"), regular("./same.txt")], "appears twice"),
])
def test_hostile_archive_is_refused_and_writes_nothing(tmp_path: Path, members: list, message: str) -> None:
    archive = hostile(tmp_path / "evil.tar.gz", members)
    work = tmp_path / "work"
    work.mkdir()
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    with pytest.raises(DataError, match=message):
        unpack(archive, work / "target", max_member_bytes=4096)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    assert not Path("/tmp/absolute-escape.txt").exists()
    with pytest.raises(DataError, match=message if "limit" not in message else "not a bundle"):
        Predictor.load(archive)


def test_total_size_and_member_count_limits(tmp_path: Path) -> None:
    archive = hostile(tmp_path / "many.tar.gz", [regular(f"f{i}", b"z" * 100) for i in range(5)])
    with pytest.raises(DataError, match="add up to over 300 bytes"):
        unpack(archive, tmp_path / "t", max_total_bytes=300)
    with pytest.raises(DataError, match="more than 3 members"):
        unpack(archive, tmp_path / "t", max_members=3)
    assert not (tmp_path / "t").exists()
    with pytest.raises(DataError, match="holds no bundle.json: not a bundle made by attn-export bundle"):
        unpack(archive, tmp_path / "t")


def test_changed_member_fails_the_listing(model_dir: Path, tmp_path: Path) -> None:
    archive = pack(model_dir, tmp_path / "b.tar.gz").path
    with tarfile.open(archive) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]  # type: ignore[union-attr]
    members = [(m, d.replace(b"labels", b"LABELS") if m.name == "model.json" else d) for m, d in members]
    bad = hostile(tmp_path / "bad.tar.gz", members)
    with pytest.raises(DataError, match="model.json does not match its sha256 in bundle.json"):
        unpack(bad, tmp_path / "t")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.tar.gz", "bad.tar.gz", "model"]


def _members(archive: Path) -> list[tuple[tarfile.TarInfo, bytes]]:
    with tarfile.open(archive) as tar:
        return [(m, tar.extractfile(m).read()) for m in tar.getmembers()]  # type: ignore[union-attr]


def test_a_compression_bomb_is_refused_from_its_header(tmp_path: Path) -> None:
    """A small archive declaring a member far larger than its compression could honestly give: refused from
    the header, before the member is inflated, and nothing is written."""
    archive = hostile(tmp_path / "bomb.tar.gz", [regular("model.onnx", bytes(64 << 20))])
    assert archive.stat().st_size < (64 << 20) // MAX_RATIO
    for load in (lambda: unpack(archive, tmp_path / "t"), lambda: Predictor.load(archive)):
        with pytest.raises(DataError, match=f"members add up to over .* bytes \\(at most {MAX_RATIO} times the "
                                            "archive's"):
            load()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bomb.tar.gz"]


def test_a_member_the_listing_does_not_name_is_refused(model_dir: Path, tmp_path: Path) -> None:
    members = _members(pack(model_dir, tmp_path / "b.tar.gz").path)
    extra = hostile(tmp_path / "extra.tar.gz", members[:1] + [regular("payload.bin", b"p" * 1000)] + members[1:])
    for load in (lambda: unpack(extra, tmp_path / "t"), lambda: Predictor.load(extra)):
        with pytest.raises(DataError, match=r"member 'payload.bin' is not listed in bundle.json \(nothing was "
                                            r"extracted\); expected"):
            load()
    assert not (tmp_path / "t").exists()


def test_a_bundle_repacked_with_tar_from_its_folder_still_loads(model_dir: Path, tmp_path: Path) -> None:
    """Found by attacking: ``tar czf b.tgz -C folder .`` writes the root as a member ``./`` and every name
    as ``./name``; the root was refused as "names the archive root". It is skipped: nothing to extract."""
    members = _members(pack(model_dir, tmp_path / "b.tar.gz").path)
    root = tarfile.TarInfo("./")
    root.type = tarfile.DIRTYPE
    repacked = [(root, None)] + [(tarfile.TarInfo("./" + m.name), d) for m, d in members]
    archive = hostile(tmp_path / "repacked.tar.gz", repacked)
    unpack(archive, tmp_path / "t")
    assert (tmp_path / "t" / "model.json").read_bytes() == dict((m.name, d) for m, d in members)["model.json"]
    Predictor.load(archive)


def test_a_bundle_repacked_after_its_readme_commands_ran_still_loads(model_dir: Path, tmp_path: Path) -> None:
    """Found by attacking: running the bundle's README commands with Python's defaults writes
    runtime/.../__pycache__/*.pyc, and the folder packed again was refused for those unlisted members. They
    are now passed over, never extracted: a .pyc slipped into the archive never lands, let alone runs. Any
    other unlisted member is still refused."""
    folder = unpack(pack(model_dir, tmp_path / "b.tar.gz").path, tmp_path / "b")
    # a verify here records its verdict: the folder then differs from bundle.json, which the README says
    assert "copy the\n`.tar.gz` it came in, not a re-packed folder" in (folder / "README.md").read_text()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    ran = subprocess.run([sys.executable, "-m", "attn_export.runtime", "info", "."], cwd=folder, capture_output=True,
                         text=True, env={**env, "PYTHONPATH": "runtime"}, timeout=300)
    assert ran.returncode == 0, ran.stderr
    cached = sorted(folder.glob("runtime/**/__pycache__/*.pyc"))
    assert cached  # what the README's commands leave behind
    subprocess.run(["tar", "czf", str(tmp_path / "again.tar.gz"), "-C", str(folder), "."], check=True)
    again = unpack(tmp_path / "again.tar.gz", tmp_path / "again")
    assert not list(again.glob("**/__pycache__")) and (again / "model.json").is_file()
    Predictor.load(tmp_path / "again.tar.gz").close()
    members = _members(tmp_path / "b.tar.gz")
    for i, name in enumerate(("runtime/attn_export/__pycache__/x.cpython-311.pyc", "__pycache__/x.pyc",
                              "runtime/x.pyc")):
        extra = hostile(tmp_path / f"extra{i}.tar.gz", members + [regular(name, b"not bytecode")])
        target = tmp_path / f"extra{i}"
        if name.startswith("runtime/attn_export/__pycache__/"):
            unpack(extra, target)
            assert not list(target.glob("**/*.pyc"))
            continue
        with pytest.raises(DataError, match=f"member '{re.escape(name)}' is not listed in bundle.json"):
            unpack(extra, target)


@pytest.mark.parametrize("key, value, said", [
    ("for", "nope", 'for is "nope"; expected one of cpu, jetson, triton'),
    ("schema", 99, "schema is 99; expected 1 (the bundle format this attn-export reads)"),
    # a Jetson bundle's TensorRT line: 5 was dropped by info and build; an unknown one blamed a --target flag
    ("target", 5, "target is 5; expected a TensorRT target attn-export knows (jetpack5, jetpack6, jetpack7"),
    ("target", "jetpack9", 'target is "jetpack9"; expected a TensorRT target attn-export knows'),
])
def test_an_edited_bundle_json_is_refused(model_dir: Path, tmp_path: Path, key: str, value: object,
                                          said: str) -> None:
    """Found by attacking: bundle.json's "for" and "schema" were read unchecked ("nope" and 99 unpacked and
    predicted; "for" decides what the device does with a bundle). bundle.json lists no entry of its own."""
    members = _members(pack(model_dir, tmp_path / "b.tar.gz").path)
    record = json.loads(dict((m.name, d) for m, d in members)[BUNDLE_JSON])
    record[key] = value
    edited = [(m, json.dumps(record).encode() if m.name == BUNDLE_JSON else d) for m, d in members]
    archive = hostile(tmp_path / "edited.tar.gz", edited)
    for load in (lambda: unpack(archive, tmp_path / "t"), lambda: Predictor.load(archive)):
        with pytest.raises(DataError, match=re.escape(said)):
            load()
    assert not (tmp_path / "t").exists()


def test_a_member_whose_size_differs_from_the_listing_is_refused(model_dir: Path, tmp_path: Path) -> None:
    members = _members(pack(model_dir, tmp_path / "b.tar.gz").path)
    longer = [(m, d + b" " if m.name == "model.json" else d) for m, d in members]
    with pytest.raises(DataError, match=r"model.json is [0-9,]+ bytes, bundle.json says [0-9,]+ \(nothing was "
                                        r"extracted\); expected"):
        unpack(hostile(tmp_path / "longer.tar.gz", longer), tmp_path / "t")


def test_predict_from_a_bundle_reads_only_what_it_runs(model_dir: Path, tmp_path: Path) -> None:
    """reference.npz changed in place (same size): predict never reads it, so it runs; unbundle checks every
    file, so it refuses."""
    members = _members(pack(model_dir, tmp_path / "b.tar.gz").path)
    flipped = [(m, d[:-1] + bytes([d[-1] ^ 1]) if m.name == "reference.npz" else d) for m, d in members]
    archive = hostile(tmp_path / "flipped.tar.gz", flipped)
    with Predictor.load(archive) as predictor:
        assert len(predictor.predict(sequences(model_dir, 3))) == 3
    with pytest.raises(DataError, match="reference.npz does not match its sha256 in bundle.json"):
        unpack(archive, tmp_path / "t")
    device = subprocess.run([sys.executable, "-m", "attn_export.runtime", "info", str(archive)], capture_output=True,
                            text=True, timeout=120)
    assert device.returncode == 2 and device.stderr.splitlines() == [
        f"Error: {archive}: reference.npz does not match its sha256 in bundle.json (changed or corrupt); expected "
        "the bundle as attn-export bundle wrote it (make it again on the host)"]
    intact = subprocess.run([sys.executable, "-m", "attn_export.runtime", "info", str(tmp_path / "b.tar.gz")],
                            capture_output=True, text=True, timeout=120)
    assert intact.returncode == 0 and "model.onnx" in intact.stdout and "verified" in intact.stdout, intact.stderr


def test_not_an_archive(tmp_path: Path) -> None:
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"not a tar")
    with pytest.raises(DataError, match="not a readable .tar.gz bundle"):
        unpack(junk, tmp_path / "t")
    # predict and info said what unpack says, not "neither an artefact directory nor a bundle" (found by attacking)
    for data, what in ((b"not a tar", "not gzip"), (b"", "an empty file"), (gzip.compress(b"hello"),
                                                                          "gzip, but no tar archive inside")):
        junk.write_bytes(data)
        with pytest.raises(DataError, match=re.escape(f"junk.tar.gz: not a readable .tar.gz bundle ({what}); "
                                                      "expected a bundle made by attn-export bundle")):
            Predictor.load(junk)
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(BadInput, match="neither an artefact directory nor a bundle"):
        Predictor.load(tmp_path / "notes.txt")
    with pytest.raises(DataError, match="no such file"):
        unpack(tmp_path / "missing.tar.gz", tmp_path / "t")


def test_unbundle_without_data_filter(model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Pythons without tarfile's extraction filters (3.8 before 3.8.17) take the other path."""
    archive = pack(model_dir, tmp_path / "b.tar.gz").path
    monkeypatch.delattr(tarfile, "data_filter", raising=False)
    target = unpack(archive, tmp_path / "t")
    assert (target / "model.onnx").stat().st_mode & 0o777 == 0o644
    assert np.array_equal(np.frombuffer((target / "model.onnx").read_bytes(), np.uint8),
                          np.frombuffer((model_dir / "model.onnx").read_bytes(), np.uint8))


@pytest.mark.slow  # 15-30 s: kept out of the default run's time
def test_a_loaded_models_jetson_bundle_says_how_to_give_its_sequence_range(tmp_path: Path) -> None:
    """A model ``load`` imported has no training lengths, so its engines' sequence range must be given. Found
    by attacking: ``bundle --for jetson`` said "give --opt-seq and --max-seq", options only ``build`` has;
    the line now names the recipe keys and the ``load --set`` that gives them, and that works."""
    import torch

    lstm = torch.nn.LSTM(3, 8, batch_first=True)
    torch.save({**{f"lstm.{k}": v for k, v in lstm.state_dict().items()}, "fc.weight": torch.randn(1, 8),
                "fc.bias": torch.zeros(1)}, tmp_path / "user.pt")
    for name, sets in (("plain", ()), ("ranged", ("--set", "build.opt_seq=16", "--set", "build.max_seq=64"))):
        directory = tmp_path / name
        for args in (("load", str(tmp_path / "user.pt"), str(directory), *sets), ("export", str(directory))):
            made = cli(*args)
            assert made.returncode == 0, made.stderr
        mark_verified(directory, "model.onnx")
        result = cli("bundle", str(directory), "--out", str(tmp_path / f"{name}.tar.gz"), "--for", "jetson",
                     "--target", "jetpack6")
        if not sets:
            assert result.returncode == 2, result.stderr
            assert ("expected build.opt_seq and build.max_seq in the model's recipe (on the host: attn-export load "
                    "CHECKPOINT DIR --set build.opt_seq=N --set build.max_seq=M), or build's --opt-seq and --max-seq"
                    ) in result.stderr
            assert not (tmp_path / f"{name}.tar.gz").exists()
        else:
            assert result.returncode == 0, result.stderr
            with tarfile.open(tmp_path / f"{name}.tar.gz") as tar:
                readme = tar.extractfile("README.md").read().decode()  # type: ignore[union-attr]
            assert "--opt-seq 16 --max-seq 64" in readme


@pytest.mark.parametrize("name, said", [
    ("jetpack8", "--target 'jetpack8' is unknown; --for jetson takes one of jetpack5, jetpack6, jetpack7"),
    ("trt11", "--target trt11 is a TensorRT line for discrete GPUs; --for jetson takes one of jetpack5, jetpack6, "
              "jetpack7"),
])
def test_a_jetson_bundle_names_the_jetson_lines_only(model_dir: Path, tmp_path: Path, name: str, said: str) -> None:
    """Found by attacking: an unknown target listed trt10 and trt11, which --for jetson then refused."""
    result = cli("bundle", str(model_dir), "--out", str(tmp_path / "j.tar.gz"), "--for", "jetson", "--target", name)
    assert result.returncode == 2 and result.stderr.strip() == f"Error: {said}", result.stderr
    assert not (tmp_path / "j.tar.gz").exists()


def test_an_unpacked_bundle_without_its_manifest_says_to_unpack_it_again(model_dir: Path, tmp_path: Path) -> None:
    """Found by attacking: a deleted manifest.json in an unpacked bundle said to retrain and export on the
    host, when the bundle itself holds what is missing."""
    from attn_export.errors import Untrusted
    from attn_export.runtime import Predictor

    device = unpack(pack(model_dir, tmp_path / "b.tar.gz", "cpu").path, tmp_path / "device")
    (device / "manifest.json").unlink()
    with pytest.raises(Untrusted, match=r"expected the bundle's manifest\.json, which is not here: unpack the "
                                        r"bundle's \.tar\.gz again$"):
        Predictor.load(device)


def test_a_store_given_to_predictor_load_is_closed_on_every_way_out(model_dir: Path, tmp_path: Path) -> None:
    """Found by review: the checks before the load (batch size, threads) left an open bundle open."""
    archive = pack(model_dir, tmp_path / "b.tar.gz").path
    for wrong in ({"batch_size": 0}, {"threads": 10**6}, {"precision": "fp16"}):
        opened = store.Store.load(archive)
        with pytest.raises((BadInput, MissingPrerequisite)):
            Predictor.load(opened, **wrong)
        assert opened._archive is not None and opened._archive._tar.closed, wrong
