"""What the device needs to know about an ONNX file before a runtime opens it, read without onnx.

    graph = read_graph(path)   # initializers (name -> type, external location), nodes (op, inputs, outputs)

JetPack devices have numpy, TensorRT and perhaps onnxruntime, not onnx; yet an ONNX file must be checked
before ONNX Runtime or TensorRT reads it: external data that points outside its directory would have a
runtime read any file the process can (ONNX Runtime 1.32 refuses it itself, 1.19 and TensorRT's parser do
not), and one construct crashes ONNX Runtime 1.31/1.32 outright (``refuse_known_crash``). So this module
walks the protobuf wire format for the few fields those checks read: hand-written because the only
library that reads ONNX is onnx itself. Field numbers are onnx.proto's (IR version 10); unknown fields are
skipped, so later IR versions read too.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

from ..errors import BadInput

__all__ = ["Graph", "Node", "check_external_data", "read_graph", "refuse_known_crash"]

FLOAT16 = 10  # TensorProto.DataType
EXTERNAL = 1  # TensorProto.DataLocation
# message -> {field number: (name, message type or None for a scalar)}, only what the checks read
_MODEL_GRAPH, _MODEL_FUNCTIONS = 7, 25
_GRAPH = {1: "node", 5: "initializer", 15: "sparse_initializer"}
_FUNCTION_NODE = 7
_NODE = {1: "input", 2: "output", 4: "op_type", 5: "attribute", 7: "domain"}
_ATTRIBUTE_TENSORS, _ATTRIBUTE_GRAPHS = (5, 10), (6, 11)
_ATTRIBUTE_SPARSE = (22, 23)
_SPARSE_TENSORS = (1, 2)
_TENSOR = {2: "data_type", 8: "name", 13: "external_data", 14: "data_location"}


def _varint(data: bytes, pos: int) -> Tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _fields(data: bytes) -> Iterator[Tuple[int, object]]:
    """(field number, int for a varint | bytes for a length-delimited field); fixed-width fields skipped."""
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
            yield number, value
        elif wire == 2:
            size, pos = _varint(data, pos)
            if pos + size > len(data):
                raise ValueError("truncated field")
            yield number, data[pos:pos + size]
            pos += size
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        else:
            raise ValueError(f"wire type {wire} is not protobuf 3")


@dataclass(frozen=True)
class Node:
    op_type: str
    domain: str
    inputs: Tuple[str, ...]
    outputs: Tuple[str, ...]


@dataclass
class Graph:
    """The parts of a model the device checks: every graph's nodes (subgraphs and functions included)."""

    nodes: List[Node] = field(default_factory=list)
    initializer_types: Dict[str, int] = field(default_factory=dict)
    external: List[Tuple[str, str]] = field(default_factory=list)  # (tensor name, location)

    @property
    def stores_float16(self) -> bool:
        return FLOAT16 in self.initializer_types.values()


def _tensor(data: bytes, graph: Graph, initializer: bool) -> None:
    name, dtype, location, external = "", 0, 0, ""
    for number, value in _fields(data):
        if number == 8 and isinstance(value, bytes):
            name = value.decode("utf-8", "replace")
        elif number == 2 and isinstance(value, int):
            dtype = value
        elif number == 14 and isinstance(value, int):
            location = value
        elif number == 13 and isinstance(value, bytes):
            entry = dict(_fields(value))
            key, place = entry.get(1), entry.get(2)
            if key == b"location" and isinstance(place, bytes):
                external = place.decode("utf-8", "replace")
    if initializer:
        graph.initializer_types[name] = dtype
    if location == EXTERNAL:
        graph.external.append((name, external))


def _node(data: bytes, graph: Graph) -> None:
    inputs: List[str] = []
    outputs: List[str] = []
    op_type = domain = ""
    for number, value in _fields(data):
        if not isinstance(value, bytes):
            continue
        if number == 1:
            inputs.append(value.decode("utf-8", "replace"))
        elif number == 2:
            outputs.append(value.decode("utf-8", "replace"))
        elif number == 4:
            op_type = value.decode("utf-8", "replace")
        elif number == 7:
            domain = value.decode("utf-8", "replace")
        elif number == 5:  # an attribute: tensors and subgraphs inside it
            for a_number, a_value in _fields(value):
                if not isinstance(a_value, bytes):
                    continue
                if a_number in _ATTRIBUTE_TENSORS:
                    _tensor(a_value, graph, False)
                elif a_number in _ATTRIBUTE_GRAPHS:
                    _graph(a_value, graph)
                elif a_number in _ATTRIBUTE_SPARSE:
                    _sparse(a_value, graph)
    graph.nodes.append(Node(op_type, domain, tuple(inputs), tuple(outputs)))


def _sparse(data: bytes, graph: Graph) -> None:
    for number, value in _fields(data):
        if number in _SPARSE_TENSORS and isinstance(value, bytes):
            _tensor(value, graph, False)


def _graph(data: bytes, graph: Graph) -> None:
    for number, value in _fields(data):
        if not isinstance(value, bytes):
            continue
        if number == 1:
            _node(value, graph)
        elif number == 5:
            _tensor(value, graph, True)
        elif number == 15:
            _sparse(value, graph)


def read_graph(path: Path) -> Graph:
    """Parse ``path``'s model (not its external data); BadInput naming the file when it is not ONNX."""
    try:
        data = Path(path).read_bytes()
        graph = Graph()
        for number, value in _fields(data):
            if number == _MODEL_GRAPH and isinstance(value, bytes):
                _graph(value, graph)
            elif number == _MODEL_FUNCTIONS and isinstance(value, bytes):
                for f_number, f_value in _fields(value):
                    if f_number == _FUNCTION_NODE and isinstance(f_value, bytes):
                        _node(f_value, graph)
    except (OSError, ValueError, RecursionError) as e:
        raise BadInput(f"{path} is not a readable ONNX model: {e}") from None
    if not graph.nodes:
        raise BadInput(f"{path} is not a readable ONNX model: it holds no graph")
    return graph


def check_external_data(path: Path, graph: Optional[Graph] = None) -> None:
    """Refuse an ONNX file whose external-data locations escape its directory (absolute, ``..``, links
    out) or are missing: loading it would read any file the process can."""
    graph = graph or read_graph(path)
    root = Path(path).parent.resolve()
    for name, location in graph.external:
        target = (root / location).resolve()
        if os.path.isabs(location) or ".." in Path(location).parts or root not in target.parents:
            raise BadInput(f"{path} keeps tensor '{name}' in '{location}', outside its directory; "
                           "refusing to load it (external data must sit beside the model)")
        if not target.is_file():
            raise BadInput(f"{path} keeps tensor '{name}' in '{location}', which does not exist")


def refuse_known_crash(path: Path, graph: Optional[Graph] = None) -> None:
    """Refuse, with one line, a graph that crashes ONNX Runtime 1.31/1.32 at its default optimisation level
    (a segmentation fault takes the whole process; nothing is raised): an FP16 MatMul by a weight whose
    other input is a Transpose, as in FP16 graphs attn-export wrote before its portable form."""
    graph = graph or read_graph(path)
    produced = {o: n.op_type for n in graph.nodes for o in n.outputs}
    for node in graph.nodes:
        if (node.op_type == "MatMul" and len(node.inputs) == 2 and produced.get(node.inputs[0]) == "Transpose"
                and graph.initializer_types.get(node.inputs[1]) == FLOAT16):
            raise BadInput(f"{path} holds an FP16 MatMul of a Transpose by a constant weight, which crashes ONNX "
                           "Runtime 1.31/1.32 at its default optimisation level; re-make it with attn-export "
                           "quantize --fp16")
