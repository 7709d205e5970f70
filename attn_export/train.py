"""Training: seeded AdamW with a validation split and early stopping on validation loss.

    attn-export train [DIR] [--recipe FILE] [--seed N] [--set section.key=value]

Deterministic on the CPU for a given recipe and seed. Writes model.safetensors, model.json and
metrics.json into DIR; the best epoch's weights (lowest validation loss) are the ones kept.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .checkpoint import save_model
from .config import (
    ADDITIVE_ONLY,
    ModelConfig,
    Recipe,
    TrainConfig,
    as_recipe,
    refuse_untrainable_head,
)
from .data import Normalization, SequenceSet, Splits, load_splits, pad, refuse_unread_data_keys
from .errors import ConfigError, WorkFailed
from .model import AttentionLSTM, torch_threads
from .runtime import store
from .runtime.limits import check_memory

__all__ = ["BelowFloor", "EpochStats", "evaluate", "train"]

EVAL_BATCH = 256  # sequences in one evaluation batch, at most; EVAL_BYTES bounds its padded cells too
EVAL_BYTES = 256 << 20  # an evaluation batch's activations, at most (one longer sequence runs alone)


def cell_bytes(config: ModelConfig, input_size: int, grad: bool) -> int:
    """Bytes one padded (sequence, step) cell of a batch takes in training (``grad``: a forward and backward
    pass) or in evaluation (a no-grad forward), in float32s: per hidden unit, layer and direction 16 (3), per
    Conv1d output channel 6 (2.5), per additive attention unit 3 (2), per input feature 5 (2), and 128 (64)
    more. Fitted to peak RSS on torch 2.13's CPU LSTM, B x T of 16 x 3000 to 256 x 500: hidden 16 to 128,
    one or two layers, either direction, Conv1d front-ends of 32 to 1024 channels, additive attention of 64
    to 1024, inputs of 6 to 1024 features (found by review and attacking: conv, attention and wide inputs had
    been counted once, 1.6x to 1.9x under). What the weights take is ``weight_bytes``."""
    units = config.hidden_size * (2 if config.bidirectional else 1) * config.num_layers
    conv = sum(config.conv_channels)
    attention = config.attention_dim if config.attention == "additive" else 0
    floats = (16 * units + 6 * conv + 3 * attention + 5 * input_size + 128 if grad else
              3 * units + 2.5 * conv + 2 * attention + 2 * input_size + 64)
    return int(4 * floats)


def weight_bytes(config: ModelConfig, input_size: int, grad: bool) -> int:
    """Bytes the model's weights hold whatever the batch: the weights and, in training, their gradients, the
    optimiser's two moments and the Conv1d weight gradients' workspace, 10 float32s per weight (measured: a
    Conv1d of kernel 1023 over 64 channels took 589 MiB at 2 x 2000 steps, which no per-step count sees)."""
    weights, width = 0, input_size
    for channels, kernel in zip(config.conv_channels, config.conv_kernel_sizes):
        weights += channels * (width * kernel + 1)
        width = channels
    directions = 2 if config.bidirectional else 1
    for _ in range(config.num_layers):
        weights += directions * 4 * config.hidden_size * (width + config.hidden_size + 2)
        width = directions * config.hidden_size
    if config.attention == "additive":
        weights += config.attention_dim * (2 * width + 2)
    return 4 * weights * (10 if grad else 2)


def _eval_batches(data: SequenceSet, per_cell: int) -> list[np.ndarray]:
    """``data``'s indices by length (similar lengths together: less padding) in batches of at most
    EVAL_BATCH sequences whose padded cells take at most EVAL_BYTES (found by measuring: 256 sequences in one
    no-grad batch took about 1.7x the memory of a training batch of 32 of the same length)."""
    order = np.argsort(data.lengths, kind="stable")
    batches, start = [], 0
    while start < data.n:
        end = start + 1
        while end < min(start + EVAL_BATCH, data.n) and (end + 1 - start) * int(data.lengths[order[end]]) * per_cell \
                <= EVAL_BYTES:
            end += 1
        batches.append(order[start:end])
        start = end
    return batches


def check_training_memory(config: ModelConfig, splits: Splits, batch_size: int) -> None:
    """NotAvailable (exit 3) before the first epoch when a training batch of the longest sequences, or the
    largest evaluation batch ``_eval_batches`` will make, would not fit in memory: past it the kernel kills
    the process without a word."""
    features = splits.train.features
    rows, longest = min(batch_size, splits.train.n), int(splits.train.lengths.max())
    train = rows * longest * cell_bytes(config, features, True) + weight_bytes(config, features, True)
    per_cell = cell_bytes(config, features, False)
    batches = [(len(b), int(part.lengths[b].max())) for part in (splits.train, splits.val, splits.test) if part.n
               for b in _eval_batches(part, per_cell)]
    sequences, steps = max(batches, key=lambda b: b[0] * b[1])  # (found by attacking: a fixed 256 MiB was asked)
    evaluate = sequences * steps * per_cell + weight_bytes(config, features, False)
    if train >= evaluate:
        check_memory(train, f"training (a batch of {rows} sequence(s) padded to {longest:,} steps, forward and "
                            "backward)", f"a train.batch_size below {rows}, a smaller model, or shorter sequences")
    else:
        check_memory(evaluate, f"evaluating {sequences} sequence(s) of up to {steps:,} steps",
                     "a smaller model or shorter sequences")


@dataclass(frozen=True)
class EpochStats:
    epoch: int
    epochs: int
    train_loss: float
    val_loss: float
    val_accuracy: float
    best: bool
    monitored: str = "val"  # the split whose loss picks the best epoch: "train" when there is no validation split


def resolve_device(name: str) -> torch.device:
    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            from .errors import NotAvailable

            cuda, hip = torch.version.cuda, getattr(torch.version, "hip", None)  # found by attacking: no "expected"
            why = (f"a CUDA {cuda} build with no GPU it can use" if cuda else
                   f"a ROCm {hip} build with no GPU it can use" if hip else "a CPU-only build")
            raise NotAvailable(f"train.device = 'cuda' but torch sees no CUDA device (torch {torch.__version__}: "
                               f"{why}); expected a GPU and a CUDA build of torch, or train.device = 'auto' or "
                               "'cpu'")
        return torch.device("cuda")
    return torch.device("cpu")


def _batch(data: SequenceSet, index: np.ndarray, device: torch.device) -> tuple[torch.Tensor, ...]:
    x, lengths = pad([data.sequences[i] for i in index])
    return (
        torch.from_numpy(x).to(device),
        torch.from_numpy(lengths).to(device),
        torch.from_numpy(data.y[index]).to(device),
    )


def loss_of(logits: torch.Tensor, y: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy over the classes; for a binary head (one logit) binary cross-entropy with the second
    label as the positive class, the usual Linear(H, 1) + BCEWithLogits setup."""
    if logits.shape[1] == 1:
        return nn.functional.binary_cross_entropy_with_logits(logits[:, 0], y.to(logits.dtype), reduction=reduction)
    return nn.functional.cross_entropy(logits, y, reduction=reduction)


def decide(logits: torch.Tensor) -> torch.Tensor:
    """The class each row decides, as ``runtime.iospec.class_logits`` reads logits: argmax, or logit > 0."""
    return (logits[:, 0] > 0).long() if logits.shape[1] == 1 else logits.argmax(1)




@torch.no_grad()
def _decisions(model: AttentionLSTM, data: SequenceSet, device: torch.device | None = None) -> tuple[float, np.ndarray]:
    """The summed loss (``loss_of``) of ``model`` on ``data`` and the class it decides for each sequence, in
    ``data``'s order."""
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    loss_sum, decided = 0.0, np.zeros(data.n, np.int64)
    for rows in _eval_batches(data, cell_bytes(model.config, model.input_size, False)):
        x, lengths, y = _batch(data, rows, device)
        logits, _ = model(x, lengths)
        loss_sum += float(loss_of(logits, y, reduction="sum"))
        decided[rows] = decide(logits).cpu().numpy()
    model.train(was_training)
    return loss_sum, decided


def _scores(data: SequenceSet, loss_sum: float, decided: np.ndarray) -> dict[str, float]:
    """Mean loss and accuracy on ``data`` from ``_decisions``' answer (NaN for an empty split)."""
    if data.n == 0:
        return {"accuracy": float("nan"), "loss": float("nan")}
    return {"accuracy": float((decided == data.y).mean()), "loss": loss_sum / data.n}


def evaluate(model: AttentionLSTM, data: SequenceSet, device: torch.device | None = None) -> dict[str, float]:
    """Mean loss (``loss_of``) and accuracy of ``model`` on ``data``."""
    return _scores(data, *_decisions(model, data, device))


def class_table(splits: Splits, decided: np.ndarray) -> list[dict[str, Any]]:
    """Per class, in label order: its sequences in each split and how many of its test sequences were decided
    right (``decided``: the class decided for each, ``_decisions``'; found by attacking: the report named
    neither, so 0.73 on a test split 70 % one class read as a model that had learnt something)."""
    return [{"label": label, **{name: int((part.y == k).sum()) for name, part in
                                (("train", splits.train), ("val", splits.val), ("test", splits.test))},
             "test_correct": int(((splits.test.y == k) & (decided == k)).sum())}
            for k, label in enumerate(splits.labels)]


def refuse_unread_model_keys(model: ModelConfig, one_layer: str = "with model.num_layers = 1",
                             instead: str = "model.num_layers >= 2, or model.dropout = 0") -> None:
    """A model key the model would not read is refused, not trained past and recorded in model.json as used
    (found by attacking: dropout 0.5 on one layer, a query on a linear score, gave the default's weights).
    ``one_layer`` and ``instead`` word the dropout refusal for the caller (``load``: the weights decide the
    layers)."""
    default = ModelConfig()
    if model.attention == "linear":
        for key in ADDITIVE_ONLY:
            if getattr(model, key) != getattr(default, key):
                raise ConfigError(f"model.{key} = {getattr(model, key)!r} is not read by a linear score "
                                  f"(model.attention = 'linear'); expected model.attention = 'additive', or no "
                                  f"model.{key}")
    if model.dropout and model.num_layers == 1:
        raise ConfigError(f"model.dropout = {model.dropout!r} does nothing {one_layer} (LSTM dropout acts between "
                          f"layers); expected {instead}")


def refuse_training_over_an_import(directory: Path) -> None:
    """ConfigError (exit 2) where ``directory`` holds a model ``load`` imported: training there would replace
    it with the recipe's, and nothing in the directory could bring it back (found by attacking: ``run DIR`` on
    an imported regression model trained the quickstart's classifier over it, exit 0, without a word)."""
    from .errors import AttnExportError

    if not (directory / store.MODEL_JSON).is_file():
        return
    try:
        info = store.Store(directory).info
    except AttnExportError:  # a model.json that cannot be read describes no model to keep: train replaces it
        return
    if info.imported:
        raise ConfigError(f"{directory} holds a model imported by attn-export load (from {info.raw.get('source')}): "
                          "training would replace it with the recipe's; expected another directory for a trained "
                          f"model (or {directory} removed first), or export, quantize and verify to work on the "
                          "imported one")


@store.writes_directory("train")
def train(
    recipe: Recipe | str | os.PathLike[str],
    directory: Path,
    on_epoch: Callable[[EpochStats], None] | None = None,
    splits: Splits | None = None,
) -> dict[str, Any]:
    """Train the recipe's model (a ``Recipe`` or a recipe file's path), save it into ``directory`` and return
    metrics.json's contents."""
    recipe = as_recipe(recipe)
    directory = Path(directory)
    refuse_training_over_an_import(directory)
    refuse_untrainable_head(recipe)
    refuse_unread_model_keys(recipe.model)
    refuse_unread_data_keys(recipe.data)
    cfg = recipe.train
    started = time.perf_counter()
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    splits = splits or load_splits(recipe.data)
    if splits.test.n == 0 and cfg.min_test_accuracy > 0:
        raise ConfigError(
            f"train.min_test_accuracy = {cfg.min_test_accuracy} cannot be checked: the test split is empty; expected "
            "a test file (data.test) or a data.test_fraction that leaves test sequences, or no floor"
        )
    device = resolve_device(cfg.device)
    with torch_threads(1 if device.type == "cpu" else None):  # also keeps runs reproducible
        return _train(recipe, directory, on_epoch, splits, device, started, rng)


def _train(
    recipe: Recipe,
    directory: Path,
    on_epoch: Callable[[EpochStats], None] | None,
    splits: Splits,
    device: torch.device,
    started: float,
    rng: np.random.Generator,
) -> dict[str, Any]:
    cfg = recipe.train

    if device.type == "cpu":  # the estimate is the CPU LSTM's; on a GPU the activations live in its memory
        check_training_memory(recipe.model, splits, cfg.batch_size)
    norm = Normalization.from_sequences(splits.train.sequences, splits.features)
    binary = recipe.model.head == "binary"
    if binary and len(splits.labels) != 2:
        raise ConfigError(f"model.head = 'binary' needs two labels; the data has {len(splits.labels)} "
                          f"({', '.join(splits.labels[:6])}{' ...' if len(splits.labels) > 6 else ''}): expected "
                          "head = 'classification' for more")
    model = AttentionLSTM(
        recipe.model, splits.train.features, 1 if binary else len(splits.labels), norm.mean.tolist(),
        norm.std.tolist()
    ).to(device)
    optimiser = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    # early stopping watches validation loss; with no validation split, the training loss
    monitor = splits.val if splits.val.n else splits.train

    best_loss, best_state, best_epoch, waited = float("inf"), None, 0, 0
    epochs_run = 0
    for epoch in range(1, cfg.epochs + 1):
        epochs_run = epoch
        model.train()
        order = rng.permutation(splits.train.n)
        total = 0.0
        for start in range(0, len(order), cfg.batch_size):
            x, lengths, y = _batch(splits.train, order[start : start + cfg.batch_size], device)
            logits, _ = model(x, lengths)
            loss = loss_of(logits, y)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip > 0:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimiser.step()
            value = loss.item()
            if not math.isfinite(value):
                raise _diverged(cfg, epoch, value)
            total += value * len(y)
        val = evaluate(model, monitor, device)
        if not math.isfinite(val["loss"]):
            raise _diverged(cfg, epoch, val["loss"])
        improved = val["loss"] < best_loss - 1e-6
        if improved:
            best_loss, best_epoch, waited = val["loss"], epoch, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            waited += 1
        if on_epoch:
            on_epoch(EpochStats(epoch, cfg.epochs, total / splits.train.n, val["loss"], val["accuracy"], improved,
                                "val" if splits.val.n else "train"))
        if waited >= cfg.patience:
            break

    assert best_state is not None  # epochs >= 1, and the first epoch always improves on inf
    model.load_state_dict(best_state)
    model.eval().cpu()
    tested = _decisions(model, splits.test)  # once, for the accuracy and the class table
    metrics: dict[str, Any] = {
        "train": evaluate(model, splits.train),
        "val": evaluate(model, splits.val),
        "test": _scores(splits.test, *tested),
        "epochs": epochs_run,
        "epochs_planned": cfg.epochs,
        # stopped by patience: no improvement of the monitored loss in cfg.patience epochs
        "stopped_early": epochs_run < cfg.epochs,
        "best_epoch": best_epoch,
        "monitored": "val" if splits.val.n else "train",  # whose loss chose best_epoch and stopped early
        "wall_seconds": round(time.perf_counter() - started, 3),
        "seed": cfg.seed,
        "device": str(device),
        "data": splits.source,
        # what verify and quantize compare before they judge on the data again (never on a changed file)
        "data_files": splits.files,
        "filled": splits.filled,  # gaps [data] missing filled, per file read (said by train)
        "test_in_train": splits.shared,  # test sequences equal to training ones (said by train)
        "sizes": {"train": splits.train.n, "val": splits.val.n, "test": splits.test.n},
        "classes": class_table(splits, tested[1]),
        # features with one value in training: centred, scaled by 1 (Normalization), nothing learnt from them
        "constant_features": [splits.features[k] if splits.features else f"feature {k + 1}" for k in norm.constant],
    }
    lengths = splits.train.lengths
    weights_sha = save_model(
        directory,
        model,
        recipe,
        splits.labels,
        command="train",
        source=splits.source,
        train_lengths={"min": int(lengths.min()), "median": int(np.median(lengths)), "max": int(lengths.max())},
        feature_names=splits.features,
    )
    store.write_json(directory / store.METRICS, metrics)  # strict JSON: an empty split's NaN accuracy is null
    store.record(directory, store.METRICS, "train", parent=store.WEIGHTS, parent_sha256=weights_sha)
    accuracy = metrics["test"]["accuracy"]
    if accuracy < cfg.min_test_accuracy:
        raise BelowFloor(
            f"test accuracy {accuracy:.4f} is below the recipe's floor train.min_test_accuracy = "
            f"{cfg.min_test_accuracy} (artefacts were written to {directory} for inspection)", metrics)
    return metrics


class BelowFloor(WorkFailed):
    """Training ended below the recipe's accuracy floor (exit 1); ``metrics``: what it wrote to metrics.json,
    which ``train --json`` prints as it does on success (found by attacking: stdout was empty, as verify's is
    not when it fails)."""

    def __init__(self, message: str, metrics: dict[str, Any]) -> None:
        super().__init__(message)
        self.metrics = metrics


def _diverged(cfg: TrainConfig, epoch: int, loss: float) -> WorkFailed:
    """A non-finite loss: the weights are lost, and a smaller step (or clipping) is what helps."""
    fixes = [f"a smaller train.lr than {cfg.lr:g}"]
    if cfg.weight_decay > 0.01:  # decoupled decay shrinks weights by lr * weight_decay a step: large, it too diverges
        fixes.append(f"a smaller train.weight_decay than {cfg.weight_decay:g}")
    if cfg.grad_clip <= 0:
        fixes.append("train.grad_clip > 0")
    return WorkFailed(f"training diverged at epoch {epoch} (loss {loss:g}); expected " + " or ".join(fixes))


