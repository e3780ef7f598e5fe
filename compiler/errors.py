"""Errors dscompile raises at users. Each names what was wrong, where and what to do.

All derive from ``DSCompileError`` so callers can catch ours and not TVM's or torch's.
"""

from __future__ import annotations

from dataclasses import dataclass


class DSCompileError(Exception):
    """Base of every error dscompile raises on purpose."""


@dataclass(frozen=True)
class UnsupportedOp:
    op: str  # the torch op, e.g. "aten.fft_fft.default" or "torch.nn.GRU"
    node: str  # fx node name
    source: str | None  # "file.py:LINE in fn"

    def __str__(self) -> str:
        where = f" at {self.source}" if self.source else ""
        return f"{self.op} (fx node {self.node}){where}"


class UnsupportedOpError(DSCompileError):
    """Raised once with every unsupported op of the model, not just the first."""

    def __init__(self, ops: list[UnsupportedOp]):
        self.ops = ops
        lines = "\n  ".join(str(o) for o in ops)
        super().__init__(f"{len(ops)} unsupported op(s):\n  {lines}")


class CaptureError(DSCompileError):
    """The model could not be captured by torch.fx or torch.export."""


class InputMismatchError(DSCompileError, TypeError):
    """A call's arguments differ from what the module was compiled for."""


class TargetError(DSCompileError, ValueError):
    """An unknown target name or a malformed target dict."""


class ToolchainError(DSCompileError, RuntimeError):
    """A tool needed for the target (nvcc, ROCm device libs, ld.lld) is missing."""


class DeviceError(DSCompileError, RuntimeError):
    """The compiled module's device (a CUDA or ROCm GPU) is not present."""


class LoweringError(DSCompileError):
    """An op that the backend cannot lower, or TVM failing on a kernel; names the node."""


class NumericsError(DSCompileError):
    """The compiled module's results differ from eager PyTorch beyond tolerance.
    ``mismatches``: the outputs that differ; ``culprit``: a ``compiler.culprit.Culprit``
    (the pass or kernel to blame and ``.ir``, the smallest graph that shows it)."""

    def __init__(self, message: str, mismatches: list | None = None, culprit: object = None):
        super().__init__(message)
        self.mismatches = list(mismatches or [])
        self.culprit = culprit


class WeightsChangedError(DSCompileError, RuntimeError):
    """A parameter or buffer of the model changed after it was compiled: the compiled
    module holds the weights it was compiled with (shared, or folded into new ones)."""
