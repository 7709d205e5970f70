"""Importing models made elsewhere: the classic AttentionLSTM snippet's state_dict, or another
attn-export artefact directory.

    attn-export load classic.pt DIR
"""

from __future__ import annotations

from pathlib import Path

from .runtime import artifacts
from .checkpoint import classic_state_dict_to_model, load_model, read_state_dict, recipe_for_classic, save_model
from .config import Recipe, recipe_from_dict

__all__ = ["load_checkpoint"]


def load_checkpoint(source: Path, directory: Path, recipe: Recipe) -> str:
    """Write ``source``'s model into ``directory``; returns a one-line summary of what was imported."""
    if source.is_dir():
        model, info = load_model(source)
        if source.resolve() == directory.resolve():
            return f"{source} is already an artefact directory; nothing to do"
        save_model(directory, model, recipe_from_dict(dict(info.recipe)), info.labels, command="load",
                   source=str(source), train_lengths=info.train_lengths,
                   parent_sha256=artifacts.sha256_file(source / artifacts.WEIGHTS))
        return f"imported attn-export model from {source} -> {directory}"
    state = read_state_dict(source)
    model = classic_state_dict_to_model(state, recipe.model)
    cfg = model.config
    save_model(directory, model, recipe_for_classic(recipe, model), (), command=f"load {source.name}",
               source=source.name, parent_sha256=artifacts.sha256_file(source))
    return (
        f"imported the classic AttentionLSTM from {source}: input_size {model.input_size}, hidden_size "
        f"{cfg.hidden_size}, num_layers {cfg.num_layers}, output 'context' [batch, {cfg.hidden_size}] -> {directory}"
    )
