"""Streaming on the device: the stream graph's contract, and a stream that feeds it chunk by chunk.

    with Predictor.load("artifacts") as predictor:
        stream = predictor.stream(batch=2)
        for chunk in chunks:                      # [batch, steps, features]; lengths: new steps per row
            predictions = stream.push(chunk, lengths=[5, 0])   # the answer for each row's prefix so far
        stream.reset(rows=[0])                    # row 0 starts a new sequence

``model.stream.onnx`` (``attn-export export --stream``) takes ``x`` [batch, chunk, features], ``lengths``
[batch] (valid new steps of each row, 0 allowed: that row keeps its state) and the state; it gives the
head's output for the prefix seen so far (under the same name as ``model.onnx``), ``context`` (unless the
head is the context itself) and the new state. The state (``STATE``; ``state_in_<name>`` in,
``state_out_<name>`` out, so that their sorted orders agree) is batch first and **all zeros at the start**:
any runtime, and Triton's implicit state, can start a stream without knowing the model:

    acc    [batch, D]     the running attention-weighted sum of the LSTM's outputs
    c, h   [batch, L, H]  each layer's LSTM state
    max    [batch, 1]     the running maximum score
    steps  [batch, 1]     steps seen (a float: exact to 2^24)
    sum    [batch, 1]     the running sum of exp(score - max)

Python 3.8, numpy and one backend (ONNX Runtime on a device).
"""

from __future__ import annotations

import contextlib
import threading
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np

from ..errors import BadInput, MissingPrerequisite, WorkFailed
from .iospec import BATCH, HEAD_OUTPUT, IOSpec, TensorSpec
from .limits import whole
from .precisions import one_by_one

if TYPE_CHECKING:
    from .backends.base import Backend
    from .modelinfo import ModelInfo

__all__ = ["ATTENTION_STATE", "CHUNK", "PIECE", "SCHEDULES", "STATE", "Stream", "Update", "chunked", "not_streamable",
           "replay", "require_stream", "schedule", "state_dims", "state_name", "stream_rows", "stream_run",
           "stream_spec", "zero_state"]

CHUNK = "chunk"
STATE = ("acc", "c", "h", "max", "steps", "sum")
ATTENTION_STATE = ("acc", "max", "steps", "sum")  # the online softmax's: kept in FP32 by every precision
MAX_STREAM_BATCH = 4096
MAX_CHUNK = 1_000_000  # steps in one update: the recipe's bound on a sequence (build.max_seq)
# the most steps Stream.push feeds the graph at once: a longer chunk goes in pieces of this many, the same
# answer; the graph's [chunk, chunk] triangle made one chunk of 40,000 steps ask for 6.4 GB (README,
# Streaming, "Long chunks go in pieces", with the measurements behind 128)
PIECE = 128
STEPS_EXACT = 2 ** 24  # float32's last run of exact whole numbers ends here: a step count past it is not exact


def state_name(name: str, side: str) -> str:
    """``state_in_<name>`` or ``state_out_<name>`` (``side`` "in" or "out")."""
    return f"state_{side}_{name}"


def not_streamable(model: Any) -> Optional[str]:
    """Why a model of this recipe ``[model]`` table (a mapping or a ``ModelConfig``) cannot stream exactly,
    and what would; None when it can."""
    get = model.get if isinstance(model, dict) else (lambda key, default=None: getattr(model, key, default))
    if get("bidirectional", False):
        return ("it is bidirectional: its backward direction reads the future, so no prefix has its final answer "
                "before the sequence ends; train with model.bidirectional = false")
    kernels = [int(k) for k in get("conv_kernel_sizes", ()) or ()]
    if get("conv_channels", ()) and any(k > 1 for k in kernels):
        return ("its Conv1d front-end looks kernel // 2 steps ahead ('same' padding), so a step's features depend "
                "on steps not yet seen; train without it (model.conv_channels = [])")
    if get("conv_channels", ()):  # kernel 1 is causal, but the stream graph has no front-end
        return ("its Conv1d front-end (kernel 1: it reads no later step) is not in the stream graph, which streams "
                "the LSTM and the attention only; train without it (model.conv_channels = [])")
    if get("attention", "linear") == "additive" and get("query", "last") == "last":
        return ("its additive score's query is the last state, which changes with every new step and re-scores "
                "every earlier one; train with model.query = \"learned\"")
    return None


def require_stream(store: Any, name: str) -> None:
    """Refuse the stream graph ``name`` when ``store`` has none, saying why when its model cannot stream at
    all (then ``export --stream`` would refuse too), else which command makes it."""
    from .store import made_by

    if store.state(name).state != "missing":
        return
    reason = not_streamable(store.info.recipe.get("model", {}))
    if reason is not None:
        raise BadInput(f"{store.directory} has no {name}: its model cannot stream exactly: {reason}")
    raise MissingPrerequisite(f"{store.directory} has no {name}; run "
                              f"{made_by(name, store.hinted())}")


def stream_spec(info: "ModelInfo") -> IOSpec:
    """The stream graph's inputs and outputs for the model ``info`` describes (model.json)."""
    model = info.recipe["model"]
    layers, hidden = int(model.get("num_layers", 1)), int(model.get("hidden_size", 32))
    dims = {"acc": (BATCH, hidden), "c": (BATCH, layers, hidden), "h": (BATCH, layers, hidden), "max": (BATCH, 1),
            "steps": (BATCH, 1), "sum": (BATCH, 1)}
    head = HEAD_OUTPUT[info.head]
    outputs = [TensorSpec(head, "float32", (BATCH, info.num_outputs))]
    if head != "context":
        outputs.append(TensorSpec("context", "float32", (BATCH, hidden)))
    return IOSpec(
        inputs=(TensorSpec("x", "float32", (BATCH, CHUNK, info.input_size)), TensorSpec("lengths", "int64", (BATCH,)),
                *(TensorSpec(state_name(n, "in"), "float32", dims[n]) for n in STATE)),
        outputs=(*outputs, *(TensorSpec(state_name(n, "out"), "float32", dims[n]) for n in STATE)),
    )


def stream_run(run: Callable[[Dict[str, np.ndarray]], Dict[str, np.ndarray]], precision: Optional[str]
               ) -> Callable[[Dict[str, np.ndarray]], Dict[str, np.ndarray]]:
    """How a stream of several rows at ``precision`` runs on ``run`` (a backend's ``run_feeds`` on a stream
    graph), in ``Stream.push``, verify and quantize's check alike: for a precision run one sequence at a time
    (``Precision.per_row``), each row of the feeds alone, its chunk cut to its own new steps (a row with
    none: one zero step), the outputs stacked as the batch's, so that no row's answer moves with another's
    quantisation scale; for any other, ``run`` itself."""
    if not one_by_one(precision):
        return run

    def each(feeds: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        outs = []
        for i, n in enumerate(int(n) for n in feeds["lengths"]):
            row = {name: value[i:i + 1] for name, value in feeds.items()}
            row["x"] = row["x"][:, :n] if n else np.zeros_like(row["x"][:, :1])
            outs.append(run(row))
        return {name: np.concatenate([o[name] for o in outs]) for name in outs[0]}
    return each


def state_dims(spec: IOSpec) -> Dict[str, Tuple[int, ...]]:
    """Each state input of a stream graph's ``spec`` -> its dims past the batch (none for the whole-sequence
    graph's): what a TensorRT profile fixes by the batch."""
    return {t.name: tuple(int(d) for d in t.dims[1:]) for t in spec.inputs if t.name.startswith(state_name("", "in"))}


def zero_state(spec: IOSpec, batch: int) -> Dict[str, np.ndarray]:
    """The start state of ``batch`` rows: every state input, all zeros."""
    return {name: np.zeros((batch, *dims), np.float32) for name, dims in state_dims(spec).items()}


def stream_rows(batch: Any) -> int:
    """A stream's row count, or BadInput."""
    if not whole(batch) or not 1 <= batch <= MAX_STREAM_BATCH:
        raise BadInput(f"batch = {batch!r}; expected a whole number of rows, 1 to {MAX_STREAM_BATCH}")
    return int(batch)


class Stream:
    """``batch`` rows of a stream on one backend (made by ``Predictor.stream``); see the module docstring."""

    def __init__(self, backend: "Backend", batch: int, decide: Any, check: Any, lock: Any = None,
                 notes: Sequence[str] = ()) -> None:
        batch = stream_rows(batch)
        self.backend = backend
        # what the store said of the graph this stream runs (never verified, loaded with allow_unverified, ...):
        # predict --stream said the whole-sequence graph's instead (found by attacking)
        self.notes: List[str] = list(notes)
        # held around each call of the graph where its runtime runs one call at a time: the predictor's other
        # streams of this graph share the backend
        self._lock = lock if lock is not None else contextlib.nullcontext()
        self.spec: IOSpec = backend.spec
        self.batch = batch
        self.features = int(self.spec.inputs[0].dims[2])
        self.head = self.spec.head_output
        self._decide = decide  # head output row -> Prediction (the predictor's own decision)
        self.check = check  # (chunk, valid steps) -> None, or BadInput: the predictor's own range check
        self._state = zero_state(self.spec, batch)
        self._past_exact = False  # whether a row's count reached STEPS_EXACT (said once, in notes)
        # one push or reset at a time on this stream's state (found by attacking: four threads pushing on one
        # stream lost more than half their chunks, each push writing back the state it had read)
        self._turn = threading.Lock()

    @property
    def state(self) -> Dict[str, np.ndarray]:
        """Each row's state (``state_in_*`` -> [batch, ...] float32): what the next push starts from, as
        read-only views (a write into one skipped every check: found by review). Assigning one saved earlier (the
        same model's, as many rows) resumes those streams; it is checked first."""
        views = {}
        for name, value in self._state.items():
            views[name] = value.view()
            views[name].flags.writeable = False
        return views

    @state.setter
    def state(self, value: Any) -> None:
        expected = zero_state(self.spec, self.batch)
        if not isinstance(value, Mapping) or set(value) != set(expected):
            got = sorted(map(str, value)) if isinstance(value, Mapping) else type(value).__name__
            raise BadInput(f"state {got}: expected a mapping of {', '.join(sorted(expected))}")
        state = {}
        for name, want in expected.items():
            array = np.asarray(value[name])
            if array.dtype.kind not in "fiu" or array.shape != want.shape:
                raise BadInput(f"state {name} is {array.dtype} {list(array.shape)}; expected float32 "
                               f"{list(want.shape)} (this stream's rows, this model's state)")
            state[name] = np.array(array, np.float32)
            if not np.isfinite(state[name]).all():
                raise BadInput(f"state {name} holds a non-finite value; expected a state a push computed")
        steps, total = state[state_name("steps", "in")][:, 0], state[state_name("sum", "in")][:, 0]
        if ((steps < 0) | (steps != np.round(steps)) | ((steps > 0) & (total <= 0))).any():
            raise BadInput("state steps must be whole numbers >= 0, with a positive sum where a row has seen a step; "
                           "expected a state a push computed")
        with self._turn:
            self._state = state

    @property
    def steps(self) -> np.ndarray:
        """Steps seen so far, per row."""
        return self._state[state_name("steps", "in")][:, 0].astype(np.int64)

    def reset(self, rows: Union[None, int, Sequence[int]] = None) -> None:
        """Start ``rows`` (every row when None) from the zero state."""
        if not self.backend.opened:
            raise BadInput("this stream's Predictor is closed; load it again and open a new stream")
        if rows is None:
            picked: Sequence[Any] = range(self.batch)
        elif isinstance(rows, (int, np.integer)) or (isinstance(rows, np.ndarray) and rows.ndim == 0):
            picked = [rows.item() if isinstance(rows, np.ndarray) else rows]
        elif isinstance(rows, (str, bytes)) or not hasattr(rows, "__iter__"):
            raise BadInput(f"reset rows={rows!r}: expected a row number or a list of them (integers)")
        else:
            picked = list(rows)
        for r in picked:
            if isinstance(r, (bool, np.bool_)) or not isinstance(r, (int, np.integer)):
                raise BadInput(f"reset rows={rows!r}: expected a row number or a list of them (integers)")
            if not 0 <= int(r) < self.batch:
                raise BadInput(f"row {r} is outside this stream's {self.batch} rows")
        index = np.asarray(list(picked), np.int64)
        with self._turn:  # new arrays in one assignment: a reader of ``state`` sees it before or after, whole
            state = {name: value.copy() for name, value in self._state.items()}
            for value in state.values():
                value[index] = 0.0
            self._state = state

    def push(self, chunk: Any, lengths: Optional[Any] = None) -> List[Any]:
        """Feed ``chunk`` [batch, steps, features] (or [steps, features] for one row) and return each row's
        prediction for its prefix so far (a row that has seen no step yet: the head's answer for an empty
        context, which is all zeros).
        ``lengths``: the valid new steps of each row (default: all of them); steps past a row's length are
        padding, and a row with 0 keeps its state. A chunk longer than ``PIECE`` steps goes to the graph in
        pieces of that many (the same answer; the graph's memory grows with the square of what it is fed)."""
        if not self.backend.opened:
            raise BadInput("this stream's Predictor is closed; load it again and open a new stream")
        try:
            raw = np.asarray(chunk)
            # predict's rule (found by attacking: an object array of '0.5' strings or of bools was read here and
            # refused there): complex would lose its imaginary part, bool, text and objects mean nothing
            if raw.dtype.kind not in "fiu":
                raise TypeError(f"dtype {raw.dtype}")
            with np.errstate(over="ignore"):  # a float64 past float32's range: inf, refused below, not warned of
                x = np.asarray(raw, np.float32)
        except (TypeError, ValueError) as e:
            raise BadInput(f"chunk is not real numbers ({e}); expected float32 [batch, steps, features]") from None
        if x.ndim == 2 and self.batch == 1:
            x = x[None]
        if x.ndim != 3 or x.shape[0] != self.batch or x.shape[2] != self.features or x.shape[1] < 1:
            raise BadInput(f"chunk has shape {list(np.shape(chunk))}; expected [{self.batch}, steps >= 1, "
                           f"{self.features}]")
        steps = x.shape[1]
        try:  # ragged nested lists: numpy's ValueError (found by attacking)
            lens = np.full(self.batch, steps, np.int64) if lengths is None else np.asarray(lengths)
        except (TypeError, ValueError) as e:
            raise BadInput(f"lengths cannot be read as an array ({e}); expected {self.batch} integers in "
                           f"0..{steps}") from None
        if lens.shape != (self.batch,) or lens.dtype.kind not in "iu":
            raise BadInput(f"lengths has shape {list(lens.shape)} {lens.dtype}; expected {self.batch} integers")
        if lens.min() < 0 or lens.max() > steps:  # before the cast: a uint64 past 2^63 would wrap negative
            raise BadInput(f"lengths must lie in 0..{steps} (the chunk's steps); got {lens.min()}..{lens.max()}")
        lens = lens.astype(np.int64)
        valid = np.arange(steps)[None, :] < lens[:, None]
        if not np.isfinite(x[valid]).all():
            row, step = np.argwhere(valid & ~np.isfinite(x).all(axis=2))[0]
            raise BadInput(f"chunk holds a non-finite value (NaN, inf, or beyond float32's range, ±3.4e38) at "
                           f"[row {row}, step {step}]; inputs must be finite")
        self.check(x, valid)  # within what the precision holds (Predictor.check_range)
        x = np.where(valid[:, :, None], x, np.float32(0.0))
        profile = self.backend.profile()  # a stream engine takes chunks of its profile's range only
        width = max(min(PIECE, profile.seq.max), profile.seq.min) if profile is not None else PIECE
        with self._turn:
            if steps <= width:
                out, state = self._feed(x, lens, self._state)
            else:  # pieces of one width (the last padded: padding is free); none past the longest row
                state = self._state
                for start in range(0, int(lens.max()) or 1, width):
                    piece = x[:, start:start + width]
                    if piece.shape[1] < width:
                        piece = np.concatenate([piece, np.zeros((self.batch, width - piece.shape[1],
                                                                 self.features), np.float32)], axis=1)
                    out, state = self._feed(piece, np.clip(lens - start, 0, width), state)
            self._state = state  # only once every piece ran: a push that fails changes nothing
            if not self._past_exact and bool((self.steps >= STEPS_EXACT).any()):
                self._past_exact = True  # 4.7 hours of a 1 kHz sensor (found by attacking: said nowhere)
                self.notes.append(f"a row has seen {STEPS_EXACT:,} steps: its float32 step count is no longer exact, "
                                  "and the attention's running sums lose the precision to take in more steps as "
                                  "they grow; reset the row (a new window) for an exact stream")
        return [self._decide(row) for row in np.asarray(out[self.head], np.float32)]

    def _feed(self, x: np.ndarray, lengths: np.ndarray,
              state: Dict[str, np.ndarray]) -> Tuple[Dict[str, np.ndarray], Dict[str, np.ndarray]]:
        """One call of the graph on checked, zero-padded ``x`` from ``state``: (its outputs, the new state).
        An engine's profile that starts above this chunk's steps or rows (``build --stream --min-seq``,
        ``--min-batch``) is fed padding up to them, which is free: steps past ``lengths`` and rows of length 0
        change nothing (found by attacking: the chunk was refused)."""
        rows, steps = x.shape[:2]
        profile = self.backend.profile()
        more_rows = max(int(profile.batch.min) - rows, 0) if profile is not None else 0
        more_steps = max(int(profile.seq.min) - steps, 0) if profile is not None else 0
        feeds: Dict[str, np.ndarray] = {"x": x, "lengths": lengths}
        feeds.update(state)
        if more_rows or more_steps:
            feeds = {name: np.pad(value, [(0, more_rows), (0, more_steps if name == "x" else 0)][:value.ndim]
                                  + [(0, 0)] * (value.ndim - 2)) for name, value in feeds.items()}
        try:
            with self._lock:
                out = stream_run(self.backend.run_feeds, self.backend.artifact.precision)(feeds)
            if more_rows:
                out = {name: value[:rows] for name, value in out.items()}  # every output is [batch, ...]
        except Exception:
            if not self.backend.opened:  # closed by another thread mid-push (found by attacking: a RuntimeError)
                raise BadInput("this stream's Predictor was closed while it pushed; load it again and open a new "
                               "stream") from None
            raise
        new = {}
        for name in STATE:
            got = out.get(state_name(name, "out"))
            want = state[state_name(name, "in")]
            if got is None or got.shape != want.shape:
                raise WorkFailed(f"{self.backend.name} returned {state_name(name, 'out')} of shape "
                                 f"{None if got is None else list(got.shape)}; expected {list(want.shape)}")
            new[state_name(name, "in")] = np.asarray(got, np.float32)
            if not np.isfinite(new[state_name(name, "in")]).all():  # carried, it would spoil every later answer
                raise WorkFailed(f"{self.backend.name} computed a non-finite {state_name(name, 'out')} from this "
                                 "chunk; expected finite state (the stream keeps its state from before the chunk)")
        return out, new


def chunked(x: np.ndarray, chunk: int) -> List[Tuple[np.ndarray, int]]:
    """One sequence [steps, features] as (piece, valid steps) pieces of ``chunk`` steps, the last one
    shorter: what ``predict --stream`` feeds (a chunk longer than the sequence is the whole sequence)."""
    if chunk < 1:
        raise BadInput(f"--stream {chunk}: expected a chunk of at least 1 step")
    return [(x[start:start + chunk], min(chunk, x.shape[0] - start)) for start in range(0, x.shape[0], chunk)]


# how verify and export cut a sequence into chunks: one step at a time, a prime, uneven sizes with an
# empty chunk among them, one chunk longer than the sequence; the README's `--stream 16`, and widths that
# double from 1 to the pieces push feeds (found by attacking: a state bug only in chunks
# wider than 11 steps, 16 and 128 among them, passed export and verify)
SCHEDULES = ("chunk 1", "chunk 7", "uneven", "longer", "chunk 16", "widening")
_UNEVEN = (3, 0, 5, 1, 11, 2)


def schedule(name: str, steps: int) -> List[int]:
    """The chunk sizes of schedule ``name`` for a sequence of ``steps`` (0: a chunk with no new step)."""
    if name == "longer":
        return [steps + 5]
    if name == "uneven":
        sizes: List[int] = []
        while sum(sizes) < steps:
            sizes.append(_UNEVEN[len(sizes) % len(_UNEVEN)])
        return sizes
    if name == "widening":  # 1, 2, 4, ... PIECE, PIECE, ...
        sizes = []
        while sum(sizes) < steps:
            sizes.append(min(1 << len(sizes), PIECE))
        return sizes
    size = int(name.split()[1])
    return [size] * -(-steps // size)


class Update(NamedTuple):
    outputs: Dict[str, np.ndarray]  # the stream graph's outputs after this chunk
    seen: np.ndarray  # int64 [batch]: each row's prefix length so far


def replay(run: Callable[[Dict[str, np.ndarray]], Dict[str, np.ndarray]], spec: IOSpec, x: np.ndarray,
           lengths: np.ndarray, sizes: Sequence[int], garbage: bool = True, seed: int = 0) -> List[Update]:
    """Feed rows ``x`` [batch, steps, features] of ``lengths`` through the stream graph (``run``: a backend's
    ``run_feeds``) in chunks of ``sizes``, from the zero state; each row gets only its own valid steps, so
    rows end at different chunks and then see chunks with no new step. ``garbage``: the padding of every
    chunk holds large random values (that must change nothing)."""
    rng = np.random.default_rng(seed)
    batch, steps, features = x.shape
    state = zero_state(spec, batch)
    updates: List[Update] = []
    pos = 0
    for size in sizes:
        width = max(size, 1)
        piece = (rng.uniform(-1e3, 1e3, (batch, width, features)) if garbage else np.zeros((batch, width, features)))
        piece = piece.astype(np.float32)
        valid = np.clip(lengths - pos, 0, size).astype(np.int64)
        for b in range(batch):
            piece[b, :valid[b]] = x[b, pos:pos + valid[b]]
        out = run({"x": piece, "lengths": valid, **state})
        state = {state_name(n, "in"): np.asarray(out[state_name(n, "out")], np.float32) for n in STATE}
        pos += size
        seen = np.minimum(lengths, pos).astype(np.int64)
        # the count a row's answer rests on, exact (found by attacking: one too many passed export and verify,
        # and a row that had seen nothing then answered NaN)
        counted = state[state_name("steps", "in")].reshape(batch, -1)[:, 0]
        if not np.array_equal(counted, seen):
            raise WorkFailed(f"after chunk {len(updates) + 1} of {list(sizes)[:8]}, {state_name('steps', 'out')} is "
                             f"{[int(v) if np.isfinite(v) else float(v) for v in counted]}; expected the steps "
                             f"each row has seen, {seen.tolist()}")
        updates.append(Update(out, seen))
    return updates
