"""Which backend runs a precision's artefact on this machine, for ``Predictor.load``.

``backend="auto"`` picks, for the precision: a TensorRT engine if TensorRT runs here and the store vouches
for an engine built for this device (an engine for another device is skipped, with a note); else the ONNX
file on ``ort-trt`` or ``ort-cuda`` if available; else ``ort-cpu``. A backend named explicitly that cannot
run here is :class:`~attn_export.errors.NotAvailable` (exit 3), never a silent fallback. Whether an
artefact may be used is the store's answer (``need="verified"``), never decided here.
"""

from __future__ import annotations

from typing import List, Optional, Tuple, Type

from ..errors import AttnExportError, BadInput, MissingPrerequisite, NotAvailable, Untrusted
from .backends import REGISTRY, Backend
from .precisions import ONNX_FILES, PRECISIONS, build_flag
from .store import DEVICE_MODULE, MANIFEST, Artifact, Store, build_command, directory_word, is_engine, shipped

__all__ = ["choose", "find_engine", "not_run_on", "verify_by_name"]

# what to install to run ONNX files (predict's and verify's "no backend" lines say it alike)
INSTALL_ONNX_RUNTIME = ("ONNX Runtime: pip install onnxruntime for the CPU, onnxruntime-gpu for an NVIDIA GPU (on a "
                        "Jetson, NVIDIA's wheel for its JetPack)")

ENGINE_BACKEND = "tensorrt"
ONNX_GPU_BACKENDS = ("ort-trt", "ort-cuda")
# what predict and Predictor run: no correctness oracle. A backend computing a precision of its own
# (openvino-bf16) runs only where verify passed that very pair (``_own_precision``)
DEPLOYMENT = ", ".join(n for n, c in REGISTRY.items() if c.deployable)


def backend_class(name: str) -> Type[Backend]:
    """The deployment backend ``name``: refused (bad usage, exit 2) when it is unknown or not one predict runs,
    before whether it is installed is asked (found by attacking: a backend was exit 3 "pip install openvino"
    without OpenVINO and exit 2 "not a deployment backend" with it)."""
    cls = REGISTRY.get(name) if isinstance(name, str) else None  # a list was "unhashable type" (found by attacking)
    if cls is None:
        shown = f"'{name}'" if isinstance(name, str) else f"= {name!r}"
        raise BadInput(f"backend {shown} is not a deployment backend; expected auto or one of {DEPLOYMENT}")
    if cls.kind != "engine" and (cls.kind != "onnx" or not cls.deployable):
        why = ", as a correctness oracle" if not cls.deployable else ""
        raise BadInput(f"backend {name} is not a deployment backend (it runs {cls.kind} models{why}); "
                       f"expected one of {DEPLOYMENT}")
    return cls


def _usable(name: str) -> bool:
    return REGISTRY[name].available() is None


def verify_by_name(store: Store, backend: str) -> str:
    """The command that verifies ``backend`` (an opt-in one, which verify runs only when named) on ``store``: in a
    bundle, its own device package's, after the plain verify unless ``verify.json`` is the device's own
    (``_plain_first``); else attn-export's."""
    prefix = shipped(store.directory)
    command = f"{prefix} {DEVICE_MODULE} verify" if prefix else "attn-export verify"
    where = directory_word(store.directory)
    by_name = f"{command} {where} --backends {backend}"
    return f"{command} {where} && {by_name}" if prefix and _plain_first(store) else by_name


def _plain_first(store: Store) -> bool:
    """Whether a verify by name in a bundle needs the device's plain verify first: unless ``verify.json`` was
    written by one (its reference's test split is ``verify.DEVICE_SPLIT``), a verify by name there carries none
    of the host's results, whose settings differ, so the pair's file kept a verdict from the replaced file and
    predict still refused the pair (found by review, twice: with the host's test split, and without one)."""
    from .schema import VERIFY
    from .store import VERIFY_JSON, parse_json
    from .verify import DEVICE_SPLIT

    data = store.read(VERIFY_JSON)
    try:
        earlier = parse_json(data, store.directory / VERIFY_JSON, VERIFY) if data is not None else {}
    except BadInput:  # damaged: the plain verify first does no harm
        return True
    return (earlier.get("reference") or {}).get("test_split") != DEVICE_SPLIT


def find_engine(store: Store, precision: str, allow_unverified: bool, notes: List[str],
                stream: bool = False) -> Optional[Artifact]:
    """The engine of ``precision`` (of the stream graph: ``stream``) the store opens here (one per device it
    was built on: the one for this device), None when there is none; an engine for another device is noted
    and skipped."""
    errors: List[AttnExportError] = []
    for name in sorted(n for n in store.present() if is_engine(n)):
        if (store.entry(name) or {}).get("precision") != precision or store.is_stream(name) != stream:
            continue
        try:
            return store.open(name, need="verified", allow_unverified=allow_unverified)
        except NotAvailable as e:
            notes.append(f"skipped {e}")
            errors.append(e)
        except AttnExportError as e:
            errors.append(e)
    untrusted = [e for e in errors if not isinstance(e, NotAvailable)]
    if untrusted:  # an engine this device would run, refused: say so rather than fall back quietly
        raise untrusted[0]
    return None


def _own_precision(store: Store, cls: Type[Backend], artifact: Artifact, allow_unverified: bool) -> List[str]:
    """Notes for ``cls`` computing ``artifact`` in a precision of its own (openvino-bf16: model.onnx in bf16),
    which the file's verdict does not vouch for (found by attacking: predict served it as "fp32" under
    model.onnx's FP32 verdict): its pair must have passed in the ``verify.json`` the manifest's verdicts were
    recorded from (``recommend.verified_pairs``), on this CPU where the CPU picks its arithmetic (``per_cpu``:
    a pass on another CPU is said, ``recommend.other_cpu``), else Untrusted unless ``allow_unverified``."""
    from .recommend import other_cpu, verified_pairs

    computed = f"{cls.name} computes {artifact.name} in {cls.computes}"
    pairs, why = verified_pairs(store)
    if (cls.name, artifact.name) in pairs:
        return [f"{computed}, a pair verify passed on the bytes here" + (" and on this CPU" if cls.per_cpu else "")]
    elsewhere = other_cpu(store).get((cls.name, artifact.name))
    said = f"{computed}, and " + (f"its pass does not hold here: {elsewhere}" if elsewhere
                                  else "verify has not passed that pair on the bytes here")
    if allow_unverified:
        return [f"{said} (loaded with allow_unverified)"]
    # with no verify.json the verdicts stand on, a verify by name records none: the plain one first (found by
    # review); in a bundle ``verify_by_name`` names the device's own (``why`` names the host's command)
    first = f"{why}, then " if why and not shipped(store.directory) else ""
    raise Untrusted(f"{said}; {first}verify it by name: {verify_by_name(store, cls.name)}; or load it with "
                    "allow_unverified=True / --allow-unverified")


def choose(store: Store, backend: str, precision: str, allow_unverified: bool) -> Tuple[Type[Backend], Artifact,
                                                                                         List[str]]:
    """(backend class, the artefact the store opened for it, notes); raises if it must be refused."""
    if not isinstance(precision, str) or precision not in ONNX_FILES:  # a list was "unhashable type" (attacking)
        shown = f"'{precision}'" if isinstance(precision, str) else f"= {precision!r}"
        raise BadInput(f"precision {shown} is unknown; expected one of {', '.join(ONNX_FILES)}")
    notes: List[str] = []
    if backend != "auto":
        cls = backend_class(backend)
        # a pair never valid first, on every machine (found by attacking: exit 3 where the backend was missing,
        # 2 where it was there)
        if precision not in cls.precisions:
            raise BadInput(f"backend {backend} does not run {precision} artefacts (it runs "
                           f"{', '.join(cls.precisions)}); choose another --backend or --precision")
        reason = cls.available()
        if reason is not None:  # named explicitly: an error, never a fallback
            raise NotAvailable(f"backend {backend} is not available: {reason}")
        if cls.kind == "engine":
            engine = find_engine(store, precision, allow_unverified, notes)
            if engine is None:
                if notes:
                    raise NotAvailable(" | ".join(n[len("skipped "):] for n in notes))
                raise MissingPrerequisite(f"{store.directory} has no {precision} engine in {MANIFEST}; build one on "
                                          f"this device: {build_command(store.directory, build_flag(precision))}")
            return cls, engine, notes
        artifact = store.open(ONNX_FILES[precision], need="verified", allow_unverified=allow_unverified)
        if cls.computes is not None:
            notes += _own_precision(store, cls, artifact, allow_unverified)
        return cls, artifact, notes + not_run_on(store, cls, artifact)

    if _usable(ENGINE_BACKEND):
        engine = find_engine(store, precision, allow_unverified, notes)
        if engine is not None:
            return REGISTRY[ENGINE_BACKEND], engine, notes
    artifact = store.open(ONNX_FILES[precision], need="verified", allow_unverified=allow_unverified)
    # found by review: auto chose ort-trt for FP32 and then refused it, where ort-cuda ran
    refused = {b: REGISTRY[b].refuses(precision) for b in ONNX_GPU_BACKENDS
               if _usable(b) and precision in REGISTRY[b].precisions}
    notes += [f"not chosen: {why}" for why in refused.values() if why is not None]
    chosen = next((b for b, why in refused.items() if why is None), "ort-cpu")
    reason = REGISTRY[chosen].available()
    if reason is not None:
        flag = PRECISIONS[precision].build_flag
        engine_hint = (f"build a TensorRT engine on this device ({build_command(store.directory, flag)}, with TensorRT "
                       "from JetPack on a Jetson), or " if flag is not None else "")
        raise NotAvailable(f"no backend can run {ONNX_FILES[precision]} here ({reason}); expected: {engine_hint}"
                           f"{INSTALL_ONNX_RUNTIME}")
    return REGISTRY[chosen], artifact, notes + not_run_on(store, REGISTRY[chosen], artifact)


def not_run_on(store: Store, cls: Type[Backend], artifact: Artifact) -> List[str]:
    """A note when ``artifact`` passed verify but never on ``cls``, which runs it now (found by attacking: a
    graph verified on tract alone served on ONNX Runtime and OpenVINO without a word; parity on one runtime
    proves nothing about another). A backend computing in a precision of its own has ``_own_precision``."""
    backends = store.verified_on(artifact.name)
    if not backends or cls.name in backends or cls.computes is not None:  # a verdict that does not stand has the
        return []  # store's own note (review)
    # a device's verify records no INT8 verdict: the host's judges it there (found by review: the device's own
    # verify was advised, which could never clear the note)
    how = (store.how_to_verify(artifact.name) if store.host_judges(artifact.name) and store.in_bundle()
           else f"there: {verify_by_name(store, cls.name)}")
    return [f"{artifact.name} passed verify on {', '.join(backends)}, never on {cls.name}, which runs it now; verify it "
            f"{how}"]
