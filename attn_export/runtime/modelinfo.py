"""``model.json``, read once, checked, and typed: what every command and the device know of the model.

    info = ModelInfo.read(directory)
    info.spec, info.labels, info.verify, info.build, info.train_lengths

``model.json`` is written by ``attn-export train`` / ``load`` (``attn_export.checkpoint``); this is the one
place that reads it. Its shape is checked here (an edited or damaged file is a DataError naming what is
wrong), so no caller indexes raw dictionaries.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

from ..errors import ConfigError, DataError
from . import artifacts
from .iospec import HEAD_OUTPUT, IOSpec
from .settings import BuildConfig, VerifyConfig, recorded_sections

__all__ = ["FORMAT", "ModelInfo"]

FORMAT = 1  # model.json's format: attn_export.checkpoint writes it


@dataclass(frozen=True)
class ModelInfo:
    path: Path
    input_size: int
    num_outputs: int
    head: str  # classification | regression | none
    labels: Tuple[str, ...]
    mean: Tuple[float, ...]
    std: Tuple[float, ...]
    train_lengths: Optional[Dict[str, int]]  # {"min", "median", "max"}
    recipe: Mapping[str, Any]  # the resolved recipe, as recorded
    verify: VerifyConfig
    build: BuildConfig
    raw: Mapping[str, Any]

    @property
    def spec(self) -> IOSpec:
        return IOSpec.for_model(self.input_size, self.num_outputs, self.head)

    @classmethod
    def read(cls, directory: Path) -> "ModelInfo":
        path = artifacts.require(directory, artifacts.MODEL_JSON)
        return cls.parse(artifacts.read_json(path), path)

    @classmethod
    def parse(cls, raw: Any, path: Path) -> "ModelInfo":
        def bad(what: str) -> DataError:
            return DataError(f"{path} is not an attn-export model.json: {what}")

        if not isinstance(raw, dict) or raw.get("format") != FORMAT:
            raise bad(f"expected an object with format {FORMAT}")
        recipe = raw.get("recipe")
        if not isinstance(recipe, dict) or not isinstance(recipe.get("model"), dict):
            raise bad("no recipe with a [model] table")
        head = recipe["model"].get("head", "classification")
        if head not in HEAD_OUTPUT:
            raise bad(f"model.head {head!r} is not one of {', '.join(HEAD_OUTPUT)}")
        sizes = []
        for key in ("input_size", "num_outputs"):
            value = raw.get(key)
            if type(value) is not int or value < 1:
                raise bad(f"{key} = {value!r}, expected a positive integer")
            sizes.append(value)
        labels = raw.get("labels") or []
        if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
            raise bad("labels is not a list of strings")
        if head == "classification" and labels and len(labels) != sizes[1]:
            raise bad(f"{len(labels)} labels for {sizes[1]} outputs")
        norm = raw.get("normalization") or {"mean": [0.0] * sizes[0], "std": [1.0] * sizes[0]}
        mean, std = _floats(norm, "mean", sizes[0], bad), _floats(norm, "std", sizes[0], bad)
        lengths = raw.get("train_lengths")
        if lengths is not None and not (isinstance(lengths, dict) and all(
                type(lengths.get(k)) is int and lengths[k] >= 1 for k in ("min", "median", "max"))):
            raise bad("train_lengths is not {min, median, max} of positive integers")
        try:
            verify, build = recorded_sections(recipe)
        except ConfigError as e:
            raise bad(str(e)) from None
        return cls(path, sizes[0], sizes[1], head, tuple(labels), mean, std, lengths, recipe, verify, build, raw)


def _floats(norm: Any, key: str, size: int, bad: Any) -> Tuple[float, ...]:
    values: List[Any] = norm.get(key) if isinstance(norm, dict) else None  # type: ignore[assignment]
    if (not isinstance(values, list) or len(values) != size
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values)):
        raise bad(f"normalization.{key} is not {size} finite numbers")
    return tuple(float(v) for v in values)
