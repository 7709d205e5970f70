"""Killed mid-write, a command leaves the previous artefacts intact and loadable; two processes on one
directory do not corrupt it (the second is told who holds it). Real subprocesses, real SIGKILL.

No test races a timer: each writer is stopped at a known point, the moment it is about to rename its
first finished file into DIR (every byte of the new artefact written, nothing committed), by a wrapper
that makes the real CLI send itself SIGSTOP from ``os.replace``. Then it is killed, on any machine, at
the same point of its work.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from attn_export.runtime import store
from attn_export.errors import Busy, Interrupted

from conftest import ROOT, TINY, cli

# The real CLI, with os.replace stopping the process (SIGSTOP) before its first rename into DIR.
STOP_AT_COMMIT = """
import os, signal, sys, time
directory = os.path.realpath(sys.argv[1])
rename = os.replace
stopped = []
def stop_then_rename(src, dst, *args, **kwargs):
    if os.path.dirname(os.path.realpath(dst)) == directory and not stopped:  # the first one only
        stopped.append(dst)
        os.kill(os.getpid(), signal.SIGSTOP)
        # the signal sent while it was stopped is raised in here, before the rename, unless it is held from
        # the rename to the record (``interrupt.holding``). A signal that one of torch's threads takes only sets
        # a flag that the main thread reads between bytecodes, and without this wait os.replace could run first
        until = time.monotonic() + 5
        while time.monotonic() < until:
            time.sleep(0.01)
    return rename(src, dst, *args, **kwargs)
os.replace = stop_then_rename
from attn_export.cli import main
sys.exit(main(sys.argv[2:]))
"""


def snapshot(directory: Path) -> dict[str, str]:
    """Every file's hash, leaving out the lock file and a killed writer's temporary debris."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir())
            if p.is_file() and p.name != store.LOCK and not (p.name.startswith(".") and p.name.endswith(".tmp"))}


def stopped_at_commit(directory: Path, *args: str) -> subprocess.Popen[str]:
    """Start ``attn-export ARGS`` and return once it is stopped before its first rename into ``directory``;
    continued, it waits up to 5 s for a signal before renaming."""
    process = subprocess.Popen([sys.executable, "-c", STOP_AT_COMMIT, str(directory), *args], cwd=ROOT,
                               text=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status = os.waitpid(process.pid, os.WUNTRACED)  # returns when it stops (or, wrongly, exits)
    if not os.WIFSTOPPED(status):
        process.returncode = os.waitstatus_to_exitcode(status)
        raise AssertionError(f"{args} finished without committing into {directory}: {process.communicate()[1]}")
    return process


def kill(process: subprocess.Popen[str]) -> None:
    os.kill(process.pid, signal.SIGKILL)
    process.communicate()  # reaps it and closes the stderr pipe


@pytest.fixture(scope="module")
def quantized(tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("atomic") / "d"
    shutil.copytree(tiny_dir, directory)
    assert cli("quantize", str(directory), "--fp16").returncode == 0
    return directory


@pytest.mark.parametrize("command, target", [
    (["export"], "model.onnx"),
    (["quantize", "--fp16"], "model.fp16.onnx"),
    (["train", *TINY, "--set", "train.epochs=2"], "model.safetensors"),
])
def test_a_writer_killed_mid_write_leaves_the_previous_artefacts(quantized: Path, tmp_path: Path,
                                                                 command: list[str], target: str) -> None:
    directory = tmp_path / "d"
    shutil.copytree(quantized, directory)
    before = snapshot(directory)
    process = stopped_at_commit(directory, command[0], str(directory), *command[1:])
    # the writer's own temporary name: attn-export's prefix, its pid, the target
    written = [p for p in directory.iterdir() if p.name.startswith(f"{store.TMP_PREFIX}{process.pid}.{target}.")]
    assert written and written[0].stat().st_size > 0  # the new artefact is written, not yet committed
    kill(process)
    assert snapshot(directory) == before
    assert store.Store(directory).state("model.onnx").current
    result = cli("verify", str(directory), "--backends", "ort-cpu")  # loadable, and the debris is swept
    assert result.returncode == 0, result.stderr
    assert not list(directory.glob(".*.tmp"))


def test_a_second_writer_is_refused_with_who_holds_the_directory(quantized: Path, tmp_path: Path) -> None:
    directory = tmp_path / "d"
    shutil.copytree(quantized, directory)
    holder = stopped_at_commit(directory, "bench", str(directory), "--backends", "ort-cpu", "--seconds", "0.05",
                               "--batch", "1", "--seq", "8")
    try:
        before = snapshot(directory)
        result = cli("quantize", str(directory), "--int8")
        assert result.returncode == 1
        assert f"pid {holder.pid}: attn-export bench" in result.stderr and "being written by another" in result.stderr
        assert snapshot(directory) == before
    finally:
        kill(holder)
    with store.locked(directory, "test"):  # the kernel released the dead holder's lock
        with store.locked(directory, "nested"):  # re-entrant within a process
            pass


def test_a_held_lock_raises_busy_in_process(tmp_path: Path) -> None:
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pathlib import Path; from attn_export.runtime.store import locked\n"
        f"with locked(Path({str(tmp_path)!r}), 'holder'):\n    print('held', flush=True); time.sleep(30)\n")],
        cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(Busy, match="holder"):
            with store.locked(tmp_path, "second"):
                pass
    finally:
        holder.kill()
        holder.communicate()


def test_a_directory_another_command_made_meanwhile_is_taken_not_refused(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Found by attacking: two commands making one new directory at once, the later mkdir said "File exists"
    (exit 2). The other command's mkdir is stood in for by making the directory just before this one's; the
    directory is then the other's as much as this one's, so this one never removes it."""
    target = tmp_path / "race"
    mkdir = Path.mkdir

    def raced(self: Path, *args: object, **kwargs: object) -> None:
        if self == target:
            mkdir(self)  # the other command's
        mkdir(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "mkdir", raced)
    with store.locked(target, "train"):
        pass
    assert target.is_dir()  # left: it may be the other command's


def test_a_failed_command_on_a_new_directory_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "new"
    result = cli("train", str(target), *TINY, "--set", "data.name=files", "--set", f"data.train={tmp_path / 'no.ts'}")
    assert result.returncode == 2
    assert not target.exists()


@pytest.mark.parametrize("command", ["report", "verify", "export", "bundle"])
def test_a_failed_command_on_an_empty_directory_leaves_it_empty(tmp_path: Path, command: str) -> None:
    """A command refused for want of a model leaves an existing directory as it found it: no lock file."""
    args = [command, str(tmp_path)] + (["--out", str(tmp_path / "b.tar.gz")] if command == "bundle" else [])
    result = cli(*args)
    assert result.returncode == 2, result.stderr
    assert list(tmp_path.iterdir()) == []


def test_the_lock_file_stays_where_a_command_wrote(quantized: Path, tmp_path: Path) -> None:
    """The lock file stays in a directory a command wrote into (removing a lock another process may be
    opening is how two writers end up holding two locks): only an untouched directory loses it."""
    directory = tmp_path / "d"
    shutil.copytree(quantized, directory)
    (directory / store.LOCK).unlink(missing_ok=True)
    assert cli("quantize", str(directory), "--fp16").returncode == 0
    assert (directory / store.LOCK).is_file()


def test_a_lock_file_removed_after_this_process_opened_it_is_not_taken(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A command that wrote nothing removes the lock file it made; a process that had opened that file just
    before would lock a file nobody else sees, and two writers would run. It opens the one there now."""
    from attn_export.runtime.store import files

    opened: list[int] = []
    real = files._open_lock

    def racing(directory: Path) -> int:
        fd = real(directory)
        if not opened:  # the other process removes the file between this one's open and its flock
            (directory / store.LOCK).unlink()
        opened.append(fd)
        return fd

    monkeypatch.setattr(files, "_open_lock", racing)
    with store.locked(tmp_path, "test"):
        assert len(opened) == 2 and files._is_lock_file(opened[1], tmp_path)
        assert "attn-export test" in (tmp_path / store.LOCK).read_text()


def test_a_graph_being_made_is_named_as_the_file_it_becomes_and_its_refusal_is_a_failed_work(tmp_path: Path) -> None:
    """Found by attacking: ONNX Runtime refusing a graph that quantize had just made said "ONNX Runtime cannot
    load DIR/.attn-export.PID.model.int8-qdq.onnx.XXXX.tmp", a file gone by then, with exit 2 (bad input),
    although nothing the user gave was wrong. A candidate is named as the file it becomes, and a runtime's
    refusal of it is WorkFailed (exit 1)."""
    import onnx
    from onnx import TensorProto, helper

    from attn_export.errors import WorkFailed
    from attn_export.runtime.backends.onnxrt import ort_session
    from attn_export.runtime.store.files import made_as

    graph = helper.make_graph([helper.make_node("NoSuchOperator", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with store.atomic_path(tmp_path / "model.int8-qdq.onnx") as tmp:
        assert tmp.name != "model.int8-qdq.onnx" and made_as(tmp) == "model.int8-qdq.onnx"
        onnx.save(model, str(tmp))
        made = store.Artifact.candidate(tmp, None, "int8-qdq")  # type: ignore[arg-type]  # the spec is not read here
        assert made.name == "model.int8-qdq.onnx" and made.made
        with pytest.raises(WorkFailed, match=r"cannot load the model\.int8-qdq\.onnx just made \(not written\)"):
            ort_session(made)
        from attn_export.backends.onnxref import OnnxRefBackend

        with pytest.raises(WorkFailed, match=r"reference evaluator cannot read model\.int8-qdq\.onnx"):
            OnnxRefBackend(made, threads=1).__enter__()
    assert made_as(tmp_path / "model.onnx") == "model.onnx"


def test_an_atomic_write_fsyncs_its_data_then_the_directory_after_the_rename(
        tmp_path: Path, disk_calls: list[tuple[str, str, str]]) -> None:
    """The file's bytes are on disk before the rename, and the rename itself (an entry of the directory) after
    it."""
    target = tmp_path / "sub" / "model.json"
    store.write_bytes(target, b"{}")
    kinds = [(kind, Path(dst).parent if kind == "fsync" and dst.endswith(".tmp") else Path(dst))
             for kind, _, dst in disk_calls]
    assert kinds == [("fsync", target.parent), ("replace", target), ("fsync", target.parent)], disk_calls


def test_committed_ignores_a_signal_inside_its_command_only() -> None:
    """Review: committed() had set SIGINT and SIGTERM to be ignored for good, so a notebook or test that ran
    `unbundle` in process ignored Ctrl-C afterwards. It marks the command now; the block's handler ignores a
    signal once marked, and the next block starts unmarked with the handlers restored."""
    from attn_export.runtime.interrupt import committed, interruptible, was_committed

    with interruptible():
        committed()
        os.kill(os.getpid(), signal.SIGINT)  # ignored: the work is kept
    assert was_committed()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    with pytest.raises(Interrupted):
        with interruptible():
            assert not was_committed()
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)


def test_a_signal_sent_while_the_work_is_put_in_place_lands_after_it_is_marked_kept(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Found by attacking: a SIGTERM between a bundle's rename and its mark exited 143, "interrupted", with the
    bundle in place. The rename and the mark are one step now: a signal sent inside it waits for the mark (and
    is ignored); sent inside a step that fails, it interrupts as before."""
    from attn_export.runtime.interrupt import commit_point, interruptible, was_committed

    from attn_export.runtime.store import files

    target, rename = tmp_path / "b.tar.gz", os.replace

    def renamed_then_signalled(src: object, dst: object) -> None:  # the signal lands just after the rename
        rename(src, dst)  # type: ignore[arg-type]
        os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(files.os, "replace", renamed_then_signalled)
    with interruptible():
        with store.atomic_path(target, commit=True) as tmp:
            tmp.write_bytes(b"bundle")
        time.sleep(0.2)
    assert was_committed() and target.read_bytes() == b"bundle"
    with pytest.raises(Interrupted):  # the same rename, not the command's last step: interrupted as before
        with interruptible():
            with store.atomic_path(tmp_path / "other", commit=False) as tmp:
                tmp.write_bytes(b"x")
            time.sleep(1)
    monkeypatch.undo()
    with pytest.raises(Interrupted):  # a step that fails: the signal it held interrupts
        with interruptible():
            with commit_point():
                with commit_point():  # nested: the outer one decides
                    os.kill(os.getpid(), signal.SIGTERM)
                raise OSError("the rename failed")
    assert not was_committed()


def test_a_signal_between_a_files_rename_and_its_record_waits_for_the_record(
        model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Found by attacking: a SIGTERM between train's new weights and the manifest (or export's, quantize's) left
    a directory every command refused ("changed after it was recorded"), under "nothing is half-written". The
    rename and the record are one step now (``interrupt.holding``): a signal that lands between them waits for
    the record, then interrupts, and the manifest describes the bytes there. (SIGKILL cannot be held.)"""
    from attn_export.quantize import quantize
    from attn_export.runtime.interrupt import interruptible

    record = store.record
    signalled: list[str] = []

    def signalled_then_recorded(directory: Path, name: str, *args: object, **kwargs: object) -> object:
        if not signalled:  # the first file put in place: the signal lands before its record
            signalled.append(name)
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.2)
        return record(directory, name, *args, **kwargs)

    monkeypatch.setattr(store, "record", signalled_then_recorded)
    with pytest.raises(Interrupted):
        with interruptible():
            quantize(model_dir, ["fp16", "int8-dynamic"])
    assert signalled == ["model.fp16.onnx"]
    manifest = store.read_manifest(model_dir)["artifacts"]
    assert manifest["model.fp16.onnx"]["sha256"] == store.sha256_file(model_dir / "model.fp16.onnx")
    assert "model.int8.onnx" not in manifest and not (model_dir / "model.int8.onnx").exists()  # stopped after it
    assert store.Store(model_dir).state("model.fp16.onnx").current


def test_a_name_that_is_not_utf8_is_written_and_a_long_one_cut_whole(tmp_path: Path) -> None:
    """Review: cutting a long name for its temporary name encoded it as UTF-8, which a legal Linux name of
    other bytes is not (UnicodeEncodeError, a traceback)."""
    odd = os.fsdecode(b"caf\xff-" + b"y" * 200 + b".json")
    store.write_bytes(tmp_path / odd, b"{}")
    assert (tmp_path / odd).read_bytes() == b"{}"
    cut = store.short_name("é" * 200)
    assert 0 < len(os.fsencode(cut)) <= store.files.TMP_NAME_BYTES and set(cut) == {"é"}


def test_a_directory_that_cannot_be_read_still_takes_the_write(tmp_path: Path) -> None:
    """Review: the directory's fsync after the rename failed in a directory one may write but not read
    (mode 0733), so a file that was written was reported as not written. The fsync is best effort."""
    box = tmp_path / "box"
    box.mkdir()
    opened = os.open
    def refuse(path, flags, *a, **k):  # what a 0733 directory does to a reader that is not root
        if flags & os.O_DIRECTORY:
            raise PermissionError(13, "Permission denied", str(path))
        return opened(path, flags, *a, **k)
    import unittest.mock
    with unittest.mock.patch.object(os, "open", refuse):
        store.write_bytes(box / "model.json", b"{}")
    assert (box / "model.json").read_bytes() == b"{}"


def test_an_interrupted_bench_leaves_no_new_plots_beside_the_old_bench_json(
        model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Found by attacking: bench wrote its plots before bench.json, so a SIGTERM between them left plots of the
    new run above the old run's tables. bench.json is written first now; an interrupt before it leaves both as
    they were (and one after it leaves old plots, which report draws again from bench.json)."""
    from attn_export import bench as bench_module
    from attn_export.runtime.timing import Budget

    budget = Budget(warmup=1, seconds=0.05, min_iterations=2, max_iterations=10)
    bench_module.bench(model_dir, backends="ort-cpu", batches=(1,), seqs=(8,), budget=budget)
    names = [store.BENCH_JSON, *store.PLOTS.values()]
    before = {n: hashlib.sha256((model_dir / n).read_bytes()).hexdigest() for n in names}
    write_json = bench_module.store.write_json

    def interrupted(path: Path, data: object) -> None:
        if Path(path).name == store.BENCH_JSON:
            raise KeyboardInterrupt
        write_json(path, data)

    monkeypatch.setattr(bench_module.store, "write_json", interrupted)
    with pytest.raises(KeyboardInterrupt):
        bench_module.bench(model_dir, backends="ort-cpu", batches=(1, 2), seqs=(8, 16), budget=budget)
    assert {n: hashlib.sha256((model_dir / n).read_bytes()).hexdigest() for n in names} == before


def test_a_reader_during_a_write_says_the_directory_is_being_written(model_dir: Path, tmp_path: Path) -> None:
    """Found by attacking: predict, bundle and the device's predict, run in the milliseconds in which train had
    put its new weights in place and not yet recorded them, said "changed after it was recorded; re-run attn-export
    train", the very command running. A file not current while another process holds the directory's lock is
    said to be being written, with the holder. (The writer is stood in for: a process holding the lock while
    the weights' bytes differ from their record.)"""
    def hold(command: str) -> subprocess.Popen[str]:
        holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom pathlib import Path\n"
                                   "from attn_export.runtime.store import locked\n"
                                   "with locked(Path(sys.argv[1]), sys.argv[2]):\n    print('held', flush=True)\n"
                                   "    time.sleep(60)\n", str(model_dir), command], stdout=subprocess.PIPE,
                                  text=True, cwd=ROOT)
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        return holder

    weights = model_dir / store.WEIGHTS
    weights.write_bytes(weights.read_bytes() + b" ")
    np.savez(tmp_path / "x.npz", x=np.zeros((1, 5, store.Store(model_dir).info.input_size), np.float32))
    for command, writes in (("train", True), ("verify", False)):  # verify replaces no recorded file
        holder = hold(command)
        try:
            said = cli("predict", str(tmp_path / "x.npz"), "--dir", str(model_dir))
            assert said.returncode == 2 and said.stderr.strip().endswith(
                f"{model_dir} is being written now (pid {holder.pid}: attn-export train): try again when that "
                "ends") == writes, said.stderr
        finally:
            holder.kill()
            holder.communicate()
    said = cli("predict", str(tmp_path / "x.npz"), "--dir", str(model_dir))  # no writer: the file changed
    assert said.returncode == 2 and "being written" not in said.stderr and "re-run attn-export train" in said.stderr, \
        said.stderr
