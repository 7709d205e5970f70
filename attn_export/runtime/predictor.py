"""The device runtime: load a verified artefact, predict on variable-length sequences.

    from attn_export.runtime import Predictor

    with Predictor.load("artifacts", precision="fp32") as predictor:   # a directory or a bundle .tar.gz
        for p in predictor.predict([seq_a, seq_b]):                    # float32 [steps_i, features] each
            print(p.label, p.probabilities[p.index], p.attention.shape)  # attention: [steps_i]

``python -m attn_export.runtime predict DIR INPUT`` predicts from the command line with the device
package's dependencies (``attn-export predict`` is the full CLI's version).

Loading asks the store (``runtime.store``) for the artefact with ``need="verified"``: its bytes, whole
lineage and verdict are checked there (and an engine's GPU and TensorRT), and the backend gets exactly the
bytes that were hashed. ``backend="auto"`` and the choice of artefact are ``runtime.dispatch``'s. What stays
here is batching.

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

import contextlib
import math
import os
import threading
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Mapping, NamedTuple, Optional, Tuple, Type, Union

import numpy as np

from ..errors import AttnExportError, BadInput, Untrusted, WorkFailed, out_of_memory
from .backends import REGISTRY
from .backends.base import Backend
from .iospec import IOSpec, class_logits
from .limits import DEFAULT_BATCH, check_batch_size, check_threads
from .precisions import PRECISIONS, one_by_one
from .readers import FLOAT32_MAX
from .settings import not_default
from .store import Artifact, Store
from .trt.precision import fp32_layers_reduced

if TYPE_CHECKING:
    from .streaming import Stream

__all__ = ["ON_LONG", "Prediction", "Predictor", "input_range"]

# ONNX Runtime documents InferenceSession.run as safe to call from several threads at once.
CONCURRENT_BACKENDS = ("ort-cpu", "ort-cuda", "ort-trt")
ON_LONG = ("error", "truncate", "split")


class Prediction(NamedTuple):
    label: str  # the predicted class's name ("" for a head other than classification)
    index: int  # type: ignore[assignment]  # DESIGN's name; into Predictor.labels (-1: not classification)
    probabilities: np.ndarray  # float32 [classes]: softmax of the logits
    attention: np.ndarray  # float32 [steps]: the attention weights over this sequence's own steps (empty from a stream)


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


class InputRange(NamedTuple):
    """Per feature, the lowest and highest raw value a precision holds where the input enters its graph, with
    the training mean and std, and the precision's largest (``Precision.largest``)."""

    low: np.ndarray
    high: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    largest: float


def input_range(artifact: Artifact, backend: str = "") -> Optional[InputRange]:
    """What ``artifact``'s precision holds of the raw input (``InputRange``); None for a precision this
    table does not know. The graph normalises in float32 and casts after: mean +- largest x std, largest
    float32's own where the precision reduces nothing (a value past it normalises to inf in any graph: a
    stream then carried NaN in its state from that chunk on, found by attacking). An engine TensorRT built
    weakly typed with its FP16 flag and the FP32 layers not pinned (``fp32_layers_reduced``), or the FP16 graph
    on ``backend`` ort-trt, may normalise in FP16 (found by review), where x and x - mean must lie within largest
    too."""
    if artifact.precision not in PRECISIONS:
        return None
    reduced = PRECISIONS[str(artifact.precision)].largest
    largest = reduced or FLOAT32_MAX
    assert artifact.info is not None
    mean, std = np.asarray(artifact.info.mean, np.float64), np.asarray(artifact.info.std, np.float64)
    low, high = mean - largest * std, mean + largest * std
    # ONNX Runtime's TensorRT EP may build weakly typed with trt_fp16_enable and cannot pin them (review)
    if reduced and (backend == "ort-trt" or artifact.kind == "engine" and fp32_layers_reduced(artifact.entry)):
        low = np.maximum(low, np.maximum(-largest, mean - largest))
        high = np.minimum(high, np.minimum(largest, mean + largest))
    return InputRange(low, high, mean, std, largest)


def _refuse_threads(backend: Optional[Type[Backend]], threads: Optional[int]) -> None:
    if backend is not None and threads and not backend.threaded:  # found by review: ignored without a word
        takes = ", ".join(n for n, c in REGISTRY.items() if c.threaded and c.deployable and c.kind != "torch")
        raise BadInput(f"threads {threads} does nothing with {backend.name}, which sets no CPU thread count; expected "
                       f"no threads (None in Python, 0 or none on the command line), or a backend that takes them "
                       f"({takes})")


def _judged_within(store: Store, artifact: Artifact, device: str, computes: str) -> Optional[int]:
    """The longest sequence verify judged ``artifact``'s verdict by its error budget, computed in ``computes``
    (its rule's deployment range, under the settings the verdict was given with); None when every length was
    (FP32), when it is judged otherwise (INT8: by its decisions) or has no verdict."""
    from .compare import rule_for
    from .settings import override_section
    from .verify import deployment_max_seq

    if not artifact.verified or artifact.precision is None or store.state(artifact.name).verified is not True:
        return None
    # the overrides in the order verify applied them (the last of a key given twice wins; found by review)
    cfg = override_section(store.info.verify, "verify", [str(o) for o in artifact.verified.get("overrides") or []])
    rule = rule_for(computes, cfg, device, deployment_max_seq(store.info, cfg))
    return rule.deployment_max_seq if rule.judged_by_element else None


def _decided_within(store: Store, artifact: Artifact) -> Optional[int]:
    """The longest sequence of the test split on whose decisions verify judged ``artifact`` (INT8), read from
    the ``verify.json`` its verdict was recorded from; None for another precision, or when that file is not
    here or is not the one."""
    precision = PRECISIONS.get(str(artifact.precision))
    if precision is None or precision.judged_by != "decisions":
        return None
    recorded = _verdicts_verify(store, artifact.verified)
    split = None if recorded is None else recorded.get("test_split")
    return None if split is None else int(split["max_length"])


def _verdicts_verify(store: Store, verdict: Optional[Mapping[str, Any]]) -> Optional[Mapping[str, Any]]:
    """The ``verify.json`` here, parsed, when ``verdict`` (a manifest entry's) was recorded from it; else None."""
    from . import schema
    from .store import VERIFY_JSON

    if not verdict or store.read(VERIFY_JSON) is None or store.sha256(VERIFY_JSON) != verdict.get("verify_sha256"):
        return None
    return store.parsed(VERIFY_JSON, schema.VERIFY)


def _replayed_within(store: Store, name: str, backend: str) -> Optional[Tuple[int, str]]:
    """The longest sweep case verify ran ``name`` (a graph, stream graph or engine) on with ``backend``, the
    runtime that runs it now (every runtime's, where verify did not run that one), read from the
    ``verify.json`` its verdict was recorded from, and the runtimes whose rows those were (found by review:
    "ran on with ort-cpu" where ort-cpu had none); None when that file is not here or is not the one. Found
    by attacking: predict --stream named ``STREAM_MAX_SEQ``, 512 steps, where the longest case replayed had
    301; FP32 was said to be judged at every length, where the sweep stops at 4096 steps (2048 on a device);
    found by review: another runtime's rows, which an interpreter's size limit makes shorter, named its
    limit."""
    verdict = (store.entry(name) or {}).get("verified")
    recorded = _verdicts_verify(store, verdict)
    if recorded is None or verdict is None:
        return None
    rows = [r for r in recorded.get("results") or []
            if r.get("artifact") == name and r.get("sha256") == verdict.get("sha256")]
    rows = [r for r in rows if r.get("backend") == backend] or rows
    steps = [int(case["seq"]) for row in rows for case in row.get("cases") or []]
    return (max(steps), ", ".join(dict.fromkeys(str(r.get("backend")) for r in rows))) if steps else None


def _verdict_notes(store: Store, artifact: Artifact, computes: Optional[str]) -> List[str]:
    """What is said of ``artifact``'s verdict beside the store's own notes: one given under ``--set``
    overrides, or under the recipe's [verify] settings where they are not the defaults (as verify's headline
    says it: found by review)."""
    notes = []
    loosened = store.loosened(artifact.name, computes)
    if loosened:
        notes.append(f"{artifact.name} was verified with --set {', '.join(loosened)}, not the recipe's own [verify] "
                     "settings")
    settings = not_default(store.info.verify)
    if settings and artifact.verified:
        notes.append(f"{artifact.name} was verified under the recipe's [verify] {', '.join(settings)}")
    return notes


class Predictor:
    """A loaded, checked artefact on one backend. Make one with :meth:`load`; ``close()`` or ``with``."""

    def __init__(self, backend: Backend, artifact: Artifact, notes: List[str], batch_size: int,
                 store: Optional[Store] = None) -> None:
        assert artifact.info is not None
        self.directory = artifact.directory
        self.artifact = artifact.path
        self.precision = str(artifact.precision)  # the artefact's, which picks its stream graph and engine
        # what the backend computes it in: the artefact's precision, or one of the backend's own (openvino-bf16)
        self.computes: str = backend.computes or self.precision
        self.backend_name: str = backend.name
        self.labels: Tuple[str, ...] = artifact.info.labels
        self.feature_names = artifact.info.feature_names  # check_features holds a named input to them
        self.missing = artifact.info.missing  # the training data's gap policy, which predict's input files take
        self.spec: IOSpec = backend.spec
        self.head = self.spec.head_output
        self.features = self.spec.features
        self.entry = artifact.entry
        self.notes = notes + list(artifact.notes)
        # what loading said of the graph it runs and of that choice (a stream graph has its own: ``Stream.notes``);
        # what is appended to ``notes`` later is the request's
        self.graph_notes: List[str] = list(self.notes)
        self.verified: Optional[Mapping[str, Any]] = artifact.verified
        # where the input enters the graph, a value past the precision's largest (float32's for FP32) is inf
        # and the answer is not the model's (found by attacking: 1e6 gave FP16 another class than FP32)
        self._range = input_range(artifact, backend.name)
        # the one-sequence path knows every |x| < sqrt(float32's max) once x.x is finite: where every bound lies
        # beyond that (FP32's, unless a std is below 1e-19), no value can pass one and the check is skipped
        self._dot_bounded = self._range is None or bool(
            np.all(np.minimum(-self._range.low, self._range.high) > math.sqrt(FLOAT32_MAX)))
        # The shapes the artefact accepts: an engine's optimisation profile (tensorrt: its manifest entry's;
        # ort-trt: the recipe's); ONNX on ONNX Runtime has no limit.
        profile = backend.profile()
        self.max_seq: Optional[int] = None if profile is None else int(profile.seq.max)
        self.min_seq: int = 1 if profile is None else int(profile.seq.min)
        self.min_batch: int = 1 if profile is None else int(profile.batch.min)
        self.batch_size = max(1, min(batch_size if profile is None else int(profile.batch.max), int(batch_size)))
        if one_by_one(self.precision):  # its answer for a row would move with the other rows
            self.batch_size = 1
        # what a predict call's own batch_size may not pass: the profile's max batch, or one row at a time
        self._batch_cap: Optional[int] = (1 if one_by_one(self.precision) else
                                          None if profile is None else int(profile.batch.max))
        self._backend = backend
        # The feeds predict builds are already checked (shapes, dtypes, lengths, finite values: _sequences and
        # _batch), so they are run without the protocol's second check: it cost about 10 % of a small model's
        # latency at seq 128 (scripts/bench_runtime.py).
        self._infer = backend.run_checked
        # a backend with no shape limits (ONNX on ONNX Runtime) needs no accepts() per call
        self._limited = type(backend).accepts is not Backend.accepts or backend.max_cells is not None
        self._lock = None if backend.name in CONCURRENT_BACKENDS else threading.Lock()
        # One sequence: the backend's positional call (ONNX Runtime's own session.run), no intermediate dict.
        self._direct: Optional[Tuple[Callable[[Mapping[str, np.ndarray]], List[np.ndarray]], int, int]] = None
        self._one_length: Dict[int, np.ndarray] = {}
        self._head_shape = (1, int(next(t for t in self.spec.outputs if t.name == self.head).dims[1]))
        if not self._limited and self._lock is None:
            names = list(self.spec.output_names)
            self._direct = (backend.positional(names), names.index(self.head), names.index("attention"))
        self._closed = False
        self._store = store
        self._options: Tuple[bool, Optional[int]] = (False, None)  # load's allow_unverified and threads
        # each stream graph's backend and, where its runtime runs one call at a time, its lock: opened by the
        # first stream of that graph, shared by the later ones (a stream's state is its own), closed with the
        # predictor (one session per stream had grown a service by 1 MB a stream: found by attacking)
        self._streams: Dict[Tuple[str, str], Tuple[Backend, Optional[threading.Lock]]] = {}  # by (name, sha256)
        self._streams_lock = threading.Lock()  # stream() and close() from several threads: one session each
        # a bundle's archive is closed when the predictor is closed or collected
        self._finalizer = weakref.finalize(self, store.close) if store is not None else None

    # ---- loading

    @classmethod
    def load(
        cls,
        path: Union[str, Path, Store] = "artifacts",
        backend: str = "auto",
        precision: str = "fp32",
        allow_unverified: bool = False,
        threads: Optional[int] = None,
        batch_size: int = DEFAULT_BATCH,
    ) -> "Predictor":
        """Check and load ``precision``'s artefact from an artefact directory or a bundle ``.tar.gz`` (or a
        ``Store`` of one, opened already, which the predictor then closes: predict's, which read the gap policy).

        ``backend``: ``"auto"`` or a name (``ort-cpu``, ``ort-cuda``, ``ort-trt``, ``tensorrt``, ``openvino-cpu``,
        ``openvino-bf16``: model.onnx computed in bf16, where verify passed that pair, ``tract-cpu``).
        ``threads``: the backend's intra-op threads (ONNX Runtime's default: all cores)."""
        try:
            return cls._load(path, backend, precision, allow_unverified, threads, batch_size)
        except BaseException:
            if isinstance(path, Store):  # given open, it is the predictor's to close, on every way out
                path.close()
            raise

    @classmethod
    def _load(cls, path: Union[str, Path, Store], backend: str, precision: str, allow_unverified: bool,
              threads: Optional[int], batch_size: int) -> "Predictor":
        from .dispatch import backend_class, choose

        batch_size = check_batch_size(batch_size)
        threads = check_threads(threads)
        if not isinstance(allow_unverified, (bool, np.bool_)):  # found by attacking: "no" (a config's string) was
            raise BadInput(f"allow_unverified = {allow_unverified!r}; expected True or False")  # true, trust off
        if not isinstance(path, (str, os.PathLike, Store)) or not str(path).strip():  # "" was the current directory
            raise BadInput(f"path = {path!r}; expected an artefact directory or a bundle .tar.gz")
        # a thread count for a backend that takes none is the request's fault wherever it runs: said before the
        # backend is looked for (found by attacking: exit 3 where the backend was not installed)
        _refuse_threads(backend_class(backend) if backend != "auto" else None, threads)
        store = path if isinstance(path, Store) else Store.load(path)
        try:
            backend_cls, artifact, notes = choose(store, backend, precision, allow_unverified)
            _refuse_threads(backend_cls, threads)
            impl = backend_cls(artifact, threads=threads)
            impl.__enter__()
            verdict = _verdict_notes(store, artifact, backend_cls.computes)
            predictor = cls(impl, artifact, notes + verdict, batch_size, store)
            predictor._options = (allow_unverified, threads)
            predictor.judged_within = _judged_within(store, artifact, impl.device, predictor.computes)
            predictor.decided_within = _decided_within(store, artifact)
            swept = _replayed_within(store, artifact.name, impl.name)
            if swept is not None:
                predictor.swept_within, predictor.swept_on = swept
            return predictor
        except BaseException:
            store.close()
            raise

    judged_within: Optional[int] = None  # set by load (``_judged_within``)
    decided_within: Optional[int] = None  # set by load (``_decided_within``)
    swept_within: Optional[int] = None  # set by load (``_replayed_within``), with the runtimes it was read from
    swept_on: str = ""

    def beyond_judged(self, sequences: Any, lengths: Optional[Any] = None) -> Optional[str]:
        """A note when any of ``sequences`` (what ``predict`` takes: a list of ``[steps, features]`` arrays, or
        a padded array with ``lengths``, checked alike) is longer than the deployment range ``judged_within``,
        where verify judged this precision by its error budget; beyond it only by finite outputs, zero attention
        on padding and decisive argmaxes (found by attacking verify: an FP16 graph 1.3x off past 256 steps
        passed, and predict said nothing of a 300-step sequence); for INT8, longer than the test split whose
        decisions judged it (``decided_within``); and for any precision, longer than the longest case verify
        ran this file on with this runtime (``swept_within``), where nothing was checked. None otherwise."""
        sequences = self._sequences(sequences, lengths)  # found by attacking: a bare [steps, F] array counted rows
        runs = self.max_seq  # an engine runs at most its profile's steps at once (on_long cuts)
        swept = self.swept_within
        past = 0 if swept is None else sum(1 for s in sequences if min(len(s), runs or len(s)) > swept)
        unswept = (f"{past} of {len(sequences)} sequence(s) are longer than the {swept} steps of the longest case "
                   f"verify ran {self.artifact.name} on with {self.swept_on}: nothing checked it that long"
                   if past else None)
        said = self._judged_note(sequences)
        return "; ".join(n for n in (said, unswept) if n) or None

    def _judged_note(self, sequences: List[np.ndarray]) -> Optional[str]:
        """``beyond_judged``'s note on the precision's own range: its budget's, or its test split's."""
        limit = self.judged_within
        if limit is None and self.decided_within is not None:  # INT8 (found by attacking: nothing was said)
            longer = sum(1 for s in sequences if len(s) > self.decided_within)
            return None if not longer else (
                f"{longer} of {len(sequences)} sequence(s) are longer than the {self.decided_within} steps of the "
                f"test split on whose decisions verify judged {self.artifact.name}; beyond them it checked only "
                "finite outputs, attention that is a softmax and none on padding")
        if limit is None:
            return None
        runs = self.max_seq or limit + 1  # an engine runs at most its profile's steps at once (on_long cuts)
        longer = sum(1 for s in sequences if min(len(s), runs) > limit)
        if not longer:
            return None
        decisive = " and decisive classes" if self.head == "logits" and len(self.labels) > 1 else ""
        return (f"{longer} of {len(sequences)} sequence(s) are longer than the {limit} steps within which verify "
                f"judged {self.artifact.name}{'' if self.computes == self.precision else ' in ' + self.computes} by "
                f"its error budget; beyond them it checked only finite outputs and no "
                f"attention on padding{decisive}")

    def beyond_streamed(self, sequences: Any, lengths: Optional[Any] = None) -> Optional[str]:
        """``beyond_judged`` for ``predict --stream``: a note when any of ``sequences`` is longer than verify
        replayed this precision's stream graph (its longest sweep case, ``_replayed_within``, where its
        ``verify.json`` is here; else ``STREAM_MAX_SEQ``, or the deployment range where shorter); past that
        its updates were never judged (found by attacking: none was said). None otherwise."""
        from .verify import STREAM_MAX_SEQ

        sequences = self._sequences(sequences, lengths)
        decided = self.decided_within is not None and self.decided_within < STREAM_MAX_SEQ  # INT8 (review)
        replayed = None
        if self._store is not None:
            try:
                artifact, cls = self._stream_source()
            except AttnExportError:  # no stream graph to open: stream() says why, and there is nothing to note
                return None
            if self._store.state(artifact.name).verified is not True:  # its own note says it was never judged, at
                return None  # any length (found by attacking: it said how far verify had replayed it)
            replayed = _replayed_within(self._store, artifact.name, cls.name)
        limit = self.decided_within if decided else min(
            replayed[0] if replayed else STREAM_MAX_SEQ, STREAM_MAX_SEQ, self.judged_within or STREAM_MAX_SEQ)
        assert limit is not None
        longer = sum(1 for s in sequences if len(s) > limit)
        if not longer:
            return None
        judged = (f"of the test split on whose decisions verify judged the {self.precision.upper()} stream graph" if
                  decided else f"over which verify replays the {self.precision.upper()} stream graph")
        # how far the whole-sequence graph was run, where its verify.json says (found by attacking: the
        # parenthesis read as judged at any length)
        whole = "" if self.swept_within is None else f", which verify ran up to {self.swept_within} steps"
        return (f"{longer} of {len(sequences)} sequence(s) are longer than the {limit} steps {judged}: its updates "
                f"past them were not judged (predict without --stream runs the whole-sequence graph{whole})")

    def unasked(self) -> Optional[str]:
        """For ``predict`` given no backend or precision: what its CPU bundle recommends instead of what ran
        (``bundle.unasked``), else None."""
        from .bundle import unasked

        return None if self._store is None else unasked(self._store, self.backend_name, self.computes)

    def stream(self, batch: int = 1) -> "Stream":
        """A stream of ``batch`` rows on the stream graph of this predictor's precision (``model.stream.onnx``
        from ``attn-export export --stream``; ``model.stream.fp16.onnx`` and the INT8 ones from quantize), opened
        through the same store with the same trust rule (verified, unless loaded with allow_unverified) on
        this predictor's ONNX runtime; a predictor on a TensorRT engine streams on the stream engine built on
        this device (``build --stream``), else on the stream graph in ONNX Runtime CPU. ``push(chunk,
        lengths)`` returns each row's prediction for its prefix so far, exactly the whole-sequence model's on
        that prefix (``runtime.streaming``)."""
        from .streaming import stream_rows

        if self._closed:
            raise BadInput("this Predictor is closed; load it again")
        if self._store is None:
            raise BadInput("this predictor was not loaded from a directory or bundle; use Predictor.load")
        rows = stream_rows(batch)  # before anything is opened
        if self.computes != self.precision:  # a stream graph computed so is one no verify judged
            runs = ", ".join(n for n, c in REGISTRY.items() if c.kind == "onnx" and c.deployable and c.computes is None
                             and self.precision in c.precisions)
            raise BadInput(f"{self.backend_name} computes {self.artifact.name} in {self.computes}, and verify judges "
                           f"no stream graph in {self.computes}; expected a stream on a backend that runs the "
                           f"{self.precision} stream graph as it is ({runs})")
        with self._streams_lock:  # two first streams of a graph at once had opened two sessions (review)
            return self._stream(rows)

    def _stream_source(self) -> Tuple[Artifact, Type[Backend]]:
        """The stream graph (or stream engine) of this predictor's precision, opened through its store with
        its trust rule, and the backend that streams it: a TensorRT predictor's stream engine built on this
        device, else the stream graph on this predictor's ONNX runtime (ONNX Runtime CPU for an engine's)."""
        from .backends.onnxrt import OrtCpuBackend
        from .dispatch import find_engine
        from .store import STREAM_FILES
        from .streaming import require_stream

        assert self._store is not None
        allow_unverified = self._options[0]
        if self._backend.kind == "engine":
            engine = find_engine(self._store, self.precision, allow_unverified, [], stream=True)
            if engine is not None:
                return engine, type(self._backend)
        name = STREAM_FILES[self.precision]
        try:
            require_stream(self._store, name)
            artifact = self._store.open(name, need="verified", allow_unverified=allow_unverified)
        except Untrusted as e:
            raise self._loaded_before(e) from None
        return artifact, type(self._backend) if self._backend.kind == "onnx" else OrtCpuBackend

    def _stream(self, rows: int) -> "Stream":
        from .dispatch import not_run_on
        from .streaming import Stream

        if self._closed:
            raise BadInput("this Predictor is closed; load it again")
        artifact, cls = self._stream_source()
        assert self._store is not None  # _stream_source's own check
        threads = self._options[1]
        key = (artifact.name, artifact.sha256)  # a graph remade and verified since is a session of its own
        opened = self._streams.get(key)
        if opened is None:
            backend = cls(artifact, threads=threads)
            backend.__enter__()
            # a runtime that runs one call at a time shares the predictor's lock: one predict and one push at
            # once had hung OpenVINO for good (found by attacking: both threads in its infer, 0 % CPU)
            opened = self._streams[key] = (
                backend, None if backend.name in CONCURRENT_BACKENDS else self._lock)
        empty = np.zeros(0, np.float32)
        runs = (artifact.name, input_range(artifact, opened[0].name))
        return Stream(opened[0], rows, lambda row: self._decide(row, empty),
                      lambda x, valid: self.check_range(x, "chunk", valid, runs), lock=opened[1],
                      notes=(_verdict_notes(self._store, artifact, None) + list(artifact.notes)
                             + not_run_on(self._store, cls, artifact)))

    def _loaded_before(self, e: Untrusted) -> Untrusted:
        """``e``, saying so when the directory's manifest is no longer the one this predictor loaded (found by
        attacking: after a retrain and export --stream elsewhere, stream() advised the export just run; what
        is out of date is this predictor, which serves the model it loaded)."""
        from .store import MANIFEST, sha256_file

        assert self._store is not None
        if self._store.packed:  # found by review: "b.tar.gz/manifest.json" is no file, and a bundle cannot change
            return e
        path = self._store.directory / MANIFEST
        try:
            now = sha256_file(path) if path.is_file() else None
        except OSError:
            return e
        if now == self._store.sha256(MANIFEST):
            return e
        # what was found, without its advice: re-making the file is not what this predictor needs (attacking)
        return Untrusted(f"{str(e).split('; ')[0]}; but {self._store.directory} has changed since this Predictor was "
                         "loaded: load it again to serve what the directory holds now")

    def close(self) -> None:
        with self._streams_lock:
            self._closed = True
            streams = list(self._streams.values())
        for backend, lock in streams:
            with lock or contextlib.nullcontext():
                backend.close()
        if self._lock is not None:
            with self._lock:
                self._backend.close()
        else:
            self._backend.close()
        if self._finalizer is not None:
            self._finalizer()

    def __enter__(self) -> "Predictor":
        if self._closed:  # found by attacking: a closed predictor entered silently and failed at its first call
            raise BadInput("this Predictor is closed; load it again")
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __reduce__(self) -> Any:
        """Refused in one line: its sessions cannot leave this process (pickle, copy, a spawned worker had
        ONNX Runtime's own TypeError: found by attacking); each process loads its own."""
        raise BadInput("a Predictor holds this process's open runtime sessions and cannot be pickled or copied; "
                       "expected each process to call Predictor.load(path) itself (a forked child may use it)")

    def __repr__(self) -> str:
        return (f"Predictor({self.artifact.name} on {self.backend_name}, precision {self.computes}, "
                f"{len(self.labels)} classes, batch {self.batch_size}, max_seq {self.max_seq})")

    # ---- predicting

    def _sequences(self, sequences: Any, lengths: Any) -> List[np.ndarray]:
        features = self.spec.features
        if lengths is not None:
            try:  # ragged nested lists: numpy's ValueError, not one line (found by attacking)
                x = np.asarray(sequences)
                n = np.asarray(lengths)
            except (TypeError, ValueError) as e:
                raise BadInput(f"a padded batch is x [N, T, {features}] with lengths [N], each of one shape; got "
                               f"what numpy cannot make an array of ({e})") from None
            if x.ndim != 3 or n.ndim != 1 or n.shape[0] != x.shape[0]:
                raise BadInput(f"a padded batch is x [N, T, {features}] with lengths [N]; got x {x.shape}, "
                               f"lengths {n.shape}")
            if n.dtype.kind not in "iu" or (n < 1).any() or (n > x.shape[1]).any():
                raise BadInput(f"lengths must be integers in 1..{x.shape[1]} (the padded T)")
            sequences = [x[i, : int(n[i])] for i in range(x.shape[0])]
        elif isinstance(sequences, np.ndarray) and sequences.ndim == 3:
            raise BadInput("a 3-D array needs lengths=[N] (a padded batch); or pass a list of [steps, features] arrays")
        elif isinstance(sequences, np.ndarray) and sequences.ndim == 2:
            raise BadInput(f"got one array of shape {sequences.shape}: pass a list of [steps, {features}] arrays "
                           "(for one sequence, [x]), or a padded [N, T, F] array with lengths=[N]")
        elif (not hasattr(sequences, "__iter__") or isinstance(sequences, (Mapping, str, bytes))
              or (isinstance(sequences, np.ndarray) and sequences.ndim == 0)):
            # None, a number, a 0-d array (its iteration was numpy's TypeError: found by attacking); a dict or a
            # string, whose iteration gives its keys or characters ("sequence 0 has dtype <U1": attacking)
            raise BadInput(f"got {type(sequences).__name__}; expected a list of [steps, {features}] float32 arrays, "
                           "or a padded [N, T, F] array with lengths=[N]")
        out = []
        for i, s in enumerate(sequences):
            try:
                a = np.asarray(s)
            except (TypeError, ValueError) as e:
                raise BadInput(f"sequence {i} is not an array of [steps, {features}] numbers: its steps differ in "
                               f"length, or it holds other things ({e})") from None
            if a.dtype != _F32:
                if a.dtype.kind not in "fiu":
                    raise BadInput(f"sequence {i} has dtype {a.dtype}; expected real numbers (float32)")
                with np.errstate(over="ignore"):  # beyond float32's range: said below, without a numpy warning
                    narrowed = a.astype(np.float32)
                if a.dtype.kind == "f" and a.size and np.isfinite(a).all() and not np.isfinite(narrowed).all():
                    step = int(np.argwhere(~np.isfinite(narrowed))[0][0])
                    raise BadInput(f"sequence {i} holds {float(a[step][~np.isfinite(narrowed[step])][0]):g} at step "
                                   f"{step}, beyond float32's range (±3.4e38); inputs must be finite float32")
                a = narrowed
            if a.ndim != 2 or a.shape[0] < 1 or a.shape[1] != features:
                raise BadInput(f"sequence {i} has shape {a.shape}; expected [steps >= 1, {features}]")
            # a finite sum proves every value finite in one reduction; summed in float64, finite float32
            # values (3e38 included) cannot overflow it, so numpy prints no warning
            if not math.isfinite(_SUM(a, axis=None, dtype=np.float64)) and not np.isfinite(a).all():
                step = int(np.argwhere(~np.isfinite(a))[0][0])
                fill = (f" (this model's training data had their gaps filled by [data] missing = {self.missing!r}: "
                        f"attn_export.runtime.readers.fill_gaps(sequence, {self.missing!r}) fills them the same way)"
                        if self.missing != "error" and np.isnan(a).any() else "")
                raise BadInput(f"sequence {i} holds a non-finite value at step {step}; inputs must be finite{fill}")
            out.append(a)
        return out

    def check_range(self, x: np.ndarray, what: str, valid: Optional[np.ndarray] = None,
                    runs: Optional[Tuple[str, Optional[InputRange]]] = None) -> None:
        """Refuse ``x`` (``[steps, features]`` or ``[rows, steps, features]``, finite; only where ``valid``, a mask
        of its steps, when given) where a value lies outside what this artefact's precision holds
        (``input_range``): the graph would compute inf there. ``runs``: the name and range of the artefact
        that runs ``x`` where it is not this predictor's own (a stream's graph or engine; found by attacking:
        a chunk's refusal named model.fp16.onnx)."""
        name, bounds = (Path(self.artifact).name, self._range) if runs is None else runs
        if bounds is None:
            return
        low, high, means, stds, largest = bounds
        outside = (x < low) | (x > high)
        if valid is not None:
            outside &= valid[..., None]
        if not outside.any():
            return
        index = tuple(int(i) for i in np.argwhere(outside)[0])
        at, feature = index[:-1], index[-1]
        value = float(x[index])
        column = self.feature_names[feature] if self.feature_names else str(feature)
        position = f"step {at[-1]}" if len(at) == 1 else f"row {at[0]}, step {at[1]}"
        mean, std = float(means[feature]), float(stds[feature])
        file = f"{name} ({self.precision.upper()})"
        if abs(value - mean) > largest * std:
            why = (f"{abs(value - mean) / std:.3g} standard deviations from the training mean, past the {largest:g} "
                   f"that {file} holds after normalising")
        else:
            how = ("runs on ONNX Runtime's TensorRT EP with FP16 enabled" if self.backend_name == "ort-trt" else
                   "is an engine built with TensorRT's FP16 flag")
            why = f"{file} {how}, which may normalise in FP16, where x and x - mean must lie within {largest:g}"
        reduced = PRECISIONS[self.precision].largest is not None
        raise BadInput(f"{what} holds {value:g} at {position}, feature {column}: {why}; expected values within "
                       f"{low[feature]:.4g}..{high[feature]:.4g} for that feature"
                       + (", or the FP32 model (--precision fp32)" if reduced else ""))

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
        try:
            if self._lock is None:
                return self._infer(feeds)
            # close() may have taken the lock between two batches, and its backend is gone (found by attacking:
            # OpenVINO's and tract's next batch was an AttributeError on None)
            with self._lock:
                if self._closed:
                    raise BadInput("this Predictor was closed while it predicted; load it again")
                return self._infer(feeds)
        except WorkFailed:
            if self._closed:  # closed from another thread mid-predict: not a failure of the model (found by attacking)
                raise BadInput("this Predictor was closed while it predicted; load it again") from None
            raise

    def _batch(self, items: List[np.ndarray]) -> Tuple[np.ndarray, np.ndarray]:
        """Pad to the longest (at least the profile's min seq): x [rows, steps, F], lengths [rows]."""
        counts = [s.shape[0] for s in items]
        steps = max(max(counts), self.min_seq)
        rows = max(len(items), self.min_batch)
        lengths = np.array(counts, dtype=np.int64)
        if rows == 1 and steps == counts[0]:
            return items[0][None], lengths  # one sequence: no copy
        try:
            x = np.zeros((rows, steps, self.spec.features), dtype=np.float32)
        except MemoryError as e:  # found by attacking: numpy's own MemoryError escaped the API
            raise out_of_memory(str(e), f"padding {rows} sequences to {steps:,} steps") from None
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
            run, h, at = direct
            lengths = self._one_length.get(steps)
            if lengths is None:  # read-only to the runtime: one array per length serves every call
                lengths = np.array((steps,), np.int64)
                if len(self._one_length) < _LENGTHS_KEPT:
                    self._one_length[steps] = lengths
            outs = run({"x": a[None], "lengths": lengths})
            if outs[at].shape != (1, steps) or outs[h].shape != self._head_shape:  # what run_checked checks
                self.spec.check_outputs({self.head: outs[h], "attention": outs[at]}, 1, steps, self.backend_name)
            head, attention = outs[h][0], outs[at][0, :steps]
        else:
            x, lens = self._batch([a])
            out = self._run({"x": x, "lengths": lens})
            head, attention = out[self.head][0], out["attention"][0, :steps]
        return self._decide(head, attention)

    def _decide(self, head: np.ndarray, attention: np.ndarray) -> Prediction:
        """One row of the head's output as a Prediction: a classifier's label and probabilities."""
        if self.head != "logits":
            return Prediction("", -1, head.astype(np.float32, copy=False), attention)
        if head.shape[0] == 1:  # a binary head: z -> [0, z] (iospec.class_logits)
            head = class_logits(head[None])[0]
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
        never above an engine profile's max batch (found by attacking: it was held to the load-time one)."""
        if self._closed:
            raise BadInput("this Predictor is closed; load it again")
        if on_long not in ON_LONG:
            raise BadInput(f"on_long = {on_long!r}; expected one of {', '.join(ON_LONG)}")
        # checked before any path returns (found by attacking: one sequence skipped it, batch_size=0 ran)
        limit = self.batch_size if batch_size is None else check_batch_size(batch_size)
        if self._batch_cap is not None:
            limit = min(limit, self._batch_cap)
        if lengths is None and isinstance(sequences, list) and len(sequences) == 1:  # the device's common call
            one = sequences[0]
            if (type(one) is np.ndarray and one.dtype == _F32 and one.ndim == 2 and one.shape[0] >= 1  # np.matrix
                # multiplies as a matrix: found by attacking, its dot below raised a bare ValueError
                    and one.shape[1] == self.features and one.flags.c_contiguous
                    and (self.max_seq is None or one.shape[0] <= self.max_seq)):
                flat = one.reshape(-1)
                # finite (and no overflow) proves every value finite: BLAS's dot, measured cheaper between
                # two ONNX Runtime calls than numpy's reductions; anything else (values past 1.8e19 overflow
                # it: no warning printed) takes the full check
                with np.errstate(over="ignore", invalid="ignore"):
                    finite = math.isfinite(flat.dot(flat))
                if finite:
                    if not self._dot_bounded:
                        self.check_range(one, "sequence 0")
                    return [self._predict_one(one)]
        seqs = self._sequences(sequences, lengths)
        if not seqs:
            return []
        for i, s in enumerate(seqs):
            self.check_range(s, f"sequence {i}")
        if len(seqs) == 1 and (self.max_seq is None or seqs[0].shape[0] <= self.max_seq):
            return [self._predict_one(seqs[0])]

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
            if self.head == "logits":
                head = class_logits(head)  # a binary head's one logit as two classes
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
