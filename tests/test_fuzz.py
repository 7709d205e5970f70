"""Fuzzing the readers a user can hand arbitrary input: the recipe loader, ``--set`` overrides, the ``.ts``
reader, the ``.npz`` reader, and the readers of every JSON artefact (model.json, manifest.json, metrics.json,
verify.json, bench.json, a bundle's bundle.json) on random JSON and on mutations of real files.

The property everywhere: the call either returns a valid result or raises one of the project's own errors
(a subclass of ``AttnExportError``, which the CLI turns into one ``Error:`` line and DESIGN's exit code).
Anything else (ValueError, KeyError, TypeError, IndexError, UnicodeDecodeError, OverflowError, MemoryError)
would reach the user as a traceback.
"""

from __future__ import annotations

import copy
import io
import json
import math
import shutil
import string
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path
from typing import Any, Callable
from unittest import mock

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from attn_export.config import Recipe, _SECTIONS, _hints, load_recipe, recipe_from_dict  # noqa: E402
from attn_export.data import read_npz, read_ts  # noqa: E402
from attn_export.errors import AttnExportError, ConfigError, DataError  # noqa: E402
from attn_export.inspect import describe_directory, render  # noqa: E402
from attn_export.report import write_report  # noqa: E402
from attn_export.runtime import Predictor, schema, store  # noqa: E402
from attn_export.runtime.bundle import BUNDLE_JSON, Archive, _check_listing, pack  # noqa: E402
from attn_export.runtime.modelinfo import ModelInfo  # noqa: E402

from conftest import cli  # noqa: E402

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck), database=None)
FEW = settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck), database=None)


def _ours_or_ok(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Call ``fn``; a project error is fine (and must be a one-line message), anything else fails the test."""
    try:
        return fn(*args, **kwargs)
    except AttnExportError as e:
        msg = str(e)
        assert msg and "\n" not in msg, f"error message is not one non-empty line: {msg!r}"
        return None


# --------------------------------------------------------------------------------------------------
# recipes

SECTION_NAMES = list(_SECTIONS)
FIELD_NAMES = sorted({k for cls in _SECTIONS.values() for k in _hints(cls)})

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.binary(max_size=6),
    st.sampled_from(["synthetic", "files", "linear", "additive", "torchscript", "last", "cpu", "error", ""]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.tuples(inner, inner),
        st.dictionaries(st.one_of(st.sampled_from(FIELD_NAMES), st.text(max_size=6)), inner, max_size=3),
    ),
    max_leaves=8,
)
keys = st.one_of(st.sampled_from(FIELD_NAMES), st.text(max_size=10), st.integers(), st.none())
tables = st.one_of(st.dictionaries(keys, values, max_size=5), values)
recipes = st.one_of(
    st.dictionaries(st.one_of(st.sampled_from(SECTION_NAMES), st.text(max_size=8), st.integers()), tables,
                    max_size=4),
    values,
)


@FUZZ
@given(recipes)
def test_recipe_from_dict_raises_only_config_errors(d: Any) -> None:
    r = _ours_or_ok(recipe_from_dict, d)
    assert r is None or isinstance(r, Recipe)


toml_keys = st.one_of(st.sampled_from(FIELD_NAMES), st.text(alphabet=string.ascii_letters + "_-", min_size=1,
                                                             max_size=8))
toml_values = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(
        lambda f: "nan" if math.isnan(f) else ("inf" if f == math.inf else "-inf" if f == -math.inf else repr(f))),
    st.booleans().map(lambda b: "true" if b else "false"),
    st.text(max_size=10).map(lambda s: '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'),
    st.lists(st.integers(min_value=-5, max_value=99).map(str), max_size=4).map(lambda xs: "[" + ", ".join(xs) + "]"),
    st.sampled_from(["{}", "{a = 1}", "[[1], [2]]", "1979-05-27", "07:32:00", '"files"', '"additive"', "0x10",
                     "1e999", "-0", "[1.5, 2]", "[true]"]),
)


@st.composite
def toml_documents(draw: Any) -> str:
    lines = []
    for _ in range(draw(st.integers(0, 4))):
        lines.append(f"[{draw(st.one_of(st.sampled_from(SECTION_NAMES), toml_keys))}]")
        for _ in range(draw(st.integers(0, 4))):
            lines.append(f"{draw(toml_keys)} = {draw(toml_values)}")
    if draw(st.booleans()):
        lines.insert(draw(st.integers(0, len(lines))), draw(st.text(max_size=20)))  # garbage anywhere
    return "\n".join(lines)


@FUZZ
@given(st.one_of(toml_documents(), st.text(max_size=200)))
def test_load_recipe_on_arbitrary_toml_text(tmp_path_factory: Any, text: str) -> None:
    path = tmp_path_factory.mktemp("recipe") / "r.toml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    r = _ours_or_ok(load_recipe, path)
    assert r is None or isinstance(r, Recipe)


@FEW
@given(st.binary(max_size=200))
def test_load_recipe_on_arbitrary_bytes(tmp_path_factory: Any, data: bytes) -> None:
    path = tmp_path_factory.mktemp("recipe") / "r.toml"
    path.write_bytes(data)
    _ours_or_ok(load_recipe, path)


overrides = st.one_of(
    st.text(max_size=40),
    st.builds(lambda s, k, v: f"{s}.{k}={v}", st.one_of(st.sampled_from(SECTION_NAMES), st.text(max_size=5)),
              st.one_of(st.sampled_from(FIELD_NAMES), st.text(max_size=5)), st.one_of(toml_values, st.text(max_size=10))),
)


@FUZZ
@given(st.lists(overrides, min_size=1, max_size=3))
def test_set_overrides_raise_only_config_errors(items: list[str]) -> None:
    r = _ours_or_ok(load_recipe, None, items)
    assert r is None or isinstance(r, Recipe)


# --------------------------------------------------------------------------------------------------
# .ts

VALID_TS = """# a small valid file
@problemName Tiny
@timeStamps false
@missing false
@univariate false
@dimensions 2
@equalLength false
@classLabel true a b
@data
1.0,2.0,3.0:4.0,5.0,6.0:a
0.5,0.25:1.5,2.5:b
7,8,9,10:1,2,3,4:a
"""
TS_ALPHABET = "0123456789.,:-+?eE@# \tabNnIf\n\r\x00é"


@st.composite
def mutated_ts(draw: Any) -> str:
    lines = VALID_TS.split("\n")
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["delete", "insert", "replace", "duplicate"]))
        i = draw(st.integers(0, len(lines) - 1)) if lines else 0
        if op == "delete" and lines:
            del lines[i]
        elif op == "insert":
            lines.insert(i, draw(st.one_of(st.text(alphabet=TS_ALPHABET, max_size=30), st.sampled_from(
                ["@data", "@classLabel false", "@classLabel true", "@targetLabel true", "@dimensions 0",
                 "@dimensions 3", "@univariate true", "@timeStamps true", "1,2:3,4:c", "?,NaN:1,2:a", "inf:1:a",
                 "1e40,1:2,3:a", ":", "::", "1,2,3:a", ",:,:a", "1:2:3:4:5"]))))
        elif op == "duplicate" and lines:
            lines.insert(i, lines[i])
        elif lines and lines[i]:
            line = lines[i]
            j = draw(st.integers(0, len(line) - 1))
            lines[i] = line[:j] + draw(st.text(alphabet=TS_ALPHABET, min_size=0, max_size=3)) + line[j + 1:]
    return "\n".join(lines)


def _check_ts_result(result: Any) -> None:
    if result is None:
        return
    seqs, raw, declared = result
    assert len(seqs) == len(raw) >= 1
    feats = seqs[0].shape[1]
    for s in seqs:
        assert s.dtype == np.float32 and s.ndim == 2 and s.shape[0] >= 1 and s.shape[1] == feats
        assert np.all(np.isfinite(s))
    assert declared is None or all(isinstance(d, str) for d in declared)


@FUZZ
@given(mutated_ts(), st.sampled_from(["error", "ffill", "zero"]))
def test_read_ts_on_mutated_valid_files(tmp_path_factory: Any, text: str, missing: str) -> None:
    path = tmp_path_factory.mktemp("ts") / "m.ts"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    _check_ts_result(_ours_or_ok(read_ts, path, missing))


@FUZZ
@given(st.one_of(st.text(max_size=300), st.text(alphabet=TS_ALPHABET, max_size=300).map(lambda t: "@data\n" + t)),
       st.sampled_from(["error", "ffill", "zero"]))
def test_read_ts_on_arbitrary_text(tmp_path_factory: Any, text: str, missing: str) -> None:
    path = tmp_path_factory.mktemp("ts") / "t.ts"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    _check_ts_result(_ours_or_ok(read_ts, path, missing))


@FEW
@given(st.binary(max_size=300))
def test_read_ts_on_arbitrary_bytes(tmp_path_factory: Any, data: bytes) -> None:
    path = tmp_path_factory.mktemp("ts") / "b.ts"
    path.write_bytes(data)
    _check_ts_result(_ours_or_ok(read_ts, path))


def test_read_ts_rejects_an_unknown_missing_policy(tmp_path: Path) -> None:
    path = tmp_path / "v.ts"
    path.write_text(VALID_TS)
    with pytest.raises(DataError):
        read_ts(path, "bogus")


# --------------------------------------------------------------------------------------------------
# .npz

dtypes = st.sampled_from(["f4", "f8", "f2", "i1", "i4", "i8", "u1", "u8", "?", "c8", "c16", "U3", "S3", "V4",
                          "M8[s]", "m8[s]", "O"])


@st.composite
def arrays(draw: Any) -> np.ndarray:
    dtype = np.dtype(draw(dtypes))
    shape = tuple(draw(st.lists(st.integers(0, 5), max_size=4)))
    n = int(np.prod(shape))
    if dtype.kind in "fc":
        raw = draw(st.lists(st.floats(allow_nan=True, allow_infinity=True, width=64), min_size=n, max_size=n))
        with np.errstate(all="ignore"):
            return np.array(raw, dtype=np.float64).astype(dtype).reshape(shape)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        raw = draw(st.lists(st.integers(int(info.min), int(info.max)), min_size=n, max_size=n))
        return np.array(raw, dtype=dtype).reshape(shape)
    if dtype.kind == "b":
        return np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)), dtype=dtype).reshape(shape)
    if dtype.kind == "U":
        return np.array(draw(st.lists(st.text(max_size=3), min_size=n, max_size=n)), dtype=dtype).reshape(shape)
    if dtype.kind == "S":
        return np.array(draw(st.lists(st.binary(max_size=3), min_size=n, max_size=n)), dtype=dtype).reshape(shape)
    if dtype.kind == "O":
        return np.array([draw(st.integers())] * n + [None], dtype=object)[:n].reshape(shape)
    return np.zeros(shape, dtype=dtype)


lengths_arrays = st.one_of(
    arrays(),
    st.lists(st.integers(-(2**62), 2**62), max_size=5).map(lambda v: np.array(v, dtype=np.int64)),
    st.lists(st.integers(0, 2**64 - 1), max_size=4).map(lambda v: np.array(v, dtype=np.uint64)),
    st.lists(st.integers(-3, 8), min_size=1, max_size=5).map(lambda v: np.array(v, dtype=np.int32)),
)


@st.composite
def npz_contents(draw: Any) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    if draw(st.integers(0, 4)):
        kind = draw(st.sampled_from(["padded", "concat", "any"]))
        if kind == "any":
            out["x"] = draw(arrays())
        else:
            n, t, f = draw(st.integers(0, 4)), draw(st.integers(0, 6)), draw(st.integers(0, 3))
            shape = (n, t, f) if kind == "padded" else (n * t, f)
            vals = draw(st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32),
                                 min_size=int(np.prod(shape)), max_size=int(np.prod(shape))))
            out["x"] = np.array(vals, dtype=np.float32).reshape(shape)
    if draw(st.booleans()):
        out["lengths"] = draw(lengths_arrays)
    if draw(st.booleans()):
        out["y"] = draw(st.one_of(arrays(), st.lists(st.integers(0, 3), max_size=5).map(np.array),
                                  st.lists(st.text(max_size=3), max_size=5).map(np.array)))
    for extra in draw(st.lists(st.text(alphabet=string.ascii_letters, min_size=1, max_size=4), max_size=2)):
        out[extra] = np.zeros(2)
    return out


def _check_npz_result(result: Any) -> None:
    if result is None:
        return
    seqs, labels = result
    assert len(seqs) >= 1
    for s in seqs:
        assert s.dtype == np.float32 and s.ndim == 2 and s.shape[0] >= 1 and s.shape[1] >= 1
        assert np.all(np.isfinite(s))
    assert labels is None or (len(labels) == len(seqs) and all(isinstance(v, str) for v in labels))


def _savez(path: Path, contents: dict[str, np.ndarray]) -> None:
    """Like numpy.savez, but able to store object arrays (pickled) to check that they are refused."""
    with zipfile.ZipFile(path, "w") as zf:
        for key, arr in contents.items():
            buf = io.BytesIO()
            np.save(buf, arr, allow_pickle=True)
            zf.writestr(key + ".npy", buf.getvalue())


@FUZZ
@given(npz_contents())
def test_read_npz_on_arbitrary_arrays(tmp_path_factory: Any, contents: dict[str, np.ndarray]) -> None:
    path = tmp_path_factory.mktemp("npz") / "a.npz"
    _savez(path, contents)
    _check_npz_result(_ours_or_ok(read_npz, path))


@FEW
@given(st.one_of(st.binary(max_size=400), st.binary(max_size=200).map(lambda b: b"PK\x03\x04" + b),
                 st.binary(max_size=200).map(lambda b: b"\x93NUMPY" + b)))
def test_read_npz_on_arbitrary_bytes(tmp_path_factory: Any, data: bytes) -> None:
    path = tmp_path_factory.mktemp("npz") / "b.npz"
    path.write_bytes(data)
    _check_npz_result(_ours_or_ok(read_npz, path))


def _npy_header(shape: tuple[int, ...], dtype: str = "<f4") -> bytes:
    header = repr({"descr": dtype, "fortran_order": False, "shape": shape}).encode()
    header += b" " * (63 - (len(header) + 10) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header


@FEW
@given(st.lists(st.integers(-(2**40), 2**62), min_size=1, max_size=3), st.sampled_from(["<f4", "<i8", "|b1", "<c8"]),
       st.binary(max_size=64))
@example([0, 2**60], "<i8", b"")  # empty, yet past what numpy can index: reshape raised ValueError (found under xdist)
def test_read_npz_with_a_huge_or_negative_declared_shape(tmp_path_factory: Any, shape: list[int], dtype: str,
                                                         payload: bytes) -> None:
    """An .npy header may declare any shape; the reader must refuse it, not allocate it or crash."""
    path = tmp_path_factory.mktemp("npz") / "h.npz"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("x.npy", _npy_header(tuple(shape), dtype) + payload)
        zf.writestr("lengths.npy", _npy_header((len(shape),), "<i8") + payload[:8])
    _check_npz_result(_ours_or_ok(read_npz, path))


@pytest.mark.parametrize("name", ["x.npy", "x"])
def test_read_npz_refuses_a_truncated_member(tmp_path: Path, name: str) -> None:
    path = tmp_path / "t.npz"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(name, _npy_header((1000, 1000, 4))[:-5])
    with pytest.raises(DataError):
        read_npz(path)


def test_read_npz_fuzz_found_cases(tmp_path: Path) -> None:
    """Regressions for what the fuzzers found (kept explicit so they run even without hypothesis' luck)."""
    cases: list[dict[str, np.ndarray]] = [
        {"x": np.zeros((2, 3, 1), np.float32), "lengths": np.array([2**63 - 1, 1], dtype=np.uint64)},
        {"x": np.zeros((3, 1), np.float32), "lengths": np.array([2**62, 2**62, -(2**63) + 3], dtype=np.int64)},
        {"x": np.zeros((2, 1), np.float32), "lengths": np.array([2**64 - 1], dtype=np.uint64)},
        {"x": np.zeros((2, 3, 1), np.float32), "lengths": np.array([], dtype=np.int64)},
        {"x": np.zeros((0, 3, 1), np.float32)},
        {"x": np.zeros((2, 0, 1), np.float32)},
        {"x": np.zeros((2, 1), np.float32), "lengths": np.array([2]), "y": np.array([[1]])},
        {"x": np.zeros((1, 1), np.float32), "lengths": np.array([1]), "y": np.array([1.5])},
        {"x": np.zeros((1, 1), np.float32), "lengths": np.array([1]), "y": np.array([2**63], dtype=np.uint64)},
        {"x": np.zeros((1, 1), np.float32), "lengths": np.array([1]), "y": np.array([1e300])},
        {"x": np.zeros((1, 1), np.float32), "lengths": np.array([1]), "y": np.array([b"\xff"])},
        {"x": np.array([[1 + 2j]]), "lengths": np.array([1])},
        {"x": np.array([["a"]]), "lengths": np.array([1])},
        {"x": np.array([[True]]), "lengths": np.array([1])},
        {"x": np.array([[1e300]]), "lengths": np.array([1])},
        {"x": np.array([[np.nan]]), "lengths": np.array([1])},
        {"x": np.array([[1]], dtype=object), "lengths": np.array([1])},
        {"x": np.zeros((1, 1), np.float32), "lengths": np.array([1.0])},
        {"lengths": np.array([1])},
    ]
    for contents in cases:
        path = tmp_path / "c.npz"
        _savez(path, contents)
        _check_npz_result(_ours_or_ok(read_npz, path))


def test_recipe_fuzz_found_cases(tmp_path: Path) -> None:
    """Regressions for what the recipe fuzzers found."""
    for d in [{"model": {"conv_channels": 5}}, {"model": {"conv_channels": [1.5]}}, {1: {}}, {"data": {1: 2}},
              {"train": {"lr": 10**400}}, {"train": {"lr": float("nan")}}, {"data": {"seed": 2**80}},
              {"model": {"conv_channels": [[1]], "conv_kernel_sizes": [[1]]}}, {"model": {"head": ["x"]}},
              {"model": {"attention": {"a": 1}}}, {"data": {"name": b"files"}}, {"build": {"max_seq": True}}]:
        _ours_or_ok(recipe_from_dict, d)
    for item in ["=", ".=", "a.=1", ".b=1", "model.hidden_size", "model.hidden_size=", "model.hidden_size=[",
                 "model..x=1", "model.hidden_size=1=2", "data.name=\"files\"", "model.x.y=1", "1.2=3",
                 "model.hidden_size=\x00", "model.hidden_size={a=1}", "model.conv_channels=[1,[2]]"]:
        _ours_or_ok(load_recipe, None, [item])
    with pytest.raises(ConfigError):
        load_recipe(tmp_path / "absent.toml")


# --------------------------------------------------------------------------------------------------
# JSON artefacts: random JSON, and mutations of the files a real artefact directory holds

JSON_FEW = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None)
JSON_MANY = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), database=None)
JSON_FILES = ("model.json", "manifest.json", "metrics.json", "verify.json", "bench.json")


def _declared_keys(node: Any) -> set[str]:
    """Every key the schema declares below ``node``: the names a mutation is most likely to matter at."""
    if isinstance(node, schema.Obj):
        return set(node.fields).union(*(_declared_keys(v) for v in node.fields.values()))
    if isinstance(node, schema.Table):
        return _declared_keys(node.values)
    if isinstance(node, (schema.Maybe, schema.Items, schema.Where)):
        return _declared_keys(node.node)
    return set()


JSON_KEYS = sorted(set().union(*(_declared_keys(k) for k in (schema.MODEL, schema.MANIFEST, schema.METRICS,
                                                              schema.VERIFY, schema.BENCH, schema.BUNDLE)))
                   | {"model.onnx", "model.json", "reference.npz", "model.safetensors", "runtime", "x", "1"})
json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 70), st.integers(-(2**70), 2**70), st.just(-(10**400)),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8),
    st.sampled_from(["", ".", "..", "../model.onnx", "/etc/passwd", "model.onnx", "runtime", "runtime/", "a/b",
                     "fp32", "classification", "regression", "none", "passed", "failed", "skipped", "0" * 64]),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.one_of(st.sampled_from(JSON_KEYS), st.text(max_size=6)), inner,
                                            max_size=4)),
    max_leaves=12,
)


def _locations(doc: Any, at: tuple = ()) -> list[tuple]:
    """Every place in ``doc``, as a path of keys and indices (the document itself is ``()``)."""
    out = [at]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _locations(v, at + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _locations(v, at + (i,))
    return out


@st.composite
def mutations(draw: Any, original: Any) -> str:
    """``original`` with one to three values replaced, deleted, added or wrapped; at times cut short."""
    doc = copy.deepcopy(original)
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.sampled_from(_locations(doc)))
        op = draw(st.sampled_from(["replace", "replace", "delete", "add", "wrap"]))
        value = draw(json_values)
        if not at:
            doc = value if op == "replace" else [doc] if op == "wrap" else doc
            continue
        parent = doc
        for key in at[:-1]:
            parent = parent[key]
        key = at[-1]
        if op == "delete":
            del parent[key]
        elif op == "add" and isinstance(parent[key], dict):
            parent[key][draw(st.one_of(st.sampled_from(JSON_KEYS), st.text(max_size=6)))] = value
        elif op == "wrap":
            parent[key] = [parent[key]] if draw(st.booleans()) else {"x": parent[key]}
        else:
            parent[key] = value
    text = json.dumps(doc, indent=draw(st.sampled_from([None, 1])))
    return text[: draw(st.integers(0, len(text)))] if draw(st.integers(0, 9)) == 0 else text


@pytest.fixture(scope="module")
def json_dir(tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real artefact directory with every JSON artefact: the tiny model verified on the device (what
    ``python -m attn_export.runtime verify`` writes) and benched; its verify.json also holds the attention
    samples a host's verify adds (the host's test split). Made once; the fuzzers work on copies."""
    directory = tmp_path_factory.mktemp("json") / "model"
    shutil.copytree(tiny_dir, directory)
    done = subprocess.run([sys.executable, "-m", "attn_export.runtime", "verify", str(directory)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    benched = cli("bench", str(directory), "--backends", "ort-cpu", "--batch", "1,2", "--seq", "4,8",
                  "--seconds", "0.05")
    assert benched.returncode == 0, benched.stderr
    verified = json.loads((directory / "verify.json").read_text())
    verified["attention_samples"] = {"indices": [3, 7], "lengths": [2, 3], "labels": [0, 2],
                                     "by_target": {"ort-cpu model.onnx": [[0.25, 0.75], [0.2, 0.3, 0.5]]}}
    (directory / "verify.json").write_text(json.dumps(verified))
    return directory


@pytest.fixture(scope="module")
def originals(json_dir: Path) -> dict[str, Any]:
    out = {name: json.loads((json_dir / name).read_text()) for name in JSON_FILES}
    with tarfile.open(pack(json_dir, json_dir.parent / "b.tar.gz").path) as tar:
        out[BUNDLE_JSON] = json.loads(tar.extractfile(BUNDLE_JSON).read())  # type: ignore[union-attr]
    return out


@pytest.fixture(scope="module")
def work(json_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """A private copy of the directory per fuzzer (made on first use, reused by its examples)."""
    copies: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in copies:
            copies[name] = tmp_path_factory.mktemp("fuzz") / name
            shutil.copytree(json_dir, copies[name])
        return copies[name]

    return get


def _load(directory: Path) -> None:
    predictor = _ours_or_ok(Predictor.load, directory, backend="ort-cpu", allow_unverified=True, threads=1)
    if predictor is not None:
        predictor.close()


def _model_json(directory: Path, text: str) -> None:
    """model.json as ``text``, recorded in the manifest as if train had written it (so that the runtime
    reads it rather than refusing a changed file), then read by ModelInfo and the runtime."""
    (directory / "model.json").write_text(text)
    manifest = json.loads((directory / "manifest.json").read_text())
    manifest["artifacts"]["model.json"]["sha256"] = store.sha256_file(directory / "model.json")
    (directory / "manifest.json").write_text(json.dumps(manifest))
    info = _ours_or_ok(lambda d: store.Store(d).model(), directory)
    assert info is None or isinstance(info, ModelInfo) and info.spec.features == info.input_size
    if info is not None:
        _load(directory)


@JSON_MANY
@given(st.data())
def test_model_json_mutations(work: Callable[[str], Path], originals: dict[str, Any], data: Any) -> None:
    _model_json(work("model"), data.draw(mutations(originals["model.json"])))


@JSON_FEW
@given(json_values)
def test_model_json_arbitrary(work: Callable[[str], Path], value: Any) -> None:
    _model_json(work("model"), json.dumps(value))


def _manifest(directory: Path, text: str, originals: dict[str, Any]) -> None:
    (directory / "manifest.json").write_text(text)
    if _ours_or_ok(store.read_manifest, directory) is None:
        return
    for name in originals["manifest.json"]["artifacts"]:
        trust = _ours_or_ok(lambda d, n: store.Store(d).state(n), directory, name)
        assert trust is None or all(isinstance(p, str) and "\n" not in p for p in trust.problems())
    described = _ours_or_ok(describe_directory, directory)
    if described is not None:
        render(described)
    _load(directory)


@JSON_MANY
@given(st.data())
def test_manifest_json_mutations(work: Callable[[str], Path], originals: dict[str, Any], data: Any) -> None:
    _manifest(work("manifest"), data.draw(mutations(originals["manifest.json"])), originals)


@JSON_FEW
@given(json_values)
def test_manifest_json_arbitrary(work: Callable[[str], Path], originals: dict[str, Any], value: Any) -> None:
    _manifest(work("manifest"), json.dumps(value), originals)


def _metrics(directory: Path, text: str) -> None:
    (directory / "metrics.json").write_text(text)
    _ours_or_ok(store.read_json, directory / "metrics.json", schema.METRICS)
    described = _ours_or_ok(describe_directory, directory)
    if described is not None:
        render(described)


@JSON_MANY
@given(st.one_of(json_values.map(json.dumps), st.data()))
def test_metrics_json(work: Callable[[str], Path], originals: dict[str, Any], drawn: Any) -> None:
    text = drawn if isinstance(drawn, str) else drawn.draw(mutations(originals["metrics.json"]))
    _metrics(work("metrics"), text)


def _report(directory: Path, name: str, text: str) -> None:
    """The report's readers (verify.json, bench.json, metrics.json) and the sections rendered from them;
    the attention heatmap is left out (matplotlib is slow, and a plot is not a reader)."""
    (directory / name).write_text(text)
    with mock.patch("attn_export.report.attention_heatmaps", return_value=None):
        _ours_or_ok(write_report, directory)


@JSON_MANY
@given(st.one_of(json_values.map(json.dumps), st.data()))
def test_verify_json_through_the_report(work: Callable[[str], Path], originals: dict[str, Any], drawn: Any) -> None:
    text = drawn if isinstance(drawn, str) else drawn.draw(mutations(originals["verify.json"]))
    _report(work("verify"), "verify.json", text)


# derandomized, 60 examples. Hypothesis reported FlakyStrategyDefinition ("the second run stopped drawing
# earlier") here in place of a real failure: the same mutations run outside hypothesis showed the report
# crashing on a bench.json whose machine.isa held a list (now held to its schema), and the error went with it
@settings(JSON_FEW, derandomize=True)
@given(st.one_of(json_values.map(json.dumps), st.data()))
def test_bench_json_through_the_report(work: Callable[[str], Path], originals: dict[str, Any], drawn: Any) -> None:
    directory = work("bench")
    (directory / "verify.json").unlink(missing_ok=True)  # bench.json alone
    text = drawn if isinstance(drawn, str) else drawn.draw(mutations(originals["bench.json"]))
    _report(directory, "bench.json", text)


@pytest.fixture(scope="module")
def members(json_dir: Path, originals: dict[str, Any]) -> dict[str, tarfile.TarInfo]:
    """A real bundle's members (the one ``originals`` packed), their headers checked: what bundle.json is
    held against."""
    with Archive(json_dir.parent / "b.tar.gz") as archive:
        return archive.members


@JSON_MANY
@given(st.one_of(json_values.map(json.dumps), st.data()))
def test_bundle_json_listing(members: dict[str, tarfile.TarInfo], originals: dict[str, Any], drawn: Any) -> None:
    text = drawn if isinstance(drawn, str) else drawn.draw(mutations(originals[BUNDLE_JSON]))
    _ours_or_ok(_check_listing, text.encode(), members, Path("fuzzed.tar.gz"))


def test_json_fuzz_found_cases(json_dir: Path, tmp_path: Path) -> None:
    """Regressions for what the JSON fuzzers found, kept explicit."""
    directory = tmp_path / "d"
    shutil.copytree(json_dir, directory)
    for text in ["[" * 100_000, '{"artifacts": {"model.onnx": {"sha256": "x", "parent": "."}}}', "1" * 5000,
                 '{"artifacts": {"model.onnx": {"sha256": "x", "verified": {"passed": "yes"}}}}']:
        _manifest(directory, text, {"manifest.json": {"artifacts": {"model.onnx": {}}}})
    shutil.copy(json_dir / "manifest.json", directory / "manifest.json")
    bench = json.loads((json_dir / "bench.json").read_text())
    for where, value in (("machine", {"isa": ["avx2", ["x"]]}), ("recommended", {"by_shape": {}}),
                         ("recommended", {"cpu": "c", "overall": {"backend": "ort-cpu"}})):
        (directory / "bench.json").write_text(json.dumps({**bench, where: value}))
        with pytest.raises(DataError, match=f"bench.json: {where}"):
            with mock.patch("attn_export.report.attention_heatmaps", return_value=None):
                write_report(directory)
