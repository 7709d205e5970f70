"""``attn-export train``: train the recipe's model into an artefact directory."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from ..errors import printable
from .common import (EarlierModel, JsonOpt, OutOpt, PathsArg, RecipeOpt, SetOpt, console, print_json, recipe,
                     recipe_and_directory)

NAME = "train"


def command(
    paths: PathsArg = None,
    recipe_file: RecipeOpt = None,
    out: OutOpt = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Training seed (overrides train.seed).")] = None,
    overrides: SetOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Train an AttentionLSTM (no recipe: the built-in quickstart task) and save it in DIR."""
    recipe_file, directory = recipe_and_directory(paths, recipe_file, out)
    r = recipe(recipe_file, overrides, seed)
    before = EarlierModel(directory)
    from ..train import BelowFloor

    try:
        metrics = run_training(r, directory, quiet=json_out)
    except BelowFloor as e:
        if json_out:
            print_json(e.metrics)
        raise
    if json_out:
        print_json(metrics)
    before.say_left()  # on stderr under --json too (found by attacking: it was lost there)


class TrainingBar:
    """A rich progress bar on stderr fed by ``train``'s ``on_epoch``. It starts with the first finished
    epoch, so that a recipe or data error found before training (a malformed file, a single-class data
    set) leaves stderr with just the one ``Error:`` line; ``finish`` says how training ended."""

    def __init__(self, epochs: int, quiet: bool = False) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.epochs = epochs
        err = console(stderr=True)
        # no bar where stderr is not a terminal, as every other command's (found by attacking: its last frame
        # stayed in logs and pipes, a second stderr line beside an error)
        self.progress = Progress(TextColumn("train"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[stats]}"), TimeElapsedColumn(),
                                 console=err, disable=quiet or not err.is_terminal, transient=False)
        self.task: Any = None

    def on_epoch(self, s: Any) -> None:
        if self.task is None:
            self.progress.start()
            self.task = self.progress.add_task("train", total=self.epochs, stats="")
        m = s.monitored
        stats = f"loss {s.train_loss:.4f}  {m} loss {s.val_loss:.4f}  {m} acc {s.val_accuracy:.3f}" + (
            "  (no validation split)" if m == "train" else "")
        self.progress.update(self.task, completed=s.epoch, stats=stats + ("  *" if s.best else ""))

    def stop(self, metrics: dict[str, Any] | None = None) -> None:
        """End the bar; after early stopping it stays at epochs run / epochs planned and says why."""
        if self.task is None:
            return
        if metrics and metrics.get("stopped_early"):
            self.progress.update(self.task, stats=f"stopped early: {_early_stop(metrics)}")
        self.progress.stop()
        self.task = None


def _early_stop(metrics: dict[str, Any]) -> str:
    waited = metrics["epochs"] - metrics["best_epoch"]
    split = "training" if metrics.get("monitored") == "train" else "validation"
    return f"no better {split} loss for {waited} epoch{'s' * (waited != 1)}, kept epoch {metrics['best_epoch']}"


def _channels_first(metrics: dict[str, Any], directory: Path) -> str:
    """A note where an ``.npz``'s sequences are all one length, fewer steps than features: read as ``[N, T, F]``,
    sktime's and aeon's numpy3D layout (``[N, C, T]``, channels first) trains transposed, exit 0 (found by
    attacking). A note, not a refusal: a short sequence of many features is a real layout too."""
    from ..runtime import store

    path = str(((metrics.get("data_files") or {}).get("train") or {}).get("path", ""))
    if not path.lower().endswith(".npz"):  # as the data reader takes the suffix (review)
        return ""
    info = store.Store(directory).model()
    lengths = info.train_lengths or {}
    if not lengths or lengths.get("min") != lengths.get("max") or not 0 < lengths["max"] < info.spec.features:
        return ""
    return (f"\nnote: every training sequence is {lengths['max']} steps of {info.spec.features} features, fewer steps than "
            f"features: if x is channels first ([N, channels, steps], sktime's and aeon's numpy3D), transpose it "
            "(x.transpose(0, 2, 1)) and train again")


def summary(metrics: dict[str, Any], directory: Path) -> str:
    from ..report import majority_baseline

    test = metrics["test"]
    baseline = majority_baseline(metrics)
    scored = (f"test accuracy {test['accuracy']:.4f} (loss {test['loss']:.4f}"
              + (f"; always deciding {baseline.which()}, {printable(baseline.label, 40)}: {baseline.accuracy:.4f})"
                 if baseline else ")")
              if metrics["sizes"]["test"] else "no test accuracy (the test split is empty)")
    ran = (f"stopped early after {metrics['epochs']} of {metrics['epochs_planned']} epochs ({_early_stop(metrics)})"
           if metrics.get("stopped_early") else
           f"after {metrics['epochs']} epoch{'s' * (metrics['epochs'] != 1)}, best epoch {metrics['best_epoch']}")
    line = f"{scored} {ran}, {metrics['wall_seconds']:.1f} s -> {directory}"
    filled = metrics.get("filled") or {}
    if filled:  # as predict says its own (found by attacking: 39 % of a file's values filled, said nowhere)
        files = metrics.get("data_files") or {}
        line += "\nnote: " + "; ".join(
            f"{n:,} missing value(s) in the {role} file {printable(files.get(role, {}).get('path', ''))}"
            for role, n in filled.items()) + " filled by the recipe's [data] missing"
    shared = metrics.get("test_in_train") or 0
    if shared:
        line += (f"\nnote: {shared:,} of {metrics['sizes']['test']:,} test sequences are equal to training ones: the test "
                 "accuracy is not wholly held out (a test file inside the training one?)")
    line += _channels_first(metrics, directory)
    constant = metrics.get("constant_features") or []
    if constant:
        line += (f"\nnote: {', '.join(printable(c, 40) for c in constant[:5])}{' ...' if len(constant) > 5 else ''} barely moved in "
                 f"training (std <= 1e-6 of max(|mean|, 1)): centred, not scaled, so a change at inference stays "
                 f"a change of its own size; if {'they carry' if len(constant) > 1 else 'it carries'} a real signal "
                 "(a small spread on a large offset), subtract the offset or rescale before training, since "
                 "float32 barely resolves such a spread")
    return line



def run_training(r: Any, directory: Path, quiet: bool = False) -> dict[str, Any]:
    """Train with a progress bar on stderr; returns metrics.json's contents (an empty split's accuracy NaN,
    which the JSON writers make null)."""
    from ..config import refuse_untrainable_head
    from ..data import load_splits, refuse_unread_data_keys

    refuse_untrainable_head(r)  # before the data, whose refusal would be about labels
    refuse_unread_data_keys(r.data)  # the recipe's mistake before the data's (review)
    splits = load_splits(r.data)  # bad data is one line before torch is imported (seconds)
    from ..train import train

    bar = TrainingBar(r.train.epochs, quiet)
    metrics: dict[str, Any] = {}
    try:
        metrics = train(r, directory, on_epoch=bar.on_epoch, splits=splits)
    finally:
        bar.stop(metrics)
    if not quiet:
        console(stderr=True).print(summary(metrics, directory))
    return metrics
