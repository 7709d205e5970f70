"""Options and helpers shared by the commands. Imports nothing heavy."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from ..config import Recipe

DirArg = Annotated[
    Path, typer.Argument(help="Artefact directory.", show_default=True, file_okay=False)
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


def console(stderr: bool = False) -> Console:
    import sys

    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    # tables stay readable in logs and CI, where there is no terminal to take the width from; no markup:
    # what we print is data (`output 'context' [batch, 24]`), styles are given as rich Text
    return Console(stderr=stderr, highlight=False, markup=False, width=None if stream.isatty() else 160)


def recipe(path: Path | None, overrides: list[str] | None, seed: int | None = None) -> Recipe:
    from dataclasses import replace

    from ..config import load_recipe

    r = load_recipe(path, overrides or [])
    if seed is not None:
        r = replace(r, train=replace(r.train, seed=seed))
    return r


def print_json(obj: Any) -> None:
    typer.echo(json.dumps(obj, indent=2))
