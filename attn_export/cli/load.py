"""``attn-export load``: import an existing checkpoint into an artefact directory."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .common import DirArg, EarlierModel, RecipeOpt, SetOpt, console, path_parser, recipe

NAME = "load"

MapOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--map",
        metavar="PREFIX=ROLE",
        help="Name a part of the checkpoint when its shapes are ambiguous: a key prefix and its role, one of lstm, "
             "conv, conv.N (order of the Conv1d layers), score, key and energy (additive: W and v), head; "
             "e.g. --map attention=score --map fc=head (repeatable).",
    ),
]


def command(
    checkpoint: Annotated[Path, typer.Argument(help="A PyTorch AttentionLSTM state_dict (.pt/.pth/.safetensors), "
                                                    "or an attn-export artefact directory.", parser=path_parser(
        "a state_dict file (.pt/.pth/.safetensors) or an attn-export artefact directory"))],
    directory: DirArg = Path("artifacts"),
    recipe_file: RecipeOpt = None,
    overrides: SetOpt = None,
    mapping: MapOpt = None,
) -> None:
    """Import a model: an AttentionLSTM state_dict, recognised by its shapes (an LSTM, a score Linear(D, 1) or
    an additive Linear(D, A) + v, optionally a head Linear(D, C) and Conv1d layers), or our own directory."""
    from ..config import names_data
    from ..load import load_checkpoint

    r = recipe(recipe_file, overrides)
    before = EarlierModel(directory, writes_metrics=False)
    summary = load_checkpoint(checkpoint, directory, r, mapping or [], overrides or [],
                              data_given=names_data(recipe_file, overrides or []), recipe_file=recipe_file)
    console(stderr=True).print(summary, soft_wrap=True)
    before.say_left()
