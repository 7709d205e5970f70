"""The artefact directory's file system, apart from what the files mean: reading a file once and within
bounds, atomic writes, the directory lock, and the sweep of a dead writer's temporary files.

Every file is written to a temporary name in the same directory, flushed, fsynced and renamed, so a
process killed mid-write leaves the previous file intact. What the manifest says of a file, and whether it
may be used, is ``manifest.py``'s and ``trust.py``'s.
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import platform
import re
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, BinaryIO, List, Optional, TypeVar, Union, cast

from ...errors import BadInput, Busy, DataError, MissingPrerequisite, empty_path, from_os_error, printable
from .. import schema
from ..interrupt import commit_point
from .names import CREATES_DIRECTORY, DIRECTORY_FILES, LOCK, MODEL_JSON, TMP_PREFIX, made_by

__all__ = ["DIR_MODE", "FILE_MODE", "MAX_JSON_BYTES", "atomic_path", "fsync_directory", "json_bytes", "json_text", "locked", "parse_json",
           "open_regular", "read_file", "read_regular", "read_json", "require", "sha256_file", "short_name", "staging_prefix",
           "sweep", "sweep_staging", "write_bytes", "write_json", "writes_directory"]


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# read once, at import: os.umask can only be read by setting it, which races with threads creating files
UMASK = _read_umask()
FILE_MODE = 0o666 & ~UMASK  # what open() gives a new file; mkstemp's files are 0o600 whatever the umask
DIR_MODE = 0o777 & ~UMASK


def fsync_directory(path: Path) -> None:
    """Put ``path``'s own entries (names made or renamed in it) on disk, where the system can: a rename is
    durable only once its directory is. Best effort, called after the rename: a directory that cannot be
    opened for reading or fsynced (a file system without it, Windows) keeps its names as it does, and only
    the disk's own I/O error is raised."""
    if not hasattr(os, "O_DIRECTORY"):
        return
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as e:  # a directory one may write but not read (mode 0733): the rename stands
        if e.errno == errno.EIO:
            raise
        return
    try:
        os.fsync(fd)
    except OSError as e:  # only the disk failing is an error; a file system without it keeps names its way
        if e.errno == errno.EIO:
            raise
    finally:
        os.close(fd)


# the most bytes of a target's own name that a temporary name beside it carries: with the prefix, pid and
# random part it stays under the 255 bytes most file systems allow a name (found by attacking: a legal
# 240-byte --out was refused "File name too long", by its temporary name)
TMP_NAME_BYTES = 160


def short_name(name: str) -> str:
    """``name`` cut to at most ``TMP_NAME_BYTES`` bytes, for a temporary name beside it: whole UTF-8 characters,
    and a name that is not UTF-8 (Linux allows any bytes) keeps its own bytes (review: ``encode`` had raised)."""
    try:
        raw = os.fsencode(name)
    except UnicodeEncodeError:  # a lone surrogate, which no file system name holds: characters, few enough
        return name[:TMP_NAME_BYTES // 4]
    if len(raw) <= TMP_NAME_BYTES:
        return name
    cut = raw[:TMP_NAME_BYTES]
    while cut and cut[-1] & 0xC0 == 0x80:  # a character's continuation bytes, then its lead byte
        cut = cut[:-1]
    if cut and cut[-1] >= 0xC0:
        cut = cut[:-1]
    return os.fsdecode(cut)


@contextmanager
def atomic_path(target: Path, commit: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success it replaces ``target`` in one rename, with
    the mode a plain ``open`` would have given it (the umask's). A file system error names ``target``.
    ``commit``: that rename is the command's last step (``interrupt.commit_point``)."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f"{TMP_PREFIX}{os.getpid()}.{short_name(target.name)}.", suffix=".tmp",
                                   dir=target.parent)
    except OSError as e:
        raise from_os_error(e, target) from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp_path, FILE_MODE)
        with commit_point() if commit else nullcontext():
            os.replace(tmp_path, target)  # a link at target is replaced, never written through
        fsync_directory(target.parent)
    except OSError as e:
        raise from_os_error(e, target) from None
    finally:
        tmp_path.unlink(missing_ok=True)


def made_as(path: Path) -> str:
    """The name that ``atomic_path``'s temporary ``path`` takes when it is done (``path``'s own name for any
    other file): what errors about a file still being made name, not ``.attn-export.PID.NAME.XXXX.tmp`` (a name
    over ``TMP_NAME_BYTES`` comes back cut: the store's own names are short)."""
    name = path.name
    if not (name.startswith(TMP_PREFIX) and name.endswith(".tmp") and name.count(".") >= 4):
        return name
    return name[len(TMP_PREFIX):].split(".", 1)[1].rsplit(".", 2)[0]


def _alive(pid: int) -> bool:
    """Whether process ``pid`` still runs: it exists, and (where /proc says) is not a zombie, a process
    that has ended and whose parent has not reaped it yet (a killed writer under a shell or a service
    manager that waits late), which writes nothing more."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):  # no such process; a pid past the C int no process has (review)
        return False
    except PermissionError:  # another user's process: /proc still tells whether it runs
        pass
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]  # the field after the command name, which may hold ")"
    except (OSError, IndexError):  # no /proc (macOS): kill's answer
        return True
    return state not in (b"Z", b"X")


def sweep(directory: Path, made: Optional[str] = None) -> List[str]:
    """Remove the temporary files a dead writer left in ``directory`` (ours only, by their prefix; a live
    writer's are kept); with ``made``, only those of that file (``made_as``), for a folder that is not ours, such
    as where a bundle goes. Returns the names removed."""
    removed = []
    for path in directory.iterdir():
        name = path.name
        if not (name.startswith(TMP_PREFIX) and name.endswith(".tmp")) or (path.is_dir() and not path.is_symlink()):
            continue  # not ours: attn-export writes files there, never directories
        if made is not None and made_as(path) != short_name(made):
            continue
        pid = name[len(TMP_PREFIX):].split(".", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and _alive(int(pid)):
            continue
        path.unlink(missing_ok=True)  # a link is removed itself, never what it points to
        removed.append(name)
    return removed


def staging_prefix(prefix: str) -> str:
    """``prefix`` + this process's id and host: the start of a staging directory's name (``tempfile.mkdtemp``
    adds 8 characters), which ``sweep_staging`` reads back. The host, because on a shared volume (NFS) another
    machine's running writer is no process here."""
    return f"{prefix}{os.getpid()}@{_host()}-"


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9.-]", "_", platform.node())[:32]


def sweep_staging(parent: Path, prefix: str) -> List[str]:
    """Remove the staging directories (``staging_prefix(prefix)`` + mkdtemp's 8 characters, this user's, made
    on this host) in ``parent`` whose process is dead: an unbundle killed before its last rename left its
    half-unpacked copy, hidden, beside the target (found by attacking). A live process's are kept, this one's
    too, and so is any other name; a folder that cannot be listed is left as it is. Returns the names removed."""
    shape = re.compile(re.escape(prefix) + r"([0-9]+)@" + re.escape(_host()) + r"-[a-z0-9_]{8}")
    removed: List[str] = []
    try:
        entries = list(parent.iterdir())
    except OSError:  # a folder one may write into but not list (found by review)
        return removed
    for path in entries:
        found = shape.fullmatch(path.name)
        if found is None or int(found.group(1)) == os.getpid() or _alive(int(found.group(1))):
            continue
        try:
            own = path.is_dir() and not path.is_symlink() and path.lstat().st_uid == os.geteuid()
        except OSError:
            continue
        if own:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path.name)
    return removed


_held: dict[Path, tuple[int, int]] = {}  # directory -> (lock file descriptor, nesting depth), this process


def _open_lock(directory: Path) -> int:
    """Open (or create) DIR's lock file without following a link, and only if it is a regular file: a
    directory that arrives by git, rsync or copy may carry ``.attn-export.lock -> ~/victim``."""
    path = directory / LOCK
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags, 0o666)
    except OSError as e:
        if e.errno == errno.ELOOP or path.is_symlink():
            raise BadInput(f"{path} is a symbolic link; attn-export never writes through a link in an artefact "
                           "directory: expected a regular file or none (remove the link)") from None
        raise from_os_error(e, path) from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise BadInput(f"{path} is not a regular file; expected attn-export's lock file or none (remove it)")
    return fd


LOCK_ATTEMPTS = 5


def _is_lock_file(fd: int, directory: Path) -> bool:
    """Whether ``fd`` is still DIR's lock file: a command that wrote nothing removes the lock file it made,
    and a process that opened that file before it went holds a lock nobody else can see."""
    try:
        now = os.lstat(directory / LOCK)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino)


def _check_writable(directory: Path) -> None:
    """Before any work: a directory the command could not write into, or one of attn-export's file names
    taken by a directory, fails now with one line, not after minutes of training."""
    for name in DIRECTORY_FILES:
        path = directory / name
        if name != LOCK and path.is_dir() and not path.is_symlink():
            raise BadInput(f"{path} is a directory; expected attn-export's file {name} there, or nothing")
    try:
        fd, probe = tempfile.mkstemp(prefix=f"{TMP_PREFIX}{os.getpid()}.probe.", suffix=".tmp", dir=directory)
    except OSError as e:
        raise from_os_error(e, directory) from None
    os.close(fd)
    os.unlink(probe)


def _release(fd: int) -> None:
    """Empty the lock file (it names a holder only while one holds it) and close it, freeing the flock."""
    try:
        os.ftruncate(fd, 0)
    except OSError:  # a full or read-only disk cannot fail the command now: closing frees the lock anyway
        pass
    os.close(fd)


def being_written(directory: Path) -> Optional[str]:
    """Who holds ``directory``'s lock now ("pid N: attn-export train"), read without taking it; None when no one
    does, or it cannot be told (no lock file, no ``fcntl``, another user's file). A reader that finds a file not
    current says this rather than "changed after it was recorded" (found by attacking: predict, during the
    few milliseconds in which train put its weights in place, told the user to run the train that was running)."""
    if directory.resolve() in _held:  # this process's own lock: what it finds stale, it did not write
        return None
    try:
        import fcntl

        fd = os.open(directory / LOCK, os.O_RDONLY)
    except (ImportError, OSError):
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return printable(os.read(fd, 4096).decode(errors="replace").strip(), 120) or "another attn-export process"
    except OSError:
        return None
    finally:
        os.close(fd)  # closing frees a shared lock taken just now
    return None


@contextmanager
def locked(directory: Path, command: str) -> Iterator[None]:
    """Hold DIR's lock while a command writes into DIR; a second process gets Busy with who holds it.

    An exclusive ``flock`` on ``DIR/.attn-export.lock`` (released by the kernel when a process dies, so a
    killed run never leaves the directory locked), re-entrant within one process (``run`` nests the
    stages). Taking it also removes the temporary files a killed writer left behind (``sweep``)."""
    import fcntl

    created = not directory.is_dir()
    if created:
        if command not in CREATES_DIRECTORY:  # the command itself will say what to run first
            yield
            return
        if os.path.lexists(directory):  # found by attacking: "load user.pt afile" said "File exists", no more
            raise BadInput(f"{directory} exists and is not a directory; expected a directory to write the "
                           "artefacts into (new, or an artefact directory)")
        try:
            directory.mkdir(parents=True)
        except FileExistsError:  # found by attacking: another command made it meanwhile, "File exists" said
            if not directory.is_dir():
                raise BadInput(f"{directory} exists and is not a directory; expected a directory to write the "
                               "artefacts into (new, or an artefact directory)") from None
            created = False  # the other command's as much as this one's: never removed by this one
        except OSError as e:
            raise from_os_error(e, directory) from None
    key = directory.resolve()
    if key in _held:
        fd, depth = _held[key]
        _held[key] = (fd, depth + 1)
        try:
            yield
        finally:
            _held[key] = (fd, _held[key][1] - 1)
        return
    for _ in range(LOCK_ATTEMPTS):
        had_lock = (directory / LOCK).exists() or (directory / LOCK).is_symlink()
        fd = _open_lock(directory)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = printable(os.read(fd, 4096).decode(errors="replace").strip(), 120) or "unknown"
            os.close(fd)
            raise Busy(f"{directory} is being written by another attn-export process ({holder}); "
                       "wait for it to finish or use another directory") from None
        if _is_lock_file(fd, directory):
            break
        os.close(fd)  # a holder that wrote nothing removed the file we opened: lock the one there now
    else:
        raise Busy(f"{directory}: its lock file was replaced {LOCK_ATTEMPTS} times while this process took it; "
                   "another attn-export process is starting there: wait for it, or use another directory")
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()}: attn-export {command}".encode())
        sweep(directory)
        _check_writable(directory)
    except OSError as e:
        _release(fd)
        raise from_os_error(e, directory / LOCK) from None
    except BadInput:
        _release(fd)
        raise
    _held[key] = (fd, 1)
    try:
        yield
    finally:
        del _held[key]
        # a command that failed before writing anything leaves the directory as it found it. The lock file
        # goes while still held: a process that opened it meanwhile got Busy, one after makes a new one
        try:
            untouched = not had_lock and [p.name for p in directory.iterdir()] == [LOCK]
            if untouched:
                (directory / LOCK).unlink()
        except OSError:  # gone or unreadable now: leave it; the command's own outcome is what to report
            untouched = False
        _release(fd)
        if untouched and created:
            try:
                directory.rmdir()
            except OSError:  # another process has begun there meanwhile: the directory is its now
                pass


F = TypeVar("F", bound="Callable[..., Any]")  # a string: collections.abc.Callable[...] fails on 3.8


def as_directory(value: Any) -> Path:
    """An artefact directory given to the Python API as a ``str`` or a path object, as a ``Path``; anything else,
    and an empty path (which ``Path`` reads as the current directory), is BadInput. Found by attacking:
    ``export_onnx("artifacts")`` was a TypeError from inside, and ``train(recipe, "")`` wrote into the current
    directory, which the command line refuses."""
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str):
        raise BadInput(f"directory = {value!r} is of type {type(value).__name__}; expected a path (str or "
                       "pathlib.Path) to an artefact directory")
    if empty_path(value, "") is not None:
        raise BadInput(f"directory = {value!r} is an empty path; expected a directory ('.' for the current one)")
    return Path(value)


def writes_directory(command: str) -> Callable[[F], F]:
    """Decorate a function with a ``directory`` parameter (the artefact directory it writes): it runs
    holding that directory's lock. An unpacked Triton bundle is refused first, as ``Store.load`` refuses it
    (found by attacking: verify said to install ONNX Runtime, exit 3, and left a lock file in it)."""

    def decorate(fn: F) -> F:
        import functools
        import inspect

        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            from ..bundle import bundle_target, refuse_triton

            bound = signature.bind(*args, **kwargs)
            directory = bound.arguments["directory"] = as_directory(bound.arguments["directory"])
            refuse_triton(directory, bundle_target(directory))
            with locked(directory, command):
                return fn(*bound.args, **bound.kwargs)

        return cast(F, wrapper)

    return decorate


def write_bytes(target: Path, data: bytes) -> None:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def _finite(value: Any) -> Any:
    """``value`` with every non-finite float (a ratio to a budget of 0) as None: JSON has no Infinity or NaN."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def json_text(obj: Any) -> str:
    """``obj`` as strict JSON, the one way attn-export writes it (files and ``--json``): a non-finite number is
    null (found by attacking: verify.json and ``verify --json`` held bare ``Infinity``, which strict parsers,
    JavaScript's among them, refuse)."""
    return json.dumps(_finite(obj), indent=2, allow_nan=False)


def json_bytes(obj: Any) -> bytes:
    """A JSON artefact's bytes as attn-export writes them."""
    return (json_text(obj) + "\n").encode()


def write_json(target: Path, obj: Any) -> None:
    write_bytes(target, json_bytes(obj))


MAX_JSON_BYTES = 64 << 20  # manifest, model.json, verify.json: kilobytes in practice


def open_regular(path: Union[str, Path], limit: int, expected: str) -> BinaryIO:
    """The regular file ``path`` open for binary reading, checked before a byte is read: a FIFO, a device, a
    socket or a directory is one line saying what it is (opened without blocking: a FIFO with no writer
    would wait forever, ``/dev/zero`` never ends), and so is a file over ``limit`` bytes. ``expected`` says
    what should be there ("an .npz archive"). Every file the tool reads from a user opens here."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise DataError(f"{path}: cannot read: no such file; expected {expected}") from None
    except OSError as e:
        raise from_os_error(e, path, reading=True) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise DataError(f"{path} is {_kind(info.st_mode)}, not a regular file; expected {expected}")
        if info.st_size > limit:
            raise DataError(f"{path} is {info.st_size:,} bytes, more than the {limit:,} this reader takes; "
                            f"expected {expected} of at most that size")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular(path: Union[str, Path], limit: int, expected: str) -> bytes:
    """The bytes of the regular file ``path`` (``open_regular``: at most ``limit``), read once. The read asks
    for the size the file has, not for ``limit``: a buffer of ``limit`` bytes is allocated up front, and 2 GiB
    of address space fails under ``ulimit -v`` for a file of a few kilobytes. A file that grows while it is
    read (another process writing it) is refused."""
    with open_regular(path, limit, expected) as f:
        try:
            size = os.fstat(f.fileno()).st_size
            data = f.read(size + 1)
        except OSError as e:
            raise from_os_error(e, path, reading=True) from None
    if len(data) > size:
        raise DataError(f"{path} grew while it was read (another process writing it?); expected {expected} that "
                        "is not being written")
    return data


def read_file(path: Path, limit: int, what: str = "file") -> bytes:
    """``read_regular`` of one of attn-export's own files."""
    return read_regular(path, limit, f"attn-export's {what}")


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def parse_json(data: bytes, where: object, kind: schema.Node | None = None) -> Any:
    """Parse a JSON artefact's bytes and, given its ``kind`` (``schema.METRICS``, ...), check its shape. A
    damaged, non-UTF-8 or deeply nested file, or one of the wrong shape, is a DataError naming ``where``."""
    try:
        text = data.decode("utf-8")
        if schema.depth(text) > schema.MAX_DEPTH:
            raise DataError(f"{where} nests deeper than {schema.MAX_DEPTH} levels; expected an attn-export JSON file")
        value = json.loads(text)
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError, an integer of more digits than Python reads
        raise DataError(f"{where} is not valid JSON ({e}); expected the JSON file attn-export wrote") from None
    return value if kind is None else schema.check(value, kind, where)


def read_json(path: Path, kind: schema.Node | None = None, name: str | None = None) -> Any:
    """``parse_json`` of the file at ``path``, read within ``MAX_JSON_BYTES`` (named ``name`` where given:
    a bundle's listing is named by its archive, not the staging directory)."""
    return parse_json(read_file(path, MAX_JSON_BYTES, "JSON file"), path if name is None else name, kind)


def require(directory: Path, name: str) -> Path:
    """The path of ``name`` in ``directory``, or an error that says which command makes it."""
    if os.path.lexists(directory) and not directory.is_dir():  # not "does not exist" for a file given as DIR
        raise BadInput(f"{directory} is not a directory; expected an artefact directory")
    if not directory.is_dir():
        raise MissingPrerequisite(
            f"artefact directory {directory} does not exist; run {made_by(MODEL_JSON, directory)} first"
        )
    path = directory / name
    if not path.is_file():
        raise MissingPrerequisite(f"{path} is missing; run {made_by(name, directory)} first")
    return path
