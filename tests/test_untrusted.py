"""Untrusted files: an ONNX model that keeps tensors in another file is refused before any runtime reads
it, wherever that file lies: its bytes would be outside the sha256 the manifest records and the bundle."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from attn_export.errors import BadInput
from attn_export.runtime.iospec import IOSpec
from attn_export.runtime.store import Artifact


def external_model(directory: Path, location: str) -> Path:
    w = numpy_helper.from_array(np.ones((4, 4), np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], [w])
    path = directory / "model.onnx"
    onnx.save(helper.make_model(graph), str(path), save_as_external_data=True, location="w.data", size_threshold=0)
    proto = onnx.load(str(path), load_external_data=False)
    for entry in proto.graph.initializer[0].external_data:
        if entry.key == "location":
            entry.value = location
    onnx.save(proto, str(path))
    return path


@pytest.mark.parametrize("location", ["w.data", "../secret.bin", "/etc/passwd", "sub/../../secret.bin"])
def test_external_data_is_refused_wherever_it_lies(tmp_path: Path, location: str) -> None:
    (tmp_path / "secret.bin").write_bytes(b"\0" * 64)
    directory = tmp_path / "model"
    directory.mkdir()
    path = external_model(directory, location)
    with pytest.raises(BadInput, match=f"keeps tensor 'w' in the external file '{location}', outside the bytes "
                                       "attn-export hashes and ships"):
        Artifact.candidate(path, IOSpec.for_model(4, 3))


def test_a_single_file_model_is_read_as_bytes_and_parsed(tmp_path: Path) -> None:
    path = external_model(tmp_path, "w.data")
    proto = onnx.load(str(path))  # loads the external data: saved again as one file
    onnx.save(proto, str(path))
    artifact = Artifact.candidate(path, IOSpec.for_model(4, 3))
    assert artifact.data == path.read_bytes() and artifact.graph is not None
    assert [v.name for v in artifact.graph.inputs] == ["x"] and artifact.graph.outputs[0].dims == (1, 4)
