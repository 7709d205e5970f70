"""Binary classifiers: one logit, a sigmoid, two labels (the common Linear(H, 1) + BCE setup), trained,
imported, exported, quantised, verified and predicted end to end through the real CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY, cli
from torch import nn

from attn_export.runtime.iospec import class_logits

BINARY = [*TINY, "--set", "data.classes=2", "--set", "model.head=binary"]


@pytest.fixture(scope="module")
def binary_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("binary") / "m"
    for args in (("train", str(directory), *BINARY), ("export", str(directory)),
                 ("quantize", str(directory), "--fp16", "--int8")):
        result = cli(*args)
        assert result.returncode == 0, result.stderr
    return directory


def test_a_binary_head_trains_to_one_logit_and_two_labels(binary_dir: Path) -> None:
    model = json.loads((binary_dir / "model.json").read_text())
    assert model["num_outputs"] == 1 and len(model["labels"]) == 2
    metrics = json.loads((binary_dir / "metrics.json").read_text())
    assert metrics["test"]["accuracy"] > 0.6  # the synthetic task is learnable in 3 epochs; chance is 0.5


def test_verify_judges_binary_decisions_not_a_one_class_argmax(binary_dir: Path) -> None:
    result = cli("verify", str(binary_dir), "--backends", "ort-cpu", "--json")
    assert result.returncode == 0, result.stderr
    rows = {r["artifact"]: r for r in json.loads(result.stdout)["results"]}
    metrics = json.loads((binary_dir / "metrics.json").read_text())
    assert rows["model.onnx"]["accuracy"] == pytest.approx(metrics["test"]["accuracy"], abs=0.02)
    assert rows["model.onnx"]["accuracy"] < 1.0 or metrics["test"]["accuracy"] == 1.0  # decided, not constant
    for name in ("model.fp16.onnx", "model.int8.onnx"):
        assert rows[name]["status"] == "passed" and rows[name]["argmax_agreement"] is not None


def test_predict_gives_two_probabilities_and_the_label_they_decide(binary_dir: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    np.savez(tmp_path / "in.npz", x=rng.normal(size=(20, 12, 4)).astype(np.float32), lengths=np.full(20, 12))
    result = cli("predict", str(tmp_path / "in.npz"), "--dir", str(binary_dir), "--json", "--allow-unverified")
    assert result.returncode == 0, result.stderr
    labels = json.loads((binary_dir / "model.json").read_text())["labels"]
    rows = json.loads(result.stdout)["predictions"]
    for row in rows:
        p = row["probabilities"]
        assert len(p) == 2 and sum(p) == pytest.approx(1.0, abs=1e-6)
        assert row["label"] == labels[int(p[1] > 0.5)] and row["index"] == int(p[1] > 0.5)
    assert len({row["label"] for row in rows}) == 2  # not "0 with probability 1.0000" for everything


def test_class_logits_reads_one_logit_as_two_classes() -> None:
    z = np.array([[-2.0], [0.5]], np.float32)
    two = class_logits(z)
    assert two.tolist() == [[0.0, -2.0], [0.0, 0.5]] and two.argmax(1).tolist() == [0, 1]
    three = np.array([[1.0, 3.0, 2.0]])
    assert class_logits(three) is three


class BinaryUser(nn.Module):
    """An AttentionLSTM as users write it for a yes/no task: a score and a Linear(H, 1) head, BCE."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(4, 10, batch_first=True)
        self.attn = nn.Linear(10, 1)
        self.out = nn.Linear(10, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h, _ = self.lstm(x)
        w = torch.softmax(self.attn(h).squeeze(-1), dim=1)
        return self.out((w.unsqueeze(-1) * h).sum(1)), w


def test_load_reads_a_one_output_head_as_binary_and_says_so(tmp_path: Path) -> None:
    """A one-output head imported as a one-class softmax made every prediction label 0 with probability
    1.0000. ``load`` now reads it as binary, says so and how to read it as regression; predict's
    probabilities equal the user's sigmoid."""
    torch.manual_seed(0)
    user = BinaryUser().eval()
    torch.save(user.state_dict(), tmp_path / "user.pt")
    result = cli("load", str(tmp_path / "user.pt"), str(tmp_path / "m"), "--map", "attn=score", "--map", "out=head",
                 "--set", "export.parity_max_seq=16")
    assert result.returncode == 0, result.stderr
    assert "one output read as a binary classifier" in result.stderr and "model.head=regression" in result.stderr
    assert cli("export", str(tmp_path / "m")).returncode == 0
    x = torch.randn(6, 9, 4)
    with torch.no_grad():
        expected = torch.sigmoid(user(x)[0])[:, 0].numpy()
    np.savez(tmp_path / "in.npz", x=x.numpy(), lengths=np.full(6, 9))
    out = cli("predict", str(tmp_path / "in.npz"), "--dir", str(tmp_path / "m"), "--json", "--allow-unverified")
    assert out.returncode == 0, out.stderr
    got = [row["probabilities"][1] for row in json.loads(out.stdout)["predictions"]]
    np.testing.assert_allclose(got, expected, atol=1e-5)
    # data.positive orders a binary head's labels only (found by review: load reordered a classifier's)
    refused = cli("load", str(tmp_path / "user.pt"), str(tmp_path / "r"), "--map", "attn=score", "--map", "out=head",
                  "--set", "model.head=regression", "--set", "data.name=synthetic", "--set", 'data.positive="1"')
    assert refused.returncode == 2 and "only a binary head has a positive class" in refused.stderr, refused.stderr
    assert not (tmp_path / "r").exists()


def test_binary_needs_two_labels(tmp_path: Path) -> None:
    result = cli("train", str(tmp_path / "m"), *TINY, "--set", "model.head=binary")  # synthetic: 3 classes
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and "model.head = 'binary' needs two labels; the data has 3" \
        in lines[0], result.stderr


def test_data_positive_names_the_class_the_sigmoid_gives(tmp_path: Path) -> None:
    """Found by a user: labels are sorted, so "normal operation" came after "défaut ⚠" and a fault detector's
    sigmoid gave P(normal), with no key to say otherwise. data.positive names the positive class; the same
    training data without it keep the sorted order; a key no head reads is refused before the data."""
    from attn_export.data import synthetic

    data = synthetic(120, 3, 2, 8, 16, 0)
    names = {"0": "normal operation", "1": "défaut ⚠"}
    rows = ["sequence,a,b,c,label"] + [f"s{i},{','.join(map(str, step))},{names[data.labels[int(y)]]}"
                                       for i, (s, y) in enumerate(zip(data.sequences, data.y)) for step in s]
    (tmp_path / "train.csv").write_text("\n".join(rows) + "\n")
    common = ["--set", "data.name=files", "--set", f"data.train={tmp_path / 'train.csv'}", "--set",
              "model.head=binary", "--set", "model.hidden_size=8", "--set", "train.epochs=1"]
    orders = {}
    for name, extra in (("sorted", []), ("named", ["--set", "data.positive=défaut ⚠"])):
        made = cli("train", str(tmp_path / name), *common, *extra)
        assert made.returncode == 0, made.stderr
        orders[name] = json.loads((tmp_path / name / "model.json").read_text())["labels"]
    assert orders == {"sorted": ["défaut ⚠", "normal operation"], "named": ["normal operation", "défaut ⚠"]}
    unknown = cli("train", str(tmp_path / "x"), *common, "--set", "data.positive=defaut")
    assert unknown.returncode == 2 and "data.positive = 'defaut' is not a label of" in unknown.stderr, unknown.stderr
    assert "expected one of: défaut ⚠, normal operation" in unknown.stderr and not (tmp_path / "x").exists()
    classifier = cli("train", str(tmp_path / "y"), *common[:-6], "--set", "data.positive=défaut ⚠")
    assert classifier.returncode == 2 and "only a binary head has a positive class" in classifier.stderr
    number = cli("train", str(tmp_path / "z"), *common, "--set", "data.positive=1")  # 0/1 labels are common
    assert number.returncode == 2 and "data.positive = 1 (int) is not valid: expected a string (a number is read as " \
        "one: quote it, --set 'data.positive=\"1\"'" in number.stderr, number.stderr


def test_every_readme_and_info_says_which_class_a_binary_logit_gives(binary_dir: Path) -> None:
    """Found by attacking: a Triton bundle told a client that a binary model's one column was "the class
    labels[0]", its negative class; info and the CPU bundle said nothing of it."""
    import subprocess
    import sys

    from attn_export.runtime.bundle import output_columns
    from attn_export.runtime.inputs import named_classes

    labels = json.loads((binary_dir / "model.json").read_text())["labels"]
    assert output_columns("binary", labels) == (
        f"A binary model's one output column is a logit z: sigmoid(z) is the probability of {labels[1]!r} "
        "(`labels[1]` of `model.json`, the positive class), and z > 0 decides it.")
    assert output_columns("classification", ["a", "b", "c"]).startswith("A classifier's output column i is")
    said = f"{labels[0]}, {labels[1]} (one logit: its sigmoid is the probability of {labels[1]})"
    assert named_classes(labels, binary=True) == said
    info = subprocess.run([sys.executable, "-m", "attn_export.runtime", "info", str(binary_dir)], capture_output=True,
                          text=True, timeout=120)
    assert f"  classes   {said}" in info.stdout.splitlines(), info.stdout
