"""Checks that decide whether an engine may be deserialised here, from the manifest alone.

Engines are untrusted files: deserialising one runs TensorRT's loader on it, and a version-compatible
engine carries a lean runtime (host code) that runs in this process. So before a byte of it reaches
TensorRT: the file must be the one the manifest recorded (sha256), its source graph must not have changed
since (stale), it must have been built for this GPU and this TensorRT (foreign; hardware- and
version-compatible builds relax this within TensorRT's rules), and embedded host code loads only when the
user opted in. Pure Python; Python 3.8-compatible.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

from ...errors import BadInput, NotAvailable
from ..artifacts import BUILD_COMMAND
from ..precisions import PRECISIONS
from .precision import parse_version

__all__ = ["HOST_CODE_ENV", "Here", "check_engine", "foreign_problems"]

HOST_CODE_ENV = "ATTN_EXPORT_ALLOW_ENGINE_HOST_CODE"
# compute capabilities a hardware-compatible engine runs on, by the level it was built with
_AMPERE = (8, 0)


@dataclass(frozen=True)
class Here:
    """This machine as an engine sees it."""

    tensorrt: str  # trt.__version__
    gpu: str  # device name
    compute_capability: str  # "8.7"


def _cc(text: str) -> tuple:
    return parse_version(str(text))


def foreign_problems(entry: Mapping[str, Any], here: Here) -> List[str]:
    """Why an engine recorded as ``entry`` cannot run here (empty when it can)."""
    problems = []
    built, now = parse_version(str(entry.get("tensorrt", ""))), parse_version(here.tensorrt)
    if entry.get("version_compatible"):
        if not built or now < built:
            problems.append(f"it is version-compatible from TensorRT {entry.get('tensorrt')} on, and this machine "
                            f"has the older TensorRT {here.tensorrt}")
    elif built != now:
        problems.append(f"it was built with TensorRT {entry.get('tensorrt')} and this machine has TensorRT "
                        f"{here.tensorrt}")
    level = str(entry.get("hardware_compatibility") or "none").lower()
    cc_built, cc_here = _cc(entry.get("compute_capability", "")), _cc(here.compute_capability)
    if level == "ampere_plus":
        if cc_here < _AMPERE:
            problems.append(f"it is hardware-compatible with Ampere and newer (compute 8.0+) and this GPU, "
                            f"{here.gpu}, has compute {here.compute_capability}")
    elif cc_built != cc_here:
        problems.append(f"it was built for compute capability {entry.get('compute_capability')} "
                        f"({entry.get('gpu')}) and this GPU, {here.gpu}, has compute {here.compute_capability}")
    elif level == "none" and str(entry.get("gpu")) != here.gpu:
        problems.append(f"it was built and tuned for {entry.get('gpu')} and this GPU is {here.gpu} (same compute "
                        "capability; build with --hardware-compat to share engines between them)")
    return problems


def check_engine(directory: Path, name: str, manifest: Mapping[str, Any], here: Optional[Here],
                 allow_host_code: bool = False, sha256: Optional[str] = None) -> Dict[str, Any]:
    """The manifest entry of engine ``name`` once every check passed; raises BadInput (exit 2: unrecorded,
    changed, stale, host code not allowed) or NotAvailable (exit 3: built for another GPU or TensorRT).
    ``sha256`` is the engine file's digest (computed by the caller, who reads the file once); ``here`` is
    None to skip the GPU/TensorRT checks (``inspect`` on a machine without either)."""
    entry = manifest.get("artifacts", {}).get(name)
    if not isinstance(entry, dict):
        raise BadInput(f"{name} is not recorded in {directory / 'manifest.json'}: an engine is loaded only when "
                       f"the manifest vouches for it; rebuild it with {BUILD_COMMAND} {directory}")
    if sha256 is not None and sha256 != entry.get("sha256"):
        raise BadInput(f"{name} was changed after it was recorded (sha256 differs from manifest.json); refusing "
                       f"to deserialise it: rebuild it with {BUILD_COMMAND} {directory}")
    parent, parent_sha = entry.get("parent"), entry.get("parent_sha256")
    if parent and parent_sha and (directory / parent).is_file():
        from ..artifacts import sha256_file

        if sha256_file(directory / parent) != parent_sha:
            raise BadInput(f"{name} is stale: its source {parent} changed since it was built; rebuild it with "
                           f"{BUILD_COMMAND} {directory} {_flag(entry)}".rstrip())
    if here is not None:
        problems = foreign_problems(entry, here)
        if problems:
            raise NotAvailable(f"{name} cannot run here: {'; '.join(problems)}; rebuild it on this machine with "
                               f"{BUILD_COMMAND} {directory} {_flag(entry)}".rstrip())
    if entry.get("host_code") and not allow_host_code:
        raise BadInput(f"{name} embeds host code (a version-compatible engine with its lean runtime), which would "
                       f"run in this process; load it only if you trust its origin: set {HOST_CODE_ENV}=1 (or pass "
                       "allow_host_code=True)")
    return dict(entry)


def _flag(entry: Mapping[str, Any]) -> str:
    found = PRECISIONS.get(str(entry.get("precision")))
    return (found.build_flag or "") if found is not None else ""
