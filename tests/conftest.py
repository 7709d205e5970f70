"""Shared fixtures and the automatic skips that pair with the markers gpu, tensorrt and slow."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from attn_export.runtime import store

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "recipes"


def _cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def _tensorrt() -> bool:
    try:
        import tensorrt
    except ImportError:
        return False
    return hasattr(tensorrt, "__version__")  # tensorrt-stubs alone imports as an empty namespace package


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skips = {
        "gpu": (not _cuda(), "needs a CUDA device"),
        "tensorrt": (not (_tensorrt() and _cuda()), "needs TensorRT and a CUDA device"),
    }
    for item in items:
        for marker, (skip, reason) in skips.items():
            if skip and marker in item.keywords:
                item.add_marker(pytest.mark.skip(reason=reason))


def cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real CLI in a subprocess (python -m attn_export), capturing text output."""
    return subprocess.run(
        [sys.executable, "-m", "attn_export", *args],
        capture_output=True,
        text=True,
        cwd=cwd or ROOT,
        env={**os.environ, **(env or {}), "COLUMNS": "200"},
        timeout=600,
    )


TINY = [
    "--set", "data.n_train=240", "--set", "data.n_test=60", "--set", "data.max_len=24",
    "--set", "model.hidden_size=16", "--set", "train.epochs=3",
]


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny trained-and-exported artefact directory, made once per session through the real CLI."""
    directory = tmp_path_factory.mktemp("tiny")
    for args in (("train", str(directory), *TINY), ("export", str(directory))):
        result = cli(*args)
        assert result.returncode == 0, result.stderr
    return directory


def rerecord(directory: Path, name: str, parent: str = "model.safetensors", command: str = "test",
             **extra: object) -> dict:
    """Record ``name`` as if ``command`` had made it from ``parent``'s current bytes: only its contents can give
    it away now."""
    return store.record(directory, name, command, parent=parent,
                        parent_sha256=store.sha256_file(directory / parent), **extra)


def mark_verified(directory: Path, name: str, passed: bool = True) -> None:
    """What attn-export verify writes into an artefact's manifest entry (without running it)."""
    manifest = store.read_manifest(directory)
    manifest["artifacts"][name]["verified"] = {"passed": passed, "sha256": store.sha256_file(directory / name),
                                               "verify_sha256": "0" * 64,
                                               "backends": ["ort-cpu"], "accuracy": 0.5}
    store.write_json(directory / store.MANIFEST, manifest)


@pytest.fixture
def model_dir(tiny_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny model, its model.onnx marked verified."""
    directory = tmp_path / "model"
    shutil.copytree(tiny_dir, directory)
    mark_verified(directory, "model.onnx")
    return directory
