"""The recipe's schema machinery and the two tables the device reads: ``[verify]`` and ``[build]``.

Types are checked from the field annotations, ranges from each class's ``_ranges``, rules spanning fields
in its ``_check``; every problem is a one-line ``ConfigError`` naming the key, the value, what was expected
and, for a typo, the closest valid key. The host's ``attn_export.config`` builds the other stages' tables
and the whole ``Recipe`` on the same machinery; a device reads the ``[verify]`` and ``[build]`` tables of
the recipe recorded in ``model.json`` with ``recorded_sections``.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import sys
from dataclasses import dataclass
from typing import Any, ClassVar, Dict, List, Literal, Mapping, Optional, Sequence, Tuple, Type, TypeVar, get_args, get_origin, get_type_hints

from ..errors import ConfigError
from .schema import MAX_DEPTH

__all__ = ["BuildConfig", "VerifyConfig", "not_default", "override_section", "parse_override", "recorded_sections",
           "section_from_table", "section_to_table"]

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


def _unknown(section: str, name: str, value: Any, valid: List[str],
             sections: Optional[Mapping[str, Any]] = None) -> ConfigError:
    """An unknown key in ``section``, or an unknown section when ``section`` is empty; ``sections`` (name ->
    config class) lets the hint name the right table for a key written in the wrong one."""
    prefix, kind = (f"{section}.", f"[{section}] keys") if section else ("", "sections")
    printable = repr(name)[1:-1]  # a key may hold a newline or a control character; the message stays one line
    hint = [prefix + m for m in difflib.get_close_matches(name, valid, n=1)]
    hint = hint or [f"{s}.{name}" for s, cls in (sections or {}).items() if name in _hints(cls)]
    shown = "" if isinstance(value, Mapping) else f" = {_show(value)}"
    did_you_mean = f"; did you mean '{hint[0]}'?" if hint else ""
    return ConfigError(
        f"recipe {'key' if section else 'section'} '{prefix}{printable}'{shown} is unknown{did_you_mean} "
        f"(valid {kind}: {', '.join(valid)})"
    )


MAX_ITEMS = 16  # entries of a list field: one per layer, and model.num_layers <= 16 too


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
        if len(value) > MAX_ITEMS:
            raise ConfigError(f"{key} has {len(value):,} entries; expected at most {MAX_ITEMS} (a list in a "
                              "recipe describes layers, and a model has at most 16)")
        return tuple(_convert(f"{key}[{i}]", v, args[0]) for i, v in enumerate(value))
    # bool is an int to Python but not to a recipe; an int beyond float's range stays an int and fails below.
    if tp is float and type(value) is int and abs(value) <= sys.float_info.max:
        value = float(value)
    if not isinstance(value, tp) or (isinstance(value, bool) and tp is not bool):
        quoted = (f" (a number is read as one: quote it, --set '{key}=\"{value}\"' or {key} = \"{value}\" in a recipe)"
                  if tp is str and isinstance(value, (int, float)) and not isinstance(value, bool) else "")
        raise _invalid(key, value, _EXPECTED[tp][0] + quoted)
    if tp is float and not math.isfinite(value):
        raise _invalid(key, value, _EXPECTED[tp][0])
    return value


def _bound(text: str) -> Any:
    """A range's bound: an integer stays exact (2**64 - 1 is not a float), anything else is a float."""
    text = text.strip()
    return int(text) if text.lstrip("-").isdigit() else float(text)


def _within(v: Any, spec: str) -> bool:
    """``v`` against one comparison ("> 0", "<= 8192") or an interval ("[0, 1)")."""
    if spec[0] in "<>":
        op, text = spec.split()
        bound = _bound(text)
        return {">": v > bound, ">=": v >= bound, "<": v < bound, "<=": v <= bound}[op]
    lo, hi = (_bound(x) for x in spec[1:-1].split(","))
    return (lo < v or (spec[0] == "[" and v == lo)) and (v < hi or (spec[-1] == "]" and v == hi))


def _check_range(key: str, value: Any, spec: str) -> None:
    """``value`` (each element of a tuple) must lie in ``spec``: "> 0", ">= 1", an interval such as "[0, 1)",
    or comparisons joined by "and" ("> 0 and <= 8192")."""
    for k, v in [(f"{key}[{i}]", v) for i, v in enumerate(value)] if isinstance(value, tuple) else [(key, value)]:
        if not all(_within(v, part) for part in spec.split(" and ")):
            where = spec if spec[0] in "<>" else f"in {spec}"
            raise ConfigError(f"{k} = {_show(v)} is out of range: expected a value {where}")


def _hints(cls: type) -> Dict[str, Any]:
    """Field name -> resolved annotation, in declaration order (ClassVars left out)."""
    hints = get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


@dataclass(frozen=True)
class _Section:
    """Base of the stage configs: every field is checked on construction, from a file or from Python."""

    _ranges: ClassVar[Mapping[str, str]] = {}  # field -> allowed range; a tuple field applies it per element

    def __post_init__(self) -> None:
        section = type(self).__name__[: -len("Config")].lower()  # ModelConfig -> [model]
        for name, tp in _hints(type(self)).items():
            value = _convert(f"{section}.{name}", getattr(self, name), tp)
            object.__setattr__(self, name, value)  # frozen: normalise before anyone can see the object
            if name in self._ranges:
                _check_range(f"{section}.{name}", value, self._ranges[name])
        self._check()

    def _check(self) -> None:
        """Rules that span several fields; a section with any overrides this."""


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
        "min_batch": ">= 0 and <= 4096", "opt_batch": ">= 0 and <= 4096", "max_batch": ">= 0 and <= 4096",
        "min_seq": ">= 0 and <= 1000000", "opt_seq": ">= 0 and <= 1000000", "max_seq": ">= 0 and <= 1000000",
        "workspace_mib": ">= 1 and <= 1048576",
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


# the longest deployment range the sweep covers (``compare.sweep_cases``), past ``export.parity_max_seq`` too: a
# range set longer is refused, and a derived one stops here (``verify.deployment_max_seq``), so that no verdict
# claims lengths no case had
DEPLOY_CASES_MAX = 8192


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

    # a tolerance past 1 (or a budget 100 times the measured error) would pass any model: bounded like sizes
    _ranges = {
        "fp32_atol": "[0, 1]", "fp32_rtol": "[0, 1]", "fp32_gpu_atol": "[0, 1]", "fp32_gpu_rtol": "[0, 1]",
        "fp16_atol": "[0, 1]", "fp16_rtol": "[0, 1]", "budget_multiple": ">= 0 and <= 100",
        "mean_budget_multiple": "> 0 and <= 100", "bf16_atol": "[0, 1]", "bf16_rtol": "[0, 1]",
        "bf16_min_argmax_agreement": "[0, 1]", "deployment_max_seq": f">= 0 and <= {DEPLOY_CASES_MAX}",
        "attention_atol_fp32": "[0, 1]", "fp16_min_argmax_agreement": "[0, 1]", "int8_min_argmax_agreement": "[0, 1]",
        "int8_max_accuracy_drop": "[0, 1]",
    }


_S = TypeVar("_S", bound=_Section)


def parse_overrides(items: Sequence[str]) -> List[Tuple[str, str, Any]]:
    """``parse_override`` of each of ``applied_overrides(items)``."""
    return [parse_override(item) for item in applied_overrides(items)]


def applied_overrides(items: Sequence[str]) -> List[str]:
    """The overrides that take effect: of a key given twice, the last, as a command line's later word wins, in
    the place of the first (found by attacking: both were recorded beside a verdict, which read as either). An
    item that is no string is refused (it was an AttributeError)."""
    applied: Dict[Tuple[str, str], str] = {}
    for item in items:
        if not isinstance(item, str):
            raise ConfigError(f"override {item!r} is of type {type(item).__name__}; expected a SECTION.KEY=VALUE string, "
                              "e.g. 'model.hidden_size=128'")
        section, key, _ = parse_override(item)
        applied[section, key] = item
    return list(applied.values())


def parse_override(item: str) -> Tuple[str, str, Any]:
    """``section.key=value`` -> its parts; the value is read as TOML (Python 3.11+), else as JSON (the
    device's Python 3.8: numbers, booleans and lists read the same), else taken as a bare string."""
    target, eq, text = item.partition("=")
    section, dot, key = target.strip().partition(".")
    if not (eq and dot and section and key):
        raise ConfigError(f"override {item!r} is not valid: expected SECTION.KEY=VALUE, e.g. model.hidden_size=128")
    _check_nesting(text, f"override {_show(item)}", "a value such as 128, \"name\" or [16, 32]")
    return section, key, _parse_value(text)




def _nesting(text: str) -> int:
    """How deep ``[`` and ``{`` nest in TOML or JSON ``text``, outside strings and ``#`` comments: checked
    before parsing, because tomllib and json recurse once per level and die of a RecursionError."""
    depth = deepest = i = 0
    n = len(text)
    while i < n:
        c = text[i]
        if c in "\"'":
            close = c * 3 if text.startswith(c * 3, i) else c
            i += len(close)
            while i < n and not text.startswith(close, i):
                if len(close) == 1 and text[i] == "\n":  # an unterminated one-line string: the parser says so
                    break
                i += 2 if c == '"' and text[i] == "\\" else 1  # a basic string's escape hides the next character
            i += len(close)
        elif c == "#":
            end = text.find("\n", i)
            i = n if end < 0 else end
        else:
            if c in "[{":
                depth += 1
                deepest = max(deepest, depth)
            elif c in "]}":
                depth = max(depth - 1, 0)
            i += 1
    return deepest


def _check_nesting(text: str, what: str, expected: str) -> None:
    """A recipe nests 2 deep ([section] key = [list]); tomllib dies at about 500 levels: bounded as JSON is."""
    if _nesting(text) > MAX_DEPTH:
        raise ConfigError(f"{what} is nested deeper than {MAX_DEPTH} levels; expected {expected}")


def _parse_value(text: str) -> Any:
    toml = _toml()
    if toml is not None:
        try:
            parsed = toml.loads(f"v = {text}")
        except toml.TOMLDecodeError:
            return text.strip()
        return parsed["v"] if parsed.keys() == {"v"} else text.strip()
    try:
        return json.loads(text)
    except ValueError:
        return text.strip()


def _toml() -> Any:
    """tomllib (3.11+), else None."""
    try:
        import tomllib
    except ImportError:
        return None
    return tomllib


def section_from_table(cls: Type[_S], table: Any) -> _S:
    """One section (``[verify]``, ``[build]``, ...) from its table, checked like a recipe."""
    name = cls.__name__[: -len("Config")].lower()
    if not isinstance(table, Mapping):
        raise _invalid(name, table, f"a table [{name}]")
    for key, value in table.items():
        if key not in _hints(cls):
            raise _unknown(name, str(key), value, list(_hints(cls)))
    return cls(**table)


def section_to_table(config: _Section) -> Dict[str, Any]:
    """A section as a plain table, JSON- and TOML-serialisable (tuples become lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(config).items()}


def not_default(config: _Section, overrides: Sequence[str] = ()) -> List[str]:
    """``config``'s values that are not its class's defaults, "key=value (default d)", in declaration order; the
    keys ``overrides`` (``section.key=value``) set are left out, said with them (found by review)."""
    out = []
    overridden = {parse_override(item)[1] for item in overrides}
    for f in dataclasses.fields(config):  # every field of a section has a plain default
        if getattr(config, f.name) != f.default and f.name not in overridden:
            out.append(f"{f.name}={_show(getattr(config, f.name))} (default {_show(f.default)})")
    return out


def override_section(config: _S, section: str, overrides: Sequence[str]) -> _S:
    """``config`` (the ``[section]`` table) with ``section.key=value`` overrides applied, checked like a
    recipe; an override of another section is refused (it would not take effect here)."""
    if not overrides:
        return config
    table = section_to_table(config)
    for item in applied_overrides(overrides):
        name, key, value = parse_override(item)
        if name != section:
            raise ConfigError(f"override {item!r} is not valid here: expected {section}.KEY=VALUE (the other "
                              f"sections were fixed when the model was trained)")
        if key not in table:
            raise _unknown(section, key, value, list(_hints(type(config))))
        # the recipe's own value: no change, yet recorded as one (a bundle said it was verified "not with the
        # recipe's own [verify] settings"; found by attacking)
        if getattr(section_from_table(type(config), {**section_to_table(config), key: value}), key) == \
                getattr(config, key):
            raise ConfigError(f"override {item!r} changes nothing: {section}.{key} is already "
                              f"{getattr(config, key)!r} in the recipe; expected another value, or no --set")
        table[key] = value
    return section_from_table(type(config), table)


def recorded_sections(recipe: Any) -> Tuple[VerifyConfig, BuildConfig]:
    """The ``[verify]`` and ``[build]`` tables of a recipe recorded in ``model.json`` (missing keys take
    their defaults), checked like a recipe: what the device reads of it."""
    recipe = recipe if isinstance(recipe, Mapping) else {}
    return (section_from_table(VerifyConfig, recipe.get("verify", {})),
            section_from_table(BuildConfig, recipe.get("build", {})))

