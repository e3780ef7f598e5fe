"""Turn a MODEL argument of the command line into a model or a graph.

Accepted: ``path/to/file.py:factory``, ``package.module:factory`` (the factory returns
``(model, example_inputs)``), or a saved IR file (``.dsir`` text, ``.json``). Every
failure is a ``ModelSpecError`` with a one-line message.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any


class ModelSpecError(Exception):
    """The MODEL argument cannot be turned into a model: said in one line."""


def load_model_spec(spec: str) -> tuple[str, Any]:
    """``("graph", Graph)`` for IR files, ``("model", (model, inputs))`` for factories."""
    if spec.endswith((".dsir", ".json")):
        return "graph", _load_ir(spec)
    if ":" not in spec:
        raise ModelSpecError(f"{spec!r}: expected FILE.py:FACTORY, MODULE:FACTORY, or an "
                             f".dsir/.json IR file")
    where, name = spec.rsplit(":", 1)
    module = _load_module(where)
    factory = getattr(module, name, None)
    if factory is None or not callable(factory):
        raise ModelSpecError(f"{where} has no function {name!r}")
    try:
        result = factory()
    except Exception as e:
        raise ModelSpecError(f"{spec}: the factory raised {type(e).__name__}: {e}") from None
    if not (isinstance(result, tuple) and len(result) == 2):
        raise ModelSpecError(f"{spec}: the factory must return (model, example_inputs), got "
                             f"{type(result).__name__}")
    import torch

    if not isinstance(result[0], torch.nn.Module):
        raise ModelSpecError(f"{spec}: the factory's first value is a "
                             f"{type(result[0]).__name__}, not a torch.nn.Module")
    return "model", result


def _load_ir(path: str):
    import ir

    if not Path(path).is_file():
        raise ModelSpecError(f"{path}: no such file")
    try:
        return ir.load(path)
    except (ir.IRParseError, ir.IRFileError) as e:
        raise ModelSpecError(f"{path}: {e}".splitlines()[0]) from None


def _load_module(where: str):
    if where.endswith(".py"):
        path = Path(where)
        if not path.is_file():
            raise ModelSpecError(f"{where}: no such file")
        sys.path.insert(0, str(Path.cwd()))
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except Exception as e:
            raise ModelSpecError(f"{where}: importing it raised {type(e).__name__}: {e}") \
                from None
        return module
    try:
        sys.path.insert(0, str(Path.cwd()))
        return importlib.import_module(where)
    except Exception as e:
        raise ModelSpecError(f"cannot import {where}: {type(e).__name__}: {e}") from None
