"""A process that imports the command line's heavy modules once and forks a child per command (the Android
"zygote"): the suite's cost was each command's start, about 2 s to import torch, paid by some 300 commands.

Each child is a real process running the real entry point (``attn_export.__main__.entry``, what ``python -m
attn_export`` runs) with the test's arguments, working directory, environment and umask, its stdin
``/dev/null`` and its stdout and stderr pipes the test reads; it ends as the command line ends (``finish``:
``os._exit`` with the command's code). What it does not prove, and the tests that need it start a fresh
interpreter (``subprocess``, ``conftest.cli(fresh=True)``): what the command line imports as it starts (the
help and the device's command line import no heavy module), and anything read at import time from an
environment given to one command only (``cli(env=...)`` starts a fresh interpreter for that reason).

Only modules that start no thread of their own are imported here (a fork keeps the calling thread alone; a
library whose pool was running would wait on threads that are not there): torch, onnx and numpy, whose
OpenBLAS pool is made fork-safe by OpenBLAS itself; not onnxruntime or OpenVINO (each starts a thread as it
loads, measured). ``serve`` says how many threads the imports after numpy's started, and whether the imports
wrote anything to stderr; the client uses it only when that is none, and nothing was written (a warning at
import a fresh command prints, a child would not).

Protocol, one ``SOCK_SEQPACKET`` connection per command: the client sends the request (JSON: args, cwd, env,
umask) with three descriptors (stdin, stdout, stderr); the zygote answers the child's pid, then, when the
child has ended, its exit code as ``subprocess`` gives it (negative: killed by that signal).
"""

from __future__ import annotations

import importlib
import json
import os
import selectors
import signal
import socket
import sys
import tempfile

PRELOAD = ("torch", "onnx", "attn_export.cli", "attn_export.train", "attn_export.export", "attn_export.quantize",
           "attn_export.verify", "attn_export.bench", "attn_export.report", "attn_export.pipeline",
           "attn_export.__main__")  # after numpy, whose OpenBLAS pool OpenBLAS itself makes safe across a fork


def threads() -> int:
    return len(os.listdir("/proc/self/task"))


def _child(request: dict, fds: list[int], open_sockets: list[socket.socket]) -> None:
    """Become the command: never returns."""
    try:
        for s in open_sockets:
            s.close()
        for target, fd in zip((0, 1, 2), fds):
            os.dup2(fd, target)
            os.close(fd)
        signal.signal(signal.SIGINT, signal.default_int_handler)  # as a fresh interpreter has them
        for signum in (signal.SIGTERM, signal.SIGCHLD, signal.SIGHUP):
            signal.signal(signum, signal.SIG_DFL)
        os.chdir(request["cwd"])
        sys.path[0] = request["cwd"]  # where ``python -m`` looks first: the working directory, not tests/
        os.umask(request["umask"])
        os.environ.clear()
        os.environ.update(request["env"])
        main = sys.modules["attn_export.__main__"]
        sys.argv = [str(main.__file__), *request["args"]]
        main.entry()  # ends the process itself (interrupt.finish)
    except SystemExit as e:
        code = e.code
        if code is not None and not isinstance(code, int):
            sys.stderr.write(f"{code}\n")
            code = 1
        _flush()
        os._exit(code or 0)
    except KeyboardInterrupt:  # as the interpreter ends on one: the traceback, then death by the signal
        import traceback

        traceback.print_exc()
        _flush()
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    except BaseException:  # a bug: its traceback and exit 1, as the interpreter ends on one
        import traceback

        traceback.print_exc()
        _flush()
    os._exit(1)


def _flush() -> None:
    """What the interpreter's own end would flush before ``os._exit`` skips it."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass


def serve(path: str) -> None:
    """Import numpy, then ``PRELOAD``, say ``ready N`` (N: the threads the latter started) on stdout, and fork a child per request until stdin (the
    suite's end of a pipe) closes; or say ``noisy`` and end when the imports wrote to stderr (a warning a
    fresh command would print: a child would not)."""
    with tempfile.TemporaryFile() as said:
        stderr = os.dup(2)
        os.dup2(said.fileno(), 2)
        importlib.import_module("numpy")
        pool = threads()  # this thread and OpenBLAS's pool (one per core but one)
        for module in PRELOAD:
            importlib.import_module(module)
        sys.stderr.flush()
        os.dup2(stderr, 2)
        os.close(stderr)
        if said.tell() or os.fstat(said.fileno()).st_size:
            print("noisy", flush=True)
            return
    server = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    server.bind(path)
    server.listen(64)
    print(f"ready {threads() - pool}", flush=True)  # the threads the other imports started: 0 to be used
    selector = selectors.DefaultSelector()
    selector.register(server, selectors.EVENT_READ)
    selector.register(sys.stdin, selectors.EVENT_READ)
    waiting: dict[int, socket.socket] = {}  # child pid -> the connection its exit code goes to
    while True:
        for key, _ in selector.select(timeout=0.02):
            if key.fileobj is sys.stdin:
                if not os.read(sys.stdin.fileno(), 1):  # the suite has gone
                    os._exit(0)
                continue
            connection, _ = server.accept()
            message, fds, _, _ = socket.recv_fds(connection, 1 << 20, 3)
            pid = os.fork()
            if pid == 0:
                _child(json.loads(message), fds, [server, connection, *waiting.values()])
            for fd in fds:
                os.close(fd)
            connection.send(str(pid).encode())
            waiting[pid] = connection
        while waiting:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                break
            connection = waiting.pop(pid, None)
            if connection is not None:
                try:
                    connection.send(str(os.waitstatus_to_exitcode(status)).encode())
                except OSError:  # the test gave up on it (it ran past its timeout)
                    pass
                connection.close()


if __name__ == "__main__":
    serve(sys.argv[1])
