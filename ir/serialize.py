"""Save and load graphs as files.

- ``.dsir``: the text form (``ir.printer``); weight data is not kept.
- ``.json``: the text form plus the weights (base64 ``.npy`` bytes) and node meta,
  so a loaded graph can be compiled again.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np

from ir.graph import Graph
from ir.parser import parse

FORMAT_VERSION = 1


class IRFileError(ValueError):
    """A saved IR file that cannot be read: truncated, corrupted or of another format."""


def to_json(graph: Graph) -> str:
    weights = {}
    for name, data in graph.weights.items():
        if data is not None:
            buf = io.BytesIO()
            np.save(buf, np.asarray(data, order="C"), allow_pickle=False)  # keeps 0-d
            weights[name] = base64.b64encode(buf.getvalue()).decode("ascii")
    meta = {n.name: n.meta for n in graph.nodes if n.meta}
    return json.dumps({"format": "dscompile-ir", "version": FORMAT_VERSION, "text": str(graph),
                       "weights": weights, "meta": meta}, default=str)


def from_json(text: str) -> Graph:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise IRFileError(f"not valid JSON (truncated or corrupted?): {e}") from None
    if not isinstance(doc, dict) or doc.get("format") != "dscompile-ir":
        raise IRFileError("not a dscompile IR file (no 'format': 'dscompile-ir')")
    if doc.get("version") != FORMAT_VERSION:
        raise IRFileError(f"IR file version {doc.get('version')}, this dscompile reads "
                          f"{FORMAT_VERSION}")
    if not isinstance(doc.get("text"), str) or not isinstance(doc.get("weights", {}), dict) \
            or not isinstance(doc.get("meta", {}), dict):
        raise IRFileError("damaged dscompile IR file: 'text' must be a string, 'weights' and "
                          "'meta' objects")
    graph = parse(doc["text"])
    for name, b64 in doc.get("weights", {}).items():
        if name not in graph.weights:
            raise IRFileError(f"weight {name!r} in the file is not a node of its graph")
        try:
            graph.weights[name] = np.load(io.BytesIO(base64.b64decode(b64)), allow_pickle=False)
        except Exception as e:  # numpy raises several types for damaged bytes
            raise IRFileError(f"weight {name!r} is damaged: {e}") from None
    for name, meta in doc.get("meta", {}).items():
        if not isinstance(meta, dict) or not any(n.name == name for n in graph.nodes):
            raise IRFileError(f"damaged meta of %{name} (not a node of its graph, or not an "
                              f"object)")
        graph.node(name).meta.update(meta)
    return graph


def save(graph: Graph, path: str | Path) -> None:
    path = Path(path)
    path.write_text(to_json(graph) if path.suffix == ".json" else str(graph))


def load(path: str | Path) -> Graph:
    """A graph from a ``.dsir`` or ``.json`` file. A malformed text raises ``IRParseError``
    (line and column); a file that is not one of ours, or damaged, ``IRFileError``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise IRFileError(f"{path}: not a text file (corrupted?): {e}") from None
    return from_json(text) if path.suffix == ".json" else parse(text)
