"""Training data: the synthetic task, the named UEA datasets, splits and normalisation, on the readers of
the device package (``attn_export.runtime.readers``: ``.ts`` and ``.npz``). numpy and the standard library
only (no torch, no pandas; sktime is located, never imported).

Conventions
-----------
* A sequence is a float32 array ``[T_i, F]`` with ``T_i >= 1``; a set of them is a :class:`SequenceSet`.
* Labels (DESIGN.md, "Labels"): class ``i`` is the ``i``-th entry of a ``.ts`` file's ``@classLabel``
  header, else of the sorted unique labels, numeric labels sorted numerically (``"2"`` before ``"10"``).
* Every error a user can cause is a :class:`~attn_export.errors.DataError` (exit 2) with a one-line
  message, for files ``path:line: what was wrong; expected ...``. A named dataset whose files are not
  installed is :class:`~attn_export.errors.NotAvailable` (exit 3).

"""

from __future__ import annotations

import hashlib
import importlib.util
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np

from attn_export.errors import ConfigError, DataError, NotAvailable
from attn_export.runtime.store import sha256_file
from attn_export.runtime.readers import (FLOAT32_MAX, MISSING_POLICIES, _check_missing_policy, _read_ts, _show,
                                        fill_counted, npz_names, read_npz, read_ts)
from attn_export.runtime.inputs import check_features, normalised_twins, read_csv, spelling_twin

__all__ = [
    "MISSING_POLICIES",
    "NAMED_DATASETS",
    "Normalization",
    "SequenceSet",
    "Splits",
    "encode_labels",
    "load_splits",
    "locate_named",
    "pad",
    "read_npz",
    "read_ts",
    "refuse_unread_data_keys",
    "synthetic",
]

#: recipe name -> folder (and file prefix) under ``sktime/datasets/data``
NAMED_DATASETS = {"japanese-vowels": "JapaneseVowels", "basic-motions": "BasicMotions"}
_SKTIME_HINT = "pip install --no-deps sktime==1.2.0"
# a feature whose training std is at most this fraction of max(|mean|, 1) barely moves (a constant, a sensor
# at rest near 0, or a small spread on a large offset, which float32 barely resolves); it is scaled by 1, not by a floored std that turned a
# drift of 0.001 at inference into 1,000 standard deviations (found by attacking: accuracy 0.96 -> 0.28, no
# warning). A genuine signal that small must be rescaled by the user (train's note names it).
_CONSTANT_RELATIVE = 1e-6


# --------------------------------------------------------------------------------------------------
# containers


@dataclass(frozen=True)
class SequenceSet:
    """Variable-length sequences with class indices.

    ``sequences``: float32 ``[T_i, F]`` arrays, ``T_i >= 1``; ``y``: int64 ``[N]`` indices into ``labels``.
    ``n_features`` only matters for an empty set (it keeps ``features`` known); otherwise it is derived.
    """

    sequences: Tuple[np.ndarray, ...]
    y: np.ndarray
    labels: Tuple[str, ...]
    n_features: int = field(default=-1)

    def __post_init__(self) -> None:
        seqs = tuple(self.sequences)
        y = np.asarray(self.y)
        if y.size == 0:
            y = y.astype(np.int64).reshape(0)
        if y.dtype.kind not in "iu" or y.ndim != 1:
            raise DataError(f"labels must be a 1-D integer array, got {y.dtype} with shape {y.shape}")
        y = y.astype(np.int64, copy=False)
        if len(y) != len(seqs):
            raise DataError(f"{len(seqs)} sequences but {len(y)} labels")
        labels = tuple(str(s) for s in self.labels)
        if len(y) and (int(y.min()) < 0 or int(y.max()) >= len(labels)):
            raise DataError(f"class indices must lie in [0, {len(labels)}), got {int(y.min())}..{int(y.max())}")
        feats = int(self.n_features)
        for i, s in enumerate(seqs):
            if not isinstance(s, np.ndarray) or s.dtype != np.float32 or s.ndim != 2 or s.shape[0] < 1:
                desc = f"{s.dtype} {s.shape}" if isinstance(s, np.ndarray) else type(s).__name__
                raise DataError(f"sequence {i} must be a float32 [T >= 1, F] array, got {desc}")
            if feats < 0:
                feats = s.shape[1]
            elif s.shape[1] != feats:
                raise DataError(f"sequence {i} has {s.shape[1]} features; expected {feats}")
        object.__setattr__(self, "sequences", seqs)
        object.__setattr__(self, "y", y)
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "n_features", feats)

    def __len__(self) -> int:
        return len(self.sequences)

    @property
    def n(self) -> int:
        return len(self.sequences)

    @property
    def features(self) -> int:
        """F; for an empty set, the value it was built with (0 when unknown)."""
        return max(self.n_features, 0)

    @property
    def lengths(self) -> np.ndarray:
        return np.array([s.shape[0] for s in self.sequences], dtype=np.int64)

    def class_counts(self) -> np.ndarray:
        """int64 ``[len(labels)]``: how many sequences of each class."""
        return np.bincount(self.y, minlength=len(self.labels)).astype(np.int64)

    def subset(self, indices: Union[Sequence[int], np.ndarray]) -> "SequenceSet":
        """The sequences at ``indices`` (ints, in the order given, or a boolean mask), same labels."""
        idx = np.asarray(indices)
        if idx.dtype == np.bool_:
            if idx.shape != (self.n,):
                raise DataError(f"boolean mask of shape {idx.shape}; expected ({self.n},)")
            idx = np.flatnonzero(idx)
        idx = idx.astype(np.int64).reshape(-1)
        return SequenceSet(
            tuple(self.sequences[int(i)] for i in idx), self.y[idx], self.labels, self.features
        )

    @classmethod
    def empty(cls, labels: Sequence[str], features: int) -> "SequenceSet":
        return cls((), np.zeros(0, dtype=np.int64), tuple(labels), features)


@dataclass(frozen=True)
class Splits:
    """Train / validation / test sets sharing one label list; ``source`` describes where they came from and
    ``files`` each file read ({"train"/"test": {"path", "sha256"}}; none for synthetic data), so that a later
    command can tell whether the data is still what the model was trained on."""

    train: SequenceSet
    val: SequenceSet
    test: SequenceSet
    labels: Tuple[str, ...]
    source: str
    files: Dict[str, Dict[str, str]] = field(default_factory=dict)
    features: Optional[Tuple[str, ...]] = None  # the feature columns' names, when the data names them (.csv)
    # gaps filled by ``[data] missing`` per file read ("train", "test"), where any was: said by train, kept in
    # metrics.json (found by attacking: 39 % of a file's values filled, said nowhere; predict says its own)
    filled: Dict[str, int] = field(default_factory=dict)
    shared: int = 0  # test sequences equal to training ones (``shared_sequences``): not held out, said by train


@dataclass(frozen=True)
class Normalization:
    """Per-feature mean and std (float32 ``[F]``) over every time step of the training sequences.

    A feature that barely moves in training (its std at most 1e-6 of max(|mean|, 1)) has std 1: it is
    centred but not scaled, and ``constant`` lists such features' indices (not recorded: std 1 is).
    """

    mean: np.ndarray
    std: np.ndarray
    constant: Tuple[int, ...] = ()

    def __post_init__(self) -> None:
        mean = np.asarray(self.mean, dtype=np.float32).reshape(-1)
        std = np.asarray(self.std, dtype=np.float32).reshape(-1)
        if mean.shape != std.shape or mean.size == 0:
            raise DataError(f"normalisation mean {mean.shape} and std {std.shape} must be equal, non-empty [F]")
        if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(std)) and np.all(std > 0)):
            raise DataError("normalisation statistics must be finite with std > 0")
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)

    @classmethod
    def from_sequences(cls, seqs: Union[SequenceSet, Iterable[np.ndarray]],
                       names: Optional[Sequence[str]] = None) -> "Normalization":
        """The statistics of ``seqs``; refused when a feature's ``x - mean`` leaves float32 (the model and
        every graph normalise in float32): its inputs became inf, and training "diverged", blamed on the
        learning rate (found by attacking, values near +-3.4e38)."""
        arrays = list(seqs.sequences if isinstance(seqs, SequenceSet) else seqs)
        if not arrays:
            raise DataError("cannot compute normalisation statistics from no sequences")
        steps = np.concatenate([np.asarray(a, dtype=np.float64) for a in arrays], axis=0)
        if steps.ndim != 2 or steps.shape[0] == 0:
            raise DataError(f"normalisation needs [T, F] sequences, got steps of shape {steps.shape}")
        mean = steps.mean(axis=0)
        std = steps.std(axis=0)
        constant = std <= _CONSTANT_RELATIVE * np.maximum(np.abs(mean), 1.0)
        std = np.where(constant, 1.0, std)
        spread = np.maximum(np.abs(steps - mean).max(axis=0), std)
        beyond = np.flatnonzero(spread > FLOAT32_MAX)
        if beyond.size:
            k = int(beyond[0])
            name = f"feature {_show(names[k])}" if names is not None else f"feature {k + 1}"
            raise DataError(f"training data: {name} lies up to {spread[k]:.3g} from its mean {mean[k]:.3g}, beyond "
                            "float32's range (3.4e38), in which the model normalises; expected values whose "
                            "spread float32 holds (rescale that feature)")
        return cls(mean.astype(np.float32), std.astype(np.float32), tuple(int(k) for k in np.flatnonzero(constant)))

    @property
    def features(self) -> int:
        return int(self.mean.shape[0])

    def apply(self, x: np.ndarray) -> np.ndarray:
        """``(x - mean) / std`` over the last axis, float32."""
        return ((np.asarray(x, dtype=np.float32) - self.mean) / self.std).astype(np.float32)

    def to_dict(self) -> Dict[str, List[float]]:
        return {"mean": [float(v) for v in self.mean], "std": [float(v) for v in self.std]}

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "Normalization":
        try:
            mean, std = d["mean"], d["std"]
            return cls(np.asarray(mean, dtype=np.float32), np.asarray(std, dtype=np.float32))
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(f"normalisation statistics must be {{'mean': [...], 'std': [...]}}: {e}") from None


# --------------------------------------------------------------------------------------------------
# labels


def _as_number(s: str) -> Optional[float]:
    try:
        v = float(s)
    except ValueError:
        return None
    return v if math.isfinite(v) else None


def _label_sort_key(s: str) -> Tuple[int, float, str]:
    """Numeric labels first, by value ("9" < "10"), then the others as strings."""
    v = _as_number(s)
    return (0, v, s) if v is not None else (1, 0.0, s)


def refuse_continuous(raw: Sequence[str], path: str) -> None:
    """Labels that are a measurement, not classes: every one a number, some not whole, and more distinct
    values than half the sequences. Trained as classes, each value was a class of its own, exit 0 (found by
    attacking: 60 sequences, 60 "classes"). Class labels "1.5" and "2.5" of many sequences still read."""
    values = [_as_number(r) for r in raw]
    distinct = set(raw)
    if raw and all(v is not None for v in values) and any(v != int(v) for v in values if v is not None) \
            and len(distinct) > len(raw) / 2:
        shown = ", ".join(sorted(distinct, key=_label_sort_key)[:3])
        raise DataError(f"{path}: the labels look continuous: {len(distinct):,} distinct numbers ({shown}, ...) among "
                        f"{len(raw):,} sequences; expected class labels (attn-export trains classifiers: a "
                        "regression model trained elsewhere can be brought in with attn-export load and "
                        "--set model.head=regression)")


def refuse_ids(raw: Sequence[str], path: str) -> None:
    """Labels that are ids or file names, not classes (no class with two sequences, or nine labels in ten
    distinct), in a file whose test split is held out of it: nearly every class had one sequence, the test
    split held classes training never saw, and ``train`` exited 0 (found by attacking: an .npz's ``y`` of
    40 ids). With a test file, its labels must occur in training, which says the same."""
    distinct = set(raw)
    if len(raw) > 2 and (len(distinct) == len(raw) or len(distinct) >= 0.9 * len(raw)):
        ordered = sorted(distinct, key=_label_sort_key)
        shown = ", ".join(_show(label) for label in ordered[:3]) + (", ..." if len(ordered) > 3 else "")
        raise DataError(f"{path}: {len(distinct):,} distinct labels among {len(raw):,} sequences ({shown}), as ids "
                        "are, not classes; expected class labels that several sequences share (or a test file "
                        "with the same classes)")


_WHOLE = re.compile(r"[+-]?[0-9]+")  # a label spelt as a whole number (a class code such as "007")


def refuse_respelled(raw: Sequence[str], path: str) -> None:
    """Two labels that are one number written two ways, one of them not as a whole number ("1" and "1.0"):
    as text they were two classes, one of them made up, exit 0, while an .npz's float y of 1.0 reads as "1"
    (found by attacking). Whole-number codes ("007" beside "7") stay classes of their own."""
    seen: Dict[float, str] = {}
    for label in sorted(set(raw), key=_label_sort_key):
        value = _as_number(label)
        if value is None:
            continue
        if value in seen and not (_WHOLE.fullmatch(label) and _WHOLE.fullmatch(seen[value])):
            raise DataError(f"{path}: the labels {_show(seen[value])} and {_show(label)} are the same number written "
                            "two ways, which would make two classes; expected one spelling per class")
        seen[value] = label


def positive_last(labels: Tuple[str, ...], positive: str, path: str) -> Tuple[str, ...]:
    """``labels`` with ``positive`` (``data.positive``; empty: as they are) moved last: a binary head's
    positive class is its second label (found by a user: sorted, "normal operation" came after "défaut" and
    the sigmoid gave P(normal), with no key to say otherwise)."""
    if not positive:
        return labels
    if positive not in labels:
        twin = spelling_twin(positive, labels)
        raise DataError(f"data.positive = {_show(positive)} is not a label of {path}"
                        + (f" (it is {_show(twin[0])} {twin[1]})" if twin else "")
                        + f"; expected one of: {', '.join(labels[:20])}")
    return tuple(label for label in labels if label != positive) + (positive,)


def encode_labels(raw: Sequence[str], declared: Optional[Sequence[str]] = None) -> Tuple[np.ndarray, Tuple[str, ...]]:
    """Class indices for ``raw`` and the label list: ``declared`` order if given, else sorted unique."""
    raw = [str(r) for r in raw]
    if declared is not None:
        labels = tuple(str(d) for d in declared)
        dup = sorted({d for d in labels if labels.count(d) > 1})
        if dup:
            raise DataError(f"declared class labels repeat {dup[0]!r}; expected each label once")
    else:
        labels = tuple(sorted(set(raw), key=_label_sort_key))
    index = {lab: i for i, lab in enumerate(labels)}
    y = np.empty(len(raw), dtype=np.int64)
    for i, r in enumerate(raw):
        j = index.get(r)
        if j is None:
            shown = ", ".join(labels[:20]) + (", ..." if len(labels) > 20 else "")
            raise DataError(f"label {_show(r)} (series {i}) is not a declared class label; expected one of: {shown}")
        y[i] = j
    return y, labels


# --------------------------------------------------------------------------------------------------
# padding


def pad(
    sequences: Sequence[np.ndarray],
    length: Optional[int] = None,
    fill: float = 0.0,
    garbage_rng: Optional[np.random.Generator] = None,
) -> Tuple[np.ndarray, np.ndarray]:
    """Stack into float32 ``x [N, T, F]`` (T = longest, or ``length``) and int64 ``lengths [N]``.

    Steps at or past a sequence's length hold ``fill``, or, with ``garbage_rng``, large random finite
    values (uniform in +-1e3) so that a test can tell whether padding leaks into the result.
    """
    seqs = [np.asarray(s, dtype=np.float32) for s in sequences]
    if not seqs:
        raise DataError("nothing to pad: no sequences")
    feats = seqs[0].shape[-1] if seqs[0].ndim == 2 else -1
    for i, s in enumerate(seqs):
        if s.ndim != 2 or s.shape[0] < 1 or s.shape[1] != feats:
            raise DataError(f"sequence {i} has shape {s.shape}; expected [T >= 1, {feats}]")
    lengths = np.array([s.shape[0] for s in seqs], dtype=np.int64)
    longest = int(lengths.max())
    t = longest if length is None else int(length)
    if t < longest:
        raise DataError(f"pad length {t} is shorter than the longest sequence ({longest})")
    if garbage_rng is not None:
        x = garbage_rng.uniform(-1e3, 1e3, size=(len(seqs), t, feats)).astype(np.float32)
    else:
        x = np.full((len(seqs), t, feats), fill, dtype=np.float32)
    for i, s in enumerate(seqs):
        x[i, : s.shape[0]] = s
    return x, lengths


# --------------------------------------------------------------------------------------------------
# the synthetic task


def _prototypes(features: int, classes: int) -> np.ndarray:
    """Class patterns for channels 1..F-1, fixed by (features, classes) and the same for every seed.

    Spread apart by farthest-point selection among random points of the cube [-1, 1]^(F-1) (so even
    one channel holds many distinct classes), then scaled to an RMS entry of 2, well clear of the
    marked steps' noise (std 0.3).
    """
    rng = np.random.default_rng(np.random.SeedSequence([0x5EC7A5C, features, classes]))
    cand = rng.uniform(-1.0, 1.0, size=(64 * classes, features - 1))
    chosen = [int(np.argmax(np.abs(cand).sum(axis=1)))]
    dist = np.linalg.norm(cand - cand[chosen[0]], axis=1)
    for _ in range(classes - 1):
        j = int(np.argmax(dist))
        chosen.append(j)
        dist = np.minimum(dist, np.linalg.norm(cand - cand[j], axis=1))
    protos = cand[chosen]
    return protos * (2.0 / max(float(np.sqrt(np.mean(protos**2))), 1e-12))


def synthetic(
    n: int, features: int, classes: int, min_len: int, max_len: int, seed: int, *, stream: int = 0
) -> SequenceSet:
    """The built-in task where attention matters: a few marked steps decide the label.

    Every step is Gaussian noise (std 1) on all F channels; lengths are uniform in [min_len, max_len].
    At 1-3 random "marked" steps channel 0 carries a spike (+4) and channels 1.. carry the class's
    prototype pattern plus small noise (std 0.3); the prototypes are fixed by (features, classes).
    Classes are balanced (counts differ by at most one); labels are "0".."classes-1". Deterministic
    from (seed, stream): ``load_splits`` draws train from stream 0 and test from stream 1.
    """
    if n < 0:
        raise DataError(f"synthetic n = {n}; expected n >= 0")
    if features < 2:
        raise DataError(f"synthetic features = {features}; expected >= 2 (channel 0 marks, 1.. carry the class)")
    if classes < 2:
        raise DataError(f"synthetic classes = {classes}; expected >= 2")
    if not 1 <= min_len <= max_len:
        raise DataError(f"synthetic lengths {min_len}..{max_len}; expected 1 <= min_len <= max_len")
    if seed < 0 or stream < 0:
        raise DataError(f"synthetic seed = {seed}, stream = {stream}; expected non-negative integers")
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(stream)]))
    protos = _prototypes(features, classes)
    y = rng.permutation(np.arange(n, dtype=np.int64) % classes)
    lens = rng.integers(min_len, max_len + 1, size=n)
    seqs = []
    for i in range(n):
        t = int(lens[i])
        x = rng.normal(0.0, 1.0, size=(t, features))
        k = min(int(rng.integers(1, 4)), t)
        marks = rng.choice(t, size=k, replace=False)
        x[marks, 0] += 4.0
        x[marks, 1:] = protos[y[i]] + rng.normal(0.0, 0.3, size=(k, features - 1))
        seqs.append(x.astype(np.float32))
    return SequenceSet(tuple(seqs), y, tuple(str(c) for c in range(classes)), features)


# --------------------------------------------------------------------------------------------------
# named datasets and splits


def locate_named(name: str) -> Tuple[Path, Path]:
    """The TRAIN and TEST ``.ts`` files of a named dataset inside an installed sktime (never imported)."""
    folder = NAMED_DATASETS.get(name)
    if folder is None:
        raise DataError(f"unknown dataset {name!r}; expected one of: {', '.join(NAMED_DATASETS)}")
    need = f"dataset {name!r} needs the sktime data files: {_SKTIME_HINT}"
    try:
        spec = importlib.util.find_spec("sktime")
    except (ImportError, ValueError):
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise NotAvailable(need)
    base = Path(locations[0]) / "datasets" / "data" / folder
    train, test = base / f"{folder}_TRAIN.ts", base / f"{folder}_TEST.ts"
    if not (train.is_file() and test.is_file()):
        raise NotAvailable(f"{need} (not found under {base})")
    return train, test


def _sktime_version() -> str:
    try:
        from importlib.metadata import version

        return version("sktime")
    except Exception:  # noqa: BLE001 - a description only
        return "unknown version"


def _stratified_split(y: np.ndarray, fraction: float, rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
    """(kept, taken) index arrays, ascending; about ``fraction`` of each class taken, at least one kept. Where
    the classes' shares round to less than ``fraction`` of all, classes whose share rounded to none (and that
    can spare one) give one each, largest share first, ties in ``rng``'s order, up to it (found by attacking: 500
    classes of 2 held out nothing at 0.2, and training ran with no test and no validation split)."""
    taken: List[np.ndarray] = []
    if fraction > 0:
        classes = np.unique(y)
        members = [np.flatnonzero(y == c) for c in classes]
        counts = [min(int(round(len(m) * fraction)), len(m) - 1) for m in members]
        short = int(round(len(y) * fraction)) - sum(counts)
        spare = [i for i, (m, k) in enumerate(zip(members, counts)) if k == 0 and len(m) >= 2]
        if short > 0 and spare:  # rng drawn only here: every other split is what it was
            order = {int(i): r for r, i in enumerate(rng.permutation(len(classes)))}
            for i in sorted(spare, key=lambda i: (-len(members[i]), order[i]))[:short]:
                counts[i] = 1
        for m, k in zip(members, counts):
            if k > 0:
                taken.append(rng.permutation(m)[:k])
    take = np.sort(np.concatenate(taken)) if taken else np.zeros(0, dtype=np.int64)
    mask = np.ones(len(y), dtype=bool)
    mask[take] = False
    return np.flatnonzero(mask), take.astype(np.int64)


def _read_labelled(path: str, missing: str) -> Tuple[List[np.ndarray], List[str], Optional[List[str]],
                                                     Optional[List[str]], int]:
    """A labelled file's sequences (gaps filled by ``missing``), labels, declared label order (a .ts
    header's), feature column names (a .csv header's) and how many gaps were filled."""
    seqs, raw, declared, names = _read_unfilled(path, missing)
    filled_seqs, filled = fill_counted(seqs, missing)
    return filled_seqs, raw, declared, names, filled


def _read_unfilled(path: str, missing: str) -> Tuple[List[np.ndarray], List[str], Optional[List[str]],
                                                     Optional[List[str]]]:
    """``_read_labelled``'s file with its gaps left NaN (a policy that fills them), to be counted."""
    suffix = Path(path).suffix.lower()
    if suffix == ".ts":
        ts = _read_ts(path, missing, fill=False)
        if ts.is_target:
            raise DataError(f"{path}: holds regression targets (@targetLabel true); expected class labels (@classLabel true)")
        if not ts.has_labels:  # its words, not a header it may not have (found by attacking)
            raise DataError(f"{path}: has no class labels (no label field after the channels); training needs "
                            "@classLabel true with the class names, and each series' label after its last ':'")
        return ts.sequences, ts.raw_labels, ts.declared, None
    if suffix == ".npz":
        seqs, labels = read_npz(path, missing, fill=False)
        if labels is None:  # the arrays it has, as a missing x lists them (found by attacking)
            have = ", ".join(sorted(npz_names(path))) or "nothing"
            raise DataError(f"{path}: has no y (it has: {have}); training needs a label per sequence in y")
        return seqs, labels, None, None
    if suffix == ".csv":  # the long format: sequence, [time,] features..., label (runtime.inputs)
        table = read_csv(path, missing=missing, fill=False)
        if table.labels is None:
            raise DataError(f"{path}: has no 'label' column; training needs a label per sequence (a header with "
                            "sequence, optionally time, the features, and label)")
        return table.sequences, table.labels, None, table.features
    if Path(path).is_dir():
        raise DataError(f"{path} is a directory; expected a .ts, .npz or .csv file")
    raise DataError(f"{path}: unsupported file type {suffix or '(none)'!r}; expected .ts, .npz or .csv")


def refuse_same_file(files: Dict[str, Dict[str, str]]) -> None:
    """The training file named again as the test file (by path or by bytes: ``files``' sha256, each file
    hashed once): its accuracy would not be held out (found by attacking: it trained with exit 0)."""
    train, test = files["train"], files["test"]
    if Path(train["path"]).resolve() == Path(test["path"]).resolve() or train["sha256"] == test["sha256"]:
        raise DataError(f"{test['path']} is the training data {train['path']} again; expected a test split held out "
                        "from training (or no data.test: test_fraction of the training file is held out)")


def shared_sequences(train: Sequence[np.ndarray], test: Sequence[np.ndarray]) -> int:
    """How many of a test file's sequences are also the training file's, by their values as read: said by train,
    since their accuracy is not held out (found by attacking: a test file inside the training one, 370 of 370,
    exit 0, no word). Data of few distinct values shares sequences by chance: a count, not a refusal."""

    def key(s: np.ndarray) -> bytes:
        return hashlib.sha256(np.ascontiguousarray(s, np.float32).tobytes() + repr(s.shape).encode()).digest()

    seen = {key(s) for s in train}
    return sum(key(s) in seen for s in test)


def _fraction(name: str, value: Any) -> float:
    v = float(value)
    if not 0.0 <= v < 1.0:
        raise DataError(f"[data] {name} = {value!r}; expected a fraction in [0, 1)")
    return v


def _build(seqs: List[np.ndarray], raw: List[str], labels: Tuple[str, ...], path: str) -> SequenceSet:
    try:
        y, _ = encode_labels(raw, labels)  # a .ts header's labels may repeat: named with its file
        return SequenceSet(tuple(seqs), y, labels)
    except DataError as e:
        raise DataError(f"{path}: {e}") from None


def refuse_unread_data_keys(data: Any) -> None:
    """A data key the data does not read is refused, as ``train.refuse_unread_model_keys`` refuses a model's
    (found by attacking: each was ignored and recorded in model.json as if used). Only train asks, before it
    reads the data (a recipe's mistake is said before the data's); a recipe read back from an older model.json
    that holds one still loads."""
    from .config import DataConfig

    if data.name == "files":
        fixed_test = "data.test" if data.test else None
    elif data.name == "synthetic":
        fixed_test = f"data.n_test = {data.n_test} generated sequences"
    else:
        fixed_test = None if data.name == "none" else "the data set's own TEST file"
    default = DataConfig()
    if fixed_test is not None and data.test_fraction != default.test_fraction:
        raise ConfigError(f"data.test_fraction = {data.test_fraction} is not read: the test split is {fixed_test}; "
                          'test_fraction only splits data.train when data.name = "files" has no data.test '
                          f"(expected the default, {default.test_fraction}, or no value)")
    if data.positive and data.name not in ("files", *NAMED_DATASETS):
        raise ConfigError(f"data.positive = {data.positive!r} is not read: data.name = {data.name!r} names no "
                          "labelled files (expected no value)")
    if data.name == "synthetic" and data.missing != default.missing:
        raise ConfigError(f"data.missing = {data.missing!r} is not read: data.name = 'synthetic' has no gaps to "
                          f"fill (expected the default, {default.missing!r}, or no value)")


def load_splits(cfg: Any, read_test: bool = True) -> Splits:
    """Train / val / test for a ``DataConfig`` (read by attribute; see the fields in the module docs).

    * ``none``: a model imported without its data (``load``): a DataError, so nothing is judged on other data.
    * ``synthetic``: ``n_train`` from stream 0 and ``n_test`` from stream 1 of ``seed``.
    * ``japanese-vowels`` / ``basic-motions``: the archive's official TRAIN / TEST files.
    * ``files``: ``train`` (``.ts`` or ``.npz``) and ``test`` if given, else ``test_fraction`` of train held
      out, stratified by class.

    Validation is ``val_fraction`` of train, stratified, deterministic from ``seed`` (empty at 0). Labels
    come from the training file (its ``@classLabel`` order, else sorted unique); a test label absent from
    training, an empty or single-class training set, or differing feature counts are DataErrors. ``read_test``
    False: a separate test file is not read (its split is empty), for what draws on training data alone: INT8
    calibration was refused over a test file changed or gone (found by attacking).
    """
    name = str(cfg.name)
    seed = int(cfg.seed)
    val_fraction = _fraction("val_fraction", cfg.val_fraction)
    missing = str(cfg.missing)
    _check_missing_policy(missing)
    filled: Dict[str, int] = {}
    shared = 0

    if name == "none":
        raise DataError('data.name = "none" names no data (what load records for a model imported without its '
                        "data); expected the model's own data: a recipe's [data] table (load CHECKPOINT DIR --recipe "
                        "R, or --set data.name=...)")
    if name == "synthetic":
        train = synthetic(int(cfg.n_train), int(cfg.features), int(cfg.classes), int(cfg.min_len),
                          int(cfg.max_len), seed, stream=0)
        test = synthetic(int(cfg.n_test), int(cfg.features), int(cfg.classes), int(cfg.min_len),
                         int(cfg.max_len), seed, stream=1)
        labels = train.labels
        source = (f"synthetic (seed {seed}, {cfg.features} features, {cfg.classes} classes, "
                  f"lengths {cfg.min_len}-{cfg.max_len})")
        train_path = "synthetic"
        files: Dict[str, Dict[str, str]] = {}
        names = None
    elif name in NAMED_DATASETS or name == "files":
        if name == "files":
            train_path, test_path = str(cfg.train), str(cfg.test or "")
            if not train_path:
                raise DataError("[data] train is empty; expected a .ts, .npz or .csv file for name = \"files\"")
            source = f"{train_path} + {test_path}" if test_path else f"{train_path} (test: held-out fraction)"
        else:
            tr, te = locate_named(name)
            train_path, test_path = str(tr), str(te)
            source = f"{NAMED_DATASETS[name]} (sktime {_sktime_version()})"
        seqs, raw, declared, names, filled["train"] = _read_labelled(train_path, missing)
        if declared is None:  # a .ts header declares classes; otherwise the labels must look like classes
            refuse_continuous(raw, train_path)
            refuse_respelled(raw, train_path)
        if not test_path:  # declared or not (found by attacking: 60 declared ids trained, exit 0, no test split)
            refuse_ids(raw, train_path)
        present = set(raw)
        unused = [c for c in declared or () if c not in present]
        # found by attacking: the model got an output no training series had, and no word of it (with one class
        # present, the single-class refusal below says more)
        if unused and len(present) > 1:
            raise DataError(f"{train_path}: @classLabel declares {_show(unused[0])}"
                            + (f" (and {len(unused) - 1} more)" if len(unused) > 1 else "")
                            + ", which no training series has; expected every declared class among the training "
                              "series (the model would have an output it never learned)")
        labels = positive_last(tuple(declared) if declared is not None else encode_labels(raw, None)[1],
                               str(cfg.positive), train_path)
        twins = normalised_twins(labels)
        if twins is not None:
            raise DataError(f"{train_path}: the labels {_show(twins[0])} and {_show(twins[1])} are one text in two "
                            "Unicode normalisations, which would make two classes; expected one spelling per class")
        train = _build(seqs, raw, labels, train_path)
        files = {"train": {"path": train_path, "sha256": sha256_file(Path(train_path))}}
        if test_path and not read_test:
            test_path = ""  # not read, not recorded: the training split is the same without it
            test = SequenceSet.empty(labels, train.features)
        elif test_path:
            t_seqs, t_raw, _, t_names, filled["test"] = _read_labelled(test_path, missing)  # says why it cannot
            files["test"] = {"path": test_path, "sha256": sha256_file(Path(test_path))}
            refuse_same_file(files)
            check_features(t_names, names, test_path)
            unknown = sorted(set(t_raw) - set(labels), key=_label_sort_key)
            if unknown:
                twin = spelling_twin(unknown[0], labels)
                raise DataError(f"{test_path}: test label {_show(unknown[0])} does not occur in the training labels"
                                + (f" (it is {_show(twin[0])} {twin[1]})" if twin else "")
                                + f"; expected one of: {', '.join(labels[:20])}")
            shared = shared_sequences(seqs, t_seqs)
            test = _build(t_seqs, t_raw, labels, test_path)
        else:
            test_fraction = _fraction("test_fraction", cfg.test_fraction)
            keep, take = _stratified_split(train.y, test_fraction, np.random.default_rng([seed, 3]))
            train, test = train.subset(keep), train.subset(take)
    else:
        raise DataError(
            f"[data] name = {name!r} is not a dataset; expected one of: synthetic, "
            + ", ".join(NAMED_DATASETS) + ", files"
        )

    if train.n == 0:
        raise DataError(f"{train_path}: the training set is empty; expected sequences of at least two classes")
    present = np.unique(train.y)
    if len(present) < 2:
        raise DataError(f"{train_path}: the training set holds a single class ({labels[int(present[0])]!r}); "
                        "expected at least two")
    if test.n and test.features != train.features:
        raise DataError(f"{test_path}: the test set has {test.features} features but training has {train.features}; "
                        "expected equal")
    keep, take = _stratified_split(train.y, val_fraction, np.random.default_rng([seed, 2]))
    val = train.subset(take) if len(take) else SequenceSet.empty(labels, train.features)
    train = train.subset(keep)
    if test.n == 0:
        test = SequenceSet.empty(labels, train.features)
    return Splits(train=train, val=val, test=test, labels=tuple(labels), source=source, files=files,
                  features=None if names is None else tuple(names), filled={k: n for k, n in filled.items() if n},
                  shared=shared)
