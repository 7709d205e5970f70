"""Recipes: typed, frozen config objects, one per pipeline stage, read from TOML.

    recipe = load_recipe("recipes/japanese-vowels.toml", ["model.hidden_size=128"])

A recipe file has one table per stage (``[data]``, ``[model]``, ``[train]``, ``[export]``, ``[quantize]``,
``[build]``, ``[verify]``); a missing table or key takes the default below. Types are checked from the field
annotations, ranges from each class's ``_ranges``, rules spanning fields in its ``_check``. Every problem is a
one-line ``ConfigError`` naming the key, the value, what was expected and, for a typo, the closest valid key.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar, get_args, get_origin, get_type_hints

from attn_export.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # the same parser, backported; pyproject must require tomli on 3.10
    import tomli as tomllib

__all__ = [
    "BuildConfig", "DataConfig", "ExportConfig", "ModelConfig", "QuantizeConfig", "Recipe", "TrainConfig",
    "VerifyConfig", "load_recipe", "override_section", "recipe_from_dict", "recipe_to_dict",
]

# What the user is told a field of each annotated type wants: (one value, a list of them).
_EXPECTED = {int: ("an integer", "integers"), float: ("a finite number", "finite numbers"),
             bool: ("true or false", "booleans"), str: ("a string", "strings")}  # fmt: skip


def _show(value: Any) -> str:
    """``value`` as it would be written in TOML, on one line and short enough for an error message."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
    else:
        text = repr(list(value) if isinstance(value, tuple) else value).replace("\n", "\\n")
    return text if len(text) <= 60 else text[:57] + "..."


def _invalid(key: str, value: Any, expected: str) -> ConfigError:
    return ConfigError(f"{key} = {_show(value)} ({type(value).__name__}) is not valid: expected {expected}")


def _unknown(section: str, name: str, value: Any, valid: list[str]) -> ConfigError:
    """An unknown key in ``section``, or an unknown section when ``section`` is empty."""
    prefix, kind = (f"{section}.", f"[{section}] keys") if section else ("", "sections")
    printable = repr(name)[1:-1]  # a key may hold a newline or a control character; the message stays one line
    hint = [prefix + m for m in difflib.get_close_matches(name, valid, n=1)]
    hint = hint or [f"{s}.{name}" for s in _SECTIONS if name in _hints(_SECTIONS[s])]  # right key, wrong table
    shown = "" if isinstance(value, Mapping) else f" = {_show(value)}"
    did_you_mean = f"; did you mean '{hint[0]}'?" if hint else ""
    return ConfigError(
        f"recipe {'key' if section else 'section'} '{prefix}{printable}'{shown} is unknown{did_you_mean} "
        f"(valid {kind}: {', '.join(valid)})"
    )


def _convert(key: str, value: Any, tp: Any) -> Any:
    """``value`` checked against the annotation ``tp``; ints widen to float, lists become tuples."""
    args = get_args(tp)
    if get_origin(tp) is Literal:
        if isinstance(value, str) and value in args:
            return value
        hint = difflib.get_close_matches(str(value), args, n=1)
        did_you_mean = f"; did you mean {_show(hint[0])}?" if hint else ""
        raise _invalid(key, value, "one of " + ", ".join(map(_show, args)) + did_you_mean)
    if get_origin(tp) is tuple:
        if not isinstance(value, (list, tuple)):
            raise _invalid(key, value, f"a list of {_EXPECTED[args[0]][1]}")
        return tuple(_convert(f"{key}[{i}]", v, args[0]) for i, v in enumerate(value))
    # bool is an int to Python but not to a recipe; an int beyond float's range stays an int and fails below.
    if tp is float and type(value) is int and abs(value) <= sys.float_info.max:
        value = float(value)
    if not isinstance(value, tp) or (isinstance(value, bool) and tp is not bool):
        raise _invalid(key, value, _EXPECTED[tp][0])
    if tp is float and not math.isfinite(value):
        raise _invalid(key, value, _EXPECTED[tp][0])
    return value


def _check_range(key: str, value: Any, spec: str) -> None:
    """``value`` (each element of a tuple) must lie in ``spec``: "> 0", ">= 1", or an interval such as "[0, 1)"."""
    for k, v in [(f"{key}[{i}]", v) for i, v in enumerate(value)] if isinstance(value, tuple) else [(key, value)]:
        if spec[0] == ">":
            op, bound = spec.split()
            ok = v > float(bound) if op == ">" else v >= float(bound)
        else:
            lo, hi = (float(x) for x in spec[1:-1].split(","))
            ok = (lo < v or (spec[0] == "[" and v == lo)) and (v < hi or (spec[-1] == "]" and v == hi))
        if not ok:
            where = spec if spec[0] == ">" else f"in {spec}"
            raise ConfigError(f"{k} = {_show(v)} is out of range: expected a value {where}")


def _hints(cls: type) -> dict[str, Any]:
    """Field name -> resolved annotation, in declaration order (ClassVars left out)."""
    hints = get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


@dataclass(frozen=True)
class _Section:
    """Base of the stage configs: every field is checked on construction, from a file or from Python."""

    _ranges: ClassVar[Mapping[str, str]] = {}  # field -> allowed range; a tuple field applies it per element

    def __post_init__(self) -> None:
        section = type(self).__name__.removesuffix("Config").lower()  # ModelConfig -> [model]
        for name, tp in _hints(type(self)).items():
            value = _convert(f"{section}.{name}", getattr(self, name), tp)
            object.__setattr__(self, name, value)  # frozen: normalise before anyone can see the object
            if name in self._ranges:
                _check_range(f"{section}.{name}", value, self._ranges[name])
        self._check()

    def _check(self) -> None:
        """Rules that span several fields; a section with any overrides this."""


@dataclass(frozen=True)
class DataConfig(_Section):
    name: Literal["synthetic", "japanese-vowels", "basic-motions", "files"] = "synthetic"  # runs with no download
    train: str = ""  # a .ts or .npz training file; only data.name = "files" reads one
    test: str = ""  # a .ts or .npz test file; empty splits test_fraction off train instead
    test_fraction: float = 0.2  # the usual 80/20 split when there is no separate test file
    val_fraction: float = 0.15  # enough validation samples for early stopping, stratified, carved from train
    missing: Literal["error", "ffill", "zero"] = "error"  # a NaN is a surprise until the recipe says otherwise
    seed: int = 0  # fixes the splits and the synthetic data, so a run can be repeated
    n_train: int = 1200  # synthetic: enough to train the default model in seconds
    n_test: int = 400  # synthetic: a test accuracy resolved to 0.25 %
    features: int = 4  # synthetic: a few channels, like a small IMU
    classes: int = 3  # synthetic: the smallest task where argmax agreement means more than a sign
    min_len: int = 8  # synthetic: short sequences exercise the dynamic sequence axis
    max_len: int = 64  # synthetic: an 8x length spread, so padding and masking are tested

    _ranges = {
        "test_fraction": "(0, 1)", "val_fraction": "[0, 1)", "seed": ">= 0", "n_train": "> 0", "n_test": "> 0",
        "features": "> 0", "classes": ">= 2", "min_len": ">= 1",
    }

    def _check(self) -> None:
        if self.max_len < self.min_len:
            raise ConfigError(
                f"data.max_len = {self.max_len} is out of range: expected a value >= data.min_len = {self.min_len}"
            )
        if self.name == "files" and not self.train:
            raise ConfigError('data.train = "" is not valid: expected a .ts or .npz path when data.name = "files"')
        for key in ("train", "test"):
            if getattr(self, key) and self.name != "files":
                raise ConfigError(
                    f"data.{key} = {_show(getattr(self, key))} is not valid: data.name = {_show(self.name)} reads "
                    'no files; set data.name = "files" to use it'
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
    head: Literal["classification", "regression", "none"] = "classification"  # what the shipped recipes do

    _ranges = {
        "hidden_size": "> 0", "num_layers": ">= 1", "dropout": "[0, 1)", "attention_dim": "> 0",
        "conv_channels": "> 0", "conv_kernel_sizes": ">= 1",
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
        "epochs": ">= 1", "batch_size": ">= 1", "lr": "> 0", "weight_decay": ">= 0", "patience": ">= 1",
        "grad_clip": ">= 0", "min_test_accuracy": "[0, 1]", "seed": ">= 0",
    }


@dataclass(frozen=True)
class ExportConfig(_Section):
    opset: int = 17  # what TensorRT 8.5 on JetPack 5 parses; newer runtimes take up to 21
    exporter: Literal["torchscript", "dynamo"] = "torchscript"  # the exporter TensorRT has been tested against most
    parity_max_seq: int = 2048  # far past any training length, so length generalisation is checked

    _ranges = {"opset": "[17, 21]", "parity_max_seq": ">= 1"}


@dataclass(frozen=True)
class QuantizeConfig(_Section):
    fp16: bool = True  # nearly free on every GPU and NPU
    int8_dynamic: bool = True  # needs no calibration data, so always worth a try
    int8_qdq: bool = True  # the form TensorRT builds int8 engines from
    calib_samples: int = 64  # activation ranges settle by then on small, uniform data sets

    _ranges = {"calib_samples": ">= 1"}


@dataclass(frozen=True)
class BuildConfig(_Section):
    """The TensorRT optimisation profile; a 0 means "derive from the training data"."""

    min_batch: int = 1  # one sample at a time is the edge case that must work
    opt_batch: int = 1  # edge inference is usually one stream
    max_batch: int = 32  # room for offline batch scoring
    min_seq: int = 1  # any length down to one step
    opt_seq: int = 0  # derived: the typical training length
    max_seq: int = 0  # derived: a margin over the longest training length
    workspace_mib: int = 1024  # fits Jetson-class memory and lets the builder choose good tactics

    _ranges = {
        "min_batch": ">= 0", "opt_batch": ">= 0", "max_batch": ">= 0", "min_seq": ">= 0", "opt_seq": ">= 0",
        "max_seq": ">= 0", "workspace_mib": ">= 1",
    }

    def _check(self) -> None:
        for dim in ("batch", "seq"):
            given = [(f"build.{end}_{dim}", getattr(self, f"{end}_{dim}")) for end in ("min", "opt", "max")]
            given = [(key, value) for key, value in given if value]
            for (a, va), (b, vb) in zip(given, given[1:]):
                if va > vb:
                    raise ConfigError(
                        f"{a} = {va} and {b} = {vb} are out of order: expected build.min_{dim} <= build.opt_{dim} "
                        f"<= build.max_{dim} among those set (0 means derive from the data)"
                    )


@dataclass(frozen=True)
class VerifyConfig(_Section):
    """How far each precision may stray from the PyTorch FP32 reference. Reduced-precision budgets are
    measured on the model (``attn_export.intrinsic``), not guessed: a row's budget is ``atol + rtol * |ref|
    + budget_multiple * intrinsic``; see README, "The verdict"."""

    fp32_atol: float = 1e-5  # fp32 runtimes differ from PyTorch only by summation order
    fp32_rtol: float = 1e-4  # the same, relative to large logits
    fp32_gpu_atol: float = 1e-4  # GPU FP32 (cuDNN, TensorRT) sums in another order: 5.4e-5 measured on an H200
    fp32_gpu_rtol: float = 1e-3  # the same, relative
    fp16_atol: float = 1e-3  # the floor under the measured budget: outputs whose own FP16 error is tiny
    fp16_rtol: float = 1e-3  # about two FP16 steps (2^-10) of the output itself
    budget_multiple: float = 4.0  # measured: an independent FP16 implementation stayed within 2.5x on every row
    mean_budget_multiple: float = 1.5  # measured means 0.3-0.9 for correct graphs, 1.9-5.4 for a 1 % weight error
    deployment_max_seq: int = 0  # 0: the training lengths and the [build] profile's max, as build derives it
    fp16_min_argmax_agreement: float = 0.995  # fp16 may flip a near tie, rarely anything else
    bf16_atol: float = 8e-3  # bf16 keeps 8 bits of mantissa: one step (2^-7) of the output is the floor
    bf16_rtol: float = 8e-3  # the same, relative
    bf16_min_argmax_agreement: float = 0.99  # bf16 rounds 8x coarser than fp16: near ties flip more often
    int8_min_argmax_agreement: float = 0.97  # int8 moves logits; the decision should mostly survive
    int8_max_accuracy_drop: float = 0.01  # one point of test accuracy is the price int8 may cost
    attention_atol_fp32: float = 1e-5  # attention weights are softmax outputs in [0, 1], checked like fp32 logits

    _ranges = {
        "fp32_atol": ">= 0", "fp32_rtol": ">= 0", "fp32_gpu_atol": ">= 0", "fp32_gpu_rtol": ">= 0",
        "fp16_atol": ">= 0", "fp16_rtol": ">= 0", "budget_multiple": ">= 0", "mean_budget_multiple": "> 0",
        "bf16_atol": ">= 0", "bf16_rtol": ">= 0", "bf16_min_argmax_agreement": "[0, 1]",
        "deployment_max_seq": ">= 0",
        "attention_atol_fp32": ">= 0", "fp16_min_argmax_agreement": "[0, 1]", "int8_min_argmax_agreement": "[0, 1]",
        "int8_max_accuracy_drop": "[0, 1]",
    }


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
_S = TypeVar("_S", bound=_Section)


def recipe_from_dict(d: Mapping[str, Any]) -> Recipe:
    """A ``Recipe`` from nested tables (parsed TOML or ``recipe_to_dict`` output); missing keys take defaults."""
    if not isinstance(d, Mapping):
        raise ConfigError(f"a recipe is a table of sections, not {_show(d)} ({type(d).__name__})")
    for name, table in d.items():
        if name not in _SECTIONS:
            raise _unknown("", str(name), table, list(_SECTIONS))
    sections = {}
    for name, cls in _SECTIONS.items():
        table = d.get(name, {})
        if not isinstance(table, Mapping):
            raise _invalid(name, table, f"a table [{name}]")
        for key, value in table.items():
            if key not in _hints(cls):
                raise _unknown(name, str(key), value, list(_hints(cls)))
        sections[name] = cls(**table)
    return Recipe(**sections)


def recipe_to_dict(recipe: Recipe) -> dict[str, dict[str, Any]]:
    """Nested plain tables, JSON- and TOML-serialisable (tuples become lists); ``recipe_from_dict`` inverts it."""
    return {
        name: {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(getattr(recipe, name)).items()}
        for name in _SECTIONS
    }


def _parse_override(item: str) -> tuple[str, str, Any]:
    """``section.key=value`` -> its parts; the value is read as TOML, else taken as a bare string."""
    target, eq, text = item.partition("=")
    section, dot, key = target.strip().partition(".")
    if not (eq and dot and section and key):
        raise ConfigError(f"override {item!r} is not valid: expected SECTION.KEY=VALUE, e.g. model.hidden_size=128")
    try:
        parsed = tomllib.loads(f"v = {text}")
    except tomllib.TOMLDecodeError:
        return section, key, text.strip()
    return section, key, parsed["v"] if parsed.keys() == {"v"} else text.strip()


def load_recipe(path: str | Path | None = None, overrides: Sequence[str] = ()) -> Recipe:
    """The recipe in ``path`` (all defaults when None), then ``overrides`` (``section.key=value``) on top."""
    recipe = Recipe()
    if path is not None:
        try:
            raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError as err:
            raise ConfigError(f"recipe file '{path}' does not exist") from err
        except (OSError, UnicodeDecodeError) as err:
            raise ConfigError(f"recipe file '{path}' cannot be read: {err}") from err
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"recipe file '{path}' is not valid TOML: {err}") from err
        try:
            recipe = recipe_from_dict(raw)
        except ConfigError as err:  # checked before the overrides, so a file's mistake is blamed on the file
            raise ConfigError(f"{path}: {err}") from err
    if not overrides:
        return recipe
    merged = recipe_to_dict(recipe)
    for item in overrides:
        section, key, value = _parse_override(item)
        merged.setdefault(section, {})[key] = value
    return recipe_from_dict(merged)


def override_section(config: _S, section: str, overrides: Sequence[str]) -> _S:
    """``config`` (the ``[section]`` table) with ``section.key=value`` overrides applied, checked like a
    recipe; an override of another section is refused (it would not take effect here)."""
    if not overrides:
        return config
    table = recipe_to_dict(Recipe(**{section: config}))[section]
    for item in overrides:
        name, key, value = _parse_override(item)
        if name != section:
            raise ConfigError(f"override {item!r} is not valid here: expected {section}.KEY=VALUE (the other "
                              f"sections were fixed when the model was trained)")
        if key not in table:
            raise _unknown(section, key, value, list(_hints(type(config))))
        table[key] = value
    return getattr(recipe_from_dict({section: table}), section)  # type: ignore[no-any-return]
