"""Checks for tests (ours and the model-zoo's): run a capture through the reference
interpreter and compare it with eager PyTorch, output structure included."""

from __future__ import annotations

import collections
from typing import Any

import numpy as np
import torch
import torch.utils._pytree as pytree

import ir
from compiler.capture.api import CaptureResult
from compiler.capture.interpret import run_graph_numpy


def assert_matches_eager(model: torch.nn.Module, result: CaptureResult, args: tuple = (),
                         kwargs: dict | None = None, rtol: float = 1e-4,
                         atol: float = 1e-5) -> None:
    """The interpreted graph, rebuilt with ``out_spec``, equals ``model(*args, **kwargs)``:
    same container types, shapes, dtypes and values."""
    kwargs = kwargs or {}
    flat = [x for x in pytree.tree_leaves((args, kwargs)) if isinstance(x, torch.Tensor)]
    outputs = run_graph_numpy(result.graph, [x.detach().numpy() for x in flat])
    with torch.no_grad():
        expected = model(*args, **kwargs)
    rebuilt = pytree.tree_unflatten([torch.from_numpy(o) for o in outputs], result.out_spec)
    assert type(rebuilt) is type(expected), f"{type(rebuilt)} != {type(expected)}"
    got_leaves, want_leaves = pytree.tree_leaves(rebuilt), pytree.tree_leaves(expected)
    assert len(got_leaves) == len(want_leaves)
    for i, (got, want) in enumerate(zip(got_leaves, want_leaves)):
        assert got.shape == want.shape and got.dtype == want.dtype, \
            f"output {i}: {got.dtype}{list(got.shape)} vs eager {want.dtype}{list(want.shape)}"
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=rtol, atol=atol,
                                   err_msg=f"output {i}")


def op_histogram(graph: ir.Graph) -> collections.Counter[Any]:
    """How many nodes of each computing op the graph has."""
    return collections.Counter(n.op for n in graph.ops())
