"""Sequence data: the UEA/UCR ``.ts`` reader, the ``.npz`` reader, the synthetic task, splits and normalisation.

numpy and the standard library only (no torch, no pandas; sktime is located, never imported), and
Python 3.8-compatible so that ``predict`` on a device can read ``.ts`` / ``.npz`` input.

Conventions
-----------
* A sequence is a float32 array ``[T_i, F]`` with ``T_i >= 1``; a set of them is a :class:`SequenceSet`.
* Labels (DESIGN.md, "Labels"): class ``i`` is the ``i``-th entry of a ``.ts`` file's ``@classLabel``
  header, else of the sorted unique labels, numeric labels sorted numerically (``"2"`` before ``"10"``).
* Every error a user can cause is a :class:`~attn_export.errors.DataError` (exit 2) with a one-line
  message, for files ``path:line: what was wrong; expected ...``. A named dataset whose files are not
  installed is :class:`~attn_export.errors.NotAvailable` (exit 3).

``.ts`` files (``read_ts``)
--------------------------
``#`` (and ARFF-style ``%``) comment lines and blank lines are skipped anywhere; ``@key value`` headers are read case-insensitively;
the file is decoded as UTF-8 with an optional byte-order mark. After ``@data``, one series per line:
channels separated by ``:``, values by ``,``, and (with ``@classLabel true`` or ``@targetLabel true``)
the label after the last ``:``. ``?`` and ``NaN`` are missing values, handled by ``missing``:
``"error"`` refuses them, ``"ffill"`` forward-fills within each channel (leading gaps take the first
valid value, an all-missing channel becomes 0), ``"zero"`` writes 0. Series may differ in length; the
channels of one series may not. ``inf`` and values beyond float32 are refused under every policy.

* ``@classLabel false``: no label field; the raw labels come back as empty strings and the declared
  labels as ``None``. ``load_splits`` refuses such a file (training needs labels); ``predict`` can read it.
* ``@targetLabel true`` (regression archives such as Tecator): the target is returned as the raw
  label string; ``load_splits`` refuses it (it builds classification splits only).
* Neither header: the label field is taken to be present when the first series has more ``:``-fields
  than ``@dimensions`` (or, without ``@dimensions``, when it has at least two fields).
* ``@timeStamps true`` files are refused (no archive classification file uses them).
"""

from __future__ import annotations

import importlib.util
import math
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np

from attn_export.errors import DataError, NotAvailable

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
    "synthetic",
]

MISSING_POLICIES = ("error", "ffill", "zero")
#: recipe name -> folder (and file prefix) under ``sktime/datasets/data``
NAMED_DATASETS = {"japanese-vowels": "JapaneseVowels", "basic-motions": "BasicMotions"}
_SKTIME_HINT = "pip install --no-deps sktime==1.2.0"
_STD_FLOOR = 1e-6
_F32_MAX = float(np.finfo(np.float32).max)


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
    """Train / validation / test sets sharing one label list; ``source`` describes where they came from."""

    train: SequenceSet
    val: SequenceSet
    test: SequenceSet
    labels: Tuple[str, ...]
    source: str


@dataclass(frozen=True)
class Normalization:
    """Per-feature mean and std (float32 ``[F]``) over every time step of the training sequences.

    ``std`` is floored at 1e-6 so a constant channel does not divide by zero.
    """

    mean: np.ndarray
    std: np.ndarray

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
    def from_sequences(cls, seqs: Union[SequenceSet, Iterable[np.ndarray]]) -> "Normalization":
        arrays = list(seqs.sequences if isinstance(seqs, SequenceSet) else seqs)
        if not arrays:
            raise DataError("cannot compute normalisation statistics from no sequences")
        steps = np.concatenate([np.asarray(a, dtype=np.float64) for a in arrays], axis=0)
        if steps.ndim != 2 or steps.shape[0] == 0:
            raise DataError(f"normalisation needs [T, F] sequences, got steps of shape {steps.shape}")
        mean = steps.mean(axis=0)
        std = np.maximum(steps.std(axis=0), _STD_FLOOR)
        return cls(mean.astype(np.float32), std.astype(np.float32))

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
# .ts reader


@dataclass
class _TsFile:
    sequences: List[np.ndarray]
    raw_labels: List[str]
    declared: Optional[List[str]]
    has_labels: bool  # a class label field (False for @classLabel false and for targets)
    is_target: bool  # @targetLabel true: the last field is a regression target
    problem: str


def _show(token: str, limit: int = 40) -> str:
    """A token for a one-line message: repr (escapes control characters), shortened."""
    t = token if len(token) <= limit else token[:limit] + "..."
    return repr(t)


def _check_missing_policy(missing: str) -> None:
    if missing not in MISSING_POLICIES:
        raise DataError(f"missing = {missing!r} is not a policy; expected one of: {', '.join(MISSING_POLICIES)}")


def _ffill(values: np.ndarray, miss: np.ndarray) -> np.ndarray:
    """Forward-fill ``values`` where ``miss``; leading gaps take the first valid value; all missing -> 0."""
    if miss.all():
        return np.zeros_like(values)
    idx = np.where(miss, 0, np.arange(len(values)))
    np.maximum.accumulate(idx, out=idx)
    out = values[idx]
    first = int(np.argmax(~miss))
    out[:first] = values[first]
    return out


def _bool_header(path: str, lineno: int, key: str, value: str) -> bool:
    v = value.split()[0].lower() if value.split() else ""
    if v not in ("true", "false"):
        raise DataError(f"{path}:{lineno}: @{key} {_show(value)}; expected true or false")
    return v == "true"


def _parse_channel(
    path: str, lineno: int, ch_index: int, text: str, missing: str
) -> np.ndarray:
    tokens = text.split(",")
    try:
        values = np.array([float(t) for t in tokens], dtype=np.float64)
    except ValueError:
        values = np.empty(len(tokens), dtype=np.float64)
        for i, t in enumerate(tokens):
            s = t.strip()
            if s == "?":
                values[i] = np.nan
                continue
            try:
                values[i] = float(s)
            except ValueError:
                what = "an empty value" if s == "" else f"non-numeric value {_show(s)}"
                raise DataError(
                    f"{path}:{lineno}: {what} in channel {ch_index + 1} (value {i + 1}); "
                    "expected numbers separated by ',' ('?' or NaN for missing)"
                ) from None
    miss = np.isnan(values)
    bad = ~miss & (np.abs(values) > _F32_MAX)  # inf, or beyond float32
    if bad.any():
        j = int(np.argmax(bad))
        raise DataError(
            f"{path}:{lineno}: value {_show(tokens[j].strip())} in channel {ch_index + 1} is not a finite "
            "float32; expected finite numbers ('?' or NaN for missing)"
        )
    if miss.any():
        if missing == "error":
            j = int(np.argmax(miss))
            raise DataError(
                f"{path}:{lineno}: missing value {_show(tokens[j].strip())} in channel {ch_index + 1} "
                f"(value {j + 1}); expected no missing values, or set [data] missing = \"ffill\" or \"zero\""
            )
        values = _ffill(values, miss) if missing == "ffill" else np.where(miss, 0.0, values)
    return values


def _read_ts(path: Union[str, Path], missing: str = "error") -> _TsFile:
    _check_missing_policy(missing)
    p = str(path)
    try:
        with open(p, encoding="utf-8-sig") as f:
            text = f.read()
    except UnicodeDecodeError as e:
        raise DataError(f"{p}: not UTF-8 text ({e.reason} at byte {e.start}); expected a .ts text file") from None
    except FileNotFoundError:
        raise DataError(f"{p}: cannot read: no such file; expected a .ts text file") from None
    except IsADirectoryError:
        raise DataError(f"{p}: cannot read: it is a directory; expected a .ts text file") from None
    except OSError as e:
        raise DataError(f"{p}: cannot read: {e.strerror or _first_line(e)}; expected a .ts text file") from None

    declared: Optional[List[str]] = None
    class_label: Optional[bool] = None
    target_label: Optional[bool] = None
    dims: Optional[int] = None
    univariate: Optional[bool] = None
    problem = Path(p).stem
    in_data = False
    has_label: Optional[bool] = None
    expected_ch: Optional[int] = None
    expected_from = ""
    seqs: List[np.ndarray] = []
    raw: List[str] = []

    for lineno, line in enumerate(text.split("\n"), start=1):
        s = line.strip()
        if not s or s[0] in "#%":
            continue
        if not in_data:
            if not s.startswith("@"):
                raise DataError(f"{p}:{lineno}: {_show(s)} before @data; expected an @key header, a # comment or @data")
            parts = s[1:].split(None, 1)
            key = parts[0].lower() if parts else ""
            value = parts[1].strip() if len(parts) > 1 else ""
            if key == "data":
                in_data = True
                if class_label and target_label:
                    raise DataError(f"{p}:{lineno}: both @classLabel and @targetLabel are true; expected one")
            elif key == "classlabel":
                class_label = _bool_header(p, lineno, "classLabel", value)
                if class_label:
                    names = value.split()[1:]
                    declared = names if names else None
            elif key == "targetlabel":
                target_label = _bool_header(p, lineno, "targetLabel", value)
            elif key == "dimensions":
                try:
                    dims = int(value)
                except ValueError:
                    dims = -1
                if dims < 1:
                    raise DataError(f"{p}:{lineno}: @dimensions {_show(value)}; expected a positive integer")
            elif key == "univariate":
                univariate = _bool_header(p, lineno, "univariate", value)
            elif key == "timestamps":
                if _bool_header(p, lineno, "timeStamps", value):
                    raise DataError(f"{p}:{lineno}: @timeStamps true is not supported; expected @timeStamps false")
            elif key == "problemname" and value:
                problem = value
            continue

        # a series
        fields = s.split(":")
        if has_label is None:
            if class_label is not None or target_label is not None:
                has_label = bool(class_label) or bool(target_label)
            elif dims is not None:
                has_label = len(fields) > dims
            else:
                has_label = len(fields) >= 2
            if dims is not None:
                expected_ch, expected_from = dims, " (@dimensions)"
            elif univariate:
                expected_ch, expected_from = 1, " (@univariate true)"
        if has_label:
            if len(fields) < 2:
                raise DataError(
                    f"{p}:{lineno}: no label field; expected channels then ':' and the "
                    f"{'target' if target_label else 'class label'}"
                )
            label = fields[-1].strip()
            if not label:
                raise DataError(f"{p}:{lineno}: empty label after the last ':'; expected a label")
            if declared is not None and label not in declared:
                raise DataError(
                    f"{p}:{lineno}: class label {_show(label)} is not in @classLabel; expected one of: "
                    + " ".join(declared[:20])
                    + (" ..." if len(declared) > 20 else "")
                )
            fields = fields[:-1]
        else:
            label = ""
        if expected_ch is None:
            expected_ch, expected_from = len(fields), f" (as in line {lineno})"
        elif len(fields) != expected_ch:
            raise DataError(f"{p}:{lineno}: {len(fields)} channels; expected {expected_ch}{expected_from}")
        counts = [f.count(",") + 1 for f in fields]
        for c, k in enumerate(counts):
            if k != counts[0]:
                raise DataError(
                    f"{p}:{lineno}: channel {c + 1} has {k} values but channel 1 has {counts[0]}; "
                    "expected equal lengths across the channels of a series"
                )
        values: Optional[np.ndarray]
        try:  # fast path: the whole series at once; anything unusual is re-parsed channel by channel
            values = np.array([float(v) for v in ",".join(fields).split(",")], dtype=np.float64)
            if not bool(np.all(np.abs(values) <= _F32_MAX)):  # NaN, inf or beyond float32
                values = None
        except ValueError:
            values = None
        if values is None:
            channels = [_parse_channel(p, lineno, c, t, missing) for c, t in enumerate(fields)]
            values = np.concatenate(channels)
        # float() of an empty string fails, so every channel has >= 1 value here
        seqs.append(values.reshape(len(fields), counts[0]).T.astype(np.float32))
        raw.append(label)

    if not in_data:
        raise DataError(f"{p}: no @data line; expected headers, then @data, then one series per line")
    if not seqs:
        raise DataError(f"{p}: no series after @data; expected one series per line")
    is_target = bool(target_label) and not class_label
    return _TsFile(seqs, raw, declared, bool(has_label) and not is_target, is_target, problem)


def read_ts(path: Union[str, Path], missing: str = "error") -> Tuple[List[np.ndarray], List[str], Optional[List[str]]]:
    """Read a UEA/UCR ``.ts`` file: (float32 ``[T_i, F]`` sequences, raw label per series, declared labels).

    Declared labels are the ``@classLabel true ...`` list or ``None``. See the module docstring for the
    format, the missing-value policies and the label cases.
    """
    ts = _read_ts(path, missing)
    return ts.sequences, ts.raw_labels, ts.declared


# --------------------------------------------------------------------------------------------------
# .npz reader


def _npz_labels(p: str, y: np.ndarray, n: int) -> List[str]:
    if y.ndim != 1 or y.shape[0] != n:
        raise DataError(f"{p}: y has shape {y.shape}; expected [{n}] (one label per sequence)")
    if y.dtype.kind == "U":
        return [str(v) for v in y.tolist()]
    if y.dtype.kind == "S":
        try:
            return [bytes(v).decode("utf-8") for v in y.tolist()]
        except UnicodeDecodeError:
            raise DataError(f"{p}: y holds bytes that are not UTF-8; expected strings or integers") from None
    if y.dtype.kind in "iub":
        return [str(int(v)) for v in y.tolist()]
    if y.dtype.kind == "f" and bool(np.all(np.isfinite(y))) and bool(np.all(y == np.round(y))):
        return [str(int(v)) for v in y.tolist()]
    raise DataError(f"{p}: y has dtype {y.dtype}; expected strings or integers")


_NPY_MAGIC = b"\x93NUMPY"


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _npz_member(p: str, zf: zipfile.ZipFile, info: zipfile.ZipInfo, key: str) -> np.ndarray:
    """One ``.npy`` member, its declared size checked against the bytes the archive holds before anything is
    allocated (a header may declare any shape), never unpickled."""
    fmt = np.lib.format
    try:
        with zf.open(info) as f:
            if f.read(len(_NPY_MAGIC)) != _NPY_MAGIC:
                raise DataError(f"{p}: member {info.filename!r} is not a .npy array; expected arrays saved with numpy.savez")
            version = (f.read(1) + f.read(1))
            if len(version) != 2 or tuple(version) not in ((1, 0), (2, 0), (3, 0)):
                raise DataError(f"{p}: array {key!r} has an unknown .npy format version; expected one numpy writes")
            read_header = fmt.read_array_header_1_0 if version[0] == 1 else fmt.read_array_header_2_0
            shape, fortran, dtype = read_header(f)  # literal_eval of a dict; never unpickles
            header_end = f.tell()
            if any(int(d) < 0 for d in shape):
                raise DataError(f"{p}: array {key!r} declares shape {tuple(shape)}; expected no negative dimension")
            if dtype.hasobject:
                raise DataError(
                    f"{p}: array {key!r} holds Python objects, which need pickling and are refused; "
                    "expected numeric arrays (and y as strings or integers)"
                )
            if dtype.itemsize == 0:
                raise DataError(f"{p}: array {key!r} has dtype {dtype} with empty elements; expected numbers or strings")
            count = 1
            for d in shape:
                count *= int(d)
            need, have = count * dtype.itemsize, info.file_size - header_end
            if need > have:
                raise DataError(
                    f"{p}: array {key!r} declares shape {tuple(shape)} {dtype} ({need:,} bytes) but holds "
                    f"{max(have, 0):,} bytes; expected a complete array (the file is truncated or corrupt)"
                )
            data = f.read(need)
            if len(data) != need:
                raise DataError(f"{p}: array {key!r} is truncated ({len(data):,} of {need:,} bytes)")
    except DataError:
        raise
    except Exception as e:  # noqa: BLE001 - zipfile, zlib and numpy's header parser raise many types on bad bytes
        raise DataError(f"{p}: cannot read array {key!r}: {_first_line(e)}; expected arrays saved with numpy.savez") from None
    arr = np.frombuffer(data, dtype=dtype, count=count)
    return arr.reshape(shape, order="F" if fortran else "C").copy()


def _npz_members(p: str, keys: Sequence[str]) -> Tuple[Dict[str, np.ndarray], List[str]]:
    """The arrays ``keys`` of the ``.npz`` at ``p`` (those present) and the names of all its members."""
    try:
        fh = open(p, "rb")
    except FileNotFoundError:
        raise DataError(f"{p}: no such file; expected an .npz archive") from None
    except OSError as e:
        raise DataError(f"{p}: cannot read: {e.strerror or _first_line(e)}; expected an .npz archive") from None
    with fh:
        try:
            head = fh.read(len(_NPY_MAGIC))
            fh.seek(0)
            if head == _NPY_MAGIC:
                raise DataError(f"{p}: a single .npy array; expected an .npz archive with x (and lengths, y)")
            zf = zipfile.ZipFile(fh)
        except DataError:
            raise
        except Exception as e:  # noqa: BLE001 - BadZipFile, OSError, EOFError, ValueError, ... on bad bytes
            raise DataError(f"{p}: not an .npz archive ({_first_line(e)}); expected arrays saved with numpy.savez") from None
        with zf:
            members: Dict[str, zipfile.ZipInfo] = {}
            for info in zf.infolist():
                name = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
                members.setdefault(name, info)
            out = {k: _npz_member(p, zf, members[k], k) for k in keys if k in members}
            return out, list(members)


def read_npz(path: Union[str, Path]) -> Tuple[List[np.ndarray], Optional[List[str]]]:
    """Read DESIGN's ``.npz`` input: (float32 ``[T_i, F]`` sequences, labels as strings or ``None``).

    ``x`` is padded ``[N, T, F]`` with ``lengths`` ``[N]`` (``lengths`` may be left out: every sequence
    is then T long) or concatenated ``[sum(T_i), F]`` with ``lengths`` ``[N]``. Any real dtype is cast
    to float32. Only the valid steps must be finite (padding may hold anything). ``y`` ``[N]`` is
    optional. Never unpickled (an object array is refused), and each array's declared size is checked
    against the bytes the archive holds before anything is allocated, so a corrupt header cannot ask for
    terabytes. Every problem is a one-line DataError naming the array and what was expected.
    """
    p = str(path)
    arrays, files = _npz_members(p, ("x", "lengths", "y"))
    x, lengths, y = arrays.get("x"), arrays.get("lengths"), arrays.get("y")
    if x is None:
        have = ", ".join(repr(f)[1:-1] for f in files[:10]) + (", ..." if len(files) > 10 else "")
        raise DataError(f"{p}: no array 'x' (it has: {have or 'nothing'}); expected x, lengths and optional y")
    if x.dtype.kind not in "fiu":
        raise DataError(f"{p}: x has dtype {x.dtype}; expected float32 (any real number type is cast)")
    if x.ndim not in (2, 3):
        raise DataError(f"{p}: x has shape {x.shape}; expected padded [N, T, F] or concatenated [sum(T), F]")
    if x.shape[-1] < 1:
        raise DataError(f"{p}: x has shape {x.shape}; expected at least one feature")
    if lengths is not None:
        if lengths.ndim != 1 or lengths.dtype.kind not in "iu":
            raise DataError(f"{p}: lengths has {lengths.dtype} shape {lengths.shape}; expected integers [N]")
        # an unsigned length past int64 would wrap negative; no length can exceed the steps x holds anyway
        too_long = lengths > x.shape[-2] if x.ndim >= 2 else np.zeros(lengths.shape, bool)
        if too_long.any():
            i = int(np.argmax(too_long))
            where = f"x is padded to T={x.shape[1]}" if x.ndim == 3 else f"x holds {x.shape[0]} steps in all"
            raise DataError(f"{p}: lengths[{i}] = {int(lengths[i])}; expected 1..{x.shape[-2]} ({where})")
        lengths = lengths.astype(np.int64)
    with np.errstate(over="ignore", invalid="ignore"):
        x32 = x.astype(np.float32)

    if x.ndim == 3:
        n, t = x.shape[0], x.shape[1]
        if lengths is None:
            lengths = np.full(n, t, dtype=np.int64)
        if lengths.shape[0] != n:
            raise DataError(f"{p}: lengths has {lengths.shape[0]} entries but x holds {n} sequences; expected {n}")
        bad = (lengths < 1) | (lengths > t)
        if bad.any():
            i = int(np.argmax(bad))
            raise DataError(f"{p}: lengths[{i}] = {int(lengths[i])}; expected 1..{t} (x is padded to T={t})")
        seqs = [np.array(x32[i, : int(lengths[i])]) for i in range(n)]
    else:
        if lengths is None:
            raise DataError(f"{p}: x is concatenated [sum(T), F] {x.shape} but there is no lengths; expected lengths [N]")
        if (lengths < 1).any():
            i = int(np.argmax(lengths < 1))
            raise DataError(f"{p}: lengths[{i}] = {int(lengths[i])}; expected every length >= 1")
        total = sum(int(v) for v in lengths)  # Python ints: no int64 wrap-around
        if total != x.shape[0]:
            raise DataError(f"{p}: lengths sum to {total} but x has {x.shape[0]} steps; expected them equal")
        ends = np.cumsum(lengths)
        seqs = [np.array(x32[int(e - l): int(e)]) for e, l in zip(ends, lengths)]
    if not seqs:
        raise DataError(f"{p}: x holds no sequences; expected N >= 1")
    for i, s in enumerate(seqs):
        if not np.all(np.isfinite(s)):
            raise DataError(f"{p}: sequence {i} has non-finite values (NaN, inf, or beyond float32); expected finite")
    labels = _npz_labels(p, y, len(seqs)) if y is not None else None
    return seqs, labels


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
    """(kept, taken) index arrays, ascending; about ``fraction`` of each class taken, at least one kept."""
    taken: List[np.ndarray] = []
    if fraction > 0:
        for c in np.unique(y):
            members = np.flatnonzero(y == c)
            k = min(int(round(len(members) * fraction)), len(members) - 1)
            if k > 0:
                taken.append(rng.permutation(members)[:k])
    take = np.sort(np.concatenate(taken)) if taken else np.zeros(0, dtype=np.int64)
    mask = np.ones(len(y), dtype=bool)
    mask[take] = False
    return np.flatnonzero(mask), take.astype(np.int64)


def _read_labelled(path: str, missing: str) -> Tuple[List[np.ndarray], List[str], Optional[List[str]]]:
    suffix = Path(path).suffix.lower()
    if suffix == ".ts":
        ts = _read_ts(path, missing)
        if ts.is_target:
            raise DataError(f"{path}: holds regression targets (@targetLabel true); expected class labels (@classLabel true)")
        if not ts.has_labels:
            raise DataError(f"{path}: has no class labels (@classLabel false); training needs @classLabel true")
        return ts.sequences, ts.raw_labels, ts.declared
    if suffix == ".npz":
        seqs, labels = read_npz(path)
        if labels is None:
            raise DataError(f"{path}: has no y; training needs a label per sequence")
        return seqs, labels, None
    raise DataError(f"{path}: unsupported file type {suffix or '(none)'!r}; expected .ts or .npz")


def _fraction(name: str, value: Any) -> float:
    v = float(value)
    if not 0.0 <= v < 1.0:
        raise DataError(f"[data] {name} = {value!r}; expected a fraction in [0, 1)")
    return v


def _build(seqs: List[np.ndarray], raw: List[str], labels: Tuple[str, ...], path: str) -> SequenceSet:
    y, _ = encode_labels(raw, labels)
    try:
        return SequenceSet(tuple(seqs), y, labels)
    except DataError as e:
        raise DataError(f"{path}: {e}") from None


def load_splits(cfg: Any) -> Splits:
    """Train / val / test for a ``DataConfig`` (read by attribute; see the fields in the module docs).

    * ``synthetic``: ``n_train`` from stream 0 and ``n_test`` from stream 1 of ``seed``.
    * ``japanese-vowels`` / ``basic-motions``: the archive's official TRAIN / TEST files.
    * ``files``: ``train`` (``.ts`` or ``.npz``) and ``test`` if given, else ``test_fraction`` of train held
      out, stratified by class.

    Validation is ``val_fraction`` of train, stratified, deterministic from ``seed`` (empty at 0). Labels
    come from the training file (its ``@classLabel`` order, else sorted unique); a test label absent from
    training, an empty or single-class training set, or differing feature counts are DataErrors.
    """
    name = str(cfg.name)
    seed = int(cfg.seed)
    val_fraction = _fraction("val_fraction", cfg.val_fraction)
    missing = str(cfg.missing)
    _check_missing_policy(missing)

    if name == "synthetic":
        train = synthetic(int(cfg.n_train), int(cfg.features), int(cfg.classes), int(cfg.min_len),
                          int(cfg.max_len), seed, stream=0)
        test = synthetic(int(cfg.n_test), int(cfg.features), int(cfg.classes), int(cfg.min_len),
                         int(cfg.max_len), seed, stream=1)
        labels = train.labels
        source = (f"synthetic (seed {seed}, {cfg.features} features, {cfg.classes} classes, "
                  f"lengths {cfg.min_len}-{cfg.max_len})")
        train_path = "synthetic"
    elif name in NAMED_DATASETS or name == "files":
        if name == "files":
            train_path, test_path = str(cfg.train), str(cfg.test or "")
            if not train_path:
                raise DataError("[data] train is empty; expected a .ts or .npz file for name = \"files\"")
            source = f"{train_path} + {test_path}" if test_path else f"{train_path} (test: held-out fraction)"
        else:
            tr, te = locate_named(name)
            train_path, test_path = str(tr), str(te)
            source = f"{NAMED_DATASETS[name]} (sktime {_sktime_version()})"
        seqs, raw, declared = _read_labelled(train_path, missing)
        labels = tuple(declared) if declared is not None else encode_labels(raw, None)[1]
        train = _build(seqs, raw, labels, train_path)
        if test_path:
            t_seqs, t_raw, _ = _read_labelled(test_path, missing)
            unknown = sorted(set(t_raw) - set(labels), key=_label_sort_key)
            if unknown:
                raise DataError(f"{test_path}: test label {_show(unknown[0])} does not occur in the training labels; "
                                f"expected one of: {', '.join(labels[:20])}")
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
        raise DataError(f"the test set has {test.features} features but training has {train.features}; expected equal")
    keep, take = _stratified_split(train.y, val_fraction, np.random.default_rng([seed, 2]))
    val = train.subset(take) if len(take) else SequenceSet.empty(labels, train.features)
    train = train.subset(keep)
    if test.n == 0:
        test = SequenceSet.empty(labels, train.features)
    return Splits(train=train, val=val, test=test, labels=tuple(labels), source=source)
