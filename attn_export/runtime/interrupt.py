"""Ctrl-C and SIGTERM for both command lines: raised as ``Interrupted`` where the process is, so every
``finally`` runs (temporary files removed, the directory's lock released, an unbundle's staging directory
deleted), then one line and exit 128 + the signal's number.

Python's default SIGTERM kills the process on the spot (debris left: ``.model.onnx.*.tmp``,
``/tmp/attn-export-bundle-*``), and typer turns a KeyboardInterrupt into a silent exit 130 before the
command line can say anything: hence an exception of our own, installed only while a command runs.
"""

from __future__ import annotations

import os
import signal
import sys
from contextlib import contextmanager
from types import FrameType
from typing import Iterator, List, Optional

from ..errors import Interrupted

__all__ = ["exit_at_once_on_signal", "ignore_signals_at_teardown", "interruptible", "message"]

SIGNALS = (signal.SIGINT, signal.SIGTERM)
TIMER = (signal.SIGALRM,) if hasattr(signal, "setitimer") else ()  # not on Windows
RETRY_SECONDS = 0.05


@contextmanager
def interruptible() -> Iterator[None]:
    """While the block runs, SIGINT and SIGTERM raise ``Interrupted``; a second signal during the clean-up
    is ignored, so the clean-up finishes.

    An exception raised while a C extension is being imported (onnxruntime's, torch's: seconds) is lost or
    turned into an ImportError by the extension's initialiser, so a signal that lands inside an import is
    raised once the import is over (re-checked every 50 ms on SIGALRM); and one that was swallowed anyway
    is raised when the block ends."""
    pending: List[Interrupted] = []

    def raise_when_safe(frame: Optional[FrameType]) -> None:
        if _importing(frame) and hasattr(signal, "setitimer"):
            signal.signal(signal.SIGALRM, lambda _s, f: raise_when_safe(f))
            signal.setitimer(signal.ITIMER_REAL, RETRY_SECONDS)
            return
        raise pending[0]

    owner = os.getpid()

    def handler(signum: int, frame: Optional[FrameType]) -> None:
        if os.getpid() != owner:  # a child forked meanwhile (OpenVINO's telemetry): it dies as it would without us
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        for s in SIGNALS:
            signal.signal(s, signal.SIG_IGN)
        pending.append(Interrupted(signal.Signals(signum).name, 128 + signum))
        raise_when_safe(frame)

    previous = {s: signal.signal(s, handler) for s in (*SIGNALS, *TIMER)}
    try:
        yield
    except Interrupted:
        raise
    except BaseException:
        if pending:
            raise pending[0] from None
        raise
    finally:
        if TIMER:
            signal.setitimer(signal.ITIMER_REAL, 0)
        for s, h in previous.items():
            signal.signal(s, h)
    if pending:
        raise pending[0]


def exit_at_once_on_signal(code: int) -> None:
    """After a command has finished with ``code``: SIGINT and SIGTERM during the interpreter's teardown (torch's
    atexit hooks: most of a second) exit at once with ``code``, output flushed. The work is done and said; a
    signal then had exited 130 with no line, or printed a KeyboardInterrupt traceback from an atexit hook and
    exited 0 (found by attacking)."""
    def handler(signum: int, frame: Optional[FrameType]) -> None:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):  # closed, or a reader gone: nothing more to say
                pass
        os._exit(code)

    for s in SIGNALS:
        signal.signal(s, handler)


def ignore_signals_at_teardown() -> None:
    """An atexit callback, registered before the command line is imported (so before torch's hooks) and so
    run last: from then on SIGINT and SIGTERM are ignored. Python's finalisation resets a handler of its own
    to the default, which in the C++ libraries' teardown after it (torch's, most of a second) killed the
    process by the signal, no line, after the command had finished and said so; an ignored signal it keeps."""
    for s in SIGNALS:
        signal.signal(s, signal.SIG_IGN)


def _importing(frame: Optional[FrameType]) -> bool:
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


def message(e: Interrupted) -> str:
    return (f"interrupted by {e.signal_name}; files are replaced whole, so what finished before it is intact and "
            "nothing is half-written")
