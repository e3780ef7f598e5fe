"""``torch.compile(model, backend="dscompile")``: a TorchDynamo backend.

Dynamo splits the program at graph breaks and hands each captured fx graph here;
each goes through ``dscompile`` with the options given as
``torch.compile(..., options={"target": "cpu", "opt_level": 2})``. The backend is
registered by name on import of ``compiler`` and, for installed packages, through the
``torch_dynamo_backends`` entry point in pyproject.toml.
"""

from __future__ import annotations

from typing import Any

import torch


def dscompile_backend(gm: torch.fx.GraphModule, example_inputs: list,
                      options: dict[str, Any] | None = None, mode: str | None = None):
    """Compile one Dynamo graph; inputs that are not tensors (SymInts) fall back to eager."""
    from compiler.api import dscompile

    options = dict(options or {})
    if not all(isinstance(x, torch.Tensor) for x in example_inputs):
        return gm.forward  # symbolic sizes from Dynamo: run this graph eagerly
    options.setdefault("check", "off")  # Dynamo graphs are checked by the caller's tests
    compiled = dscompile(gm.eval(), tuple(example_inputs), **options)

    def run(*args: torch.Tensor):
        return compiled(*args)

    run.compiled = compiled  # type: ignore[attr-defined]
    return run


def register() -> None:
    from torch._dynamo import list_backends, register_backend

    if "dscompile" not in list_backends(exclude_tags=()):
        register_backend(compiler_fn=dscompile_backend, name="dscompile")
