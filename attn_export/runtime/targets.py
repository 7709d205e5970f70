"""What verify and bench run: every backend paired with every artefact in DIR it can run.

A target is one (backend, artefact, precision). Backends named with ``auto`` that cannot run here become
skipped targets with the reason; a backend named explicitly that cannot run is an error (exit 3), one named
explicitly with nothing in DIR for it to run is a command not yet run (exit 2). The
backends are the device's (``runtime.backends.REGISTRY``) unless the host passes its own, which adds the
PyTorch model and onnx's reference evaluator. A target is opened through the store (``need="current"``):
the backend gets the bytes the store checked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Tuple, Type, Union

from ..errors import BadInput, MissingPrerequisite, NotAvailable, printable
from .backends import REGISTRY, Backend, get
from .precisions import ONNX_FILES, ONNX_FP32
from .store import BUILD_COMMAND, STREAM_FILES, WEIGHTS, Store, is_engine

__all__ = ["Target", "discover", "parse_backends"]

Registry = Mapping[str, Type[Backend]]


@dataclass(frozen=True)
class Target:
    backend: str
    artifact: Optional[str]  # a file name inside DIR
    precision: Optional[str]
    skip: Optional[str] = None  # why it cannot run here; None when it can

    @property
    def label(self) -> str:
        return f"{self.backend} {self.artifact or '-'}"

    def open(self, store: Store, threads: Optional[int], registry: Optional[Registry] = None) -> Backend:
        """The backend on this target's artefact, which the store must vouch for (Untrusted otherwise)."""
        return get(self.backend, registry)(store.open(str(self.artifact), need="current"), threads=threads)


def parse_backends(value: Union[str, List[str], None], registry: Optional[Registry] = None) -> Optional[List[str]]:
    """``auto`` (or None) -> None; ``a,b`` -> checked names, each once (a name given twice ran twice)."""
    if value is None:
        return None
    names = value if isinstance(value, list) else [v.strip() for v in value.split(",")]
    if not any(names):
        raise BadInput("--backends is empty; expected 'auto' or a comma-separated list of backend names")
    if not all(names):  # found by attacking: "ort-cpu,," ran, where bench's "--seq 16,,128" is refused
        raise BadInput(f"--backends {printable(str(value), 80)!r} has an empty item; expected a comma-separated "
                       "list of backend names")
    names = list(dict.fromkeys(names))
    if names == ["auto"]:
        return None
    for name in names:
        get(name, registry)
    return names


def _candidates(store: Store, cls: Type[Backend]) -> List[Tuple[str, Optional[str]]]:
    if cls.computes is not None:  # it runs the FP32 graph in a precision of its own, judged as that one
        return [(ONNX_FP32, cls.computes)] if (store.directory / ONNX_FP32).is_file() else []
    if cls.kind == "torch":
        return [(WEIGHTS, "fp32")] if (store.directory / WEIGHTS).is_file() else []
    if cls.kind == "engine":
        return [(p.name, (store.entry(p.name) or {}).get("precision")) for p in sorted(store.directory.glob("*.engine"))
                if is_engine(p.name)]
    found: List[Tuple[str, Optional[str]]] = [(file, p) for p, file in ONNX_FILES.items()
                                               if p in cls.precisions and (store.directory / file).is_file()]
    for precision, file in STREAM_FILES.items():  # the stream graphs, judged update by update (verify)
        if precision in cls.precisions and (store.directory / file).is_file():
            found.append((file, precision))
    return found


def discover(store: Store, backends: Union[str, List[str], None] = "auto",
             registry: Optional[Registry] = None) -> List[Target]:
    """Every (backend, artefact) pair, skipped ones included with the reason."""
    table: Dict[str, Type[Backend]] = dict(REGISTRY if registry is None else registry)
    names = parse_backends(backends, table)
    explicit = names is not None
    targets: List[Target] = []
    for name in names or list(table):
        cls = table[name]
        reason = cls.available()
        if reason is None and not explicit and cls.opt_in is not None:  # one that cannot run says why not first
            targets.append(Target(name, None, None, cls.opt_in))
            continue
        if reason is not None and explicit:
            raise NotAvailable(f"backend {name} was asked for but cannot run here: {reason}")
        candidates = _candidates(store, cls)
        if reason is not None:
            targets += [Target(name, a, p, reason) for a, p in candidates] or [Target(name, None, None, reason)]
        elif not candidates:
            what = {"torch": "model.safetensors (attn-export train)", "engine": f"engine ({BUILD_COMMAND})"}
            missing = f"no {what.get(cls.kind, 'ONNX model (attn-export export)')} in {store.directory} for it"
            if explicit:  # the directory lacks what a backend named runs: a command not yet run (exit 2), not this machine
                raise MissingPrerequisite(f"backend {name} was asked for but there is {missing}")
            targets.append(Target(name, None, None, missing))
        else:
            targets += [Target(name, a, p) for a, p in candidates]
    return targets
