"""dscompile: compile a torch.nn.Module through our IR and passes to Apache TVM.

>>> from compiler import dscompile
>>> compiled = dscompile(model.eval(), (x,), target="cpu")
>>> compiled(x)
"""

from compiler.api import dscompile
from compiler.errors import (
    CaptureError,
    DSCompileError,
    InputMismatchError,
    LoweringError,
    NumericsError,
    TargetError,
    ToolchainError,
    UnsupportedOpError,
)

__all__ = [
    "CaptureError", "DSCompileError", "InputMismatchError", "LoweringError", "NumericsError",
    "TargetError", "ToolchainError", "UnsupportedOpError", "dscompile",
]
