"""The shape of every JSON artefact attn-export reads, declared once, and the one function that checks it.

    raw = store.read_json(path, schema.METRICS)     # checked: a DataError naming the file and the key
    schema.check(value, schema.MODEL, path)             # the same check on a value already parsed

A kind (``MODEL``, ``MANIFEST``, ``METRICS``, ``VERIFY``, ``BENCH``, ``QUANTIZE``, ``BUNDLE``) is a table
built from five declarations: ``Value`` (a scalar and its test), ``Maybe`` (that, or null), ``Items`` (a
list), ``Obj`` (an object whose listed keys hold what the table says; more keys are welcome, as DESIGN
promises) and ``Table`` (an object with keys of one kind, each holding the same shape); ``Where`` adds a
test across keys. ``_walk`` is the one function that reads them. Every key a reader uses is declared with
the type that reader needs, so that a file which passed the check is indexed and formatted without a
KeyError, TypeError or AttributeError; an edited or damaged file is one line::

    <file>: artifacts['model.onnx'].parent is 5; expected a file name (string)

Hand-written, not jsonschema: the device runs this same code with only numpy installed (jsonschema is not
there, nor in JetPack 5's Python 3.8), and the messages must be DESIGN's one-line ``Error:`` form.
"""

from __future__ import annotations

import json
import math
import re
import sys
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any, Callable, Mapping, Optional, Sequence, Tuple, Union

from ..errors import DataError

__all__ = ["BENCH", "BUNDLE", "MANIFEST", "MAX_DEPTH", "METRICS", "MODEL", "MODEL_FORMAT", "QUANTIZE", "VERIFY",
           "Items", "Maybe", "Node", "Obj", "Table", "Value", "Where", "check", "depth", "mismatch"]

MAX_DEPTH = 64  # attn-export's JSON nests under 10 levels; json.loads recurses once per level
MODEL_FORMAT = 1  # model.json's "format": attn_export.checkpoint writes it


@dataclass(frozen=True)
class Value:
    """A scalar: ``test`` says whether a value fits, ``what`` is the message's "expected ..."."""

    what: str
    test: Callable[[Any], bool]


@dataclass(frozen=True)
class Maybe:
    """``node``, or null."""

    node: "Node"


@dataclass(frozen=True)
class Items:
    """A list of ``node``; of exactly ``length`` items where given."""

    node: "Node"
    length: Optional[int] = None

    @property
    def what(self) -> str:
        return "a list" if self.length is None else f"a list of {self.length}"


@dataclass(frozen=True)
class Obj:
    """An object: each key of ``fields`` that is present holds what it says; ``required`` keys must be."""

    fields: Mapping[str, "Node"] = field(default_factory=dict)
    required: Tuple[str, ...] = ()
    what: str = "an object"


@dataclass(frozen=True)
class Table:
    """An object whose every key passes ``keys`` and every value is ``values``."""

    keys: Value
    values: "Node"
    what: str = "an object"


@dataclass(frozen=True)
class Where:
    """``node``, and ``test`` on the whole value (a rule across its keys)."""

    node: "Node"
    test: Callable[[Any], bool]
    what: str


Node = Union[Value, Maybe, Items, Obj, Table, Where]
JsonPath = Tuple[Union[str, int], ...]


def _number(v: Any) -> bool:
    """An int or a float, not a bool; an int only within a float's range (formatting converts it)."""
    return type(v) is float or (type(v) is int and abs(v) <= sys.float_info.max)


def _plain_name(v: Any) -> bool:
    return (isinstance(v, str) and v not in ("", ".", "..") and not any(c in v for c in "/\\\x00")
            and not (len(v) > 1 and v[1] == ":"))


def _relative_path(v: Any) -> bool:
    return isinstance(v, str) and all(_plain_name(part) for part in v.split("/"))


STR = Value("a string", lambda v: isinstance(v, str))
INT = Value("an integer", lambda v: type(v) is int)
COUNT = Value("a positive integer", lambda v: type(v) is int and v >= 1)
SIZE = Value("an integer of at least 0", lambda v: type(v) is int and v >= 0)
NUMBER = Value("a number", _number)
FINITE = Value("a finite number", lambda v: _number(v) and math.isfinite(v))
# a time: a hand-edited -1 or NaN had been shown as "-1.00 ms" (found by attacking)
DURATION = Value("a positive finite number of milliseconds", lambda v: _number(v) and math.isfinite(v) and v > 0)
BOOL = Value("true or false", lambda v: type(v) is bool)
SHA256 = Value("a sha256 (string)", lambda v: isinstance(v, str))
FILE_NAME = Value("a file name (string)", _plain_name)  # a name inside the artefact directory, never a path
MEMBER = Value("a relative path inside the bundle (no leading /, no '..')", _relative_path)
DIM = Value("a dimension (an integer or a name)", lambda v: type(v) is int or isinstance(v, str))


def _one_of(*values: Any) -> Value:
    return Value("one of " + ", ".join(str(v) for v in values), lambda v: isinstance(v, str) and v in values)


def _ordered(lengths: Mapping[str, int]) -> bool:
    return lengths["min"] <= lengths["median"] <= lengths["max"]


# --------------------------------------------------------------------------------------------------
# model.json (ModelInfo.parse adds what depends on other keys or on iospec: the head, labels per output,
# statistics per feature)

_SECTION = Obj()  # a recipe table; its keys are checked like a recipe's (runtime.settings, attn_export.config)
MODEL = Obj({
    "format": Value(f"{MODEL_FORMAT} (the model.json format this attn-export reads)",
                    lambda v: type(v) is int and v == MODEL_FORMAT),
    "input_size": COUNT,
    "num_outputs": COUNT,
    "labels": Maybe(Items(STR)),
    "feature_names": Maybe(Items(STR)),
    "normalization": Maybe(Obj({"mean": Items(FINITE), "std": Items(FINITE)}, ("mean", "std"))),
    "train_lengths": Maybe(Where(Obj({"min": COUNT, "median": COUNT, "max": COUNT}, ("min", "median", "max")),
                                 _ordered, "min <= median <= max")),
    "source": Maybe(STR),
    "source_sha256": Maybe(SHA256),
    "recipe": Obj({"model": Obj({"head": STR}), "data": Obj({"missing": STR}), "verify": _SECTION, "build": _SECTION},
                  ("model",)),
}, ("format", "input_size", "num_outputs", "recipe"))

# --------------------------------------------------------------------------------------------------
# manifest.json: every key a reader uses (lineage, verdicts, engines); more are welcome


def _shapes(rank: int) -> Obj:
    dims = Items(SIZE, rank)
    return Obj({"min": dims, "opt": dims, "max": dims}, ("min", "opt", "max"))


_TENSORS = Items(Obj({"name": STR, "dtype": STR, "dims": Items(DIM)}, ("name", "dtype", "dims")))
_ENTRY = Obj({
    "sha256": SHA256,
    "parent": Maybe(FILE_NAME),
    "parent_sha256": Maybe(SHA256),
    "created_by": STR,
    "verified": Obj({"passed": BOOL, "sha256": SHA256, "verify_sha256": Maybe(SHA256), "backends": Items(STR),
                     "failed_backends": Items(STR), "accuracy": Maybe(NUMBER), "overrides": Items(STR), "cut": BOOL,
                     "settings": Table(STR, Maybe(NUMBER))}),
    "precision": STR,
    "profile": Obj({"x": _shapes(3), "lengths": _shapes(1)}, ("x",)),
    "io_spec": Obj({"inputs": _TENSORS, "outputs": _TENSORS}, ("inputs", "outputs")),
    "tensorrt": STR,
    "gpu": STR,
    "compute_capability": STR,
    "hardware_compatibility": Maybe(STR),
    "version_compatible": BOOL,
    "host_code": BOOL,
    "build_seconds": NUMBER,
}, ("sha256",))
MANIFEST = Obj({"schema": INT, "artifacts": Table(FILE_NAME, _ENTRY)}, ("schema", "artifacts"))

# --------------------------------------------------------------------------------------------------
# metrics.json (attn-export train)

_SPLIT = Obj({"accuracy": Maybe(NUMBER), "loss": Maybe(NUMBER), "mae": Maybe(NUMBER), "rmse": Maybe(NUMBER)})
METRICS = Obj({
    "train": _SPLIT, "val": _SPLIT, "test": _SPLIT,
    "epochs": INT, "wall_seconds": NUMBER, "seed": INT,
    "data_files": Table(STR, Obj({"sha256": SHA256, "path": STR})), "filled": Table(STR, INT), "test_in_train": INT,
    "epochs_planned": INT, "stopped_early": BOOL, "best_epoch": INT, "sizes": Obj({"test": INT}),
    "classes": Items(Obj({"label": STR, "train": INT, "val": INT, "test": INT, "test_correct": INT},
                         ("label", "train", "val", "test", "test_correct"))),
}, ("test",))

# --------------------------------------------------------------------------------------------------
# verify.json (runtime.verify.VerifyResult.to_dict; the report renders it)

_MAYBE_NUMBER = Maybe(NUMBER)
_CASE = Obj({
    "batch": INT, "seq": INT, "padded": BOOL, "max_abs": _MAYBE_NUMBER, "max_rel": _MAYBE_NUMBER,
    "cosine": _MAYBE_NUMBER, "argmax_agreement": _MAYBE_NUMBER, "attention_max_abs": _MAYBE_NUMBER,
    "passed": BOOL, "problems": Items(STR), "range": STR, "judged_by": STR, "budget": _MAYBE_NUMBER,
    "ratio": _MAYBE_NUMBER, "stress_ratio": _MAYBE_NUMBER,
}, ("batch", "seq", "padded", "cosine", "argmax_agreement", "passed"))
_RESULT = Obj({
    "backend": STR, "artifact": Maybe(STR), "precision": Maybe(STR), "status": _one_of("passed", "failed", "skipped"),
    "reason": Maybe(STR), "accuracy": _MAYBE_NUMBER, "accuracy_delta": _MAYBE_NUMBER,
    "argmax_agreement": _MAYBE_NUMBER, "test_logits_max_abs": _MAYBE_NUMBER,
    "latency_ms": Maybe(Obj({"p50": NUMBER}, ("p50",))), "latency_shape": Maybe(Items(INT)),
    "budget": Maybe(Obj({"mean_ratio": _MAYBE_NUMBER, "worst_ratio": _MAYBE_NUMBER, "mean_allowed": _MAYBE_NUMBER})), "cases": Items(_CASE), "cases_not_run": Items(STR),
    "problems": Items(STR), "hint": Maybe(STR), "unreadable": Maybe(STR), "sha256": Maybe(SHA256),
    "carried_from": Maybe(STR),
    "cut": Maybe(Obj({"steps": Items(SIZE), "rows": INT, "moved": INT, "own": INT}, ("steps", "rows", "moved", "own"))),
    "cpu": Maybe(STR), "isa": Maybe(Items(STR)),
}, ("backend", "status"))
_CELL = Obj({"runtime": STR, "artifact": STR, "precision": STR, "status": STR, "detail": Maybe(STR),
             "worst_ratio": _MAYBE_NUMBER, "carried_from": Maybe(STR)}, ("runtime", "artifact", "precision", "status"))
_RULE = Where(Obj({
    "atol": _MAYBE_NUMBER, "rtol": _MAYBE_NUMBER, "multiple": NUMBER, "budget_precision": Maybe(STR),
    "mean_multiple": _MAYBE_NUMBER, "deployment_max_seq": Maybe(INT), "min_argmax_agreement": _MAYBE_NUMBER,
    "max_accuracy_drop": _MAYBE_NUMBER,
}, ("atol", "min_argmax_agreement", "max_accuracy_drop")),
    lambda r: r["atol"] is None or r.get("rtol") is not None, "an rtol number wherever atol is one")


def _aligned(samples: Mapping[str, Any]) -> bool:
    """At least one sample, and every target's row k as long as sample k (one attention weight per step)."""
    n = len(samples["indices"])
    return len(samples["lengths"]) == len(samples["labels"]) == n >= 1 and all(
        len(rows) == n and all(len(row) == length for row, length in zip(rows, samples["lengths"]))
        for rows in samples["by_target"].values())


VERIFY = Obj({
    "passed": BOOL,
    "reference": Obj({"backend": STR, "precision": STR, "source": STR, "accuracy": _MAYBE_NUMBER,
                      "sha256": Maybe(SHA256)}, ("backend", "precision", "source")),
    "results": Items(_RESULT),
    "conformance": Items(_CELL),
    "tolerances": Table(STR, _RULE),
    "overrides": Items(STR),
    "recipe_settings": Items(STR),
    "deployment_max_seq": Maybe(INT),
    "test_split": Maybe(Obj({"sequences": SIZE, "batch": SIZE, "min_length": SIZE, "max_length": SIZE},
                            ("max_length",))),
    "sweep": Obj({"cases": INT, "padded": INT, "shapes": Items(Items(INT, 2))}, ("cases", "padded", "shapes")),
    "attention_samples": Maybe(Where(Obj({
        "indices": Items(INT), "lengths": Items(SIZE), "labels": Items(NUMBER),  # class indices, or targets
        "by_target": Table(STR, Items(Items(NUMBER))),
    }, ("indices", "lengths", "labels", "by_target")), _aligned,
        "samples: indices, lengths, labels and every target's rows of one count (at least 1), row k as long as "
        "lengths[k]")),
    "seconds": NUMBER,
    "untrusted": Items(STR),
    "tensorrt": Table(STR, Table(STR, STR)),
    "created": STR,
    "not_carried": Items(STR),
    "standing": Items(STR),
}, ("passed", "reference", "sweep"))

# --------------------------------------------------------------------------------------------------
# bench.json (attn_export.bench; the report renders it)

_PICK = Obj({"backend": STR, "artifact": FILE_NAME, "precision": STR, "p50_ms": DURATION,
             "torch_p50_ms": Maybe(DURATION), "ratio": Maybe(FINITE), "vs_default": FINITE, "note": STR,
             "shapes": Items(STR), "unsteady": FINITE, "unsteady_of": STR, "unsteady_against": STR,
             "slower_at": Items(STR)},
            ("backend", "artifact", "precision", "p50_ms", "torch_p50_ms", "ratio"))
_COUNT_KEY = Value("a whole number written as text", lambda v: isinstance(v, str) and v.isdigit() and len(v) < 10)
_GRID = Where(Items(Value("a positive integer", lambda v: type(v) is int and 0 < v < 1 << 31)), bool,
              "a non-empty list of positive integers")
BENCH = Obj({
    "machine": Obj({"cpu": STR, "processor": STR, "isa": Items(STR), "threads": Maybe(INT), "cpu_count": Maybe(INT),
                    "platform": STR, "python": STR}),
    "method": Obj({"timing": STR, "seconds_per_shape": NUMBER, "min_iterations": INT,
                   "made_by": _one_of("attn-export bench", "attn-export run")}, ("timing", "seconds_per_shape")),
    "plots": Table(STR, FILE_NAME),
    "scaling": Table(STR, Obj({
        "seq_fit": Maybe(Obj({"ms_per_step": _MAYBE_NUMBER, "intercept_ms": _MAYBE_NUMBER, "r2": _MAYBE_NUMBER})),
        "throughput_by_batch": Table(_COUNT_KEY, FINITE), "p50_ms_by_seq": Table(_COUNT_KEY, FINITE), "batch": INT,
        "seq": INT,
    }, ("throughput_by_batch",))),
    "batches": _GRID, "seqs": _GRID,
    # the rows report marks and redraws from (each row's file, shape and timing: found by fuzzing)
    "results": Items(Obj({"backend": STR, "artifact": Maybe(STR), "precision": Maybe(STR), "batch": INT, "seq": INT,
                          "latency_ms": Obj({"p50": DURATION, "p90": DURATION}, ("p50",)), "verified": BOOL},
                         ("backend", "batch", "seq"))),
    "ratios": Obj({"reference": STR, "by_shape": Table(STR, Table(STR, _MAYBE_NUMBER))}, ("reference", "by_shape")),
    "artifacts": Table(FILE_NAME, SHA256),
    "recommended": Maybe(Obj({  # runtime.recommend
        "cpu": STR, "isa": Items(STR), "threads": Maybe(INT), "reason": STR, "default": STR, "margin": FINITE,
        "by_shape": Table(STR, _PICK), "overall": Maybe(_PICK),
    }, ("cpu",))),
}, ("machine", "method", "scaling", "ratios", "batches", "seqs"))

# --------------------------------------------------------------------------------------------------
# quantize.json (attn_export.quantize: one report per precision) and a bundle's bundle.json

QUANTIZE = Table(STR, Obj())
BUNDLE_FORMAT = 1  # bundle.json's "schema": attn_export.runtime.bundle writes it
BUNDLE_TARGETS = ("cpu", "jetson", "triton")  # what a bundle is made for (bundle --for)
# "for" decides what the device package does with a bundle (a Triton one it refuses): an edited one read
# "nope" and schema 99 without a word (found by attacking)


def _tensorrt_target(value: Any) -> bool:
    from .trt.readiness import TARGETS  # imported when read: this module stays below every other

    return isinstance(value, str) and value in TARGETS


BUNDLE = Obj({"schema": Value(f"{BUNDLE_FORMAT} (the bundle format this attn-export reads)",
                              lambda v: type(v) is int and v == BUNDLE_FORMAT),
              "for": _one_of(*BUNDLE_TARGETS), "created_by": STR,
              # a Jetson bundle's TensorRT line: 5 had made info drop it and build skip its check, and an unknown
              # name blamed a --target no one gave (found by attacking)
              "target": Value("a TensorRT target attn-export knows (jetpack5, jetpack6, jetpack7, trt10, trt11)",
                              _tensorrt_target), "tensorrt": STR,
              "files": Table(MEMBER, Obj({"sha256": SHA256, "size": SIZE}, ("sha256", "size"))),
              # a CPU bundle's pick, which predict and info name (found by review: an edited one was a traceback)
              "recommended": Obj({"backend": STR, "artifact": FILE_NAME, "precision": STR, "by": STR, "cpu": STR,
                                  "beyond_judged": STR},
                                 ("backend", "artifact", "precision", "by", "cpu"))},
             ("schema", "for", "files"))


# --------------------------------------------------------------------------------------------------
# the walk


def check(value: Any, kind: Node, where: object) -> Any:
    """``value`` when it has ``kind``'s shape, else DataError: ``<where>: <key> is <value>; expected ...``."""
    _walk(value, kind, (), where)
    return value


def mismatch(where: object, at: Sequence[Union[str, int]], value: Any, expected: str) -> DataError:
    """The one-line error for the value at JSON path ``at`` (a rule a reader checks beyond the table)."""
    return DataError(f"{where}: {_path(at)} is {_show(value)}; expected {expected}")


def _walk(value: Any, node: Node, at: JsonPath, where: object) -> None:
    if isinstance(node, Maybe):
        if value is not None:
            _walk(value, node.node, at, where)
    elif isinstance(node, Value):
        if not node.test(value):
            raise mismatch(where, at, value, node.what)
    elif isinstance(node, Where):
        _walk(value, node.node, at, where)
        if not node.test(value):
            raise mismatch(where, at, value, node.what)
    elif isinstance(node, Items):
        if not isinstance(value, list) or (node.length is not None and len(value) != node.length):
            raise mismatch(where, at, value, node.what)
        for i, item in enumerate(value):
            _walk(item, node.node, at + (i,), where)
    elif not isinstance(value, dict):
        raise mismatch(where, at, value, node.what)
    elif isinstance(node, Table):
        for key, item in value.items():
            if not node.keys.test(key):
                raise DataError(f"{where}: {_path(at)} has the key {_show(key, 200)}; expected every key to be "
                                f"{node.keys.what}")
            _walk(item, node.values, at + (key,), where)
    else:  # Obj: its keys in the order declared
        for key, sub in node.fields.items():
            if key in value:
                _walk(value[key], sub, at + (key,), where)
            elif key in node.required:
                raise DataError(f"{where}: {_path(at + (key,))} is missing; expected {_what(sub)}")


def _what(node: Node) -> str:
    return _what(node.node) + " or null" if isinstance(node, Maybe) else node.what


def _path(at: Sequence[Union[str, int]]) -> str:
    """``artifacts['model.onnx'].parent``; the document itself is "the top level"."""
    if not at:
        return "the top level"
    out = ""
    for key in at:
        if isinstance(key, str) and key.isidentifier() and key.isascii():
            out += f".{key}" if out else key
        else:
            shown = repr(key)
            out += f"[{shown if len(shown) <= 40 else shown[:37] + '...'}]"
    return out


def _show(value: Any, limit: int = 60) -> str:
    """``value`` as JSON, on one line (every character outside ASCII escaped) and cut to ``limit``."""
    try:
        text = json.dumps(value, ensure_ascii=True)
    except (TypeError, ValueError):  # not from a JSON file: a tuple key, an int longer than Python prints
        text = f"a {type(value).__name__}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


# a string (an unterminated one runs to the end) and the runs of text holding no bracket
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?', re.DOTALL)
_NOT_BRACKET = re.compile(r'[^\[\]{}]+')
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


def depth(text: str) -> int:
    """How deep ``[`` and ``{`` nest in JSON ``text``, outside strings: checked before ``json.loads``,
    which recurses once per level and dies of a RecursionError near 1000. Regular expressions do the
    scanning, so that a 64 MB file takes a moment, not a minute."""
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    return max(accumulate(map(_STEP.__getitem__, brackets)), default=0)
