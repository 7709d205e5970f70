"""``attn-export train``: train the recipe's model into an artefact directory."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from .common import DirArg, JsonOpt, RecipeOpt, SetOpt, console, print_json, recipe

NAME = "train"


def command(
    directory: DirArg = Path("artifacts"),
    recipe_file: RecipeOpt = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Training seed (overrides train.seed).")] = None,
    overrides: SetOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Train an AttentionLSTM (no recipe: the built-in quickstart task) and save it in DIR."""
    r = recipe(recipe_file, overrides, seed)
    metrics = run_training(r, directory, quiet=json_out)
    if json_out:
        print_json(metrics)


def run_training(r: Any, directory: Path, quiet: bool = False) -> dict[str, Any]:
    """Train with a rich progress bar on stderr; returns metrics.json's contents.

    The bar starts with the first finished epoch, so that a recipe or data error found before training
    (a malformed file, a single-class data set) leaves stderr with just the one ``Error:`` line.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from ..train import EpochStats, train

    out = console(stderr=True)
    progress = Progress(
        TextColumn("train"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[stats]}"),
        TimeElapsedColumn(),
        console=out,
        disable=quiet,
        transient=False,
    )
    task: list[Any] = []  # the bar's task, once the first epoch has finished

    def on_epoch(s: EpochStats) -> None:
        if not task:
            progress.start()
            task.append(progress.add_task("train", total=r.train.epochs, stats=""))
        stats = f"loss {s.train_loss:.4f}  val loss {s.val_loss:.4f}  val acc {s.val_accuracy:.3f}"
        progress.update(task[0], completed=s.epoch, stats=stats + ("  *" if s.best else ""))

    try:
        metrics = train(r, directory, on_epoch=on_epoch)
        if task:
            progress.update(task[0], total=metrics["epochs"])
    finally:
        if task:
            progress.stop()
    if not quiet:
        test = metrics["test"]
        out.print(
            f"test accuracy {test['accuracy']:.4f} (loss {test['loss']:.4f}) after {metrics['epochs']} epochs, "
            f"best epoch {metrics['best_epoch']}, {metrics['wall_seconds']:.1f} s -> {directory}"
        )
    return metrics
