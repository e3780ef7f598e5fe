"""The numerics guard: a compiled module must agree with eager PyTorch, or say why not.

At compile time the guard runs eager and compiled on the example inputs and on a few
random inputs of the same shapes and dtypes. On a mismatch it looks for the culprit:

1. re-optimize with each pass of the pipeline turned off in turn; a pass whose removal
   makes the numbers agree is named;
2. otherwise (or also, to show where) it compares every kernel's output with our
   reference interpreter on the same IR; the first kernel whose inputs agree but whose
   output does not is named, with its group's IR as the smallest program that shows it.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils import _pytree as pytree

from compiler.errors import NumericsError

# (rtol, atol) per dtype: compared as |a - b| <= atol + rtol * max|b| over each output,
# so a relative error is measured against the output's own scale.
TOLERANCES = {
    torch.float32: (1e-4, 1e-5),
    torch.float64: (1e-7, 1e-9),
    torch.float16: (1e-2, 1e-3),
    torch.bfloat16: (5e-2, 1e-2),
}
RANDOM_TRIALS = 2


@dataclass
class Mismatch:
    output: int
    max_error: float
    allowed: float
    note: str = ""

    def __str__(self) -> str:
        return f"output {self.output}: max error {self.max_error:.3g} > allowed " \
               f"{self.allowed:.3g}{self.note}"


def compare(actual: list[torch.Tensor], expected: list[torch.Tensor]) -> list[Mismatch]:
    """Outputs that differ beyond their dtype's tolerance; NaN/Inf must match exactly."""
    bad = []
    for i, (a, e) in enumerate(zip(actual, expected)):
        a, e = a.detach().cpu(), e.detach().cpu()
        if a.shape != e.shape:
            bad.append(Mismatch(i, float("inf"), 0.0, f" (shape {list(a.shape)} vs "
                                                      f"{list(e.shape)})"))
            continue
        if not e.is_floating_point():
            if not torch.equal(a, e.to(a.dtype)):
                bad.append(Mismatch(i, float((a != e).sum()), 0.0, " (elements differ)"))
            continue
        a32, e32 = a.double(), e.double()
        if not torch.equal(torch.isnan(a32), torch.isnan(e32)):
            bad.append(Mismatch(i, float("nan"), 0.0, " (NaN in different places)"))
            continue
        finite = torch.isfinite(e32)
        if not torch.equal(a32[~finite & ~torch.isnan(e32)], e32[~finite & ~torch.isnan(e32)]):
            bad.append(Mismatch(i, float("inf"), 0.0, " (Inf in different places)"))
            continue
        if finite.any():
            rtol, atol = TOLERANCES.get(e.dtype, (1e-4, 1e-5))
            err = float((a32[finite] - e32[finite]).abs().max())
            allowed = atol + rtol * float(e32[finite].abs().max())
            if not err <= allowed:
                bad.append(Mismatch(i, err, allowed))
    return bad


def random_like(tensor: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A random tensor that is a valid input wherever ``tensor`` was (ids stay in range)."""
    if tensor.dtype == torch.bool:
        return torch.rand(tensor.shape, generator=generator) > 0.5
    if not tensor.is_floating_point():
        lo, hi = int(tensor.min()), int(tensor.max())
        return torch.randint(lo, hi + 1, tensor.shape, generator=generator, dtype=tensor.dtype)
    scale = float(tensor.float().std()) if tensor.numel() > 1 else 1.0
    noise = torch.randn(tensor.shape, generator=generator) * (scale or 1.0)
    return (noise + tensor.float().mean()).to(tensor.dtype)


def trial_inputs(args: tuple, kwargs: dict) -> list[tuple[tuple, dict]]:
    """The example inputs, then RANDOM_TRIALS random ones of the same structure."""
    trials = [(args, kwargs)]
    generator = torch.Generator().manual_seed(1234)
    for _ in range(RANDOM_TRIALS):
        trials.append(pytree.tree_map_only(torch.Tensor, lambda t: random_like(t, generator),
                                           (args, kwargs)))
    return trials


def eager_outputs(model: torch.nn.Module, args: tuple, kwargs: dict) -> list[torch.Tensor]:
    with torch.no_grad():
        out = model(*args, **kwargs)
    return [x for x in pytree.tree_leaves(out) if isinstance(x, torch.Tensor)]


def find_mismatch(model, compiled, args: tuple, kwargs: dict) -> tuple[list[Mismatch], tuple]:
    """Mismatches on the first trial input that shows any, and that input."""
    for trial in trial_inputs(args, kwargs):
        expected = eager_outputs(model, *trial)
        actual = [x for x in pytree.tree_leaves(compiled(*trial[0], **trial[1]))
                  if isinstance(x, torch.Tensor)]
        bad = compare(actual, expected)
        if bad:
            return bad, trial
    return [], (args, kwargs)


def check_numerics(model, compiled, args: tuple, kwargs: dict, options) -> None:
    """Raise (or warn) with the culprit when ``compiled`` and ``model`` disagree."""
    bad, trial = find_mismatch(model, compiled, args, kwargs)
    if not bad:
        return
    culprit = find_culprit(model, compiled, trial, options)
    message = ("compiled module disagrees with eager PyTorch:\n  "
               + "\n  ".join(map(str, bad)) + "\n" + culprit)
    if options.check == "warn":
        warnings.warn(message, RuntimeWarning, stacklevel=3)
    else:
        raise NumericsError(message)


def find_culprit(model, compiled, trial: tuple, options) -> str:
    """A sentence naming the pass and/or kernel that changed the numbers."""
    lines = []
    try:
        culprit_pass = bisect_passes(model, compiled, trial, options)
        if culprit_pass:
            lines.append(f"culprit pass: {culprit_pass} (the numbers agree with it turned "
                         f"off: dscompile(..., passes=...) / opt_level to work around)")
    except Exception as e:  # the search must never hide the mismatch itself
        lines.append(f"(pass bisection failed: {type(e).__name__}: {e})")
    try:
        kernel = bisect_kernels(compiled, trial)
        if kernel:
            lines.append(kernel)
    except Exception as e:
        lines.append(f"(kernel bisection failed: {type(e).__name__}: {e})")
    return "\n".join(lines) or "no single pass or kernel could be blamed"


def bisect_passes(model, compiled, trial: tuple, options) -> str | None:
    """Re-optimize with one pass disabled at a time; the first fix names the pass."""
    from backends.tvm.target import resolve_target
    from compiler.api import build_module
    from compiler.capture import capture
    from compiler.pipelines import build_pipeline, run_passes

    args, kwargs = trial
    captured = capture(model, args, kwargs)
    pipeline = build_pipeline(options.opt_level, options.passes)
    target = resolve_target(options.target)
    for skip in range(len(pipeline)):
        passes = pipeline[:skip] + pipeline[skip + 1:]
        graph, records = run_passes(captured.graph, passes)
        candidate = build_module(graph, captured.out_spec, target, options, records)
        if not find_mismatch(model, candidate, args, kwargs)[0]:
            return pipeline[skip].name
    return None


def bisect_kernels(compiled, trial: tuple) -> str | None:
    """Compare each kernel's output with the reference interpreter on the same IR."""
    from backends.tvm.target import resolve_target
    from compiler.api import build_module
    from compiler.capture.interpret import run_graph_numpy
    from compiler.kernels import kernel_graph, kernel_groups

    graph = compiled.ir.copy()
    kernels = kernel_groups(graph)
    roots = [members[-1] for members in kernels]
    graph.outputs = list(roots)
    target = resolve_target(compiled.options.target)
    probe = build_module(graph, None, target, compiled.options)
    flat = compiled.check_inputs(*trial)
    actual = probe.run_flat(flat)
    expected = run_graph_numpy(graph, [t.numpy() for t in flat])
    for members, a, e in zip(kernels, actual, expected):
        bad = compare([a], [torch.from_numpy(np.asarray(e))])
        if bad:
            ops = "+".join(n.op for n in members)
            return (f"culprit kernel: {ops} computing {members[-1].describe()} ({bad[0]}); "
                    f"smallest IR that shows it:\n{kernel_graph(members)}")
    return None
