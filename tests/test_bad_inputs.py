"""Bad input, table-driven, through the real CLI: every row must end in DESIGN's exit code, exactly one
``Error:`` line on stderr (no traceback), and leave every file it was given byte-for-byte unchanged.

Each row runs on its own copy of the session's tiny trained-and-exported directory (``{d}``) with its input
files in a sibling folder (``{t}``); both trees are hashed before and after the command.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pytest

from conftest import cli

LOCK = ".attn-export.lock"  # the directory's lock file: a lock, not an artefact


class Row(NamedTuple):
    args: tuple[str, ...]
    code: int
    fragment: str
    prep: Callable[[Path, Path], None] | None = None  # (artefact dir copy, input folder)
    directory: str = "tiny"  # tiny: a copy of tiny_dir; prereq: model.json + weights + manifest only; empty


# ------------------------------------------------------------------------------------------ input files

GOOD_TS_HEAD = "@problemName t\n@timeStamps false\n@univariate false\n@dimensions 2\n@classLabel true a b\n@data\n"


def _ts(name: str, body: str, head: str = GOOD_TS_HEAD) -> Callable[[Path, Path], None]:
    def prep(d: Path, t: Path) -> None:
        (t / name).write_text(head + body)
    return prep


def _balanced_ts(n: int = 12, label: str | None = None) -> str:
    rows = []
    for i in range(n):
        lab = label or "ab"[i % 2]
        rows.append(f"{i},{i + 1},{i + 2}:{-i},{i * 2},{i}:{lab}")
    return "\n".join(rows) + "\n"


def _npz(name: str, **arrays: Any) -> Callable[[Path, Path], None]:
    def prep(d: Path, t: Path) -> None:
        np.savez(t / name, allow_pickle=True, **arrays)
    return prep


def _write(name: str, data: bytes | str, into: str = "t") -> Callable[[Path, Path], None]:
    def prep(d: Path, t: Path) -> None:
        target = (d if into == "d" else t) / name
        target.write_bytes(data if isinstance(data, bytes) else data.encode())
    return prep


def _truncate(name: str) -> Callable[[Path, Path], None]:
    def prep(d: Path, t: Path) -> None:
        data = (d / name).read_bytes()
        (d / name).write_bytes(data[: len(data) // 2])
    return prep


def _pickled_module(d: Path, t: Path) -> None:
    import torch

    torch.save(torch.nn.Linear(3, 2), t / "module.pt")


def _torch_save(name: str, obj: object) -> Callable[[Path, Path], None]:
    def prep(d: Path, t: Path) -> None:
        import torch

        torch.save(obj, t / name)
    return prep


def _torchscript(d: Path, t: Path) -> None:
    import torch

    torch.jit.script(torch.nn.Linear(3, 2)).save(str(t / "ts.pt"))


def _odd_tensor(kind: str) -> Callable[[Path, Path], None]:
    """A classic snippet's state_dict whose ``fc.weight`` is sparse, on the meta device, or quantized."""
    def prep(d: Path, t: Path) -> None:
        import torch

        state = {f"lstm.{k}": v for k, v in torch.nn.LSTM(3, 8, batch_first=True).state_dict().items()}
        weight = torch.randn(1, 8)
        with warnings.catch_warnings():  # torch deprecates making quantized tensors; users' files still hold them
            warnings.simplefilter("ignore")
            state["fc.weight"] = {"sparse": weight.to_sparse, "meta": lambda: weight.to("meta"),
                                  "quantized": lambda: torch.quantize_per_tensor(weight, 0.1, 0, torch.qint8)}[kind]()
        state["fc.bias"] = torch.zeros(1)
        torch.save(state, t / f"{kind}.pt")
    return prep


def _manifest_with(d: Path, **keys: Any) -> None:
    """DIR's manifest with ``keys`` set (None: removed)."""
    manifest = json.loads((d / "manifest.json").read_text())
    manifest.update(keys)
    (d / "manifest.json").write_text(json.dumps({k: v for k, v in manifest.items() if v is not None}))


def _other_shape_state_dict(d: Path, t: Path) -> None:
    import torch

    lstm = torch.nn.LSTM(3, 8, 1, batch_first=True)
    state = {f"lstm.{k}": v for k, v in lstm.state_dict().items()}
    state["fc.weight"] = torch.zeros(2, 5)  # the classic head is Linear(H, 1)
    state["fc.bias"] = torch.zeros(2)
    torch.save(state, t / "other.pt")


def _model_json_wrong(d: Path, t: Path) -> None:
    info = json.loads((d / "model.json").read_text())
    info["recipe"]["model"]["hidden_size"] = "sixteen"
    (d / "model.json").write_text(json.dumps(info))


FILES = ["--set", 'data.name="files"', "--set"]  # + 'data.train="{t}/x.ts"'

ROWS: dict[str, Row] = {
    # --- usage: options and values (typer/click) -----------------------------------------------
    "unknown-command": Row(("frobnicate",), 2, "No such command"),
    "train-unknown-option": Row(("train", "{d}", "--bogus"), 2, "No such option: --bogus (Possible options: --out)"),
    # the option's name, not the recipe key it overrides (found by attacking: "export.opset = 5 is out of range")
    "export-opset-99": Row(("export", "{d}", "--opset", "99"), 2,
                           "Invalid value for '--opset': Input should be less than or equal to 21 (got '99')"),
    "export-opset-5": Row(("export", "{d}", "--opset", "5"), 2,
                          "Invalid value for '--opset': Input should be greater than or equal to 17 (got '5')"),
    "export-opset-abc": Row(("export", "{d}", "--opset", "abc"), 2, "Invalid value for '--opset'"),
    "export-exporter-foo": Row(("export", "{d}", "--exporter", "foo"), 2, "'foo'"),
    "quantize-calib-0": Row(("quantize", "{d}", "--int8", "--method", "qdq", "--calib-samples", "0"), 2,
                            "--calib-samples"),
    "quantize-method-bad": Row(("quantize", "{d}", "--int8", "--method", "awq"), 2, "'awq'"),
    "quantize-nothing-asked": Row(("quantize", "{d}"), 2, "--fp16 and/or --int8"),
    # found by attacking: each was ignored, exit 0
    "quantize-method-without-int8": Row(("quantize", "{d}", "--fp16", "--method", "qdq"), 2,
                                        "--method qdq applies to --int8; expected --int8 --method qdq"),
    "quantize-calib-without-qdq": Row(("quantize", "{d}", "--int8", "--calib-samples", "5"), 2,
                                      "--calib-samples applies to --int8 --method qdq"),
    "verify-backends-nope": Row(("verify", "{d}", "--backends", "nope"), 2, "unknown backend 'nope'"),
    # the recipe's own value was recorded as an override, and a bundle said the verdict was not the recipe's
    "verify-set-recipe-value": Row(("verify", "{d}", "--set", "verify.fp32_atol=1e-5"), 2,
                                   "override 'verify.fp32_atol=1e-5' changes nothing: verify.fp32_atol is already "
                                   "1e-05 in the recipe; expected another value, or no --set"),
    "verify-threads-negative": Row(("verify", "{d}", "--threads", "-1"), 2, "--threads"),
    "export-threads-too-many": Row(("export", "{d}", "--threads", "100000"), 2, "threads 100000 is outside 1 to"),
    "bench-batch-x": Row(("bench", "{d}", "--batch", "x"), 2, "--batch 'x'"),
    "bench-seq-0": Row(("bench", "{d}", "--seq", "0"), 2, "--seq '0'"),
    "bench-against-torch-without-weights": Row(("bench", "{d}", "--against", "torch"), 2,
                                               "bench --against torch times PyTorch eager on model.safetensors, which "
                                               "{d} does not hold (a bundle ships no weights)",
                                               lambda d, t: (d / "model.safetensors").unlink()),
    "bench-seq-empty-item": Row(("bench", "{d}", "--seq", "16,,128"), 2,
                                "--seq '16,,128' is not a comma-separated list of integers"),
    # an option the chosen bench does not read: each was ignored, exit 0 (found by attacking)
    "bench-stream-threads": Row(("bench", "{d}", "--stream", "--threads", "1"), 2,
                                "--threads does nothing with --stream (batch 1, one thread"),
    "bench-stream-grid": Row(("bench", "{d}", "--stream", "--backends", "ort-cpu", "--batch", "1", "--seq", "16",
                              "--against", "torch"), 2, "--backends, --batch, --seq, --against do nothing with --stream"),
    "bench-segments-without-stream": Row(("bench", "{d}", "--segments", "128", "--chunks", "1"), 2,
                                         "--segments, --chunks do nothing without --stream; expected --stream "
                                         "--segments --chunks"),
    # found by attacking: ignored, and recorded in model.json as if used (train refuses them; a recipe read back
    # from an older model.json that holds one still loads)
    "train-test-fraction-synthetic": Row(("train", "{d}", "--set", "data.test_fraction=0.5"), 2,
                                         "data.test_fraction = 0.5 is not read: the test split is data.n_test = "),
    "train-test-fraction-with-test-file": Row(
        ("train", "{d}", *FILES, "data.train={t}/x.npz", "--set", "data.test={t}/x.npz", "--set",
         "data.test_fraction=0.5"), 2, "data.test_fraction = 0.5 is not read: the test split is data.test",
        _npz("x.npz", x=np.random.default_rng(0).normal(size=(12, 5, 2)).astype(np.float32),
             lengths=np.full(12, 5), y=np.arange(12) % 2)),
    "train-missing-synthetic": Row(("train", "{d}", "--set", "data.missing=ffill"), 2,
                                   "data.missing = 'ffill' is not read: data.name = 'synthetic' has no gaps"),
    "train-seed-negative": Row(("train", "{d}", "--seed", "-1"), 2, "train.seed = -1"),
    # --seed had won silently over the --set beside it (found by attacking)
    "train-seed-twice": Row(("train", "{d}", "--seed", "1", "--set", "train.seed=2"), 2,
                            "--seed 1 and --set train.seed=2 both set the seed; expected one"),
    # --- directories and prerequisites -----------------------------------------------------------
    "export-missing-dir": Row(("export", "{t}/nowhere"), 2, "run attn-export train"),
    "verify-missing-dir": Row(("verify", "{t}/nowhere"), 2, "nowhere"),
    # found by attacking: load CHECKPOINT "" wrote the model into the current directory (Path("") is ".")
    "load-empty-dir-argument": Row(("load", "{d}", ""), 2, "Invalid value for 'DIR': an empty path; expected a "
                                                          "directory name (. for the current one)"),
    # found by attacking: each of these read or wrote the current directory (errors.empty_path)
    "train-empty-dir-argument": Row(("train", ""), 2, "Invalid value for '[RECIPE.toml] [DIR]': an empty path; "
                                                      "expected a recipe (.toml) or a directory name"),
    "run-empty-out": Row(("run", "--out", ""), 2, "Invalid value for '--out': an empty path; expected a directory"),
    "train-out-a-file": Row(("train", "--out", "{t}/afile"), 2, "--out {t}/afile is a file, not an artefact "
                                                                "directory", _write("afile", "x")),
    "load-empty-checkpoint": Row(("load", "", "{t}/new"), 2, "Invalid value for 'CHECKPOINT': an empty path; "
                                                             "expected a state_dict file"),
    # found by attacking: "no layout fits head, mean, std, score ...", as if it were a user's module
    "load-own-weights-file": Row(("load", "{d}/model.safetensors", "{t}/new"), 2,
                                 "{d}/model.safetensors holds attn-export's own model weights (normalisation buffers "
                                 "mean and std beside lstm.*), not a module of your own; load its artefact directory "
                                 "instead: attn-export load {d} NEWDIR"),
    "inspect-empty-path": Row(("inspect", ""), 2, "Invalid value for 'PATH': an empty path; expected an .onnx file"),
    # found by attacking: "DIR: 4 or 5 features per step", naming no file
    "predict-csv-directory-mixed-widths": Row(("predict", "{t}", "--dir", "{d}"), 2,
                                              "{t}/zz.csv: 5 features per step, {t}/a.csv 4; expected the same "
                                              "columns in every file",
                                              lambda d, t: (_write("a.csv", "1,2,3,4\n5,6,7,8\n")(d, t),
                                                            _write("zz.csv", "1,2,3,4,5\n6,7,8,9,10\n")(d, t))),
    # found by attacking: "x.csv:2: a;b;label = '1;2;x'; expected a finite number"
    "predict-csv-semicolons": Row(("predict", "{t}/x.csv", "--dir", "{d}"), 2,
                                  "{t}/x.csv:1: one column whose text holds semicolons ('a;b;label'), as in a "
                                  "semicolon-separated export; expected columns separated by commas",
                                  _write("x.csv", "a;b;label\n1;2;x\n")),
    # a European spreadsheet's export: ';' between columns, ',' in each number, quoted or not
    "predict-csv-semicolons-decimal-commas": Row(("predict", "{t}/x.csv", "--dir", "{d}"), 2,
                                                 "{t}/x.csv:1: one column whose text holds semicolons "
                                                 "('sequence;a;b'), as in a semicolon-separated export with "
                                                 "decimal commas; expected columns separated by commas and '.' as "
                                                 "the decimal point",
                                                 _write("x.csv", 'sequence;a;b\n"s1";"0,5";"1,25"\ns1;0,7;1,5\n')),
    "train-csv-tabs": Row(("train", "{d}", *FILES, "data.train={t}/x.csv"), 2,
                          "x.csv:1: one column whose text holds tabs ('1\\t2\\t3'), as in a tab-separated export; "
                          "expected columns separated by commas", _write("x.csv", "1\t2\t3\n4\t5\t6\n")),
    # found by attacking: the step was dropped, exit 0, no word
    "predict-csv-row-of-empty-cells": Row(("predict", "{t}/x.csv", "--dir", "{d}"), 2,
                                          "x.csv:3: a row of empty cells between data rows, a step with no "
                                          "values; expected a value in every cell (or the row removed)",
                                          _write("x.csv", ",,\n1,2,3\n,,\n4,5,6\n,,\n")),
    "predict-empty-input": Row(("predict", "", "--dir", "{d}"), 2, "INPUT is an empty path; expected an .npz, .ts "
                                                                   "or .csv file"),
    "predict-empty-dir-option": Row(("predict", "{t}/x.npz", "--dir", ""), 2,
                                    "Invalid value for '--dir': an empty path; expected an artefact directory or a "
                                    "bundle (.tar.gz)",
                                    _npz("x.npz", x=np.zeros((1, 3, 4), np.float32), lengths=np.array([3]))),
    "report-on-a-file": Row(("report", "{t}/afile"), 2, "{t}/afile is not a directory; expected an artefact directory",
                            _write("afile", "x")),
    "export-empty-dir": Row(("export", "{d}"), 2, "run attn-export train", directory="empty"),
    "bench-empty-dir": Row(("bench", "{d}"), 2, "model", directory="empty"),
    "quantize-before-export": Row(("quantize", "{d}", "--fp16"), 2, "export", directory="prereq"),
    "verify-before-export": Row(("verify", "{d}"), 2, "export", directory="prereq"),
    "verify-named-backend-before-export": Row(("verify", "{d}", "--backends", "ort-cpu"), 2,
                                              "backend ort-cpu was asked for but there is no ONNX model "
                                              "(attn-export export)", directory="prereq"),
    "bench-before-export": Row(("bench", "{d}", "--seconds", "0.05"), 2,
                               "bench would time PyTorch alone: {d} holds no ONNX model or engine; run attn-export "
                               "export {d} first", directory="prereq"),
    # --- recipes and --set -----------------------------------------------------------------------
    "recipe-missing": Row(("train", "{d}", "--recipe", "{t}/absent.toml"), 2,
                          "does not exist; expected a path to a recipe TOML file"),
    # a typo of a shipped recipe's name gets its closest (found by attacking)
    "recipe-typo": Row(("train", "{d}", "--recipe", "recipes/japanese-vowel.toml"), 2,
                       "japanese-vowels.toml (a recipe this repository ships)"),
    "recipe-malformed": Row(("train", "{d}", "--recipe", "{t}/r.toml"), 2, "not valid TOML",
                            _write("r.toml", "[model\nhidden_size = 3\n")),
    "recipe-not-utf8": Row(("train", "{d}", "--recipe", "{t}/r.toml"), 2, "cannot be read",
                           _write("r.toml", b"[model]\nhidden_size = 3 # \xff\xfe\n")),
    "recipe-unknown-key": Row(("train", "{d}", "--recipe", "{t}/r.toml"), 2, "did you mean 'model.hidden_size'",
                              _write("r.toml", "[model]\nhiden_size = 3\n")),
    "recipe-unknown-section": Row(("train", "{d}", "--recipe", "{t}/r.toml"), 2, "section 'modle'",
                                  _write("r.toml", "[modle]\nhidden_size = 3\n")),
    "recipe-wrong-type": Row(("train", "{d}", "--recipe", "{t}/r.toml"), 2, "expected an integer",
                             _write("r.toml", '[train]\nepochs = "many"\n')),
    "recipe-out-of-range": Row(("train", "{d}", "--recipe", "{t}/r.toml"), 2, "model.dropout = 1.5 is out of range",
                               _write("r.toml", "[model]\ndropout = 1.5\n")),
    "train-dropout-one-layer": Row(("train", "{d}", "--set", "model.dropout=0.5"), 2,
                                   "model.dropout = 0.5 does nothing with model.num_layers = 1"),
    "train-query-linear-score": Row(("train", "{d}", "--set", 'model.query="learned"'), 2,
                                    "model.query = 'learned' is not read by a linear score"),
    "train-attention-dim-linear-score": Row(("train", "{d}", "--set", "model.attention_dim=8"), 2,
                                            "model.attention_dim = 8 is not read by a linear score"),
    "recipe-is-a-directory": Row(("train", "{d}", "--recipe", "{t}"), 2, "{t}"),
    "run-recipe-malformed": Row(("run", "{t}/r.toml", "--out", "{d}"), 2, "not valid TOML",
                                _write("r.toml", "= = =\n")),
    "run-recipe-missing": Row(("run", "{t}/absent.toml", "--out", "{d}"), 2, "does not exist"),
    "set-without-equals": Row(("train", "{d}", "--set", "model.hidden_size"), 2, "expected SECTION.KEY=VALUE"),
    "set-unknown-section": Row(("train", "{d}", "--set", "nosuch.key=1"), 2, "section 'nosuch'"),
    "set-wrong-type": Row(("train", "{d}", "--set", "model.bidirectional=maybe"), 2, "expected true or false"),
    "set-files-without-train": Row(("train", "{d}", "--set", 'data.name="files"'), 2, "data.train"),
    # --- training data files ---------------------------------------------------------------------
    "ts-mismatched-channels": Row(("train", "{d}", *FILES, "data.train={t}/x.ts"), 2, "channels; expected 2",
                                  _ts("x.ts", _balanced_ts() + "1,2,3:a\n")),
    "ts-unequal-channel-lengths": Row(("train", "{d}", *FILES, "data.train={t}/x.ts"), 2, "channel 2 has 2 values",
                                      _ts("x.ts", _balanced_ts() + "1,2,3:4,5:a\n")),
    "ts-nan-missing-error": Row(("train", "{d}", *FILES, "data.train={t}/x.ts"), 2, "missing value",
                                _ts("x.ts", _balanced_ts() + "1,NaN,3:4,5,6:b\n")),
    "ts-empty-dataset": Row(("train", "{d}", *FILES, "data.train={t}/x.ts"), 2, "no series after @data",
                            _ts("x.ts", "")),
    "ts-single-class": Row(("train", "{d}", *FILES, "data.train={t}/x.ts"), 2, "single class",
                           _ts("x.ts", _balanced_ts(label="a"))),
    "ts-undeclared-label": Row(("train", "{d}", *FILES, "data.train={t}/x.ts"), 2, "not in @classLabel",
                               _ts("x.ts", _balanced_ts() + "1,2:3,4:zebra\n")),
    "ts-test-label-unknown": Row(("train", "{d}", *FILES, "data.train={t}/x.ts", "--set", "data.test={t}/y.ts"),
                                 2, "does not occur in the training labels",
                                 lambda d, t: (_ts("x.ts", _balanced_ts(), GOOD_TS_HEAD.replace(" a b", ""))(d, t),
                                               _ts("y.ts", "1,2:3,4:c\n", GOOD_TS_HEAD.replace(" a b", ""))(d, t))),
    "ts-not-utf8": Row(("train", "{d}", *FILES, "data.train={t}/x.ts"), 2, "not UTF-8",
                       _write("x.ts", b"@data\n1,2:\xff\n")),
    "data-missing-file": Row(("train", "{d}", *FILES, "data.train={t}/absent.ts"), 2, "absent.ts: cannot read: no such file"),
    "data-wrong-suffix": Row(("train", "{d}", *FILES, "data.train={t}/x.parquet"), 2, "expected .ts, .npz or .csv",
                             _write("x.parquet", "1,2,3\n")),
    "csv-without-labels": Row(("train", "{d}", *FILES, "data.train={t}/x.csv"), 2, "has no 'label' column",
                              _write("x.csv", "1,2,3\n")),
    # x - mean beyond float32 (in which the model normalises): training "diverged", blamed on the learning rate
    "csv-spread-beyond-float32": Row(("train", "{d}", *FILES, "data.train={t}/x.csv"), 2,
                                     "training data: feature 'a' lies up to 4.37e+38 from its mean -1.07e+38, beyond "
                                     "float32's range",
                                     _write("x.csv", "sequence,a,b,label\n" + "".join(
                                         f"s{i},{3.3e38 if (i + t) % 3 == 0 else -3.3e38:g},{t % 3},{'xy'[i % 2]}\n"
                                         for i in range(60) for t in range(8)))),
    # a measurement in the label column: each value became a class of its own, exit 0 (found by attacking)
    "csv-continuous-labels": Row(("train", "{d}", *FILES, "data.train={t}/x.csv"), 2,
                                 "x.csv: the labels look continuous: 40 distinct numbers (0.1, 0.35, 0.6, ...) among "
                                 "40 sequences; expected class labels",
                                 _write("x.csv", "sequence,a,label\n" + "".join(
                                     f"s{i},{i % 7},{0.1 + 0.25 * i:g}\ns{i},{i % 5},{0.1 + 0.25 * i:g}\n"
                                     for i in range(40)))),
    # one number in two spellings: "1" and "1.0" were two classes, one made up, exit 0 (found by attacking)
    "csv-label-respelled": Row(("train", "{d}", *FILES, "data.train={t}/x.csv"), 2,
                               "x.csv: the labels '1' and '1.0' are the same number written two ways",
                               _write("x.csv", "sequence,a,label\n" + "".join(
                                   f"s{i},{i % 7},{['0', '1', '1.0'][i % 3]}\ns{i},{i % 5},{['0', '1', '1.0'][i % 3]}\n"
                                   for i in range(30)))),
    "npz-wrong-rank": Row(("train", "{d}", *FILES, "data.train={t}/x.npz"), 2, "x has shape (4,)",
                          _npz("x.npz", x=np.zeros(4, np.float32), lengths=np.array([4]), y=np.array([0]))),
    "npz-object-dtype": Row(("train", "{d}", *FILES, "data.train={t}/x.npz"), 2, "pickling",
                            _npz("x.npz", x=np.array([np.zeros(2), np.zeros(3)], dtype=object),
                                 lengths=np.array([2, 3]), y=np.array([0, 1]))),
    "npz-lengths-beyond-seq": Row(("train", "{d}", *FILES, "data.train={t}/x.npz"), 2, "lengths[1] = 9",
                                  _npz("x.npz", x=np.zeros((2, 5, 3), np.float32), lengths=np.array([5, 9]),
                                       y=np.array([0, 1]))),
    "npz-no-labels": Row(("train", "{d}", *FILES, "data.train={t}/x.npz"), 2, "has no y",
                         _npz("x.npz", x=np.zeros((2, 5, 3), np.float32))),
    "npz-garbage-bytes": Row(("train", "{d}", *FILES, "data.train={t}/x.npz"), 2, "not an .npz archive",
                             _write("x.npz", b"PK\x03\x04 garbage")),
    # --- load ------------------------------------------------------------------------------------
    # an artefact directory is copied as it is: data.* and train.* overrides and a recipe were ignored, exit 0
    "load-directory-with-set": Row(("load", "{d}", "{t}/copy", "--set", "data.name=synthetic", "--set",
                                    "train.min_test_accuracy=0.9"), 2,
                                   "--set data.name=synthetic: an artefact directory is copied as it is, its recipe "
                                   "included; expected no --set or --recipe"),
    "load-directory-with-recipe": Row(("load", "{d}", "{t}/copy", "--recipe", "{t}/r.toml"), 2,
                                      "--recipe {t}/r.toml: an artefact directory is copied as it is",
                                      _write("r.toml", "[data]\nname = \"synthetic\"\n")),
    "load-pickled-module": Row(("load", "{t}/module.pt", "{d}"), 2,
                               "needs unpickling of the Python object torch.nn.modules.linear.Linear, which "
                               "attn-export refuses", _pickled_module),
    "load-random-bytes": Row(("load", "{t}/noise.pt", "{d}"), 2, "noise.pt is not a readable PyTorch checkpoint "
                             "(UnpicklingError", _write("noise.pt", bytes(range(7, 256)) * 8)),
    "load-empty-dict": Row(("load", "{t}/empty.pt", "{d}"), 2, "empty.pt holds an empty dict; expected the model's "
                           "state_dict", _torch_save("empty.pt", {})),
    "load-not-a-checkpoint": Row(("load", "{t}/notes.pt", "{d}"), 2, "not a readable PyTorch checkpoint",
                                 _write("notes.pt", "just some text\n")),
    "load-bad-safetensors": Row(("load", "{t}/w.safetensors", "{d}"), 2, "not a readable safetensors file",
                                _write("w.safetensors", b"\x08\x00\x00\x00\x00\x00\x00\x00{bad json")),
    "load-other-shape": Row(("load", "{t}/other.pt", "{d}"), 2, "fc.weight has shape (2, 5)", _other_shape_state_dict),
    # found by attacking: torch's own advice, to load it with weights_only=False
    "load-torchscript": Row(("load", "{t}/ts.pt", "{d}"), 2, "ts.pt is a TorchScript archive (torch.jit.save), whose "
                            "code attn-export does not run; expected its weights: torch.save(torch.jit.load(path)"
                            ".state_dict(), 'weights.pt')", _torchscript),
    # found by attacking: each was a traceback, exit 1
    "load-sparse-tensor": Row(("load", "{t}/sparse.pt", "{d}"), 2, "sparse.pt: 'fc.weight' is a sparse tensor "
                              "(torch.sparse_coo); expected dense weights with values", _odd_tensor("sparse")),
    "load-meta-tensor": Row(("load", "{t}/meta.pt", "{d}"), 2, "meta.pt: 'fc.weight' is a meta tensor, which has a "
                            "shape but no values; expected dense weights", _odd_tensor("meta")),
    "load-quantized-tensor": Row(("load", "{t}/quantized.pt", "{d}"), 2, "quantized.pt: 'fc.weight' is a quantized "
                                 "tensor (torch.qint8); expected dense weights", _odd_tensor("quantized")),
    "load-missing": Row(("load", "{t}/absent.pt", "{d}"), 2,
                        "does not exist; expected a checkpoint file (.safetensors, .pt or .pth)"),
    # pydantic's "Value error, " tag is not said (found by attacking)
    "predict-precision-typo": Row(("predict", "{t}/absent.npz", "--dir", "{d}", "--precision", "int8"), 2,
                                  "Invalid value for '--precision': 'int8' is not one of"),
    "load-empty-dir-source": Row(("load", "{t}", "{d}"), 2, "run attn-export train"),
    # --- inspect ---------------------------------------------------------------------------------
    "inspect-not-onnx": Row(("inspect", "{t}/junk.onnx"), 2, "not a readable ONNX model",
                            _write("junk.onnx", b"\x00\x01 this is not protobuf \xff" * 8)),
    "inspect-other-suffix": Row(("inspect", "{t}/notes.txt"), 2, "neither an .onnx file",
                                _write("notes.txt", "hello")),
    "inspect-missing": Row(("inspect", "{t}/absent.onnx"), 2, "does not exist"),
    "inspect-truncated-onnx": Row(("inspect", "{d}/model.onnx"), 2, "model.onnx", _truncate("model.onnx")),
    "inspect-corrupt-manifest": Row(("inspect", "{d}"), 2, "manifest.json", _write("manifest.json", "{not json",
                                                                                   into="d")),
    # --- found by attacking the CLI (each was accepted, ignored, or several lines) -------------------
    "predict-unknown-true-labels": Row(("predict", "{t}/x.npz", "--dir", "{d}", "--allow-unverified"), 2,
                                       "x.npz: the true labels cat, dog are not the model's",
                                       _npz("x.npz", x=np.zeros((3, 5, 4), np.float32), lengths=np.array([5, 4, 3]),
                                            y=np.array(["cat", "dog", "0"]))),
    "predict-zero-steps": Row(("predict", "{t}/x.npz", "--dir", "{d}", "--allow-unverified"), 2,
                              "x has shape (2, 0, 4): sequences of 0 steps; expected at least one step each",
                              _npz("x.npz", x=np.zeros((2, 0, 4), np.float32), lengths=np.array([0, 0]))),
    "predict-stream-huge-chunk": Row(("predict", "{t}/x.npz", "--dir", "{d}", "--allow-unverified", "--stream",
                                      "99999999999"), 2, "expected a chunk of 1 to 1,000,000 steps",
                                     _npz("x.npz", x=np.zeros((1, 5, 4), np.float32), lengths=np.array([5]))),
    "predict-stream-zero": Row(("predict", "{t}/x.npz", "--dir", "{d}", "--allow-unverified", "--stream", "0"), 2,
                               "--stream 0: expected a chunk of 1 to 1,000,000 steps",  # it ran predict unstreamed
                               _npz("x.npz", x=np.zeros((1, 5, 4), np.float32), lengths=np.array([5]))),
    "predict-stream-not-a-number": Row(("predict", "{t}/x.npz", "--dir", "{d}", "--stream", "abc"), 2,
                                       "'--stream': Input should be a valid integer, unable to parse string as an "
                                       "integer (got 'abc')"),  # typer's message named no value
    "predict-batch-size-zero": Row(("predict", "{t}/x.npz", "--dir", "{d}", "--batch-size=0"), 2,
                                   "'--batch-size': Input should be greater than or equal to 1 (got '0')"),
    "predict-stream-unknown-true-labels": Row(("predict", "{t}/x.npz", "--dir", "{d}", "--allow-unverified", "--stream",
                                               "2"), 2, "x.npz: the true labels cat are not the model's",
                                              _npz("x.npz", x=np.zeros((1, 5, 4), np.float32), lengths=np.array([5]),
                                                   y=np.array(["cat"]))),
    "predict-stream-on-long-batch-size": Row(("predict", "{t}/x.npz", "--dir", "{d}", "--allow-unverified", "--stream",
                                              "2", "--on-long", "split", "--batch-size", "7"), 2,
                                             "--on-long, --batch-size do nothing with --stream (one stream of batch 1",
                                             _npz("x.npz", x=np.zeros((1, 5, 4), np.float32), lengths=np.array([5]))),
    "predict-stream-attention": Row(("predict", "{t}/x.npz", "--dir", "{d}", "--allow-unverified", "--stream", "2",
                                     "--json", "--attention"), 2, "--attention with --stream: the stream graph gives no attention",
                                    _npz("x.npz", x=np.zeros((1, 5, 4), np.float32), lengths=np.array([5]))),
    # without --json too: it had advised --json, which was then refused for the stream (found by attacking)
    "predict-stream-attention-no-json": Row(("predict", "{t}/x.npz", "--dir", "{d}", "--allow-unverified", "--stream",
                                             "2", "--attention"), 2,
                                            "--attention with --stream: the stream graph gives no attention",
                                            _npz("x.npz", x=np.zeros((1, 5, 4), np.float32), lengths=np.array([5]))),
    "bench-seconds-nan": Row(("bench", "{d}", "--seconds", "nan"), 2, "'nan': expected a number of seconds from 0.05 to 600"),
    "run-bench-seconds-inf": Row(("run", "{d}", "--bench-seconds", "inf"), 2, "'inf': expected a number of seconds"),
    "bench-empty-batch": Row(("bench", "{d}", "--batch", ""), 2, "--batch '' is not a comma-separated list of integers"),
    "bench-stream-chunks-past-segments": Row(("bench", "{d}", "--stream", "--chunks", "256", "--segments", "128"), 2,
                                             "--chunks 256 are all longer than --segments 128"),
    "build-missing-dir": Row(("build", "{t}/absent", "--fp16"), 2, "absent is not a directory; expected the artefact "
                             "directory or unpacked bundle to build in"),  # was exit 3, "cannot build here"
    "build-max-batch-past-the-recipe-bound": Row(("build", "{d}", "--max-batch", "99999"), 2,
                                                 "build.max_batch = 99999 is out of range"),
    "manifest-of-another-schema": Row(("inspect", "{d}"), 2, "has schema 9; expected 1", lambda d, t: (
        d / "manifest.json").write_text(json.dumps({**json.loads((d / "manifest.json").read_text()), "schema": 9}))),
    "manifest-of-another-schema-to-a-writer": Row(("quantize", "{d}", "--fp16"), 2, "has schema 9; expected 1",
                                                  lambda d, t: _manifest_with(d, schema=9)),
    "manifest-without-schema": Row(("inspect", "{d}"), 2, "manifest.json: schema is missing; expected an integer",
                                   lambda d, t: _manifest_with(d, schema=None)),
    "unbundle-not-a-tar": Row(("unbundle", "{t}/b.tar.gz", "{t}/out"), 2, "not a readable .tar.gz bundle",
                              _write("b.tar.gz", b"not a tar at all")),
    "unbundle-cut-short": Row(("unbundle", "{t}/b.tar.gz", "{t}/out"), 2, "not a readable .tar.gz bundle",
                              _write("b.tar.gz", b"\x1f\x8b\x08\x00garbage")),  # a download cut in its header
    "predict-from-a-cut-bundle": Row(("predict", "{t}/x.npz", "--dir", "{t}/b.tar.gz"), 2, "corrupt archive (cut short?)",
                                     lambda d, t: (_write("b.tar.gz", b"\x1f\x8b\x08\x00garbage")(d, t), _npz(
                                         "x.npz", x=np.zeros((1, 5, 4), np.float32), lengths=np.array([5]))(d, t))),
    "bundle-out-zip": Row(("bundle", "{d}", "--out", "{t}/b.zip"), 2, "expected a name ending in .tar.gz or .tgz"),
    "bundle-out-no-parent": Row(("bundle", "{d}", "--out", "{t}/nowhere/b.tar.gz"), 2, "nowhere is not a directory"),
    "train-synthetic-key-on-a-named-set": Row(("train", "{t}/new", "--set", 'data.name="basic-motions"', "--set",
                                               "data.features=3"), 2, 'only data.name = "synthetic" uses it'),
    # --- corrupt artefacts -----------------------------------------------------------------------
    "quantize-truncated-onnx": Row(("quantize", "{d}", "--fp16"), 2, "model.onnx", _truncate("model.onnx")),
    "verify-corrupt-manifest": Row(("verify", "{d}"), 2, "manifest.json",
                                   _write("manifest.json", "{not json", into="d")),
    "export-corrupt-model-json": Row(("export", "{d}"), 2, "model.json", _write("model.json", "[1, 2", into="d")),
    # an edited model.json is not believed at all: the store refuses it before reading what it says
    "export-model-json-wrong-type": Row(("export", "{d}"), 2, "model.json was changed after it was recorded",
                                        _model_json_wrong),
    "verify-corrupt-reference": Row(("verify", "{d}"), 2, "reference.npz", _truncate("reference.npz")),
    "export-corrupt-weights": Row(("export", "{d}"), 2, "model.safetensors", _truncate("model.safetensors")),
}

# A changed artefact under verify is not bad input: it is a verification failure of that artefact, recorded
# in verify.json and the manifest, exit 1 (tests/test_verify.py::test_a_file_changed_behind_the_manifests_back...).


def _params() -> list[Any]:
    return [pytest.param(row, id=name) for name, row in ROWS.items()]


def _hashes(*roots: Path) -> dict[str, str]:
    out = {}
    for root in roots:
        if not root.exists():
            continue
        for p in sorted(root.rglob("*")):
            if p.name == LOCK:
                continue
            key = f"{root.name}/{p.relative_to(root)}"
            out[key] = "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _setup(row: Row, tiny_dir: Path, tmp_path: Path) -> tuple[Path, Path]:
    d, t = tmp_path / "dir", tmp_path / "in"
    t.mkdir()
    if row.directory == "tiny":
        shutil.copytree(tiny_dir, d)
    elif row.directory == "prereq":
        d.mkdir()
        for name in ("model.json", "model.safetensors", "manifest.json"):
            shutil.copy2(tiny_dir / name, d / name)
        manifest = json.loads((d / "manifest.json").read_text())  # as it stood before export
        manifest["artifacts"] = {k: v for k, v in manifest["artifacts"].items() if k in ("model.json",
                                                                                        "model.safetensors")}
        (d / "manifest.json").write_text(json.dumps(manifest, indent=2))
    else:
        d.mkdir()
    if row.prep is not None:
        row.prep(d, t)
    return d, t


@pytest.mark.parametrize("row", _params())
def test_bad_input(row: Row, tiny_dir: Path, tmp_path: Path) -> None:
    d, t = _setup(row, tiny_dir, tmp_path)
    args = [a.replace("{d}", str(d)).replace("{t}", str(t)) for a in row.args]
    before = _hashes(d, t)
    result = cli(*args, cwd=tmp_path)
    shown = f"exit {result.returncode}\nstderr:\n{result.stderr[-3000:]}"
    assert "Traceback" not in result.stderr, shown
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), shown
    assert result.returncode == row.code, shown
    fragment = row.fragment.replace("{d}", str(d)).replace("{t}", str(t))
    assert fragment in lines[0], shown
    after = _hashes(d, t)
    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    assert not changed, f"files changed by a failed command: {changed}\n{shown}"
