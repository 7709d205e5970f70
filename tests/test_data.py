"""attn_export.data: .ts / .npz readers, labels, the synthetic task, splits, normalisation, padding."""

from __future__ import annotations

import glob
import importlib.util
import json
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from conftest import cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from attn_export import data as D
from attn_export.data import (
    Normalization,
    SequenceSet,
    encode_labels,
    load_splits,
    locate_named,
    pad,
    read_npz,
    read_ts,
    synthetic,
)
from attn_export.errors import DataError, NotAvailable

_SPEC = importlib.util.find_spec("sktime")
needs_sktime = pytest.mark.skipif(
    _SPEC is None, reason="sktime (the UEA/UCR .ts files) not installed: pip install --no-deps sktime==1.2.0"
)


def cfg(**kw: Any) -> SimpleNamespace:
    """Stand-in for config.DataConfig (same fields)."""
    base = dict(name="synthetic", train="", test="", test_fraction=0.25, val_fraction=0.2, missing="error",
                positive="", seed=0, n_train=200, n_test=100, features=5, classes=4, min_len=4, max_len=20)
    base.update(kw)
    return SimpleNamespace(**base)


def write(tmp_path: Path, text: str, name: str = "f.ts", encoding: str = "utf-8") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding=encoding)
    return p


def one_line_error(exc: pytest.ExceptionInfo[DataError]) -> str:
    msg = str(exc.value)
    assert "\n" not in msg and msg
    return msg


# ------------------------------------------------------------------------------------------ real data


@needs_sktime
def test_japanese_vowels_official_files() -> None:
    train_path, test_path = locate_named("japanese-vowels")
    assert train_path.name == "JapaneseVowels_TRAIN.ts" and test_path.name == "JapaneseVowels_TEST.ts"
    tr, tr_raw, declared = read_ts(train_path)
    te, te_raw, _ = read_ts(test_path)
    assert (len(tr), len(te)) == (270, 370)
    assert declared == [str(i) for i in range(1, 10)]
    assert all(s.dtype == np.float32 and s.shape[1] == 12 for s in tr + te)
    lengths = [s.shape[0] for s in tr + te]
    assert (min(lengths), max(lengths)) == (7, 29)
    # first value of the first series, channel 1 and 2, as written in the file
    assert tr[0][0, 0] == np.float32(1.860936) and tr[0][0, 1] == np.float32(-0.207383)
    y, labels = encode_labels(tr_raw, declared)
    assert labels == tuple("123456789") and np.bincount(y).tolist() == [30] * 9


@needs_sktime
def test_basic_motions_official_files_keep_declared_order() -> None:
    train_path, test_path = locate_named("basic-motions")
    for path in (train_path, test_path):
        seqs, raw, declared = read_ts(path)
        assert len(seqs) == 40 and {s.shape for s in seqs} == {(100, 6)}
        assert declared == ["Standing", "Running", "Walking", "Badminton"]
        y, labels = encode_labels(raw, declared)
        assert labels == ("Standing", "Running", "Walking", "Badminton")  # not alphabetical
        assert np.bincount(y).tolist() == [10, 10, 10, 10]


@needs_sktime
def test_every_bundled_archive_file_reads() -> None:
    assert _SPEC is not None and _SPEC.submodule_search_locations
    root = list(_SPEC.submodule_search_locations)[0]
    files = sorted(glob.glob(os.path.join(root, "datasets", "data", "*", "*.ts")))
    assert len(files) >= 10
    for f in files:  # includes '%' comments (UnitTest), a BOM inside a comment (PLAID), lower-case keys
        seqs, raw, _ = read_ts(f)
        assert len(seqs) == len(raw) > 0 and all(np.isfinite(s).all() for s in seqs)


@needs_sktime
def test_load_splits_named_dataset() -> None:
    s = load_splits(cfg(name="japanese-vowels", val_fraction=0.2, seed=3))
    assert s.labels == tuple("123456789")
    assert (s.train.n, s.val.n, s.test.n) == (216, 54, 370)
    assert s.val.class_counts().tolist() == [6] * 9  # stratified
    assert s.source.startswith("JapaneseVowels (sktime ") and s.train.features == 12
    again = load_splits(cfg(name="japanese-vowels", val_fraction=0.2, seed=3))
    assert all(np.array_equal(a, b) for a, b in zip(s.val.sequences, again.val.sequences))
    other = load_splits(cfg(name="japanese-vowels", val_fraction=0.2, seed=4))
    assert not all(np.array_equal(a, b) for a, b in zip(s.val.sequences, other.val.sequences))


def test_locate_named_without_sktime_is_not_available(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(D.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(NotAvailable) as e:
        locate_named("japanese-vowels")
    assert e.value.exit_code == 3 and "pip install --no-deps sktime==1.2.0" in str(e.value)
    with pytest.raises(DataError, match="basic-motions"):
        locate_named("nope")


# ------------------------------------------------------------------------------------------ .ts reader

HEADER = "@problemName T\n@dimensions 2\n@classLabel true a b\n@data\n"


def test_ts_bom_lowercase_keys_ragged_no_equal_length(tmp_path: Path) -> None:
    text = (
        "# comment\n\n@problemname X\n@timestamps false\n@UNIVARIATE false\n@DIMENSIONS 2\n"
        "@classlabel true 10 9\n@data\n1,2,3:4,5,6:9\n  7:8 :10\n# a comment among series\n1.5,-2e3:0,nan:9\n"
    )
    p = write(tmp_path, text, encoding="utf-8-sig")
    assert p.read_bytes()[:3] == b"\xef\xbb\xbf"
    seqs, raw, declared = read_ts(p, missing="zero")
    assert declared == ["10", "9"] and raw == ["9", "10", "9"]
    assert [s.shape for s in seqs] == [(3, 2), (1, 2), (2, 2)]
    np.testing.assert_array_equal(seqs[0], [[1, 4], [2, 5], [3, 6]])
    np.testing.assert_array_equal(seqs[2], [[1.5, 0], [-2000, 0]])
    y, labels = encode_labels(raw, declared)
    assert labels == ("10", "9") and y.tolist() == [1, 0, 1]  # declared order, not numeric order


def test_ts_missing_policies(tmp_path: Path) -> None:
    p = write(tmp_path, HEADER + "1,2,3:4,5,6:a\n?,2,?,NaN,5:?,?,?,?,?:b\n")
    with pytest.raises(DataError) as e:
        read_ts(p)
    msg = one_line_error(e)
    assert f"{p}:6:" in msg and "channel 1" in msg and 'missing = "ffill" or "zero"' in msg
    ffill, _, _ = read_ts(p, missing="ffill")
    np.testing.assert_array_equal(ffill[1][:, 0], [2, 2, 2, 2, 5])  # leading back-filled, gaps forward-filled
    np.testing.assert_array_equal(ffill[1][:, 1], [0, 0, 0, 0, 0])  # channel entirely missing -> 0
    np.testing.assert_array_equal(ffill[0], [[1, 4], [2, 5], [3, 6]])
    zero, _, _ = read_ts(p, missing="zero")
    np.testing.assert_array_equal(zero[1][:, 0], [0, 2, 0, 0, 5])
    with pytest.raises(DataError, match="missing"):
        read_ts(p, missing="drop")


def test_ts_channel_count_mismatch_names_line(tmp_path: Path) -> None:
    p = write(tmp_path, HEADER + "1,2:3,4:a\n1,2:3,4:5,6:b\n")
    with pytest.raises(DataError) as e:
        read_ts(p)
    msg = one_line_error(e)
    assert msg.startswith(f"{p}:6: 3 channels; expected 2")
    # no @dimensions: the first series sets the count
    q = write(tmp_path, "@classLabel true a b\n@data\n1:2:a\n\n1:b\n", "g.ts")
    with pytest.raises(DataError, match=r"g\.ts:5: 1 channels; expected 2 \(as in line 3\)"):
        read_ts(q)


def test_ts_malformed_values_and_structure(tmp_path: Path) -> None:
    cases = {
        "1,2:3,x4:a": ":5: non-numeric value 'x4' in channel 2",
        "1,,2:3,4,5:a": ":5: an empty value in channel 1",
        "1,2,3:4,5:a": ":5: channel 2 has 2 values but channel 1 has 3",
        ":3,4:a": ":5: channel 2 has 2 values but channel 1 has 0",  # found by a user: it said "has 1"
        "1,2:3,4:c": ":5: class label 'c' is not in @classLabel; expected one of: 'a', 'b'",
        # found by attacking: "spk one ... expected one of: spk one spk,two" read as if it were in the list
        "1,2:3,4:b c": ":5: class label 'b c' is not in @classLabel (@classLabel's names are split at whitespace",
        "1,inf:3,4:a": ":5: value 'inf' in channel 1 is not a finite float32",
        "1,1e39:3,4:a": ":5: value '1e39' in channel 1 is not a finite float32",
        "1,2:3,4:": ":5: empty label",
    }
    for i, (line, expected) in enumerate(cases.items()):
        p = write(tmp_path, HEADER + line + "\n", f"c{i}.ts")
        with pytest.raises(DataError) as e:
            read_ts(p, missing="ffill")
        assert str(p) + expected in one_line_error(e), line
    for i, text in enumerate(["@classLabel true a\n1,2:a\n", "", "@dimensions 1\n@data\n\n", "@timeStamps true\n@data\n",
                              "@dimensions two\n@data\n1:a\n", "\ufeff\n@data\n", "1,2,3\n"]):
        p = write(tmp_path, text, f"s{i}.ts")
        with pytest.raises(DataError) as e:
            read_ts(p)
        one_line_error(e)
    with pytest.raises(DataError, match="no @data"):
        read_ts(write(tmp_path, "@problemName x\n@classLabel true a\n", "nodata.ts"))
    with pytest.raises(DataError, match="cannot read"):
        read_ts(tmp_path / "absent.ts")
    p = tmp_path / "latin1.ts"
    p.write_bytes(b"@data\n1:\xe9\n")
    with pytest.raises(DataError, match="not UTF-8"):
        read_ts(p)


def test_ts_headers_that_contradict_the_data_or_each_other_are_refused_by_line(tmp_path: Path) -> None:
    """Found by attacking: @univariate true beside @dimensions 6, a @seriesLength the data did not have, a
    second @classLabel line with other names (the last silently won) and a class declared twice were all
    read (the last by predict; train refused it without a line). Each is now one line naming it."""
    cases = {
        "@univariate true\n@dimensions 2\n@data\n1:2:a\n": ":3: @univariate true but @dimensions 2",
        "@seriesLength 3\n@classLabel true a\n@data\n1,2,3:a\n1,2:a\n": ":5: 2 steps; expected 3 (@seriesLength)",
        "@equalLength true\n@classLabel true a\n@data\n1,2,3:a\n\n1,2:a\n":
            ":6: 2 steps; expected 3 as in the first series (@equalLength true)",
        "@classLabel true a b a\n@data\n1:a\n": ":1: declared class labels repeat 'a'; expected each label once",
        "@classLabel true a b\n# order matters: it is the class index\n@classLabel true b a\n@data\n1:a\n":
            ":3: @classLabel 'true b a' contradicts line 1's 'true a b'; expected each header once",
        "@dimensions 1\n@DIMENSIONS 2\n@data\n1:a\n": ":2: @DIMENSIONS '2' contradicts line 1's '1'",
        "@seriesLength 0\n@data\n1:a\n": ":1: @seriesLength '0'; expected a positive integer",
        # found by attacking: blamed as "no label field"
        "@classLabel true a\n@data\n1:a\n@dimensions 1\n2:a\n":
            ":4: header '@dimensions' after @data; expected every @key header before @data",
    }
    for i, (text, expected) in enumerate(cases.items()):
        p = write(tmp_path, text, f"h{i}.ts")
        with pytest.raises(DataError) as e:
            read_ts(p)
        assert one_line_error(e).startswith(str(p) + expected), text
    # what the format allows still reads: @seriesLength of a file not of equal length, a header repeated with
    # the same value (case of true/false aside), a repeated @problemName (the archive's UnitTest_TEST.ts)
    for i, (text, lengths) in enumerate([
            ("@equalLength false\n@seriesLength 3\n@classLabel true a\n@data\n1,2,3:a\n1,2:a\n", [3, 2]),
            ("@univariate true\n@univariate TRUE\n@dimensions 1\n@dimensions 01\n@classLabel true a\n@data\n1,2:a\n",
             [2]),
            ("@problemName x\n@problemName y\n@seriesLength 2\n@equalLength true\n@data\n1,2:a\n3,4:a\n", [2, 2])]):
        seqs, _, _ = read_ts(write(tmp_path, text, f"ok{i}.ts"))
        assert [len(s) for s in seqs] == lengths, text


def test_ts_label_field_cases(tmp_path: Path) -> None:
    seqs, raw, declared = read_ts(write(tmp_path, "@classLabel false\n@data\n1,2:3,4\n5:6\n"))
    assert raw == ["", ""] and declared is None and [s.shape for s in seqs] == [(2, 2), (1, 2)]
    with pytest.raises(DataError, match="no class labels"):
        load_splits(cfg(name="files", train=str(tmp_path / "f.ts")))
    target = write(tmp_path, "@targetLabel true\n@data\n1,2,3:22.5\n4,5,6:1.5\n", "t.ts")
    seqs, raw, declared = read_ts(target)
    assert raw == ["22.5", "1.5"] and declared is None and seqs[0].shape == (3, 1)
    with pytest.raises(DataError, match="regression targets"):
        load_splits(cfg(name="files", train=str(target)))
    # no label header: inferred from @dimensions
    seqs, raw, _ = read_ts(write(tmp_path, "@dimensions 2\n@data\n1,2:3,4:x\n", "n.ts"))
    assert raw == ["x"] and seqs[0].shape == (2, 2)


# ------------------------------------------------------------------------------------------ .npz reader


def test_npz_padded_and_concatenated_agree(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    seqs = [rng.normal(size=(t, 3)).astype(np.float32) for t in (4, 1, 7)]
    x, lengths = pad(seqs, fill=np.nan)  # padding may hold anything, even NaN
    np.savez(tmp_path / "padded.npz", x=x, lengths=lengths, y=np.array(["b", "a", "b"]))
    np.savez(tmp_path / "concat.npz", x=np.concatenate(seqs).astype(np.float64), lengths=lengths.astype(np.int32),
             y=np.array([2, 10, 2]))
    a, ya = read_npz(tmp_path / "padded.npz")
    b, yb = read_npz(tmp_path / "concat.npz")
    assert ya == ["b", "a", "b"] and yb == ["2", "10", "2"]
    for s, u, v in zip(seqs, a, b):
        assert u.dtype == v.dtype == np.float32
        np.testing.assert_array_equal(u, s)
        np.testing.assert_array_equal(v, s)
    np.savez(tmp_path / "nolen.npz", x=x[:, :1])  # padded form without lengths: every row is T long
    c, yc = read_npz(tmp_path / "nolen.npz")
    assert yc is None and [s.shape for s in c] == [(1, 3)] * 3


def test_npz_refusals(tmp_path: Path) -> None:
    x = np.zeros((2, 5, 3), np.float32)
    bad = {
        "obj": dict(x=np.array([np.zeros(2), np.zeros(3)], dtype=object), lengths=np.array([2, 3])),
        "len0": dict(x=x, lengths=np.array([0, 5])),
        "lenT": dict(x=x, lengths=np.array([5, 6])),
        "lenN": dict(x=x, lengths=np.array([5])),
        "sum": dict(x=np.zeros((9, 3)), lengths=np.array([5, 5])),
        "nolen2d": dict(x=np.zeros((9, 3))),
        "rank": dict(x=np.zeros(9), lengths=np.array([9])),
        "nox": dict(lengths=np.array([1])),
        "nan": dict(x=np.where(np.arange(30).reshape(2, 5, 3) == 4, np.nan, 0.0), lengths=np.array([5, 5])),
        "big": dict(x=np.full((1, 2, 1), 1e300), lengths=np.array([2])),
        "ylen": dict(x=x, lengths=np.array([5, 5]), y=np.array([1])),
        "yfloat": dict(x=x, lengths=np.array([5, 5]), y=np.array([0.5, 1.0])),
        "strx": dict(x=np.array([["a"]]), lengths=np.array([1])),
    }
    expected = {"obj": "pickling", "len0": "lengths[0] = 0", "lenT": "lengths[1] = 6; expected 1..5",
                "lenN": "1 entries", "sum": "sum to 10", "nolen2d": "no lengths", "rank": "shape (9,)",
                "nox": "no array 'x'", "nan": "sequence 0 holds a missing value (NaN)",
                "big": "an infinite value (inf, or beyond float32's range)",
                "ylen": "y has shape", "yfloat": "y[0] is 0.5, not a whole number; expected class labels",
                "strx": "dtype <U1"}
    for name, arrays in bad.items():
        path = tmp_path / f"{name}.npz"
        np.savez(path, allow_pickle=True, **arrays)
        with pytest.raises(DataError) as e:
            read_npz(path)
        assert expected[name] in one_line_error(e), name
    np.save(tmp_path / "single.npy", x)
    (tmp_path / "junk.npz").write_bytes(b"not a zip at all")
    for f in ("single.npy", "junk.npz", "missing.npz"):
        with pytest.raises(DataError) as e:
            read_npz(tmp_path / f)
        one_line_error(e)


# ------------------------------------------------------------------------------------------ labels


def test_encode_labels() -> None:
    y, labels = encode_labels(["10", "2", "9", "2", "1.5"], None)
    assert labels == ("1.5", "2", "9", "10") and y.tolist() == [3, 1, 2, 1, 0] and y.dtype == np.int64
    _, labels = encode_labels(["b", "10", "a", "9"], None)
    assert labels == ("9", "10", "a", "b")  # numeric first, numerically; then strings
    y, labels = encode_labels(["c", "a"], ["c", "b", "a"])
    assert labels == ("c", "b", "a") and y.tolist() == [0, 2]
    with pytest.raises(DataError, match="'d'.*expected one of: c, b, a"):
        encode_labels(["c", "d"], ["c", "b", "a"])
    with pytest.raises(DataError, match="repeat"):
        encode_labels(["a"], ["a", "a"])


# ------------------------------------------------------------------------------------------ synthetic


def test_synthetic_deterministic_bounded_balanced() -> None:
    a = synthetic(103, 6, 4, 5, 17, seed=7)
    b = synthetic(103, 6, 4, 5, 17, seed=7)
    c = synthetic(103, 6, 4, 5, 17, seed=8)
    d = synthetic(103, 6, 4, 5, 17, seed=7, stream=1)
    assert all(np.array_equal(u, v) for u, v in zip(a.sequences, b.sequences)) and np.array_equal(a.y, b.y)
    for other in (c, d):
        assert not np.array_equal(pad(a.sequences, 17)[0], pad(other.sequences, 17)[0])
    assert a.labels == ("0", "1", "2", "3") and a.features == 6
    assert a.lengths.min() >= 5 and a.lengths.max() <= 17 and len(set(a.lengths.tolist())) > 5
    counts = a.class_counts()
    assert counts.sum() == 103 and counts.max() - counts.min() <= 1
    assert all(s.dtype == np.float32 for s in a.sequences)


def test_synthetic_label_lives_in_the_marked_steps() -> None:
    """An oracle reading only the marked steps (channel 0 spike) is near perfect; a time-average is not."""
    s = synthetic(400, 6, 5, 10, 40, seed=1)
    protos = D._prototypes(6, 5)

    def nearest(v: np.ndarray) -> int:
        return int(np.argmin(np.linalg.norm(protos - v, axis=1)))

    marked = [nearest(x[int(np.argmax(x[:, 0])), 1:]) for x in s.sequences]
    averaged = [nearest(x[:, 1:].mean(axis=0) * len(x)) for x in s.sequences]  # the signal, diluted in noise
    assert np.mean(np.array(marked) == s.y) > 0.95
    assert np.mean(np.array(averaged) == s.y) < np.mean(np.array(marked) == s.y) - 0.1
    with pytest.raises(DataError, match="features"):
        synthetic(10, 1, 2, 1, 5, 0)


# ------------------------------------------------------------------------------------------ splits


def test_load_splits_synthetic() -> None:
    s = load_splits(cfg(val_fraction=0.39, n_train=200, n_test=60))
    assert (s.train.n + s.val.n, s.test.n) == (200, 60)
    assert s.val.class_counts().tolist() == [20, 20, 20, 20] and s.labels == ("0", "1", "2", "3")  # 50 * 0.39
    train_rows = {x.tobytes() for x in s.train.sequences}
    assert not train_rows & {x.tobytes() for x in s.val.sequences}
    assert not train_rows & {x.tobytes() for x in s.test.sequences}  # test is a different stream
    z = load_splits(cfg(val_fraction=0.0))
    assert z.val.n == 0 and z.val.labels == z.labels and z.val.features == 5 and z.train.n == 200


def test_the_training_file_as_the_test_file_is_refused_and_shared_sequences_are_said(tmp_path: Path) -> None:
    """Found by attacking: the training file named as the test file too (or a test file inside the training
    one) trained with exit 0, its "held-out" accuracy measured on the sequences it learnt. The same file (by
    path or bytes) is refused; test sequences equal to training ones are counted, and train says so (data of
    few distinct values shares some by chance: found by review)."""
    lines = [f"{i},{i + 1}:{-i},0:{lab}" for i, lab in enumerate(["a", "b"] * 10)]
    train = write(tmp_path, "@data\n" + "\n".join(lines) + "\n", "tr.ts")
    copy = write(tmp_path, "@data\n" + "\n".join(lines) + "\n", "copy.ts")
    for test in (train, copy):
        with pytest.raises(DataError) as same:
            load_splits(cfg(name="files", train=str(train), test=str(test)))
        assert str(same.value) == (f"{test} is the training data {train} again; expected a test split held out from "
                                   "training (or no data.test: test_fraction of the training file is held out)")
    inside = write(tmp_path, "@data\n" + "\n".join(lines[5:7] + ["100,101:-100,0:a"]) + "\n", "te.ts")
    assert load_splits(cfg(name="files", train=str(train), test=str(inside))).shared == 2
    apart = write(tmp_path, "@data\n100,101:-100,0:a\n200,1:0,0:b\n", "apart.ts")
    assert load_splits(cfg(name="files", train=str(train), test=str(apart))).shared == 0
    result = cli("train", str(tmp_path / "m"), "--set", "data.name=files", "--set", f"data.train={train}", "--set",
                 f"data.test={inside}", "--set", "data.val_fraction=0", "--set", "model.hidden_size=4", "--set",
                 "train.epochs=1")
    assert result.returncode == 0, result.stderr
    assert "note: 2 of 3 test sequences are equal to training ones: the test accuracy is not wholly held out" in \
        " ".join(result.stderr.split())
    assert json.loads((tmp_path / "m" / "metrics.json").read_text())["test_in_train"] == 2


def test_load_splits_files(tmp_path: Path) -> None:
    lines = [f"{i},{i + 1}:{-i},0:{lab}" for i, lab in enumerate(["10", "9", "2"] * 8)]
    train = write(tmp_path, "@data\n" + "\n".join(lines) + "\n", "tr.ts")
    s = load_splits(cfg(name="files", train=str(train), test_fraction=0.25, val_fraction=0.0))
    assert s.labels == ("2", "9", "10") and (s.train.n, s.test.n) == (18, 6)
    assert s.test.class_counts().tolist() == [2, 2, 2]
    seqs = [np.full((3, 2), i, np.float32) for i in range(4)]
    x, lengths = pad(seqs)
    np.savez(tmp_path / "te.npz", x=x, lengths=lengths, y=np.array(["2", "9", "10", "2"]))
    s = load_splits(cfg(name="files", train=str(train), test=str(tmp_path / "te.npz"), val_fraction=0.0))
    assert s.test.y.tolist() == [0, 1, 2, 0] and s.train.n == 24
    np.savez(tmp_path / "te2.npz", x=x, lengths=lengths, y=np.array(["2", "9", "11", "2"]))
    with pytest.raises(DataError, match="test label '11'"):
        load_splits(cfg(name="files", train=str(train), test=str(tmp_path / "te2.npz")))
    one = write(tmp_path, "@data\n1:a\n2:a\n", "one.ts")
    with pytest.raises(DataError, match="single class"):
        load_splits(cfg(name="files", train=str(one)))
    with pytest.raises(DataError, match="expected .ts, .npz or .csv"):
        load_splits(cfg(name="files", train=str(tmp_path / "x.parquet")))
    with pytest.raises(DataError, match="synthetic, japanese-vowels, basic-motions, files"):
        load_splits(cfg(name="mnist"))


# ------------------------------------------------------------------------------------------ normalisation, padding


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(1, 9), min_size=1, max_size=6), st.integers(1, 4), st.integers(0, 2**32 - 1))
def test_normalization_is_over_all_training_steps(lengths: list[int], f: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    seqs = [rng.normal(3.0, 2.0, size=(t, f)).astype(np.float32) for t in lengths]
    for s in seqs:
        s[:, 0] = 5.0  # a constant channel
    n = Normalization.from_sequences(seqs)
    steps = np.concatenate(seqs).astype(np.float64)
    np.testing.assert_allclose(n.mean, steps.mean(axis=0), rtol=1e-5, atol=1e-5)
    spread = steps.std(axis=0)
    constant = spread <= 1e-6 * np.maximum(np.abs(steps.mean(axis=0)), 1.0)
    np.testing.assert_allclose(n.std, np.where(constant, 1.0, spread), rtol=1e-5, atol=1e-6)
    assert n.std[0] == 1.0 and 0 in n.constant and list(n.constant) == np.flatnonzero(constant).tolist()
    assert n.mean.dtype == n.std.dtype == np.float32
    tiny = Normalization.from_sequences([np.array([[1.0], [1.0 + 2e-5]], np.float32)])
    assert tiny.std[0] == pytest.approx(1e-5, rel=1e-2) and tiny.constant == ()  # small, not constant
    at_rest = Normalization.from_sequences([rng.normal(0.0, 1e-9, size=(20, 1)).astype(np.float32)])
    assert at_rest.constant == (0,) and at_rest.std[0] == 1.0  # noise about 0: a std of 1e-9 would amplify 1e9x
    back = Normalization.from_dict(json.loads(json.dumps(n.to_dict())))
    assert np.array_equal(back.mean, n.mean) and np.array_equal(back.std, n.std)


def test_a_feature_constant_in_training_does_not_amplify_a_drift(tmp_path: Path) -> None:
    """Found by attacking: a feature of one value in training had its std floored at 1e-6, so a drift of 0.001
    at inference was 1,000 standard deviations: accuracy 0.96 -> 0.28, exit 0, no word. Now it is centred but
    not scaled, train names it, and the drift leaves the predictions as they were."""
    def make(n: int, seed: int, level: float) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(seed)
        lengths, y = rng.integers(4, 12, size=n), rng.integers(0, 3, size=n)
        x = rng.normal(size=(n, int(lengths.max()), 3)).astype(np.float32)
        x[np.arange(n), :, y] += 1.5
        x[:, :, 2] = level
        return {"x": x, "lengths": lengths, "y": y}

    np.savez(tmp_path / "train.npz", **make(120, 1, 5.0))
    np.savez(tmp_path / "same.npz", **make(40, 2, 5.0))
    np.savez(tmp_path / "drift.npz", **make(40, 2, 5.001))
    d = tmp_path / "m"
    trained = cli("train", str(d), "--set", 'data.name="files"', "--set", f'data.train="{tmp_path / "train.npz"}"',
                  "--set", "train.epochs=3", "--set", "model.hidden_size=8", "--set", "train.min_test_accuracy=0")
    assert trained.returncode == 0, trained.stderr
    assert "note: feature 3 barely moved in training" in trained.stderr
    assert json.loads((d / "metrics.json").read_text())["constant_features"] == ["feature 3"]
    assert json.loads((d / "model.json").read_text())["normalization"]["std"][2] == 1.0
    assert cli("export", str(d)).returncode == 0
    labels = []
    for name in ("same.npz", "drift.npz"):
        result = cli("predict", str(tmp_path / name), "--dir", str(d), "--json", "--allow-unverified")
        assert result.returncode == 0, result.stderr
        labels.append([p["label"] for p in json.loads(result.stdout)["predictions"]])
    assert labels[0] == labels[1]


def test_pad_garbage_and_subset() -> None:
    seqs = [np.arange(t * 2, dtype=np.float32).reshape(t, 2) for t in (3, 1, 5)]
    x, lengths = pad(seqs, length=8, garbage_rng=np.random.default_rng(0))
    assert x.shape == (3, 8, 2) and x.dtype == np.float32 and lengths.tolist() == [3, 1, 5]
    for i, s in enumerate(seqs):
        np.testing.assert_array_equal(x[i, : len(s)], s)
        padding = x[i, len(s):]
        assert np.isfinite(padding).all() and np.abs(padding).max() <= 1e3 and np.abs(padding).mean() > 100
    x0, _ = pad(seqs, fill=-1.0)
    assert x0.shape == (3, 5, 2) and (x0[1, 1:] == -1).all()
    with pytest.raises(DataError, match="shorter"):
        pad(seqs, length=4)
    ss = SequenceSet(tuple(seqs), np.array([0, 1, 0]), ("a", "b"))
    sub = ss.subset([2, 0])
    assert sub.lengths.tolist() == [5, 3] and sub.y.tolist() == [0, 0] and sub.labels == ("a", "b")
    assert ss.subset(np.array([False, True, False])).n == 1 and ss.subset([]).features == 2
    with pytest.raises(DataError):
        SequenceSet(tuple(seqs), np.array([0, 1, 2]), ("a", "b"))


# ------------------------------------------------------------------------------------------ fuzz

_TS_ALPHABET = st.sampled_from(list("0123456789,:.-e?@#% \n\t\r") + ["NaN", "nan", "inf", "1e39", "\ufeff", "é",
                                                                     "@data\n", "@classLabel true a b\n",
                                                                     "@classLabel false\n", "@dimensions 2\n",
                                                                     "@targetLabel true\n", ":a", ":b"])


def _read_ts_survives(path: Path) -> None:
    for policy in ("error", "ffill", "zero"):
        try:
            seqs, raw, _ = read_ts(path, missing=policy)
        except DataError as e:
            assert "\n" not in str(e)
            continue
        except Exception as e:  # noqa: BLE001 - anything else is a bug
            pytest.fail(f"read_ts raised {type(e).__name__}: {e}")
        assert len(seqs) == len(raw) >= 1
        assert all(s.dtype == np.float32 and s.ndim == 2 and s.shape[0] >= 1 and np.isfinite(s).all() for s in seqs)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(st.text(max_size=200), st.lists(_TS_ALPHABET, max_size=60).map("".join)))
def test_fuzz_read_ts_text(tmp_path: Path, text: str) -> None:
    p = tmp_path / "fuzz.ts"
    p.write_text(text, encoding="utf-8", errors="surrogatepass")
    _read_ts_survives(p)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=120))
def test_fuzz_read_ts_bytes(tmp_path: Path, blob: bytes) -> None:
    p = tmp_path / "fuzz.ts"
    p.write_bytes(b"@data\n" + blob)
    _read_ts_survives(p)


def _long_csv(path: Path, n: int, rng: np.random.Generator, shuffle: bool) -> tuple[list, list]:
    """``n`` labelled sequences in the long format (sequence, time, two features, label), rows in a random
    order when ``shuffle`` (the time column orders them)."""
    rows, seqs, labels = [], [], []
    for i in range(n):
        label = ["walk", "run"][i % 2]
        steps = int(rng.integers(4, 12))
        x = rng.normal(size=(steps, 2)).astype(np.float32) + (2.0 if label == "run" else 0.0)
        seqs.append(x)
        labels.append(label)
        rows += [f"s{i:03d},{t},{float(x[t, 0])!r},{float(x[t, 1])!r},{label}" for t in range(steps)]
    if shuffle:
        rows = [rows[k] for k in rng.permutation(len(rows))]
    path.write_text("sequence,time,accel_x,accel_y,label\n" + "\n".join(rows) + "\n")
    return seqs, labels


def test_training_reads_the_long_csv_format(tmp_path: Path) -> None:
    """Training said "unsupported file type '.csv'" while predict read CSV. The long format (sequence id,
    time, features, label), rows shuffled, trains through the real CLI, and the reader orders each sequence
    by its time column."""
    from attn_export.runtime.inputs import read_csv

    rng = np.random.default_rng(0)
    seqs, labels = _long_csv(tmp_path / "train.csv", 80, rng, shuffle=True)
    _long_csv(tmp_path / "test.csv", 20, rng, shuffle=False)
    table = read_csv(tmp_path / "train.csv")
    order = sorted(range(80), key=lambda i: table.ids.index(f"s{i:03d}"))
    for i in order:
        np.testing.assert_array_equal(table.sequences[table.ids.index(f"s{i:03d}")], seqs[i])
        assert table.labels[table.ids.index(f"s{i:03d}")] == labels[i]
    result = cli("train", str(tmp_path / "m"), "--set", "data.name=files", "--set", f"data.train={tmp_path / 'train.csv'}",
                 "--set", f"data.test={tmp_path / 'test.csv'}", "--set", "model.hidden_size=8", "--set", "train.epochs=2",
                 "--set", "train.min_test_accuracy=0")
    assert result.returncode == 0, result.stderr
    model = json.loads((tmp_path / "m" / "model.json").read_text())
    assert model["input_size"] == 2 and sorted(model["labels"]) == ["run", "walk"]


@pytest.mark.parametrize("text, said", [
    ("sequence,time,a,label\ns1,0,1.0,x\ns1,0,2.0,x\n", "time 0 appears twice in sequence 's1'"),
    ("sequence,time,a,label\ns1,soon,1.0,x\n", "time = 'soon'; expected a finite number"),
    ("sequence,time,a\ns1,0,1.0\n", "has no 'label' column; training needs a label per sequence"),
])
def test_a_bad_long_csv_is_one_line(tmp_path: Path, text: str, said: str) -> None:
    (tmp_path / "train.csv").write_text(text)
    result = cli("train", str(tmp_path / "m"), "--set", "data.name=files", "--set", f"data.train={tmp_path / 'train.csv'}")
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and said in lines[0], result.stderr


def test_a_training_csv_fills_its_gaps_by_the_missing_policy(tmp_path: Path) -> None:
    """``[data] missing`` was read for .ts only: a training .csv with a gap was refused even under "ffill",
    with no word of the policy. Now its gaps (an empty cell, '?', NaN) are filled within each sequence once
    the rows are in time order, as the .ts reader fills them; under "error" the refusal names the policy;
    predict (no policy) still takes finite values only."""
    from attn_export.runtime.inputs import read_csv

    text = ("sequence,time,a,b,label\n"
            "s1,2,,6,x\ns1,0,?,4,x\ns1,1,2,NaN,x\ns1,3,5,,x\n"  # rows out of time order
            "s2,0,1,1,y\ns2,1,nan,1,y\n")
    p = tmp_path / "train.csv"
    p.write_text(text)
    ffill = read_csv(p, missing="ffill").sequences
    np.testing.assert_array_equal(ffill[0], [[2, 4], [2, 4], [2, 6], [5, 6]])  # leading gap takes the first value
    np.testing.assert_array_equal(ffill[1], [[1, 1], [1, 1]])
    zero = read_csv(p, missing="zero").sequences
    np.testing.assert_array_equal(zero[0], [[0, 4], [2, 0], [0, 6], [5, 0]])
    for policy in ("error", None):
        with pytest.raises(DataError, match=r"train\.csv:2: a = ''; expected a finite number") as e:
            read_csv(p, missing=policy)
        assert ('missing = "ffill" or "zero"' in str(e.value)) == (policy == "error")
    p.write_text("sequence,a,label\ns1,inf,x\ns2,1,y\n")
    with pytest.raises(DataError, match="'inf'; expected a finite number"):  # not a gap: refused under any policy
        read_csv(p, missing="ffill")
    p.write_text(text)
    result = cli("train", str(tmp_path / "m"), "--set", "data.name=files", "--set", f"data.train={p}",
                 "--set", "data.missing=ffill", "--set", "data.test_fraction=0.5", "--set", "data.val_fraction=0",
                 "--set", "model.hidden_size=8", "--set", "train.epochs=1")
    assert result.returncode == 0, result.stderr
    # how many it filled, said and kept, as predict says its own (found by attacking: said nowhere)
    assert f"note: 5 missing value(s) in the train file {p} filled by the recipe's [data] missing" in \
        " ".join(result.stderr.split()), result.stderr
    assert json.loads((tmp_path / "m" / "metrics.json").read_text())["filled"] == {"train": 5}


@pytest.mark.parametrize("missing", ["ffill", "zero"])
def test_nan_padding_in_a_ts_or_csv_is_refused_not_filled(tmp_path: Path, missing: str) -> None:
    """Found by attacking with one's own data: a .ts padded with NaN to one length (as the UCR archive pads its
    variable-length sets) was refused under "error" with the advice to set missing = "ffill", under which the
    padding was filled and trained on as data (every length the padded one); a long-format .csv of such rows
    too. The .npz reader's rule now holds for all three: runs of steps NaN in every feature, of two lengths
    or more at the ends of sequences, are padding, refused; one such run is a gap, filled."""
    from attn_export.runtime.inputs import read_csv

    padded = write(tmp_path, HEADER + "1,2,3,NaN:4,5,6,NaN:a\n1,2,NaN,NaN:4,5,?,NaN:b\n1,2,3,4:5,6,7,8:a\n")
    with pytest.raises(DataError, match=r"the series of line 5 ends in 1 step\(s\) of NaN in every feature, and others "
                                        r"in runs of other lengths, as padding does; expected each series at its own "
                                        r"length"):
        read_ts(padded, missing=missing)
    with pytest.raises(DataError) as e:
        read_ts(padded)
    assert "expected no missing values (its last 1 step(s) are missing in every channel and nothing else is, as " \
           "padding is: a .ts series may be shorter than the others, so drop them; if they are gaps, a recipe may set " \
           "[data] missing" in one_line_error(e)
    lost = write(tmp_path, HEADER + "1,2,3,NaN:4,5,6,NaN:a\n1,2,9,NaN:4,5,?,NaN:b\n")  # one run length: gaps
    assert [len(q) for q in read_ts(lost, missing=missing)[0]] == [4, 4]
    # found by review: random gaps in one feature end some series too, in runs of two lengths; a gap inside
    # any series says they are gaps, filled (they had been refused as padding)
    gappy = write(tmp_path, "@problemName T\n@dimensions 1\n@classLabel true a b\n@data\n"
                            "1,2,?,4,?:a\n1,?,3,?,?:b\n1,2,3,4,5:a\n")
    assert [len(q) for q in read_ts(gappy, missing=missing)[0]] == [5, 5, 5]
    with pytest.raises(DataError, match=r"a recipe may set \[data\] missing = \"ffill\" or \"zero\", and its model.s predict then fills gaps the same way"):
        read_ts(gappy)
    rows = [f"s{k},{t},{'NaN' if t >= n else t},{'' if t >= n else 1},x" for k, n in ((1, 3), (2, 2), (3, 4))
            for t in range(4)]
    p = tmp_path / "long.csv"
    p.write_text("sequence,time,a,b,label\n" + "\n".join(rows) + "\n")
    with pytest.raises(DataError, match=r"long\.csv: sequence 's1' ends in 1 step\(s\) of NaN in every feature, and "
                                        r"others in runs of other lengths, as padding does"):
        read_csv(p, missing=missing)
    p.write_text("sequence,a,b,label\ns1,1,NA,x\ns1,2,n/a,x\ns1,null,3,x\n")  # R's and others' gap words
    assert read_csv(p, missing="ffill").sequences[0].tolist() == [[1, 3], [2, 3], [2, 3]]


def test_a_training_npz_fills_its_nan_gaps_by_the_missing_policy(tmp_path: Path) -> None:
    """The same for .npz: a NaN in a valid step is a gap under "ffill" / "zero" (padding may hold anything,
    inf is refused under any policy); under "error" the refusal names the policy; predict (None) as before."""
    x = np.array([[[np.nan, 1.0], [2.0, np.nan], [np.nan, 3.0], [9.0, 9.0]],
                  [[1.0, 1.0], [np.nan, 2.0], [7.0, 7.0], [np.inf, np.nan]]], np.float32)  # row 1: 3 steps
    p = tmp_path / "train.npz"
    np.savez(p, x=x, lengths=np.array([4, 3]), y=np.array(["a", "b"]))
    ffill, _ = read_npz(p, "ffill")
    np.testing.assert_array_equal(ffill[0], [[2, 1], [2, 1], [2, 3], [9, 9]])
    np.testing.assert_array_equal(ffill[1], [[1, 1], [1, 2], [7, 7]])
    zero, _ = read_npz(p, "zero")
    np.testing.assert_array_equal(zero[0], [[0, 1], [2, 0], [0, 3], [9, 9]])
    for policy in ("error", None):
        with pytest.raises(DataError, match=r"sequence 0 holds a missing value \(NaN\) at step 0, feature 0; "
                                            r"expected finite values") as e:
            read_npz(p, policy)
        assert ('missing = "ffill" or "zero"' in str(e.value)) == (policy == "error")
    x[1, 1, 0] = np.inf
    np.savez(p, x=x, lengths=np.array([4, 3]), y=np.array(["a", "b"]))
    with pytest.raises(DataError, match=r"sequence 1 holds an infinite value \(inf, or beyond float32's range\) at "
                                        r"step 1, feature 0; expected finite values$"):
        read_npz(p, "ffill")


@pytest.mark.parametrize("text, said", [
    # found by attacking: the line counted rows after blank lines were dropped, and a quoted cell's lines
    ("sequence,a,label\n\n\ns1,1,x\n\ns1,abc,x\n", "train.csv:6: a = 'abc'; expected a finite number"),
    ('sequence,a,label\n"s\n1",1,x\ns2,abc,y\n', "train.csv:4: a = 'abc'; expected a finite number"),
    # an unnamed column (pandas' index, a spreadsheet's trailing comma) was trained on as a feature ''
    (",sequence,a,label\n0,s1,1,x\n1,s2,2,y\n", "train.csv:1: header column 1 has no name; expected a name for every"),
    ("sequence,a,label,\ns1,1,x,\ns2,2,y,\n", "train.csv:1: header column 4 has no name"),
    # a column named twice: a second 'label' was trained on as a feature, two features 'a' accepted
    ("sequence,a,label,LABEL\ns1,1,x,y\n", "train.csv:1: header columns 3 and 4 are both named 'LABEL'; expected "
                                           "each column named once"),
    ("a,b,a\n1,2,3\n", "train.csv:1: header columns 1 and 3 are both named 'a'"),
    # rows with no sequence id were merged into one sequence of id ''
    ("sequence,a,label\ns1,1,x\n ,2,x\n", "train.csv:3: empty sequence id; expected the id of its sequence"),
    # a cell of 100,000 characters was printed whole in the one line
    ("sequence,a,label\ns1," + "9x" * 50_000 + ",x\n", "train.csv:2: a = '" + "9x" * 20 + "...'; expected a finite"),
    # a quote left open read the rest of the file as one cell; text after a closing quote was kept (attacking)
    ('sequence,a,label\ns1,1,x\ns1,"2,x\ns1,3,x\n', "train.csv:3: cannot read as CSV: unexpected end of data"),
    ('sequence,a,label\ns1,"1"2,x\n', "train.csv:2: cannot read as CSV: ',' expected after '\"'"),
])
def test_a_long_csv_names_the_line_and_column_a_user_sees(tmp_path: Path, text: str, said: str) -> None:
    from attn_export.runtime.inputs import read_csv

    (tmp_path / "train.csv").write_text(text)
    with pytest.raises(DataError) as e:
        read_csv(tmp_path / "train.csv")
    assert said in str(e.value) and len(str(e.value)) < 400, str(e.value)[:400]


def test_npz_labels_are_stripped_and_none_is_empty(tmp_path: Path) -> None:
    """As the .ts and .csv readers take theirs: " a", "a" and "a " were three classes of a training .npz,
    and "" a class whose name printed as nothing (found by attacking)."""
    x = np.ones((3, 2, 1), np.float32)
    for y in (np.array([" a", "a", "b\t"]), np.array([b" a", b"a", b"b\t"])):
        np.savez(tmp_path / "y.npz", x=x, y=y)
        assert read_npz(tmp_path / "y.npz")[1] == ["a", "a", "b"]
    np.savez(tmp_path / "y.npz", x=x, y=np.array(["a", " ", "b"]))
    with pytest.raises(DataError, match=r"y\[1\] is empty; expected a label for every sequence"):
        read_npz(tmp_path / "y.npz")


def test_an_npz_padded_before_its_sequences_is_refused_not_cut(tmp_path: Path) -> None:
    """Found by attacking: Keras' pad_sequences pads at the front by default; read_npz took each row's first
    ``length`` steps, the zeros and a cut sequence, and accuracy fell from 0.73 to 0.19 with no word."""
    rng = np.random.default_rng(0)
    lengths = np.array([5, 8, 3, 8])
    seqs = [rng.normal(size=(n, 2)).astype(np.float32) for n in lengths]
    post, pre = np.zeros((4, 8, 2), np.float32), np.zeros((4, 8, 2), np.float32)
    for i, q in enumerate(seqs):
        post[i, :len(q)], pre[i, 8 - len(q):] = q, q
    np.savez(tmp_path / "post.npz", x=post, lengths=lengths)
    assert all(np.array_equal(a, b) for a, b in zip(read_npz(tmp_path / "post.npz")[0], seqs))
    np.savez(tmp_path / "pre.npz", x=pre, lengths=lengths)
    with pytest.raises(DataError, match=r"pre\.npz: x looks padded before each sequence \(Keras pad_sequences' "
                                        r"default, padding='pre'\): in each of its 2 shorter rows"):
        read_npz(tmp_path / "pre.npz")
    pre[0, 0, 0] = 0.5  # one shorter row not so: data, as it is
    np.savez(tmp_path / "pre.npz", x=pre, lengths=lengths)
    assert len(read_npz(tmp_path / "pre.npz")[0]) == 4
    # padded after, with NaN or -1, sequences that start at 0 (a displacement from the start): read, not refused
    # (found by review)
    # univariate, one row one step short: its tail of one value is no padding evidence (found by review)
    uni_lengths = np.array([20, 19, 12, 8, 15, 10])
    uni = np.zeros((6, 20, 1), np.float32)
    for i, n in enumerate(uni_lengths):
        uni[i, 20 - n:, 0] = 5 + rng.normal(size=n)
    np.savez(tmp_path / "uni.npz", x=uni, lengths=uni_lengths)
    with pytest.raises(DataError, match="looks padded before each sequence"):
        read_npz(tmp_path / "uni.npz")
    nearly = np.array([7, 8, 7, 8])  # one step short: the step before each sequence's last 7 is its first, 0
    for fill in (np.nan, -1.0):
        start0 = np.full((4, 8, 2), fill, np.float32)
        for i, n in enumerate(nearly):
            start0[i, :n] = np.cumsum(np.vstack([np.zeros((1, 2)), rng.normal(size=(n - 1, 2))]), axis=0)
        np.savez(tmp_path / "start0.npz", x=start0, lengths=nearly)
        assert [len(q) for q in read_npz(tmp_path / "start0.npz")[0]] == nearly.tolist()


def test_train_says_when_an_npz_looks_channels_first(tmp_path: Path) -> None:
    """Found by attacking: sktime's numpy3D layout ([N, channels, steps]) read as [N, T, F] trained transposed,
    exit 0, no word. An .npz whose sequences are all one length, fewer steps than features, gets a note (a short
    sequence of many features is a real layout too); the same data as [N, steps, channels] gets none."""
    rng = np.random.default_rng(0)
    steps_first = rng.normal(size=(40, 20, 3)).astype(np.float32)
    y = np.array(["a", "b"] * 20)
    said = {}
    for name, x in (("numpy3d", steps_first.transpose(0, 2, 1)), ("steps_first", steps_first)):
        np.savez(tmp_path / f"{name}.npz", x=x, y=y)
        result = cli("train", str(tmp_path / name), "--set", "data.name=files", "--set",
                     f"data.train={tmp_path / f'{name}.npz'}", "--set", "data.val_fraction=0", "--set",
                     "model.hidden_size=4", "--set", "train.epochs=1")
        assert result.returncode == 0, result.stderr
        said[name] = " ".join(result.stderr.split())
    assert ("note: every training sequence is 3 steps of 20 features, fewer steps than features: if x is channels "
            "first ([N, channels, steps], sktime's and aeon's numpy3D), transpose it (x.transpose(0, 2, 1)) and train "
            "again") in said["numpy3d"], said["numpy3d"]
    assert "channels first" not in said["steps_first"], said["steps_first"]


def test_npz_bool_labels_read_as_a_csv_of_the_same_array_spells_them(tmp_path: Path) -> None:
    """A bool ``y`` was read as classes "0" and "1", while a CSV written from the same array (pandas'
    ``to_csv``, numpy's ``str``) says "False" and "True": a model trained on one refused the other's labels
    as unknown classes."""
    from attn_export.runtime.inputs import read_csv

    y = np.array([True, False, True, False])
    np.savez(tmp_path / "y.npz", x=np.ones((4, 2, 1), np.float32), y=y)
    rows = "".join(f"{i},{t},1.0,{label}\n" for i, label in enumerate(y) for t in range(2))
    (tmp_path / "y.csv").write_text("sequence,time,f0,label\n" + rows)
    assert read_npz(tmp_path / "y.npz")[1] == read_csv(tmp_path / "y.csv").labels == ["True", "False", "True", "False"]


def test_numeric_class_labels_still_read_and_continuous_ones_are_refused() -> None:
    from attn_export.data import refuse_continuous

    refuse_continuous(["1.5", "2.5"] * 20, "x.csv")  # two classes that happen to be numbers
    refuse_continuous([str(i) for i in range(40)], "x.csv")  # whole numbers: ids of classes as often as not
    refuse_continuous(["a", "0.5", "1.5"], "x.csv")  # not every label a number
    with pytest.raises(DataError, match=r"x.csv: the labels look continuous: 3 distinct numbers \(-1.25, 0.5, 7, \.\.\.\)"):
        refuse_continuous(["0.5", "7", "-1.25", "0.5"], "x.csv")


def test_a_ts_without_label_headers_does_not_take_a_channel_for_the_label(tmp_path: Path) -> None:
    """Found by attacking: with no @classLabel and no @dimensions, a 3-channel file's last channel was read
    as the label: 80 "classes" named like '-0.0003,0.1148,...', exit 0. A single value still reads as one."""
    p = tmp_path / "x.ts"
    p.write_text("@problemName x\n@data\n1,2:3,4:5,6\n1,2:3,4:7,8\n")
    with pytest.raises(DataError, match=r"x\.ts:3: the last ':' field '5,6' is a list of values, not a label"):
        read_ts(p)
    p.write_text("@problemName x\n@data\n1,2:3,4:a\n1,2:3,4:b\n")
    assert read_ts(p)[1] == ["a", "b"]


def test_a_bare_classlabel_true_does_not_take_a_channel_for_the_label(tmp_path: Path) -> None:
    """Found by attacking: "@classLabel true" with no class names, over unlabelled 3-channel series, made
    the last channel 30 "classes", exit 0. With the names declared, a label is checked against them."""
    p = tmp_path / "x.ts"
    p.write_text("@univariate false\n@classLabel true\n@data\n1,2:3,4:5,6\n1,2:3,4:7,8\n")
    with pytest.raises(DataError, match=r"x\.ts:4: the last ':' field '5,6' is a list of values, not a label; "
                                        r"expected a header saying which: @classLabel true followed by the class"):
        read_ts(p)
    p.write_text("@univariate false\n@classLabel true a b\n@data\n1,2:3,4:a\n1,2:3,4:b\n")
    assert read_ts(p)[1] == ["a", "b"]


def test_labels_that_are_ids_are_refused(tmp_path: Path) -> None:
    """Found by attacking: an .npz whose y held 40 ids trained 40 one-sequence "classes", an empty test
    split, exit 0. Classes that several sequences share still train, whatever their spelling."""
    from attn_export.data import load_splits, refuse_ids

    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 6, 3)).astype(np.float32)
    np.savez(tmp_path / "ids.npz", x=x, y=np.arange(40) + 1000)
    with pytest.raises(DataError, match=r"ids\.npz: 40 distinct labels among 40 sequences \('1000', '1001', "
                                        r"'1002', \.\.\.\), as ids are, not classes; expected class labels that "
                                        "several sequences share"):
        load_splits(cfg(name="files", train=str(tmp_path / "ids.npz")))
    refuse_ids(["a", "b"] * 15 + [str(i) for i in range(10)], "x.csv")  # 12 classes, ten of them rare
    refuse_ids([str(i) for i in range(10)] * 2, "x.csv")  # ten classes of two
    refuse_ids([str(i) for i in range(5)] * 2 + ["5"], "x.csv")  # 11 sequences, 6 classes (review)
    with pytest.raises(DataError, match=r"3 distinct labels among 3 sequences \('a', 'b', 'c'\), as ids"):
        refuse_ids(["a", "b", "c"], "x.csv")
    with pytest.raises(DataError, match="37 distinct labels among 40"):
        refuse_ids(["a"] * 4 + [f"s{i}" for i in range(36)], "x.csv")
    # one sequence a class, with a test file of those classes (UCR's Fungi, found by review): trains
    np.savez(tmp_path / "test.npz", x=x[:10] + 1, y=np.arange(10) + 1000)  # other sequences: held out
    splits = load_splits(cfg(name="files", train=str(tmp_path / "ids.npz"), test=str(tmp_path / "test.npz"),
                             val_fraction=0.0))
    assert len(splits.labels) == 40 and splits.test.n == 10


@pytest.mark.parametrize("missing", ["error", "ffill", "zero"])
def test_nan_padding_without_lengths_is_refused_not_filled(tmp_path: Path, missing: str) -> None:
    """Found by attacking: an x padded with NaN and saved without lengths was, under ffill, trained on with
    its padding filled as data (every length the padded one), which predict then refused. Runs of all-NaN
    last steps of different lengths are padding; one such run (a univariate series' lost last value, found
    by review), or a NaN gap that leaves a value in some feature of the last step, is a gap, filled by the
    policy."""
    from attn_export.runtime.readers import read_npz

    x = np.random.default_rng(1).normal(size=(5, 6, 3)).astype(np.float32)
    x[2, 4:] = np.nan
    x[3, 3:] = np.nan
    np.savez(tmp_path / "pad.npz", x=x)
    with pytest.raises(DataError, match=r"pad\.npz: sequence 2 ends in 2 step\(s\) of NaN in every feature, and "
                                        r"others in runs of other lengths, as padding does; expected lengths \[N\] "
                                        r"for a padded x, which has none"):
        read_npz(tmp_path / "pad.npz", missing)
    np.savez(tmp_path / "padded.npz", x=x, lengths=np.array([6, 6, 4, 3, 6]))
    assert [len(s) for s in read_npz(tmp_path / "padded.npz", missing)[0]] == [6, 6, 4, 3, 6]
    univariate = x[..., :1].copy()
    univariate[:, :] = 1.0
    univariate[1, 5, 0] = np.nan  # one series' last value lost
    np.savez(tmp_path / "lost.npz", x=univariate)
    if missing == "error":
        with pytest.raises(DataError, match="sequence 1 holds a missing value"):
            read_npz(tmp_path / "lost.npz", missing)
    else:
        assert [len(s) for s in read_npz(tmp_path / "lost.npz", missing)[0]] == [6] * 5
    x[2:4] = 0.0
    x[2, 5, 1] = np.nan
    np.savez(tmp_path / "gap.npz", x=x)
    if missing == "error":
        with pytest.raises(DataError, match="sequence 2 holds a missing value"):
            read_npz(tmp_path / "gap.npz", missing)
    else:
        assert [len(s) for s in read_npz(tmp_path / "gap.npz", missing)[0]] == [6] * 5


def test_a_data_error_names_its_file(tmp_path: Path) -> None:
    """Found by attacking: a .ts header's repeated label and a test file of another width said neither file."""
    (tmp_path / "dup.ts").write_text("@problemName x\n@classLabel true a a b\n@data\n1,2:a\n3,4:b\n")
    result = cli("train", str(tmp_path / "m"), "--set", "data.name=files", "--set", f"data.train={tmp_path / 'dup.ts'}")
    assert result.returncode == 2 and f"{tmp_path / 'dup.ts'}:2: declared class labels repeat 'a'" in result.stderr
    (tmp_path / "train.csv").write_text("sequence,a,label\n" + "".join(f"s{i},{i},{'xy'[i % 2]}\n" for i in range(8)))
    np.savez(tmp_path / "test.npz", x=np.ones((2, 3, 2), np.float32), y=np.array(["x", "y"]))  # unnamed columns
    result = cli("train", str(tmp_path / "m"), "--set", "data.name=files", "--set", f"data.train={tmp_path / 'train.csv'}",
                 "--set", f"data.test={tmp_path / 'test.npz'}")
    assert result.returncode == 2 and f"{tmp_path / 'test.npz'}: the test set has 2 features" in result.stderr


def test_run_refusing_its_data_prints_one_line(tmp_path: Path) -> None:
    """Found by attacking: run printed its header rule, then the Error line: two lines on stderr in a log."""
    (tmp_path / "train.csv").write_text("sequence,a,label\ns1,abc,x\ns2,1,y\n")
    (tmp_path / "r.toml").write_text('[data]\nname = "files"\ntrain = "train.csv"\n')
    result = cli("run", str(tmp_path / "r.toml"), "--out", str(tmp_path / "out"))
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert not (tmp_path / "out").exists()


def test_a_ts_with_old_mac_line_endings_reads(tmp_path: Path) -> None:
    """Found by attacking: lines ending in a lone \\r (as the .csv reader already took) said "no @data line"."""
    p = tmp_path / "cr.ts"
    p.write_bytes(b"@problemName x\r@classLabel true a b\r@data\r1,2:3,4:a\r5,6:7,8:b\r")
    seqs, labels, declared = read_ts(p)
    assert labels == ["a", "b"] and declared == ["a", "b"] and seqs[1].tolist() == [[5, 7], [6, 8]]


@pytest.mark.parametrize("first", ["1,?", "NA,0", "n/a,1"])
def test_a_headerless_csv_whose_first_row_has_a_gap_is_refused_not_taken_for_a_header(tmp_path: Path,
                                                                                      first: str) -> None:
    """Found by attacking: a first row of numbers and '?' (or NA) was taken for a header and dropped, and
    predict answered on the rest, exit 0."""
    from attn_export.runtime.inputs import read_csv

    (tmp_path / "q.csv").write_text(f"{first}\n-2,0\n")
    with pytest.raises(DataError, match=r"q\.csv:1: column \d = '[^']+'; expected a finite number"):
        read_csv(tmp_path / "q.csv")


def test_one_number_spelt_two_ways_is_refused_but_whole_number_codes_are_classes() -> None:
    """Found by attacking: "1" and "1.0" were two classes, one made up. Found by reviewing the fix: it also
    refused class codes "007" and "7", which are different classes written as whole numbers."""
    from attn_export.data import refuse_respelled

    refuse_respelled(["007", "7", "01", "1", "a"], "x.csv")
    for labels in (["1", "1.0"], ["2.50", "2.5"], ["1000", "1e3"]):
        with pytest.raises(DataError, match="are the same number written two ways"):
            refuse_respelled(labels, "x.csv")


def test_a_one_column_csv_whose_name_holds_a_semicolon_is_read(tmp_path: Path) -> None:
    """Found by review: the check for a ;-separated export refused any one-column file whose header held a
    ';'. Only a file whose next row splits the same way is such an export."""
    from attn_export.runtime.inputs import read_csv

    (tmp_path / "t.csv").write_text("temp (C; sensor 1)\n1.5\n2.5\n")
    table = read_csv(tmp_path / "t.csv")
    assert table.features == ["temp (C; sensor 1)"] and table.sequences[0].ravel().tolist() == [1.5, 2.5]


def test_data_errors_say_what_would_work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Found by attacking: each was refused, but with words that did not lead to the fix."""
    from attn_export.config import load_recipe
    from attn_export.data import _read_labelled
    from attn_export.runtime.inputs import read_csv

    x = np.zeros((4, 5, 2), np.float32)
    np.savez(tmp_path / "labels.npz", x=x, labels=np.array([0, 1, 0, 1]))
    with pytest.raises(DataError, match=r"an array 'labels' and none named 'y', which this reader reads \(the true "
                                        r"labels, one per sequence\); expected it named 'y'"):
        _read_labelled(str(tmp_path / "labels.npz"), "error")
    np.savez(tmp_path / "labels.npz", x=x, classes_seen=np.array([0, 1, 0, 1]))  # not a name labels go by
    with pytest.raises(DataError, match=r"has no y \(it has: classes_seen, x\); training needs a label per sequence"):
        _read_labelled(str(tmp_path / "labels.npz"), "error")
    np.savez(tmp_path / "nan.npz", x=x, y=np.array([0, 1, np.nan, 1]))
    with pytest.raises(DataError, match=r"y\[2\] is nan; expected a label for every sequence"):
        _read_labelled(str(tmp_path / "nan.npz"), "error")
    np.savez(tmp_path / "flat.npz", x=x[..., 0], lengths=np.array([3, 5, 4, 2]), y=np.array([0, 1, 0, 1]))
    with pytest.raises(DataError, match=r"padded sequences of one feature are x \[N, T, 1\], not \[N, T\] = \[4, 5\]"):
        _read_labelled(str(tmp_path / "flat.npz"), "error")
    (tmp_path / "plain.ts").write_text("@univariate true\n@data\n1,2,3\n4,5,6\n")
    with pytest.raises(DataError, match=r"has no class labels \(no label field after the channels\); training needs "
                                        r"@classLabel true with the class names"):
        _read_labelled(str(tmp_path / "plain.ts"), "error")
    with pytest.raises(DataError, match=r"is a directory; expected a \.ts, \.npz or \.csv file"):
        _read_labelled(str(tmp_path), "error")
    (tmp_path / "ids.csv").write_text("id,a,b,label\ns0,1,2,x\ns0,2,3,x\n")
    with pytest.raises(DataError, match=r"ids\.csv:2: id = 's0'; expected a finite number \(a column of sequence ids "
                                        r"is named 'sequence', and a column of labels 'label'\)"):
        read_csv(tmp_path / "ids.csv")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "r.toml").write_text('[data]\nname = "files"\ntrain = "~/train.npz"\n')
    assert load_recipe(tmp_path / "r.toml").data.train == str(tmp_path / "home" / "train.npz")


def test_one_typo_in_a_feature_column_gets_no_id_hint(tmp_path: Path) -> None:
    """Found by review: the hint about a column of sequence ids fired for any text cell, a typo included."""
    from attn_export.runtime.inputs import read_csv

    (tmp_path / "typo.csv").write_text("a,b\n1,2\noops,3\n4,5\n")
    with pytest.raises(DataError, match=r"typo\.csv:3: a = 'oops'; expected a finite number$"):
        read_csv(tmp_path / "typo.csv")


def test_labels_that_are_one_text_in_two_unicode_normalisations_are_refused_or_named(tmp_path: Path) -> None:
    """Found by attacking: "é" as one code point and as "e" with a combining accent print alike and were two
    classes; a test file or predict's true labels written the other way were "not the model's", naming a label
    that printed the same as one of its own."""
    from attn_export.runtime.inputs import check_labels

    nfc, nfd = "caf\u00e9", "cafe\u0301"
    rows = "".join(f"s{i},{i % 3}.5,{(nfc, nfd, 'tea')[i % 3]}\n" for i in range(12))
    (tmp_path / "train.csv").write_text("sequence,a,label\n" + rows, encoding="utf-8")
    with pytest.raises(DataError) as e:
        load_splits(cfg(name="files", train=str(tmp_path / "train.csv")))
    assert one_line_error(e).endswith("are one text in two Unicode normalisations, which would make two classes; "
                                      "expected one spelling per class")
    (tmp_path / "ok.csv").write_text("sequence,a,label\n" + rows.replace(nfd, nfc), encoding="utf-8")
    (tmp_path / "test.csv").write_text("sequence,a,label\ns1,1,tea\ns2,2," + nfd + "\n", encoding="utf-8")
    with pytest.raises(DataError, match="in another Unicode normalisation"):
        load_splits(cfg(name="files", train=str(tmp_path / "ok.csv"), test=str(tmp_path / "test.csv")))
    with pytest.raises(DataError) as e:
        check_labels([nfd, "tea"], [nfc, "tea"], "in.csv")
    assert "is the model's" in one_line_error(e) and "in another Unicode normalisation" in str(e.value)
    check_labels([nfc, "tea"], [nfc, "tea"], "in.csv")


def test_a_label_that_is_the_models_number_written_another_way_is_named(tmp_path: Path) -> None:
    """Found by attacking: a .ts writing its classes "1.0" and "2.0" and an .npz or .csv writing them "1" and
    "2" were refused as "not the model's" with no word of why; the message now names the class it spells."""
    from attn_export.runtime.inputs import check_labels

    rows = "".join(f"s{i},{i % 3}.5,{i % 2 + 1}.0\n" for i in range(12))
    (tmp_path / "train.csv").write_text("sequence,a,label\n" + rows)
    (tmp_path / "test.csv").write_text("sequence,a,label\ns1,1,2.0\ns2,2,1\n")
    with pytest.raises(DataError) as e:
        load_splits(cfg(name="files", train=str(tmp_path / "train.csv"), test=str(tmp_path / "test.csv")))
    assert "test label '1' does not occur in the training labels (it is '1.0' written as another number)" \
        in one_line_error(e)
    with pytest.raises(DataError) as e:
        check_labels(["2", "1.0"], ["1.0", "2.0"], "in.npz")
    assert one_line_error(e) == ("in.npz: the true label 2 is the model's 2.0 written as another number; expected "
                                 "the model's spelling (labels are compared as text)")
    with pytest.raises(DataError, match=r"the true labels 3 are not the model's"):
        check_labels(["3", "1.0"], ["1.0", "2.0"], "in.npz")


def test_many_small_classes_still_hold_out_about_the_fraction(tmp_path: Path) -> None:
    """Found by attacking: 500 classes of 2 at 0.2 held out nothing (each class's share rounded to 0), and the
    model trained with no test and no validation split, exit 0. A class whose share rounds to none gives one,
    until about the fraction of all is held out; splits whose classes' shares add up are as they were."""
    x, lengths = pad([np.full((3, 2), i, np.float32) for i in range(1000)])
    np.savez(tmp_path / "many.npz", x=x, lengths=lengths, y=np.array([f"c{i // 2}" for i in range(1000)]))
    s = load_splits(cfg(name="files", train=str(tmp_path / "many.npz"), test_fraction=0.2, val_fraction=0.15))
    assert s.test.n == 200 and (s.test.class_counts() <= 1).all()
    assert s.val.n == 120 and s.train.n == 680


def _split_before(y: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """The held-out indices as _stratified_split drew them before the top-up (every class its rounded share)."""
    taken = []
    for c in np.unique(y):
        members = np.flatnonzero(y == c)
        k = min(int(round(len(members) * fraction)), len(members) - 1)
        if k > 0:
            taken.append(rng.permutation(members)[:k])
    return np.sort(np.concatenate(taken)) if taken else np.zeros(0, np.int64)


@settings(max_examples=60, deadline=None)
@given(sizes=st.lists(st.integers(1, 40), min_size=2, max_size=8), fraction=st.sampled_from([0.1, 0.15, 0.2, 0.25]),
       seed=st.integers(0, 3))
def test_a_split_is_what_it_was_unless_a_class_share_rounds_to_none(sizes: list[int], fraction: float,
                                                                   seed: int) -> None:
    """Models trained before the top-up are verified and calibrated on the split drawn again: it must be the
    same draw wherever no class of two or more had its share round to none."""
    y = np.repeat(np.arange(len(sizes)), sizes)
    _, taken = D._stratified_split(y, fraction, np.random.default_rng([seed, 3]))
    before = _split_before(y, fraction, np.random.default_rng([seed, 3]))
    zero = any(n >= 2 and min(int(round(n * fraction)), n - 1) == 0 for n in sizes)
    if not zero or len(before) >= int(round(len(y) * fraction)):
        assert taken.tolist() == before.tolist()
    else:  # topped up: more held out, each class still keeps one
        assert len(taken) > len(before) and all((np.bincount(y[taken], minlength=len(sizes)) < sizes) | (
            np.asarray(sizes) == 1))


def test_declared_ts_classes_are_held_to_the_training_series(tmp_path: Path) -> None:
    """Found by attacking: with @classLabel, 60 series of 60 ids trained (exit 0, the test split empty), and a
    declared class no training series had became an output the model never learned, without a word."""
    ids = write(tmp_path, "@classLabel true " + " ".join(f"id{i}" for i in range(60)) + "\n@data\n"
                + "".join(f"{i},1:id{i}\n" for i in range(60)), "ids.ts")
    with pytest.raises(DataError, match=r"60 distinct labels among 60 sequences .* as ids are, not classes"):
        load_splits(cfg(name="files", train=str(ids)))
    body = "".join(f"{i},{i % 3}:{'abc'[i % 3]}\n" for i in range(30))
    declared = write(tmp_path, "@classLabel true a b c z\n@data\n" + body, "z.ts")
    with pytest.raises(DataError) as e:
        load_splits(cfg(name="files", train=str(declared)))
    assert one_line_error(e).endswith("@classLabel declares 'z', which no training series has; expected every "
                                      "declared class among the training series (the model would have an output "
                                      "it never learned)")


def test_a_head_training_cannot_fit_is_said_before_the_data_is_read(tmp_path: Path) -> None:
    """Found by a user: a regression .ts with head = "regression" was refused as "expected class labels
    (@classLabel true)", which reads as a file-format mistake; the head is the reason, said first."""
    from conftest import cli

    ts = tmp_path / "targets.ts"
    ts.write_text("@problemName r\n@univariate true\n@targetLabel true\n@data\n1,2,3:0.5\n2,3,4:0.7\n")
    result = cli("train", str(tmp_path / "d"), "--set", "data.name=files", "--set", f"data.train={ts}",
                 "--set", "model.head=regression")
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert ("model.head = 'regression' cannot be trained from labelled data; training supports head = "
            "'classification' or 'binary' (import other heads with attn-export load)") in result.stderr
    assert not (tmp_path / "d").exists()
