"""The artefact directory: fixed file names, atomic writes, and the manifest that makes it trustworthy.

Every file is written to a temporary name in the same directory, flushed, fsynced and renamed, so a
process killed mid-write leaves the previous file intact. The manifest records each artefact's sha256 and
its parent's; an artefact whose parent changed is stale, one whose own hash changed was tampered with.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import stat
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, List, TypeVar, cast

from .. import __version__
from ..errors import BadInput, Busy, DataError, MissingPrerequisite, from_os_error
from . import schema
from .precisions import ONNX_FILES, ONNX_FP32, PRECISIONS

__all__ = [
    "BUILD_COMMAND",
    "DEFAULT_DIR",
    "MANIFEST",
    "METRICS",
    "MODEL_JSON",
    "ONNX_FILES",
    "ONNX_FP32",
    "REFERENCE",
    "TMP_PREFIX",
    "WEIGHTS",
    "atomic_path",
    "check_lineage",
    "locked",
    "writes_directory",
    "read_json",
    "read_manifest",
    "record",
    "require",
    "sha256_file",
    "sweep",
    "write_bytes",
    "write_json",
]

DEFAULT_DIR = Path("artifacts")
MODEL_JSON = "model.json"
WEIGHTS = "model.safetensors"
METRICS = "metrics.json"
REFERENCE = "reference.npz"
MANIFEST = "manifest.json"
MANIFEST_SCHEMA = 1
LOCK = ".attn-export.lock"
VERIFY_JSON = "verify.json"
BENCH_JSON = "bench.json"
QUANTIZE_JSON = "quantize.json"
REPORT_MD = "report.md"
ATTENTION_PNG = "attention.png"
PLOTS = {"latency": "bench_latency_vs_seq.png", "throughput": "bench_throughput_vs_batch.png"}
# every name attn-export writes in an artefact directory (besides engines, named per device)
DIRECTORY_FILES = (MODEL_JSON, WEIGHTS, METRICS, REFERENCE, MANIFEST, LOCK, VERIFY_JSON, BENCH_JSON, QUANTIZE_JSON,
                   REPORT_MD, ATTENTION_PNG, *PLOTS.values(), *ONNX_FILES.values())
CREATES_DIRECTORY = ("train", "load", "run", "unbundle")

# The command that makes each file, for "run X first" messages.
# engines are built where they run; the device package's own command needs no attn-export install
# (on a host, `attn-export build` runs the same code)
BUILD_COMMAND = "python3 -m attn_export.runtime build"
MADE_BY = {
    MODEL_JSON: "attn-export train (or attn-export load CHECKPOINT)",
    WEIGHTS: "attn-export train (or attn-export load CHECKPOINT)",
    REFERENCE: "attn-export export",
    **{p.file: p.made_by for p in PRECISIONS.values() if p.file is not None},
}


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


# every temporary file attn-export writes in a directory: .attn-export.<pid>.<target>.<random>.tmp; the
# prefix marks it as ours (a user's own .notes.tmp is never touched), the pid says whether its writer lives
TMP_PREFIX = ".attn-export."


@contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success it replaces ``target`` in one rename, with
    the mode a plain ``open`` would have given it (the umask's). A file system error names ``target``."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f"{TMP_PREFIX}{os.getpid()}.{target.name}.", suffix=".tmp",
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
        os.replace(tmp_path, target)  # a link at target is replaced, never written through
    except OSError as e:
        raise from_os_error(e, target) from None
    finally:
        tmp_path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def sweep(directory: Path) -> List[str]:
    """Remove the temporary files a dead writer left in ``directory`` (ours only, by their prefix; a live
    writer's are kept). Returns the names removed."""
    removed = []
    for path in directory.iterdir():
        name = path.name
        if not (name.startswith(TMP_PREFIX) and name.endswith(".tmp")):
            continue
        pid = name[len(TMP_PREFIX):].split(".", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and _alive(int(pid)):
            continue
        path.unlink(missing_ok=True)  # a link is removed itself, never what it points to
        removed.append(name)
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
        try:
            directory.mkdir(parents=True)
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
    fd = _open_lock(directory)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 4096).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise Busy(f"{directory} is being written by another attn-export process ({holder}); "
                   "wait for it to finish or use another directory") from None
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
        _release(fd)
        if created and [p.name for p in directory.iterdir()] == [LOCK]:  # failed before writing anything
            (directory / LOCK).unlink()
            directory.rmdir()


F = TypeVar("F", bound="Callable[..., Any]")  # a string: collections.abc.Callable[...] fails on 3.8


def writes_directory(command: str) -> Callable[[F], F]:
    """Decorate a function with a ``directory`` parameter (the artefact directory it writes): it runs
    holding that directory's lock."""

    def decorate(fn: F) -> F:
        import functools
        import inspect

        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            directory = Path(signature.bind(*args, **kwargs).arguments["directory"])
            with locked(directory, command):
                return fn(*args, **kwargs)

        return cast(F, wrapper)

    return decorate


def write_bytes(target: Path, data: bytes) -> None:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def write_json(target: Path, obj: Any) -> None:
    write_bytes(target, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


MAX_JSON_BYTES = 64 << 20  # manifest, model.json, verify.json: kilobytes in practice


def read_json(path: Path, kind: schema.Node | None = None, name: str | None = None) -> Any:
    """Parse a JSON artefact and, given its ``kind`` (``schema.METRICS``, ...), check its shape. A damaged,
    non-UTF-8, absurdly large or deeply nested file, or one of the wrong shape, is a DataError naming it
    (as ``name`` where given: a bundle's listing is named by its archive, not the staging directory)."""
    where = path if name is None else name
    size = path.stat().st_size
    if size > MAX_JSON_BYTES:
        raise DataError(f"{where} is {size:,} bytes; attn-export's JSON files are far smaller "
                        f"(limit {MAX_JSON_BYTES:,}): refusing to read it")
    try:
        text = path.read_bytes().decode("utf-8")
        if schema.depth(text) > schema.MAX_DEPTH:
            raise DataError(f"{where} nests deeper than {schema.MAX_DEPTH} levels; expected an attn-export JSON file")
        value = json.loads(text)
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError, an integer of more digits than Python reads
        raise DataError(f"{where} is not valid JSON ({e}); expected the JSON file attn-export wrote") from None
    return value if kind is None else schema.check(value, kind, where)


def require(directory: Path, name: str) -> Path:
    """The path of ``name`` in ``directory``, or an error that says which command makes it."""
    if not directory.is_dir():
        raise MissingPrerequisite(
            f"artefact directory {directory} does not exist; run {MADE_BY[MODEL_JSON]} first"
        )
    path = directory / name
    if not path.is_file():
        made_by = MADE_BY.get(name, "the command that makes it")
        raise MissingPrerequisite(f"{path} is missing; run {made_by} first")
    return path


def read_manifest(directory: Path) -> dict[str, Any]:
    """DIR's manifest, its shape checked (``schema.MANIFEST``); an empty one where DIR has none yet."""
    path = directory / MANIFEST
    if not path.is_file():
        return {"schema": MANIFEST_SCHEMA, "artifacts": {}}
    return read_json(path, schema.MANIFEST)


def record(
    directory: Path,
    name: str,
    command: str,
    parent: str | None = None,
    versions: dict[str, str] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """Record ``directory/name`` in the manifest (written last, atomically) and return its entry."""
    manifest = read_manifest(directory)
    entry: dict[str, Any] = {
        "sha256": sha256_file(directory / name),
        "parent": parent,
        "parent_sha256": sha256_file(directory / parent) if parent else None,
        "created_by": f"attn-export {__version__} {command}",
        "versions": versions or {},
    }
    entry.update(extra)
    manifest["schema"] = MANIFEST_SCHEMA
    manifest["artifacts"][name] = entry
    write_json(directory / MANIFEST, manifest)
    return entry


def check_lineage(directory: Path, name: str) -> list[str]:
    """Problems with ``name``'s manifest entry: changed since recorded, stale against its parent. The
    weights are the one parent a bundle leaves behind (the device has no torch): where they are absent,
    the artefact's own recorded sha256 is what vouches for it."""
    entry = read_manifest(directory)["artifacts"].get(name)
    if entry is None:
        return [f"{name} is not recorded in {MANIFEST}"]
    if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str):
        return [f"{name}'s entry in {MANIFEST} is damaged (no sha256)"]
    problems = []
    if sha256_file(directory / name) != entry["sha256"]:
        problems.append(f"{name} was changed after it was recorded (sha256 differs from {MANIFEST})")
    parent = entry.get("parent")
    if parent:
        if not (directory / parent).is_file():
            if parent != WEIGHTS:
                problems.append(f"{name}'s parent {parent} is missing")
        elif sha256_file(directory / parent) != entry.get("parent_sha256"):
            problems.append(f"{name} is stale: its parent {parent} changed since it was made")
    return problems
