"""The measuring scripts under ``scripts/`` run on a real artefact directory and check what they time. Their
figures are not asserted (the README and the closing notes carry them, with the CPU named)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

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
