"""The device package (``attn_export.runtime``): its boundary, derived from the import graph of what a
bundle ships; its Python 3.8 syntax; and its command line, run the way a device runs it: from an
unbundled bundle, in a fresh virtual environment holding only numpy and onnxruntime (slow), or with
the host's libraries made unimportable (fast)."""

from __future__ import annotations

import ast
import glob
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from attn_export.runtime import store
from attn_export.runtime.backends.onnxrt import ORT_MIN
from attn_export.runtime.bundle import pack, runtime_files, unpack

from conftest import ROOT, mark_verified

# what the device package may import besides the standard library and itself: numpy everywhere, and the
# runtime libraries it opens lazily (inside the backends' functions)
THIRD_PARTY = {"numpy", "onnxruntime", "tensorrt", "openvino", "tract", "cuda"}
# the device never has these (DESIGN: the device side must install without them)
FORBIDDEN = {"torch", "onnx", "typer", "rich", "matplotlib", "safetensors", "onnxscript", "tomli"}
# what "itself" is: the package root's __init__ (the version), errors, and attn_export.runtime
INSIDE = ("attn_export", "attn_export.errors", "attn_export.runtime")


def _module_name(name: str) -> str:
    """``attn_export/runtime/trt/build.py`` -> ``attn_export.runtime.trt.build``."""
    return name[: -len(".py")].replace("/", ".").removesuffix(".__init__")


def _imports(name: str, path: Path) -> list[tuple[str, int]]:
    """Every module ``path`` imports (absolute names), with the line, top level and inside functions."""
    module = _module_name(name)
    package = module if name.endswith("__init__.py") else module.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
                if node.module:
                    found.append((target, node.lineno))
                else:  # "from .. import x": x is a module of that package, or a name defined in it
                    for alias in node.names:
                        submodule = f"{target}.{alias.name}"
                        is_module = any((ROOT / submodule.replace(".", "/")).with_suffix(s).exists()
                                        for s in (".py", ""))
                        found.append((submodule if is_module else target, node.lineno))
            else:
                found.append((str(node.module), node.lineno))
    return found


def test_the_device_package_imports_nothing_of_the_host() -> None:
    """Derived from the import graph of the files a bundle ships: every import is the standard library,
    numpy, a runtime library, or the device package itself; never torch, onnx, typer, rich, matplotlib,
    nor any host module (train, export, quantize, config, ...)."""
    shipped = runtime_files()
    assert {"attn_export/runtime/predictor.py", "attn_export/runtime/verify.py", "attn_export/errors.py",
            "attn_export/runtime/trt/build.py", "attn_export/runtime/backends/tensorrt.py"} <= set(shipped)
    problems = []
    for name, path in shipped.items():
        for target, line in _imports(name, path):
            top = target.split(".")[0]
            if top == "attn_export":
                if not (target in INSIDE or target.startswith("attn_export.runtime.")):
                    problems.append(f"{name}:{line} imports the host module {target}")
            elif top in FORBIDDEN:
                problems.append(f"{name}:{line} imports {target}, which a device does not have")
            elif top not in THIRD_PARTY and top not in sys.stdlib_module_names and top != "__future__":
                problems.append(f"{name}:{line} imports {target}, neither the standard library nor a runtime")
    assert problems == []


def test_every_module_of_the_package_is_shipped() -> None:
    """The bundle's list is the package itself, not a hand-kept list that can fall behind."""
    on_disk = {p.relative_to(ROOT).as_posix() for p in (ROOT / "attn_export" / "runtime").rglob("*.py")}
    assert on_disk | {"attn_export/__init__.py", "attn_export/errors.py"} == set(runtime_files())


def python(version: str) -> str | None:
    found = sorted(glob.glob(str(Path.home() / ".pyenv" / "versions" / f"{version}*" / "bin" / f"python{version}")))
    return found[-1] if found else shutil.which(f"python{version}")


def test_the_device_package_parses_as_python_3_8() -> None:
    """JetPack 5's TensorRT 8.5 bindings live in the system Python 3.8: every shipped module must parse
    there, and the numpy-free ones import and decide (no numpy in that interpreter)."""
    py38 = python("3.8")
    if py38 is None:
        pytest.skip("no python3.8 here")
    files = [str(p) for p in runtime_files().values()]
    code = ("import ast, sys\n"
            "for f in sys.argv[1:]:\n"
            "    compile(open(f).read(), f, 'exec')\n"
            "from attn_export.runtime.trt import compat, device, importer, naming, precision, profile\n"
            "from attn_export.runtime import settings\n"
            "p, _ = profile.derive_profile(3, {'min': 1, 'median': 9, 'max': 20})\n"
            "print(p.to_dict()['x']['max'], naming.engine_name('fp16', 'Orin', '8.5.2'),\n"
            "      settings.override_section(settings.VerifyConfig(), 'verify', ['verify.fp16_atol=0.5']).fp16_atol)\n")
    out = subprocess.run([py38, "-c", code, *files], capture_output=True, text=True, timeout=60, cwd=ROOT,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    assert "[32, 128, 3] model.fp16.orin.trt8.5.engine 0.5" in out.stdout


@pytest.fixture
def bundle_dir(tiny_dir: Path, tmp_path: Path) -> Path:
    """An unbundled CPU bundle of the tiny model, with its FP16 variant (never verified on the host)."""
    directory = tmp_path / "model"
    shutil.copytree(tiny_dir, directory)
    mark_verified(directory, "model.onnx")
    from conftest import cli

    assert cli("quantize", str(directory), "--fp16").returncode == 0
    return unpack(pack(directory, tmp_path / "b.tar.gz", "cpu").path, tmp_path / "device")


BLOCK = ("import sys\nclass _Block:\n    def find_spec(self, name, path=None, target=None):\n"
         "        if name.split('.')[0] in %r:\n"
         "            raise ImportError('blocked: the device has no ' + name, name=name)\n"
         "sys.meta_path.insert(0, _Block())\nimport runpy\nsys.argv = ['python -m attn_export.runtime'] + sys.argv[1:]\n"
         "runpy.run_module('attn_export.runtime', run_name='__main__', alter_sys=True)\n" % (sorted(FORBIDDEN),))


def device_cli(directory: Path, *args: str, python_exe: str = sys.executable) -> subprocess.CompletedProcess[str]:
    """``PYTHONPATH=runtime python -m attn_export.runtime ARGS`` in the bundle, as its README says."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PYTHONPATH"] = "runtime"
    command = [python_exe, "-m", "attn_export.runtime", *args] if python_exe != sys.executable else \
        [python_exe, "-c", BLOCK, *args]
    return subprocess.run(command, capture_output=True, text=True, cwd=directory, env=env, timeout=600)


def check_device_commands(directory: Path, python_exe: str = sys.executable) -> None:
    """verify (records the verdict), predict, build --fp16 (exit 3, nothing written), info."""
    before = store.read_manifest(directory)["artifacts"]
    assert "verified" not in before["model.fp16.onnx"]
    verified = device_cli(directory, "verify", ".", "--json", python_exe=python_exe)
    assert verified.returncode == 0, verified.stderr
    report = json.loads(verified.stdout)
    assert report["reference"]["source"] == "reference.npz" and report["passed"] is True
    ran = {(r["backend"], r["artifact"]) for r in report["results"] if r["status"] == "passed"}
    assert {("ort-cpu", "model.onnx"), ("ort-cpu", "model.fp16.onnx")} <= ran
    after = store.read_manifest(directory)["artifacts"]
    assert after["model.fp16.onnx"]["verified"]["passed"] is True
    assert after["model.fp16.onnx"]["verified"]["sha256"] == after["model.fp16.onnx"]["sha256"]

    x = np.random.default_rng(0).standard_normal((3, 9, 4)).astype(np.float32)
    np.savez(directory / "in.npz", x=x, lengths=np.array([9, 5, 2]))
    predicted = device_cli(directory, "predict", ".", "in.npz", "--precision", "fp16", "--json", python_exe=python_exe)
    assert predicted.returncode == 0, predicted.stderr
    assert [len(p["probabilities"]) for p in json.loads(predicted.stdout)["predictions"]] == [3, 3, 3]

    listing = sorted(p.name for p in directory.iterdir())
    built = device_cli(directory, "build", ".", "--fp16", python_exe=python_exe)
    assert built.returncode == 3, built.stderr
    assert built.stderr.startswith("Error: cannot build a TensorRT engine here:") and "JetPack" in built.stderr
    assert len(built.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in directory.iterdir()) == listing

    info = device_cli(directory, "info", ".", "--json", python_exe=python_exe)
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)["artifacts"]["model.fp16.onnx"]["verified"] is True
    bad = device_cli(directory, "verify", python_exe=python_exe)
    assert bad.returncode == 2 and bad.stderr.startswith("Error: ") and len(bad.stderr.strip().splitlines()) == 1
    # found by attacking: "" was the current directory (this bundle), so info "" described it, exit 0
    for args in (("info", ""), ("verify", ""), ("build", ""), ("predict", "", "in.npz"), ("predict", ".", "")):
        empty = device_cli(directory, *args, python_exe=python_exe)
        assert empty.returncode == 2 and len(empty.stderr.strip().splitlines()) == 1, (args, empty.stderr)
        assert "an empty path; expected" in empty.stderr, (args, empty.stderr)
    assert sorted(p.name for p in directory.iterdir()) == listing


def test_the_device_commands_work_from_a_bundle_without_the_hosts_libraries(bundle_dir: Path) -> None:
    check_device_commands(bundle_dir)


@pytest.mark.slow
@pytest.mark.parametrize("version, onnxruntime", [("3.8", f"onnxruntime=={ORT_MIN}"), ("3.10", f"onnxruntime=={ORT_MIN}")])
def test_the_device_commands_in_a_fresh_venv_with_only_numpy_and_onnxruntime(
        bundle_dir: Path, tmp_path: Path, version: str, onnxruntime: str) -> None:
    """JetPack 5's Python (3.8) and a later one, with what the bundle's requirements.txt installs at its
    floor (``ORT_MIN``, the oldest ONNX Runtime a CPU bundle asks for)."""
    interpreter = python(version)
    if interpreter is None:
        pytest.skip(f"python{version} not found")
    venv = tmp_path / f"py{version}"
    subprocess.run([interpreter, "-m", "venv", str(venv)], check=True, timeout=300)
    exe = str(venv / "bin" / "python")
    pip = subprocess.run([exe, "-m", "pip", "install", "--quiet", "numpy", onnxruntime], capture_output=True,
                         text=True, timeout=600)
    assert pip.returncode == 0, pip.stderr
    installed = {p["name"].lower() for p in json.loads(subprocess.run(
        [exe, "-m", "pip", "list", "--format=json"], capture_output=True, text=True, check=True).stdout)}
    assert not installed & FORBIDDEN
    check_device_commands(bundle_dir, python_exe=exe)
    if version == "3.8":
        check_conv_int8(tmp_path, exe)


def check_conv_int8(tmp_path: Path, python_exe: str) -> None:
    """A Conv1d front-end's dynamic INT8 graph (a ``ConvInteger``) runs on the device's oldest ONNX Runtime,
    with the answers the host's gives: found by attacking the u8 weights, ONNX Runtime 1.19.2 (the last for
    Python 3.8) has no ``ConvInteger`` kernel for s8 weights, so the graph of s8 weights that quantize wrote
    before did not load there, with the session option or without; its u8 weights do."""
    import onnx
    import onnx.numpy_helper

    from attn_export.runtime import Predictor
    from conftest import TINY, cli, rerecord

    directory = tmp_path / "conv"
    for args in (("train", str(directory), *TINY, "--set", "model.conv_channels=[8]", "--set",
                  "model.conv_kernel_sizes=[3]"), ("export", str(directory)), ("quantize", str(directory), "--int8")):
        assert cli(*args).returncode == 0, args
    device = unpack(pack(directory, tmp_path / "conv.tar.gz", "cpu").path, tmp_path / "conv-device")
    x = np.random.default_rng(1).standard_normal((3, 9, 4)).astype(np.float32)
    lengths = np.array([9, 5, 2])
    np.savez(device / "in.npz", x=x, lengths=lengths)
    predicted = device_cli(device, "predict", ".", "in.npz", "--precision", "int8-dynamic", "--allow-unverified",
                           "--json", python_exe=python_exe)
    assert predicted.returncode == 0, predicted.stderr
    with Predictor.load(directory, precision="int8-dynamic", allow_unverified=True) as host:
        expected = [r.probabilities for r in host.predict([x[i, :n] for i, n in enumerate(lengths)])]
    got = [p["probabilities"] for p in json.loads(predicted.stdout)["predictions"]]
    assert np.allclose(got, expected, atol=1e-5), (got, expected)
    # a graph of s8 weights, as quantize wrote before: bundling it says what the device's ONNX Runtime cannot do
    proto = onnx.load(str(directory / "model.int8.onnx"))
    for t in proto.graph.initializer:
        if t.data_type == onnx.TensorProto.UINT8:
            signed = (onnx.numpy_helper.to_array(t).astype(np.int16) - 128).astype(np.int8)
            t.CopyFrom(onnx.numpy_helper.from_array(signed, t.name))
    onnx.save(proto, str(directory / "model.int8.onnx"))
    rerecord(directory, "model.int8.onnx", parent="model.onnx", command="quantize int8-dynamic",
             precision="int8-dynamic")
    notes = pack(directory, tmp_path / "conv-s8.tar.gz", "cpu").notes
    assert any("made before attn-export stored" in n and "ONNX Runtime 1.19.2 (the last for Python 3.8) cannot "
               "load its ConvInteger" in n for n in notes), notes


def readme_commands(readme: str) -> list[str]:
    """The shell commands of a bundle README's run steps, as written (comments dropped): its "## Run"
    section on (the unpack lines before it name the archive and DIR as placeholders)."""
    commands = []
    for line in readme.split("\n## Run", 1)[1].splitlines():
        text = line.strip().split("  #")[0].strip()
        if line.startswith("    ") and text.split(" ", 1)[0] in ("python3", "PYTHONPATH=runtime", "sudo"):
            commands.append(text)
    return commands


@pytest.mark.slow
@pytest.mark.parametrize("target", ["cpu", "jetson"])
def test_the_bundle_readme_commands_as_written_in_a_fresh_venv(tiny_dir: Path, tmp_path: Path, target: str) -> None:
    """A fresh venv (Python 3.10, as `python3` on PATH) with only what the bundle's requirements.txt
    installs; each command of its README run as written, in order. ``sudo apt install`` cannot run here
    (no Jetson): it is skipped, so on the Jetson target TensorRT is absent and every build must say what
    is missing and how to get it; the README's ONNX Runtime fallback then verifies and predicts."""
    interpreter = python("3.10")
    if interpreter is None:
        pytest.skip("python3.10 not found")
    directory = tmp_path / "model"
    shutil.copytree(tiny_dir, directory)
    from conftest import cli

    assert cli("quantize", str(directory), "--fp16").returncode == 0
    assert cli("verify", str(directory), "--backends", "ort-cpu").returncode == 0
    device = unpack(pack(directory, tmp_path / "b.tar.gz", target).path, tmp_path / "device")
    venv = tmp_path / "venv"
    subprocess.run([interpreter, "-m", "venv", str(venv)], check=True, timeout=300)
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path)}
    np.savez(device / "INPUT.npz", x=np.ones((2, 7, 4), np.float32), lengths=np.array([7, 3]))

    def sh(command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["bash", "-c", command], capture_output=True, text=True, cwd=device, env=env,
                              timeout=900)

    readme = (device / "README.md").read_text()
    commands = readme_commands(readme)
    assert any(" verify ." in c for c in commands) and any(" predict ." in c for c in commands), commands
    for command in commands:
        if command.startswith("sudo "):
            continue
        result = sh(command)
        if target == "cpu" or "pip install" in command:
            assert result.returncode == 0, (command, result.stderr)
            continue
        # no TensorRT here (no JetPack) and no ONNX Runtime yet: one line saying what to install
        assert result.returncode == 3, (command, result.stdout, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
        assert "JetPack" in result.stderr, result.stderr
        if " build " not in command:
            assert "pip install onnxruntime" in result.stderr, result.stderr
    if target == "jetson":
        fallback = "python3 -m pip install onnxruntime"
        assert fallback in readme
        assert sh(fallback).returncode == 0
        for command in commands:
            if " verify " in f"{command} " or " predict " in command:
                result = sh(command)
                assert result.returncode == 0, (command, result.stderr)


def test_a_mistyped_command_and_a_bundle_where_a_directory_belongs_are_said_as_such(
        tiny_dir: Path, tmp_path: Path) -> None:
    """`verfy DIR` fell back to the old form `DIR INPUT` and said "DIR: no .csv files in this directory";
    `verify bundle.tar.gz` said the directory does not exist, of a file that does."""
    typo = subprocess.run([sys.executable, "-m", "attn_export.runtime", "verfy", str(tiny_dir)],
                          capture_output=True, text=True, timeout=300)
    assert typo.returncode == 2 and typo.stderr.strip() == (
        "Error: unknown command 'verfy' (did you mean verify?); expected one of verify, predict, build, info, unpack, or "
        "the old form DIR INPUT")
    (tmp_path / "b.tar.gz").write_bytes(b"x")
    on_file = subprocess.run([sys.executable, "-m", "attn_export.runtime", "verify", str(tmp_path / "b.tar.gz")],
                             capture_output=True, text=True, timeout=300)
    assert on_file.returncode == 2 and "is a file; expected an artefact directory here" in on_file.stderr


def test_a_tract_too_old_for_its_api_is_unavailable_not_every_file_unreadable() -> None:
    """tract 0.21 (what pip gives Python 3.8) has no `onnx().load`: it was "available", and verify then failed
    every graph as unreadable. An installed module older than a backend's minimum is now unavailable, saying
    which version it found and what to install."""
    from attn_export.runtime.backends.tract_cpu import TRACT_MIN
    from attn_export.runtime.limits import missing

    assert missing("numpy", "pip install numpy", "0.1") is None
    said = missing("numpy", "pip install 'numpy>=999'", "999.0")
    assert said is not None and said.startswith("numpy ") and said.endswith(
        "is older than 999.0, the oldest this backend runs on (pip install 'numpy>=999')")
    pyproject = (Path(__file__).resolve().parent.parent / "pyproject.toml").read_text()
    assert f'tract = ["tract>={TRACT_MIN}"]' in pyproject  # the extra installs what the backend needs


def test_the_device_cli_takes_debug_anywhere_and_shows_the_traceback_only_then(tmp_path: Path) -> None:
    """Found by attacking: the README says every command takes --debug anywhere on the line; the device's
    refused it (exit 2, "unrecognized arguments"), and had no other way to show a traceback."""
    gone = str(tmp_path / "gone")
    for args, traced in ((["predict", gone, "x.npz", "--debug"], True), (["--debug", "info", gone], True),
                         (["predict", gone, "x.npz"], False)):
        result = subprocess.run([sys.executable, "-m", "attn_export.runtime", *args], capture_output=True, text=True,
                                cwd=ROOT, timeout=120)
        last = result.stderr.strip().splitlines()[-1]
        assert result.returncode == 2 and last == f"Error: {gone} does not exist; expected an artefact directory or " \
                                                  "a bundle", result.stderr
        assert ("Traceback (most recent call last)" in result.stderr) is traced, result.stderr
