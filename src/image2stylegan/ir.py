"""Reader for OpenVINO IR version 10 (an XML graph plus a raw little-endian weight blob).

The bundled generator ships only in this format. We never run OpenVINO at run time: this module parses the graph
into plain Python objects so that a converter can pick the named tensors out of it and check the wiring it relies
on. Nothing here executes anything from the files; XML is parsed with the standard library and weights are read
with ``numpy.frombuffer``.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import InputError

_DTYPES = {
    "f32": np.float32,
    "f16": np.float16,
    "f64": np.float64,
    "i64": np.int64,
    "i32": np.int32,
    "i8": np.int8,
    "u8": np.uint8,
    "boolean": np.bool_,
}


@dataclass(frozen=True)
class IRLayer:
    """One node of the graph: its id, name, op type, attributes and the ids of the layers feeding each input port."""

    id: str
    name: str
    type: str
    attrs: dict[str, str]
    inputs: tuple[str, ...]  # producer layer id for each input port, in port order
    output_shapes: tuple[tuple[int, ...], ...]


@dataclass
class IRGraph:
    """A parsed IR: layers in file order (which OpenVINO writes topologically) and the constant tensors."""

    name: str
    layers: dict[str, IRLayer]
    consts: dict[str, np.ndarray] = field(repr=False)  # keyed by layer id
    consumers: dict[str, list[str]] = field(repr=False)  # layer id -> ids of layers reading its output

    def by_name(self, name: str) -> IRLayer:
        for layer in self.layers.values():
            if layer.name == name:
                return layer
        raise KeyError(f"no layer named {name!r} in IR graph {self.name!r}")

    def const(self, layer_id: str) -> np.ndarray:
        return self.consts[layer_id]

    def const_by_name(self, name: str) -> np.ndarray:
        return self.consts[self.by_name(name).id]

    def is_const(self, layer_id: str) -> bool:
        return layer_id in self.consts

    def of_type(self, op_type: str) -> list[IRLayer]:
        return [layer for layer in self.layers.values() if layer.type == op_type]

    def users(self, layer_id: str, op_type: str | None = None) -> list[IRLayer]:
        found = [self.layers[c] for c in self.consumers.get(layer_id, [])]
        return [u for u in found if op_type is None or u.type == op_type]


def read_ir(xml_path: str | Path) -> IRGraph:
    """Parse ``X.xml`` and its sibling ``X.bin`` into an :class:`IRGraph`.

    Raises :class:`InputError` with one line if the files are missing, malformed or not IR version 10.
    """
    xml_path = Path(xml_path)
    bin_path = xml_path.with_suffix(".bin")
    try:
        root = ET.parse(xml_path).getroot()
        blob = bin_path.read_bytes()
    except (OSError, ET.ParseError) as exc:
        raise InputError(f"cannot read OpenVINO IR {xml_path}: {exc}") from exc
    if root.tag != "net" or root.get("version") != "10":
        raise InputError(f"{xml_path} is not an OpenVINO IR v10 graph (tag {root.tag!r}, version {root.get('version')!r})")

    edges: dict[str, dict[int, str]] = {}
    consumers: dict[str, list[str]] = {}
    for edge in root.find("edges"):
        src, dst = edge.get("from-layer"), edge.get("to-layer")
        edges.setdefault(dst, {})[int(edge.get("to-port"))] = src
        consumers.setdefault(src, []).append(dst)

    layers: dict[str, IRLayer] = {}
    consts: dict[str, np.ndarray] = {}
    for node in root.find("layers"):
        lid = node.get("id")
        data = node.find("data")
        attrs = dict(data.attrib) if data is not None else {}
        out = node.find("output")
        shapes = tuple(tuple(int(d.text) for d in port.findall("dim")) for port in (out if out is not None else []))
        ports = edges.get(lid, {})
        layers[lid] = IRLayer(lid, node.get("name"), node.get("type"), attrs, tuple(ports[p] for p in sorted(ports)), shapes)
        if node.get("type") == "Const":
            consts[lid] = _read_const(blob, attrs, xml_path)
    return IRGraph(root.get("name"), layers, consts, consumers)


def _read_const(blob: bytes, attrs: dict[str, str], where: Path) -> np.ndarray:
    dtype = np.dtype(_DTYPES[attrs["element_type"]])
    shape = tuple(int(s) for s in attrs["shape"].split(",")) if attrs.get("shape") else ()
    offset, size = int(attrs["offset"]), int(attrs["size"])
    if offset + size > len(blob) or size != dtype.itemsize * int(np.prod(shape, dtype=np.int64)):
        raise InputError(f"{where.with_suffix('.bin')} is truncated or does not match its graph")
    # Copy so the arrays own writable memory (torch.from_numpy warns on read-only buffers).
    return np.frombuffer(blob, dtype, count=size // dtype.itemsize, offset=offset).reshape(shape).copy()
