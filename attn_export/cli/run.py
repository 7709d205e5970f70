"""``attn-export run``: every stage this machine can do, driven by one recipe (``attn_export.run``,
printed). Exit 1 when verification fails, after everything, the report included, is written.
"""

from __future__ import annotations

from typing import Annotated, Any

from ..pipeline import BENCH_SECONDS, Stage
from .common import OutOpt, PathsArg, RecipeOpt, SetOpt, StageBar, console, recipe, recipe_and_directory, seconds_option

NAME = "run"


def command(
    paths: PathsArg = None,
    recipe_opt: RecipeOpt = None,
    out_opt: OutOpt = None,
    overrides: SetOpt = None,
    bench_seconds: Annotated[float, seconds_option("--bench-seconds", "bench's timing budget per shape, 0.05 to "
                                                                      "600.")] = BENCH_SECONDS,
) -> None:
    """Run the whole pipeline this machine can do: train, export, quantize, build, verify, bench, report."""
    from ..pipeline import run
    from . import bench, quantize, train, verify

    recipe_file, out = recipe_and_directory(paths, recipe_opt, out_opt)
    r = recipe(recipe_file, overrides)
    out_console = console(stderr=True)
    bar = train.TrainingBar(r.train.epochs)
    details = {"train": lambda m: out_console.print(train.summary(m, out)),
               "quantize": lambda reports: quantize.show(out, reports),
               "verify": lambda result: out_console.print(verify.table(result, out)),
               "bench": lambda result: bench.show(out, result, 1)}

    stage_bar = StageBar("")

    def on_progress(name: str, what: str, done: int, total: int) -> None:
        stage_bar.stage = name
        stage_bar(what, done, total)

    def show(stage: Stage) -> None:
        stage_bar.stop()
        if stage.name == "train":
            bar.stop(stage.result)
        if stage.name in details:
            details[stage.name](stage.result)
        stage_line(out_console, stage)

    def start() -> None:  # a terminal's header: in a log it was a second line beside a refusal of the data
        if out_console.is_terminal:
            out_console.rule(f"attn-export run {recipe_file or '(built-in quickstart)'} -> {out}")

    try:
        # a --set verify.* is in the recipe train records, which verify reads: given to verify again, it was
        # refused as changing nothing (found by attacking: every such run stopped at verify, exit 2)
        result = run(r, out, bench_seconds, on_stage=show, on_epoch=bar.on_epoch, on_progress=on_progress,
                     on_start=start)
    finally:
        stage_bar.stop()
        bar.stop()
    _summary(out_console, result.stages)
    if result.verify is not None:
        verify.raise_if_failed(result.verify)


def stage_line(out_console: Any, stage: Stage) -> None:
    """A stage's outcome as a rule across the console; one too long for it (the files an earlier model left,
    say) goes whole on the lines below the stage's rule, never cut short with an ellipsis."""
    from rich.text import Text

    title = f"{stage.name}: {stage.summary}"
    if len(title) + 8 <= out_console.width:
        out_console.rule(Text(title))
    else:
        out_console.rule(Text(stage.name))
        out_console.print(title, overflow="fold", markup=False)


def _summary(out_console: Any, stages: list[Stage]) -> None:
    from rich.table import Table

    t = Table(title="attn-export run: summary")
    for col in ("stage", "seconds", "result"):
        t.add_column(col, justify="right" if col == "seconds" else "left", overflow="fold")
    for stage in stages:
        t.add_row(stage.name, f"{stage.seconds:.1f}", stage.summary)
    out_console.print(t)
