"""TensorRT optimisation profiles: min/opt/max of batch and seq for the inputs ``x`` and ``lengths``.

Explicit values (the recipe's ``[build]`` table, then command-line flags) win; a 0 means "derive":

    batch  1 / 1 / 32                  one stream on the edge, room for offline batch scoring
    seq    min 1                       any length down to one step
           opt = median training length (the typical input: where TensorRT tunes its kernels)
           max = 4 x longest training length, rounded up to a power of two
                                       (a margin for longer inputs; DESIGN.md asks for at least 4x)
    chunk  (the stream graph, ``build --stream``) min 1, opt 16, max as seq's; its state inputs follow batch

Pure Python; Python 3.8-compatible (the device runtime reads profiles from the manifest).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from ...errors import BadInput, ConfigError
from ..store.names import BUILD_COMMAND

__all__ = ["DEFAULT_BATCH", "MAX_SEQ_FACTOR", "STREAM_OPT_CHUNK", "Profile", "Range", "derive_profile", "recipe_profile",
           "stream_profile"]

DEFAULT_BATCH = (1, 1, 32)
MAX_SEQ_FACTOR = 4
STREAM_OPT_CHUNK = 16  # the chunk a stream engine is tuned for, unless told: a few frames per update


@dataclass(frozen=True)
class Range:
    min: int
    opt: int
    max: int

    def __contains__(self, value: object) -> bool:
        return isinstance(value, int) and self.min <= value <= self.max

    def __str__(self) -> str:
        return f"{self.min}..{self.max} (opt {self.opt})"


@dataclass(frozen=True)
class Profile:
    """One optimisation profile; ``x`` is [batch, seq, features], ``lengths`` is [batch]. The stream graph's
    (``state``: each state input's dims past the batch) has a chunk axis where ``seq`` is, and its state
    inputs follow the batch: a stream engine takes any chunk in the range, its state fixed by the batch."""

    batch: Range
    seq: Range
    features: int
    state: Tuple[Tuple[str, Tuple[int, ...]], ...] = ()

    @property
    def axis(self) -> str:
        """What the second axis of ``x`` is: ``chunk`` for the stream graph, else ``seq``."""
        return "chunk" if self.state else "seq"

    def shapes(self) -> Dict[str, Tuple[Tuple[int, ...], Tuple[int, ...], Tuple[int, ...]]]:
        """Input name -> (min, opt, max) shapes, as ``IOptimizationProfile.set_shape`` takes them."""
        b, s, f = self.batch, self.seq, self.features
        shapes = {
            "x": ((b.min, s.min, f), (b.opt, s.opt, f), (b.max, s.max, f)),
            "lengths": ((b.min,), (b.opt,), (b.max,)),
        }
        for name, dims in self.state:
            shapes[name] = ((b.min, *dims), (b.opt, *dims), (b.max, *dims))
        return shapes

    def to_dict(self) -> Dict[str, Dict[str, List[int]]]:
        """The manifest's form: ``{"x": {"min": [1, 1, 12], "opt": [...], "max": [...]}, "lengths": ...}``."""
        return {name: {"min": list(mn), "opt": list(opt), "max": list(mx)}
                for name, (mn, opt, mx) in self.shapes().items()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Profile:
        try:
            x = d["x"]
            batch = Range(int(x["min"][0]), int(x["opt"][0]), int(x["max"][0]))
            seq = Range(int(x["min"][1]), int(x["opt"][1]), int(x["max"][1]))
            features = int(x["min"][2])
            state = tuple((str(name), tuple(int(v) for v in shape["min"][1:])) for name, shape in d.items()
                          if name not in ("x", "lengths"))
        except (KeyError, IndexError, TypeError, ValueError, AttributeError):
            raise BadInput(f"not an optimisation profile: {dict(d)!r}") from None
        return cls(batch, seq, features, state)

    def ort_trt_options(self) -> Dict[str, str]:
        """ONNX Runtime TensorRT EP's explicit profile options (``x:1x1x12,lengths:1``)."""
        shapes = self.shapes()
        return {
            f"trt_profile_{end}_shapes": ",".join(f"{name}:{'x'.join(str(d) for d in dims[i])}"
                                                  for name, dims in shapes.items())
            for i, end in enumerate(("min", "opt", "max"))
        }

    def accepts(self, batch: int, seq: int) -> Optional[str]:
        """None when [batch, seq] lies inside the profile, else why not, with the profile's limits."""
        problems = []
        if batch not in self.batch:
            problems.append(f"batch {batch} is outside {self.batch.min}..{self.batch.max}")
        if seq not in self.seq:
            problems.append(f"{self.axis} {seq} is outside {self.seq.min}..{self.seq.max}")
        if not problems:
            return None
        return ("the engine's optimisation profile does not cover this input: " + "; ".join(problems)
                + f" (profile: batch {self.batch}, {self.axis} {self.seq}; rebuild with {BUILD_COMMAND} DIR "
                f"{'--stream ' if self.state else ''}--max-batch/--min-seq/--max-seq to widen it)")

    def __str__(self) -> str:
        states = f", state {', '.join(n for n, _ in self.state)}" if self.state else ""
        return f"batch {self.batch}, {self.axis} {self.seq}, features {self.features}{states}"


def _next_pow2(n: int) -> int:
    p = 1
    while p < n:
        p *= 2
    return p


def derive_profile(
    features: int,
    train_lengths: Optional[Mapping[str, Any]],
    min_batch: int = 0,
    opt_batch: int = 0,
    max_batch: int = 0,
    min_seq: int = 0,
    opt_seq: int = 0,
    max_seq: int = 0,
) -> Tuple[Profile, List[str]]:
    """The profile from explicit values (0 = derive) and the training lengths ``{"min", "median", "max"}``;
    also notes on what was derived. Raises ConfigError naming the keys when the result is inconsistent."""
    notes: List[str] = []
    given = {"min_batch": min_batch, "opt_batch": opt_batch, "max_batch": max_batch,
             "min_seq": min_seq, "opt_seq": opt_seq, "max_seq": max_seq}
    for key, value in given.items():
        if value < 0:
            raise ConfigError(f"build.{key} = {value} is not valid: expected an integer >= 1 (0 = derive)")
    batch = Range(min_batch or DEFAULT_BATCH[0], opt_batch or max(DEFAULT_BATCH[1], min_batch),
                  max_batch or max(DEFAULT_BATCH[2], opt_batch, min_batch))

    longest = typical = None
    if train_lengths:
        try:
            longest, typical = int(train_lengths["max"]), int(train_lengths["median"])
        except (KeyError, TypeError, ValueError):
            longest = typical = None
    if (not opt_seq or not max_seq) and longest is None:
        # found by attacking: bundle said "give --opt-seq and --max-seq", options only build has
        raise BadInput("the training lengths are unknown (model.json has no train_lengths; a model `load` imported "
                       "has none), so the engine's sequence range is too: expected build.opt_seq and build.max_seq "
                       "in the model's recipe (on the host: attn-export load CHECKPOINT DIR --set build.opt_seq=N "
                       "--set build.max_seq=M), or build's --opt-seq and --max-seq")
    smin = min_seq or 1
    if max_seq:
        smax = max_seq
        if longest is not None and max_seq < longest:
            notes.append(f"max seq {max_seq} is below the longest training sequence ({longest}): longer inputs "
                         "will be refused")
    else:
        assert longest is not None
        smax = max(_next_pow2(MAX_SEQ_FACTOR * longest), smin, opt_seq)
        notes.append(f"max seq {smax}: {MAX_SEQ_FACTOR} x the longest training sequence ({longest}), "
                     "rounded up to a power of two")
    if opt_seq:
        sopt = opt_seq
    else:
        assert typical is not None
        sopt = min(max(typical, smin), smax)
        notes.append(f"opt seq {sopt}: the median training length")
    seq = Range(smin, sopt, smax)
    for dim, r in (("batch", batch), ("seq", seq)):
        if not 1 <= r.min <= r.opt <= r.max:
            raise ConfigError(f"the {dim} profile min {r.min} / opt {r.opt} / max {r.max} is out of order: expected "
                              f"1 <= build.min_{dim} <= build.opt_{dim} <= build.max_{dim}")
    if features < 1:
        raise BadInput(f"the model has {features} features per step; expected at least 1")
    return Profile(batch, seq, features), notes


def stream_profile(features: int, train_lengths: Optional[Mapping[str, Any]], state: Mapping[str, Sequence[int]],
                   min_batch: int = 0, opt_batch: int = 0, max_batch: int = 0, min_chunk: int = 0, opt_chunk: int = 0,
                   max_chunk: int = 0) -> Tuple[Profile, List[str]]:
    """The stream graph's profile: batch as ``derive_profile``'s; the chunk axis from 1 (or ``min_chunk``)
    up to what the whole graph's seq would reach (a chunk may hold a whole sequence), tuned at
    ``STREAM_OPT_CHUNK`` steps unless ``opt_chunk`` says otherwise; ``state`` (input name -> dims past the
    batch, ``streaming.stream_spec``) follows the batch."""
    if not opt_chunk:
        opt_chunk = max(min(STREAM_OPT_CHUNK, max_chunk or STREAM_OPT_CHUNK), min_chunk)
    profile, notes = derive_profile(features, train_lengths, min_batch, opt_batch, max_batch, min_chunk, opt_chunk,
                                    max_chunk)
    notes = [n.replace("max seq", "max chunk") for n in notes]
    return replace(profile, state=tuple((n, tuple(int(d) for d in dims)) for n, dims in state.items())), notes


def recipe_profile(info: Any, state: Optional[Mapping[str, Sequence[int]]] = None) -> Tuple[Profile, List[str]]:
    """The profile ``build`` makes with no flags: the recipe's ``[build]`` table over what is derived
    (``info`` a ``ModelInfo``); what a bundle's build commands state explicitly. ``state``: the stream
    graph's (``build --stream``), whose chunk axis the table's seq keys set."""
    b = info.build
    if state is not None:
        return stream_profile(info.spec.features, info.train_lengths, state, b.min_batch, b.opt_batch, b.max_batch,
                              b.min_seq, b.opt_seq, b.max_seq)
    return derive_profile(info.spec.features, info.train_lengths, b.min_batch, b.opt_batch, b.max_batch, b.min_seq,
                          b.opt_seq, b.max_seq)
