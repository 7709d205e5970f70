"""``model.json``, checked and typed: what every command and the device know of the model.

    info = Store(directory).model()          # read once by the store, which also decides whether to believe it
    info.spec, info.labels, info.verify, info.build, info.train_lengths

``model.json`` is written by ``attn-export train`` / ``load`` (``attn_export.checkpoint``) and read by the
store (``runtime.store``); this is the one place that interprets it. Its shape is checked here, against
``schema.MODEL`` and the rules across its keys (an edited or damaged file is a DataError naming the key), so
no caller indexes raw dictionaries.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple

from ..errors import ConfigError, DataError
from . import schema
from .iospec import CLASSIFIERS, HEAD_OUTPUT, IOSpec
from .readers import MISSING_POLICIES
from .settings import BuildConfig, VerifyConfig, recorded_sections
from .precisions import rule_keys

__all__ = ["FORMAT", "ModelInfo"]

FORMAT = schema.MODEL_FORMAT  # model.json's format: attn_export.checkpoint writes it


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
    feature_names: Optional[Tuple[str, ...]] = None  # the training data's column names, where it had them (.csv)
    missing: str = "error"  # the training data's [data] missing policy, which predict's input files take too

    @property
    def imported(self) -> bool:
        """Made by ``load`` from a checkpoint (whose sha256 it records as ``source_sha256``; train records none),
        so how its training data were treated is not known here."""
        return self.raw.get("source_sha256") is not None or self.recipe.get("data", {}).get("name") == "none"

    def judged_under(self, precision: str) -> Dict[str, Any]:
        """The recorded recipe's settings a verdict on ``precision`` is judged under: its rule's ``[verify]``
        keys, and ``build.max_seq`` where the deployment range is derived from it. A verdict records them
        (``verified.settings``) and stands only while ``model.json`` still says them (found by attacking: a
        retrain to identical weights with a tighter bar kept the earlier pass, and predict named the new bar)."""
        keys = rule_keys(precision)
        settings: Dict[str, Any] = {key: getattr(self.verify, key) for key in keys}
        if "deployment_max_seq" in keys and not self.verify.deployment_max_seq:
            settings["build.max_seq"] = self.build.max_seq
        return settings

    @property
    def spec(self) -> IOSpec:
        return IOSpec.for_model(self.input_size, self.num_outputs, self.head)

    @classmethod
    def parse(cls, raw: Any, path: Path) -> "ModelInfo":
        """``raw`` checked against ``schema.MODEL``, then what the table cannot say: a head ``IOSpec`` knows,
        one label per output (none for a regression or context head), one statistic per input feature, the
        recorded recipe's [verify] and [build] tables. DataError naming ``path`` and the key."""
        schema.check(raw, schema.MODEL, path)
        size, outputs = raw["input_size"], raw["num_outputs"]
        head = raw["recipe"]["model"].get("head", "classification")
        if head not in HEAD_OUTPUT:
            raise schema.mismatch(path, ("recipe", "model", "head"), head, "one of " + ", ".join(HEAD_OUTPUT))
        labels = raw.get("labels") or []
        if head == "classification" and len(labels) != outputs:
            raise schema.mismatch(path, ("labels",), labels,
                                  f"{outputs} labels (strings), one per output (num_outputs {outputs})")
        if head == "binary" and (outputs != 1 or len(labels) != 2):
            raise schema.mismatch(path, ("labels",) if outputs == 1 else ("num_outputs",),
                                  labels if outputs == 1 else outputs,
                                  "a binary head's one output (num_outputs 1) and its two labels, negative then "
                                  "positive")
        if head not in CLASSIFIERS and labels:
            raise schema.mismatch(path, ("labels",), labels, "[] (only a classifier has labels)")
        norm = raw.get("normalization") or {"mean": [0.0] * size, "std": [1.0] * size}
        for key in ("mean", "std"):
            if len(norm[key]) != size:
                raise schema.mismatch(path, ("normalization", key), norm[key],
                                      f"{size} finite numbers, one per input feature (input_size {size})")
        names = raw.get("feature_names")
        if names is not None and len(names) != size:
            raise schema.mismatch(path, ("feature_names",), names, f"{size} names, one per input feature (input_size "
                                                                   f"{size}), or null")
        missing = raw["recipe"].get("data", {}).get("missing", "error")
        if missing not in MISSING_POLICIES:
            raise schema.mismatch(path, ("recipe", "data", "missing"), missing, "one of " + ", ".join(MISSING_POLICIES))
        try:
            verify, build = recorded_sections(raw["recipe"])
        except ConfigError as e:
            raise DataError(f"{path}: the recorded recipe: {e}") from None
        return cls(path, size, outputs, head, tuple(labels), tuple(float(v) for v in norm["mean"]),
                   tuple(float(v) for v in norm["std"]), raw.get("train_lengths"), raw["recipe"], verify, build, raw,
                   None if names is None else tuple(names), missing)
