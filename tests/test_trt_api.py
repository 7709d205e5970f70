"""TensorRT and CUDA names, checked without TensorRT: the code's calls are type-checked by mypy against
``tensorrt-stubs`` (10.x), and every TensorRT name the code uses, collected from its AST, must exist in the
TensorRT 11 bindings (the string table of ``tensorrt_bindings/tensorrt.so`` from ``tensorrt-cu13-bindings``
11.4.0.106, kept in attn_export/runtime/trt/api/) unless the code probes for it with ``hasattr`` first (the 8.x/10.x
fallbacks), and those probed names must really be gone from 11. cuda-python has no stubs: its names are
checked against the cuda-bindings 13.5.0 runtime's string table the same way.

Regenerate a table (network needed): ``python tests/test_trt_api.py --tables``.
"""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "attn_export"
API = ROOT / "tests" / "data" / "trt-api"
TRT11 = API / "tensorrt-11.4.0.106.names"
CUDART = API / "cuda-bindings-13.5.0-runtime.names"
CUDA_MODULES = [PKG / "runtime" / "trt" / "memory.py"]
MYPY_FILES = ["attn_export/runtime", "attn_export/backends", "attn_export/doctor.py", "attn_export/cli/build.py",
              "attn_export/cli/doctor.py"]


# ---------------------------------------------------------------------------------------------------------
# name tables

def _identifiers(blob: bytes) -> set[str]:
    """NUL-terminated identifiers not preceded by an identifier character: the names pybind11/Cython keep."""
    return {m.group(1).decode() for m in re.finditer(rb"(?<![A-Za-z0-9_])([A-Za-z_][A-Za-z0-9_]{1,80})\x00", blob)}


def _table(path: Path) -> set[str]:
    return set(path.read_text().split())


def _present(name: str, table: set[str]) -> bool:
    """Exact, or the tail of a longer string (linkers merge "Logger" into "ILogger\\0")."""
    return name in table or any(s.endswith(name) for s in table)


def _make_tables() -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        for spec, member, target, pybind in (
            ("tensorrt-cu13-bindings==11.4.0.106", "tensorrt_bindings/tensorrt.so", TRT11, True),
            # Cython keeps enum members only in docstrings: every cuda* word of the module counts there
            ("cuda-bindings==13.5.0", "cuda/bindings/runtime.cpython", CUDART, False),
        ):
            subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                            "--python-version", "3.11", "-d", tmp, spec], check=True)
            wheel = next(p for p in Path(tmp).glob("*.whl") if p.name.startswith(spec.split("==")[0].replace("-", "_")))
            with zipfile.ZipFile(wheel) as z:
                blob = z.read(next(n for n in z.namelist() if n.startswith(member) and n.endswith(".so")))
            target.parent.mkdir(parents=True, exist_ok=True)
            names = _identifiers(blob) if pybind else {m.decode() for m in re.findall(rb"\bcuda[A-Za-z0-9_]+", blob)}
            target.write_text("\n".join(sorted(names)) + "\n")


# ---------------------------------------------------------------------------------------------------------
# names from the source

def _tensorrt_importers() -> list[Path]:
    """Every module of the package that imports tensorrt (found from the AST, not listed by hand)."""
    found = []
    for path in sorted(PKG.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import) and any(a.name == "tensorrt" for a in node.names):
                found.append(path)
                break
    return found


TRT_MODULES = _tensorrt_importers()

def _hasattr_probes(paths: list[Path]) -> set[str]:
    probes = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("hasattr", "getattr")
                    and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant)
                    and isinstance(node.args[1].value, str)):
                probes.add(node.args[1].value)
    return probes


def _chain(node: ast.expr) -> tuple[str | None, list[str]]:
    """``self._context.set_input_shape(...)`` -> ("self._context", ["set_input_shape"]): the root variable
    (a name, or an attribute of self) and the attribute names read off it, through calls and subscripts."""
    attrs: list[str] = []
    while True:
        if isinstance(node, ast.Attribute):
            if isinstance(node.value, ast.Name) and node.value.id == "self":
                return f"self.{node.attr}", attrs
            attrs.insert(0, node.attr)
            node = node.value
        elif isinstance(node, ast.Call):
            node = node.func
        elif isinstance(node, ast.Subscript):
            node = node.value
        elif isinstance(node, ast.Name):
            return node.id, attrs
        else:
            return None, attrs


def _targets(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Name):
        return [node.id]
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self":
        return [f"self.{node.attr}"]
    if isinstance(node, (ast.Tuple, ast.List)):
        return [t for e in node.elts for t in _targets(e)]
    return []


def _trt_attributes(path: Path) -> set[str]:
    """The attribute names the module reads on TensorRT objects: a small taint analysis from the name
    ``tensorrt`` is imported as, through assignments, loops and comprehensions, and parameters annotated
    with a TensorRT type, to every attribute read off a tainted value."""
    tree = ast.parse(path.read_text())
    tainted = {a.asname or a.name for n in ast.walk(tree) if isinstance(n, ast.Import)
               for a in n.names if a.name == "tensorrt"}

    def is_tainted(expr: ast.AST) -> bool:
        for sub in ast.walk(expr):
            if isinstance(sub, (ast.Name, ast.Attribute)) and _chain(sub)[0] in tainted:
                return True
        return False

    for node in ast.walk(tree):
        if isinstance(node, ast.arg) and node.annotation is not None and is_tainted(node.annotation):
            tainted.add(node.arg)
    changed = True
    while changed:
        before = len(tainted)
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign) and is_tainted(node.value):
                tainted.update(t for target in node.targets for t in _targets(target))
            elif isinstance(node, (ast.AnnAssign, ast.AugAssign)) and node.value is not None and is_tainted(node.value):
                tainted.update(_targets(node.target))
            elif isinstance(node, (ast.For, ast.comprehension)) and is_tainted(node.iter):
                tainted.update(_targets(node.target))
        changed = len(tainted) != before
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            root, attrs = _chain(node)
            if root in tainted:
                names.update(attrs)
    return names


def _defined_here() -> set[str]:
    """Names this package defines (functions, classes, attributes assigned on self/objects, fields)."""
    names: set[str] = set()
    for path in PKG.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                names.add(node.attr)
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                names.add(node.target.id)
            elif isinstance(node, ast.Assign):
                names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return names


def _known_elsewhere() -> set[str]:
    """Attributes of the other libraries the TensorRT modules touch."""
    import ctypes
    import dataclasses
    import hashlib
    import os
    import time

    import numpy as np

    known: set[str] = set()
    for obj in (str, bytes, dict, list, tuple, set, int, float, memoryview, Path, np, np.ndarray, np.dtype,
                np.ndarray.flags, os, os.path, time, dataclasses, ctypes, zipfile, re, hashlib, hashlib.sha256()):
        known.update(dir(obj))
    known.update({"flags", "c_contiguous", "ctypes", "data"})  # ndarray.flags.c_contiguous, ndarray.ctypes.data
    try:
        import torch
    except ImportError:
        return known
    for obj in (torch, torch.cuda, torch.Tensor, torch.cuda.Stream, torch.cuda.Event, torch.cuda.CUDAGraph):
        known.update(dir(obj))
    return known


# ---------------------------------------------------------------------------------------------------------
# tests

def test_tables_are_the_bindings_string_tables() -> None:
    trt11 = _table(TRT11)
    assert len(trt11) > 3000
    # the appendix of notes/tensorrt.md: present and absent on 11.4
    for name in ("execute_async_v3", "STRONGLY_TYPED", "set_memory_pool_limit", "progress_monitor",
                 "HardwareCompatibilityLevel", "set_timing_cache", "build_serialized_network"):
        assert name in trt11
    for name in ("EXPLICIT_BATCH", "int8_calibrator"):
        assert not _present(name, trt11)


def test_every_tensorrt_name_exists_in_tensorrt_11_or_is_probed_and_gone() -> None:
    trt11 = _table(TRT11)
    ours = _defined_here()
    elsewhere = _known_elsewhere()
    probes = _hasattr_probes(TRT_MODULES + [PKG / "runtime" / "trt" / "precision.py"])
    used: dict[str, set[str]] = {}
    for path in TRT_MODULES:
        for name in _trt_attributes(path):
            used.setdefault(name, set()).add(path.name)
    unknown = {n: sorted(p) for n, p in used.items()
               if not _present(n, trt11) and n not in probes and n not in ours and n not in elsewhere}
    assert not unknown, f"TensorRT names missing from the 11.4 bindings (misspelt or removed): {unknown}"
    # what the code uses only behind a hasattr probe must be what TensorRT 11 removed, or the probe is stale
    # (exact match here: "INT8" survives in 11 only as the tail of "UINT8")
    gated = {n for n in used if n in probes and n not in trt11}
    assert {"EXPLICIT_BATCH", "FP16", "INT8"} <= gated, gated


def test_the_11_path_names_are_really_used() -> None:
    """The AST collection sees the calls (a guard against a check that passes because it collects nothing)."""
    used = set().union(*(_trt_attributes(p) for p in TRT_MODULES))
    for name in ("create_network", "parse", "set_memory_pool_limit", "create_optimization_profile",
                 "set_shape", "build_serialized_network", "deserialize_cuda_engine", "set_input_shape",
                 "set_tensor_address", "execute_async_v3", "engine_host_code_allowed", "STRONGLY_TYPED"):
        assert name in used, name


def test_a_misspelt_tensorrt_name_fails(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text((PKG / "runtime" / "trt" / "build.py").read_text().replace("set_memory_pool_limit", "set_memory_pool_limt"))
    trt11 = _table(TRT11)
    probes = _hasattr_probes(TRT_MODULES + [PKG / "runtime" / "trt" / "precision.py"])
    ours, elsewhere = _defined_here(), _known_elsewhere()  # once: each parses a package
    unknown = [n for n in _trt_attributes(bad) if not _present(n, trt11) and n not in ours
               and n not in elsewhere and n not in probes]
    assert unknown == ["set_memory_pool_limt"]


def test_every_cuda_python_name_exists_in_cuda_bindings() -> None:
    table = _table(CUDART)
    called = set()
    for path in CUDA_MODULES:
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "_call"
                    and node.args and isinstance(node.args[0], ast.Constant)):
                called.add(node.args[0].value)
            if isinstance(node, ast.Attribute):  # self._rt.cudaMemcpyKind.cudaMemcpyHostToDevice
                chain, value = [node.attr], node.value
                while isinstance(value, ast.Attribute):
                    chain.insert(0, value.attr)
                    value = value.value
                if "_rt" in chain[:-1]:
                    called.update(chain[chain.index("_rt") + 1:])
    assert {"cudaMalloc", "cudaMemcpyAsync", "cudaStreamBeginCapture", "cudaGraphLaunch"} <= called
    missing = sorted(n for n in called if not _present(n, table))
    assert not missing, f"cuda-python names not in cuda-bindings 13.5.0: {missing}"


def test_the_builder_and_the_engine_backend_are_among_the_checked_modules() -> None:
    checked = {p.relative_to(ROOT).as_posix() for p in TRT_MODULES}
    assert {"attn_export/runtime/trt/build.py", "attn_export/runtime/backends/tensorrt.py", "attn_export/doctor.py"} <= checked


def _patched_stubs(dest: Path) -> Path:
    """tensorrt-stubs 10.13.0.35.1 as mypy can read it: the package ships no py.typed for ``tensorrt`` and
    its generated .pyi has parameters named ``in``, a required parameter after defaulted ones, a module
    attribute ``bool`` that shadows the builtin in every annotation, and names it never imports. What is
    left (pybind11 artefacts) is silenced by the ``tensorrt_bindings`` override in pyproject.toml."""
    site = Path(sysconfig.get_paths()["purelib"])
    src = site / "tensorrt_bindings" / "tensorrt.pyi"
    if not src.is_file():
        pytest.skip("tensorrt-stubs is not installed (pip install --no-deps tensorrt-stubs==10.13.0.35.1)")
    (dest / "tensorrt").mkdir(parents=True)
    (dest / "tensorrt_bindings").mkdir()
    shutil.copy(site / "tensorrt" / "__init__.pyi", dest / "tensorrt" / "__init__.pyi")
    shutil.copy(site / "tensorrt_bindings" / "__init__.pyi", dest / "tensorrt_bindings" / "__init__.pyi")
    text = src.read_text()
    text = re.sub(r"\bin: ", "in_: ", text)
    text = re.sub(r"(?m)^bool: DataType.*$", "", text)  # a module attribute named bool shadows the builtin type
    text = re.sub(r"\bcapsule\b", "typing.Any", text)
    text = "import typing\nimport typing_extensions\n" + text
    text = text.replace("power: Weights = None, channel_axis: int)", "power: Weights = None, channel_axis: int = 0)")
    (dest / "tensorrt_bindings" / "tensorrt.pyi").write_text(text)
    return dest


def test_mypy_against_tensorrt_stubs(tmp_path: Path) -> None:
    stubs = _patched_stubs(tmp_path / "stubs")
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"), "--cache-dir",
         str(tmp_path / "cache"), "--follow-imports=silent", *MYPY_FILES],
        cwd=ROOT, capture_output=True, text=True, env={"MYPYPATH": str(stubs), "PATH": "/usr/bin:/bin"}, timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_sees_a_wrong_tensorrt_call(tmp_path: Path) -> None:
    """The stubs are really in force: a wrong TensorRT call is an error, not an Any."""
    stubs = _patched_stubs(tmp_path / "stubs")
    probe = tmp_path / "probe.py"
    probe.write_text("import tensorrt as trt\n\n"
                     "def f(c: trt.IBuilderConfig) -> None:\n"
                     "    c.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, 'a lot')\n"
                     "    c.set_memory_pool_limt(trt.MemoryPoolType.WORKSPACE, 1)\n")
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"), "--cache-dir",
         str(tmp_path / "cache"), str(probe)],
        cwd=ROOT, capture_output=True, text=True, env={"MYPYPATH": str(stubs), "PATH": "/usr/bin:/bin"}, timeout=600,
    )
    assert "set_memory_pool_limt" in result.stdout and "arg-type" in result.stdout, result.stdout


if __name__ == "__main__":
    if sys.argv[1:] == ["--tables"]:
        _make_tables()
    elif sys.argv[1:2] == ["--stubs"]:
        print(_patched_stubs(Path(sys.argv[2])))
    else:
        sys.exit("usage: python tests/test_trt_api.py --tables | --stubs DIR")
