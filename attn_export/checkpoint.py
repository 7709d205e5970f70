"""Saving and loading models: our own artefact directories (safetensors + model.json), and reading a
user's plain state_dict for ``attn-export load`` (``attn_export/load.py`` recognises its layout).

Nothing is ever unpickled: weights are safetensors, and a ``.pt``/``.pth`` file is opened with
``torch.load(weights_only=True)``, which refuses anything but tensors and plain containers.
"""

from __future__ import annotations

import io
import os
import re
import warnings
from pathlib import Path

import torch
from safetensors.torch import load, save

from . import __version__
from .runtime import store
from .runtime.interrupt import holding
from .config import Recipe, recipe_from_dict, recipe_to_dict
from .errors import DataError
from .model import AttentionLSTM
from .runtime.modelinfo import FORMAT, ModelInfo
from .runtime.store.files import read_regular

__all__ = ["build_model", "load_model", "read_state_dict", "save_model"]



def save_model(
    directory: Path,
    model: AttentionLSTM,
    recipe: Recipe,
    labels: tuple[str, ...],
    command: str,
    source: str,
    train_lengths: dict[str, int] | None = None,
    parent_sha256: str | None = None,
    feature_names: tuple[str, ...] | None = None,
) -> str:
    """Write model.safetensors then model.json, then record both in the manifest; returns the weights'
    sha256 (what a file made from them records as its parent's)."""
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    # the weights, model.json and their records together, or a signal waits (``interrupt.holding``)
    with holding() as hold:
        hold()
        store.write_bytes(directory / store.WEIGHTS, save(state, metadata={"format": str(FORMAT)}))
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
            "feature_names": None if feature_names is None else list(feature_names),
            "normalization": {"mean": model.mean.tolist(), "std": model.std.tolist()},
            "train_lengths": train_lengths,
            "source": source,
            "source_sha256": parent_sha256,
            "recipe": resolved,
        }
        store.write_json(directory / store.MODEL_JSON, info)
        versions = {"torch": torch.__version__}
        weights_sha = store.record(directory, store.WEIGHTS, command, versions=versions, source=source,
                                   source_sha256=parent_sha256)["sha256"]
        store.record(directory, store.MODEL_JSON, command, parent=store.WEIGHTS, parent_sha256=weights_sha,
                     versions=versions)
    return str(weights_sha)


def load_model(directory: Path) -> tuple[AttentionLSTM, ModelInfo]:
    """Rebuild the model saved in ``directory`` from its weights and model.json, both current (the store's
    check); returns (model in eval mode, its model.json)."""
    weights = store.Store(directory).open(store.WEIGHTS, need="current")  # model.json must be current too
    assert weights.info is not None
    return build_model(weights.info, weights.data, str(weights.path)), weights.info


def build_model(info: ModelInfo, weights: bytes, origin: str) -> AttentionLSTM:
    """The model ``info`` describes with the safetensors ``weights`` (bytes the store checked), in eval mode."""
    recipe = recipe_from_dict(dict(info.recipe))
    model = AttentionLSTM(recipe.model, info.input_size, info.num_outputs, list(info.mean), list(info.std))
    try:
        state = load(weights)
    except Exception as e:  # safetensors raises its own SafetensorError
        raise DataError(f"{origin} is not a readable safetensors file: {e}") from None
    _load_state(model, state, origin)
    return model.eval()


def _load_state(model: AttentionLSTM, state: dict[str, torch.Tensor], origin: str) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise DataError(f"{origin} does not fit the model model.json describes: missing {missing[:4]}, "
                        f"unexpected {unexpected[:4]}")
    for key, value in state.items():
        if tuple(value.shape) != tuple(expected[key].shape):
            raise DataError(
                f"{origin}: {key} has shape {tuple(value.shape)}, the model model.json describes expects "
                f"{tuple(expected[key].shape)}"
            )
    model.load_state_dict(state)


MAX_CHECKPOINT_BYTES = store.MAX_ARTIFACT_BYTES


# where training loops keep the model's weights in the dict they save, most common first
WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net", "model_state", "network", "weights")
# a module holding the model as an attribute (Lightning's ``self.model``) prefixes every key with its name
_MODULE_PREFIXES = ("model", "net", "network")


def read_state_dict(path: Path) -> tuple[dict[str, torch.Tensor], str | None]:
    """The state_dict in checkpoint ``path`` (see ``_read_state_dict``), no tensor complex and every
    floating-point tensor finite: NaN or infinite weights make a model that computes nothing, refused here
    rather than at export."""
    state, prefix = _read_state_dict(path)
    # found by attacking: each crashed the finiteness check below, or load_state_dict, with a traceback
    odd = next(((name, why) for name, t in state.items() if (why := _not_dense(t))), None)
    if odd is not None:
        raise DataError(f"{path}: {odd[0]!r} is {odd[1]}; expected dense weights with values "
                        "(torch.save(model.state_dict(), path) of the float model)")
    # a broadcast view (torch.zeros(1).expand(100000, 100000)) is saved in a few bytes and read as 40 GB: the
    # sizes the tensors claim are bounded as the file is (found by attacking: the check below asked 40 GB)
    claimed = {name: t.numel() * t.element_size() for name, t in state.items()}
    if sum(claimed.values()) > MAX_CHECKPOINT_BYTES:
        name = max(claimed, key=lambda n: claimed[n])
        raise DataError(f"{path}: its tensors claim {sum(claimed.values()):,} bytes ({name!r}, shape "
                        f"{tuple(state[name].shape)}, alone {claimed[name]:,}), past the {MAX_CHECKPOINT_BYTES:,} a "
                        "checkpoint may hold; expected the model's own weights")
    complex_ = [name for name, t in state.items() if t.is_complex()]
    if complex_:  # torch would cast it to real, dropping the imaginary part with a warning (found by a user)
        raise DataError(f"{path} has complex values in {len(complex_)} tensor(s), first {complex_[0]!r}; expected "
                        "real weights")
    # finite as the model holds them, in float32: a float64 1e39 passed as finite and became inf (found by
    # attacking: export then failed with NaN beside numpy's warnings)
    bad = [name for name, t in state.items() if t.is_floating_point() and not bool(torch.isfinite(t.float()).all())]
    if bad:
        big = [name for name in bad if bool(torch.isfinite(state[name]).all())]
        raise DataError(f"{path} has {'values beyond float32 (3.4e38)' if big == bad else 'NaN or infinite values'} "
                        f"in {len(bad)} tensor(s), first {bad[0]!r}; expected finite float32 weights")
    return state, prefix


def _not_dense(t: torch.Tensor) -> str | None:
    """What keeps ``t`` from being read as plain weights: a sparse layout, the meta device (no values), or
    quantized storage; None for a dense tensor with values."""
    if t.layout != torch.strided:
        return f"a sparse tensor ({t.layout})"
    if t.is_meta:
        return "a meta tensor, which has a shape but no values"
    if t.is_quantized:
        return f"a quantized tensor ({t.dtype})"
    return None


def _unreadable(path: Path, e: Exception) -> str:
    """Why torch's weights-only loader refused ``path``, in one line: a pickled Python object (a whole
    ``nn.Module``: named), or bytes that are no torch file at all (garbage, a plain pickle, text)."""
    save = "save a plain state_dict (torch.save(model.state_dict(), path)) or a .safetensors file"
    if "TorchScript archives" in str(e):  # torch's advice to load it with weights_only=False is none of ours
        return (f"{path} is a TorchScript archive (torch.jit.save), whose code attn-export does not run; expected "
                "its weights: torch.save(torch.jit.load(path).state_dict(), 'weights.pt')")
    # torch's words: "Unsupported global: GLOBAL m.C" (an object), "unsupported GLOBAL posix.system whose module
    # posix is blocked" (a function; found by attacking: its advice to turn weights_only off was quoted)
    found = re.search(r"unsupported (?:global: )?GLOBAL (\S+)", str(e), re.IGNORECASE)
    if found:
        return (f"{path} needs unpickling of the Python object {found.group(1)}, which attn-export refuses; "
                f"{save}")
    why = re.search(r"WeightsUnpickler error:\s*(.+)", str(e))  # torch's own paragraph around the reason
    detail = why.group(1).strip() if why else (str(e).strip().splitlines() or [""])[0]
    detail = f"{type(e).__name__} {detail}".strip()  # an empty file: EOFError, no message
    return f"{path} is not a readable PyTorch checkpoint ({detail}); {save}"


def _read_state_dict(path: Path) -> tuple[dict[str, torch.Tensor], str | None]:
    """A plain state_dict from .safetensors or a torch file, never unpickling arbitrary objects, and where it
    was found (None: the file is the state_dict): under one of ``WRAPPER_KEYS`` of a training loop's dict
    (``{'epoch': ..., 'model_state_dict': ..., 'optimizer_state_dict': ...}``, a Lightning checkpoint's
    ``state_dict``), with a prefix every key shares (Lightning's ``model.``) dropped."""
    if not os.path.lexists(path):
        raise DataError(f"checkpoint {path} does not exist; expected a checkpoint file (.safetensors, .pt or .pth)")
    data = read_regular(path, MAX_CHECKPOINT_BYTES, "a checkpoint (.safetensors, .pt or .pth)")
    if path.suffix.lower() == ".safetensors":  # its keys in an order of their own (changing between runs): sorted
        try:
            return dict(sorted(load(data).items())), None
        except Exception as e:
            raise DataError(f"{path} is not a readable safetensors file: {e}") from None
    try:
        with warnings.catch_warnings():  # torch's own warnings on a file it then refuses: the one line below says it
            warnings.simplefilter("ignore")
            obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as e:
        raise DataError(_unreadable(path, e)) from None
    if _tensors(obj):
        return obj, None
    if not isinstance(obj, dict):
        raise DataError(f"{path} holds a {type(obj).__name__}, not a state_dict; expected a mapping of names to "
                        "tensors (torch.save(model.state_dict(), path)) or a dict holding one")
    key = next((k for k in WRAPPER_KEYS if _tensors(obj.get(k))), None)
    if key is None and not obj:
        raise DataError(f"{path} holds an empty dict; expected the model's state_dict "
                        "(torch.save(model.state_dict(), path))")
    if key is None:
        keys = [str(k) for k in obj][:12]
        more = f" and {len(obj) - 12} more" if len(obj) > 12 else ""
        raise DataError(f"{path} holds a dict with the keys {', '.join(keys)}{more}, none of them a state_dict of "
                        f"tensors; expected the model's state_dict, or a dict holding it under one of "
                        f"{', '.join(WRAPPER_KEYS)}")
    state, where = obj[key], f"the state_dict under '{key}'"
    first = {k.split(".", 1)[0] for k in state}
    if len(first) == 1 and (prefix := first.pop()) in _MODULE_PREFIXES and all("." in k for k in state):
        state = {k.split(".", 1)[1]: v for k, v in state.items()}
        where += f", its keys' common prefix '{prefix}.' dropped"
    return state, where


def _tensors(obj: object) -> bool:
    """Whether ``obj`` is a non-empty mapping of names to tensors: a state_dict."""
    return isinstance(obj, dict) and bool(obj) and all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                                       for k, v in obj.items())
