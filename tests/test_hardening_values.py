"""Values that passed validation and then crashed or hung, and data that changed under a trained model: each
case is a real command line run, ending in one ``Error:`` line with DESIGN's exit code, or in a result that
says what it skipped and why."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, TINY, cli


def one_error_line(result: subprocess.CompletedProcess[str], code: int, *parts: str) -> str:
    """The run ended with exit ``code`` and nothing on stderr but one ``Error:`` line holding ``parts``."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == code, result.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr[-2000:]
    for part in parts:
        assert part in lines[0]
    return lines[0]


# --- item 10: nesting deep enough to overflow the TOML and JSON parsers ---------------------------------------


def test_recipe_and_set_values_nested_too_deep_are_one_line(tmp_path: Path) -> None:
    deep = tmp_path / "deep.toml"
    deep.write_text("x = " + "[" * 3000 + "]" * 3000 + "\n")
    one_error_line(cli("train", str(tmp_path / "a"), "--recipe", str(deep)), 2,
                   f"recipe file '{deep}' is nested deeper than 64 levels; expected a recipe (tables nest 2 deep)")
    one_error_line(cli("train", str(tmp_path / "b"), "--set", "model.hidden_size=" + "[" * 3000), 2,
                   "is nested deeper than 64 levels; expected a value such as 128")
    # brackets in comments and strings do not nest: such a recipe still loads
    from attn_export.config import load_recipe

    fine = tmp_path / "fine.toml"
    fine.write_text("# " + "[" * 300 + "\n[data]\nname = \"synthetic\" # '" + "{" * 300 + "\n[model]\nhidden_size = 8\n")
    assert load_recipe(fine).model.hidden_size == 8


# --- item 9: values the hardware cannot meet, and a training that diverges -----------------------------------


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--seed", str(2**64)], f"train.seed = {2**64} is out of range: expected a value >= 0 and <= {2**64 - 1}"),
        (["--set", f"train.seed={2**64}"], f"train.seed = {2**64} is out of range"),
        (["--set", "model.hidden_size=1000000000"],
         "model.hidden_size = 1000000000 is out of range: expected a value > 0 and <= 8192"),
        (["--set", f"model.hidden_size={2**63 - 1}"], f"model.hidden_size = {2**63 - 1} is out of range"),
        (["--set", "model.conv_channels=[1000000000]", "--set", "model.conv_kernel_sizes=[3]"],
         "model.conv_channels[0] = 1000000000 is out of range: expected a value > 0 and <= 8192"),
        (["--set", "data.min_len=1000000000000", "--set", "data.max_len=1000000000000"],
         "data.min_len = 1000000000000 is out of range: expected a value >= 1 and <= 100000"),
        (["--set", "data.classes=100000"], "data.classes = 100000 is out of range: expected a value >= 2 and <= 100"),
        (["--set", "data.n_train=30", "--set", "data.classes=40"],
         "data.classes = 40 is out of range: expected a value <= data.n_train = 30"),
        (["--set", "data.n_train=1000000", "--set", "data.max_len=100000"],
         "GiB of synthetic data; expected at most 1 GiB"),
    ],
    ids=["seed-option", "seed-set", "hidden", "hidden-int64", "conv", "lengths", "classes", "classes-n_train",
         "synthetic-size"],
)
def test_values_beyond_the_hardware_are_refused_before_any_work(args: list[str], expected: str,
                                                                   tmp_path: Path) -> None:
    one_error_line(cli("train", str(tmp_path / "m"), *args), 2, expected)
    assert not (tmp_path / "m" / "model.json").exists()


def test_a_diverging_training_is_one_line_work_failed(tmp_path: Path) -> None:
    """A loss that turns NaN stops training with the rate named. The recipe refuses a rate past 10 (train.lr=1e38
    died in Adam with a traceback), and no rate it takes diverges to NaN on this model within a few epochs, so the
    rate is set past that bound on the checked recipe itself: this proves the NaN check, not the bound."""
    from attn_export.config import load_recipe
    from attn_export.errors import WorkFailed
    from attn_export.train import train

    recipe = load_recipe(None, TINY[1::2])
    object.__setattr__(recipe.train, "lr", 1e30)  # frozen and range-checked: only so does it get past the bound
    with pytest.raises(WorkFailed, match=r"^training diverged at epoch 1 \(loss nan\); expected a smaller train.lr "
                                         r"than 1e\+30"):
        train(recipe, tmp_path / "m")
    assert not (tmp_path / "m" / "model.json").exists()
    refused = cli("train", str(tmp_path / "n"), *TINY, "--set", "train.lr=1e38")
    one_error_line(refused, 2, "train.lr = 1e+38 is out of range: expected a value > 0 and <= 10")
    assert not (tmp_path / "n").exists()


def test_bench_refuses_a_grid_this_machine_cannot_hold(model_dir: Path) -> None:
    result = cli("bench", str(model_dir), "--batch", "100000000", "--seq", "100000000")
    line = one_error_line(result, 3, "bench --batch 100000000 --seq 100000000 needs about", "GiB available")
    assert "expected a smaller --batch or --seq" in line
    assert not (model_dir / "bench.json").exists()


def _npz_bomb(path: Path, shape: tuple[int, int, int]) -> None:
    """An .npz whose x is ``shape`` float32 zeros, deflated to a thousandth, written without holding it."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf, zf.open("x.npy", "w", force_zip64=True) as member:
        np.lib.format.write_array_header_1_0(member, {"descr": "<f4", "fortran_order": False, "shape": shape})
        left, chunk = int(np.prod(shape)) * 4, bytes(1 << 24)
        while left:
            member.write(chunk[: min(left, len(chunk))])
            left -= min(left, len(chunk))


def test_npz_declaring_more_than_this_process_may_allocate_is_refused_before_reading(model_dir: Path,
                                                                                    tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.npz"
    _npz_bomb(bomb, (1000, 1000, 250))  # 1 GB declared in under 1 MB
    assert bomb.stat().st_size < 2 << 20

    def cap() -> None:  # ulimit -v 512 MiB: what a small device or a careful operator gives a process
        resource.setrlimit(resource.RLIMIT_AS, (512 << 20, 512 << 20))

    result = subprocess.run([sys.executable, "-m", "attn_export", "predict", str(bomb), "--dir", str(model_dir)],
                            capture_output=True, text=True, cwd=ROOT, preexec_fn=cap, timeout=600,
                            env={**os.environ, "COLUMNS": "200"})
    one_error_line(result, 3, f"{bomb}: array 'x' declares shape (1000, 1000, 250) float32 (953.7 MiB); reading it "
                              "needs about 953.7 MiB and this machine has", "iB available; expected an input that fits")


# --- item 12: an empty test split ------------------------------------------------------------------------------


def _labelled_npz(path: Path, per_class: int, seed: int) -> None:
    """Two classes, 5-10 steps of 4 features, concatenated with lengths (DESIGN's .npz)."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(5, 11, size=2 * per_class)
    y = np.repeat(["a", "b"], per_class)
    x = np.concatenate([rng.normal(1.5 * (label == "b"), 1.0, size=(t, 4)) for t, label in zip(lengths, y)])
    np.savez(path, x=x.astype(np.float32), lengths=lengths, y=y)


def _files_recipe(path: Path, data: str) -> None:
    path.write_text(f'[data]\nname = "files"\n{data}\n[model]\nhidden_size = 8\n[train]\nepochs = 2\n'
                    "[export]\nparity_max_seq = 64\n")


def test_an_empty_test_split_is_null_in_json_and_skipped_by_verify(tmp_path: Path) -> None:
    _labelled_npz(tmp_path / "train.npz", 12, seed=0)
    recipe = tmp_path / "recipe.toml"
    _files_recipe(recipe, 'train = "train.npz"\ntest_fraction = 0.01')  # 1 % of 12 per class rounds to none
    model = tmp_path / "m"
    trained = cli("train", str(model), "--recipe", str(recipe), "--json")
    assert trained.returncode == 0, trained.stderr

    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} is not JSON")

    metrics = json.loads(trained.stdout, parse_constant=refuse)
    assert metrics["sizes"]["test"] == 0 and metrics["test"]["accuracy"] is None
    assert cli("export", str(model)).returncode == 0
    verified = cli("verify", str(model), "--backends", "ort-cpu")
    assert verified.returncode == 0, verified.stderr
    reference = json.loads((model / "verify.json").read_text())["reference"]
    assert reference["accuracy"] is None
    assert reference["test_split"] == "the test split is empty: the recipe's data leaves no test sequences"
    # a floor on the test accuracy cannot be checked on no test sequences: said before training
    one_error_line(cli("train", str(tmp_path / "floor"), "--recipe", str(recipe), "--set",
                       "train.min_test_accuracy=0.5"), 2, "train.min_test_accuracy = 0.5 cannot be checked: the "
                                                           "test split is empty")


# --- item 6: data changed since training ---------------------------------------------------------------------


def test_data_changed_since_training_is_not_judged_on(tmp_path: Path) -> None:
    _labelled_npz(tmp_path / "train.npz", 12, seed=0)
    _labelled_npz(tmp_path / "test.npz", 6, seed=1)
    recipe = tmp_path / "recipe.toml"
    _files_recipe(recipe, 'train = "train.npz"\ntest = "test.npz"')
    model = tmp_path / "m"
    for args in (("train", str(model), "--recipe", str(recipe)), ("export", str(model))):
        assert cli(*args).returncode == 0
    recorded = json.loads((model / "metrics.json").read_text())["data_files"]
    assert recorded["train"]["path"] == str(tmp_path / "train.npz") and len(recorded["train"]["sha256"]) == 64
    _labelled_npz(tmp_path / "train.npz", 12, seed=2)  # other data under the same name

    verified = cli("verify", str(model), "--backends", "ort-cpu")
    assert verified.returncode == 0, verified.stderr
    reference = json.loads((model / "verify.json").read_text())["reference"]
    assert reference["accuracy"] is None
    # named as what changed (found by attacking: the training file was called "the test split data")
    assert reference["test_split"] == (f"the recipe's training data {tmp_path / 'train.npz'} changed since training "
                                       "(sha256 differs), and the test split is read with it; expected the files the "
                                       "model was trained on")
    one_error_line(cli("quantize", str(model), "--int8", "--method", "qdq"), 2,
                   f"the recipe's training data {tmp_path / 'train.npz'} changed since training (sha256 differs), and INT8 "
                   "calibration draws on the data the model was trained on; expected the file it was trained on")
    assert not (model / "model.int8-qdq.onnx").exists()


# --- item 14: a directory whose name holds glob characters -----------------------------------------------------


def test_predict_reads_a_directory_whose_name_has_glob_characters(model_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "data[1]"
    folder.mkdir()
    (folder / "s.csv").write_text("a,b,c,d\n1,2,3,4\n2,3,4,5\n")
    result = cli("predict", f"{folder}/", "--dir", str(model_dir), "--json")
    assert result.returncode == 0, result.stderr
    assert [row["id"] for row in json.loads(result.stdout)["predictions"]] == ["s.csv"]


def test_files_of_one_name_in_several_folders_keep_ids_of_their_own(tmp_path: Path) -> None:
    """Found by attacking: a glob over d3/x.csv and d4/x.csv gave two sequences the id "x.csv" (and x.csv:a
    twice in the long format). Where file names repeat, ids carry each file's path below their common folder;
    where they do not, the file name alone, as before."""
    from attn_export.runtime.inputs import read_input

    for folder in ("d3", "d4"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "x.csv").write_text("a,b,c,d\n1,2,3,4\n2,3,4,5\n")
        (tmp_path / folder / "long.csv").write_text("sequence,a,b,c,d\ns,1,2,3,4\ns,2,3,4,5\n")
    (tmp_path / "d4" / "y.csv").write_text("a,b,c,d\n1,2,3,4\n")
    assert read_input(str(tmp_path / "d*" / "*.csv")).ids == ["d3/long.csv:s", "d3/x.csv", "d4/long.csv:s",
                                                              "d4/x.csv", "d4/y.csv"]
    assert read_input(str(tmp_path / "d4")).ids == ["long.csv:s", "x.csv", "y.csv"]


# --- item 14: values near float32's largest ---------------------------------------------------------------------


@pytest.mark.parametrize("device", [False, True], ids=["attn-export", "attn_export.runtime"])
def test_inputs_near_float32_max_predict_without_warnings(model_dir: Path, tmp_path: Path, device: bool) -> None:
    """Finite values that overflow a float32 sum (3e38) are finite input: predicted, and no numpy
    RuntimeWarning with its source line on stderr."""
    x = np.full((2, 10, 4), 3e38, np.float32)
    x[1] = -3.3e38  # two sequences take the general path; one alone, the fast path (below)
    data = tmp_path / "big.npz"
    np.savez(data, x=x, lengths=np.array([10, 10]))
    args = (["attn_export.runtime", "predict", str(model_dir), str(data)] if device
            else ["attn_export", "predict", str(data), "--dir", str(model_dir)])
    result = subprocess.run([sys.executable, "-m", *args, "--json"], capture_output=True, text=True, cwd=ROOT,
                            timeout=300)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert len(json.loads(result.stdout)["predictions"]) == 2
    np.savez(data, x=x[:1], lengths=np.array([10]))
    result = subprocess.run([sys.executable, "-m", *args, "--json"], capture_output=True, text=True, cwd=ROOT,
                            timeout=300)
    assert result.returncode == 0 and result.stderr == "", result.stderr
