"""Killed mid-write, a command leaves the previous artefacts intact and loadable; two processes on one
directory do not corrupt it (the second is told who holds it). Real subprocesses, real SIGKILL."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from attn_export import artifacts
from attn_export.errors import Busy

from conftest import ROOT, TINY, cli


def snapshot(directory: Path) -> dict[str, str]:
    """Every file's hash, leaving out the lock file and a killed writer's temporary debris."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir())
            if p.is_file() and p.name != artifacts.LOCK and not (p.name.startswith(".") and p.name.endswith(".tmp"))}


def start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "attn_export", *args], cwd=ROOT, text=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def kill_when(process: subprocess.Popen[str], ready: Callable[[], bool], after: float = 0.0,
              timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert process.poll() is None, f"finished before it could be killed: {process.communicate()[1]}"
        assert time.monotonic() < deadline, "never reached the point to kill it"
        time.sleep(0.005)
    time.sleep(after)
    assert process.poll() is None, "finished before it could be killed"
    os.kill(process.pid, signal.SIGKILL)
    process.communicate()


@pytest.fixture(scope="module")
def quantized(tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("atomic") / "d"
    shutil.copytree(tiny_dir, directory)
    assert cli("quantize", str(directory), "--fp16").returncode == 0
    return directory


@pytest.mark.parametrize("command, temp", [
    (["export"], ".model.onnx."),
    (["quantize", "--fp16"], ".model.fp16.onnx."),
])
def test_a_writer_killed_mid_write_leaves_the_previous_artefacts(quantized: Path, tmp_path: Path,
                                                                 command: list[str], temp: str) -> None:
    directory = tmp_path / "d"
    shutil.copytree(quantized, directory)
    before = snapshot(directory)
    process = start(command[0], str(directory), *command[1:])
    kill_when(process, lambda: any(p.name.startswith(temp) for p in directory.iterdir()), after=0.2)
    assert any(p.name.startswith(temp) for p in directory.iterdir())  # it really was mid-write
    assert snapshot(directory) == before
    assert artifacts.check_lineage(directory, "model.onnx") == []
    result = cli("verify", str(directory), "--backends", "ort-cpu")  # loadable, and the debris is swept
    assert result.returncode == 0, result.stderr
    assert not list(directory.glob(".*.tmp"))


def test_training_killed_mid_way_leaves_the_previous_model(quantized: Path, tmp_path: Path) -> None:
    directory = tmp_path / "d"
    shutil.copytree(quantized, directory)
    before = snapshot(directory)
    process = start("train", str(directory), *TINY, "--set", "train.epochs=200", "--set", "train.patience=200")
    kill_when(process, lambda: (directory / artifacts.LOCK).read_bytes().startswith(b"pid")
              if (directory / artifacts.LOCK).exists() else False, after=1.5)  # well into training
    assert snapshot(directory) == before
    assert cli("verify", str(directory), "--backends", "ort-cpu").returncode == 0


def test_a_second_writer_is_refused_with_who_holds_the_directory(quantized: Path, tmp_path: Path) -> None:
    directory = tmp_path / "d"
    shutil.copytree(quantized, directory)
    holder = start("bench", str(directory), "--backends", "ort-cpu", "--seconds", "20", "--batch", "1", "--seq", "8")
    try:
        lock = directory / artifacts.LOCK
        deadline = time.monotonic() + 60
        while not (lock.exists() and lock.read_bytes().startswith(b"pid")):
            assert time.monotonic() < deadline and holder.poll() is None
            time.sleep(0.01)
        before = snapshot(directory)
        result = cli("quantize", str(directory), "--int8")
        assert result.returncode == 1
        assert f"pid {holder.pid}: attn-export bench" in result.stderr and "being written by another" in result.stderr
        assert snapshot(directory) == before
    finally:
        holder.kill()
        holder.communicate()
    with artifacts.locked(directory, "test"):  # the kernel released the dead holder's lock
        with artifacts.locked(directory, "nested"):  # re-entrant within a process
            pass


def test_a_held_lock_raises_busy_in_process(tmp_path: Path) -> None:
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pathlib import Path; from attn_export.artifacts import locked\n"
        f"with locked(Path({str(tmp_path)!r}), 'holder'):\n    print('held', flush=True); time.sleep(30)\n")],
        cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(Busy, match="holder"):
            with artifacts.locked(tmp_path, "second"):
                pass
    finally:
        holder.kill()
        holder.communicate()


def test_a_failed_command_on_a_new_directory_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "new"
    result = cli("train", str(target), *TINY, "--set", "data.name=files", "--set", f"data.train={tmp_path / 'no.ts'}")
    assert result.returncode == 2
    assert not target.exists()
