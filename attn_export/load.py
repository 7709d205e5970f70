"""Importing models made elsewhere: a user's AttentionLSTM state_dict, or another attn-export artefact
directory.

    attn-export load user.pt DIR
    attn-export load user.pt DIR --map attention=score --map fc=head

A state_dict is read as parts: one nn.LSTM, nn.Conv1d layers, nn.Linear layers and loose parameters
(tensors that belong to no Linear, such as an attention vector ``v = nn.Parameter(torch.randn(A))``). The
parts are recognised by their shapes, not their names, because every user names them differently. With D
the LSTM's output size (hidden size, doubled when bidirectional), the roles are:

* ``lstm``: the one nn.LSTM (batch_first, any number of layers, bidirectional or not);
* ``conv``: Conv1d layers before the LSTM, each followed by a ReLU in the user's module, with odd kernels
  and padding k // 2 (what keeps the sequence length); they run in checkpoint order, or in the order
  ``conv.0``, ``conv.1``... given with ``--map``;
* ``score``: a Linear(D, 1) giving each step's score (the classic snippet's ``fc``);
* ``key`` + ``energy``: the additive score ``v . tanh(W h_t + b)``: ``key`` is W, a Linear(D, A), and
  ``energy`` is v, a Linear(A, 1) or a parameter of shape (A,), (1, A) or (A, 1) (a bias of v adds the same
  to every step's score, which the softmax ignores: it is dropped);
* ``head``: a Linear(D, C) on the context vector; without one the model returns the context itself;
* ``none``: a part that is not the model's, left out (only ``--map`` gives this role).

Every part must take a role, and the model needs an LSTM and a score (``score`` or ``key`` + ``energy``).
Of all assignments of roles to the parts that fit their shapes, exactly one must remain, or ``--map
PREFIX=ROLE`` must name the parts until one does. So a Linear(D, 1) with a Linear(D, C) is the score and
the head; the classic snippet (``lstm`` + ``fc`` of shape (1, H)) is a score without a head, as it always
was; two Linear(D, 1) layers (a score and a one-output head) are ambiguous, as are an additive Linear(D, A)
and a head with C == A, and a Linear(D, 1) beside a lone Linear(D, D) (a score and a head, or W and v: found
by attacking, ``nn.Sequential(Linear(D, D), Tanh(), Linear(D, 1))`` was read as a head and a score).

In a torch file, whose keys usually keep the order the user's module made its submodules, a Linear stored
before the LSTM whose shape could feed it (an input projection (E, F) or an embedding (V, E), E the LSTM's
input) takes no role unless ``--map`` gives it one: an ``nn.Embedding(V, D)`` had been read as a head of V
classes. A .safetensors file keeps no order (safetensors returns its keys in an order that changes between
runs: they are sorted here), so its Conv1d layers run in the one order whose channels chain; nor does a loose
parameter, which comes before its module's submodules.

The one reading that fits is refused, unless ``--map`` confirms it, where the same shapes are a model
attn-export does not have (``_doubtful``): a score and a two-Linear head, a projection read by the score and
the context, a score and a head beside a tensor of something else, a dot-product score with a learned
query (or a v named as a query), an embedding, an activation before a part inside its nn.Sequential, W and
v that may have nothing between them (consecutive members of one nn.Sequential or nn.ModuleList); and so is
a Conv1d stored after the LSTM in a torch file. A normalisation layer is refused
outright; tensors of integers or booleans (buffers) take no role. A loss function's weights kept in the
state_dict (a Lightning module's ``criterion.weight``, a ``class_weights`` or ``pos_weight`` tensor) are left
out, and ``load`` says so: a ``class_weights`` of C values had been read as an additive v.

A ``module.`` prefix (DataParallel) is dropped. The weights cannot tell a classifier from a regressor: a head
imports as classification (labels "0" ... "C-1", what ``predict`` prints for them anyway), or as regression
when the recipe says ``model.head = "regression"``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any
from dataclasses import dataclass, replace
from itertools import permutations
from pathlib import Path

import torch

from .checkpoint import load_model, read_state_dict, save_model
from .config import (ADDITIVE_ONLY, UNNAMED_DATA_KEYS, DataConfig, ModelConfig, Recipe, TrainConfig, recipe_from_dict,
                     recipe_table, refuse_misplaced_positive)
from .errors import ConfigError, DataError, shell_word
from .model import STATE_PARTS, AttentionLSTM
from .runtime import store
from .runtime.settings import _show, applied_overrides, parse_override
from .train import refuse_unread_model_keys

__all__ = ["Layout", "load_checkpoint", "parse_mapping", "recognise", "state_dict_to_model"]

_ROLE_LIST = "lstm, conv, conv.N (N = 0, 1, ...), score, key, energy, head, none (not part of the model)"
_CONV_INDEX = re.compile(r"conv\.(\d+)$")
_LSTM_KEY = re.compile(r"(weight_ih|weight_hh|bias_ih|bias_hh)_l(\d+)(_reverse)?$")
# the complete models one LSTM (and its convs) can feed: an additive key + energy or a score, then a head;
# additive first, so that an ambiguity's suggested --map is the likelier reading (v is rarely a plain score)
_TEMPLATES = (("key", "energy", "head"), ("key", "energy"), ("score", "head"), ("score",))
_READING_ROLES = ("score", "key", "energy", "head")
_SHOWN = 12  # parts listed in an error before "and N more": one line stays readable
_NEEDS = {
    "lstm": "an nn.LSTM",
    "conv": "an nn.Conv1d",
    "score": "a Linear(D, 1)",
    "key": "a Linear(D, A) with A >= 2",
    "energy": "v, a Linear(A, 1) or a parameter of shape (A,), (1, A) or (A, 1)",
    "head": "a Linear(D, C)",
    "none": "anything: left out, the model's outputs then never read it",
}


@dataclass(frozen=True)
class _Part:
    """One module of the user's state_dict (its tensors by short name), or one loose parameter."""

    name: str  # the module's prefix ("attention", "features.0"), or a loose parameter's whole key ("v")
    kind: str  # lstm | conv | linear | param
    tensors: dict[str, torch.Tensor]  # short name -> tensor; a loose parameter's one tensor is under ""

    @property
    def weight(self) -> torch.Tensor:
        return self.tensors["weight"] if self.kind in ("linear", "conv") else self.tensors[""]

    @property
    def bias(self) -> torch.Tensor | None:
        return self.tensors.get("bias")

    def describe(self) -> str:
        """How an error lists the part: the LSTM by its sizes, anything else by its weight's shape."""
        if self.kind == "lstm":
            lstm = _LstmShape.of(self)
            layers = f"{lstm.layers} layer{'s' if lstm.layers > 1 else ''}"
            kind = ", bidirectional" if lstm.bidirectional else ""
            return f"{self.name} ({layers}{kind}, input {lstm.input}, hidden {lstm.hidden})"
        if self.kind == "param":
            return f"{self.name} {_shape(self.weight)}"
        return f"{self.name}.weight {_shape(self.weight)}{'' if self.bias is not None else ' no bias'}"


@dataclass(frozen=True)
class _LstmShape:
    """An nn.LSTM's sizes, as its weights tell them."""

    layers: int
    bidirectional: bool
    input: int
    hidden: int

    @classmethod
    def of(cls, part: _Part) -> _LstmShape:
        layers = 1 + max(int(m.group(2)) for k in part.tensors if (m := _LSTM_KEY.match(k)))
        bidirectional = any(k.endswith("_reverse") for k in part.tensors)
        w_ih = part.tensors["weight_ih_l0"]
        gates = part.tensors.get("weight_hh_l0", w_ih).shape[0]
        return cls(layers, bidirectional, w_ih.shape[1], gates // 4)

    @property
    def output(self) -> int:
        return self.hidden * (2 if self.bidirectional else 1)

    def expected(self, bias: bool) -> dict[str, tuple[int, ...]]:
        """The shapes nn.LSTM(input, hidden, layers, bias, bidirectional) has, by short name."""
        shapes: dict[str, tuple[int, ...]] = {}
        for layer in range(self.layers):
            for suffix in ("", "_reverse") if self.bidirectional else ("",):
                inp = self.input if layer == 0 else self.output
                shapes[f"weight_ih_l{layer}{suffix}"] = (4 * self.hidden, inp)
                shapes[f"weight_hh_l{layer}{suffix}"] = (4 * self.hidden, self.hidden)
                if bias:
                    shapes[f"bias_ih_l{layer}{suffix}"] = (4 * self.hidden,)
                    shapes[f"bias_hh_l{layer}{suffix}"] = (4 * self.hidden,)
        return shapes


@dataclass(frozen=True)
class Layout:
    """What a state_dict was recognised as: each role's part (None when the model has none)."""

    lstm: _Part
    convs: tuple[_Part, ...]
    score: _Part | None
    key: _Part | None
    energy: _Part | None
    head: _Part | None
    left_out: tuple[str, ...] = ()  # a loss function's weights kept in the state_dict (``_loss_weight``)
    unused: tuple[str, ...] = ()  # what ``--map NAME=none`` left out
    buffers: tuple[str, ...] = ()  # tensors of integers or booleans (classes, masks): no weights


@store.writes_directory("load")
def load_checkpoint(source: Path, directory: Path, recipe: Recipe, mapping: Sequence[str] = (),
                    overrides: Sequence[str] = (), data_given: bool = False, recipe_file: Path | None = None) -> str:
    """Write ``source``'s model into ``directory``; returns a one-line summary of what was imported.

    ``mapping`` holds ``--map PREFIX=ROLE`` values; ``overrides`` the ``--set`` items the recipe was made
    with (a ``model.*`` one the weights contradict is refused: the weights decide the shapes). Everything is
    checked before ``directory`` is made, so a checkpoint that is not recognised leaves nothing behind.
    ``data_given``: the recipe's ``[data]`` is the model's (``config.names_data``: the data is named), and
    is refused where the weights contradict it; if not, the model records ``data.name = "none"``, which
    nothing judges or calibrates on, and the recipe's ``config.UNNAMED_DATA_KEYS`` (the gap policy).
    ``recipe_file``: the ``--recipe`` given, refused (as ``--set`` is) for an artefact directory, which is
    copied as it is.
    """
    roles = parse_mapping(mapping)
    applied = applied_overrides(overrides)  # each key's last, which is what a message about it must quote
    parsed = [parse_override(o) for o in applied]
    trained = [o for o, (section, _, _) in zip(applied, parsed) if section == "train"]
    # where each model setting came from: a recipe's [model] table is held to the weights as --set is (found by
    # attacking: hidden_size = 64 over a hidden-12 checkpoint was overwritten without a word)
    # key -> (where it was set, that with its value)
    asked = {key: (f"the recipe's model.{key}", f"the recipe's model.{key} = {value!r}")
             for key, value in recipe_table(recipe_file, "model").items()}
    asked.update({key: (f"--set model.{key}", f"--set {o}")
                  for o, (section, key, _) in zip(applied, parsed) if section == "model"})
    if source.is_dir():
        if roles:
            raise DataError(f"--map names the parts of a state_dict; {source} is an artefact directory, which load "
                            "copies as it is: expected a .pt, .pth or .safetensors file")
        model, info = load_model(source)
        given = [f"--set {o}" for o in overrides] + ([f"--recipe {recipe_file}"] if recipe_file is not None else [])
        if given:  # found by attacking: data.* and train.* ones (and a recipe) were ignored, exit 0
            raise ConfigError(f"{given[0]}: an artefact directory is copied as it is, its recipe included; expected "
                              "no --set or --recipe (train a new model, or load its checkpoint, to change it)")
        if source.resolve() == directory.resolve():
            return f"{source} is already an artefact directory; nothing to do"
        save_model(directory, model, recipe_from_dict(dict(info.recipe)), info.labels, command="load",
                   source=str(source), train_lengths=info.train_lengths, feature_names=info.feature_names,
                   parent_sha256=store.sha256_file(source / store.WEIGHTS))
        return f"imported attn-export model from {source} -> {directory}"
    if trained:  # recorded in model.json as if used (found by attacking: a floor that no report applied)
        raise ConfigError(f"--set {trained[0]}: a loaded model is not trained here, so train.* settings do nothing; "
                          "expected no train.* override")
    weights = directory / store.WEIGHTS
    if weights.is_file() and source.is_file() and source.samefile(weights):  # found by attacking: replaced, exit 0
        raise DataError(f"{source} is {directory}'s {store.WEIGHTS}, which load would replace with the model it "
                        f"imports (its own names, nothing else kept); expected the checkpoint outside {directory}, "
                        "or another directory to load into")
    state, found = read_state_dict(source)
    _refuse_own_state(state, source)
    layout = recognise(state, roles, source.name, ordered=source.suffix.lower() != ".safetensors")
    model = state_dict_to_model(layout, recipe.model)
    cfg = model.config
    for key, (where, said) in asked.items():
        if cfg.attention == "linear" and key in ADDITIVE_ONLY:
            raise ConfigError(f"{where}: {source.name} has a linear score (Linear(D, 1)), "
                              f"which has no {key}; expected no model.{key} override (it applies to an additive "
                              "score only)")
        if getattr(cfg, key) != getattr(recipe.model, key):
            raise ConfigError(f"{said} contradicts {source.name}, whose "
                              f"weights make it {_show(getattr(cfg, key))}; expected no override of what the weights "
                              "decide")
    refuse_unread_model_keys(cfg, f"over {source.name}'s one-layer LSTM", "no model.dropout")  # as train does
    refuse_misplaced_positive(replace(recipe, model=cfg))  # before the data's labels are ordered by it
    splits = None
    if not data_given:  # the default recipe's synthetic data is not this model's: nothing is judged on it
        recipe = replace(recipe, data=DataConfig(name="none", **{key: getattr(recipe.data, key)
                                                                 for key in UNNAMED_DATA_KEYS}))
    else:
        splits = _refuse_other_data(recipe.data, model, source)
    labels = (("0", "1") if cfg.head == "binary" else
              tuple(str(i) for i in range(model.num_outputs)) if cfg.head == "classification" else ())
    # with its data named, the model's classes are the data's, in the order verify and quantize map them to
    # the outputs (train's order), and its feature names the data's: predict compared "1" with output "1"
    # while verify scored "1" as output 0, two accuracies of one file (found by attacking)
    if splits is not None and labels:
        labels = tuple(splits.labels)
    # a recipe's [train] describes a training that did not happen here: recorded, its floor read as this
    # model's while nothing applied it (found by attacking: verify PASSED at 0.26 under a 0.99 floor)
    unused = sorted(recipe_table(recipe_file, "train"))
    save_model(directory, model, replace(recipe, model=cfg, train=TrainConfig()), labels,
               command=f"load {source.name}", source=source.name, parent_sha256=store.sha256_file(source),
               feature_names=None if splits is None else splits.features)
    read = f" (read {found})" if found else ""
    return (f"imported AttentionLSTM from {source}{read}: {_summary(layout, model)} -> {directory}"
            + (f"; the recipe's [train] ({', '.join(unused)}) is not applied to a loaded model (recorded as the "
               "defaults)"
               if unused else ""))


def _refuse_other_data(data: DataConfig, model: AttentionLSTM, source: Path) -> Any:
    """The named data's splits (``data.Splits``), refused when the weights contradict its features or classes
    (found by a user: JapaneseVowels' 12 features over a 4-feature model loaded, and verify passed it with no
    test split). Data that cannot be read is refused as train refuses it: the model's class names are the
    data's (found by attacking: a data file that did not exist yet loaded with classes 0..C-1, and predict then
    refused the file's own labels)."""
    from .data import load_splits

    splits = load_splits(data)
    if splits.train.features != model.input_size:
        raise ConfigError(f"the recipe's data ({splits.source}) has {splits.train.features} features per step, "
                          f"{source.name}'s model {model.input_size}; expected the data it was trained on")
    classes = {"classification": model.num_outputs, "binary": 2}.get(model.config.head)
    if classes is not None and len(splits.labels) != classes:
        raise ConfigError(f"the recipe's data ({splits.source}) has {len(splits.labels)} classes, {source.name}'s "
                          f"{model.config.head} head {classes}; expected the data it was trained on")
    return splits


def _refuse_own_state(state: dict[str, torch.Tensor], source: Path) -> None:
    """attn-export's own weights (its ``mean``/``std`` normalisation buffers beside ``lstm.*``) are not a
    user's module: as parts, they fit no layout, and the error listed them as if they were one (found by
    attacking: ``load DIR/model.safetensors``). Its directory, which holds what the weights cannot say (the
    recipe, labels, features), is what load copies."""
    # every key one of our model's: a user's module with its own mean/std buffers beside its own names is
    # the user's, and was told it was attn-export's (found by attacking)
    keys = {k.removeprefix("module.") for k in state}  # as recognise reads them (DataParallel's prefix dropped)
    if not {"mean", "std", "lstm.weight_ih_l0"} <= keys or any(k.split(".", 1)[0] not in STATE_PARTS for k in keys):
        return
    folder = source.parent if source.name == store.WEIGHTS and (source.parent / store.MODEL_JSON).is_file() else None
    where = (f"load its artefact directory instead: attn-export load {shell_word(folder)} NEWDIR"
             if folder is not None else
             "load the artefact directory it came from (attn-export load DIR NEWDIR), which holds its recipe and "
             "labels")
    raise DataError(f"{source} holds attn-export's own model weights (normalisation buffers mean and std beside "
                    f"lstm.*), not a module of your own; {where}")


def parse_mapping(items: Sequence[str]) -> list[tuple[str, str]]:
    """``PREFIX=ROLE`` strings as (prefix, role) pairs; a ``module.`` prefix (DataParallel) is dropped, as it
    is from the checkpoint's keys."""
    pairs = []
    for item in items:
        prefix, sep, role = (s.strip() for s in item.partition("="))
        if not sep or not prefix or not role:
            raise DataError(f"--map {item!r} is not PREFIX=ROLE: expected a prefix of the checkpoint's keys, '=' and "
                            f"a role ({_ROLE_LIST}), e.g. --map attention=score")
        if role not in _NEEDS and not _CONV_INDEX.match(role):
            raise DataError(f"--map {item!r}: {role!r} is not a role; expected one of {_ROLE_LIST}")
        pairs.append((prefix.removeprefix("module."), role))
    return pairs


def recognise(state: dict[str, torch.Tensor], mapping: Sequence[tuple[str, str]] = (),
              origin: str = "checkpoint", ordered: bool = True) -> Layout:
    """The one layout that ``state``'s shapes (and the roles in ``mapping``) allow; see the module docstring.
    ``ordered``: ``state``'s keys are in the order the user's module made its parts (a torch file's are; a
    .safetensors file's are sorted).

    Raises a one-line ``DataError`` that lists the parts found and what the model needs otherwise.
    """
    # a buffer of integers or booleans (classes, a mask, a step count) holds no weights: never a role (found by
    # attacking: an int64 ``classes`` was read as v, at load's own suggestion)
    numbers = {k: v for k, v in state.items() if not (v.is_floating_point() or v.is_complex())}
    # but one named as a weight is one stored as integers (a quantised checkpoint): dropped, the model imported
    # without it, a bias of 0 (found by attacking)
    named = next((k for k in numbers if re.search(r"(^|\.)(weight|bias)(_[hi]{2}_l\d+(_reverse)?)?$", k)), None)
    if named is not None:
        kind = "booleans" if state[named].dtype == torch.bool else "integers"
        raise DataError(f"{origin}: {named} is {_shape(state[named])} of {str(state[named].dtype).removeprefix('torch.')}, "
                        f"{kind} where a weight belongs; expected floating-point weights (a quantised checkpoint: "
                        "dequantise it, or load the float model it was made from)")
    parts = _parts({k.removeprefix("module."): v for k, v in state.items() if k not in numbers})
    every = {p.name for p in parts}  # before any is left out: a part left out still holds its weights
    roles = _mapped_roles(parts, mapping)
    left_out = tuple(p.name for p in parts if p.kind == "param" and p.name not in roles and _loss_weight(p.name))
    unused = tuple(name for name, role in roles.items() if role == "none")
    parts = [p for p in parts if p.name not in left_out and p.name not in unused]
    norm = next((p for p in parts if p.kind == "norm"), None)
    if norm is not None:
        shapes = ", ".join(f"{k} {_shape(v)}" for k, v in norm.tensors.items())
        raise DataError(f"{origin}: {norm.name} is a normalisation layer or a PReLU (LayerNorm, BatchNorm, RMSNorm: "
                        f"{shapes}), which attn-export's model does not have, so no import computes what yours does; "
                        "expected an LSTM, an attention score and a head (with Conv1d layers before the LSTM)")
    lstms = [p for p in parts if p.kind == "lstm"]
    projected = next((k for k in state if re.search(r"(^|\.)weight_hr_l\d+(_reverse)?$", k)), None)
    if projected is not None:
        raise DataError(f"{origin}: {projected} is {_shape(state[projected])}: an nn.LSTM with proj_size, which "
                        "attn-export's model does not have; expected an LSTM without proj_size (its hidden state "
                        "is what the attention scores)")
    if not lstms:
        raise _unrecognised(origin, "no LSTM (keys NAME.weight_ih_l0, NAME.weight_hh_l0, ...), so it is not the "
                                    "classic AttentionLSTM nor another layout load knows", parts, None)
    if len(lstms) > 1:
        names = ", ".join(p.name for p in lstms)
        raise _unrecognised(origin, f"{len(lstms)} LSTMs ({names}); the model has one", parts, None)
    lstm = lstms[0]
    _check_lstm(lstm, origin)
    d = _LstmShape.of(lstm).output
    feeds = _LstmShape.of(lstm).input
    if feeds < 1:  # found by attacking: a traceback from torch, exit 1
        raise DataError(f"{origin}: {lstm.name}.weight_ih_l0 is {_shape(lstm.tensors['weight_ih_l0'])}: an LSTM of 0 "
                        "input features; expected at least one")
    # a module's own parameters come before its children's in its state_dict, so only modules tell an order;
    # and only a shape that could feed the LSTM (an attention Linear made first, or keys saved sorted, are
    # not refused: found by review)
    before = next((p for p in parts[:parts.index(lstm)] if ordered and p.kind == "linear" and p.name not in roles
                   and _could_feed(p, feeds)), None)
    if before is not None:
        raise DataError(f"{origin}: {before.describe()} is stored before the LSTM {lstm.name} and could feed its input "
                        f"of {feeds}: an input projection or an embedding, which the model does not have; expected "
                        f"the score and head after the LSTM (if {before.name} runs after it, give its role: --map "
                        f"{before.name}=ROLE, ROLE one of score, key, head)")
    for part in parts:
        role = roles.get(part.name)
        if role is not None and not _fits(part, role, d):
            raise DataError(f"--map {part.name}={role}: {part.describe()} cannot be the {role}, which is "
                            f"{_NEEDS[_role_kind(role)]}, with D = {d} the LSTM's output size")
    misfits = [p for p in parts if p.kind in ("linear", "param") and not any(_fits(p, r, d) for r in _READING_ROLES)]
    if misfits:
        shapes = " and ".join(f"{p.name}{'.weight' if p.kind == 'linear' else ''} has shape {_shape(p.weight)}"
                              for p in misfits)
        raise _unrecognised(origin, f"{shapes}, which fit{'s' if len(misfits) == 1 else ''} no role", parts, d,
                            f"--map {misfits[0].name}=none if the model's outputs never read it")
    after = [p for p in parts[parts.index(lstm):] if ordered and p.kind == "conv" and p.name not in roles]
    if after:  # found by attacking: a Conv1d on the LSTM's outputs was run before it
        shared = {p.name.rpartition(".")[0] for p in after}
        parent = shared.pop() if len(shared) == 1 else ""
        whole = bool(parent) and all(p in after for p in parts if p.kind == "conv" and p.name.startswith(parent + "."))
        confirm = f"--map {parent}=conv" if whole else " ".join(f"--map {p.name}=conv" for p in after)
        raise DataError(f"{origin}: {after[0].describe()} is stored after the LSTM {lstm.name}: a Conv1d on its "
                        f"outputs, which the model does not have; expected Conv1d layers before the LSTM (if they run "
                        f"before it, say so: {confirm})")
    convs = _conv_order(parts, roles, _LstmShape.of(lstm).input, origin, d, ordered)
    items = [p for p in parts if p.kind in ("linear", "param")]
    readings = _readings(items, d, roles)
    if not readings:
        given = " with the --map roles given" if mapping else ""
        problem = (f"no layout fits {', '.join(p.name for p in items)}{given}: the model needs a score, and every "
                   "part a role (--map NAME=none leaves out one that is not the model's)") if items else \
            "no score after the LSTM"
        raise _unrecognised(origin, problem, parts, d)
    if len(readings) > 1:
        shown = "; or ".join(" + ".join(f"{role} {part.name}" for role, part in r.items()) for r in readings)
        example = " ".join(f"--map {part.name}={role}" for role, part in readings[0].items())
        raise _unrecognised(origin, f"the layout is ambiguous, {len(readings)} readings fit: {shown}", parts, d,
                            example)
    reading = readings[0]
    head = reading.get("head")
    if head is not None and head.weight.shape[0] < 1:  # found by attacking: written, then refused by every command
        raise DataError(f"{origin}: the head {head.name} is {_shape(head.weight)}: 0 outputs; expected at least one")
    doubt = _doubtful(reading, every, roles, d, ordered, feeds)
    if doubt is not None:
        example = " ".join(f"--map {part.name}={role}" for role, part in reading.items())
        raise DataError(f"{origin}: the one layout that fits reads {doubt}; expected a layout the model has: if "
                        f"the first is what it is, say so: {example}")
    return Layout(lstm, convs, reading.get("score"), reading.get("key"), reading.get("energy"), reading.get("head"),
                  left_out, unused, tuple(k.removeprefix("module.") for k in numbers))


def state_dict_to_model(layout: Layout, base: ModelConfig) -> AttentionLSTM:
    """Our model holding the user's weights; ``base`` supplies what the weights cannot say (dropout, and the
    head's kind: regression when it says so, classification otherwise).

    Normalisation is the identity (the user's module normalises nothing). The additive score
    ``v . tanh(W h_t + b)`` is our additive attention with a learned query of zeros: ``key`` = W, ``query_proj``
    zeros but its bias b (zero when W has none), ``energy`` = v. Missing biases (``bias=False``) become zeros.
    """
    lstm = _LstmShape.of(layout.lstm)
    d = lstm.output
    head = layout.head
    config = replace(
        base,
        hidden_size=lstm.hidden,
        num_layers=lstm.layers,
        bidirectional=lstm.bidirectional,
        attention="linear",
        conv_channels=tuple(c.weight.shape[0] for c in layout.convs),
        conv_kernel_sizes=tuple(c.weight.shape[2] for c in layout.convs),
        head=_head_kind(head, base.head),
    )
    if layout.key is not None:
        config = replace(config, attention="additive", attention_dim=layout.key.weight.shape[0], query="learned")
    features = layout.convs[0].weight.shape[1] if layout.convs else lstm.input
    model = AttentionLSTM(config, features, d if head is None else head.weight.shape[0])
    ours = {"mean": model.mean, "std": model.std}
    for i, conv in enumerate(layout.convs):
        ours |= _linear(f"convs.{i}", conv)
    ours |= {f"lstm.{k}": v for k, v in layout.lstm.tensors.items()}
    ours |= {f"lstm.{k}": torch.zeros(shape) for k, shape in lstm.expected(bias=True).items()
             if k.startswith("bias") and k not in layout.lstm.tensors}
    if layout.score is not None:
        ours |= _linear("score", layout.score)
    if layout.key is not None and layout.energy is not None:
        attention_dim = layout.key.weight.shape[0]
        ours["key.weight"] = layout.key.weight
        ours["query_proj.weight"] = torch.zeros(attention_dim, d)
        ours["query_proj.bias"] = layout.key.bias if layout.key.bias is not None else torch.zeros(attention_dim)
        ours["energy.weight"] = layout.energy.weight.reshape(1, attention_dim)
        ours["query"] = torch.zeros(d)
    if head is not None:
        ours |= _linear("head", head)
    model.load_state_dict(ours)
    return model.eval()


def _parts(state: dict[str, torch.Tensor]) -> list[_Part]:
    """The state_dict grouped by module prefix, in checkpoint order (the order the user's modules were made)."""
    groups: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        prefix, _, short = key.rpartition(".")
        groups.setdefault(prefix, {})[short] = value
    parts = []
    for prefix, tensors in groups.items():
        kind = _kind(tensors, prefix)
        if kind is not None and prefix:
            parts.append(_Part(prefix, kind, tensors))
        else:
            parts += [_Part(f"{prefix}.{short}" if prefix else short, "param", {"": t}) for short, t in tensors.items()]
    return parts


# a module named as a normalisation layer (norm, layer_norm, rmsnorm, ln_f, bn2) or a PReLU: 1-D weights that
# scale each feature, which the model does not have (found by review: ``rmsnorm`` had been missed)
_NORM = re.compile(r"(norm|ln|bn|prelu)\d*($|_)", re.IGNORECASE)


def _kind(tensors: dict[str, torch.Tensor], prefix: str = "") -> str | None:
    """lstm, linear, conv or norm when the tensors are one such module's; None for anything else. A norm
    (LayerNorm, BatchNorm) is 1-D weights with running statistics, a bias of the weight's shape, or a name
    that says so (found by attacking: its weight and bias were loose parameters, and the refusal's "--map
    NAME=none" left the LayerNorm out of a model that ran it)."""
    if tensors and set(tensors) <= {"weight", "bias", "running_mean", "running_var"} and all(
            t.dim() == 1 and t.shape == tensors.get("weight", t).shape for t in tensors.values()) and (
            "running_mean" in tensors or len(tensors) > 1 or bool(_NORM.search(prefix.rpartition(".")[2]))):
        return "norm"
    if "weight_ih_l0" in tensors and all(_LSTM_KEY.match(k) for k in tensors):
        ih, hh = tensors["weight_ih_l0"], tensors.get("weight_hh_l0")
        if hh is None:  # an LSTM missing its hh, which _check_lstm names (found by attacking: it was "no LSTM")
            return "lstm" if ih.dim() == 2 and ih.shape[0] % 4 == 0 else None
        if ih.dim() != 2 or hh.dim() != 2:
            return None
        gates, hidden = hh.shape
        if gates == 4 * hidden:
            return "lstm"
        # a GRU's 3H or an RNN's H gates are not an LSTM; 4H gates with a wrong width are a broken LSTM, which
        # _check_lstm names (found by a user: an hh of (48, 11) was "no LSTM")
        return "lstm" if ih.shape[0] == gates and gates % 4 == 0 and gates not in (hidden, 3 * hidden) else None
    weight, bias = tensors.get("weight"), tensors.get("bias")
    if weight is None or not set(tensors) <= {"weight", "bias"} or weight.dim() not in (2, 3):
        return None
    if bias is not None and tuple(bias.shape) != (weight.shape[0],):
        return None
    return "linear" if weight.dim() == 2 else "conv"


def _check_lstm(part: _Part, origin: str) -> None:
    """The LSTM's tensors are exactly one nn.LSTM's, with or without biases."""
    lstm = _LstmShape.of(part)
    expected = lstm.expected(bias=any(key.startswith("bias_") for key in part.tensors))  # one bias: the other is missing
    found = {k: tuple(v.shape) for k, v in part.tensors.items()}
    if found != expected:
        wrong = sorted(set(found) ^ set(expected)) or [k for k in expected if found[k] != expected[k]]
        key = wrong[0]
        raise DataError(
            f"{origin}: {part.name}.{key} is {_shape(found[key]) if key in found else 'missing'}: expected the tensors of one "
            f"nn.LSTM({lstm.input}, {lstm.hidden}, num_layers={lstm.layers}, bidirectional={lstm.bidirectional}), "
            f"where {part.name}.{key} is {_shape(expected[key]) if key in expected else 'absent'}"
        )


def _mapped_roles(parts: list[_Part], mapping: Sequence[tuple[str, str]]) -> dict[str, str]:
    """Part name -> role from ``--map``: a prefix names one part (``conv`` takes every part under it)."""
    roles: dict[str, str] = {}
    names = ", ".join(p.name for p in parts)
    for prefix, role in mapping:
        matched = [p for p in parts if p.name == prefix or p.name.startswith(prefix + ".")]
        if not matched:
            raise DataError(f"--map {prefix}={role}: the checkpoint has no part {prefix}; expected one of {names}")
        if role not in ("conv", "none") and len(matched) > 1:
            inside = ", ".join(p.name for p in matched)
            raise DataError(f"--map {prefix}={role}: {prefix} holds {len(matched)} parts ({inside}); "
                            "expected the prefix of one of them")
        for part in matched:
            if part.name in roles:
                raise DataError(f"--map {prefix}={role}: {part.name} is already mapped to {roles[part.name]}; "
                                "expected one role per part")
            roles[part.name] = role
    for role in {r for r in roles.values() if r not in ("conv", "none")}:
        holders = [name for name, r in roles.items() if r == role]
        if len(holders) > 1:
            raise DataError(f"--map gives the role {role} to {' and '.join(holders)}; expected one part per role")
    return roles


def _role_kind(role: str) -> str:
    return "conv" if _CONV_INDEX.match(role) else role


def _fits(part: _Part, role: str, d: int) -> bool:
    """Whether ``part``'s shape can play ``role`` next to an LSTM of output size ``d``."""
    role = _role_kind(role)
    if role in ("lstm", "conv"):
        return part.kind == role
    if role == "energy":
        return _energy_size(part) is not None
    if part.kind != "linear":
        return False
    out, inp = part.weight.shape
    return inp == d and (role == "head" or (role == "score" and out == 1) or (role == "key" and out >= 2))


# criterion, ce_loss, loss_fn; a loss named by its kind (``self.ce = nn.CrossEntropyLoss(weight=...)``: found by
# attacking, ``ce.weight`` was read as an additive v)
_LOSS_MODULE = re.compile(r"(.*_)?(loss|losses|lossfn|criterion|criteria|ce|bce|nll|xent|focal)(_.*)?")
_LOSS_WEIGHT = re.compile(r"(class|pos|label|sample|loss)_?weights?")


def _loss_weight(name: str) -> bool:
    """Whether a loose parameter named ``name`` is a loss function's weights: under a loss module
    (``criterion.weight``, ``focal_loss.alpha``), or named like them (``class_weights``, ``pos_weight``)."""
    *modules, short = name.lower().split(".")
    return any(_LOSS_MODULE.fullmatch(m) for m in modules) or bool(_LOSS_WEIGHT.fullmatch(short))


def _could_feed(part: _Part, size: int) -> bool:
    """Whether a Linear-shaped ``part`` could feed an LSTM input of ``size``: a projection's output (E, F), or
    an embedding's table (V, E), which has no bias."""
    out, inp = part.weight.shape
    return out == size or (inp == size and part.bias is None)


def _energy_size(part: _Part) -> int | None:
    """A in v's A values, when ``part`` is a Linear(A, 1) (its bias dropped: the same for every step, which the
    softmax ignores) or a parameter of shape (A,), (1, A), (A, 1)."""
    shape = tuple(part.weight.shape)
    if part.kind == "linear":
        size = shape[1] if shape[0] == 1 else 0
    elif part.kind == "param" and (len(shape) == 1 or (len(shape) == 2 and 1 in shape)):
        size = part.weight.numel()
    else:
        size = 0
    return size if size >= 2 else None


def _readings(items: list[_Part], d: int, roles: dict[str, str]) -> list[dict[str, _Part]]:
    """Every assignment of the roles of one template to ``items`` that fits their shapes and ``--map``."""
    found = []
    for template in _TEMPLATES:
        if len(template) != len(items):
            continue
        for order in permutations(items):
            reading = dict(zip(template, order))
            if all(_fits(p, r, d) and roles.get(p.name, r) == r for r, p in reading.items()) and (
                "key" not in reading or reading["key"].weight.shape[0] == _energy_size(reading["energy"])
            ):
                found.append(reading)
    return found


def _doubtful(reading: dict[str, _Part], names: set[str], roles: dict[str, str], d: int,
              ordered: bool, feeds: int) -> str | None:
    """What else the one reading that fits may be, when nothing but its shapes speaks for it: the same shapes
    read as something the model does not have, so that an import would compute another model, which verify
    would pass. None when ``--map`` gives any part of the reading a role (the user said which it is), or no
    other model can hide in it:

    * an additive score and a one-output head are also a score and a two-Linear head (Linear, activation,
      Linear) whenever that head and a Linear v could be the two Linears, whatever the order (``attention``
      Linear(D, 1), ``fc1`` Linear(D, K), ``fc2`` Linear(K, 1) was read as W ``fc1``, v ``fc2`` and a binary
      head ``attention``, and verify passed it: found by attacking; a module may make its head before its
      attention: found by review); or a v of shape (1, D), with the key and head the two Linears, or the key
      a projection that both the score and the context read, in any order (found by attacking: ``proj``,
      ``attention``, ``fc`` stored in that order was imported);
    * with a v that is a loose parameter, a one-output head is also a score, the key a head and v a tensor of
      something else (a loss weight under another name, a prior, a bias: found by attacking, ``ce.weight``
      of C values beside a score and a head of C classes was read as an additive v), unless key and v are
      parts of one attention module (``_in_attention``); a loose parameter's place in a file says nothing (a
      module's own parameters come before its children's);
    * a score, key or head inside an nn.Sequential after members that hold no weights runs after an
      activation (or a dropout) the weights cannot show (``_after_weightless``);
    * an additive score without a head, whose v is a loose parameter of D values and whose key is a
      Linear(D, D), is also a dot-product score with a learned query and a head (found by attacking);
    * in a .safetensors file, which keeps no order, a head without a bias whose shape could feed the LSTM is
      also an embedding table (found by attacking: ``nn.Embedding(V, D)`` was read as a head of V classes,
      which a torch file's order refuses)."""
    key, energy, head = reading.get("key"), reading.get("energy"), reading.get("head")
    if any(p.name in roles for p in reading.values()):
        return None
    for role in ("score", "key", "head"):
        hidden = _after_weightless(reading.get(role), names)
        if hidden is not None:
            holds = "hold" if " and " in hidden else "holds"
            return (f"{reading[role].name} as the {role}; but {hidden} before it in its nn.Sequential {holds} no "
                    "weights: an activation (or a dropout) runs first, which the weights cannot show and the model "
                    "does not have")
    if head is not None and not ordered and head.bias is None and _could_feed(head, feeds):
        return (f"{head.name} as a head without a bias; the same shape {_shape(head.weight)} is an embedding table or "
                f"an input projection feeding the LSTM's input of {feeds}, which the model does not have")
    if key is None or energy is None:
        return None
    additive = f"{key.name} + {energy.name} as an additive score"
    if _adjacent(key, energy):  # found by attacking: Sequential(Linear(D, A), Linear(A, 1)) was read with a tanh
        return (f"{additive}, v . tanh(W h + b); but they are consecutive members of one nn.Sequential (or "
                "nn.ModuleList): in a Sequential nothing runs between them, no tanh, which the model has")
    # a loose v of D values beside a W of (D, D), outside an attention module: a learned query or a projection
    loose_square = (energy.kind == "param" and _energy_size(energy) == d and tuple(key.weight.shape) == (d, d)
                    and not _in_attention(key, energy, head))
    if head is None and loose_square:
        return (f"{additive} and no head; the same shapes are a dot-product score with {energy.name} as its "
                f"learned query and a head {key.name}, which the model does not have")
    if head is not None and _fits(head, "score", d) and energy.kind == "linear":
        return (f"{additive} and {head.name} as a one-output head; the same shapes are a score {head.name} and a "
                f"two-Linear head {key.name} -> {energy.name}, which the model does not have")
    # W and v made in one attention module that the head is outside (``attn.W``, ``attn.v``)
    if head is not None and _fits(head, "score", d) and energy.kind == "param" and not _in_attention(key, energy,
                                                                                                     head):
        return (f"{additive} and {head.name} as a one-output head; the same shapes are a score {head.name}, a head "
                f"{key.name} and {energy.name} a tensor of something else (a loss weight, a prior, a bias), which "
                f"--map {energy.name}=none would leave out")
    if head is not None and loose_square:  # as with a Linear v (found by review)
        return (f"{additive} and {head.name} as the head; the same shapes are a projection {key.name} that the score "
                f"{energy.name} and the context both read, which the model does not have")
    if head is not None and _fits(energy, "score", d):  # in any order (found by attacking: a projection first)
        return (f"{additive} and {head.name} as the head; the same shapes are a score {energy.name} and a two-Linear "
                f"head {key.name} -> {head.name}, or a projection {key.name} that the score {energy.name} and the "
                f"context both read, which the model does not have")
    if energy.kind == "param" and _QUERY.fullmatch(energy.name.rpartition(".")[2]):  # found by attacking
        return (f"{additive}, v . tanh(W h + b); but {energy.name} is named as a query: a dot-product score "
                f"q . (W h + b), often scaled by 1/sqrt(A), has no tanh, which the model has")
    return None


# a loose parameter named as a dot-product attention's learned query: q, query, learned_query, query_vector
_QUERY = re.compile(r"((learned|learnable|attn|attention|context)_)?q(uery)?(_(vec|vector|param))?", re.IGNORECASE)


def _adjacent(first: _Part, then: _Part) -> bool:
    """Whether ``then`` is the member right after ``first`` in one nn.Sequential or nn.ModuleList (``seq.0``,
    ``seq.1``): in a Sequential no activation can run between them. (Two Conv1d so stored are not refused: a
    ModuleList's loop usually runs a ReLU between them, found by review.)"""
    (a, _, i), (b, _, j) = first.name.rpartition("."), then.name.rpartition(".")
    return bool(a) and a == b and i.isdigit() and j.isdigit() and int(j) == int(i) + 1


# a module named as an attention: attn, attention, self_att, word_attn2 (a word of its name: not pattern, batt)
_ATTENTION = re.compile(r"(^|_)(self_?)?att(n|ention)?($|_|\d)", re.IGNORECASE)


def _in_attention(key: _Part, energy: _Part, head: _Part | None) -> bool:
    """Whether ``key`` and ``energy`` are parts of one module named as an attention (``attn``, ``attention``,
    ``self_att``: ``_ATTENTION``; ``pattern_head`` is not one: found by review) that ``head`` is not part of:
    a binary Bahdanau model's ``attn.W`` and ``attn.v`` beside ``fc`` is no loss weight (found by review),
    while a head module's own ``fc`` and ``log_prior`` (logit adjustment) are no attention (found by
    attacking: read as W and v, a binary model of a 3-class one)."""
    parent = key.name.rpartition(".")[0]
    return (bool(_ATTENTION.search(parent.rpartition(".")[2])) and energy.name.rpartition(".")[0] == parent
            and (head is None or not head.name.startswith(parent + ".")))


def _after_weightless(part: _Part | None, names: set[str]) -> str | None:
    """The weightless modules before ``part`` in its nn.Sequential (``fc.0``, ``fc.1`` before ``fc.2``, none of
    them holding a tensor), as text; None when there are none. An activation there changes what the part reads,
    and the weights cannot show it (found by attacking: ``Sequential(Dropout, ReLU, Linear)`` was imported as
    the Linear alone)."""
    if part is None:
        return None
    prefix, _, last = part.name.rpartition(".")
    if not prefix or not last.isdigit():
        return None
    empty = [f"{prefix}.{k}" for k in range(int(last))
             if not any(n == f"{prefix}.{k}" or n.startswith(f"{prefix}.{k}.") for n in names)]
    return " and ".join(empty) if empty else None


def _conv_order(parts: list[_Part], roles: dict[str, str], lstm_input: int, origin: str, d: int,
                ordered: bool = True) -> tuple[_Part, ...]:
    """The Conv1d layers in the order they run: conv.N from ``--map`` when given, else checkpoint order in a
    torch file; in a .safetensors file (no order) the one order whose channels chain, or none (found by
    attacking: the order safetensors returned changed between runs, and with it the model). Each must feed the
    next and the last the LSTM."""
    convs = [p for p in parts if p.kind == "conv"]
    indexed = {p.name: int(m.group(1)) for p in convs if (m := _CONV_INDEX.match(roles.get(p.name, "")))}
    if indexed:
        if sorted(indexed.values()) != list(range(len(convs))):
            given = ", ".join(f"conv.{i}" for i in sorted(indexed.values()))
            raise DataError(f"--map gives the {len(convs)} Conv1d layers the positions {given}: expected conv.0 ... "
                            f"conv.{len(convs) - 1}, one per Conv1d layer")
        convs.sort(key=lambda p: indexed[p.name])
    elif not ordered and len(convs) > 1:
        chains = _chains(convs, lstm_input)
        if len(chains) == 1:
            convs = chains[0]
        elif chains:
            raise _unrecognised(origin, f"{len(convs)} Conv1d layers whose channels chain in more than one order "
                                        "and a .safetensors file keeps no order", parts, d,
                                " ".join(f"--map {c.name}=conv.{i}" for i, c in enumerate(chains[0])))
    for conv in convs:
        kernel = conv.weight.shape[2]
        if kernel % 2 == 0:
            raise _unrecognised(origin, f"{conv.name} has kernel size {kernel}; only odd kernels (padding k // 2) "
                                        "keep the sequence length", parts, d)
    takes = [c.weight.shape[1] for c in convs[1:]] + [lstm_input]  # what each conv's output must feed
    if any(c.weight.shape[0] != n for c, n in zip(convs, takes)):
        chain = ", ".join(f"{c.name} {c.weight.shape[1]} -> {c.weight.shape[0]}" for c in convs)
        raise _unrecognised(origin, f"the Conv1d layers do not feed one another and then the LSTM (input "
                                    f"{lstm_input}) in this order: {chain}", parts, d,
                            " ".join(f"--map {c.name}=conv.{i}" for i, c in enumerate(convs)))
    return tuple(convs)


def _chains(convs: list[_Part], lstm_input: int) -> list[list[_Part]]:
    """Orders of ``convs`` in which each feeds the next and the last ``lstm_input`` channels: none, one, or two
    (the search stops there: two already means the order is open). Built from the LSTM backwards; a set of
    convs left over with a channel count to reach that led nowhere is not tried again (found by review: a
    file with no order took every permutation, 17 s for ten convs and x10 per conv more)."""
    found: list[list[_Part]] = []
    dead: set[tuple[frozenset[int], int]] = set()

    def extend(tail: list[int], left: frozenset[int]) -> None:
        if not left:
            found.append([convs[i] for i in tail])
            return
        takes = convs[tail[0]].weight.shape[1] if tail else lstm_input
        if (left, takes) in dead:
            return
        before = len(found)
        for i in sorted(left):
            if len(found) < 2 and convs[i].weight.shape[0] == takes:
                extend([i, *tail], left - {i})
        if len(found) == before:
            dead.add((left, takes))

    extend([], frozenset(range(len(convs))))
    return found


def _linear(prefix: str, part: _Part) -> dict[str, torch.Tensor]:
    """A Linear's or Conv1d's tensors under our ``prefix``; a missing bias is zeros."""
    bias = part.bias if part.bias is not None else torch.zeros(part.weight.shape[0])
    return {f"{prefix}.weight": part.weight, f"{prefix}.bias": bias}


def _unrecognised(origin: str, problem: str, parts: list[_Part], d: int | None,
                  example: str = "--map attention=score --map fc=head") -> DataError:
    """One line: what is wrong, the parts found, what the model needs and how to name the parts."""
    shown = ", ".join(p.describe() for p in parts[:_SHOWN])
    more = f" and {len(parts) - _SHOWN} more" if len(parts) > _SHOWN else ""
    size = f"D = {d}, the LSTM's output size" if d is not None else "D the LSTM's output size"
    return DataError(
        f"{origin}: {problem}; found: {shown or 'no tensors'}{more}; expected an LSTM, then a score Linear(D, 1) "
        "or an additive Linear(D, A) + v (a Linear(A, 1) or a parameter of A values), optionally a "
        f"head Linear(D, C) and Conv1d layers with odd kernels before the LSTM, with {size}; name the parts with "
        f"--map PREFIX=ROLE (roles {_ROLE_LIST}), e.g. {example}"
    )


def _summary(layout: Layout, model: AttentionLSTM) -> str:
    """What was recognised, for the line ``load`` prints: sizes, score kind, head and the user's part names."""
    cfg = model.config
    # the user's part names quoted: beside the kinds they read "linear score score, head head" (found by attacking)
    lstm = f"LSTM '{layout.lstm.name}' hidden_size {cfg.hidden_size}, num_layers {cfg.num_layers}"
    parts = [f"{model.input_size} feature{'s' if model.input_size > 1 else ''}"]
    if layout.convs:
        kernels = ", ".join(str(k) for k in cfg.conv_kernel_sizes)
        # what the weights cannot show, said as assumed (found by attacking: a dilated Conv1d imported, 0.012 off)
        parts.append(f"conv {len(layout.convs)} layer{'s' if len(layout.convs) > 1 else ''} (k {kernels}; taken as "
                     "stride 1, dilation 1, groups 1, padding k // 2, a ReLU after each, no pooling)")
    parts.append(lstm + (", bidirectional" if cfg.bidirectional else ""))
    if layout.key is not None and layout.energy is not None:
        parts.append(f"additive score '{layout.key.name}' + '{layout.energy.name}' (A {cfg.attention_dim}; taken "
                     "as v . tanh(W h + b))")
    elif layout.score is not None:
        parts.append(f"linear score '{layout.score.name}'")
    if layout.energy is not None and layout.energy.bias is not None:
        parts.append(f"the bias of '{layout.energy.name}' dropped (the same for every step: the softmax ignores it)")
    if layout.head is None:
        parts.append(f"no head (output context, {model.context_size} values)")
    elif cfg.head == "binary":
        parts.append(f"head '{layout.head.name}' binary: one output read as a binary classifier (sigmoid, labels 0 "
                     "and 1; --set model.head=regression reads it as a regressor)")
    else:
        parts.append(f"head '{layout.head.name}' {cfg.head} {model.num_outputs} output{'s' if model.num_outputs > 1 else ''}")
    if layout.left_out:
        parts.append(f"left out {' and '.join(layout.left_out)} (a loss function's weights, not the model's)")
    if layout.unused:
        parts.append(f"left out {' and '.join(layout.unused)} (--map none: never read by the model)")
    if layout.buffers:
        parts.append(f"left out {' and '.join(layout.buffers)} (integers or booleans: no weights)")
    return ", ".join(parts)


def _head_kind(head: _Part | None, asked: str) -> str:
    """What a head's shape and the recipe's ``model.head`` make it: none without one; regression when asked;
    one output is a binary classifier (a one-class softmax would say probability 1 for everything); more
    outputs, classes."""
    if head is None:
        return "none"
    if asked == "regression":
        return "regression"
    return "binary" if head.weight.shape[0] == 1 else "classification"


def _shape(shape: torch.Tensor | tuple[int, ...]) -> str:
    """(3, 64) or (16,): Python's tuple notation, never torch.Size(...)."""
    return str(tuple(shape.shape if isinstance(shape, torch.Tensor) else shape))
