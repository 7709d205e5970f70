"""Reading sequences from files: the UEA/UCR ``.ts`` reader and the ``.npz`` reader, numpy and the
standard library only (the device reads ``predict``'s input with them; ``attn_export.data`` builds the
training splits on them).

* A sequence is a float32 array ``[T_i, F]`` with ``T_i >= 1``.
* Every error a user can cause is a :class:`~attn_export.errors.DataError` (exit 2) with a one-line
  message, for files ``path:line: what was wrong; expected ...``.

``.ts`` files (``read_ts``)
--------------------------
``#`` (and ARFF-style ``%``) comment lines and blank lines are skipped anywhere; ``@key value`` headers are read case-insensitively;
the file is decoded as UTF-8 with an optional byte-order mark. After ``@data``, one series per line:
channels separated by ``:``, values by ``,``, and (with ``@classLabel true`` or ``@targetLabel true``)
the label after the last ``:``. ``?`` and ``NaN`` are missing values, handled by ``missing``:
``"error"`` refuses them, ``"ffill"`` forward-fills within each channel (leading gaps take the first
valid value, an all-missing channel becomes 0), ``"zero"`` writes 0; NaN padding to a common length is
refused under every policy (``refuse_nan_padding``). Series may differ in length; the channels of one
series may not. ``inf`` and values beyond float32 are refused under every policy.

* ``@classLabel false``: no label field; the raw labels come back as empty strings and the declared
  labels as ``None``. ``load_splits`` refuses such a file (training needs labels); ``predict`` can read it.
* ``@targetLabel true`` (regression archives such as Tecator): the target is returned as the raw
  label string; ``load_splits`` refuses it (it builds classification splits only).
* Neither header: the label field is taken to be present when the first series has more ``:``-fields
  than ``@dimensions`` (or, without ``@dimensions``, when it has at least two fields; a last field that
  is a list of values is then refused as a channel, not a label).
* ``@timeStamps true`` files are refused (no archive classification file uses them).
* Headers that contradict the data or each other are refused: ``@seriesLength`` (unless ``@equalLength
  false``) against each series' steps, ``@equalLength true`` against the first series' length,
  ``@univariate true`` with ``@dimensions`` above 1, a class label declared twice, and a second
  ``@classLabel``, ``@targetLabel``, ``@dimensions``, ``@univariate``, ``@equalLength`` or ``@seriesLength``
  line with another value (a repeated ``@problemName`` is taken as the archive's UnitTest file has it: the
  last one).

``.npz`` files (``read_npz``)
----------------------------
DESIGN's input: ``x`` float32 padded ``[N, T, F]`` with ``lengths [N]``, or concatenated ``[sum(T), F]``
with ``lengths``; optional ``y [N]`` (strings or integers). Never unpickled; declared array sizes are
checked against the archive's bytes and against the memory this process can still use before anything
is allocated, and each array is read once into its own buffer (no second copy for float32 input).
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..errors import DataError, NotAvailable
from .limits import available_memory, size_text
from .store.files import open_regular, read_regular

__all__ = ["FILL_HINT", "FLOAT32_MAX", "MAX_NPZ_BYTES", "MAX_TEXT_BYTES", "MISSING_POLICIES", "fill_counted", "fill_gaps",
           "gap_count", "leading_gaps", "npz_arrays", "npz_names", "read_npz", "read_text", "read_ts", "strict_float"]

MAX_NPZ_BYTES = 1 << 40  # the archive itself; every member's declared size is checked against memory

MISSING_POLICIES = ("error", "ffill", "zero")
FILLING = ("ffill", "zero")  # the policies under which a gap is filled, not refused
# what a refusal of a gap advises: a model trained so fills them in predict too (``ModelInfo.missing``)
FILL_HINT = 'a recipe may set [data] missing = "ffill" or "zero", and its model\'s predict then fills gaps the same way'
FLOAT32_MAX = float(np.finfo(np.float32).max)


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


def fill_gaps(seq: np.ndarray, missing: str) -> np.ndarray:
    """``seq`` [T, F] with its NaN gaps filled channel by channel by the policy ``missing`` (``ffill``:
    ``_ffill``; ``zero``): a training ``.csv``'s or ``.npz``'s, as the ``.ts`` reader fills its channels.
    ``error`` refuses a gap, as training did (found by review: any other word zero-filled). ``seq`` may be
    any 2-D array-like of numbers (the API's refusal of a NaN names this function)."""
    _check_missing_policy(missing)
    seq = np.asarray(seq, dtype=np.float32)
    if seq.ndim != 2:
        raise DataError(f"a sequence of shape {seq.shape}; expected [steps, features]")
    gaps = np.isnan(seq)
    if not gaps.any():
        return seq
    if missing == "error":
        step, feature = (int(i) for i in np.argwhere(gaps)[0])
        raise DataError(f"a missing value (NaN) at step {step}, feature {feature}; expected none: missing = 'error' "
                        "refuses gaps")
    return np.stack([_ffill(c, g) if missing == "ffill" else np.where(g, np.float32(0), c)
                     for c, g in zip(seq.T, gaps.T)], axis=1)


def gap_count(seqs: Sequence[np.ndarray]) -> int:
    """How many values of ``seqs`` are NaN: the gaps a policy fills."""
    return sum(int(np.isnan(q).sum()) for q in seqs)


def fill_counted(seqs: Sequence[np.ndarray], missing: str) -> Tuple[List[np.ndarray], int]:
    """``seqs`` read with their gaps left NaN, filled by ``missing`` where it fills, and how many values were
    filled: what train and predict say of the gaps they filled."""
    if missing not in FILLING:
        return list(seqs), 0
    return [fill_gaps(q, missing) for q in seqs], gap_count(seqs)


def leading_gaps(seqs: Sequence[np.ndarray]) -> int:
    """How many values of ``seqs`` are NaN before their channel's first value: ``ffill`` gives them that later
    value, which a stream fed step by step does not have yet (a channel with no value at all becomes 0)."""
    count = 0
    for q in seqs:
        gaps = np.isnan(q)
        count += int((np.logical_and.accumulate(gaps, axis=0) & ~gaps.all(axis=0)).sum())
    return count


def _trailing_gaps(s: np.ndarray) -> int:
    """How many of ``s``'s last steps [T, F] are NaN in every feature."""
    return int(np.logical_and.accumulate(np.isnan(s).all(axis=1)[::-1]).sum()) if s.size else 0


def refuse_nan_padding(p: str, seqs: Sequence[np.ndarray], name: Callable[[int], str], expected: str) -> None:
    """DataError where sequences of one length end in runs of steps NaN in every feature, of two lengths or
    more, and hold no other NaN: padding to a common length, not gaps (found by attacking: filled under ffill,
    it was trained on as data that predict refuses; the UCR archive pads its variable-length sets so). A NaN
    anywhere else makes them gaps, all filled (found by review: random gaps in one feature end some sequences
    too), and so do one such run, or runs of one length (a univariate series' last value lost).
    ``name(i)``: how the message names sequence i."""
    tails = [_trailing_gaps(s) for s in seqs]
    inside = any(np.isnan(s[: len(s) - k]).any() for s, k in zip(seqs, tails))
    if len({k for k in tails if k}) >= 2 and len({len(s) for s in seqs}) == 1 and not inside:
        i = next(i for i, k in enumerate(tails) if k)
        raise DataError(f"{p}: {name(i)} ends in {tails[i]} step(s) of NaN in every feature, and others in runs of "
                        f"other lengths, as padding does; expected {expected}")


_ONE_VALUE_HEADERS = ("classlabel", "targetlabel", "dimensions", "univariate", "equallength", "serieslength")


def _words(value: str) -> List[str]:
    """A header's value as compared with a repeat of it: ``true``/``false`` in any case, a count as its number
    (``01`` is ``1``), names as written."""
    words = value.split()
    if not words:
        return []
    first = str(int(words[0])) if words[0].isdecimal() and words[0].isascii() else words[0].lower()
    return [first, *words[1:]]


def _count_header(path: str, lineno: int, key: str, value: str) -> int:
    try:
        count = int(value)
    except ValueError:
        count = -1
    if count < 1:
        raise DataError(f"{path}:{lineno}: @{key} {_show(value)}; expected a positive integer")
    return count


def _bool_header(path: str, lineno: int, key: str, value: str) -> bool:
    v = value.split()[0].lower() if value.split() else ""
    if v not in ("true", "false"):
        raise DataError(f"{path}:{lineno}: @{key} {_show(value)}; expected true or false")
    return v == "true"


def strict_float(text: str) -> float:
    """A number as a text format writes it: ASCII digits, sign, point, exponent, or nan/inf. Python's
    ``float`` also takes full-width digits ('１') and underscores ('1_000'), which no .ts or .csv means."""
    if not text.isascii() or "_" in text:
        raise ValueError(text)
    return float(text)


def _parse_channel(path: str, lineno: int, ch_index: int, text: str) -> np.ndarray:
    """One channel's values, NaN where missing ('?' or NaN), the policy applied to the whole series."""
    tokens = text.split(",")
    try:
        values = np.array([strict_float(t) for t in tokens], dtype=np.float64)
    except ValueError:
        values = np.empty(len(tokens), dtype=np.float64)
        for i, t in enumerate(tokens):
            s = t.strip()
            if s == "?":
                values[i] = np.nan
                continue
            try:
                values[i] = strict_float(s)
            except ValueError:
                what = "an empty value" if s == "" else f"non-numeric value {_show(s)}"
                raise DataError(
                    f"{path}:{lineno}: {what} in channel {ch_index + 1} (value {i + 1}); "
                    "expected numbers separated by ',' ('?' or NaN for missing)"
                ) from None
    bad = ~np.isnan(values) & (np.abs(values) > FLOAT32_MAX)  # inf, or beyond float32
    if bad.any():
        j = int(np.argmax(bad))
        raise DataError(
            f"{path}:{lineno}: value {_show(tokens[j].strip())} in channel {ch_index + 1} is not a finite "
            "float32; expected finite numbers ('?' or NaN for missing)"
        )
    return values


def _missing_in_series(path: str, lineno: int, fields: Sequence[str], series: np.ndarray) -> DataError:
    """The refusal of a series [T, F] that holds a missing value where the policy is ``error``: its first one,
    channel by channel; where the series ends in steps NaN in every channel, as padding does, the hint says so
    (found by attacking: "a recipe may set missing = ffill" led to padding trained on as data)."""
    miss = np.isnan(series.T)
    c = int(np.argmax(miss.any(axis=1)))
    j = int(np.argmax(miss[c]))
    k = _trailing_gaps(series)
    padded = k > 0 and not miss[:, : len(series) - k].any()  # missing only in its last steps, in every channel
    hint = (f"its last {k} step(s) are missing in every channel and nothing else is, as padding is: a .ts series may "
            f"be shorter than the others, so drop them; if they are gaps, {FILL_HINT}" if padded else FILL_HINT)
    return DataError(f"{path}:{lineno}: missing value {_show(fields[c].split(',')[j].strip())} in channel {c + 1} "
                     f"(value {j + 1}); expected no missing values ({hint})")


MAX_TEXT_BYTES = 1 << 30  # a .ts or .csv file: parsed into Python objects, several times its size


def read_text(p: str, expected: str) -> str:
    """The UTF-8 text (a BOM dropped) of the regular file ``p``, at most MAX_TEXT_BYTES; a FIFO, a device,
    a directory or a missing file is one line saying which (``store.files.read_regular``)."""
    data = read_regular(p, MAX_TEXT_BYTES, expected)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(f"{p}: not UTF-8 text ({e.reason} at byte {e.start}); expected {expected}") from None


def _read_ts(path: Union[str, Path], missing: str = "error", fill: bool = True) -> _TsFile:
    """The file's series, its gaps filled by ``missing`` (``fill``; otherwise left NaN, padding refused)."""
    _check_missing_policy(missing)
    p = str(path)
    text = read_text(p, "a .ts text file")

    declared: Optional[List[str]] = None
    class_label: Optional[bool] = None
    target_label: Optional[bool] = None
    dims: Optional[int] = None
    univariate: Optional[bool] = None
    equal_length: Optional[bool] = None
    series_length: Optional[int] = None
    first_steps: Optional[int] = None  # the first series' length, which @equalLength true holds every one to
    seen: Dict[str, Tuple[int, str]] = {}  # a header's first line and value: a second, different one contradicts it
    problem = Path(p).stem
    in_data = False
    has_label: Optional[bool] = None
    expected_ch: Optional[int] = None
    expected_from = ""
    seqs: List[np.ndarray] = []
    lines: List[int] = []  # each series' line
    raw: List[str] = []

    # \n, \r\n, and an old Mac's lone \r (found by attacking: "no @data line" for a file that had one)
    for lineno, line in enumerate(text.replace("\r\n", "\n").replace("\r", "\n").split("\n"), start=1):
        s = line.strip()
        if not s or s[0] in "#%":
            continue
        if not in_data:
            if not s.startswith("@"):
                raise DataError(f"{p}:{lineno}: {_show(s)} before @data; expected an @key header, a # comment or @data")
            parts = s[1:].split(None, 1)
            key = parts[0].lower() if parts else ""
            value = parts[1].strip() if len(parts) > 1 else ""
            if key in _ONE_VALUE_HEADERS:
                first = seen.setdefault(key, (lineno, value))
                if _words(first[1]) != _words(value):  # found by attacking: the last of two silently won
                    raise DataError(f"{p}:{lineno}: @{parts[0]} {_show(value)} contradicts line {first[0]}'s "
                                    f"{_show(first[1])}; expected each header once")
            if key == "data":
                in_data = True
                if class_label and target_label:
                    raise DataError(f"{p}:{lineno}: both @classLabel and @targetLabel are true; expected one")
                if univariate and dims is not None and dims != 1:
                    raise DataError(f"{p}:{lineno}: @univariate true but @dimensions {dims}; expected "
                                    "@univariate false for more than one channel, or @dimensions 1")
                if equal_length is False:  # @seriesLength speaks of equal-length files only
                    series_length = None
            elif key == "classlabel":
                class_label = _bool_header(p, lineno, "classLabel", value)
                if class_label:
                    names = value.split()[1:]
                    declared = names if names else None
                    twice = sorted({n for n in names if names.count(n) > 1})
                    if twice:  # one rule for train and predict (found by attacking: predict read such a file)
                        raise DataError(f"{p}:{lineno}: declared class labels repeat {_show(twice[0])}; "
                                        "expected each label once")
            elif key == "targetlabel":
                target_label = _bool_header(p, lineno, "targetLabel", value)
            elif key == "dimensions":
                dims = _count_header(p, lineno, "dimensions", value)
            elif key == "univariate":
                univariate = _bool_header(p, lineno, "univariate", value)
            elif key == "equallength":
                equal_length = _bool_header(p, lineno, "equalLength", value)
            elif key == "serieslength":
                series_length = _count_header(p, lineno, "seriesLength", value)
            elif key == "timestamps":
                if _bool_header(p, lineno, "timeStamps", value):
                    raise DataError(f"{p}:{lineno}: @timeStamps true is not supported; expected @timeStamps false")
            elif key == "problemname" and value:
                problem = value
            continue

        # a series
        if s.startswith("@"):  # found by attacking: blamed as "no label field"
            raise DataError(f"{p}:{lineno}: header {_show(s.split(None, 1)[0])} after @data; expected every @key "
                            "header before @data, and only series after it")
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
            if "," in label and declared is None and dims is None:
                # no class names and no channel count to tell, and a list of values: a channel (found by
                # attacking: each series' last channel became its own "class", also under a bare
                # "@classLabel true")
                raise DataError(f"{p}:{lineno}: the last ':' field {_show(label)} is a list of values, not a "
                                "label; expected a header saying which: @classLabel true followed by the class "
                                "names, @classLabel false, or @dimensions")
            if declared is not None and label not in declared:
                spaced = " (@classLabel's names are split at whitespace: a label with a space cannot be declared; "\
                    "leave @classLabel out)" if any(c.isspace() for c in label) else ""
                raise DataError(
                    f"{p}:{lineno}: class label {_show(label)} is not in @classLabel{spaced}; expected one of: "
                    + ", ".join(_show(d) for d in declared[:20])
                    + (" ..." if len(declared) > 20 else "")
                )
            fields = fields[:-1]
        else:
            label = ""
        if expected_ch is None:
            expected_ch, expected_from = len(fields), f" (as in line {lineno})"
        elif len(fields) != expected_ch:
            raise DataError(f"{p}:{lineno}: {len(fields)} channels; expected {expected_ch}{expected_from}")
        counts = [f.count(",") + 1 if f.strip() else 0 for f in fields]  # an empty channel has no value
        for c, k in enumerate(counts):
            if k != counts[0]:
                raise DataError(
                    f"{p}:{lineno}: channel {c + 1} has {k} values but channel 1 has {counts[0]}; "
                    "expected equal lengths across the channels of a series"
                )
        values: Optional[np.ndarray]
        try:  # fast path: the whole series at once; anything unusual is re-parsed channel by channel
            joined = ",".join(fields)
            if not joined.isascii() or "_" in joined:  # float() takes '１' and '1_000'; the format does not
                raise ValueError(joined)
            values = np.array([float(v) for v in joined.split(",")], dtype=np.float64)
            if not bool(np.all(np.abs(values) <= FLOAT32_MAX)):  # NaN, inf or beyond float32
                values = None
        except ValueError:
            values = None
        if values is None:
            channels = [_parse_channel(p, lineno, c, t) for c, t in enumerate(fields)]
            values = np.concatenate(channels)
        if series_length is not None and counts[0] != series_length:
            raise DataError(f"{p}:{lineno}: {counts[0]} steps; expected {series_length} (@seriesLength)")
        if equal_length and first_steps is not None and counts[0] != first_steps:
            raise DataError(f"{p}:{lineno}: {counts[0]} steps; expected {first_steps} as in the first series "
                            "(@equalLength true)")
        first_steps = counts[0] if first_steps is None else first_steps
        # float() of an empty string fails, so every channel has >= 1 value here
        series = values.reshape(len(fields), counts[0]).T.astype(np.float32)
        if missing == "error" and np.isnan(series).any():
            raise _missing_in_series(p, lineno, fields, series)
        seqs.append(series)
        lines.append(lineno)
        raw.append(label)

    if not in_data:
        raise DataError(f"{p}: no @data line; expected headers, then @data, then one series per line")
    if not seqs:
        raise DataError(f"{p}: no series after @data; expected one series per line")
    if missing in FILLING:
        refuse_nan_padding(p, seqs, lambda i: f"the series of line {lines[i]}",
                           "each series at its own length (a .ts series may be shorter than the others: drop its "
                           "trailing missing values)")
        if fill:
            seqs = [fill_gaps(q, missing) for q in seqs]
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


def _one_feature(x: np.ndarray, lengths: np.ndarray) -> str:
    """The hint for an x of [N, T] with lengths [N] that fit it: padded sequences of one feature, read as a
    concatenated [sum(T), F] (found by attacking: "lengths sum to 319 but x has 40 steps")."""
    if x.ndim == 2 and lengths.ndim == 1 and lengths.shape[0] == x.shape[0] and 0 < int(lengths.max()) <= x.shape[1]:
        return f" (padded sequences of one feature are x [N, T, 1], not [N, T] = {list(x.shape)}: x[..., None])"
    return ""


def _npz_labels(p: str, y: np.ndarray, n: int) -> List[str]:
    """``y`` as label strings, stripped and none empty, as the .ts and .csv readers take theirs (found by
    attacking: " a", "a" and "a " were three classes, and "" a class whose name printed as nothing)."""
    if y.ndim != 1 or y.shape[0] != n:
        raise DataError(f"{p}: y has shape {y.shape}; expected [{n}] (one label per sequence)")
    if y.dtype.kind in "US":
        try:
            labels = [(bytes(v).decode("utf-8") if y.dtype.kind == "S" else str(v)).strip() for v in y.tolist()]
        except UnicodeDecodeError:
            raise DataError(f"{p}: y holds bytes that are not UTF-8; expected strings or integers") from None
        if "" in labels:
            raise DataError(f"{p}: y[{labels.index('')}] is empty; expected a label for every sequence")
        return labels
    if y.dtype.kind == "b":  # as a CSV written from the same array spells them (they were classes "0" and "1")
        return [str(v) for v in y.tolist()]
    if y.dtype.kind in "iu":
        return [str(int(v)) for v in y.tolist()]
    if y.dtype.kind == "f" and bool(np.all(np.isfinite(y))) and bool(np.all(y == np.round(y))):
        return [str(int(v)) for v in y.tolist()]
    if y.dtype.kind == "f" and not bool(np.all(np.isfinite(y))):  # named, not "has dtype float64" (found by attacking)
        i = int(np.argmax(~np.isfinite(y)))
        raise DataError(f"{p}: y[{i}] is {y[i]}; expected a label for every sequence (strings or integers)")
    if y.dtype.kind == "f":  # found by attacking: a regression's targets were "expected strings or integers"
        i = int(np.argmax(y != np.round(y)))
        raise DataError(f"{p}: y[{i}] is {y[i]}, not a whole number; expected class labels (strings or integers) "
                        "or no y: predict and train read no regression targets from an .npz")
    raise DataError(f"{p}: y has dtype {y.dtype}; expected strings or integers")


_NPY_MAGIC = b"\x93NUMPY"
_CHUNK = 1 << 24  # bytes decompressed at a time into an array's buffer


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
            count, span = 1, dtype.itemsize
            for d in shape:
                count *= int(d)
                span *= max(int(d), 1)
            if span > np.iinfo(np.intp).max:  # numpy refuses such a shape even when a 0 leaves it empty
                raise DataError(f"{p}: array {key!r} declares shape {tuple(shape)} {dtype}, past what numpy can "
                                "index; expected a shape an array can have")
            need, have = count * dtype.itemsize, info.file_size - header_end
            if need > have:
                raise DataError(
                    f"{p}: array {key!r} declares shape {tuple(shape)} {dtype} ({need:,} bytes) but holds "
                    f"{max(have, 0):,} bytes; expected a complete array (the file is truncated or corrupt)"
                )
            # x is cast to float32 by read_npz: a second buffer unless it is float32 already
            total = need + (count * 4 if key == "x" and dtype != np.float32 else 0)
            free = available_memory()
            if free is not None and total > free:
                raise NotAvailable(
                    f"{p}: array {key!r} declares shape {tuple(shape)} {dtype} ({size_text(need)}); reading it needs about "
                    f"{size_text(total)} and this machine has {size_text(free)} available; expected an input that fits in "
                    "memory (split it into several files)"
                )
            arr = np.empty(count, dtype=dtype)
            flat = arr.view(np.uint8)
            got = 0
            while got < need:
                chunk = f.read(min(_CHUNK, need - got))
                if not chunk:
                    raise DataError(f"{p}: array {key!r} is truncated ({got:,} of {need:,} bytes)")
                flat[got : got + len(chunk)] = np.frombuffer(chunk, np.uint8)
                got += len(chunk)
    except (DataError, NotAvailable):
        raise
    except Exception as e:  # noqa: BLE001 - zipfile, zlib and numpy's header parser raise many types on bad bytes
        raise DataError(f"{p}: cannot read array {key!r}: {_first_line(e)}; expected arrays saved with numpy.savez") from None
    return arr.reshape(shape, order="F" if fortran else "C")


def _npz_members(p: str, keys: Sequence[str]) -> Tuple[Dict[str, np.ndarray], List[str]]:
    """The arrays ``keys`` of the ``.npz`` at ``p`` (those present) and the names of all its members."""
    with open_regular(p, MAX_NPZ_BYTES, "an .npz archive") as fh:
        return npz_arrays(p, fh, keys)


def npz_names(p: str) -> List[str]:
    """The names of the arrays the ``.npz`` at ``p`` holds (its members, ``.npy`` dropped); none is read."""
    return [f[:-4] if f.endswith(".npy") else f for f in _npz_members(p, ())[1]]


def npz_arrays(p: str, fh: BinaryIO, keys: Optional[Sequence[str]] = None) -> Tuple[Dict[str, np.ndarray], List[str]]:
    """The arrays ``keys`` (all of them when None) of the ``.npz`` archive open as ``fh``, and the names of all
    its members: never unpickled, each declared size checked against the archive's bytes and this machine's
    memory before anything is allocated. ``p`` names the archive in messages."""
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
        wanted = list(members) if keys is None else [k for k in keys if k in members]
        out = {k: _npz_member(p, zf, members[k], k) for k in wanted}
        return out, list(members)


# what an .npz's lengths or labels are often called instead (found by attacking: 'length' was ignored, so
# every padded step was trained on and predicted as data, without a word)
_LENGTHS_NAMES = ("len", "lens", "length", "seq_len", "seq_lens", "seq_length", "seq_lengths", "sequence_lengths",
                  "n_steps")
_LABEL_NAMES = ("label", "labels", "Y", "target", "targets", "class", "classes", "y_true")


def _near_misses(path: str, names: Sequence[str], sequences: Optional[int], no_lengths: bool, no_y: bool) -> None:
    """DataError for an array named as lengths or y are often named, and shaped as one ([N] integers; [N]),
    beside no array of the real name: it would be ignored, silently (padding read as data; no accuracy).
    ``names``: the archive's arrays; ``sequences``: N, where x says it (padded), None for a concatenated x. An
    alias array this reader would not read (pickled, say) is left alone, as before."""
    def alias(name: str, aliases: Sequence[str]) -> bool:
        return name in aliases or name.lower() in aliases

    wanted = [n for n in names if alias(n, _LENGTHS_NAMES + _LABEL_NAMES)]
    try:
        arrays = _npz_members(path, tuple(wanted))[0] if wanted and (no_lengths or no_y) else {}
    except DataError:
        return

    def shaped(a: np.ndarray, integers: bool) -> bool:
        return a.ndim == 1 and (sequences is None or len(a) == sequences) and (not integers or a.dtype.kind in "iu")

    for missing, means, aliases in ((no_lengths, "lengths", _LENGTHS_NAMES), (no_y, "y", _LABEL_NAMES)):
        found = next((n for n, a in arrays.items() if alias(n, aliases) and shaped(a, means == "lengths")),
                     None) if missing else None
        if found is not None:
            what = ("each sequence's number of valid steps; without it every sequence fills x's T steps, padding "
                    "and all" if means == "lengths" else "the true labels, one per sequence")
            raise DataError(f"{path}: an array {found!r} and none named {means!r}, which this reader reads ({what}); "
                            f"expected it named {means!r} (or removed)")


def refuse_front_padding(p: str, x: np.ndarray, lengths: np.ndarray) -> None:
    """A padded ``x`` [N, T, F] whose sequences end their rows, padding first (Keras' ``pad_sequences``
    default, ``padding='pre'``): two or more rows shorter than T, each with only exact zeros before its last
    ``length`` steps, and past their lengths no one padding value, where this reader takes each row's first
    ``length`` steps (found by attacking: accuracy 0.73 read as 0.19, no word)."""
    short = [i for i in range(x.shape[0]) if lengths[i] < x.shape[1]]
    if len(short) < 2 or any(np.any(x[i, :x.shape[1] - int(lengths[i])] != 0) for i in short):
        return
    # padding after the sequences is one value in every shorter row (zeros, NaN, a fill such as -1): then their
    # first steps are data that starts at 0 (a displacement from the start: found by review); one row's short
    # tail of one value says nothing (a univariate row one step short: found by review)
    tails = np.concatenate([x[i, int(lengths[i]):].ravel() for i in short])
    if bool(np.isnan(tails).all()) or bool((tails == tails[0]).all()):
        return
    raise DataError(f"{p}: x looks padded before each sequence (Keras pad_sequences' default, padding='pre'): in "
                    f"each of its {len(short):,} shorter rows the first T - length steps are 0 and values follow past "
                    "its length; expected each sequence at the start of its row, padding after it "
                    "(padding='post'), or x concatenated [sum(T), F] with lengths")


def read_npz(path: Union[str, Path], missing: Optional[str] = None, fill: bool = True
             ) -> Tuple[List[np.ndarray], Optional[List[str]]]:
    """Read DESIGN's ``.npz`` input: (float32 ``[T_i, F]`` sequences, labels as strings or ``None``).

    ``x`` is padded ``[N, T, F]`` with ``lengths`` ``[N]`` (``lengths`` may be left out: every sequence
    is then T long, padding included: no reader can tell padding from data) or concatenated
    ``[sum(T_i), F]`` with ``lengths`` ``[N]``. Any real dtype is cast to float32. Only the valid steps
    must be finite (padding may hold anything). ``y`` ``[N]`` is optional. Never unpickled (an object array is refused), and each array's declared size is checked
    against the bytes the archive holds before anything is allocated, so a corrupt header cannot ask for
    terabytes. Every problem is a one-line DataError naming the array and what was expected. ``missing``: a
    training file's ``[data] missing`` policy, or the model's for predict; with ``ffill`` or ``zero`` a NaN
    in a valid step is a gap, filled within its sequence and channel as the ``.ts`` reader fills them (left
    NaN without ``fill``; inf is refused still); None or ``error`` refuses it.
    """
    p = str(path)
    arrays, files = _npz_members(p, ("x", "lengths", "y"))
    x, lengths, y = arrays.get("x"), arrays.get("lengths"), arrays.get("y")
    if x is None:
        have = ", ".join(repr(f)[1:-1] for f in files[:10]) + (", ..." if len(files) > 10 else "")
        raise DataError(f"{p}: no array 'x' (it has: {have or 'nothing'}); expected x, lengths and optional y")
    _near_misses(p, files, x.shape[0] if x.ndim == 3 else None, lengths is None, y is None)
    if x.dtype.kind not in "fiu":
        raise DataError(f"{p}: x has dtype {x.dtype}; expected float32 (any real number type is cast)")
    if x.ndim not in (2, 3):
        raise DataError(f"{p}: x has shape {x.shape}; expected padded [N, T, F] or concatenated [sum(T), F]")
    if x.shape[-1] < 1:
        raise DataError(f"{p}: x has shape {x.shape}; expected at least one feature")
    if x.ndim == 3 and x.shape[0] > 0 and x.shape[1] < 1:
        raise DataError(f"{p}: x has shape {x.shape}: sequences of 0 steps; expected at least one step each")
    if lengths is not None:
        if lengths.ndim != 1 or lengths.dtype.kind not in "iu":
            raise DataError(f"{p}: lengths has {lengths.dtype} shape {lengths.shape}; expected integers [N]")
        # an unsigned length past int64 would wrap negative; no length can exceed the steps x holds anyway
        too_long = lengths > x.shape[-2] if x.ndim >= 2 else np.zeros(lengths.shape, bool)
        if too_long.any():
            i = int(np.argmax(too_long))
            where = f"x is padded to T={x.shape[1]}" if x.ndim == 3 else f"x holds {x.shape[0]} steps in all"
            raise DataError(f"{p}: lengths[{i}] = {int(lengths[i])}; expected 1..{x.shape[-2]} ({where})"
                            + _one_feature(x, lengths))
        lengths = lengths.astype(np.int64)
    with np.errstate(over="ignore", invalid="ignore"):
        x32 = x.astype(np.float32, copy=False)

    if x.ndim == 3:
        n, t = x.shape[0], x.shape[1]
        if lengths is None:
            refuse_nan_padding(p, list(x32), lambda i: f"sequence {i}",
                               "lengths [N] for a padded x, which has none (or those steps removed)")
            lengths = np.full(n, t, dtype=np.int64)
        if lengths.shape[0] != n:
            raise DataError(f"{p}: lengths has {lengths.shape[0]} entries but x holds {n} sequences; expected {n}")
        bad = (lengths < 1) | (lengths > t)
        if bad.any():
            i = int(np.argmax(bad))
            raise DataError(f"{p}: lengths[{i}] = {int(lengths[i])}; expected 1..{t} (x is padded to T={t})")
        refuse_front_padding(p, x32, lengths)
        seqs = [x32[i, : int(lengths[i])] for i in range(n)]  # views: x32 is this reader's own buffer
    else:
        if lengths is None:
            raise DataError(f"{p}: x is concatenated [sum(T), F] {x.shape} but there is no lengths; expected lengths [N]")
        if (lengths < 1).any():
            i = int(np.argmax(lengths < 1))
            raise DataError(f"{p}: lengths[{i}] = {int(lengths[i])}; expected every length >= 1")
        total = sum(int(v) for v in lengths)  # Python ints: no int64 wrap-around
        if total != x.shape[0]:
            raise DataError(f"{p}: lengths sum to {total} but x has {x.shape[0]} steps; expected them equal"
                            + _one_feature(x, lengths))
        ends = np.cumsum(lengths)
        seqs = [x32[int(e - l): int(e)] for e, l in zip(ends, lengths)]
    if not seqs:
        raise DataError(f"{p}: x holds no sequences; expected N >= 1")
    gaps = missing in FILLING
    for i, s in enumerate(seqs):
        if missing in FILLING and fill:
            s = seqs[i] = fill_gaps(s, missing)
        bad = ~np.isfinite(s) & ~(gaps & np.isnan(s))  # a gap left for the caller to fill is no problem here
        if bad.any():
            step, feature = (int(k) for k in np.argwhere(bad)[0])
            missed = bool(np.isnan(s[step, feature]))
            what = "a missing value (NaN)" if missed else "an infinite value (inf, or beyond float32's range)"
            hint = f" ({FILL_HINT})" if missing is not None and missed else ""
            raise DataError(f"{p}: sequence {i} holds {what} at step {step}, feature {feature}; expected finite "
                            f"values{hint}")
    labels = _npz_labels(p, y, len(seqs)) if y is not None else None
    return seqs, labels
