"""Options and helpers shared by the commands. Imports nothing heavy."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..errors import empty_path

if TYPE_CHECKING:
    from rich.console import Console

    from ..config import Recipe

def path_parser(expected: str) -> Callable[[str], Path]:
    """A path argument's parser: "" is refused (``errors.empty_path``: ``Path("")`` is the current directory,
    into which ``load ... ""`` and ``train ""`` wrote), naming what was ``expected`` instead."""
    def parse(value: str) -> Path:
        problem = empty_path(str(value), expected)
        if problem is not None:
            raise typer.BadParameter(str(problem))
        return Path(value)
    return parse


directory_parser = path_parser("a directory name (. for the current one)")


DirArg = Annotated[
    Path, typer.Argument(help="Artefact directory.", show_default=True, metavar="DIR", parser=directory_parser)
]
RecipeOpt = Annotated[
    Path | None,
    typer.Option("--recipe", help="Recipe TOML file (default: the built-in quickstart task).", dir_okay=False),
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", metavar="SECTION.KEY=VALUE", help="Override a recipe field: section.key=value (repeatable)."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the machine-readable result on stdout.")]
# train and run take their recipe and directory the same way: positionally in either order (a recipe ends
# in .toml), or as --recipe and --out
PathsArg = Annotated[
    list[Path] | None,
    typer.Argument(metavar="[RECIPE.toml] [DIR]", show_default=False,
                   parser=path_parser("a recipe (.toml) or a directory name (. for the current one)"),
                   help="A recipe (.toml) and/or the artefact directory, in either order (default: the built-in "
                        "quickstart task into artifacts).")]


def _seconds(value: str) -> float:
    """A timing budget: a finite number of seconds from 0.05 to 600 (a range check alone lets NaN through
    with a message about its upper bound)."""
    try:
        seconds = float(value)
    except ValueError:
        seconds = float("nan")
    if not 0.05 <= seconds <= 600:
        raise typer.BadParameter(f"{value!r}: expected a number of seconds from 0.05 to 600")
    return seconds


def seconds_option(flag: str, help: str) -> Any:
    return typer.Option(flag, metavar="SECONDS", parser=_seconds, help=help)


def given(ctx: typer.Context, *names: str) -> list[str]:
    """The options among ``names`` (parameter names) the command line gave, as flags: a command refuses one
    that would change nothing rather than ignore it (a default cannot tell ``--threads 1`` from nothing)."""
    flags = {p.name: p.opts[0] for p in ctx.command.params}
    return [flags[n] for n in names if getattr(ctx.get_parameter_source(n), "name", None) == "COMMANDLINE"]


OutOpt = Annotated[Path | None, typer.Option("--out", help="Artefact directory (default: artifacts).",
                                             parser=directory_parser)]


def recipe_and_directory(paths: list[Path] | None, recipe_opt: Path | None, out_opt: Path | None) -> tuple[
        Path | None, Path]:
    """``PathsArg``, ``--recipe`` and ``--out`` as (recipe, directory): one of each at most, a recipe ending in
    .toml, a directory that is not a file; anything else is one line saying the forms both commands take."""
    import os

    from ..config import shown_path
    from ..errors import BadInput

    forms = "expected [RECIPE.toml] [DIR] in either order, or --recipe RECIPE.toml and --out DIR"
    recipe_path, directory = recipe_opt, out_opt
    for path in paths or []:
        # with --recipe given, a name ending in .toml that is no file is the directory (runs/try.toml)
        if path.suffix == ".toml" and not (recipe_opt is not None and not path.is_file()):
            if recipe_path is not None:
                raise BadInput(f"two recipes given ({recipe_path} and {path}); {forms}")
            recipe_path = path
        else:
            if directory is not None:
                # found by attacking: "run japanese-vowels X2" meant the shipped recipe
                meant = [str(c) for p in (directory, path) for c in (p.with_name(p.name + ".toml"),
                                                                     Path("recipes") / f"{p.name}.toml")
                         if not p.is_dir() and c.is_file()]
                raise BadInput(f"two artefact directories given ({directory} and {path}); {forms}"
                               + (f" (a recipe's name ends in .toml: {meant[0]}?)" if meant else ""))
            if path.is_file():
                raise BadInput(f"{path} is a file, not an artefact directory (a recipe's name ends in .toml); {forms}")
            directory = path
    if out_opt is not None and out_opt.is_file():
        raise BadInput(f"--out {out_opt} is a file, not an artefact directory; {forms}")
    if recipe_path is None and directory is not None and out_opt is None and not os.path.lexists(directory):
        recipe_meant = _recipe_meant(directory)
        if recipe_meant is not None:
            raise BadInput(f"{directory} is no recipe and no directory yet; expected a recipe's path, which ends in "
                           f".toml ({shown_path(recipe_meant)}?), or --out {directory} for the built-in quickstart "
                           "in a new directory of that name")
    return recipe_path, directory if directory is not None else Path("artifacts")


def _recipe_meant(directory: Path) -> Path | None:
    """The recipe a lone new DIR names without its .toml: ``DIR.toml`` beside it, or for a bare name, the
    shipped recipe of that name; None where there is none, or where it is the built-in quickstart itself (the
    command then does what was asked). Found by attacking: ``train recipes/japanese-vowels`` trained the
    quickstart into a new directory of that name, exit 0; ``runs/quickstart`` stays a directory (review)."""
    from ..config import SHIPPED_RECIPES, load_recipe
    from ..errors import ConfigError

    beside = directory.with_name(directory.name + ".toml")
    shipped = SHIPPED_RECIPES / beside.name
    for candidate in (beside, shipped if directory.parent == Path(".") else None):
        if candidate is None or not candidate.is_file():
            continue
        try:
            if load_recipe(candidate) == load_recipe(None):
                return None
        except ConfigError:  # a broken recipe was meant all the same
            pass
        return candidate
    return None


class EarlierModel:
    """What an earlier model's commands wrote in ``directory`` (all but the weights' own files), by modification
    time, taken before ``train`` or ``load`` replaces its weights: ``say_left`` then names those still as they
    were (found by attacking: an earlier report.md still read PASSED, and neither command said so)."""

    def __init__(self, directory: Path, writes_metrics: bool = True) -> None:
        from ..runtime.store import DIRECTORY_FILES, LOCK, MANIFEST, METRICS, MODEL_JSON, WEIGHTS, is_engine

        self.directory = directory
        self.weights = self._weights()
        # the command's own files; load writes no metrics.json, so an earlier one is the earlier model's (review)
        own = (MODEL_JSON, WEIGHTS, MANIFEST, LOCK) + ((METRICS,) if writes_metrics else ())
        self.files = {} if not directory.is_dir() else {
            p.name: when for p in sorted(directory.iterdir())
            if (p.name in DIRECTORY_FILES or is_engine(p.name)) and p.name not in own
            and (when := _modified(p)) is not None}

    def _weights(self) -> str | None:
        from ..runtime.store import WEIGHTS, sha256_file

        path = self.directory / WEIGHTS
        return sha256_file(path) if path.is_file() else None

    def say_left(self) -> None:
        """A note on stderr naming the earlier model's files, where the weights changed (the same weights
        again, a seeded CPU run, leave them current)."""
        from ..errors import shell_word

        left = [name for name, when in self.files.items() if _modified(self.directory / name) == when]
        if left and self.weights != self._weights():
            d = shell_word(self.directory)
            console(stderr=True).print(
                f"note: {', '.join(left)} describe the earlier model, not this one: remake them (attn-export export "
                f"{d}, then quantize, verify, report {d} as before) or remove them")


def _modified(path: Path) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return None


def console(stderr: bool = False) -> Console:
    import os
    import sys

    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    # tables stay readable in logs and CI, where there is no terminal to take the width from, unless COLUMNS
    # says it (rich reads it); no markup: what we print is data (`output 'context' [batch, 24]`), styles are
    # given as rich Text
    wide = stream.isatty() or os.environ.get("COLUMNS", "").strip().isdigit()
    return Console(stderr=stderr, highlight=False, markup=False, width=None if wide else 160)


class Grid:
    """A table of numbers that are never folded or cut: drawn as a table where every cell fits on its line
    in the console's width, else as one line per row (its ``key`` first cells, then each other column as
    "name value"), which rich wraps at spaces, so a number (which has none) is never split. Cells are str
    or rich Text."""

    def __init__(self, title: Any, columns: list[str], key: int = 1, right: tuple[str, ...] = ()) -> None:
        self.title, self.columns, self.key, self.right = title, columns, key, right
        self.rows: list[list[Any]] = []

    def add_row(self, *cells: Any) -> None:
        self.rows.append(list(cells))

    def table(self) -> Any:
        from rich import box
        from rich.table import Table

        t = Table(title=self.title, box=box.SIMPLE_HEAD, pad_edge=False)
        for col in self.columns:
            t.add_column(col, justify="right" if col in self.right else "left", no_wrap=True)
        for row in self.rows:
            t.add_row(*row)
        return t

    def lines(self) -> list[Any]:
        from rich.text import Text

        def text(cell: Any) -> Any:
            return cell if isinstance(cell, Text) else Text(str(cell))

        out = [text(self.title)] if self.title is not None else []
        for row in self.rows:
            named = [Text.assemble(name, " ", text(cell)) for name, cell in zip(self.columns[self.key:], row[self.key:])
                     if str(cell) not in ("", "-")]
            out.append(Text(" ").join([text(c) for c in row[:self.key]]) + Text(": ") + Text(", ").join(named))
        return out

    def __rich_console__(self, console: Any, options: Any) -> Any:
        from rich.measure import Measurement

        table = self.table()
        needed = Measurement.get(console, options.update_width(1 << 20), table).maximum  # its width unbounded
        if needed <= options.max_width:
            yield table
        else:
            yield from self.lines()


def recipe(path: Path | None, overrides: list[str] | None, seed: int | None = None) -> Recipe:
    from dataclasses import replace

    from ..config import load_recipe
    from ..errors import BadInput

    r = load_recipe(path, overrides or [])
    if seed is not None:
        if r.train.seed != seed and any(item.partition("=")[0].replace(" ", "") == "train.seed"
                                        for item in overrides or []):  # found by attacking: --seed won, silently
            raise BadInput(f"--seed {seed} and --set train.seed={r.train.seed} both set the seed; expected one")
        r = replace(r, train=replace(r.train, seed=seed))
    return r


def print_json(obj: Any) -> None:
    from ..runtime.store import json_text

    typer.echo(json_text(obj))


class StageBar:
    """A progress bar on stderr for a long stage, fed ``(what is being checked, done, total)``: "verify
    ort-cpu model.fp16.onnx  3/14". Off under ``--json`` (``quiet``) and when stderr is not a terminal (a
    log or a pipe gets the result lines only); transient, so the result table replaces it. It starts on its
    first update (a stage that fails before its work prints only its one error line) and ``stop`` ends it;
    ``stage`` may change between stops (``run`` names each stage)."""

    def __init__(self, stage: str, quiet: bool = False) -> None:
        self.stage, self.quiet = stage, quiet
        self._bar: Any = None
        self._task: Any = None

    def __call__(self, what: str, done: int, total: int) -> None:
        if self._bar is None:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            out = console(stderr=True)
            self._bar = Progress(TextColumn(self.stage), TextColumn("{task.description}"), BarColumn(),
                                 MofNCompleteColumn(), TimeElapsedColumn(), console=out, transient=True,
                                 disable=self.quiet or not out.is_terminal)
            self._bar.start()
            self._task = self._bar.add_task("", total=total)
        self._bar.update(self._task, description=what, completed=done, total=total)

    def stop(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = self._task = None


@contextlib.contextmanager
def progress_bar(stage: str, quiet: bool = False) -> Iterator[StageBar]:
    """``StageBar`` for the length of a ``with`` block."""
    bar = StageBar(stage, quiet)
    try:
        yield bar
    finally:
        bar.stop()
