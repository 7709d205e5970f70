"""Shared fixtures and the automatic skips that pair with the markers gpu, tensorrt and slow."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from attn_export.runtime import store

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "recipes"
JETSON = "aarch64 with an integrated GPU (Jetson)"  # compat.platform_of on a Jetson: engines are tied to it


def _cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def _tensorrt() -> bool:
    try:
        import tensorrt
    except ImportError:
        return False
    return hasattr(tensorrt, "__version__")  # tensorrt-stubs alone imports as an empty namespace package


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skips = {
        "gpu": (not _cuda(), "needs a CUDA device"),
        "tensorrt": (not (_tensorrt() and _cuda()), "needs TensorRT and a CUDA device"),
    }
    for item in items:
        for marker, (skip, reason) in skips.items():
            if skip and marker in item.keywords:
                item.add_marker(pytest.mark.skip(reason=reason))


HUNG_SECONDS = 300  # under pytest-timeout's 600 s, which would say only where the test waited, not the command


def cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
        timeout: float = HUNG_SECONDS) -> subprocess.CompletedProcess[str]:
    """Run the real CLI in a subprocess (python -m attn_export), capturing text output. One that runs past
    ``timeout`` fails the test with what it was doing (``hung``)."""
    command = [sys.executable, "-m", "attn_export", *args]
    with subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          cwd=cwd or ROOT, env={**os.environ, **(env or {}), "COLUMNS": "200"}) as process:
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(hung(process, timeout), pytrace=False)
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def hung(process: subprocess.Popen[str], timeout: float) -> str:
    """What a command still running after ``timeout`` seconds was doing: the native and Python stack of every
    thread of it and of each process it started (py-spy, where installed: the test extra has it), or that it
    had exited and a process it started still holds its output open; then everything is killed and what the
    command had printed is added."""
    pids = [process.pid, *_descendants(process.pid)]
    exited = process.poll()
    lines = [f"{' '.join(map(str, process.args))} ran past {timeout:.0f} s"
             + (f"; it had exited ({exited}) but a process it started holds its output open" if exited is not None
                else "")]
    spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    for pid in pids:
        try:
            name = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        lines.append(f"--- pid {pid}: {name[:200]}")
        if spy is None:
            lines.append("(py-spy is not installed: no stacks)")
            continue
        try:
            dump = subprocess.run([spy, "dump", "--native", "--pid", str(pid)], capture_output=True, text=True,
                                  timeout=60)
        except subprocess.TimeoutExpired:  # the report must not hang in turn: the kills below still run
            lines.append("(py-spy did not answer within 60 s)")
            continue
        lines.append((dump.stdout + dump.stderr).strip())
    for pid in pids:
        try:
            os.kill(pid, 9)
        except OSError:
            pass
    try:
        stdout, stderr = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        stdout = stderr = "(its output stayed open after it was killed)"
    lines += ["--- its stdout:", stdout[-3000:], "--- its stderr:", stderr[-6000:]]
    return "\n".join(lines)


# A small model that learns (test accuracy 0.75-0.91 over seeds 0-5 on a Zen 3) on a test split large enough for
# INT8's bars to mean something, bars set for a 16-unit LSTM's INT8 error. Before, 60 rows and a model near chance
# (0.38-0.80) failed INT8 verify on 5 seeds of 6: the suite had passed on one CPU's weights (worst now: a drop of
# 0.02, agreement 0.97, both 2x inside these bars; measured with the defaults, seeds 0-5).
TINY = [
    "--set", "data.n_train=240", "--set", "data.n_test=300", "--set", "data.max_len=24",
    "--set", "model.hidden_size=16", "--set", "train.epochs=3", "--set", "train.lr=0.02",
    "--set", "verify.int8_max_accuracy_drop=0.05", "--set", "verify.int8_min_argmax_agreement=0.9",
]


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny trained-and-exported artefact directory, made once per session through the real CLI."""
    directory = tmp_path_factory.mktemp("tiny")
    for args in (("train", str(directory), *TINY), ("export", str(directory))):
        result = cli(*args)
        assert result.returncode == 0, result.stderr
    return directory


def rerecord(directory: Path, name: str, parent: str = "model.safetensors", command: str = "test",
             **extra: object) -> dict:
    """Record ``name`` as if ``command`` had made it from ``parent``'s current bytes: only its contents can give
    it away now."""
    return store.record(directory, name, command, parent=parent,
                        parent_sha256=store.sha256_file(directory / parent), **extra)


def mark_verified(directory: Path, name: str, passed: bool = True) -> None:
    """What attn-export verify writes into an artefact's manifest entry (without running it)."""
    manifest = store.read_manifest(directory)
    manifest["artifacts"][name]["verified"] = {"passed": passed, "sha256": store.sha256_file(directory / name),
                                               "verify_sha256": "0" * 64,
                                               "backends": ["ort-cpu"], "accuracy": 0.5}
    store.write_json(directory / store.MANIFEST, manifest)


@pytest.fixture
def model_dir(tiny_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny model, its model.onnx marked verified."""
    directory = tmp_path / "model"
    shutil.copytree(tiny_dir, directory)
    mark_verified(directory, "model.onnx")
    return directory


@pytest.fixture
def disk_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, str]]:
    """Every ``os.fsync`` (``("fsync", path, path)``) and ``os.replace`` (``("replace", src, dst)``) the test
    makes, in order, each still done: what a test of durable writes checks is the order of these calls (what a
    power cut then keeps is the file system's promise, not tested)."""
    events: list[tuple[str, str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        path = os.readlink(f"/proc/self/fd/{fd}")
        events.append(("fsync", path, path))
        real_fsync(fd)

    def replace(src: object, dst: object) -> None:
        events.append(("replace", str(src), str(dst)))
        real_replace(src, dst)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    return events
