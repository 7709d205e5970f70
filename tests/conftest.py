"""Shared fixtures and the automatic skips that pair with the markers gpu, tensorrt and slow."""

from __future__ import annotations

import atexit
import json
import locale
import os
import selectors
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnx.numpy_helper
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
        timeout: float = HUNG_SECONDS, fresh: bool = False) -> subprocess.CompletedProcess[str]:
    """Run the real CLI in a process of its own (``python -m attn_export``'s entry point), capturing text output:
    forked from the suite's zygote (``tests/zygote.py``: torch already imported), or, with ``fresh`` or an
    ``env`` of its own, a fresh interpreter. One that runs past ``timeout`` fails the test with what it was
    doing (``hung``)."""
    command = [sys.executable, "-m", "attn_export", *args]
    environ = {**os.environ, **(env or {}), "COLUMNS": "200"}
    forker = None if fresh or env else _zygote()
    forked = None if forker is None else forker.run(command, cwd or ROOT, environ, timeout)
    if forked is not None:
        return forked
    with subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          cwd=cwd or ROOT, env=environ) as process:
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(hung(process, timeout), pytrace=False)
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def cli_on_terminal(*args: str, timeout: float = HUNG_SECONDS) -> subprocess.CompletedProcess[str]:
    """The CLI with its stdout on a pseudo-terminal, as a person at one sees it (commands print tables there and
    plain rows to a pipe); stderr is captured apart, and the terminal's colour codes are taken out."""
    import pty
    import re

    master, terminal = pty.openpty()
    command = [sys.executable, "-m", "attn_export", *args]
    with tempfile.TemporaryFile() as stderr, \
            subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=terminal, stderr=stderr, cwd=ROOT,
                             env={**os.environ, "COLUMNS": "200"}) as process:
        os.close(terminal)
        chunks, deadline = [], time.monotonic() + timeout
        with selectors.DefaultSelector() as waiting:
            waiting.register(master, selectors.EVENT_READ)
            while True:
                if not waiting.select(max(0.0, deadline - time.monotonic())):
                    os.close(master)
                    pytest.fail(hung(process, timeout), pytrace=False)
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: the command closed the terminal's other end
                    break
                if not data:
                    break
                chunks.append(data)
        os.close(master)
        process.wait(timeout)
        stderr.seek(0)
        said = _text(stderr.read())
    shown = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", _text(b"".join(chunks)))
    return subprocess.CompletedProcess(command, process.returncode, shown, said)


def _text(data: bytes) -> str:
    """Bytes as ``subprocess`` gives them in text mode: the locale's encoding, universal newlines."""
    return data.decode(locale.getpreferredencoding(False)).replace("\r\n", "\n").replace("\r", "\n")


class _Forked:
    """One command the zygote forked, read as ``hung`` reads a ``Popen``: ``pid``, ``args``, ``poll``,
    ``communicate``."""

    def __init__(self, args: list[str], pid: int, connection: socket.socket, stdout: int, stderr: int) -> None:
        self.args, self.pid, self.returncode = args, pid, None
        self._connection = connection
        self._chunks: dict[int, list[bytes]] = {stdout: [], stderr: []}
        self._open = [stdout, stderr]

    def poll(self) -> int | None:
        if self.returncode is None:
            self._connection.setblocking(False)
            try:
                said = self._connection.recv(64)
                self.returncode = int(said) if said else None  # nothing: the zygote has gone, the code with it
            except BlockingIOError:
                pass
            finally:
                self._connection.setblocking(True)
        return self.returncode

    def communicate(self, timeout: float) -> tuple[str, str]:
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as selector:
            for fd in self._open:
                selector.register(fd, selectors.EVENT_READ)
            while self._open:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise subprocess.TimeoutExpired(self.args, timeout)
                for key, _ in selector.select(left):
                    data = os.read(key.fd, 1 << 16)
                    if data:
                        self._chunks[key.fd].append(data)
                    else:  # its end closed: the command and everything it started have finished with it
                        selector.unregister(key.fd)
                        os.close(key.fd)
                        self._open.remove(key.fd)
        if self.returncode is None:
            self._connection.settimeout(max(deadline - time.monotonic(), 0.01))
            try:
                said = self._connection.recv(64)
            except TimeoutError:
                raise subprocess.TimeoutExpired(self.args, timeout) from None
            if not said:
                pytest.fail(f"the suite's zygote died while {self.args} ran (pid {self.pid}): its exit code is lost",
                            pytrace=False)
            self.returncode = int(said)
        stdout, stderr = (_text(b"".join(chunks)) for chunks in self._chunks.values())
        return stdout, stderr


class _Zygote:
    """The client of ``tests/zygote.py``: started once per test process, ended with it (its stdin closes)."""

    def __init__(self) -> None:
        self.path = os.path.join(tempfile.mkdtemp(prefix="attn-export-zygote-"), "socket")
        self.process = subprocess.Popen([sys.executable, str(Path(__file__).with_name("zygote.py")), self.path],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                        cwd=ROOT, env={**os.environ, "COLUMNS": "200"}, text=True)
        said = (self.process.stdout.readline() if self.process.stdout else "").split()
        self.ready = said == ["ready", "0"]
        if not self.ready:  # slower, not wrong: said in the run's warnings summary
            warnings.warn(f"tests/zygote.py said {' '.join(said) or 'nothing'} (ready 0 expected): every command "
                          "starts a fresh interpreter")
        atexit.register(self.close)

    def close(self) -> None:
        if self.process.stdin:
            self.process.stdin.close()  # its end of the pipe: it exits
        self.process.wait(timeout=30)
        if self.process.stdout:
            self.process.stdout.close()
        shutil.rmtree(os.path.dirname(self.path), ignore_errors=True)

    def run(self, command: list[str], cwd: Path, environ: dict[str, str],
            timeout: float) -> subprocess.CompletedProcess[str] | None:
        """The command, forked; None when the zygote could not start it (it has gone)."""
        out_read, out_write = os.pipe()
        err_read, err_write = os.pipe()
        null = os.open(os.devnull, os.O_RDONLY)
        umask = os.umask(0)
        os.umask(umask)
        request = {"args": command[3:], "cwd": str(cwd), "env": environ, "umask": umask}
        with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as connection:
            try:
                connection.connect(self.path)
                socket.send_fds(connection, [json.dumps(request).encode()], [null, out_write, err_write])
                pid = connection.recv(64)
            except OSError:  # it has gone: nothing was started, and the commands start fresh from now on
                pid = b""
            finally:
                for fd in (null, out_write, err_write):
                    os.close(fd)
            if not pid:
                self.ready = False
                for fd in (out_read, err_read):
                    os.close(fd)
                return None
            child = _Forked(command, int(pid), connection, out_read, err_read)
            try:
                stdout, stderr = child.communicate(timeout)
            except subprocess.TimeoutExpired:
                pytest.fail(hung(child, timeout), pytrace=False)  # type: ignore[arg-type]
        return subprocess.CompletedProcess(command, child.returncode, stdout, stderr)


_ZYGOTES: list[_Zygote] = []


def _zygote() -> _Zygote | None:
    """This test process's zygote, started on first use; None where it could not start with one thread
    (the commands then start fresh interpreters)."""
    if not _ZYGOTES:
        _ZYGOTES.append(_Zygote())
    return _ZYGOTES[0] if _ZYGOTES[0].ready else None


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
    lines += ["--- its stdout:", (stdout or "(not captured here)")[-3000:],
              "--- its stderr:", (stderr or "(not captured here)")[-6000:]]
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


def wrong_decisions_where(path: Path, condition: list, name: str) -> None:
    """Rewrite ``path``'s logits as ``logits - 20 * onehot(argmax)`` wherever the boolean ``name`` (made by
    the ``condition`` nodes, shaped to broadcast against [batch, classes]) holds: every decision there flips,
    by an error of 20."""
    proto = onnx.load(str(path))
    producer = next(n for n in proto.graph.node if "logits" in n.output)
    producer.output[list(producer.output).index("logits")] = "bug.raw"
    make = onnx.helper.make_node
    proto.graph.initializer.extend([onnx.numpy_helper.from_array(np.array([0.0, 20.0], np.float32), "bug.values"),
                                    onnx.numpy_helper.from_array(np.array([1], np.int64), "bug.axis1")])
    proto.graph.node.extend([*condition,
                             make("Shape", ["bug.raw"], ["bug.shape"]),
                             make("Gather", ["bug.shape", "bug.axis1"], ["bug.classes"], axis=0),
                             make("ArgMax", ["bug.raw"], ["bug.top"], axis=1, keepdims=0),
                             make("OneHot", ["bug.top", "bug.classes", "bug.values"], ["bug.push"], axis=-1),
                             make("Sub", ["bug.raw", "bug.push"], ["bug.flipped"]),
                             make("Where", [name, "bug.flipped", "bug.raw"], ["logits"])])
    onnx.save(proto, str(path))


def mark_verified(directory: Path, name: str, passed: bool = True, backends: tuple[str, ...] = ("ort-cpu",)) -> None:
    """What attn-export verify writes into an artefact's manifest entry (without running it)."""
    manifest = store.read_manifest(directory)
    manifest["artifacts"][name]["verified"] = {"passed": passed, "sha256": store.sha256_file(directory / name),
                                               "verify_sha256": "0" * 64,
                                               "backends": list(backends), "accuracy": 0.5}
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
