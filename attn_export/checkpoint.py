"""Saving and loading models: our own artefact directories (safetensors + model.json), and reading a
user's plain state_dict for ``attn-export load`` (``attn_export/load.py`` recognises its layout).

Nothing is ever unpickled: weights are safetensors, and a ``.pt``/``.pth`` file is opened with
``torch.load(weights_only=True)``, which refuses anything but tensors and plain containers.
"""

from __future__ import annotations

import io
from pathlib import Path

import torch
from safetensors.torch import load_file, save

from . import __version__
from .runtime import artifacts
from .config import Recipe, recipe_from_dict, recipe_to_dict
from .errors import DataError
from .model import AttentionLSTM
from .runtime.modelinfo import FORMAT, ModelInfo

__all__ = ["load_model", "read_state_dict", "save_model"]



def save_model(
    directory: Path,
    model: AttentionLSTM,
    recipe: Recipe,
    labels: tuple[str, ...],
    command: str,
    source: str,
    train_lengths: dict[str, int] | None = None,
    parent_sha256: str | None = None,
) -> None:
    """Write model.safetensors then model.json, then record both in the manifest."""
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    artifacts.write_bytes(directory / artifacts.WEIGHTS, save(state, metadata={"format": str(FORMAT)}))
    if model.config != recipe.model:
        raise ValueError("save_model: the model's config differs from the recipe's [model] table")
    resolved = recipe_to_dict(recipe)
    info = {
        "format": FORMAT,
        "attn_export": __version__,
        "model": resolved["model"],
        "input_size": model.input_size,
        "num_outputs": model.num_outputs,
        "labels": list(labels),
        "normalization": {"mean": model.mean.tolist(), "std": model.std.tolist()},
        "train_lengths": train_lengths,
        "source": source,
        "source_sha256": parent_sha256,
        "recipe": resolved,
    }
    artifacts.write_json(directory / artifacts.MODEL_JSON, info)
    versions = {"torch": torch.__version__}
    artifacts.record(directory, artifacts.WEIGHTS, command, versions=versions, source=source,
                     source_sha256=parent_sha256)
    artifacts.record(directory, artifacts.MODEL_JSON, command, parent=artifacts.WEIGHTS, versions=versions)


def load_model(directory: Path) -> tuple[AttentionLSTM, ModelInfo]:
    """Rebuild the model saved in ``directory``; returns (model in eval mode, its model.json)."""
    info = ModelInfo.read(directory)
    weights = artifacts.require(directory, artifacts.WEIGHTS)
    recipe = recipe_from_dict(dict(info.recipe))
    model = AttentionLSTM(recipe.model, info.input_size, info.num_outputs, list(info.mean), list(info.std))
    try:
        state = load_file(str(weights))
    except Exception as e:  # safetensors raises its own SafetensorError or OSError
        raise DataError(f"{weights} is not a readable safetensors file: {e}") from None
    _load_state(model, state, str(weights))
    return model.eval(), info


def _load_state(model: AttentionLSTM, state: dict[str, torch.Tensor], origin: str) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise DataError(f"{origin} does not fit the model: missing {missing[:4]}, unexpected {unexpected[:4]}")
    for key, value in state.items():
        if tuple(value.shape) != tuple(expected[key].shape):
            raise DataError(
                f"{origin}: {key} has shape {tuple(value.shape)}, the model expects {tuple(expected[key].shape)}"
            )
    model.load_state_dict(state)


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A plain state_dict from .safetensors or a torch file, never unpickling arbitrary objects."""
    if not path.is_file():
        raise DataError(f"checkpoint {path} does not exist")
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path))
        except Exception as e:
            raise DataError(f"{path} is not a readable safetensors file: {e}") from None
    data = path.read_bytes()
    try:
        obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as e:
        if "weights_only" in str(e) or "Unsupported global" in str(e):
            raise DataError(
                f"{path} needs unpickling of arbitrary Python objects, which attn-export refuses; "
                "save a plain state_dict (torch.save(model.state_dict(), path)) or a .safetensors file"
            ) from None
        raise DataError(f"{path} is not a readable PyTorch checkpoint: {str(e).splitlines()[0]}") from None
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise DataError(f"{path} does not hold a state_dict (a mapping of names to tensors)")
    return obj
