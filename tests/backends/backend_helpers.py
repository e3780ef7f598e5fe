"""Small IR graphs built by hand, built for the CPU and compared with torch."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from backends.tvm.build import BuiltModule, build
from ir import Graph, Node
from ir.types import TensorType


@dataclass
class In:
    """A graph input with its test data."""

    shape: tuple
    dtype: str = "float32"
    low: float = -2.0
    high: float = 2.0

    def sample(self) -> torch.Tensor:
        if self.dtype == "bool":
            return torch.rand(self.shape) > 0.5
        if self.dtype.startswith("int"):
            return torch.randint(int(self.low), int(self.high), self.shape,
                                 dtype=getattr(torch, self.dtype))
        x = torch.rand(self.shape, dtype=torch.float64) * (self.high - self.low) + self.low
        return x.to(getattr(torch, self.dtype))


@dataclass
class W:
    """A weight (its data random unless given)."""

    shape: tuple
    low: float = -1.0
    high: float = 1.0

    def sample(self) -> np.ndarray:
        return np.random.uniform(self.low, self.high, self.shape).astype("float32")


@dataclass
class C:
    """A scalar constant."""

    value: float | int | bool
    dtype: str = "float32"


Operand = In | W | C


def single_op_graph(op: str, operands: Sequence[Operand], attrs: dict | None = None,
                    group: int | None = None) -> tuple[Graph, list]:
    """``op`` applied to ``operands``; returns the graph and the torch values of its
    operands (inputs, weights as tensors, constants as Python scalars)."""
    g = Graph()
    nodes: list[Node] = []
    values: list = []
    for i, spec in enumerate(operands):
        if isinstance(spec, In):
            t = spec.sample()
            nodes.append(g.add_input(f"x{i}", TensorType(spec.shape, spec.dtype)))
            values.append(t)
        elif isinstance(spec, W):
            data = spec.sample()
            nodes.append(g.add_weight(f"w{i}", data))
            values.append(torch.from_numpy(data))
        else:
            nodes.append(g.add_constant(spec.value, spec.dtype))
            values.append(spec.value)
    meta = {"group": group} if group is not None else None
    g.outputs = [g.call(op, nodes, attrs or {}, meta=meta)]
    return g, values


def graph_inputs(graph: Graph, values: list, operands: Sequence[Operand]) -> list[torch.Tensor]:
    return [v for v, spec in zip(values, operands) if isinstance(spec, In)]


def assert_close(actual: torch.Tensor, expected: torch.Tensor, rtol: float = 1e-4,
                 atol: float = 1e-5) -> None:
    assert actual.dtype == expected.dtype, (actual.dtype, expected.dtype)
    assert tuple(actual.shape) == tuple(expected.shape), (actual.shape, expected.shape)
    if expected.dtype.is_floating_point:
        torch.testing.assert_close(actual, expected, rtol=rtol, atol=atol, equal_nan=True)
    else:
        assert torch.equal(actual, expected)


def check_op(op: str, operands: Sequence[Operand], attrs: dict | None,
             reference: Callable[..., torch.Tensor], **tol) -> BuiltModule:
    graph, values = single_op_graph(op, operands, attrs)
    module = build(graph, "cpu")
    (actual,) = module(*graph_inputs(graph, values, operands))
    assert_close(actual, reference(*values), **tol)
    return module


def run_exported(folder: Path, x: torch.Tensor) -> torch.Tensor:
    """The first output of ``folder/lib.so`` (written by ``export_library``) on ``x``, run
    in a new process through its generated loader, with tvm and torch alone."""
    torch.save(x, folder / "x.pt")
    script = ("import torch, lib_loader; run = lib_loader.load('lib.so'); "
              "torch.save(run(torch.load('x.pt'))[0], 'y.pt')")
    done = subprocess.run([sys.executable, "-c", script], cwd=folder, capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(folder)})
    assert done.returncode == 0, done.stderr
    return torch.load(folder / "y.pt")
