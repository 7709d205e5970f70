"""Recipes: typed, frozen config objects, one per pipeline stage, read from TOML.

    recipe = load_recipe("recipes/japanese-vowels.toml", ["model.hidden_size=128"])

A recipe file has one table per stage (``[data]``, ``[model]``, ``[train]``, ``[export]``, ``[quantize]``,
``[build]``, ``[verify]``); a missing table or key takes the default below. The schema machinery and the
``[build]`` and ``[verify]`` tables live in the device package (``attn_export.runtime.settings``), which reads
them from ``model.json``; every problem is a one-line ``ConfigError`` naming the key, the value, what was
expected and, for a typo, the closest valid key.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from attn_export.errors import ConfigError, DataError
from attn_export.runtime.store.files import read_regular
from attn_export.runtime.trt.readiness import EXPORT_OPSETS
from attn_export.runtime.settings import (
    BuildConfig, VerifyConfig, _check_nesting, _hints, _invalid, _Section, _show, _unknown, override_section,
    parse_overrides,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # the same parser, backported; pyproject must require tomli on 3.10
    import tomli as tomllib

__all__ = [
    "ADDITIVE_ONLY", "BuildConfig", "DataConfig", "ExportConfig", "ModelConfig", "QuantizeConfig", "Recipe", "TrainConfig",
    "VerifyConfig", "load_recipe", "override_section", "recipe_from_dict", "recipe_to_dict",
]

SEED_MAX = 2**64 - 1  # torch.manual_seed's largest; numpy takes any, but one seed rule is easier to state
SYNTHETIC_MAX_BYTES = 1 << 30  # the synthetic sets as float32: 2^28 values, 1000x the quickstart's


SYNTHETIC_ONLY = ("n_train", "n_test", "features", "classes", "min_len", "max_len")  # DataConfig's for the generator


@dataclass(frozen=True)
class DataConfig(_Section):
    # "none": a model imported by ``load`` with no data named, which nothing may judge or calibrate on
    name: Literal["synthetic", "japanese-vowels", "basic-motions", "files", "none"] = "synthetic"  # no download
    train: str = ""  # a .ts or .npz training file; only data.name = "files" reads one
    test: str = ""  # a .ts or .npz test file; empty splits test_fraction off train instead
    test_fraction: float = 0.2  # the usual 80/20 split when there is no separate test file
    val_fraction: float = 0.15  # enough validation samples for early stopping, stratified, carved from train
    missing: Literal["error", "ffill", "zero"] = "error"  # a NaN is a surprise until the recipe says otherwise
    positive: str = ""  # binary head: the label that is the positive class (empty: the second in label order)
    seed: int = 0  # fixes the splits and the synthetic data, so a run can be repeated
    n_train: int = 1200  # synthetic: enough to train the default model in seconds
    n_test: int = 400  # synthetic: a test accuracy resolved to 0.25 %
    features: int = 4  # synthetic: a few channels, like a small IMU
    classes: int = 3  # synthetic: the smallest task where argmax agreement means more than a sign
    min_len: int = 8  # synthetic: short sequences exercise the dynamic sequence axis
    max_len: int = 64  # synthetic: an 8x length spread, so padding and masking are tested

    # The upper bounds are what the synthetic generator makes in seconds and a CPU trains on: a million
    # sequences take it about 20 s; its class prototypes cost classes² x features (100 classes of 1024
    # features: seconds, 1000 classes: minutes); 100k steps is past every UEA data set (EigenWorms: 18k).
    _ranges = {
        "test_fraction": "(0, 1)", "val_fraction": "[0, 1)", "seed": f">= 0 and <= {SEED_MAX}",
        "n_train": "> 0 and <= 1000000", "n_test": "> 0 and <= 1000000", "features": "> 0 and <= 1024",
        "classes": ">= 2 and <= 100", "min_len": ">= 1 and <= 100000", "max_len": "<= 100000",
    }

    def _check(self) -> None:
        if self.max_len < self.min_len:
            raise ConfigError(
                f"data.max_len = {self.max_len} is out of range: expected a value >= data.min_len = {self.min_len}"
            )
        if self.name == "files" and not self.train:
            raise ConfigError('data.train = "" is not valid: expected a .ts, .npz or .csv path when data.name = "files"')
        for key in ("train", "test"):
            if getattr(self, key) and self.name != "files":
                raise ConfigError(
                    f"data.{key} = {_show(getattr(self, key))} is not valid: data.name = {_show(self.name)} reads "
                    'no files; set data.name = "files" to use it'
                )
        if self.name != "synthetic":
            for key in SYNTHETIC_ONLY:  # what the data set itself decides: a value other than the default is ignored
                default = type(self).__dataclass_fields__[key].default
                if getattr(self, key) != default:
                    raise ConfigError(f"data.{key} = {_show(getattr(self, key))} is not valid: only data.name = "
                                      f'"synthetic" uses it; {_show(self.name)} decides it from its own data (expected '
                                      f"the default, {default}, or no value)")
            return
        if self.classes > self.n_train:
            raise ConfigError(f"data.classes = {self.classes} is out of range: expected a value <= data.n_train = "
                              f"{self.n_train} (each class needs training sequences)")
        values = (self.n_train + self.n_test) * (self.min_len + self.max_len) // 2 * self.features
        if values * 4 > SYNTHETIC_MAX_BYTES:
            raise ConfigError(
                f"data.n_train = {self.n_train}, data.n_test = {self.n_test}, data.max_len = {self.max_len} and "
                f"data.features = {self.features} make about {values * 4 / 2**30:.1f} GiB of synthetic data; "
                f"expected at most {SYNTHETIC_MAX_BYTES >> 30} GiB (lower one of them)"
            )


@dataclass(frozen=True)
class ModelConfig(_Section):
    hidden_size: int = 32  # the quickstart's: enough for the synthetic task, fast on a CPU
    num_layers: int = 1  # one layer does on these tasks; each more adds latency on the device
    bidirectional: bool = False  # a causal model can later run streaming; turn on for offline classification
    dropout: float = 0.0  # LSTM dropout acts between layers only, so it does nothing with one layer
    attention: Literal["linear", "additive"] = "linear"  # the classic Linear(H, 1) score: fewest ops to export
    attention_dim: int = 64  # additive only: matches hidden_size, the usual choice
    query: Literal["last", "learned"] = "last"  # additive only: the last hidden state, as in the classic model
    conv_channels: tuple[int, ...] = ()  # no Conv1d front-end unless a recipe asks for one
    conv_kernel_sizes: tuple[int, ...] = ()  # odd sizes keep the sequence length with "same" padding
    # classification: one logit per class, softmax; binary: one logit, sigmoid (two labels, negative then
    # positive: the common Linear(H, 1) + BCE setup); regression; none: the context vector
    head: Literal["classification", "binary", "regression", "none"] = "classification"

    # Upper bounds a device can hold and a CPU can train: an LSTM layer of width 8192 alone has 4·H·(H+F)
    # ≈ 268M weights (1 GiB FP32); deep LSTM stacks need residual connections to train, which this model
    # does not have, so 16 layers is plenty; a kernel of 1023 steps is wider than most training sequences.
    _ranges = {
        "hidden_size": "> 0 and <= 8192", "num_layers": ">= 1 and <= 16", "dropout": "[0, 1)",
        "attention_dim": "> 0 and <= 8192", "conv_channels": "> 0 and <= 8192", "conv_kernel_sizes": ">= 1 and <= 1023",
    }

    def _check(self) -> None:
        if len(self.conv_kernel_sizes) != len(self.conv_channels):
            raise ConfigError(
                f"model.conv_kernel_sizes = {_show(self.conv_kernel_sizes)} is not valid: expected one kernel size "
                f"per entry of model.conv_channels = {_show(self.conv_channels)}"
            )
        for i, k in enumerate(self.conv_kernel_sizes):
            if k % 2 == 0:
                raise ConfigError(f"model.conv_kernel_sizes[{i}] = {k} is not valid: expected an odd size")


ADDITIVE_ONLY = ("attention_dim", "query")  # the ModelConfig keys only an additive score reads


@dataclass(frozen=True)
class TrainConfig(_Section):
    epochs: int = 15  # the quickstart's: the synthetic task is learnt in a few epochs; recipes raise it
    batch_size: int = 32  # small data sets: several steps per epoch, stable gradients
    lr: float = 3e-3  # Adam's sweet spot for a small LSTM
    weight_decay: float = 1e-4  # a little regularisation that never hurts on small data
    patience: int = 5  # epochs without a better validation loss before stopping
    grad_clip: float = 1.0  # LSTMs meet exploding gradients on long sequences; 0 disables
    min_test_accuracy: float = 0.0  # no floor unless a recipe knows what its data set can reach
    device: Literal["auto", "cpu", "cuda"] = "auto"  # the GPU when there is one
    seed: int = 0  # weights and batch order repeat run to run

    _ranges = {
        "epochs": ">= 1 and <= 100000", "batch_size": ">= 1 and <= 1000000", "lr": "> 0 and <= 10",
        "weight_decay": ">= 0 and <= 1", "patience": ">= 1 and <= 100000",
        "grad_clip": ">= 0 and <= 1000000", "min_test_accuracy": "[0, 1]", "seed": f">= 0 and <= {SEED_MAX}",
    }


@dataclass(frozen=True)
class ExportConfig(_Section):
    opset: int = 17  # what TensorRT 8.5 on JetPack 5 parses; newer runtimes take up to 21
    exporter: Literal["torchscript", "dynamo"] = "torchscript"  # the exporter TensorRT has been tested against most
    parity_max_seq: int = 2048  # far past any training length, so length generalisation is checked

    _ranges = {"opset": f"[{EXPORT_OPSETS[0]}, {EXPORT_OPSETS[1]}]", "parity_max_seq": ">= 1 and <= 100000"}


MAX_CALIB_SAMPLES = 100000  # Q/DQ calibration sequences: quantize's flag, the recipe key and the API


@dataclass(frozen=True)
class QuantizeConfig(_Section):
    fp16: bool = True  # nearly free on every GPU and NPU
    int8_dynamic: bool = True  # needs no calibration data, so always worth a try
    int8_qdq: bool = True  # the form TensorRT builds int8 engines from
    calib_samples: int = 64  # activation ranges settle by then on small, uniform data sets

    _ranges = {"calib_samples": f">= 1 and <= {MAX_CALIB_SAMPLES}"}


@dataclass(frozen=True)
class Recipe:
    """A whole run, one section per stage; every section defaults to its defaults."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    quantize: QuantizeConfig = field(default_factory=QuantizeConfig)
    build: BuildConfig = field(default_factory=BuildConfig)
    verify: VerifyConfig = field(default_factory=VerifyConfig)


_SECTIONS: dict[str, Any] = _hints(Recipe)  # section name -> its config class


def refuse_untrainable_head(recipe: Recipe) -> None:
    """ConfigError for a head training cannot fit from class labels, or a ``data.positive`` for a head that
    has no positive class: said before the data are read (found by a user: a regression .ts was refused as
    "expected class labels", a file-format mistake it was not)."""
    head = recipe.model.head
    if head not in ("classification", "binary"):
        raise ConfigError(
            f"model.head = '{head}' cannot be trained from labelled data; "
            "training supports head = 'classification' or 'binary' (import other heads with attn-export load)"
        )
    refuse_misplaced_positive(recipe)


def refuse_misplaced_positive(recipe: Recipe) -> None:
    """ConfigError for a ``data.positive`` beside a head without a positive class (train and load: found by
    review, load reordered a classifier's labels by it without a word)."""
    if recipe.data.positive and recipe.model.head != "binary":
        raise ConfigError(f"data.positive = {recipe.data.positive!r} is not read: only a binary head has a positive "
                          f"class, and model.head = '{recipe.model.head}' (expected head = 'binary', or no value)")


def recipe_from_dict(d: Mapping[str, Any]) -> Recipe:
    """A ``Recipe`` from nested tables (parsed TOML or ``recipe_to_dict`` output); missing keys take defaults."""
    if not isinstance(d, Mapping):
        raise ConfigError(f"a recipe is a table of sections, not {_show(d)} ({type(d).__name__})")
    for name, table in d.items():
        if name not in _SECTIONS:
            raise _unknown("", str(name), table, list(_SECTIONS), _SECTIONS)
    sections = {}
    for name, cls in _SECTIONS.items():
        table = d.get(name, {})
        if not isinstance(table, Mapping):
            raise _invalid(name, table, f"a table [{name}]")
        for key, value in table.items():
            if key not in _hints(cls):
                raise _unknown(name, str(key), value, list(_hints(cls)), _SECTIONS)
        sections[name] = cls(**table)
    return Recipe(**sections)


def recipe_to_dict(recipe: Recipe) -> dict[str, dict[str, Any]]:
    """Nested plain tables, JSON- and TOML-serialisable (tuples become lists); ``recipe_from_dict`` inverts it."""
    return {
        name: {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(getattr(recipe, name)).items()}
        for name in _SECTIONS
    }


MAX_RECIPE_BYTES = 1 << 20  # a recipe is a page of TOML


def recipe_table(path: str | Path | None, section: str) -> dict[str, Any]:
    """The ``[section]`` table as the recipe file at ``path`` writes it (empty without one); ``path`` has
    passed ``load_recipe``."""
    if path is None:
        return {}
    raw = tomllib.loads(read_regular(path, MAX_RECIPE_BYTES, "a recipe (a TOML text file)").decode("utf-8-sig"))
    return dict(raw[section]) if isinstance(raw.get(section), dict) else {}


# what a loaded model records of its data with no data named: the gap policy predict's input files take
UNNAMED_DATA_KEYS = ("missing",)


def names_data(path: str | Path | None, overrides: Sequence[str] = ()) -> bool:
    """Whether the recipe file's ``[data]`` table or an override names the data (``data.name``): what
    ``load`` asks before it records an imported model's data. ``path`` has passed ``load_recipe``. Other
    ``data`` settings with no name, but for ``UNNAMED_DATA_KEYS``, are refused: the model would record
    ``data.name = "none"`` and drop them."""
    given = [key for section, key, _ in parse_overrides(overrides) if section == "data"]
    table = recipe_table(path, "data")
    if "name" in given or "name" in table:
        return True
    unnamed = [key for key in [*given, *table] if key not in UNNAMED_DATA_KEYS]
    if unnamed:
        raise ConfigError(f"data.{unnamed[0]} is set but no data.name: a loaded model records data.name = \"none\" "
                          "(no data) unless the recipe or --set names the data it was trained on; expected data.name "
                          "as well, or no data setting")
    return False


def as_recipe(recipe: Any) -> Recipe:
    """What the Python API's stages take as a recipe: a ``Recipe``, or a recipe file's path (loaded); else
    one ConfigError line (a path had been an AttributeError: found by attacking)."""
    if isinstance(recipe, Recipe):
        return recipe
    if isinstance(recipe, (str, os.PathLike)):
        return load_recipe(recipe)
    raise ConfigError(f"recipe = {recipe!r}; expected a Recipe (attn_export.load_recipe(path, overrides)) or a "
                      "recipe file's path")


SHIPPED_RECIPES = Path(__file__).resolve().parent.parent / "recipes"  # the recipes this repository ships


def shown_path(path: Path) -> str:
    """``path`` as a hint shows it: relative to the current directory when it lies below it, else whole
    (``relpath`` raises on Windows for another drive)."""
    try:
        relative = os.path.relpath(path)
    except ValueError:
        return str(path)
    return str(path) if relative.startswith("..") else relative


def load_recipe(path: str | Path | None = None, overrides: Sequence[str] = ()) -> Recipe:
    """The recipe in ``path`` (all defaults when None), then ``overrides`` (``section.key=value``) on top."""
    if isinstance(overrides, (str, bytes)):  # iterated, it was one override per character (found by attacking)
        raise ConfigError(f"overrides = {overrides!r} is one string; expected a list of section.key=value strings, "
                          f"e.g. [{overrides!r}]")
    recipe = Recipe()
    if path is not None and not isinstance(path, (str, os.PathLike)):  # os.path took an int as a descriptor
        raise ConfigError(f"recipe path {path!r} is of type {type(path).__name__}; expected a path (str or Path) "
                          "to a recipe TOML file")
    if path is not None:
        if not os.path.lexists(path):
            shipped = SHIPPED_RECIPES / Path(path).name
            if not shipped.is_file():  # "japanese-vowels" for recipes/japanese-vowels.toml (found by a new user)
                shipped = shipped.with_name(shipped.name + ".toml")
            if not shipped.is_file():  # a typo of a shipped one's name (found by attacking: japanese-vowel.toml)
                close = difflib.get_close_matches(Path(path).name, sorted(r.name for r in SHIPPED_RECIPES.glob("*.toml")),
                                                  1)
                shipped = SHIPPED_RECIPES / close[0] if close else shipped
            hint = (f"; expected a path, e.g. {shown_path(shipped)} (a recipe this repository ships)" if shipped.is_file()
                    else "; expected a path to a recipe TOML file")
            raise ConfigError(f"recipe file '{path}' does not exist{hint}")
        try:
            data = read_regular(path, MAX_RECIPE_BYTES, "a recipe (a TOML text file)")
            text = data.decode("utf-8-sig")  # a byte-order mark (Windows' Notepad writes one) is no TOML statement
            _check_nesting(text, f"recipe file '{path}'", "a recipe (tables nest 2 deep)")
            raw = tomllib.loads(text)
        except DataError as err:  # not a regular file, or too large
            raise ConfigError(f"recipe file '{path}' cannot be read: {err}") from None
        except UnicodeDecodeError as err:
            raise ConfigError(f"recipe file '{path}' cannot be read: {err}; expected a UTF-8 TOML text file") from err
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"recipe file '{path}' is not valid TOML: {err}") from err
        try:
            recipe = _resolve_paths(recipe_from_dict(raw), Path(path).parent)
        except ConfigError as err:  # checked before the overrides, so a file's mistake is blamed on the file
            raise ConfigError(f"{path}: {err}") from err
    if not overrides:
        return recipe
    merged = recipe_to_dict(recipe)
    for section, key, value in parse_overrides(overrides):
        merged.setdefault(section, {})[key] = value
    # the recipe's own paths are absolute by now; one still relative came from --set, and a path given on
    # the command line is relative to the current directory, as every argument is
    return _resolve_paths(recipe_from_dict(merged), Path.cwd())


def _resolve_paths(recipe: Recipe, base: Path) -> Recipe:
    """Relative data paths (data.train, data.test) made absolute from ``base``: a recipe's folder (a
    recipe names its data files from where it lives, wherever it is run from), or the current directory
    for ``--set`` values; ``~`` is the user's home, as a shell would read it (it had been a folder named
    "~" in the recipe's: found by attacking)."""
    paths = {key: getattr(recipe.data, key) for key in ("train", "test")}
    home = {k: os.path.expanduser(v) if v else v for k, v in paths.items()}
    resolved = {k: os.path.abspath(base / v) if v and not Path(v).is_absolute() else v for k, v in home.items()}
    if resolved == paths:
        return recipe
    return dataclasses.replace(recipe, data=dataclasses.replace(recipe.data, **resolved))
