"""``attn-export load``: import an existing checkpoint into an artefact directory."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .common import DirArg, RecipeOpt, SetOpt, console, recipe

NAME = "load"


def command(
    checkpoint: Annotated[Path, typer.Argument(help="A classic AttentionLSTM state_dict (.pt/.pth/.safetensors) "
                                                    "or an attn-export artefact directory.")],
    directory: DirArg = Path("artifacts"),
    recipe_file: RecipeOpt = None,
    overrides: SetOpt = None,
) -> None:
    """Import a model: the classic snippet's state_dict (sizes inferred from the weights) or our own directory."""
    from ..load import load_checkpoint

    r = recipe(recipe_file, overrides)
    summary = load_checkpoint(checkpoint, directory, r)
    console(stderr=True).print(summary)
