"""What verify and bench run: every backend paired with every artefact in DIR it can run.

A target is one (backend, artefact, precision). Backends named with ``auto`` that cannot run here become
skipped targets with the reason; a backend named explicitly that cannot run is an error (exit 3).
numpy only: this works without torch (the device verifies against ``reference.npz``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import artifacts
from .backends import REGISTRY, Backend, get
from .errors import BadInput, MissingPrerequisite, NotAvailable
from .iospec import IOSpec

__all__ = ["ONNX_FILES", "Target", "discover", "load_spec", "parse_backends"]

ONNX_FILES = artifacts.ONNX_FILES  # precision -> file, FP32 first (the order rows are reported in)


@dataclass(frozen=True)
class Target:
    backend: str
    artifact: str | None  # a file name inside DIR
    precision: str | None
    skip: str | None = None  # why it cannot run here; None when it can

    @property
    def label(self) -> str:
        return f"{self.backend} {self.artifact or '-'}"

    def open(self, directory: Path, spec: IOSpec, threads: int | None) -> Backend:
        cls = get(self.backend)
        path = directory if cls.kind == "torch" else directory / str(self.artifact)
        return cls(path, spec, threads=threads)


def parse_backends(value: str | list[str] | None) -> list[str] | None:
    """``auto`` (or None) -> None; ``a,b`` -> checked names."""
    if value is None:
        return None
    names = value if isinstance(value, list) else [v.strip() for v in value.split(",") if v.strip()]
    if names == ["auto"]:
        return None
    if not names:
        raise BadInput("--backends is empty; expected 'auto' or a comma-separated list of backend names")
    for name in names:
        get(name)
    return names


def load_spec(directory: Path) -> IOSpec:
    """The I/O spec: from model.json (train/load), else from model.onnx's metadata (a device bundle)."""
    info_path = directory / artifacts.MODEL_JSON
    if info_path.is_file():
        info = artifacts.read_json(info_path)
        return IOSpec.for_model(info["input_size"], info["num_outputs"], info["recipe"]["model"]["head"])
    onnx_path = artifacts.require(directory, artifacts.ONNX_FP32)
    import onnx

    meta = {p.key: p.value for p in onnx.load(str(onnx_path), load_external_data=False).metadata_props}
    if "io_spec" not in meta:
        raise BadInput(f"{onnx_path} has no io_spec metadata; it was not exported by attn-export")
    return IOSpec.from_json(meta["io_spec"])


def _engines(directory: Path) -> list[tuple[str, str | None]]:
    entries: dict[str, Any] = artifacts.read_manifest(directory)["artifacts"]
    return [(p.name, (entries.get(p.name) or {}).get("precision")) for p in sorted(directory.glob("*.engine"))]


def _candidates(directory: Path, name: str) -> list[tuple[str, str | None]]:
    cls = REGISTRY[name]
    if cls.computes is not None:  # it runs the FP32 graph in a precision of its own, judged as that one
        return [(artifacts.ONNX_FP32, cls.computes)] if (directory / artifacts.ONNX_FP32).is_file() else []
    if cls.kind == "torch":
        return [(artifacts.WEIGHTS, "fp32")] if (directory / artifacts.WEIGHTS).is_file() else []
    if cls.kind == "engine":
        return _engines(directory)
    return [(file, p) for p, file in ONNX_FILES.items() if p in cls.precisions and (directory / file).is_file()]


def discover(directory: Path, backends: str | list[str] | None = "auto") -> list[Target]:
    """Every (backend, artefact) pair, skipped ones included with the reason."""
    if not directory.is_dir():
        raise MissingPrerequisite(f"artefact directory {directory} does not exist; run attn-export train first")
    names = parse_backends(backends)
    explicit = names is not None
    targets: list[Target] = []
    for name in names or list(REGISTRY):
        cls = REGISTRY[name]
        reason = cls.available()
        if reason is not None and explicit:
            raise NotAvailable(f"backend {name} was asked for but cannot run here: {reason}")
        candidates = _candidates(directory, name)
        if reason is not None:
            targets += [Target(name, a, p, reason) for a, p in candidates] or [Target(name, None, None, reason)]
        elif not candidates:
            what = {"torch": "model.safetensors (attn-export train)", "engine": "engine (attn-export build)"}
            targets.append(Target(name, None, None, f"no {what.get(cls.kind, 'ONNX model (attn-export export)')} "
                                                    f"in {directory} for it"))
        else:
            targets += [Target(name, a, p) for a, p in candidates]
    return targets

