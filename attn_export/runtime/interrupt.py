"""Ctrl-C and SIGTERM for both command lines: raised as ``Interrupted`` where the process is, so every
``finally`` runs (temporary files removed, the directory's lock released, an unbundle's staging directory
deleted), then one line and exit 128 + the signal's number.

Python's default SIGTERM kills the process on the spot (debris left: ``.model.onnx.*.tmp``,
``/tmp/attn-export-bundle-*``), and typer turns a KeyboardInterrupt into a silent exit 130 before the
command line can say anything: hence an exception of our own, installed only while a command runs.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
import threading
from contextlib import contextmanager
from types import FrameType
from typing import TYPE_CHECKING, Callable, Iterator, List, Optional

from ..errors import Interrupted, from_os_error

if TYPE_CHECKING:
    from typing import NoReturn

__all__ = ["commit_point", "committed", "finish", "holding", "interruptible", "message", "raise_early",
           "until_a_command_runs", "was_committed"]

SIGNALS = (signal.SIGINT, signal.SIGTERM)
TIMER = (signal.SIGALRM,) if hasattr(signal, "setitimer") else ()  # not on Windows
RETRY_SECONDS = 0.05


_committed = threading.Event()
_holding = threading.Event()  # inside commit_point: a signal is held, not raised
_held: List[int] = []


_early: List[Interrupted] = []  # a signal that landed inside an import before a command's own handler


def until_a_command_runs() -> None:
    """From the command line's start until a command's own handler (``interruptible``, which puts this one
    back when it ends): SIGINT and SIGTERM end the process in one line, exit 130 / 143 (found by attacking:
    in its first half second a SIGTERM killed the process by the signal, no line). A second signal is
    ignored meanwhile. One that lands inside an import is raised when the import is over (``raise_early``,
    called by ``interruptible`` and by the command line when its import and its command end): raised inside
    a C extension's import, numpy's initialiser on Python 3.8 turned it into an ImportError and a traceback
    (found by review, Ctrl-C and SIGTERM alike). A child forked meanwhile dies by the signal, as without it."""
    owner = os.getpid()

    def handler(signum: int, frame: Optional[FrameType]) -> None:
        if os.getpid() != owner:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        for s in SIGNALS:
            signal.signal(s, signal.SIG_IGN)
        interrupted = Interrupted(signal.Signals(signum).name, 128 + signum)
        if not _importing(frame):
            raise interrupted
        _early.append(interrupted)

    for s in SIGNALS:
        if signal.getsignal(s) is not signal.SIG_IGN:  # started ignoring it (nohup, `cmd &`): as Python leaves it
            signal.signal(s, handler)


def raise_early() -> None:
    """Raise the interrupt a signal left inside an import (``until_a_command_runs``), if one did."""
    if _early:  # said once: cleared as it is raised (found by review: a second call printed it again)
        early = _early[0]
        _early.clear()
        raise early


def committed() -> None:
    """The command's work is done and kept (an unbundle's last rename): inside ``interruptible`` a SIGINT or
    SIGTERM from here on is ignored, and the command line ends with the command's own code. Found by
    attacking: a Ctrl-C just after ``unbundle`` had filled its target exited 130, "nothing changed", and a
    script's retry was then refused because the target was not empty. It only marks (any thread may call
    it); the next ``interruptible`` block starts unmarked."""
    _committed.set()


@contextmanager
def commit_point() -> Iterator[None]:
    """The block is the step whose success keeps the command's work (a rename into place): a SIGINT or SIGTERM
    that lands while it runs is held, then ignored once the block has marked the work ``committed``, or sent
    again if the block failed. Found by attacking: a SIGTERM between a bundle's rename and its mark exited 143,
    "interrupted", with the bundle in place. Held by the handler, not by masking the signal: the kernel gives a
    signal to any thread that does not mask it (ONNX Runtime's, pytest-xdist's), and Python's handler then runs
    in the main thread all the same. Inside another, it leaves the outer one to decide (found by review: the
    inner one had cleared a signal the outer one held)."""
    if _holding.is_set():
        yield
        return
    _held.clear()
    _holding.set()
    try:
        yield
        committed()
    finally:
        _holding.clear()
        if _held and not _committed.is_set():
            os.kill(os.getpid(), _held[0])


@contextmanager
def holding() -> Iterator[Callable[[], None]]:
    """Yields ``hold``: from its call to the block's end, a SIGINT or SIGTERM is held, then sent again, so a
    file put in place and its record in the manifest are written together or not at all (found by attacking:
    a SIGTERM between train's new weights and the manifest left a directory every command refused, "changed
    after it was recorded", under "nothing is half-written"). Call it as the last step before the rename, after
    the long work, which a signal still stops at once. Inside ``commit_point`` or another hold, the outer one
    decides."""
    started: List[bool] = []

    def hold() -> None:
        if not started and not _holding.is_set():
            _held.clear()
            _holding.set()
            started.append(True)

    try:
        yield hold
    finally:
        if started:
            _holding.clear()
            if _held and not _committed.is_set():
                os.kill(os.getpid(), _held[0])


def was_committed() -> bool:
    """Whether the last command marked its work ``committed``."""
    return _committed.is_set()


@contextmanager
def interruptible() -> Iterator[None]:
    """While the block runs, SIGINT and SIGTERM raise ``Interrupted``; a second signal during the clean-up
    is ignored, so the clean-up finishes.

    An exception raised while a C extension is being imported (onnxruntime's, torch's: seconds) is lost or
    turned into an ImportError by the extension's initialiser, so a signal that lands inside an import is
    raised once the import is over (re-checked every 50 ms on SIGALRM); and one that was swallowed anyway
    is raised when the block ends."""
    raise_early()
    pending: List[Interrupted] = []
    _committed.clear()

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
        if _committed.is_set():  # the work is kept: the command ends as it would have
            return
        if _holding.is_set():  # being put in place: decided when commit_point ends
            _held.append(signum)
            return
        for s in SIGNALS:
            signal.signal(s, signal.SIG_IGN)
        pending.append(Interrupted(signal.Signals(signum).name, 128 + signum))
        raise_when_safe(frame)

    previous = {s: signal.signal(s, handler) for s in (*SIGNALS, *TIMER)
                if signal.getsignal(s) is not signal.SIG_IGN}  # one the process was started ignoring (nohup)
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
        for s, h in reversed(list(previous.items())):  # SIGINT last: Python's own raises KeyboardInterrupt,
            signal.signal(s, h)  # which run_command_line turns into the one line (found by a kill landing here)
    if pending:
        raise pending[0]


def finish(code: int) -> "NoReturn":
    """End the process with ``code`` once a command has returned. Python's exit hooks run (logging, temporary
    directories, torch's), the output is flushed, and the interpreter's own teardown is skipped
    (``os._exit``): for a command that imported torch that teardown is its C++ libraries unloading, most of
    a second (0.8 s measured on this machine) after the command had finished and said so. In that window a
    Ctrl-C killed the process by the signal, no line (found by attacking: train had committed its weights),
    and a native library that blocks on unloading would hold the process (a CI run once waited 600 s on a
    verify twice; where it waited was not recorded). A SIGINT or SIGTERM during the hooks exits at once with
    ``code``: the work is done and said. Output that cannot be written at the end (stdout on a full disk) is
    one line and that error's exit code, if the command had succeeded: print() leaves it in the buffer."""
    def flush() -> Optional[OSError]:
        """Flush both streams; what writing stdout failed with, other than its reader having gone."""
        failed = None
        for stream in (sys.stdout, sys.stderr):
            if stream is None:  # started with the descriptor closed (``>&-``): Python has no stream there
                continue
            try:
                stream.flush()
            except (BrokenPipeError, ValueError):  # the reader has gone (``| head``), or closed: nothing to say
                pass
            except OSError as e:  # a full disk: what the command printed is lost, which is not success
                failed = failed or (e if stream is sys.stdout else None)
        return failed

    def handler(signum: int, frame: Optional[FrameType]) -> None:
        flush()
        os._exit(code)

    for s in SIGNALS:
        if signal.getsignal(s) is not signal.SIG_IGN:  # started ignoring it (nohup, `cmd &`): as Python leaves it
            signal.signal(s, handler)
    try:  # what the interpreter's own exit does first: join the threads that are not daemons, then the hooks
        threading._shutdown()  # type: ignore[attr-defined]
        atexit._run_exitfuncs()
    except BaseException:  # noqa: BLE001 - a hook's error is printed by atexit; 3.8 to 3.10 raise it again after
        pass
    failed = flush()
    if failed is not None and code == 0:
        error = from_os_error(failed)
        if sys.stderr is not None:
            try:
                sys.stderr.write(f"Error: {error}\n")
                sys.stderr.flush()
            except (OSError, ValueError):
                pass
        code = error.exit_code
    os._exit(code)


def _importing(frame: Optional[FrameType]) -> bool:
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


def message(e: Interrupted) -> str:
    return (f"interrupted by {e.signal_name}; files are replaced whole, so what finished before it is intact and "
            "nothing is half-written")
