"""Input files for ``predict``: ``.npz``, ``.ts`` and ``.csv``, read with numpy and the standard library.

Python 3.8-compatible and torch-free: the device runs ``python -m attn_export.runtime`` on these.

* ``.npz``: DESIGN's input: ``x`` padded ``[N, T, F]`` with ``lengths`` ``[N]``, or concatenated
  ``[sum(T), F]`` with ``lengths``; optional ``y`` ``[N]`` (strings or integers). ``allow_pickle=False``.
* ``.ts``: a UEA/UCR file (``data.read_ts``); its class labels, when every series has one, are the truth.
* ``.csv`` (comma-separated, UTF-8, optional byte-order mark):

  - with a header holding a ``sequence`` column (the long format of labelled time series): one sequence
    per distinct value of that column (sequences in order of first appearance; its rows in file order, or
    by an optional ``time`` (or ``step``) column: a number, each once per sequence); an optional ``label``
    column gives the true label (the same on every row of a sequence); every other column is a feature,
    in file order;
  - otherwise: the whole file is one sequence, rows = steps, columns = features; the header row is
    optional (a first row that does not parse as numbers is a header); a ``label`` column (needs the
    header) gives the sequence's true label, and a ``time`` (or ``step``) column orders its rows;
  - a directory or a glob pattern (``data/*.csv``): every matching ``.csv``, sorted by name, each read
    as above.

  ``inf`` is refused (the backends refuse non-finite input). A missing value (an empty cell, ``nan``, ``?``,
  ``NA``...) is filled as the model's training data's were (its recipe's ``[data] missing``: ``ffill`` or
  ``zero``), or refused where that was ``error``; so are NaN gaps in ``.ts`` and ``.npz`` files.
"""

from __future__ import annotations

import contextlib
import csv
import glob
import io
import itertools
import math
import os
import re
import unicodedata
from array import array
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from .readers import (FILL_HINT, FILLING, FLOAT32_MAX, _read_ts, _show, fill_counted, fill_gaps, leading_gaps,
                      read_npz, read_text, refuse_nan_padding, strict_float)
from ..errors import DataError, empty_path, printable

__all__ = ["InputSet", "accuracy", "check_features", "check_labels", "check_width", "filled_note", "gap_words",
           "named_classes", "named_features", "read_csv", "read_input", "unused_truth"]

SEQUENCE_COLUMN = "sequence"
LABEL_COLUMN = "label"
TIME_COLUMNS = ("time", "step")  # orders a sequence's rows (long format only)


@dataclass(frozen=True)
class InputSet:
    """Sequences to predict: float32 ``[T_i, F]`` arrays, true labels (or None) and a name for each."""

    sequences: List[np.ndarray]
    labels: Optional[List[str]]
    ids: List[str]
    features: Optional[List[str]] = None  # a .csv header's feature columns, in order (None: not named)
    # (file, cells) of each .csv whose first row parsed as numbers and was read as a step: feature names that
    # are numbers ("400", "500") make a header no reader can tell from data (``check_features``)
    first_rows: List[Tuple[str, List[str]]] = field(default_factory=list)
    targets: bool = False  # ``labels`` are a .ts file's regression targets (@targetLabel true), not classes
    filled: int = 0  # missing values filled by the model's training policy (``read_input``'s ``missing``)
    leading: int = 0  # of those, ffill's that took a later value: none came before them in their channel


def unused_truth(data: InputSet, head: str, source: object) -> Optional[str]:
    """The note for true labels ``predict`` does not compare, a model without classes given them (found by
    attacking: dropped without a word); DataError for a classifier given regression targets, whose values
    would be "labels the model does not know"."""
    if data.labels is None:
        return None
    if head != "logits":
        return (f"{source}'s {'targets' if data.targets else 'true labels'} are not compared: the model has no "
                "classes (predict reports no error measure for a regression)")
    if data.targets:
        raise DataError(f"{source}: holds regression targets (@targetLabel true); expected class labels "
                        "(@classLabel true) or none, for a classifier")
    return None


def gap_words(missing: str, imported: bool = False) -> str:
    """What predict does with a gap in its input under the model's training policy ``missing``; ``imported``:
    a model ``load`` made, whose training data are not known (found by review: "trained with 'error'")."""
    if imported and missing == "error":
        return "refused (the model was imported by load: how its training data's gaps were filled is not known)"
    return ("refused (the model was trained with [data] missing = 'error')" if missing == "error" else
            f"filled by {missing!r}, as the training data's were ([data] missing)")


def named_features(names: Optional[Sequence[str]]) -> str:
    """A model's feature names as ``info`` and a bundle's README say them, or what stands for none."""
    return ("unnamed (a .csv's columns are read by position)" if names is None else
            f"{_names(names)} (a .csv header is matched to these names)")


def _filled(data: InputSet, missing: str) -> InputSet:
    """``data`` with its gaps (NaN: the readers leave them, refusing padding) filled by ``missing``, counted."""
    if missing not in FILLING:
        return data
    sequences, filled = fill_counted(data.sequences, missing)
    return replace(data, sequences=sequences, filled=filled,
                   leading=leading_gaps(data.sequences) if missing == "ffill" else 0)


def named_classes(labels: Sequence[str], binary: bool = False) -> str:
    """A model's class labels as ``info`` and a bundle's README say them: the first 12 and how many in all; a
    ``binary`` head's, with the class its one logit's sigmoid gives (found by attacking: not said anywhere)."""
    if binary:
        return (f"{printable(labels[0], 40)}, {printable(labels[1], 40)} (one logit: its sigmoid is the probability "
                f"of {printable(labels[1], 40)})")
    return ", ".join(printable(label, 40) for label in labels[:12]) + (
        f" ... ({len(labels)} in all)" if len(labels) > 12 else "")


def filled_note(data: InputSet, missing: str, streamed: bool = False) -> str:
    """predict's note on the gaps ``read_input`` filled by the model's policy ``missing``; ``streamed``: fed
    chunk by chunk, where a leading gap's later value is one a live stream would not have yet (found by review)."""
    later = (f"; {data.leading} of them, before any value of their feature, took the first later one, which a live "
             "stream would not have yet" if streamed and data.leading else "")
    return (f"{data.filled} missing value(s) in the input filled by [data] missing = {missing!r}, as the model's "
            f"training data's were{later}")


def _is_glob(text: str) -> bool:
    return any(c in text for c in "*?[")


def read_input(path: Union[str, Path], missing: str = "error") -> InputSet:
    """Read ``path`` by its suffix (``.npz``, ``.ts``, ``.csv``), or a directory / glob of CSV files.
    ``missing``: the model's training ``[data] missing`` policy (``ModelInfo.missing``): gaps are filled as
    its training data's were (``ffill``, ``zero``) or refused (``error``)."""
    text = str(path)
    empty = empty_path(text, "an .npz, .ts or .csv file, a directory or a glob of .csv")
    if empty is not None:
        raise DataError(f"INPUT is {empty}")
    p = Path(text)
    if p.is_dir() or (_is_glob(text) and not p.exists()):
        # a directory that exists is taken literally, "[" and all ("data[1]/"); only a pattern is a pattern
        # a directory's .csv files whatever the suffix's case, as a single file is read (found by attacking:
        # A.CSV beside b.csv was skipped without a word)
        pattern = str(Path(glob.escape(text)) / "*") if p.is_dir() else text
        files = sorted(Path(f) for f in glob.glob(pattern))
        files = [f for f in files if f.suffix.lower() == ".csv" and f.is_file()]
        if not files:
            raise DataError(f"{text}: no .csv files {'in this directory' if p.is_dir() else 'match this pattern'}")
        file_ids = [f.name for f in files]
        if len(set(file_ids)) < len(file_ids):  # found by attacking: d3/x.csv and d4/x.csv both read "x.csv"
            root = os.path.commonpath([str(f) for f in files])
            file_ids = [Path(os.path.relpath(f, root)).as_posix() for f in files]
        parts = [read_csv(f, file_id, missing=missing, fill=False) for f, file_id in zip(files, file_ids)]
        widths = [{int(q.shape[1]) for q in part.sequences} for part in parts]
        odd = next((k for k, w in enumerate(widths) if w != widths[0]), None)
        if odd is not None:  # found by attacking: "DIR: 4 or 5 features per step", naming no file
            raise DataError(f"{files[odd]}: {' or '.join(map(str, sorted(widths[odd])))} features per step, "
                            f"{files[0]} {' or '.join(map(str, sorted(widths[0])))}; expected the same columns in "
                            "every file")
        labelled = all(part.labels is not None for part in parts)
        # labels in some files only: every file's had been dropped, silently (found by attacking)
        unlabelled = [f for f, part in zip(files, parts) if part.labels is None]
        if unlabelled and len(unlabelled) < len(parts):
            with_labels = next(f for f, part in zip(files, parts) if part.labels is not None)
            raise DataError(f"{text}: {with_labels} has a '{LABEL_COLUMN}' column and {unlabelled[0]} has none; "
                            "expected true labels in every file or in none")
        named = list(dict.fromkeys(tuple(part.features) for part in parts if part.features is not None))
        if len(named) > 1:  # a file without a header is read by position; the headers given must agree
            raise DataError(f"{text}: the files' headers name different feature columns ({_names(named[0])} and "
                            f"{_names(named[1])}); expected the same columns in the same order in every file")
        ids = [i for part in parts for i in part.ids]
        seqs = [s for part in parts for s in part.sequences]
        if missing in FILLING:  # across the files: one sequence a file is a common layout (found by review)
            refuse_nan_padding(text, seqs, lambda i: f"sequence {_show(ids[i])}", PADDING_EXPECTED)
        return _filled(InputSet(seqs, [lab for part in parts for lab in part.labels or []] if labelled else None, ids,
                                list(named[0]) if named else None, [row for part in parts for row in part.first_rows]),
                       missing)
    if not p.exists():  # a FIFO or a device exists: its reader says what it is
        raise DataError(f"{text}: no such file; expected an .npz, .ts or .csv file, a directory or a glob of .csv")
    suffix = p.suffix.lower()
    if suffix == ".npz":
        seqs, labels = read_npz(p, missing, fill=False)
        return _filled(InputSet(list(seqs), labels, [str(i) for i in range(len(seqs))]), missing)
    if suffix == ".ts":
        ts = _read_ts(p, missing, fill=False)
        labelled = bool(ts.raw_labels) and all(ts.raw_labels)
        return _filled(InputSet(list(ts.sequences), list(ts.raw_labels) if labelled else None,
                                [str(i) for i in range(len(ts.sequences))], targets=ts.is_target), missing)
    if suffix == ".csv":
        return _filled(read_csv(p, missing=missing, fill=False), missing)
    raise DataError(f"{text}: unsupported file type {suffix or '(none)'!r}; expected .npz, .ts or .csv")


def _number(cell: str) -> Optional[float]:
    try:
        v = strict_float(cell)
    except ValueError:
        return None
    return v


_NUMBERISH = re.compile(r"[\s0-9.eE+-]+")  # a number's characters only: a malformed number, not a column's name
PEEK = 20  # data rows read before the rest: a column of text among them is sequence ids, not one typo
MISSING_WORDS = ("?", "na", "n/a", "nan", "-nan", "+nan", "null", "none")  # cells that are gaps, never a header's names
# what a training .csv may leave as a gap under [data] missing, case aside: the words above too (found by
# attacking: R's NA was "expected a finite number" under ffill)
MISSING_CELLS = ("",) + MISSING_WORDS
PADDING_EXPECTED = "each sequence's rows up to its last step (the rows after it removed)"


def read_csv(path: Union[str, Path], file_id: Optional[str] = None, missing: Optional[str] = None,
             fill: bool = True) -> InputSet:
    """One ``.csv`` file (see the module docstring); ``file_id``: one of many files, whose ids carry it (its
    file name, or its path where file names repeat); a file alone's ids are its file name or its sequences'.
    ``missing``: a
    training file's ``[data] missing`` policy (``readers.MISSING_POLICIES``): with ``ffill`` or ``zero`` a
    feature cell in ``MISSING_CELLS`` is a gap, filled within its sequence once the rows are in time order,
    as the ``.ts`` reader fills them (left NaN without ``fill``, NaN padding refused either way); None or
    ``error`` refuses it (``error`` with a hint that says what fills it)."""
    p = Path(path)
    # strict: a quote left open at the end, or text after a closing quote, is refused (found by attacking: an
    # unterminated quote was read as a cell running to the end of the file)
    text = read_text(str(p), "a .csv file")
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)

    def numbered() -> Iterator[Tuple[int, List[str]]]:  # (the line a row starts on, its cells), blank lines skipped
        start = 1
        try:
            for r in reader:
                if len(r) > 1 or (r and r[0].strip()):
                    yield start, r
                start = reader.line_num + 1  # a quoted cell may span lines
        except csv.Error as e:
            raise DataError(f"{p}:{start}: cannot read as CSV: {e}; expected a .csv file (every quote "
                            "closed, a separator after it)") from None

    # read row by row, never all rows' cells at once: that took 26x the file's size (found by attacking). Rows of
    # empty cells (",,,") before or after the data are a spreadsheet's, skipped; one between two steps had been
    # dropped without a word, the step lost (found by attacking): refused below
    rows = numbered()
    first_line, first = next(((n, r) for n, r in rows if any(c.strip() for c in r)), (0, []))
    if not first:
        raise DataError(f"{p}: empty; expected one row per step and one column per feature")
    if first[0].lstrip().startswith("#"):  # found by attacking: read as the header, then "expected 1 column"
        raise DataError(f"{p}:{first_line}: {_show(','.join(first).strip()[:40])} reads as a # comment, which CSV "
                        "has none of; expected the header row or the first step first (remove the comment lines)")
    ahead: List[Tuple[int, List[str]]] = []  # read up to PEEK rows of data: what a header and a column of text
    filled: List[Tuple[int, List[str]]] = []  # are told by
    unreadable: Optional[DataError] = None
    try:
        for n, r in rows:
            ahead.append((n, r))
            if any(c.strip() for c in r):
                filled.append((n, r))
                if len(filled) == PEEK:
                    break
    except DataError as e:  # said after what the first row tells: a ';' export's quoted "0,5" fails strict CSV,
        unreadable = e  # its rows then read leniently for that only
        lenient = (r for r in csv.reader(io.StringIO(text, newline="")) if any(c.strip() for c in r))
        with contextlib.suppress(csv.Error):
            filled = [(0, r) for r in itertools.islice(lenient, 1, PEEK + 1)]
    rows = itertools.chain(ahead, rows)
    header: Optional[List[str]] = None
    # a spreadsheet's ';' or tab export read as one column: the error quoted 'a;b;label' as a header's one
    # name and then failed on a number (found by attacking). The next row must split the same way: a one-column
    # file may name its column 'temp (C; sensor 1)' (found by review). Such an export with decimal commas
    # ("0,5") splits its data rows at them: the row's text, commas restored, still holds as many separators
    after = ",".join(filled[0][1] if filled else first)
    for sep, word in ((";", "semicolons"), ("\t", "tabs")):
        if len(first) == 1 and sep in first[0] and after.count(sep) == first[0].count(sep):
            decimal = " with decimal commas" if filled and len(filled[0][1]) > 1 else ""
            raise DataError(f"{p}:{first_line}: one column whose text holds {word} ({_show(first[0].strip())}), as in "
                            f"a {word[:-1]}-separated export{decimal}; expected columns separated by commas"
                            + (" and '.' as the decimal point" if decimal else ""))
    if unreadable is not None:
        raise unreadable
    # a word, not a missing value: a first row of numbers and '?' / NA is data (found by attacking: it was
    # taken for a header and dropped without a word)
    words = [c.strip() for c in first if c.strip() and _number(c) is None and c.strip().lower() not in MISSING_WORDS]
    numbers = [c.strip() for c in first if _number(c) is not None]
    # numbers beside a cell of a number's characters that is none ('-', '1.2e'): a data row with a typo or a
    # missing-value mark, not a header (found by attacking: '0.5,-,0.3' was taken for one and the step dropped
    # without a word); numbers beside names ('temp,400,500') are a header whose features are wavelengths
    malformed = [w for w in words if _NUMBERISH.fullmatch(w)]
    if numbers and malformed:
        raise DataError(f"{p}:{first_line}: {_show(malformed[0])} is not a number, beside numbers "
                        f"({', '.join(_show(c) for c in numbers[:3])}); expected a finite number there (a step), or "
                        "a header of names")
    if words:
        header = [c.strip() for c in first]
        if "" in header:  # a spreadsheet's trailing comma, pandas' unnamed index: not a feature to train on
            raise DataError(f"{p}:{first_line}: header column {header.index('') + 1} has no name; expected a name "
                            "for every column (remove an unnamed index or a trailing comma)")
        # a column named twice: the second 'label' was trained on as a feature, and two features of one
        # name cannot be matched by name at predict (found by attacking: both were accepted)
        lowered = [h.lower() for h in header]
        for i, name in enumerate(header):
            j = next((j for j in range(i) if header[j] == name or (lowered[i] == lowered[j] and lowered[i] in (
                SEQUENCE_COLUMN, LABEL_COLUMN, *TIME_COLUMNS))), None)
            if j is not None:
                raise DataError(f"{p}:{first_line}: header columns {j + 1} and {i + 1} are both named "
                                f"{_show(name)}; expected each column named once")
        if not filled:
            raise DataError(f"{p}: a header and no data rows; expected one row per step")
    else:
        rows = itertools.chain([(first_line, first)], rows)
        filled.insert(0, (first_line, first))
    width = len(header) if header is not None else len(first)
    lowered = [h.lower() for h in header] if header is not None else []
    group_col = lowered.index(SEQUENCE_COLUMN) if SEQUENCE_COLUMN in lowered else None
    label_col = lowered.index(LABEL_COLUMN) if LABEL_COLUMN in lowered else None
    named = [lowered.index(t) for t in TIME_COLUMNS if t in lowered]
    if len(named) > 1:  # found by attacking: the first ordered the rows, the second was trained on as a feature
        raise DataError(f"{p}:{first_line}: header names both {' and '.join(_show((header or [])[i]) for i in named)}; "
                        "expected one column of each step's time (the other renamed, or removed)")
    # a one-sequence file's too (found by attacking: its time column was read as a feature, its rows unordered)
    time_col = named[0] if named else None
    feature_cols = [i for i in range(width) if i not in (group_col, label_col, time_col)]
    if not feature_cols:
        raise DataError(f"{p}: no feature columns; expected at least one besides 'sequence', 'time' and 'label'")

    groups: Dict[str, "array[float]"] = {}  # each sequence's values, row after row, in float32 as they end up
    group_labels: Dict[str, str] = {}
    # sequence -> time -> (line, its text), when a time column orders the rows; each sequence's times in row order
    times: Dict[str, Dict[float, Tuple[int, str]]] = {}
    stamps: Dict[str, "array[float]"] = {}
    empty = None  # the line of a row of empty cells not yet followed by data: refused if a step comes after it
    for lineno, row in rows:
        if not any(c.strip() for c in row):
            empty = lineno if empty is None else empty
            continue
        if empty is not None:
            raise DataError(f"{p}:{empty}: a row of empty cells between data rows, a step with no values; expected "
                            "a value in every cell (or the row removed)" + (
                                "; a step of gaps is NA in each feature's cell" if missing in FILLING else ""))
        if len(row) != width:
            raise DataError(f"{p}:{lineno}: {len(row)} columns; expected {width}"
                            + (" (as in the header)" if header is not None else f" (as in line {first_line})"))
        key = row[group_col].strip() if group_col is not None else ""
        if group_col is not None and not key:  # rows without one were one sequence of id '' (found by attacking)
            raise DataError(f"{p}:{lineno}: empty {header[group_col] if header else SEQUENCE_COLUMN} id; expected "
                            "the id of its sequence on every row")
        values = []
        for i in feature_cols:
            if missing in FILLING and row[i].strip().lower() in MISSING_CELLS:
                values.append(math.nan)
                continue
            v = _number(row[i])
            if v is None or not math.isfinite(v) or abs(v) > FLOAT32_MAX:
                name = printable(header[i], 40) if header is not None else f"column {i + 1}"
                gap = missing is not None and row[i].strip().lower() in MISSING_CELLS
                sample = [r[i] for _, r in filled[:PEEK] if len(r) == width]  # a column of text, not one typo (review)
                textual = (not gap and header is not None and v is None and len(sample) > 1
                           and sum(_number(c) is None for c in sample) >= 0.8 * len(sample))
                expected = ("a number within float32's range (±3.4e38)" if v is not None and math.isfinite(v)
                            else "a finite number")
                raise DataError(f"{p}:{lineno}: {name} = {_show(row[i].strip())}; expected {expected}" + (
                    f" ({FILL_HINT})" if gap else
                    # text in a feature column of a file with no 'sequence' column: its ids, most likely
                    f" (a column of sequence ids is named '{SEQUENCE_COLUMN}', and a column of labels "
                    f"'{LABEL_COLUMN}')" if textual and group_col is None else
                    # found by attacking: labels under another name ('class', 'target') got no hint
                    f" (a column of labels is named '{LABEL_COLUMN}'; a column of text is no feature)" if textual
                    else ""))
            values.append(v)
        if time_col is not None:
            t = _number(row[time_col])
            if t is None or not math.isfinite(t):
                column = printable(header[time_col], 40) if header else "time"
                raise DataError(f"{p}:{lineno}: {column} = {_show(row[time_col].strip())}; expected a finite number "
                                "(the step's time)")
            seen = times.setdefault(key, {})
            if t in seen:
                then, text = seen[t]
                where = f"sequence {_show(key)}" if group_col is not None else "the file"
                if text != row[time_col].strip():  # found by attacking: 1e17 and 100000000000000001 "appear twice"
                    raise DataError(f"{p}:{lineno}: time {_show(row[time_col].strip())[1:-1]} and time "
                                    f"{_show(text)[1:-1]} (line {then}) of {where} are one number in float64 (about "
                                    "16 significant digits); expected times that differ there (or a step number)")
                raise DataError(f"{p}:{lineno}: time {_show(row[time_col].strip())[1:-1]} appears twice in {where} "
                                f"(line {then}); expected each time once per sequence")
            seen[t] = (lineno, row[time_col].strip())
            stamps.setdefault(key, array("d")).append(t)
        groups.setdefault(key, array("f")).extend(values)
        if label_col is not None:
            label = row[label_col].strip()
            if not label:
                raise DataError(f"{p}:{lineno}: empty label; expected a label on every row (or no label column)")
            if group_labels.setdefault(key, label) != label:
                where = f"sequence {_show(key)}" if group_col is not None else "the file (one sequence)"
                raise DataError(f"{p}:{lineno}: label {_show(label)} differs from {_show(group_labels[key])} earlier "
                                f"in {where}; expected one label per sequence")
    keys = list(groups)
    seqs = [np.frombuffer(groups[k], np.float32).reshape(-1, len(feature_cols)) for k in keys]
    if time_col is not None:  # each sequence's rows in the order of their times
        seqs = [s[np.argsort(np.frombuffer(stamps[k], np.float64), kind="stable")] for k, s in zip(keys, seqs)]
    seqs = [np.array(s) for s in seqs]  # writable, its own memory
    if missing in FILLING:
        refuse_nan_padding(str(p), seqs,
                           lambda i: f"sequence {_show(keys[i])}" if group_col is not None else "the file",
                           PADDING_EXPECTED)
        if fill:
            seqs = [fill_gaps(s, missing) for s in seqs]
    if group_col is None:
        ids = [file_id or p.name]
    else:
        ids = [f"{file_id}:{k}" if file_id is not None else k for k in keys]
    labels = [group_labels[k] for k in keys] if label_col is not None else None
    return InputSet(seqs, labels, ids, [header[i] for i in feature_cols] if header is not None else None,
                    [] if header is not None else [(str(p), [c.strip() for c in first])])


def _names(names: Optional[Sequence[str]]) -> str:
    return "unnamed" if names is None else ", ".join(printable(n, 40) for n in names[:12]) + (
        " ..." if len(names) > 12 else "")


def check_width(sequences: Sequence[np.ndarray], features: int, source: object) -> None:
    """DataError naming ``source`` when its steps do not hold the model's ``features`` values each."""
    widths = sorted({int(s.shape[1]) for s in sequences if s.ndim == 2})
    if widths and widths != [features]:
        raise DataError(f"{source}: {' or '.join(map(str, widths))} features per step; expected {features}, the "
                        "model's input_size")


def check_features(given: Optional[Sequence[str]], expected: Optional[Sequence[str]], source: object,
                   first_rows: Sequence[Tuple[str, List[str]]] = ()) -> None:
    """DataError when ``source``'s named feature columns are not the model's, in its order (a column moved or
    renamed would be read as another feature, silently), names compared as the other columns' are (case
    aside); nothing to check when either side has no names. ``first_rows`` (``InputSet.first_rows``): a
    first row read as a step that holds the model's feature names, numbers such as "400", is a header no
    reader can tell from data (found by attacking: read as a step, a swapped one accepted)."""
    # case aside except for a name whose case alone tells it from another of the model's (found by attacking:
    # columns 'a' and 'A' swapped were accepted)
    folds = Counter(n.strip().casefold() for n in expected or ())

    def key(name: str) -> str:
        return name.strip() if folds[name.strip().casefold()] > 1 else name.strip().casefold()

    if given is not None and expected is not None and [key(n) for n in given] != [key(n) for n in expected]:
        # what differs, said: past 12 names the two lists printed alike (found by review)
        extra = [n for n in given if key(n) not in {key(m) for m in expected}]
        missing = [n for n in expected if key(n) not in {key(m) for m in given}]
        differs = [f"{what}: {_names(names)}" for what, names in (("not the model's", extra), ("missing", missing))
                   if names]
        raise DataError(f"{source}: feature columns {_names(given)}; expected {_names(expected)} in this order "
                        "(the training data's columns)" + ("; " + "; ".join(differs) if differs else ""))
    names = [_number(n) for n in expected or ()]
    if not names or None in names:
        return  # a name that is not a number is never a step's value
    for path, cells in first_rows:
        values = [_number(c) for c in cells]
        if None not in values and sorted(values) == sorted(names):  # type: ignore[type-var]
            raise DataError(f"{path}: its first row {_names(cells)} holds the model's feature names, numbers that read "
                            "as a step; expected no header row in such a file, or a header with a 'sequence' column "
                            f"(the long format), its columns in the training order: {_names(expected)}")


def spelling_twin(label: str, others: Sequence[str]) -> Optional[Tuple[str, str]]:
    """The one of ``others`` that is ``label`` spelt another way, and how: its very text in another Unicode
    normalisation ("é" as one code point or as "e" and a combining accent: it prints the same, and is another
    string), or the same number written another way ("1" and "1.0", as a .ts and an .npz may write one class).
    Found by attacking: such a label was "not the model's", naming nothing of why."""
    nfc = unicodedata.normalize("NFC", label)
    twin = next((o for o in others if o != label and unicodedata.normalize("NFC", o) == nfc), None)
    if twin is not None:
        return twin, "in another Unicode normalisation"
    value = _number(label)
    finite = value is not None and math.isfinite(value)
    twin = next((o for o in others if o != label and finite and _number(o) == value), None)
    return None if twin is None else (twin, "written as another number")


def normalised_twins(labels: Sequence[str]) -> Optional[Tuple[str, str]]:
    """The first two of ``labels`` that are one text in two Unicode normalisations (as ``spelling_twin`` finds
    one), in one pass."""
    seen: Dict[str, str] = {}
    for label in labels:
        first = seen.setdefault(unicodedata.normalize("NFC", label), label)
        if first != label:
            return first, label
    return None


def check_labels(truth: Optional[Sequence[str]], known: Sequence[str], source: object) -> None:
    """DataError (bad input) naming ``source`` when its true labels hold one the model does not know (its accuracy
    would count every such sequence wrong, silently)."""
    unknown = sorted(set(truth or ()) - set(known))
    if unknown and known:
        twin = next(((u, t) for u in unknown for t in [spelling_twin(u, known)] if t is not None), None)
        if twin is not None:
            raise DataError(f"{source}: the true label {printable(twin[0], 40)} is the model's "
                            f"{printable(twin[1][0], 40)} {twin[1][1]}; expected the model's spelling (labels are "
                            "compared as text)")
        shown = ", ".join(printable(u, 40) for u in unknown[:5]) + (f" (and {len(unknown) - 5} more)"
                                                                  if len(unknown) > 5 else "")
        raise DataError(f"{source}: the true labels {shown} are not the model's; expected labels among "
                        + ", ".join(printable(k, 40) for k in known[:20]) + (" ..." if len(known) > 20 else ""))


def accuracy(predicted: Sequence[str], truth: Sequence[str]) -> Tuple[float, int]:
    """(share of ``predicted`` equal to ``truth``, number correct)."""
    correct = sum(1 for a, b in zip(predicted, truth) if a == b)
    return (correct / len(truth) if truth else float("nan")), correct
