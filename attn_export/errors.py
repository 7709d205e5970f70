"""The exception tree. Every error the user can cause or meet carries the exit code DESIGN.md promises.

    AttnExportError            exit 1  (base; "the work failed" unless a subclass says otherwise)
    ├── WorkFailed             exit 1  training below the recipe's floor, a build that failed
    │   ├── ParityError        exit 1  a backend disagreed with the reference
    │   └── Busy               exit 1  another attn-export process is writing the same directory
    ├── BadInput               exit 2  bad usage or bad input
    │   ├── ConfigError        exit 2  a recipe or --set value that does not fit the schema
    │   ├── DataError          exit 2  a malformed or unsuitable data file
    │   ├── MissingPrerequisite exit 2 a command run before the one that makes its input
    │   └── Untrusted          exit 2  an artefact the store will not vouch for: unrecorded, changed,
    │                                  stale along its lineage, contradicting model.json, not verified
    ├── NotAvailable           exit 3  not possible on this machine (no GPU, no TensorRT, missing extra)
    └── (from_os_error)                a file system error: exit 2 for a path that cannot be written as
                                       given (permissions, read-only, a link or a directory in the way),
                                       exit 1 for a machine that ran out (disk full, I/O error)

    Interrupted (a BaseException)  exit 130 / 143  SIGINT / SIGTERM, raised where the process was, so that
                                       every ``finally`` (temporary files, the lock) runs

The CLI prints ``Error: <message>`` on one line and exits with ``exit_code``; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import errno
import importlib
import os
import signal
import sys
from typing import Iterable, NoReturn

__all__ = [
    "AttnExportError",
    "BadInput",
    "Busy",
    "ConfigError",
    "DataError",
    "MissingPrerequisite",
    "Interrupted",
    "NotAvailable",
    "ParityError",
    "TF32_OVERRIDE",
    "Untrusted",
    "WorkFailed",
    "does_nothing",
    "empty_path",
    "from_os_error",
    "is_out_of_memory",
    "listed",
    "out_of_memory",
    "printable",
    "run_command_line",
    "unexpected",
]


class AttnExportError(Exception):
    """Base of every error this package raises on purpose; its text is one line (a library's several-line
    reason, quoted in it, joined)."""

    exit_code = 1

    def __str__(self) -> str:
        return " ".join(line.strip() for line in super().__str__().splitlines() if line.strip())


class WorkFailed(AttnExportError):
    """The command ran but its result is not acceptable (exit 1)."""

    exit_code = 1


class ParityError(WorkFailed):
    """A backend's outputs disagree with the reference beyond tolerance (exit 1)."""


class Busy(WorkFailed):
    """Another attn-export process holds the artefact directory's lock (exit 1: try again later)."""


class BadInput(AttnExportError):
    """Bad usage or bad input (exit 2)."""

    exit_code = 2


class ConfigError(BadInput):
    """A recipe file or ``--set`` override that does not fit the schema."""


class DataError(BadInput):
    """A data file that is malformed, or data that cannot be used as asked."""


class MissingPrerequisite(BadInput):
    """A command's input does not exist yet; the message names the command that makes it."""


class Untrusted(BadInput):
    """An artefact the store (``runtime.store``) will not vouch for; the message names the file and why."""


class NotAvailable(AttnExportError):
    """Not possible on this machine: a missing package, GPU, or execution provider (exit 3)."""

    exit_code = 3


class Interrupted(BaseException):
    """SIGINT or SIGTERM, turned into an exception by the command lines' signal handlers. Not an
    ``Exception``: no ``except Exception`` may swallow it; not a ``KeyboardInterrupt``: typer turns that
    into a silent exit 130 before the command line can say anything."""

    def __init__(self, signal_name: str, exit_code: int) -> None:
        super().__init__(signal_name)
        self.signal_name = signal_name
        self.exit_code = exit_code


# the machine ran out (exit 1); every other file system error is a path that cannot be used as given (2)
_RAN_OUT = {errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.ENOMEM, errno.EFBIG}
_HINTS = {
    errno.EACCES: "expected a path this user may write (check its permissions)",
    errno.EPERM: "expected a path this user may write (check its permissions)",
    errno.EROFS: "expected a writable file system",
    errno.EISDIR: "expected a file there, not a directory",
    errno.ENOTDIR: "expected a directory there, not a file",
    errno.ELOOP: "attn-export never writes through a symbolic link: expected a regular file or none",
    errno.ENOSPC: "expected enough free space (nothing was half-written; free some and run it again)",
    errno.EDQUOT: "expected enough disk quota (nothing was half-written)",
    errno.EFBIG: "expected a file size the limits allow (ulimit -f, the file system's largest file; nothing was "
                 "half-written)",
    errno.ENAMETOOLONG: "expected a name the file system allows (most allow 255 bytes a name, 4096 a path)",
    # found by attacking: a target under /proc was the OS's reason alone
    errno.ENOENT: "expected a path whose directory exists or can be made there",
}


# the same errors met while reading a user's file (found by attacking: an unreadable data file was told to be writable)
_READ_HINTS = {errno.EACCES: "expected a file this user may read (check its permissions)",
               errno.EPERM: "expected a file this user may read (check its permissions)",
               errno.ENOENT: "expected a file that exists"}


def from_os_error(e: OSError, path: "os.PathLike[str] | str | None" = None, reading: bool = False) -> AttnExportError:
    """An OSError as the one-line project error the command lines print: the path, the OS's reason, and
    what would work. ``path`` names the file the user knows (the target, not its temporary name);
    ``reading``: it was being read, not written."""
    where = path if path is not None else (e.filename2 if e.filename2 is not None else e.filename)
    reason = e.strerror or str(e)
    hint = (reading and _READ_HINTS.get(e.errno or 0)) or _HINTS.get(e.errno or 0, "")
    message = f"{os.fspath(where)}: {reason}" if where is not None else reason
    if e.errno == errno.ENOMEM or is_out_of_memory(reason):  # a library that could not be mapped, too
        return out_of_memory(message)
    return (WorkFailed if e.errno in _RAN_OUT else BadInput)(message + (f"; {hint}" if hint else ""))


def unexpected(e: BaseException) -> "AttnExportError | None":
    """The one-line error for what no step turned into its own message, as the command lines print it: a
    file system error, or memory that ran out (a MemoryError, an import whose library could not be mapped,
    or torch's allocator's RuntimeError); None for anything else (a bug: its traceback is the report)."""
    if isinstance(e, MemoryError):
        return out_of_memory("MemoryError")
    if isinstance(e, OSError):
        return from_os_error(e)
    if isinstance(e, ImportError) and is_out_of_memory(str(e)):
        return out_of_memory((str(e).strip().splitlines() or ["ImportError"])[0], f"importing {e.name}")
    if isinstance(e, RuntimeError) and is_out_of_memory(str(e)):  # torch's allocator: found by attacking, load
        said = (str(e).strip().splitlines() or ["RuntimeError"])[0]  # of a 1 GiB checkpoint
        if "cuda" in said.lower():  # torch.cuda.OutOfMemoryError: the GPU's memory, not ulimit's (review)
            return NotAvailable(f"the GPU ran out of memory ({said}); expected a smaller batch or shorter sequences, "
                                "or fewer processes on the GPU")
        return out_of_memory(said)
    return None


# what a library says when an allocation or a mapping fails (under ``ulimit -v`` a shared library that
# cannot be mapped raises ImportError, and Rust's allocator says "failed to allocate")
_OUT_OF_MEMORY = ("memoryerror", "cannot allocate memory", "failed to map segment", "out of memory", "std::bad_alloc",
                  "failed to allocate", "can't allocate memory")


def is_out_of_memory(text: str) -> bool:
    """Whether an error's text says that memory ran out."""
    return any(s in text.lower() for s in _OUT_OF_MEMORY)


def does_nothing(flags: "list[str]", where: str, expected: str) -> BadInput:
    """The one line for options given where they change nothing (``where``: "with --stream ..."): refused,
    never ignored."""
    return BadInput(f"{', '.join(flags)} {'do' if len(flags) > 1 else 'does'} nothing {where}; expected {expected}")


def given_twice(option: str, values: "list[str]") -> BadInput:
    """An option that takes one value, given more than once: both command lines refuse it (found by attacking:
    click and argparse kept the last one without a word)."""
    times = "twice" if len(values) == 2 else f"{len(values)} times"
    return BadInput(f"{option} given {times} ({', then '.join(map(repr, values))}); expected it once")


def empty_path(value: str, expected: str) -> "BadInput | None":
    """The refusal of a path given as "" (or blanks), which ``Path`` would read as the current directory:
    found by attacking, ``train ""`` trained into it and ``predict ""`` read it; None for any other path."""
    return BadInput(f"an empty path; expected {expected}") if not value.strip() else None


def out_of_memory(detail: str, doing: str = "") -> NotAvailable:
    """The one line for memory that ran out (exit 3, like a budget refused up front): ``detail`` is what
    the library said, ``doing`` what was being done."""
    return NotAvailable(f"this process ran out of memory{f' {doing}' if doing else ''} ({detail}); expected more "
                        "memory (ulimit -v, the container's limit) or fewer processes")


def shell_word(path: "os.PathLike[str] | str") -> str:
    """``path`` as one word of a command line a user may copy into a shell: quoted when it holds a space or
    another character the shell reads (found by attacking: "run attn-export verify my runs/q 1" ran
    something else)."""
    import shlex

    return shlex.quote(os.fspath(path))


def listed(names: "Iterable[str]", last: str = "and") -> str:
    """``names`` as words in a message: "a", "a and b", "a, b and c" (``last``: "or" for "a, b or c")."""
    items = list(names)
    return f" {last} ".join([", ".join(items[:-1]), items[-1]] if len(items) > 1 else items)


def printable(text: str, limit: int = 0) -> str:
    """``text`` safe for one line of a terminal or a TSV cell: tabs, newlines, escape sequences and every
    other control character written as Python escapes (``\\t``, ``\\x1b``), cut to ``limit`` characters
    (0: no cut) with "..." marking the cut. Labels, ids and a lock holder are data, never terminal commands."""
    out = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)
    return out if not limit or len(out) <= limit else out[: max(limit - 3, 0)] + "..."


# "0": no NVIDIA library (cuBLAS, cuDNN, TensorRT) uses TF32, a 10-bit mantissa, for FP32 work in this process.
# The command lines set it unless it is set, before anything loads those libraries: FP32 means FP32 on every GPU
# path (ONNX Runtime's TensorRT EP has no switch of its own); a process that set it otherwise keeps its choice.
TF32_OVERRIDE = "NVIDIA_TF32_OVERRIDE"


def _open_standard_streams() -> None:
    """A process started with stdin, stdout or stderr closed (``2>&-``) gets /dev/null there: Python has no
    stream for it (None), print(file=None) writes to stdout (found by review: the device's stderr lines
    landed in the predictions file), rich asked None whether it is a terminal, and the next file opened
    would take the free descriptor, where a library's own writes to stderr would go."""
    for fd, name in ((0, "stdin"), (1, "stdout"), (2, "stderr")):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDONLY if fd == 0 else os.O_WRONLY)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
        if getattr(sys, name) is None:
            setattr(sys, name, open(fd, "r" if fd == 0 else "w", closefd=False))
    # a label or id the output's encoding cannot hold is written escaped (\u0448), as stderr writes it, not a
    # traceback halfway through the predictions (found by attacking: PYTHONIOENCODING=ascii, a Latin-1 locale)
    reconfigure = getattr(sys.stdout, "reconfigure", None)
    if reconfigure is not None:
        reconfigure(errors="backslashreplace")


# what the device's command line imports as it loads (a bundle has no package metadata to read it from)
DEVICE_REQUIRES = ("numpy",)


def _requirements() -> "set[str]":
    """The modules of the packages attn-export requires (its installed metadata's unconditional ones, numpy,
    typer, rich, ...), and the device's: a missing one is said in one line; any other missing module (a C
    module of the standard library, a host-only package imported by device code) is a bug, a traceback."""
    import re
    from importlib.metadata import PackageNotFoundError, requires

    try:
        declared = requires("attn-export") or []
    except PackageNotFoundError:  # a bundle's device package
        declared = []
    return set(DEVICE_REQUIRES) | {re.split(r"[\s<>=!~;\[]", r, 1)[0].lower().replace("-", "_")
                                   for r in declared if "extra ==" not in r}


def run_command_line(module: str, function: str = "main") -> "NoReturn":
    """Import ``module`` and exit with what its ``function`` returns, the import inside the last-resort net:
    a command line whose own import runs out of memory (under ``ulimit -v``) says so in one line, exit 3,
    where the command line's own handlers cannot yet. A Ctrl-C or SIGTERM outside the command's own handler
    is its one line (``interrupt.until_a_command_runs``). Once it has returned, the process ends at once with
    that code, Python's exit hooks run and the interpreter's teardown skipped (``interrupt.finish``)."""
    _open_standard_streams()
    os.environ.setdefault(TF32_OVERRIDE, "0")
    code: object = None
    try:
        try:
            from .runtime import interrupt  # the standard library's only

            interrupt.until_a_command_runs()
            imported = importlib.import_module(module)
            interrupt.raise_early()
            run = getattr(imported, function)
        except (MemoryError, ImportError, OSError) as e:
            sys.exit(_import_failed(e, module))
        try:
            code = run()
        except SystemExit as e:  # argparse's --help and usage errors end this way: they finish like any command
            code = e.code
            if code is not None and not isinstance(code, int):  # a message, as sys.exit prints it
                sys.stderr.write(f"{code}\n")
                code = 1
        interrupt.raise_early()  # one that landed in an import no command's handler followed (review)
    except (KeyboardInterrupt, Interrupted) as e:  # before the command's handler (found by attacking: a traceback
        code = _interrupted_late(e)  # through importlib), or once it was gone, before finish() took over
    while True:  # found by the suite under load: a Ctrl-C between the lines above and finish() setting its
        try:     # handlers raised KeyboardInterrupt here, a traceback and death by the signal
            from .runtime.interrupt import finish

            finish(code if isinstance(code, int) else 0)
        except (KeyboardInterrupt, Interrupted) as e:
            code = _interrupted_late(e)


def _import_failed(e: BaseException, module: str) -> int:
    """The one line and exit code for a command line whose own import failed for want of memory or of a
    package it needs; any other failure raised again (a bug: its traceback is the report)."""
    error = unexpected(e)
    if error is None and isinstance(e, ModuleNotFoundError) and (e.name or "").split(".")[0] in _requirements():
        # found by attacking: the device's command line before `pip install -r requirements.txt` was a
        # traceback ending in "No module named 'numpy'"; any other missing module is a bug, said as one
        error = NotAvailable(f"{module.split('.')[0]} needs the Python package {e.name.split('.')[0]!r}, which is "
                             "not installed for this Python; expected its requirements installed (pip install "
                             "attn-export; in a bundle: python3 -m pip install -r requirements.txt)")
    if error is None:
        raise e
    sys.stderr.write(f"Error: {error}\n")
    return error.exit_code


def _interrupted_late(e: BaseException) -> int:
    """A signal outside the command's own handler: its one line, and its exit code; 0 once the command has
    marked its work kept (``interrupt.committed``: done and said)."""
    from .runtime.interrupt import message, was_committed

    if was_committed():
        return 0
    interrupted = e if isinstance(e, Interrupted) else Interrupted("SIGINT", 128 + signal.SIGINT)
    sys.stderr.write(f"Error: {message(interrupted)}\n")
    return interrupted.exit_code
