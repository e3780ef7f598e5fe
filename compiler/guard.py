"""The numerics guard: a compiled module must agree with eager PyTorch, or say why not.

At compile time (``dscompile(..., check="raise"|"warn"|"off")``, default
``DSCOMPILE_CHECK`` or ``"raise"``) the guard runs eager and compiled on the example
inputs and on ``RANDOM_TRIALS`` random inputs of the same shapes and dtypes (integer ids
stay within the example's range, so an embedding's indices stay valid), and compares
with a tolerance per dtype. On a mismatch ``compiler.culprit`` names the pass or kernel
that changed the numbers, with the smallest IR that shows it.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils import _pytree as pytree

from compiler.errors import NumericsError

# (rtol, atol) per dtype: compared as |a - b| <= atol + rtol * max|b| over each output,
# so a relative error is measured against the output's own scale. fp16 has 11 bits of
# mantissa, bf16 8: their accumulated rounding is that much larger.
TOLERANCES = {
    torch.float32: (1e-4, 1e-5),
    torch.float64: (1e-7, 1e-9),
    torch.float16: (1e-2, 1e-3),
    torch.bfloat16: (5e-2, 1e-2),
}
RANDOM_TRIALS = 2
TRIAL_SEED = 1234


@dataclass
class Mismatch:
    output: int
    max_error: float
    allowed: float
    note: str = ""

    def __str__(self) -> str:
        return f"output {self.output}: max error {self.max_error:.3g} > allowed " \
               f"{self.allowed:.3g}{self.note}"


def tolerance(*dtypes: torch.dtype | str | None) -> tuple[float, float]:
    """The loosest (rtol, atol) of ``dtypes``: the model's output dtype, the compiled
    one, and a reduced compute precision (``dscompile(dtype="float16")``)."""
    found = [TOLERANCES[d] for d in map(_torch_dtype, dtypes) if d in TOLERANCES]
    if not found:
        return TOLERANCES[torch.float32]
    return max(r for r, _ in found), max(a for _, a in found)


def _torch_dtype(dtype: torch.dtype | str | None) -> torch.dtype | None:
    if isinstance(dtype, str):
        return getattr(torch, dtype, None)
    return dtype


def compare(actual: list[torch.Tensor], expected: list[torch.Tensor],
            compute_dtype: torch.dtype | str | None = None) -> list[Mismatch]:
    """Outputs that differ beyond their dtype's tolerance; NaN/Inf must match exactly,
    integers and bools exactly, and the dtype must be eager's (unless ``compute_dtype``,
    a reduced precision the user asked for, is given)."""
    bad = []
    for i, (a, e) in enumerate(zip(actual, expected)):
        a, e = a.detach().cpu(), e.detach().cpu()
        if a.shape != e.shape:
            bad.append(Mismatch(i, float("inf"), 0.0, f" (shape {list(a.shape)} vs "
                                                      f"{list(e.shape)})"))
            continue
        if a.dtype != e.dtype and compute_dtype is None:
            bad.append(Mismatch(i, float("inf"), 0.0, f" (dtype {_name(a.dtype)} vs eager's "
                                                      f"{_name(e.dtype)})"))
            continue
        if not e.is_floating_point():
            if not torch.equal(a, e.to(a.dtype)):
                bad.append(Mismatch(i, float((a != e).sum()), 0.0, " (elements differ)"))
            continue
        a64, e64 = a.double(), e.double()
        nan = torch.isnan(e64)
        if not torch.equal(torch.isnan(a64), nan):
            bad.append(Mismatch(i, float("nan"), 0.0, " (NaN in different places)"))
            continue
        finite = torch.isfinite(e64)
        if not torch.equal(a64[~finite & ~nan], e64[~finite & ~nan]):
            bad.append(Mismatch(i, float("inf"), 0.0, " (Inf in different places)"))
            continue
        if finite.any():
            rtol, atol = tolerance(e.dtype, a.dtype, compute_dtype)
            err = float((a64[finite] - e64[finite]).abs().max())
            allowed = atol + rtol * float(e64[finite].abs().max())
            if not err <= allowed:
                bad.append(Mismatch(i, err, allowed))
    return bad


def _name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def random_like(tensor: torch.Tensor, generator: torch.Generator,
                centered: bool = False) -> torch.Tensor:
    """A random tensor that is a valid input wherever ``tensor`` was: integers (ids)
    within the example's range, floats with its mean and spread (``centered``: mean 0,
    so both signs occur even where the example has one), in its dtype."""
    if tensor.numel() == 0:
        return tensor.clone()
    if tensor.dtype == torch.bool:
        value = torch.rand(tensor.shape, generator=generator) > 0.5
    elif not tensor.is_floating_point():
        lo, hi = int(tensor.min()), int(tensor.max())
        value = torch.randint(lo, hi + 1, tensor.shape, generator=generator,
                              dtype=tensor.dtype)
    else:
        wide = tensor.detach().cpu().double()
        wide = wide[torch.isfinite(wide)]  # an example with NaN/Inf planted in it
        scale = float(wide.std()) if wide.numel() > 1 else 1.0
        mean = float(wide.mean()) if wide.numel() and not centered else 0.0
        noise = torch.randn(tensor.shape, generator=generator, dtype=torch.float64)
        value = (noise * (scale or 1.0) + mean).to(tensor.dtype)
    return value.to(tensor.device)


def trial_inputs(args: tuple, kwargs: dict) -> list[tuple[tuple, dict]]:
    """The example inputs, then RANDOM_TRIALS random ones of the same structure: like
    the example's values, then centered on zero."""
    trials = [(args, kwargs)]
    generator = torch.Generator().manual_seed(TRIAL_SEED)
    for n in range(RANDOM_TRIALS):
        centered = n % 2 == 1
        trials.append(pytree.tree_map_only(
            torch.Tensor, lambda t, c=centered: random_like(t, generator, centered=c),
            (args, kwargs)))
    return trials


def eager_outputs(model: torch.nn.Module, args: tuple, kwargs: dict) -> list[torch.Tensor]:
    with torch.no_grad():
        out = model(*args, **kwargs)
    return [x for x in pytree.tree_leaves(out) if isinstance(x, torch.Tensor)]


def find_mismatch(model: torch.nn.Module, compiled: Any, args: tuple, kwargs: dict,
                  compute_dtype: str | None = None) -> tuple[list[Mismatch], tuple, str]:
    """Mismatches on the first trial input that shows any, that input and its name. Eager
    runs where the inputs are (with the model), compiled on its own device."""
    device = getattr(compiled, "device", "cpu")
    for n, trial in enumerate(trial_inputs(args, kwargs)):
        expected = eager_outputs(model, *trial)
        moved = pytree.tree_map_only(torch.Tensor, lambda t: t.to(device), trial)
        with torch.no_grad():
            actual = compiled.run_flat(compiled.check_inputs(*moved))
        bad = compare(actual, expected, compute_dtype)
        if bad:
            name = "the example inputs" if n == 0 else \
                f"random inputs #{n} (seed {TRIAL_SEED}, same shapes and dtypes)"
            return bad, trial, name
    return [], (args, kwargs), ""


def can_run(compiled: Any) -> bool:
    """Whether this machine has the device the module was built for."""
    return compiled.device == "cpu" or torch.cuda.is_available()


def check_numerics(model: torch.nn.Module, compiled: Any, args: tuple, kwargs: dict,
                   options: Any) -> None:
    """Raise ``NumericsError`` (or warn, with ``check="warn"``) naming the culprit when
    ``compiled`` and ``model`` disagree."""
    if not can_run(compiled):  # cross-compiling: nothing to run the module on here
        warnings.warn(f"numerics guard skipped: the module is built for {compiled.device} "
                      f"and no {compiled.device} device is present; pass check='off' to "
                      f"silence this", RuntimeWarning, stacklevel=3)
        return
    bad, trial, where = find_mismatch(model, compiled, args, kwargs, options.dtype)
    if not bad:
        return
    from compiler.culprit import find_culprit

    culprit = find_culprit(model, compiled, trial, options)
    message = (f"compiled module disagrees with eager PyTorch on {where}:\n  "
               + "\n  ".join(map(str, bad)) + f"\n{culprit}\n(check='warn' to get the module "
               f"anyway, check='off' or DSCOMPILE_CHECK=off to skip this check)")
    if options.check == "warn":
        warnings.warn(message, RuntimeWarning, stacklevel=3)
        return
    raise NumericsError(message, bad, culprit)
