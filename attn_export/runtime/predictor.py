"""The device runtime: load a verified artefact, predict on variable-length sequences.

    from attn_export.runtime import Predictor

    with Predictor.load("artifacts", precision="fp32") as predictor:   # a directory or a bundle .tar.gz
        for p in predictor.predict([seq_a, seq_b]):                    # float32 [steps_i, features] each
            print(p.label, p.probabilities[p.index], p.attention.shape)  # attention: [steps_i]

``python -m attn_export.runtime predict DIR INPUT`` predicts from the command line with the device
package's dependencies (``attn-export predict`` is the full CLI's version).

Loading checks, before the artefact is opened (nothing is deserialised until all pass):

* the file's sha256 against ``manifest.json`` (changed since recorded: refused, exit 2), and ``model.json``'s
  (labels and sizes come from it);
* its parent's sha256 where the parent is present (stale: refused, exit 2; a bundle leaves out
  ``model.safetensors``, whose absence is noted in ``Predictor.notes``);
* the verdict ``attn-export verify`` recorded (``verified.passed``): failed verification is refused, never
  verified is refused unless ``allow_unverified=True`` (exit 2);
* for an engine, the GPU, compute capability and TensorRT version it was built for against this device's
  (foreign: refused, exit 3).

``backend="auto"`` picks, for the precision: a TensorRT engine if TensorRT runs here and the manifest
holds an engine for this device (an engine for another device is skipped, with a note); else the ONNX file
on ``ort-trt`` or ``ort-cuda`` if available; else ``ort-cpu``. A backend named explicitly that cannot run
here is :class:`~attn_export.errors.NotAvailable` (exit 3), never a silent fallback.

``predict`` sorts the sequences by length and runs them in padded batches of at most ``batch_size``
(default 32, and never more than an engine profile's max batch), so that little padding is computed;
results come back in input order. Sequences longer than an engine's profile are refused with the limit
in the message unless ``on_long`` says ``"truncate"`` (keep the first ``max_seq`` steps; attention on the
cut steps is 0) or ``"split"`` (run chunks of at most ``max_seq`` steps; probabilities are the
length-weighted mean of the chunks', attention the chunks' scaled by their share of the length: an
approximation, since the model never saw the whole sequence at once).

Threads: ONNX Runtime sessions are safe to run concurrently, so ``predict`` on an ``ort-*`` backend is
not serialised; other backends (a TensorRT execution context is not thread-safe) run one batch at a
time under a lock. ``predict`` itself keeps no state between calls.

For a head other than classification, ``probabilities`` holds the raw head output (``prediction`` or
``context``), ``index`` is -1 and ``label`` is ``""``.
"""

from __future__ import annotations

import math
import os
import shutil
import tarfile
import threading
import weakref
from pathlib import Path
from typing import Any, Dict, List, NamedTuple, Optional, Tuple, Union

import numpy as np

from ..errors import BadInput, DataError, MissingPrerequisite, NotAvailable
from . import artifacts
from .backends.base import Backend
from .iospec import IOSpec
from .modelinfo import ModelInfo
from .precisions import ONNX_FILES, PRECISIONS

__all__ = ["ON_LONG", "Prediction", "Predictor"]

ENGINE_BACKEND = "tensorrt"
ONNX_GPU_BACKENDS = ("ort-trt", "ort-cuda")
# ONNX Runtime documents InferenceSession.run as safe to call from several threads at once.
CONCURRENT_BACKENDS = ("ort-cpu", "ort-cuda", "ort-trt")
ON_LONG = ("error", "truncate", "split")
DEFAULT_BATCH = 32


class Prediction(NamedTuple):
    label: str  # the predicted class's name ("" for a head other than classification)
    index: int  # type: ignore[assignment]  # DESIGN's name; into Predictor.labels (-1: not classification)
    probabilities: np.ndarray  # float32 [classes]: softmax of the logits
    attention: np.ndarray  # float32 [steps]: the attention weights over this sequence's own steps


# --------------------------------------------------------------------------------------------------
# engines: the TensorRT helpers' checks (trt/compat.py), run before a byte reaches TensorRT


def _here() -> Any:
    """This machine as an engine sees it (``trt.compat.Here``); NotAvailable without a GPU or TensorRT."""
    from .trt.compat import Here
    from .trt.device import query_gpus
    from .trt.importer import require_tensorrt

    query = query_gpus()
    if not query.gpus:
        raise NotAvailable(f"an engine needs a CUDA device: {query.reason}")
    require_tensorrt()
    import tensorrt

    return Here(str(tensorrt.__version__), query.gpus[0].name, query.gpus[0].compute_capability)


def _check_engine(directory: Path, name: str, manifest: Dict[str, Any], allow_unverified: bool,
                  notes: List[str]) -> Dict[str, Any]:
    """Changed, stale or host code (exit 2), failed or missing verification (exit 2), foreign (exit 3)."""
    from .trt.compat import HOST_CODE_ENV, check_engine, foreign_problems

    sha256 = artifacts.sha256_file(directory / name)
    entry = check_engine(directory, name, manifest, None, allow_host_code=os.environ.get(HOST_CODE_ENV) == "1",
                         sha256=sha256)
    _verdict(directory, name, entry, sha256, allow_unverified, notes)
    problems = foreign_problems(entry, _here())
    if problems:
        raise NotAvailable(f"{directory / name} is a foreign engine: {'; '.join(problems)}; build the engine "
                           f"on this device ({artifacts.BUILD_COMMAND} {directory})")
    return entry


# --------------------------------------------------------------------------------------------------
# the manifest checks


def _entry(manifest: Dict[str, Any], name: str, directory: Path) -> Dict[str, Any]:
    entry = manifest["artifacts"].get(name)
    if not isinstance(entry, dict):
        raise MissingPrerequisite(f"{directory / name} is not recorded in {artifacts.MANIFEST}; "
                                  "re-run the command that made it")
    return entry


def _integrity(directory: Path, name: str, entry: Dict[str, Any], notes: List[str]) -> str:
    """Refuse a changed (DataError) or stale (MissingPrerequisite) artefact; note an absent parent.
    Returns the file's sha256."""
    sha256 = artifacts.sha256_file(directory / name)
    if sha256 != entry.get("sha256"):
        raise DataError(f"{directory / name} was changed after it was recorded (its sha256 differs from "
                        f"{artifacts.MANIFEST}); refusing to load it")
    parent = entry.get("parent")
    if parent:
        if not (directory / parent).is_file():
            notes.append(f"{name}'s parent {parent} is not here (a bundle leaves it out); lineage not re-checked")
        elif artifacts.sha256_file(directory / parent) != entry.get("parent_sha256"):
            raise MissingPrerequisite(f"{directory / name} is stale: its parent {parent} changed since it was "
                                      "made; re-run the command that made it")
    return sha256


def _verdict(directory: Path, name: str, entry: Dict[str, Any], sha256: str, allow_unverified: bool,
             notes: List[str]) -> None:
    """Refuse what verify did not pass. A verdict holds for the bytes it checked: its ``sha256`` must be
    the file's, whatever the manifest entry says (an entry's hash is edited as easily as the file)."""
    verified = entry.get("verified")
    if isinstance(verified, dict) and verified.get("passed") is True:
        if verified.get("sha256") == sha256:
            return
        if not allow_unverified:
            raise MissingPrerequisite(f"{directory / name} is not the file attn-export verify passed (its sha256 "
                                      "differs from the verdict's); run attn-export verify again")
        notes.append(f"{name} is not the file verify passed (loaded with allow_unverified)")
        return
    if isinstance(verified, dict) and "passed" in verified:
        raise MissingPrerequisite(f"{directory / name} failed verification (see verify.json); fix it and run "
                                  "attn-export verify until it passes")
    if not allow_unverified:
        raise MissingPrerequisite(f"{directory / name} has never been verified; run attn-export verify "
                                  "(or load with allow_unverified=True / --allow-unverified)")
    notes.append(f"{name} has never been verified (loaded with allow_unverified)")


# --------------------------------------------------------------------------------------------------
# choosing the artefact and the backend


def _backend_class(name: str) -> Any:
    from . import backends

    if name not in backends.REGISTRY:
        raise BadInput(f"backend '{name}' is not a deployment backend; expected auto or one of "
                       f"{', '.join(backends.REGISTRY)}")
    return backends.REGISTRY[name]


def _usable(name: str) -> bool:
    from . import backends

    return name in backends.REGISTRY and backends.REGISTRY[name].available() is None


def _engines(manifest: Dict[str, Any], directory: Path, precision: str) -> List[str]:
    return sorted(n for n, e in manifest["artifacts"].items()
                  if n.endswith(".engine") and isinstance(e, dict) and e.get("precision") == precision
                  and (directory / n).is_file())


class _Choice(NamedTuple):
    backend: str
    artifact: str


def _choose(directory: Path, manifest: Dict[str, Any], backend: str, precision: str,
            allow_unverified: bool, notes: List[str]) -> _Choice:
    """Pick (backend, artefact), run every manifest check on it, and raise if it must be refused."""
    if precision not in ONNX_FILES:
        raise BadInput(f"precision '{precision}' is unknown; expected one of {', '.join(ONNX_FILES)}")
    if backend != "auto":
        cls = _backend_class(backend)
        reason = cls.available()
        if reason is not None:  # named explicitly: an error, never a fallback
            raise NotAvailable(f"backend {backend} is not available: {reason}")
        if cls.kind == "engine":
            engines = _engines(manifest, directory, precision)
            if not engines:
                flag = PRECISIONS[precision].build_flag
                raise MissingPrerequisite(f"{directory} has no {precision} engine in {artifacts.MANIFEST}; build one "
                                          f"on this device: {_build_command(directory, flag)}")
            refusals = []
            for name in engines:  # one per device it was built on: take the one for this device
                try:
                    _check_engine(directory, name, manifest, allow_unverified, notes)
                    return _Choice(backend, name)
                except NotAvailable as e:
                    refusals.append(str(e))
            raise NotAvailable(" | ".join(refusals))
        if cls.kind != "onnx" or not cls.deployable:
            raise BadInput(f"backend {backend} is not a deployment backend (it runs {cls.kind} models"
                           f"{'' if cls.deployable else ', as a correctness oracle'}); expected one of ort-cpu, "
                           "ort-cuda, ort-trt, tensorrt, openvino-cpu, tract-cpu")
        if precision not in cls.precisions:
            raise BadInput(f"backend {backend} does not run {precision} artefacts (it runs "
                           f"{', '.join(cls.precisions)}); choose another --backend or --precision")
        return _Choice(backend, ONNX_FILES[precision])

    if _usable(ENGINE_BACKEND):
        for name in _engines(manifest, directory, precision):
            try:
                _check_engine(directory, name, manifest, allow_unverified, notes)
                return _Choice(ENGINE_BACKEND, name)
            except NotAvailable as e:  # an engine for another device: auto takes the ONNX file instead
                notes.append(f"skipped {e}")
    chosen = next((b for b in ONNX_GPU_BACKENDS if _usable(b) and precision in _backend_class(b).precisions),
                  "ort-cpu")
    reason = _backend_class(chosen).available()
    if reason is not None:
        flag = PRECISIONS[precision].build_flag
        engine = (f"build a TensorRT engine on this device ({_build_command(directory, flag)}, with TensorRT from "
                  "JetPack on a Jetson), or " if flag is not None else "")
        raise NotAvailable(f"no backend can run {ONNX_FILES[precision]} here ({reason}); expected: {engine}"
                           "ONNX Runtime: pip install onnxruntime for the CPU, onnxruntime-gpu for an NVIDIA GPU "
                           "(on a Jetson, NVIDIA's wheel for its JetPack)")
    return _Choice(chosen, ONNX_FILES[precision])


def _build_command(directory: Path, flag: Optional[str]) -> str:
    return f"{artifacts.BUILD_COMMAND} {directory} {flag or ''}".rstrip()


# --------------------------------------------------------------------------------------------------
# the predictor


_F32 = np.dtype(np.float32)
_SUM = np.add.reduce
# Up to this many classes one sequence's softmax runs in plain Python: five numpy calls on a tiny array
# cost about 10 % of a small model's whole run at seq 128 (scripts/bench_runtime.py).
_PY_SOFTMAX_MAX = 64
_LENGTHS_KEPT = 4096  # distinct sequence lengths whose lengths feed is kept


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    e /= e.sum(axis=-1, keepdims=True)
    return e


class Predictor:
    """A loaded, checked artefact on one backend. Make one with :meth:`load`; ``close()`` or ``with``."""

    def __init__(self, directory: Path, backend: Any, artifact: str, precision: str, info: ModelInfo,
                 entry: Dict[str, Any], notes: List[str], batch_size: int, cleanup: Optional[Path] = None) -> None:
        self.directory = directory
        self.artifact = directory / artifact
        self.precision = precision
        self.backend_name: str = backend.name
        self.labels: Tuple[str, ...] = info.labels
        self.spec: IOSpec = backend.spec
        self.head = self.spec.head_output
        self.features = self.spec.features
        self.entry = entry
        self.notes = notes
        self.verified: Optional[Dict[str, Any]] = entry.get("verified")
        # The shapes the artefact accepts: an engine's optimisation profile (the backend's own, where it has
        # one: tensorrt, ort-trt; else the manifest entry's); ONNX on ONNX Runtime has no limit.
        x_profile = (entry.get("profile") or {}).get("x") or {}
        limits = {"min": x_profile.get("min", [1, 1]), "max": x_profile.get("max", [batch_size, None])}
        if callable(getattr(backend, "profile", None)):
            profile = backend.profile()
            limits = {"min": [profile.batch.min, profile.seq.min], "max": [profile.batch.max, profile.seq.max]}
        self.max_seq: Optional[int] = None if limits["max"][1] is None else int(limits["max"][1])
        self.min_seq: int = int(limits["min"][1])
        self.min_batch: int = int(limits["min"][0])
        self.batch_size = max(1, min(int(limits["max"][0]), int(batch_size)))
        self._backend = backend
        # The feeds predict builds are already checked (shapes, dtypes, lengths, finite values: _sequences
        # and _batch), so a backend whose infer is the protocol's check-then-run is run directly: the
        # second check cost about 10 % of a small model's latency at seq 128 (scripts/bench_runtime.py).
        self._infer = backend._run if type(backend).infer is Backend.infer else backend.infer
        # a backend with no shape limits (ONNX on ONNX Runtime) needs no accepts() per call
        self._limited = type(backend).accepts is not Backend.accepts or backend.max_cells is not None
        self._lock = None if backend.name in CONCURRENT_BACKENDS else threading.Lock()
        # One sequence on an ONNX Runtime session: the session's own run, outputs by position, no
        # intermediate dict (every Python step between two runs measured as overhead on a small model).
        session = getattr(backend, "session", None)
        self._direct: Optional[Tuple[Any, List[str], int, int]] = None
        self._one_length: Dict[int, np.ndarray] = {}
        if session is not None and not self._limited and self._lock is None and self._infer == backend._run:
            names = list(backend.output_names)
            self._direct = (session.run, names, names.index(self.head), names.index("attention"))
        self._closed = False
        self._finalizer = (weakref.finalize(self, shutil.rmtree, str(cleanup), True) if cleanup is not None
                           else None)

    # ---- loading

    @classmethod
    def load(
        cls,
        path: Union[str, Path] = "artifacts",
        backend: str = "auto",
        precision: str = "fp32",
        allow_unverified: bool = False,
        threads: Optional[int] = None,
        batch_size: int = DEFAULT_BATCH,
    ) -> "Predictor":
        """Check and load ``precision``'s artefact from an artefact directory or a bundle ``.tar.gz``.

        ``backend``: ``"auto"`` or a name (``ort-cpu``, ``ort-cuda``, ``ort-trt``, ``tensorrt``).
        ``threads``: the backend's intra-op threads (ONNX Runtime's default: all cores)."""
        source = Path(path)
        cleanup: Optional[Path] = None
        if source.is_file():
            if not tarfile.is_tarfile(str(source)):
                raise BadInput(f"{source} is neither an artefact directory nor a bundle (.tar.gz)")
            from .bundle import extract_temporary

            directory = extract_temporary(source)
            cleanup = directory.parent
            if not (directory / artifacts.MANIFEST).is_file():
                shutil.rmtree(cleanup, ignore_errors=True)
                raise DataError(f"{source} holds no {artifacts.MANIFEST}: not a bundle made by attn-export bundle")
        elif source.is_dir():
            directory = source
        else:
            raise MissingPrerequisite(f"{source} does not exist; expected an artefact directory or a bundle")
        try:
            return cls._load_dir(directory, backend, precision, allow_unverified, threads, batch_size, cleanup)
        except BaseException:
            if cleanup is not None:
                shutil.rmtree(cleanup, ignore_errors=True)
            raise

    @classmethod
    def _load_dir(cls, directory: Path, backend: str, precision: str, allow_unverified: bool,
                  threads: Optional[int], batch_size: int, cleanup: Optional[Path]) -> "Predictor":
        if batch_size < 1:
            raise BadInput(f"batch_size = {batch_size}; expected at least 1")
        if not (directory / artifacts.MANIFEST).is_file():
            raise MissingPrerequisite(f"{directory} has no {artifacts.MANIFEST}: not an artefact directory (run "
                                      "attn-export train and export to make one)")
        manifest = artifacts.read_manifest(directory)
        notes: List[str] = []
        model_json = artifacts.require(directory, artifacts.MODEL_JSON)
        model_entry = manifest["artifacts"].get(artifacts.MODEL_JSON)
        if isinstance(model_entry, dict) and artifacts.sha256_file(model_json) != model_entry.get("sha256"):
            raise DataError(f"{model_json} was changed after it was recorded (its sha256 differs from "
                            f"{artifacts.MANIFEST}); refusing to load it")
        info = ModelInfo.read(directory)
        choice = _choose(directory, manifest, backend, precision, allow_unverified, notes)
        if not (directory / choice.artifact).is_file():
            raise MissingPrerequisite(f"{directory / choice.artifact} is missing; run {PRECISIONS[precision].made_by} "
                                      "first")
        entry = _entry(manifest, choice.artifact, directory)
        if not choice.artifact.endswith(".engine"):  # engines were checked while choosing
            sha256 = _integrity(directory, choice.artifact, entry, notes)
            _verdict(directory, choice.artifact, entry, sha256, allow_unverified, notes)
        impl = _backend_class(choice.backend)(directory / choice.artifact, info.spec, threads=threads)
        impl.__enter__()
        return cls(directory, impl, choice.artifact, precision, info, entry, notes, batch_size, cleanup)

    def close(self) -> None:
        self._closed = True
        if self._lock is not None:
            with self._lock:
                self._backend.close()
        else:
            self._backend.close()
        if self._finalizer is not None:
            self._finalizer()

    def __enter__(self) -> "Predictor":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"Predictor({self.artifact.name} on {self.backend_name}, precision {self.precision}, "
                f"{len(self.labels)} classes, batch {self.batch_size}, max_seq {self.max_seq})")

    # ---- predicting

    def _sequences(self, sequences: Any, lengths: Any) -> List[np.ndarray]:
        features = self.spec.features
        if lengths is not None:
            x = np.asarray(sequences)
            n = np.asarray(lengths)
            if x.ndim != 3 or n.ndim != 1 or n.shape[0] != x.shape[0]:
                raise BadInput(f"a padded batch is x [N, T, {features}] with lengths [N]; got x {x.shape}, "
                               f"lengths {n.shape}")
            if n.dtype.kind not in "iu" or (n < 1).any() or (n > x.shape[1]).any():
                raise BadInput(f"lengths must be integers in 1..{x.shape[1]} (the padded T)")
            sequences = [x[i, : int(n[i])] for i in range(x.shape[0])]
        elif isinstance(sequences, np.ndarray) and sequences.ndim == 3:
            raise BadInput("a 3-D array needs lengths=[N] (a padded batch); or pass a list of [steps, features] arrays")
        out = []
        for i, s in enumerate(sequences):
            a = np.asarray(s)
            if a.dtype != _F32:
                if a.dtype.kind not in "fiu":
                    raise BadInput(f"sequence {i} has dtype {a.dtype}; expected real numbers (float32)")
                a = a.astype(np.float32)
            if a.ndim != 2 or a.shape[0] < 1 or a.shape[1] != features:
                raise BadInput(f"sequence {i} has shape {a.shape}; expected [steps >= 1, {features}]")
            # a finite sum proves every value finite in one reduction; summed in float64, finite float32
            # values (3e38 included) cannot overflow it, so numpy prints no warning
            if not math.isfinite(_SUM(a, axis=None, dtype=np.float64)) and not np.isfinite(a).all():
                step = int(np.argwhere(~np.isfinite(a))[0][0])
                raise BadInput(f"sequence {i} holds a non-finite value at step {step}; inputs must be finite")
            out.append(a)
        return out

    def _chunks(self, seqs: List[np.ndarray], on_long: str) -> List[Tuple[int, np.ndarray]]:
        """(input index, steps) pieces, each within max_seq (refused, truncated or split per on_long)."""
        limit = self.max_seq
        if limit is None:
            return list(enumerate(seqs))
        pieces = []
        for i, s in enumerate(seqs):
            if s.shape[0] <= limit:
                pieces.append((i, s))
            elif on_long == "truncate":
                pieces.append((i, s[:limit]))
            elif on_long == "split":
                pieces += [(i, s[start:start + limit]) for start in range(0, s.shape[0], limit)]
            else:
                raise BadInput(f"sequence {i} has {s.shape[0]} steps; {self.artifact.name}'s profile allows at "
                               f"most {limit} (use on_long='truncate' or 'split', or build a longer profile)")
        return pieces

    def _run(self, feeds: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        if self._limited:
            reason = self._backend.accepts(feeds["x"].shape[0], feeds["x"].shape[1])
            if reason is not None:
                raise BadInput(f"{self.artifact.name} cannot run this batch: {reason}")
        if self._lock is None:
            return self._infer(feeds)
        with self._lock:
            return self._infer(feeds)

    def _batch(self, items: List[np.ndarray]) -> Tuple[np.ndarray, np.ndarray]:
        """Pad to the longest (at least the profile's min seq): x [rows, steps, F], lengths [rows]."""
        counts = [s.shape[0] for s in items]
        steps = max(max(counts), self.min_seq)
        rows = max(len(items), self.min_batch)
        lengths = np.array(counts, dtype=np.int64)
        if rows == 1 and steps == counts[0]:
            return items[0][None], lengths  # one sequence: no copy
        x = np.zeros((rows, steps, self.spec.features), dtype=np.float32)
        for b, s in enumerate(items):
            x[b, : s.shape[0]] = s
        if rows > len(items):  # an engine profile's min batch: repeat the last sequence, drop its result
            x[len(items):] = x[len(items) - 1]
            lengths = np.concatenate([lengths, np.repeat(lengths[-1:], rows - len(items))])
        return x, lengths

    def _label(self, index: int) -> str:
        return self.labels[index] if index < len(self.labels) else str(index)

    def _predict_one(self, a: np.ndarray) -> Prediction:
        """One sequence, the common call on a device: no sorting, no copy, the fewest numpy calls."""
        steps = a.shape[0]
        direct = self._direct
        if direct is not None:
            run, names, h, at = direct
            lengths = self._one_length.get(steps)
            if lengths is None:  # read-only to ONNX Runtime: one array per length serves every call
                lengths = np.array((steps,), np.int64)
                if len(self._one_length) < _LENGTHS_KEPT:
                    self._one_length[steps] = lengths
            try:
                outs = run(names, {"x": a[None], "lengths": lengths})
            except Exception:  # noqa: BLE001  # the backend's own call says what went wrong, in one line
                out = self._run({"x": a[None], "lengths": lengths})
                outs = [out[n] for n in names]
            head, attention = outs[h][0], outs[at][0, :steps]
        else:
            x, lens = self._batch([a])
            out = self._run({"x": x, "lengths": lens})
            head, attention = out[self.head][0], out["attention"][0, :steps]
        if self.head != "logits":
            return Prediction("", -1, head.astype(np.float32, copy=False), attention)
        if head.shape[0] > _PY_SOFTMAX_MAX:
            return Prediction(self._label(int(head.argmax())), int(head.argmax()), _softmax(head[None])[0], attention)
        z = head.tolist()
        top = max(z)
        e = [math.exp(v - top) for v in z]
        total = sum(e)
        index = z.index(top)  # the logits' argmax, as verify scores accuracy
        return Prediction(self._label(index), index, np.array([v / total for v in e], np.float32), attention)

    def predict(
        self,
        sequences: Any,
        lengths: Optional[Any] = None,
        on_long: str = "error",
        batch_size: Optional[int] = None,
    ) -> List[Prediction]:
        """Predict a list of ``[steps_i, features]`` arrays, or a padded ``[N, T, F]`` array with ``lengths``.

        Returns one :class:`Prediction` per sequence, in input order, attention trimmed to its length.
        ``on_long`` (``error``, ``truncate``, ``split``): what to do with a sequence longer than an engine
        profile's ``max_seq`` (ONNX artefacts have no limit). ``batch_size`` overrides the load-time one,
        never above an engine profile's max batch."""
        if self._closed:
            raise BadInput("this Predictor is closed; load it again")
        if on_long not in ON_LONG:
            raise BadInput(f"on_long = {on_long!r}; expected one of {', '.join(ON_LONG)}")
        if lengths is None and isinstance(sequences, list) and len(sequences) == 1:  # the device's common call
            one = sequences[0]
            if (isinstance(one, np.ndarray) and one.dtype == _F32 and one.ndim == 2 and one.shape[0] >= 1
                    and one.shape[1] == self.features and one.flags.c_contiguous
                    and (self.max_seq is None or one.shape[0] <= self.max_seq)):
                flat = one.reshape(-1)
                # finite (and no overflow) proves every value finite: BLAS's dot, measured cheaper between
                # two ONNX Runtime calls than numpy's reductions; anything else (values past 1.8e19 overflow
                # it: no warning printed) takes the full check
                with np.errstate(over="ignore", invalid="ignore"):
                    finite = math.isfinite(flat.dot(flat))
                if finite:
                    return [self._predict_one(one)]
        seqs = self._sequences(sequences, lengths)
        if not seqs:
            return []
        if len(seqs) == 1 and (self.max_seq is None or seqs[0].shape[0] <= self.max_seq):
            return [self._predict_one(seqs[0])]

        limit = self.batch_size if batch_size is None else max(1, min(int(batch_size), self.batch_size))
        pieces = self._chunks(seqs, on_long)
        order = sorted(range(len(pieces)), key=lambda k: pieces[k][1].shape[0])
        scores: List[np.ndarray] = [np.empty(0)] * len(pieces)
        logits: List[np.ndarray] = [np.empty(0)] * len(pieces)
        attentions: List[np.ndarray] = [np.empty(0)] * len(pieces)
        for start in range(0, len(order), limit):
            members = order[start:start + limit]
            x, lens = self._batch([pieces[k][1] for k in members])
            out = self._run({"x": x, "lengths": lens})
            head = out[self.head][: len(members)].astype(np.float32, copy=False)
            batch_scores = _softmax(head) if self.head == "logits" else head
            for row, k in enumerate(members):
                scores[k], logits[k] = batch_scores[row], head[row]
                attentions[k] = out["attention"][row, : pieces[k][1].shape[0]]

        by_input: List[List[int]] = [[] for _ in seqs]
        for k, (i, _) in enumerate(pieces):
            by_input[i].append(k)
        results = []
        for i, ks in enumerate(by_input):
            steps = seqs[i].shape[0]
            if len(ks) == 1:
                score, attention = scores[ks[0]], attentions[ks[0]]
                if attention.shape[0] < steps:  # truncated: no attention on the cut steps
                    attention = np.concatenate([attention, np.zeros(steps - attention.shape[0], np.float32)])
            else:  # split: chunks weighted by their share of the steps
                weights = [pieces[k][1].shape[0] / steps for k in ks]
                attention = np.concatenate([attentions[k] * w for k, w in zip(ks, weights)]).astype(np.float32)
                score = np.sum([scores[k].astype(np.float64) * w for k, w in zip(ks, weights)], axis=0)
                score = score.astype(np.float32)
            if self.head != "logits":
                results.append(Prediction("", -1, score, attention))
                continue
            # the logits' argmax (as verify scores accuracy); a split sequence's is its mean probabilities'
            index = int(logits[ks[0]].argmax()) if len(ks) == 1 else int(score.argmax())
            results.append(Prediction(self._label(index), index, score, attention))
        return results
