"""``attn-export load`` on AttentionLSTMs written the way users write them: each module below has its own
names and forward, and the imported model must give its outputs (head output, or the context vector
without a head, and the attention weights) on full-length batches. The user's modules do not mask padding,
so every sequence of a batch has length T."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import cli, mark_verified
from torch import nn

from attn_export.checkpoint import load_model
from attn_export.cli import main
from attn_export.config import Recipe, load_recipe
from attn_export.errors import DataError
from attn_export.load import _shape, load_checkpoint
from attn_export.model import AttentionLSTM

F, H, C, A, T, B = 6, 12, 3, 8, 11, 4


class Classic(nn.Module):
    """The classic snippet: the score is ``fc`` and the output the context vector."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(F, H, 1, batch_first=True)
        self.fc = nn.Linear(H, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out, _ = self.lstm(x)
        weights = torch.softmax(self.fc(out), dim=1)  # (B, T, 1)
        return torch.bmm(weights.transpose(1, 2), out).squeeze(1), weights.squeeze(2)


class ScoreAndHead(nn.Module):
    """The most common variant: ``attention`` scores each step, ``fc`` classifies the context."""

    def __init__(self, classes: int = C) -> None:
        super().__init__()
        self.lstm = nn.LSTM(F, H, batch_first=True)
        self.attention = nn.Linear(H, 1)
        self.fc = nn.Linear(H, classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out, _ = self.lstm(x)
        weights = torch.softmax(self.attention(out).squeeze(-1), dim=-1)  # (B, T)
        return self.fc((weights.unsqueeze(-1) * out).sum(1)), weights


class Additive(nn.Module):
    """Bahdanau-style pooling ``v . tanh(W h_t + b)``, v a bias-free Linear or a bare parameter."""

    def __init__(self, v_as_parameter: bool) -> None:
        super().__init__()
        self.encoder = nn.LSTM(F, H, batch_first=True)
        self.W = nn.Linear(H, A)
        self.v: nn.Module | nn.Parameter = nn.Parameter(torch.randn(A)) if v_as_parameter else nn.Linear(A, 1, bias=False)
        self.classifier = nn.Linear(H, C)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out, _ = self.encoder(x)
        energy = torch.tanh(self.W(out))  # (B, T, A)
        scores = energy @ self.v if isinstance(self.v, nn.Parameter) else self.v(energy).squeeze(-1)
        weights = torch.softmax(scores, dim=1)
        return self.classifier(torch.einsum("bt,bth->bh", weights, out)), weights


class ConvBidirectional(nn.Module):
    """Two Conv1d + ReLU layers, then a 2-layer bidirectional LSTM, a score and a head."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv1d(F, 8, 5, padding=2), nn.ReLU(), nn.Conv1d(8, 7, 3, padding=1), nn.ReLU())
        self.rnn = nn.LSTM(7, H, num_layers=2, batch_first=True, bidirectional=True)
        self.att = nn.Linear(2 * H, 1)
        self.out = nn.Linear(2 * H, C)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.features(x.transpose(1, 2)).transpose(1, 2)
        out, _ = self.rnn(h)
        weights = torch.softmax(self.att(out), dim=1)
        return self.out((weights * out).sum(1)), weights.squeeze(-1)


class OneOutputHead(nn.Module):
    """A score and a one-output regression head, both Linear(H, 1), named so nothing tells them apart."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(F, H, batch_first=True)
        self.w_a = nn.Linear(H, 1)
        self.w_b = nn.Linear(H, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out, _ = self.lstm(x)
        weights = torch.softmax(self.w_b(out).squeeze(-1), dim=1)
        return self.w_a((weights.unsqueeze(-1) * out).sum(1)), weights


def _save(module: nn.Module, path: Path, prefix: str = "") -> Path:
    torch.save({prefix + k: v for k, v in module.state_dict().items()}, path)
    return path


def _assert_same(user: nn.Module, ours: AttentionLSTM, seed: int = 0) -> None:
    torch.manual_seed(seed)
    x = torch.randn(B, T, F)
    with torch.no_grad():
        expected, expected_weights = user.eval()(x)
        got, weights = ours(x, torch.full((B,), T))
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(weights, expected_weights, atol=1e-6, rtol=1e-5)


def _load(module: nn.Module, tmp_path: Path, *mapping: str, recipe: Recipe | None = None,
          prefix: str = "") -> tuple[AttentionLSTM, str]:
    summary = load_checkpoint(_save(module, tmp_path / "user.pt", prefix), tmp_path / "art", recipe or Recipe(),
                              mapping)
    model, _ = load_model(tmp_path / "art")
    return model, summary


def test_the_classic_snippet_stays_a_score_without_a_head(tmp_path: Path) -> None:
    torch.manual_seed(1)
    user = Classic()
    model, summary = _load(user, tmp_path)
    _assert_same(user, model)
    assert model.config.head == "none" and model.config.attention == "linear"
    assert "linear score 'fc', no head (output context, 12 values)" in summary


def test_int8_of_a_model_without_classes_is_not_judged_and_gets_no_verdict(tmp_path: Path) -> None:
    """INT8 is judged by its decisions; a model without classes has none, and shapes, finiteness and zero
    attention on padding alone would pass a graph whose outputs are noise: its rows are skipped with the
    reason, it records no verdict, and predict will not serve it as verified."""
    torch.manual_seed(1)
    art = tmp_path / "art"
    steps = [("load", str(_save(Classic(), tmp_path / "user.pt")), str(art), "--set", "export.parity_max_seq=32"),
             ("export", str(art)), ("quantize", str(art), "--int8"), ("verify", str(art), "--backends", "ort-cpu")]
    for args in steps:
        result = cli(*args)
        assert result.returncode == 0, result.stderr
    doc = json.loads((art / "verify.json").read_text())
    (row,) = [r for r in doc["results"] if r["artifact"] == "model.int8.onnx"]
    assert row["status"] == "skipped" and "a model with no head has none" in row["reason"]
    assert "verified" not in json.loads((art / "manifest.json").read_text())["artifacts"]["model.int8.onnx"]
    assert [r["status"] for r in doc["results"] if r["artifact"] == "model.onnx"] == ["passed"]
    np.savez(tmp_path / "x.npz", x=np.ones((2, T, F), np.float32))
    refused = cli("predict", str(tmp_path / "x.npz"), "--dir", str(art), "--precision", "int8-dynamic")
    assert refused.returncode == 2 and ("model.int8.onnx is never judged by verify: INT8 is judged by its decisions, "
                                        "and a model without classes has none; expected fp32 or fp16") \
        in " ".join(refused.stderr.split())
    # said as what it is wherever the file is listed (found by attacking: "never been verified", verify again;
    # the report's budgets listed argmax rules and "up to seq None", and an empty accuracy table)
    info = subprocess.run([sys.executable, "-m", "attn_export.runtime", "info", str(art)], capture_output=True,
                          text=True, timeout=120)
    assert "ok, is never judged by verify: INT8 is judged by its decisions, and a model without classes has none" \
        in info.stdout, info.stdout
    assert cli("report", str(art)).returncode == 0
    report = (art / "report.md").read_text()
    assert "- int8-dynamic: not judged: it is judged by its decisions, and a model without classes has none" in report
    assert "No accuracy: no result was scored on a test split" in report and "argmax" not in report.split(
        "Budgets")[1].split("##")[0] and "seq None" not in report
    mark_verified(art, "model.int8.onnx")  # a pass an older attn-export recorded on structure alone
    assert cli("verify", str(art), "--backends", "ort-cpu").returncode == 0
    assert "verified" not in json.loads((art / "manifest.json").read_text())["artifacts"]["model.int8.onnx"]
    bundled = cli("bundle", str(art), "--for", "cpu", "--out", str(tmp_path / "b.tar.gz"))
    assert bundled.returncode == 0, bundled.stderr  # found by review: it said to verify INT8 on the host
    assert ("never judged, so the device refuses it: model.int8.onnx: INT8 is judged by its decisions, which a "
            "model without classes has none of") in " ".join(bundled.stderr.split()), bundled.stderr
    assert "on the host" not in bundled.stderr


@pytest.mark.parametrize("prefix", ["", "module."])
def test_a_score_and_a_head_import_with_labels(tmp_path: Path, prefix: str) -> None:
    torch.manual_seed(2)
    user = ScoreAndHead()
    model, summary = _load(user, tmp_path, prefix=prefix)
    _assert_same(user, model)
    _, info = load_model(tmp_path / "art")
    assert info.head == "classification" and info.labels == ("0", "1", "2")
    assert "linear score 'attention', head 'fc' classification 3 outputs" in summary


@pytest.mark.parametrize("v_as_parameter", [False, True])
def test_an_additive_score_with_a_head(tmp_path: Path, v_as_parameter: bool) -> None:
    torch.manual_seed(3)
    user = Additive(v_as_parameter)
    model, summary = _load(user, tmp_path)
    _assert_same(user, model)
    assert model.config.attention == "additive" and model.config.query == "learned"
    assert f"additive score 'W' + 'v' (A {A}; taken as v . tanh(W h + b)), head 'classifier' classification {C} outputs" in summary


def test_conv_and_a_bidirectional_stack_through_the_cli_then_export(tmp_path: Path) -> None:
    torch.manual_seed(4)
    user = ConvBidirectional()
    # a short parity sweep keeps export at a second or two
    result = cli("load", str(_save(user, tmp_path / "user.pt")), str(tmp_path / "art"), "--set", "model.dropout=0.2",
                 "--set", "export.parity_max_seq=32")
    assert result.returncode == 0, result.stderr
    assert ("conv 2 layers (k 5, 3; taken as stride 1, dilation 1, groups 1, padding k // 2, a ReLU after each, no pooling), LSTM "
            "'rnn' hidden_size 12, num_layers 2, bidirectional, linear score 'att', "
            "head 'out' classification 3 outputs") in result.stderr
    model, info = load_model(tmp_path / "art")
    assert info.recipe["model"]["dropout"] == 0.2
    _assert_same(user, model)
    exported = cli("export", str(tmp_path / "art"))
    assert exported.returncode == 0, exported.stderr


def test_two_one_output_linears_need_map_and_then_import(tmp_path: Path) -> None:
    torch.manual_seed(5)
    user = OneOutputHead()
    with pytest.raises(DataError, match="ambiguous.*--map w_a=score --map w_b=head"):
        _load(user, tmp_path)
    assert not (tmp_path / "art").exists()
    recipe = load_recipe(None, ["model.head=regression"])
    model, summary = _load(user, tmp_path, "w_b=score", "module.w_a=head", recipe=recipe)
    _assert_same(user, model)
    assert model.config.head == "regression" and "head 'w_a' regression 1 output" in summary


class SequentialAdditive(nn.Module):
    """The additive score written as ``nn.Sequential(Linear(D, A), Tanh(), Linear(A, 1))``, v with PyTorch's
    default bias (which the softmax ignores), no head: the output is the context vector."""

    def __init__(self, attention_dim: int = H) -> None:
        super().__init__()
        self.lstm = nn.LSTM(F, H, batch_first=True)
        self.attn = nn.Sequential(nn.Linear(H, attention_dim), nn.Tanh(), nn.Linear(attention_dim, 1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out, _ = self.lstm(x)
        weights = torch.softmax(self.attn(out).squeeze(-1), dim=1)
        return (weights.unsqueeze(-1) * out).sum(1), weights


def test_an_additive_score_with_a_biased_v_and_a_equal_to_d_is_ambiguous_then_maps(tmp_path: Path) -> None:
    """Found by attacking: with A == D, ``Linear(D, D), Tanh, Linear(D, 1)`` was read as a score ``attn.2`` and
    a head ``attn.0`` of D classes (outputs 0.44 off the module's, and verify passed). A biased v is v now,
    so both readings fit and load asks which; mapped, the import gives the module's outputs."""
    torch.manual_seed(7)
    user = SequentialAdditive()
    with pytest.raises(DataError, match=r"ambiguous, 2 readings fit: key attn\.0 \+ energy attn\.2; or score attn\.2 "
                                        r"\+ head attn\.0.*--map attn\.0=key --map attn\.2=energy"):
        _load(user, tmp_path)
    assert not (tmp_path / "art").exists()
    model, summary = _load(user, tmp_path, "attn.0=key", "attn.2=energy")
    _assert_same(user, model)
    assert "additive score 'attn.0' + 'attn.2' (A 12; taken as v . tanh(W h + b)), the bias of 'attn.2' dropped" in summary


def test_a_biased_v_imports_with_its_bias_dropped(tmp_path: Path) -> None:
    torch.manual_seed(8)
    user = SequentialAdditive(attention_dim=A)
    with torch.no_grad():
        user.attn[2].bias.fill_(5.0)  # the same for every step: no weight moves
    model, summary = _load(user, tmp_path)
    _assert_same(user, model)
    assert "the bias of 'attn.2' dropped" in summary


@pytest.mark.parametrize("name", ["class_weights", "criterion.weight", "loss_fn.pos_weight"])
def test_a_loss_functions_weights_are_left_out_and_said(tmp_path: Path, name: str) -> None:
    """Found by attacking: ``class_weights`` of C values beside a score and a head was read as an additive v
    (key = the head, head = the score: a binary model of a 3-class one), exit 0."""
    torch.manual_seed(9)
    user = ScoreAndHead()
    state = _state(user, **{name: torch.tensor([1.0, 2.0, 0.5])})
    torch.save(state, tmp_path / "user.pt")
    summary = load_checkpoint(tmp_path / "user.pt", tmp_path / "art", Recipe())
    model, _ = load_model(tmp_path / "art")
    _assert_same(user, model)
    assert f"linear score 'attention', head 'fc' classification 3 outputs, left out {name} (a loss function's " \
           "weights, not the model's)" in summary


class Embedded(nn.Module):
    """Tokens through an ``nn.Embedding(V, E)`` (E == H), then the classic snippet."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(50, H)
        self.lstm = nn.LSTM(H, H, batch_first=True)
        self.fc = nn.Linear(H, 1)


class Projected(nn.Module):
    """An input projection ``Linear(H, F)`` before the LSTM, its input width equal to D."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(H, F)
        self.lstm = nn.LSTM(F, H, batch_first=True)
        self.fc = nn.Linear(H, 1)


@pytest.mark.parametrize("module, said", [(Embedded, "emb.weight (50, 12) no bias"), (Projected, "proj.weight (6, 12)")])
def test_a_part_made_before_the_lstm_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                module: type[nn.Module], said: str) -> None:
    """Found by attacking: an embedding, or an input projection, whose input width is D was read as a head
    (``emb`` a head of 50 classes), exit 0. In a torch file the parts keep their order, and nothing of the
    model comes before the LSTM but Conv1d layers."""
    name = said.split(".")[0]
    feeds = module().lstm.input_size
    line = _error(tmp_path, _state(module()), capsys=capsys)
    assert (f"user.pt: {said} is stored before the LSTM lstm and could feed its input of {feeds}: an input "
            "projection or an embedding, which the model does not have; expected the score and head after the LSTM "
            f"(if {name} runs after it, give its role: --map {name}=ROLE, ROLE one of score, key, head)") in line


def test_parts_stored_before_the_lstm_that_cannot_feed_it_import(tmp_path: Path) -> None:
    """Found by review: the first rule refused any Linear stored before the LSTM, so an attention made before
    the LSTM, or the classic snippet saved with sorted keys (``fc`` < ``lstm``), which had imported, were
    refused. Only a shape that could feed the LSTM is; --map overrules it, and a .safetensors file (sorted
    keys) is never read for order."""
    from safetensors.torch import save_file

    torch.manual_seed(10)
    user = ScoreAndHead()
    ordered = dict(sorted(user.state_dict().items()))  # attention, fc, lstm: both before the LSTM
    torch.save(ordered, tmp_path / "sorted.pt")
    load_checkpoint(tmp_path / "sorted.pt", tmp_path / "art", Recipe())
    _assert_same(user, load_model(tmp_path / "art")[0])
    save_file({k: v.contiguous() for k, v in ordered.items()}, str(tmp_path / "sorted.safetensors"))
    load_checkpoint(tmp_path / "sorted.safetensors", tmp_path / "art2", Recipe())
    _assert_same(user, load_model(tmp_path / "art2")[0])
    projected = _state(Projected())  # the same refusal a mapped part escapes
    torch.save(projected, tmp_path / "p.pt")
    with pytest.raises(DataError, match="proj.weight \\(6, 12\\) is stored before the LSTM"):
        load_checkpoint(tmp_path / "p.pt", tmp_path / "art3", Recipe())
    with pytest.raises(DataError, match="--map proj=score: proj.weight \\(6, 12\\) cannot be the score"):
        load_checkpoint(tmp_path / "p.pt", tmp_path / "art3", Recipe(), ["proj=score"])  # mapped: read by shape


@pytest.mark.parametrize("name", ["focal_loss.alpha", "ce_loss.weight", "loss_function.weight", "ce.weight",
                                  "nll.weight", "xent.weight", "bce.pos_weight", "loss_weights"])
def test_loss_modules_named_otherwise_are_left_out_too(tmp_path: Path, name: str) -> None:
    torch.manual_seed(9)
    user = ScoreAndHead()
    torch.save(_state(user, **{name: torch.tensor([1.0, 2.0, 0.5])}), tmp_path / "user.pt")
    summary = load_checkpoint(tmp_path / "user.pt", tmp_path / "art", Recipe())
    _assert_same(user, load_model(tmp_path / "art")[0])
    assert f"left out {name} (a loss function's weights, not the model's)" in summary


@pytest.mark.parametrize("name", ["class_prior", "logit_bias", "extra.v"])
def test_a_loose_vector_beside_a_score_and_a_head_is_not_read_as_an_additive_v(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str) -> None:
    """Found by attacking: a vector of C values under a name that is no loss function's, beside a score and a
    head of C classes, was read as W = the head, v = the vector and a binary head = the score, and verify
    passed it. It is refused, naming both readings; ``--map NAME=none`` leaves it out, and the import is then
    the user's module."""
    torch.manual_seed(9)
    user = ScoreAndHead()
    state = _state(user, **{name: torch.tensor([1.0, 2.0, 0.5])})
    line = _error(tmp_path, state, capsys=capsys)
    assert (f"reads fc + {name} as an additive score and attention as a one-output head; the same shapes are a "
            f"score attention, a head fc and {name} a tensor of something else") in line, line
    assert main(["load", str(tmp_path / "user.pt"), str(tmp_path / "art"), "--map", f"{name}=none"]) == 0
    _assert_same(user, load_model(tmp_path / "art")[0])
    assert f"left out {name} (--map none: never read by the model)" in capsys.readouterr().err


class BinaryBahdanau(nn.Module):
    """A binary classifier with its additive attention in a module of its own: ``attn.W`` and a loose ``attn.v``
    beside ``fc`` Linear(D, 1), and an auxiliary head of two Linears that is not part of the model."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(F, H, batch_first=True)
        self.attn = nn.Module()
        self.attn.W = nn.Linear(H, A)
        self.attn.v = nn.Parameter(torch.randn(A))
        self.fc = nn.Linear(H, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out, _ = self.lstm(x)
        weights = torch.softmax(torch.tanh(self.attn.W(out)) @ self.attn.v, dim=1)
        return self.fc(torch.einsum("bt,bth->bh", weights, out)), weights


def test_a_loose_v_made_in_the_attentions_own_module_is_read_as_such(tmp_path: Path) -> None:
    """Found by review: the loose-v doubt refused the usual binary Bahdanau model too; W and v made in one module
    that the head is outside are an attention's layout. ``--map PREFIX=none`` leaves out every part under a
    prefix (an auxiliary head of two Linears)."""
    torch.manual_seed(9)
    user = BinaryBahdanau()
    state = _state(user, **{"aux.fc1.weight": torch.randn(5, H), "aux.fc2.weight": torch.randn(1, 5)})
    torch.save(state, tmp_path / "user.pt")
    summary = load_checkpoint(tmp_path / "user.pt", tmp_path / "art", Recipe(), ["aux=none"])
    _assert_same(user, load_model(tmp_path / "art")[0])
    assert "additive score 'attn.W' + 'attn.v'" in summary and "head 'fc' binary" in summary, summary
    assert "left out aux.fc1 and aux.fc2 (--map none: never read by the model)" in summary, summary
    square = nn.Module()  # no head, W of (D, D) and v of D values: in an attention module, no dot-product query
    square.lstm, square.attn = nn.LSTM(F, H, batch_first=True), nn.Module()
    square.attn.W, square.attn.v = nn.Linear(H, H), nn.Parameter(torch.randn(H))
    torch.save(square.state_dict(), tmp_path / "square.pt")
    assert "additive score 'attn.W' + 'attn.v'" in load_checkpoint(tmp_path / "square.pt", tmp_path / "sq", Recipe())


def _projected() -> nn.Module:  # o = tanh(proj(h)); score and context both on o
    m = nn.Module()
    m.lstm, m.proj, m.attention, m.fc = nn.LSTM(F, H, batch_first=True), nn.Linear(H, H), nn.Linear(H, 1), nn.Linear(H, C)
    return m


def _logit_adjusted() -> nn.Module:  # a head module adding a class prior to its Linear's logits
    m = nn.Module()
    m.lstm, m.attention = nn.LSTM(F, H, batch_first=True), nn.Linear(H, 1)
    m.classifier = nn.Module()
    m.classifier.register_buffer("log_prior", torch.randn(C))
    m.classifier.fc = nn.Linear(H, C)
    return m


def _conv_after() -> nn.Module:  # a Conv1d on the LSTM's outputs, made after it
    m = nn.Module()
    m.lstm, m.conv = nn.LSTM(H, H // 2, batch_first=True, bidirectional=True), nn.Conv1d(H, H, 3, padding=1)
    m.attention, m.fc = nn.Linear(H, 1), nn.Linear(H, C)
    return m


def _pattern_head() -> nn.Module:  # the class prior in a head module whose name holds "att" inside a word
    m = _logit_adjusted()
    m.pattern_head = m.classifier
    del m.classifier
    return m


def _projected_loose() -> nn.Module:  # a projection W of (D, D), a loose v of D values, a head
    m = nn.Module()
    m.lstm, m.W, m.fc = nn.LSTM(F, H, batch_first=True), nn.Linear(H, H), nn.Linear(H, C)
    m.v = nn.Parameter(torch.randn(H))
    return m


def _convs_after() -> nn.Module:  # two Conv1d layers in one Sequential, made after the LSTM
    m = nn.Module()
    m.lstm = nn.LSTM(H, H // 2, batch_first=True, bidirectional=True)
    m.convs = nn.Sequential(nn.Conv1d(H, H, 3, padding=1), nn.ReLU(), nn.Conv1d(H, H, 3, padding=1))
    m.attention, m.fc = nn.Linear(H, 1), nn.Linear(H, C)
    return m


def _activated_head() -> nn.Module:  # fc = Sequential(Dropout, ReLU, Linear)
    m = nn.Module()
    m.lstm, m.attention = nn.LSTM(F, H, batch_first=True), nn.Linear(H, 1)
    m.fc = nn.Sequential(nn.Dropout(0.2), nn.ReLU(), nn.Linear(H, C))
    return m


@pytest.mark.parametrize("make, said, confirm", [
    (_projected, "a projection proj that the score attention and the context both read", ""),
    (_logit_adjusted, "classifier.log_prior a tensor of something else", ""),
    (_conv_after, "conv.weight (12, 12, 3) is stored after the LSTM lstm: a Conv1d on its outputs", "conv=conv"),
    (_activated_head, "fc.2 as the head; but fc.0 and fc.1 before it in its nn.Sequential hold no weights",
     "fc.2=head"),
    # found by review: "att" inside a word (pattern_head) was taken for an attention module; a loose v as a
    # Linear one; two convs after the LSTM needed two runs of load, one --map each
    (_pattern_head, "pattern_head.log_prior a tensor of something else", ""),
    (_projected_loose, "a projection W that the score v and the context both read", ""),
    (_convs_after, "convs.0.weight (12, 12, 3) is stored after the LSTM lstm", "convs=conv"),
])
def test_layouts_whose_shapes_hide_another_computation_are_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], make: Any, said: str, confirm: str) -> None:
    """Found by attacking (each imported, exit 0, and computed another model: logits off by up to 1.4, the
    decision kept on 0.35-0.73 of the rows): a projection Linear(D, D) before the score and the context,
    stored in the order W, v, head; a head module's class prior beside its Linear; a Conv1d on the LSTM's
    outputs; an activation before the head inside its nn.Sequential. Each is refused in one line; where the
    model has the layout, the --map the line gives imports it."""
    torch.manual_seed(9)
    line = _error(tmp_path, _state(make()), capsys=capsys)
    assert said in line, line
    if confirm:
        assert f"--map {confirm}" in line
        assert main(["load", str(tmp_path / "user.pt"), str(tmp_path / "art"), "--map", confirm]) == 0


class DotQuery(nn.Module):
    """A dot-product score with a learned query (``h_t . q``) and a head Linear(D, D): not the model's."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(F, H, batch_first=True)
        self.query = nn.Parameter(torch.randn(H))
        self.fc = nn.Linear(H, H)


def test_a_dot_product_query_and_a_square_head_is_not_read_as_an_additive_score(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Found by attacking: read as W ``fc`` and v ``query`` with no head, the same output size, and verify
    passed it while every output differed."""
    torch.manual_seed(9)
    line = _error(tmp_path, _state(DotQuery()), capsys=capsys)
    assert ("reads fc + query as an additive score and no head; the same shapes are a dot-product score with "
            "query as its learned query and a head fc, which the model does not have") in line, line
    assert line.endswith("--map fc=key --map query=energy")
    assert main(["load", str(tmp_path / "user.pt"), str(tmp_path / "art"), "--map", "fc=key",
                 "--map", "query=energy"]) == 0  # said to be additive: read so


def test_a_bias_free_head_that_could_be_an_embedding_needs_map_in_a_safetensors_file(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Found by attacking: a .safetensors file keeps no order, so an ``nn.Embedding(V, D)`` that a torch file
    refuses (stored before the LSTM) was read as a head of V classes."""
    from safetensors.torch import save_file

    torch.manual_seed(9)
    user = Embedded()
    save_file(user.state_dict(), str(tmp_path / "user.safetensors"))
    assert main(["load", str(tmp_path / "user.safetensors"), str(tmp_path / "art")]) == 2
    err = capsys.readouterr().err
    assert "emb as a head without a bias; the same shape (50, 12) is an embedding table or an input projection " \
           "feeding the LSTM's input of 12" in err and not (tmp_path / "art").exists()
    assert main(["load", str(tmp_path / "user.safetensors"), str(tmp_path / "art"), "--map", "emb=none"]) == 0
    ours = load_model(tmp_path / "art")[0]
    x = torch.randn(B, T, H)  # what the embedding would have fed the LSTM
    with torch.no_grad():
        out, _ = user.lstm(x)
        weights = torch.softmax(user.fc(out), dim=1)
        torch.testing.assert_close(ours(x, torch.full((B,), T))[0], (weights * out).sum(1), atol=1e-6, rtol=1e-5)


def _error(tmp_path: Path, state: dict[str, torch.Tensor], *args: str,
           capsys: pytest.CaptureFixture[str]) -> str:
    torch.save(state, tmp_path / "user.pt")
    rc = main(["load", str(tmp_path / "user.pt"), str(tmp_path / "art"), *args])
    err = capsys.readouterr().err
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "Traceback" not in err, err
    assert "[" not in err
    assert not (tmp_path / "art").exists()
    return lines[0]


def _state(module: nn.Module, **extra: torch.Tensor) -> dict[str, torch.Tensor]:
    return {**module.state_dict(), **extra}


def test_a_checkpoint_without_an_lstm_lists_what_it_found(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line = _error(tmp_path, {"encoder.weight": torch.zeros(5, 4), "v": torch.zeros(4)}, capsys=capsys)
    assert "no LSTM" in line and "found: encoder.weight (5, 4) no bias, v (4,);" in line and "--map PREFIX=ROLE" in line


def test_an_extra_linear_that_fits_no_role(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = _state(ScoreAndHead(), **{"extra.weight": torch.zeros(5, 5), "extra.bias": torch.zeros(5)})
    line = _error(tmp_path, state, capsys=capsys)
    assert "extra.weight has shape (5, 5), which fits no role" in line
    assert ("found: lstm (1 layer, input 6, hidden 12), attention.weight (1, 12), fc.weight (3, 12), "
            "extra.weight (5, 5);") in line
    assert "D = 12" in line and "--map PREFIX=ROLE" in line


def test_two_score_shaped_linears_are_ambiguous(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line = _error(tmp_path, _state(ScoreAndHead(classes=1)), capsys=capsys)
    assert "ambiguous, 2 readings fit: score attention + head fc; or score fc + head attention" in line
    assert "--map attention=score --map fc=head" in line


@pytest.mark.parametrize("value, fragment", [
    ("attention", "is not PREFIX=ROLE"),
    ("attention=scorer", "'scorer' is not a role; expected one of lstm, conv, conv.N"),
    ("nothing=score", "no part nothing; expected one of lstm, attention, fc"),
    ("fc=energy", "fc.weight (3, 12) cannot be the energy"),
    ("fc=score", "fc.weight (3, 12) cannot be the score, which is a Linear(D, 1), with D = 12"),
])
def test_a_bad_map_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str, fragment: str) -> None:
    assert fragment in _error(tmp_path, _state(ScoreAndHead()), "--map", value, capsys=capsys)


def test_the_real_cli_refuses_in_one_line(tmp_path: Path) -> None:
    torch.save(_state(OneOutputHead()), tmp_path / "user.pt")
    result = cli("load", str(tmp_path / "user.pt"), str(tmp_path / "art"))
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert "ambiguous" in result.stderr and "--map" in result.stderr
    assert not (tmp_path / "art").exists()


class Lightning(nn.Module):
    """A LightningModule-like wrapper: the model is its attribute ``model``, so every key starts "model."."""

    def __init__(self) -> None:
        super().__init__()
        self.model = ScoreAndHead()


@pytest.mark.parametrize("wrap, found", [
    (lambda m: {"epoch": 7, "model_state_dict": m.state_dict(), "optimizer_state_dict":
                torch.optim.Adam(m.parameters()).state_dict(), "loss": 0.25},
     "read the state_dict under 'model_state_dict'"),
    (lambda m: {"state_dict": m.state_dict(), "epoch": 3}, "read the state_dict under 'state_dict'"),
    (lambda m: {"net": m.state_dict()}, "read the state_dict under 'net'"),
    (lambda m: {"epoch": 1, "global_step": 10, "state_dict": Lightning().state_dict()},
     "read the state_dict under 'state_dict', its keys' common prefix 'model.' dropped"),
], ids=["training-loop", "state_dict", "net", "lightning"])
def test_checkpoints_as_training_loops_write_them(tmp_path: Path, wrap: object, found: str) -> None:
    """``torch.save({'epoch': ..., 'model_state_dict': ..., 'optimizer_state_dict': ...})`` said "does not hold
    a state_dict"; the state_dict is found in the usual wrappers and the summary says where."""
    torch.manual_seed(6)
    user = ScoreAndHead()
    saved = wrap(user)  # type: ignore[operator]
    if "global_step" in saved:  # the Lightning case holds its own module's weights
        user = Lightning()
        user.load_state_dict(saved["state_dict"])
        user = user.model
    torch.save(saved, tmp_path / "wrapped.pt")
    result = cli("load", str(tmp_path / "wrapped.pt"), str(tmp_path / "art"), "--set", "export.parity_max_seq=16")
    assert result.returncode == 0, result.stderr
    assert found in result.stderr, result.stderr
    model, _ = load_model(tmp_path / "art")
    _assert_same(user, model)


def test_a_dict_without_a_state_dict_lists_its_keys(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line = _error(tmp_path, {"epoch": 3, "optimizer_state_dict": {"state": {}, "param_groups": []}},  # type: ignore[dict-item]
                  capsys=capsys)
    assert "holds a dict with the keys epoch, optimizer_state_dict, none of them a state_dict of tensors" in line
    assert "model_state_dict" in line


def test_an_lstm_with_proj_size_says_proj_size(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    class Projected(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lstm = nn.LSTM(F, H, batch_first=True, proj_size=5)
            self.attention = nn.Linear(5, 1)
            self.fc = nn.Linear(5, C)

    line = _error(tmp_path, Projected().state_dict(), capsys=capsys)
    assert "lstm.weight_hr_l0 is (5, 12): an nn.LSTM with proj_size" in line and "no LSTM" not in line


@pytest.mark.parametrize("key, tensor, said", [  # found by a user: the first two named the wrong thing
    ("lstm.weight_hh_l0", torch.zeros(4 * H, H - 1), f"lstm.weight_hh_l0 is ({4 * H}, {H - 1})"),  # was "no LSTM"
    ("lstm.bias_ih_l0", None, "lstm.bias_ih_l0 is missing"),  # was "lstm.bias_hh_l0 is (48,) ... absent"
    ("lstm.bias_hh_l0", None, "lstm.bias_hh_l0 is missing"),
    ("lstm.weight_hh_l0", None, "lstm.weight_hh_l0 is missing"),  # found by attacking: was "no LSTM"
    ("lstm.weight_ih_l0", torch.zeros(4 * H - 1, F), f"lstm.weight_ih_l0 is ({4 * H - 1}, {F})"),
])
def test_a_malformed_lstm_tensor_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str], key: str,
                                          tensor: torch.Tensor | None, said: str) -> None:
    state = Classic().state_dict()
    if tensor is None:
        del state[key]
    else:
        state[key] = tensor
    line = _error(tmp_path, state, capsys=capsys)
    expected = tuple(Classic().state_dict()[key].shape)
    assert f"{said}: expected the tensors of one nn.LSTM({F}, {H}, num_layers=1, bidirectional=False)" in line
    assert line.endswith(f"where {key} is ({', '.join(map(str, expected))}{',' if len(expected) == 1 else ''})"), line


def test_a_gru_is_not_taken_for_a_broken_lstm(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gru = nn.GRU(F, 16, batch_first=True)  # 48 gates, as an LSTM of 12 has: the widths tell them apart
    state = {**{f"lstm.{k}": v for k, v in gru.state_dict().items()}, **{f"fc.{k}": v for k, v in
                                                                         nn.Linear(16, C).state_dict().items()}}
    assert "no LSTM" in _error(tmp_path, state, capsys=capsys)


def test_nan_weights_an_empty_file_and_a_contradicting_override_are_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Found by attacking load: NaN weights passed and broke export 1,000 characters later; an empty .pt
    crashed the error formatter (torch's EOFError has no message); --set model.hidden_size=3 was ignored
    over a hidden-12 checkpoint and recorded nowhere. Each is now one line, exit 2, nothing written."""
    state = _state(ScoreAndHead())
    state["lstm.weight_hh_l0"][0, 0] = float("nan")
    assert "has NaN or infinite values in 1 tensor(s), first 'lstm.weight_hh_l0'; expected finite float32 weights" \
        in _error(tmp_path, state, capsys=capsys)
    state = {k: v.double() for k, v in _state(ScoreAndHead()).items()}  # finite in float64, inf in float32
    state["fc.bias"][0] = 1e39
    assert "has values beyond float32 (3.4e38) in 1 tensor(s), first 'fc.bias'; expected finite float32 weights" \
        in _error(tmp_path, state, capsys=capsys)
    state = _state(ScoreAndHead())  # found by a user: loaded with a torch warning, the imaginary part dropped
    state["lstm.weight_ih_l0"] = state["lstm.weight_ih_l0"].to(torch.complex64)
    assert "has complex values in 1 tensor(s), first 'lstm.weight_ih_l0'; expected real weights" in _error(
        tmp_path, state, capsys=capsys)
    (tmp_path / "empty.pt").write_bytes(b"")
    assert main(["load", str(tmp_path / "empty.pt"), str(tmp_path / "art")]) == 2
    err = capsys.readouterr().err
    assert err.strip().startswith(f"Error: {tmp_path / 'empty.pt'} is not a readable PyTorch checkpoint (EOFError); "
                                  "save a plain state_dict")
    line = _error(tmp_path, _state(ScoreAndHead()), "--set", "model.hidden_size=3", capsys=capsys)
    assert f"--set model.hidden_size=3 contradicts user.pt, whose weights make it {H}" in line
    for key, value in (("query", "learned"), ("attention_dim", "16")):  # no effect on a linear score: was recorded
        line = _error(tmp_path, _state(ScoreAndHead()), "--set", f"model.{key}={value}", capsys=capsys)
        assert f"--set model.{key}: user.pt has a linear score (Linear(D, 1)), which has no {key}" in line
    # found by attacking: a recipe's [model] table was overwritten by the weights without a word, and a
    # --set train.* recorded in model.json as if used
    (tmp_path / "r.toml").write_text('[data]\nname = "synthetic"\n[model]\nhidden_size = 64\n')
    line = _error(tmp_path, _state(ScoreAndHead()), "--recipe", str(tmp_path / "r.toml"), capsys=capsys)
    assert f"the recipe's model.hidden_size = 64 contradicts user.pt, whose weights make it {H}" in line
    line = _error(tmp_path, _state(ScoreAndHead()), "--set", "train.epochs=99", capsys=capsys)
    assert "--set train.epochs=99: a loaded model is not trained here, so train.* settings do nothing" in line
    # a key given twice before another: the message quotes the override it is about (found by review: the
    # applied overrides had been zipped with the given ones, and named another)
    line = _error(tmp_path, _state(ScoreAndHead()), "--set", f"model.hidden_size={H}", "--set",
                  f"model.hidden_size={H}", "--set", "train.epochs=3", capsys=capsys)
    assert "--set train.epochs=3: a loaded model is not trained here" in line
    line = _error(tmp_path, _state(ScoreAndHead()), "--set", "model.num_layers=1", "--set", "model.num_layers=1",
                  "--set", "model.hidden_size=99", capsys=capsys)
    assert f"--set model.hidden_size=99 contradicts user.pt, whose weights make it {H}" in line
    line = _error(tmp_path, _state(ScoreAndHead()), "--set", "model.dropout=0.1", capsys=capsys)  # found by a user:
    assert "model.dropout = 0.1 does nothing over user.pt's one-layer LSTM" in line  # was recorded as if used
    torch.save(_state(ConvBidirectional()), tmp_path / "stacked.pt")
    assert main(["load", str(tmp_path / "stacked.pt"), str(tmp_path / "art"), "--set", "model.dropout=0.1"]) == 0


@pytest.mark.slow  # 15-30 s: kept out of the default run's time
def test_a_model_loaded_without_its_data_is_judged_and_calibrated_on_none(tmp_path: Path) -> None:
    """Found by a user: with no recipe, load recorded the default recipe's synthetic data, so a 4-feature
    import was judged on it (test accuracy 0.33 of an unrelated task) and INT8 Q/DQ calibrated on it.
    Now it records data.name = "none": verify says why there is no test split, calibration is refused in
    one line, and a recipe or a data.* override names the data as before."""
    art = tmp_path / "art"
    source = str(_save(ScoreAndHead(), tmp_path / "user.pt"))
    for args in (("load", source, str(art)), ("export", str(art))):
        result = cli(*args)
        assert result.returncode == 0, result.stderr
    assert json.loads((art / "model.json").read_text())["recipe"]["data"]["name"] == "none"
    info = subprocess.run([sys.executable, "-m", "attn_export.runtime", "info", str(art)], capture_output=True,
                          text=True, timeout=120)  # found by review: "trained with [data] missing = 'error'"
    assert "a gap is refused (the model was imported by load: how its training data's gaps were filled is not " \
           "known)" in info.stdout, info.stdout + info.stderr
    verified = cli("verify", str(art), "--backends", "ort-cpu", "--json")
    assert verified.returncode == 0, verified.stderr
    shown = cli("verify", str(art), "--backends", "ort-cpu")
    console = " ".join((shown.stdout + shown.stderr).split())
    assert 'no test accuracy: test split unavailable: data.name = "none" names no data' in console
    reference = json.loads(verified.stdout)["reference"]
    assert reference["accuracy"] is None and 'data.name = "none" names no data' in reference["test_split"]
    refused = cli("quantize", str(art), "--int8", "--method", "qdq")
    said = " ".join(refused.stderr.split())
    assert refused.returncode == 2 and said.count("Error:") == 1 and "Traceback" not in said, refused.stderr
    assert 'data.name = "none" names no data' in said and "load CHECKPOINT DIR --recipe R" in said
    assert not (art / "model.int8-qdq.onnx").exists()
    named = tmp_path / "named"
    other = cli("load", source, str(named), "--set", "data.name=synthetic")  # 4 features: not this model's 6
    assert other.returncode == 2 and not named.exists()
    assert (f"the recipe's data (synthetic (seed 0, 4 features, 3 classes, lengths 8-64)) has 4 features per step, "
            f"user.pt's model {F}; expected the data it was trained on") in " ".join(other.stderr.split())
    assert cli("load", source, str(named), "--set", "data.name=synthetic", "--set", f"data.features={F}",
               "--set", f"data.classes={C}").returncode == 0
    assert json.loads((named / "model.json").read_text())["recipe"]["data"]["name"] == "synthetic"
    fewer = cli("load", source, str(tmp_path / "fewer"), "--set", "data.name=synthetic", "--set", f"data.features={F}",
                "--set", "data.classes=2")
    assert fewer.returncode == 2 and "has 2 classes, user.pt's classification head 3" in " ".join(fewer.stderr.split())
    (tmp_path / "no-data.toml").write_text("[export]\nopset = 17\n")  # found by review: this named no data
    assert cli("load", source, str(tmp_path / "unnamed"), "--recipe", str(tmp_path / "no-data.toml")).returncode == 0
    assert json.loads((tmp_path / "unnamed" / "model.json").read_text())["recipe"]["data"]["name"] == "none"
    (tmp_path / "seed.toml").write_text("[data]\nseed = 3\n")  # found by a user: data settings were dropped
    for extra, key in ((["--set", "data.features=7"], "features"), (["--recipe", str(tmp_path / "seed.toml")], "seed")):
        dropped = cli("load", source, str(tmp_path / "dropped"), *extra)
        said = " ".join(dropped.stderr.split())
        assert dropped.returncode == 2 and said.count("Error:") == 1 and not (tmp_path / "dropped").exists(), said
        assert f"data.{key} is set but no data.name" in said and "expected data.name as well" in said
    retrain = cli("train", str(tmp_path / "t"), "--set", "data.name=none")
    assert retrain.returncode == 2 and 'data.name = "none" names no data' in " ".join(retrain.stderr.split())


def test_a_model_loaded_without_its_data_keeps_the_gap_policy_it_is_given(tmp_path: Path) -> None:
    """Found in stop 62's list: load refused data.missing without data.name, so a model trained elsewhere
    with forward-filled gaps refused every gap in predict. The policy alone is now recorded, and predict on
    a gappy CSV fills as it says (checked against the same file filled by hand)."""
    art = tmp_path / "art"
    source = str(_save(ScoreAndHead(), tmp_path / "user.pt"))
    for args in (("load", source, str(art), "--set", "data.missing=ffill"), ("export", str(art))):
        result = cli(*args)
        assert result.returncode == 0, result.stderr
    data = json.loads((art / "model.json").read_text())["recipe"]["data"]
    assert (data["name"], data["missing"]) == ("none", "ffill")
    rng = np.random.default_rng(0)
    values = rng.normal(size=(9, F)).round(4)
    gappy, filled = tmp_path / "gappy.csv", tmp_path / "filled.csv"
    header = ",".join(["sequence", *(f"f{i}" for i in range(F))])
    gappy.write_text("\n".join([header, *(",".join(["s", *("" if (t, f) in {(3, 1), (4, 1), (7, 5)} else str(v)
                                                           for f, v in enumerate(row))])
                                         for t, row in enumerate(values))]) + "\n")
    for t, f in ((3, 1), (4, 1), (7, 5)):
        values[t, f] = values[t - 1, f] if t != 4 else values[2, f]
    filled.write_text("\n".join([header, *(",".join(["s", *map(str, row)]) for row in values)]) + "\n")
    runs = [subprocess.run([sys.executable, "-m", "attn_export.runtime", "predict", str(art), str(path), "--json",
                            "--allow-unverified"], capture_output=True, text=True, timeout=120) for path in (gappy, filled)]
    assert all(run.returncode == 0 for run in runs), runs[0].stderr + runs[1].stderr
    got, want = (json.loads(run.stdout)["predictions"][0]["probabilities"] for run in runs)
    assert got == want
    assert any(note.startswith("3 missing value(s) in the input filled by [data] missing = 'ffill'")
               for note in json.loads(runs[0].stdout)["notes"])
    info = subprocess.run([sys.executable, "-m", "attn_export.runtime", "info", str(art)], capture_output=True,
                          text=True, timeout=120)
    assert "a gap is filled by 'ffill'" in info.stdout, info.stdout + info.stderr


def test_train_and_run_refuse_to_train_over_an_imported_model(tmp_path: Path) -> None:
    """Found by attacking: ``run DIR`` on a directory ``load`` made trained the quickstart's classifier over
    the imported model, exit 0, without a word; nothing in DIR could bring the import back."""
    art = tmp_path / "art"
    assert cli("load", str(_save(ScoreAndHead(), tmp_path / "user.pt")), str(art)).returncode == 0
    before = {p.name: p.read_bytes() for p in art.iterdir() if p.is_file()}
    for args in (("train", str(art)), ("run", str(art), "--bench-seconds", "0.05")):
        refused = cli(*args)
        said = " ".join(refused.stderr.split())
        assert refused.returncode == 2 and said.count("Error:") == 1 and "Traceback" not in said, refused.stderr
        assert f"{art} holds a model imported by attn-export load (from user.pt): training would replace it" in said
    assert {p.name: p.read_bytes() for p in art.iterdir() if p.is_file()} == before


def test_train_holds_the_directory_lock_while_it_trains(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Found by review: the refusal above, put between train's lock decorator and train, took the lock for
    itself alone: training ran unlocked (another command could write the directory meanwhile), and
    ``train(recipe, "")`` trained into the current directory. Another process is refused while it trains."""
    from conftest import TINY

    from attn_export.errors import BadInput
    from attn_export.train import train

    recipe = load_recipe(None, [*TINY[1::2], "train.epochs=1"])
    monkeypatch.chdir(tmp_path)
    with pytest.raises(BadInput, match="an empty path"):
        train(recipe, "")  # type: ignore[arg-type]
    assert not list(tmp_path.iterdir())
    seen: list[subprocess.CompletedProcess[str]] = []
    train(recipe, tmp_path / "m", on_epoch=lambda stats: seen.append(cli("export", str(tmp_path / "m"))))
    assert len(seen) == 1 and seen[0].returncode == 1, seen[0].stderr
    assert "is being written by another attn-export process" in seen[0].stderr and "attn-export train" in seen[0].stderr


def test_a_model_loaded_with_its_data_takes_the_datas_classes_and_feature_names(tmp_path: Path) -> None:
    """Found by attacking: load kept labels "0".."2" while verify mapped the data's sorted labels to the
    outputs by position, so verify scored a test file 0.67 and predict the same file 0.33 (and text labels
    made predict refuse the file verify had scored); the CSV's feature names were not recorded, so a file
    with two columns swapped was taken. The data's classes and names are now the model's."""
    rng = np.random.default_rng(0)
    names = [f"f{i}" for i in range(F)]

    def write(path: Path, n: int, header: list[str]) -> Path:
        rows = [",".join(["sequence", *header, "label"])]
        for i in range(n):
            rows += [",".join([f"s{i}", *(f"{v:.4f}" for v in rng.normal(size=F)), ("walk", "run", "sit")[i % 3]])
                     for _ in range(int(rng.integers(4, 12)))]
        path.write_text("\n".join(rows) + "\n")
        return path

    train, test = write(tmp_path / "train.csv", 30, names), write(tmp_path / "test.csv", 15, names)
    swapped = write(tmp_path / "swapped.csv", 2, [names[1], names[0], *names[2:]])
    art = tmp_path / "art"
    for args in (("load", str(_save(ScoreAndHead(), tmp_path / "user.pt")), str(art), "--set", "data.name=files",
                  "--set", f"data.train={train}", "--set", f"data.test={test}"), ("export", str(art))):
        result = cli(*args)
        assert result.returncode == 0, result.stderr
    recorded = json.loads((art / "model.json").read_text())
    assert recorded["labels"] == ["run", "sit", "walk"] and recorded["feature_names"] == names
    verified = cli("verify", str(art), "--backends", "ort-cpu", "--json")
    assert verified.returncode == 0, verified.stderr
    predicted = cli("predict", str(test), "--dir", str(art), "--json")
    assert predicted.returncode == 0, predicted.stderr
    assert json.loads(predicted.stdout)["accuracy"] == pytest.approx(json.loads(verified.stdout)["reference"]["accuracy"])
    refused = cli("predict", str(swapped), "--dir", str(art))
    assert refused.returncode == 2 and "expected f0, f1" in refused.stderr


def test_fp16_names_a_weight_it_cannot_hold(tmp_path: Path) -> None:
    """Found by attacking: a head scaled by 1e6 made quantize --fp16 fail with "the reference's intrinsic
    FP16 error ... is not a finite non-negative number" eight times over (1.3 KB), naming no weight. It now
    names the weight and its size, once, and writes nothing."""
    state = _state(ScoreAndHead())
    state["fc.weight"] = state["fc.weight"] * 1e6
    torch.save(state, tmp_path / "big.pt")
    art = tmp_path / "art"
    for args in (("load", str(tmp_path / "big.pt"), str(art)), ("export", str(art))):
        result = cli(*args)
        assert result.returncode == 0, result.stderr
    refused = cli("quantize", str(art), "--fp16")
    largest = float(state["fc.weight"].abs().max())
    assert refused.returncode == 1 and refused.stderr.strip() == (
        f"Error: model.onnx holds weights beyond FP16's range: 'head.weight' (read by /head/Gemm) reaches "
        f"{largest:.3g}, past 65504; expected weights FP16 holds (FP32 and INT8 run this model)"), refused.stderr
    assert not (art / "model.fp16.onnx").exists()
    # a score weight is a MatMul's, whose initializer the exporter names 'onnx::MatMul_N': the node reading it
    # names the module (found by attacking)
    state = _state(ScoreAndHead())
    state["attention.weight"] = state["attention.weight"] * 1e6
    torch.save(state, tmp_path / "loud.pt")
    art = tmp_path / "score"
    for args in (("load", str(tmp_path / "loud.pt"), str(art)), ("export", str(art))):
        assert cli(*args).returncode == 0
    refused = cli("quantize", str(art), "--fp16")
    assert refused.returncode == 1 and re.search(r"holds weights beyond FP16's range: '[^']+' \(read by /[\w/]*score"
                                                 r"[\w/]*\) reaches", refused.stderr), refused.stderr


def test_fp16_says_when_the_models_own_fp16_computation_overflows(tmp_path: Path) -> None:
    """Found by attacking: weights FP16 holds (3e4) that take the logits to about 2e6 failed quantize --fp16 with
    "the reference's intrinsic FP16 error ... is not a finite non-negative number" eight times over, saying
    nothing of why (and export printed numpy's overflow warning). It is now one line naming the overflow."""
    torch.manual_seed(0)
    model = ScoreAndHead()
    with torch.no_grad():
        model.lstm.bias_ih_l0.fill_(10.0)  # every hidden unit near 1
        model.fc.weight.fill_(3e4)
        model.fc.weight[1].fill_(-3e4)
    torch.save(_state(model), tmp_path / "loud.pt")
    art = tmp_path / "art"
    for args in (("load", str(tmp_path / "loud.pt"), str(art)), ("export", str(art))):
        result = cli(*args)
        assert result.returncode == 0 and "Warning" not in result.stderr, result.stderr
    refused = cli("quantize", str(art), "--fp16")
    assert refused.returncode == 1, refused.stderr
    said = refused.stderr.strip().splitlines()
    assert len(said) == 1 and said[0].startswith("Error: model.fp16.onnx: this model's own FP16 computation "
                                                 "overflows on "), refused.stderr
    assert "past FP16's 65504; its FP32 outputs reach " in said[0] and "so no FP16 budget exists" in said[0]
    assert not (art / "model.fp16.onnx").exists()
    # with INT8 asked too, found by attacking: neither was made, and the line said nothing of INT8
    refused = cli("quantize", str(art), "--int8", "--fp16")
    assert refused.returncode == 1 and refused.stderr.strip().endswith(
        "; nothing was made: run quantize without FP16 to make model.int8.onnx"), refused.stderr
    assert not [f.name for f in art.iterdir() if f.name.startswith(("model.int8", "model.fp16"))]
    assert cli("quantize", str(art), "--int8").returncode == 0


def test_a_score_bias_far_below_the_padding_fill_keeps_the_padding_at_zero(tmp_path: Path) -> None:
    """Found by a user: a score bias of -3e4 (which softmax ignores) loaded, and then export failed ("attention
    on padded steps is not exactly 0") because the model put all the weight on the padding. The model, the
    exported graph and the stream graph now answer as the user's module does."""
    torch.manual_seed(0)
    module = ScoreAndHead()
    with torch.no_grad():
        module.attention.bias.fill_(-3e4)
    art = tmp_path / "art"
    for args in (("load", str(_save(module, tmp_path / "user.pt")), str(art)), ("export", str(art), "--stream")):
        result = cli(*args)
        assert result.returncode == 0, result.stderr
    from attn_export.checkpoint import load_model

    model, _ = load_model(art)
    x = torch.randn(2, T, F)
    with torch.no_grad():
        _, attention = model(x, torch.tensor([T, 3]))
        _, want = module(x[1:, :3])
    assert (attention[1, 3:] == 0).all()
    torch.testing.assert_close(attention[1, :3], want[0], rtol=1e-5, atol=1e-6)


def test_a_users_own_mean_and_std_buffers_are_not_taken_for_attn_exports_weights(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Found by attacking: a module of the user's with ``mean``/``std`` buffers beside its LSTM was told it held
    attn-export's own weights; only a state_dict of our model's parts is (``model.STATE_PARTS``)."""
    state = _state(ScoreAndHead(), mean=torch.zeros(F), std=torch.ones(F))
    line = _error(tmp_path, state, capsys=capsys)
    assert "attn-export's own model weights" not in line and "no layout fits" in line and "mean (6,)" in line


@pytest.mark.parametrize("kwargs", [{}, {"attention": "additive", "query": "learned"}, {"attention": "additive"},
                                    {"conv_channels": (4,), "conv_kernel_sizes": (3,), "head": "none"}])
def test_state_parts_names_every_part_of_the_model(kwargs: dict) -> None:
    from attn_export.config import ModelConfig
    from attn_export.model import STATE_PARTS

    model = AttentionLSTM(ModelConfig(**kwargs), input_size=F, num_outputs=C)
    assert {k.split(".", 1)[0] for k in model.state_dict()} <= STATE_PARTS


class MlpHead(nn.Module):
    """A score and a two-Linear head (Linear, ReLU, Linear), which the model does not have: with a one-output
    head its shapes are W, v and a binary head; with a hidden width of D, W, a v of shape (1, D) and a head."""

    def __init__(self, width: int, outputs: int) -> None:
        super().__init__()
        self.lstm = nn.LSTM(F, H, batch_first=True)
        self.attention = nn.Linear(H, 1)
        self.fc1 = nn.Linear(H, width)
        self.fc2 = nn.Linear(width, outputs)


@pytest.mark.parametrize("width, outputs, reads", [
    (16, 1, "fc1 + fc2 as an additive score and attention as a one-output head; the same shapes are a score "
            "attention and a two-Linear head fc1 -> fc2"),
    (H, C, "fc1 + attention as an additive score and fc2 as the head; the same shapes are a score attention and "
           "a two-Linear head fc1 -> fc2, or a projection fc1 that the score attention and the context both read"),
])
def test_a_score_and_a_two_linear_head_is_not_read_as_an_additive_score(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], width: int, outputs: int, reads: str) -> None:
    """Found by attacking: the first was imported as W ``fc1``, v ``fc2`` and a binary head ``attention``, exit 0,
    and verify passed it (every decision of the user's module flipped): the shapes alone fit one reading."""
    line = _error(tmp_path, _state(MlpHead(width, outputs)), capsys=capsys)
    assert f"the one layout that fits reads {reads}, which the model does not have" in line, line
    assert "--map" in line


def test_an_additive_score_with_a_one_output_head_is_read_once_mapped_or_by_its_v(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """With a Linear v its shapes are also a score and a two-Linear head, in whatever order a module made them
    (found by review: a module making its MLP head before its score stores them as W, v, head), so --map says
    which; so does a v that is a loose parameter, whose one-output head is also a score beside a head and a
    tensor of something else (found by attacking)."""
    from safetensors.torch import save_file

    torch.manual_seed(9)
    user = Additive(v_as_parameter=False)
    user.classifier = nn.Linear(H, 1)
    torch.save(user.state_dict(), tmp_path / "user.pt")
    assert main(["load", str(tmp_path / "user.pt"), str(tmp_path / "art")]) == 2
    assert "the same shapes are a score classifier and a two-Linear head W -> v" in capsys.readouterr().err
    model, summary = _load(user, tmp_path, "classifier=head")
    _assert_same(user, model)
    assert "head 'classifier' binary" in summary
    mlp_first = nn.Module()  # an MLP head made before its score: stored as W, v, head would be
    mlp_first.lstm, mlp_first.fc1, mlp_first.fc2 = nn.LSTM(F, H, batch_first=True), nn.Linear(H, 16), nn.Linear(16, 1)
    mlp_first.attention = nn.Linear(H, 1)
    torch.save(mlp_first.state_dict(), tmp_path / "mlp_first.pt")
    assert main(["load", str(tmp_path / "mlp_first.pt"), str(tmp_path / "mlp_first")]) == 2
    assert "a score attention and a two-Linear head fc1 -> fc2" in capsys.readouterr().err
    loose = Additive(v_as_parameter=True)  # a loose v: also a score, a head and a tensor of something else
    loose.classifier = nn.Linear(H, 1)
    save_file(loose.state_dict(), str(tmp_path / "loose.safetensors"))
    assert main(["load", str(tmp_path / "loose.safetensors"), str(tmp_path / "loose")]) == 2
    assert "a score classifier, a head W and v a tensor of something else" in capsys.readouterr().err
    assert main(["load", str(tmp_path / "loose.safetensors"), str(tmp_path / "loose"), "--map", "classifier=head"]) == 0
    _assert_same(loose, load_model(tmp_path / "loose")[0])


def test_conv_orders_are_searched_without_trying_every_permutation() -> None:
    """Found by review: with no order that chains, the search tried every permutation of the same-channel convs
    (17 s for ten, ten times longer for each more); sets of convs that led nowhere are not tried again."""
    from attn_export.load import _chains, _Part

    def conv(cin: int, cout: int) -> _Part:
        return _Part("c", "conv", {"weight": torch.zeros(cout, cin, 3)})

    assert _chains([conv(8, 8) for _ in range(14)] + [conv(8, 5)], lstm_input=8) == []
    two = [conv(F, 8), conv(8, 8), conv(8, 8)]
    assert len(_chains(two, lstm_input=8)) == 2  # the two equal ones swap: the order is open
    assert [c.weight.shape[1] for c in _chains([conv(8, 7), conv(F, 8)], lstm_input=7)[0]] == [F, 8]


class EqualConvs(nn.Module):
    """Two Conv1d layers with the same channels: their order cannot be read from their shapes."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv1d(F, F, 5, padding=2), nn.Conv1d(F, F, 3, padding=1)
        self.lstm = nn.LSTM(F, H, batch_first=True)
        self.att = nn.Linear(H, 1)
        self.out = nn.Linear(H, C)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = torch.relu(self.conv2(torch.relu(self.conv1(x.transpose(1, 2))))).transpose(1, 2)
        out, _ = self.lstm(h)
        weights = torch.softmax(self.att(out), dim=1)
        return self.out((weights * out).sum(1)), weights.squeeze(-1)


def test_a_safetensors_files_convs_run_in_the_order_their_channels_chain(tmp_path: Path,
                                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """Found by attacking: safetensors returned the keys in an order that changed between runs, and load took
    the Conv1d layers in that order (one run in eight a different model, exit 0). Channels that chain one way
    give that order; equal ones are refused until --map orders them; an upper-case suffix is safetensors too."""
    from safetensors.torch import save_file

    torch.manual_seed(10)
    chained = ConvBidirectional()  # F -> 8 -> 7 -> LSTM: one order
    save_file({k: v.contiguous() for k, v in chained.state_dict().items()}, str(tmp_path / "chained.SAFETENSORS"))
    assert main(["load", str(tmp_path / "chained.SAFETENSORS"), str(tmp_path / "chained")]) == 0, capsys.readouterr()
    _assert_same(chained, load_model(tmp_path / "chained")[0])
    equal = EqualConvs()
    save_file(equal.state_dict(), str(tmp_path / "equal.safetensors"))
    assert main(["load", str(tmp_path / "equal.safetensors"), str(tmp_path / "equal")]) == 2
    assert "2 Conv1d layers whose channels chain in more than one order" in capsys.readouterr().err
    assert main(["load", str(tmp_path / "equal.safetensors"), str(tmp_path / "equal"), "--map", "conv1=conv.0",
                 "--map", "conv2=conv.1"]) == 0
    _assert_same(equal, load_model(tmp_path / "equal")[0])


class _RunsCode:
    def __reduce__(self) -> tuple:
        import os

        return os.system, ("true",)


def test_a_file_where_the_directory_goes_is_said_to_be_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    torch.save(_state(ScoreAndHead()), tmp_path / "user.pt")
    (tmp_path / "afile").write_text("mine")
    assert main(["load", str(tmp_path / "user.pt"), str(tmp_path / "afile")]) == 2
    assert capsys.readouterr().err.strip() == (f"Error: {tmp_path / 'afile'} exists and is not a directory; "
                                               "expected a directory to write the artefacts into (new, or an "
                                               "artefact directory)")
    assert (tmp_path / "afile").read_text() == "mine"


def test_a_pickle_that_would_run_code_is_named_and_never_run(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    """Found by attacking: torch 2.13 words a blocked function differently, and load quoted its advice to turn
    weights_only off. The function is named now, as an object is."""
    state = {"state_dict": _state(ScoreAndHead()), "extra": _RunsCode()}
    line = _error(tmp_path, state, capsys=capsys)
    assert "needs unpickling of the Python object" in line and ".system, which attn-export refuses" in line, line
    assert "weights_only" not in line


class _Layers(nn.Module):
    """An LSTM of F features and H units, and the given modules after it, in order."""

    def __init__(self, before: nn.Module | None = None, **after: nn.Module) -> None:
        super().__init__()
        if before is not None:
            self.features = before
        self.lstm = nn.LSTM(F if before is None else 6, H, batch_first=True)
        for name, module in after.items():
            setattr(self, name, module)


class _LearnedQuery(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.key = nn.Linear(H, 7)
        self.query = nn.Parameter(torch.randn(7))


@pytest.mark.parametrize("module, said", [
    # a dot-product score over a projection: q . (W h + b) / sqrt(A), no tanh
    (lambda: _Layers(pool=_LearnedQuery(), fc=nn.Linear(H, C)),
     "pool.key + pool.query as an additive score, v . tanh(W h + b); but pool.query is named as a query"),
    # Sequential(Linear, Linear): nothing runs between them
    (lambda: _Layers(attention=nn.Sequential(nn.Linear(H, 5), nn.Linear(5, 1)), fc=nn.Linear(H, C)),
     "attention.0 + attention.1 as an additive score, v . tanh(W h + b); but they are consecutive members of one "
     "nn.Sequential (or nn.ModuleList): in a Sequential nothing runs between them"),
    (lambda: _Layers(attention=nn.Linear(H, 1), norm=nn.LayerNorm(H), fc=nn.Linear(H, C)),
     f"norm is a normalisation layer or a PReLU (LayerNorm, BatchNorm, RMSNorm: weight ({H},), bias ({H},)), which "
     "attn-export's model does not have"),
    (lambda: _Layers(attention=nn.Linear(H, 1), bn=nn.BatchNorm1d(H), fc=nn.Linear(H, C)), "bn is a normalisation"),
    # a weight alone, known by its name (found by review: ``rmsnorm`` fell to "--map NAME=none")
    (lambda: _Layers(attention=nn.Linear(H, 1), rmsnorm=nn.LayerNorm(H, bias=False), fc=nn.Linear(H, C)),
     "rmsnorm is a normalisation layer"),
])
def test_a_layout_that_computes_another_model_is_refused_not_imported(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], module: Any, said: str) -> None:
    """Found by attacking with one's own modules: each was imported (exit 0, verify PASSED) as a model that
    computes something else: a learned query's dot product read as an additive score with a tanh, two
    Linears with nothing between them read with a tanh between, and a
    LayerNorm left out at the refusal's own suggestion (--map norm=none). Now each is one line, exit 2, that
    suggests nothing that would drop a part the model runs."""
    torch.manual_seed(3)
    line = _error(tmp_path, _state(module()), capsys=capsys)
    assert said in line, line
    assert "=none" not in line or "normalisation" not in line


def test_integer_buffers_are_no_weights_and_degenerate_sizes_are_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Found by attacking: an int64 ``classes`` buffer was given a role (v, at load's own suggested --map);
    an LSTM of 0 features was a traceback; a head of 0 outputs was written, then refused by every command."""
    torch.manual_seed(3)
    model = ScoreAndHead()
    state = _state(model, classes=torch.arange(C), mask=torch.ones(H, dtype=torch.bool))
    torch.save(state, tmp_path / "user.pt")
    assert main(["load", str(tmp_path / "user.pt"), str(tmp_path / "art")]) == 0
    said = capsys.readouterr()
    assert "left out classes and mask (integers or booleans: no weights)" in said.out + said.err
    # but an integer tensor named as a weight was dropped, the model imported without it (found by attacking)
    for key in ("fc.bias", "lstm.weight_hh_l0", "attention.weight"):
        (tmp_path / key).mkdir()
        integers = {**model.state_dict(), key: model.state_dict()[key].round().to(torch.int64)}
        line = _error(tmp_path / key, integers, capsys=capsys)
        assert f"{key} is {_shape(integers[key])} of int64, integers where a weight belongs; expected floating-point " \
               "weights" in line, line
    (tmp_path / "z").mkdir()
    (tmp_path / "e").mkdir()
    zero = {**model.state_dict(), "lstm.weight_ih_l0": torch.zeros(4 * H, 0)}
    assert "an LSTM of 0 input features; expected at least one" in _error(tmp_path / "z", zero, capsys=capsys)
    empty = {**model.state_dict(), "fc.weight": torch.zeros(0, H), "fc.bias": torch.zeros(0)}
    assert f"the head fc is (0, {H}): 0 outputs; expected at least one" in _error(tmp_path / "e", empty, capsys=capsys)


def test_two_conv1d_of_a_module_list_load_as_before(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Found by review: refusing two Conv1d stored as consecutive members (``convs.0``, ``convs.1``) also refused
    an nn.ModuleList, whose loop usually runs a ReLU between them, as the model does: they load."""
    torch.manual_seed(3)
    user = _Layers(nn.ModuleList([nn.Conv1d(F, 6, 3, padding=1), nn.Conv1d(6, 6, 3, padding=1)]),
                   attention=nn.Linear(H, 1), fc=nn.Linear(H, C))
    torch.save(user.state_dict(), tmp_path / "user.pt")
    assert main(["load", str(tmp_path / "user.pt"), str(tmp_path / "art")]) == 0, capsys.readouterr().err


def test_load_refuses_to_replace_the_checkpoint_it_reads(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Found by attacking: ``load DIR/model.safetensors DIR`` (a user's own file where the output goes)
    replaced it with the imported model's renamed weights, exit 0: the user's names and extra tensors gone."""
    from safetensors.torch import save_file

    art = tmp_path / "art"
    art.mkdir()
    save_file(_state(ScoreAndHead()), str(art / "model.safetensors"))
    before = (art / "model.safetensors").read_bytes()
    assert main(["load", str(art / "model.safetensors"), str(art)]) == 2
    err = capsys.readouterr().err
    assert err.strip() == (f"Error: {art / 'model.safetensors'} is {art}'s model.safetensors, which load would replace "
                           f"with the model it imports (its own names, nothing else kept); expected the checkpoint "
                           f"outside {art}, or another directory to load into"), err
    assert (art / "model.safetensors").read_bytes() == before
    assert sorted(p.name for p in art.iterdir()) == [".attn-export.lock", "model.safetensors"]  # the lock: its own


def test_a_recipes_train_table_is_neither_applied_nor_recorded(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    """Found by attacking: a recipe's [train] min_test_accuracy = 0.99 was recorded in model.json as the
    loaded model's floor, which nothing applied (verify PASSED at 0.26), while --set train.* is refused. The
    recipe's [train] now says so and stays out of model.json."""
    from attn_export.config import TrainConfig

    (tmp_path / "r.toml").write_text("[train]\nmin_test_accuracy = 0.99\nepochs = 3\n")
    assert main(["load", str(_save(ScoreAndHead(), tmp_path / "user.pt")), str(tmp_path / "art"),
                 "--recipe", str(tmp_path / "r.toml")]) == 0
    err = " ".join(capsys.readouterr().err.split())
    assert "the recipe's [train] (epochs, min_test_accuracy) is not applied to a loaded model (recorded as the " \
           "defaults)" in err
    recorded = json.loads((tmp_path / "art" / "model.json").read_text())["recipe"]["train"]
    assert recorded["min_test_accuracy"] == TrainConfig().min_test_accuracy and recorded["epochs"] == TrainConfig().epochs


def test_named_data_that_cannot_be_read_is_refused_not_left_for_later(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """Found by attacking: ``--set data.train=later.npz`` for a file not made yet loaded with classes 0..2, exit
    0; made later with labels cat/dog/eel, verify passed it and predict refused its labels as not the model's."""
    line = _error(tmp_path, _state(ScoreAndHead()), "--set", "data.name=files", "--set",
                  f"data.train={tmp_path / 'later.npz'}", capsys=capsys)
    assert line == f"Error: {tmp_path / 'later.npz'}: cannot read: no such file; expected an .npz archive", line


def test_a_broadcast_view_cannot_make_load_ask_for_gigabytes(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """Found by attacking: a 7 KB checkpoint holding ``torch.zeros(1).expand(100000, 100000)`` made load ask
    for 40 GB ("this process ran out of memory ... expected more memory", exit 3). What its tensors claim is
    bounded as the file is, before any is read whole."""
    line = _error(tmp_path, _state(ScoreAndHead(), junk=torch.zeros(1).expand(100000, 100000)), capsys=capsys)
    assert "its tensors claim" in line and "('junk', shape (100000, 100000), alone 40,000,000,000)" in line, line


def test_attn_exports_own_weights_behind_dataparallels_prefix_are_named_as_ours(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Found by attacking: with a ``module.`` prefix, our own weights got "no layout fits mean, std, ...", whose
    hint (--map mean=none) imported them without their normalisation."""
    from attn_export.config import ModelConfig

    ours = AttentionLSTM(ModelConfig(hidden_size=H), input_size=F, num_outputs=C)
    line = _error(tmp_path, {f"module.{k}": v for k, v in ours.state_dict().items()}, capsys=capsys)
    assert "holds attn-export's own model weights" in line, line


def test_load_over_another_models_directory_names_what_describes_the_earlier_model(tmp_path: Path) -> None:
    """Found by attacking: load over a directory with another model's report.md said nothing, and the report
    read PASSED for weights that were gone; load says what train says."""
    art = tmp_path / "art"
    assert cli("load", str(_save(ScoreAndHead(), tmp_path / "a.pt")), str(art)).returncode == 0
    (art / "report.md").write_text("Verification PASSED\n")
    (art / "metrics.json").write_text("{}")  # a trained model's: load writes none, so it is the earlier one's
    torch.manual_seed(1)
    again = cli("load", str(_save(ScoreAndHead(), tmp_path / "b.pt")), str(art))
    assert again.returncode == 0, again.stderr
    assert "note: metrics.json, report.md describe the earlier model, not this one" in " ".join(again.stderr.split())
