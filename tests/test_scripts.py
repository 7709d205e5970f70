"""The measuring scripts under ``scripts/`` run on a real artefact directory and check what they time. Their
figures are not asserted (the README and the closing notes carry them, with the CPU named)."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from conftest import ROOT, cli


def test_kernel_floor_times_the_nodes_that_run_inside_each_graph(tiny_dir: Path, tmp_path: Path) -> None:
    """``kernel_floor.py`` times each graph's LSTM nodes cut out alone; it refuses to print a row unless those
    nodes, fed what they receive inside the whole graph, give exactly what they give there (the dynamic INT8
    graph's row by row). A row per shape and graph, the INT8 graph's batch one sequence at a time."""
    directory = tmp_path / "model"
    shutil.copytree(tiny_dir, directory)
    assert cli("quantize", str(directory), "--int8").returncode == 0
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "kernel_floor.py"), str(directory),
                             "--seconds", "0.05"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines() if " x " in line[:9]]
    assert [(r[0], r[2], r[4]) for r in rows] == [
        ("1", "16", "model.onnx"), ("1", "16", "model.int8.onnx"), ("1", "128", "model.onnx"),
        ("1", "128", "model.int8.onnx"), ("32", "128", "model.onnx"), ("32", "128", "model.int8.onnx")]
    assert "(1 by 1)" in result.stdout.splitlines()[-1]
    assert all(float(value) > 0 for r in rows for value in (r[3], r[-5], r[-4], r[-3], r[-1]))


def test_kernel_floor_stops_unless_the_cut_nodes_give_what_they_gave_inside(tiny_dir: Path) -> None:
    """The check that makes the timing mean something: fed another input's tensors, the nodes alone give
    other outputs, and the script stops; the multiply-adds it rates them by are the LSTM's."""
    spec = importlib.util.spec_from_file_location("kernel_floor", ROOT / "scripts" / "kernel_floor.py")
    assert spec is not None and spec.loader is not None
    floor = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(floor)
    path = str(tiny_dir / "model.onnx")
    cut, fed, nodes = floor._cut(onnx.load(path))
    given = [o.name for o in cut.graph.output]
    info = json.loads((tiny_dir / "model.json").read_text())
    rng = np.random.default_rng(0)
    runs = [{"x": rng.standard_normal((2, 9, info["input_size"])).astype(np.float32), "lengths": np.array([9, 4])}
            for _ in range(2)]
    inside = [floor._captured(path, fed + given, feeds, 1, "fp32") for feeds in runs]
    captured = [{name: one[name] for name in fed} for one in inside]
    alone = floor._session(floor._typed(cut, captured[0]), 1, "fp32")
    floor._same_inside(path, alone, given, inside, captured)  # the same tensors: exactly the same outputs
    with pytest.raises(SystemExit, match="do not give what they give inside the graph"):
        floor._same_inside(path, alone, given, inside, captured[::-1])
    hidden = info["recipe"]["model"]["hidden_size"]
    assert floor._macs(nodes, captured[0]) == len(nodes) * 4 * hidden * (captured[0][nodes[0].input[0]].shape[-1]
                                                                          + hidden)
