"""``capture``: a torch.nn.Module and example inputs -> a verified ``ir.Graph``.

torch.fx ``symbolic_trace`` is tried first (it keeps nn.Module calls whole and its
source lines are the user's); models it cannot trace (data-dependent Python, HF models)
go through ``torch.export``. Unsupported ops are reported all at once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch
import torch.utils._pytree as pytree

import ir
from compiler.capture.inputs import Inputs, bind_inputs
from compiler.dynamic import DimSpec, normalize_dynamic
from compiler.errors import CaptureError, UnsupportedOpError

log = logging.getLogger(__name__)


@dataclass
class CaptureResult:
    """The captured graph and how to map torch values to and from its flat inputs/outputs.

    Attributes
    ----------
    graph : ir.Graph
        Verified; ``graph.inputs`` are the tensors of ``(args, kwargs)`` in pytree order,
        ``graph.outputs`` the model's output tensors in pytree order.
    out_spec : TreeSpec
        ``pytree.tree_unflatten(outputs, out_spec)`` rebuilds the model's output (a tensor,
        tuple, list, dict or HF ``ModelOutput``).
    in_spec : TreeSpec or None
        How ``(args, kwargs)`` flattened.
    method : str
        ``"fx"`` or ``"export"``.
    """

    graph: ir.Graph
    out_spec: pytree.TreeSpec
    in_spec: pytree.TreeSpec | None
    method: str


def capture(model: torch.nn.Module, example_inputs: tuple | list | dict | torch.Tensor,
            example_kwargs: dict | None = None, dynamic: dict | None = None
            ) -> CaptureResult:
    """Capture ``model`` (in eval mode) on ``example_inputs`` as an IR graph.

    Parameters
    ----------
    model : torch.nn.Module
        Must be in eval mode: dscompile compiles inference.
    example_inputs : Tensor, tuple, list or dict
        Positional arguments (a tuple or list), one tensor, or keyword arguments (a dict).
        Shapes and dtypes are fixed at these.
    example_kwargs : dict, optional
        Keyword arguments besides ``example_inputs``.
    dynamic : dict, optional
        Symbolic sizes: input name -> axis -> a name (``"seq"``), a ``(name, min, max)``
        or a ``compiler.dynamic.DimSpec``. Captured through ``torch.export`` with
        ``dynamic_shapes``; those dims are symbolic in the graph's types.

    Raises
    ------
    UnsupportedOpError
        Listing every op of the model that has no IR mapping, with its source line.
    CaptureError
        When neither torch.fx nor torch.export could trace the model.
    """
    check_eval_mode(model)
    args, kwargs = _split(example_inputs, example_kwargs)
    inputs = bind_inputs(model, args, kwargs)
    if dynamic:
        return _capture_dynamic(model, inputs, normalize_dynamic(dynamic))
    try:
        with torch.no_grad():
            eager = model(*args, **kwargs)
    except Exception as e:
        raise CaptureError(f"the model raised on the example inputs: {_first_line(e)}") from e
    eager_leaves, out_spec = pytree.tree_flatten(eager)

    from compiler.capture.export_frontend import capture_export
    from compiler.capture.fx_frontend import capture_fx

    fx_failure: Exception | None = None
    try:
        graph = capture_fx(model, inputs)
        method = "fx"
    except Exception as e:  # fx cannot trace many real models; export gets its turn
        fx_failure = e
        log.info("torch.fx capture failed (%s); trying torch.export", _first_line(e))
        try:
            graph = capture_export(model, inputs)
            method = "export"
        except UnsupportedOpError as export_unsupported:
            raise (fx_failure if isinstance(fx_failure, UnsupportedOpError)
                   else export_unsupported) from None
        except Exception as export_failure:
            if isinstance(fx_failure, UnsupportedOpError):
                raise fx_failure from None
            raise _both_failed(fx_failure, export_failure) from export_failure
    _check_outputs(graph, eager_leaves, method)
    ir.verify(graph)
    return CaptureResult(graph, out_spec, inputs.spec, method)


def _capture_dynamic(model: torch.nn.Module, inputs: Inputs,
                     dynamic: dict[str, dict[int, DimSpec]]) -> CaptureResult:
    """Symbolic capture: torch.fx records static shapes, so this is torch.export only."""
    from compiler.capture.export_frontend import capture_export
    from compiler.capture.symbolic import check_spec, widen_examples

    check_spec(inputs, dynamic)
    args, kwargs = pytree.tree_unflatten(widen_examples(inputs, dynamic), inputs.spec)
    inputs = bind_inputs(model, args, kwargs)
    try:
        with torch.no_grad():
            eager = model(*args, **kwargs)
    except Exception as e:
        raise CaptureError(f"the model raised on the example inputs: {_first_line(e)}") from e
    eager_leaves, out_spec = pytree.tree_flatten(eager)
    try:
        graph = capture_export(model, inputs, dynamic)
    except UnsupportedOpError:
        raise
    except Exception as e:
        raise CaptureError(f"torch.export with dynamic shapes failed: {_first_line(e)}") \
            from e
    _check_outputs(graph, eager_leaves, "export")
    ir.verify(graph)
    return CaptureResult(graph, out_spec, inputs.spec, "export")


def training_semantics(module: torch.nn.Module) -> str | None:
    """What ``module`` does differently in training mode, or None if nothing."""
    from torch.nn.modules.batchnorm import _BatchNorm
    from torch.nn.modules.dropout import _DropoutNd
    from torch.nn.modules.instancenorm import _InstanceNorm

    if isinstance(module, _BatchNorm) and module.track_running_stats:
        return "would normalize with each batch's statistics and update its running ones"
    if isinstance(module, _InstanceNorm) and module.track_running_stats:
        return "would update its running statistics"
    if isinstance(module, _DropoutNd) and module.p > 0:
        return f"would zero random elements (p={module.p})"
    if isinstance(module, torch.nn.RReLU):
        return "would draw random negative slopes"
    if isinstance(module, torch.nn.MultiheadAttention) and module.dropout > 0:
        return f"would drop random attention weights (p={module.dropout})"
    return None


def check_eval_mode(model: torch.nn.Module) -> None:
    """dscompile compiles inference and refuses training semantics rather than compile
    them: batch norm on batch statistics and random dropout differ on every call, and
    updating running statistics is a side effect a compiled program does not have. The
    error names each module in training mode that would behave differently, and why."""
    reasons = [f"{name or type(model).__name__} ({type(m).__name__}) {why}"
               for name, m in model.named_modules() if m.training
               and (why := training_semantics(m))]
    if not model.training and not reasons:  # a stray .train() on a plain submodule is moot
        return
    detail = "\n  ".join(reasons) or (
        "none of its modules is a BatchNorm or Dropout, but forward may read self.training")
    which = f"{type(model).__name__} is" if model.training else \
        f"{len(reasons)} submodule(s) of {type(model).__name__} are"
    raise CaptureError(
        f"{which} in training mode: call model.eval() before compiling (dscompile compiles "
        f"inference only, dropout off and batch norm on its running statistics, and does "
        f"not compile training semantics). In training mode:\n  {detail}")


def _split(example_inputs: Any, example_kwargs: dict | None) -> tuple[tuple, dict]:
    kwargs = dict(example_kwargs or {})
    if isinstance(example_inputs, dict):
        return (), {**example_inputs, **kwargs}
    if isinstance(example_inputs, torch.Tensor):
        return (example_inputs,), kwargs
    return tuple(example_inputs), kwargs


def _first_line(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"


def _both_failed(fx_error: Exception, export_error: Exception) -> CaptureError:
    return CaptureError(
        "could not capture the model with torch.fx or torch.export.\n"
        f"  torch.fx.symbolic_trace: {_first_line(fx_error)}\n"
        f"  torch.export.export: {_first_line(export_error)}\n"
        "Both need one straight-line graph: remove Python control flow that depends on "
        "tensor values (if x.sum() > 0, .item(), .tolist()), or express it with torch.where "
        "or torch.cond; return tensors (or tuples/dicts of them) only.")


def _check_outputs(graph: ir.Graph, eager_leaves: list, method: str) -> None:
    tensors = [x for x in eager_leaves if isinstance(x, torch.Tensor)]
    if len(tensors) != len(eager_leaves) or len(graph.outputs) != len(tensors):
        raise CaptureError(
            f"the {method} graph has {len(graph.outputs)} outputs but the model returns "
            f"{len(eager_leaves)} leaves ({len(tensors)} tensors); dscompile needs the "
            "model to return tensors (or tuples, lists, dicts, ModelOutputs of them)")
