"""Tensor types of the dscompile IR: a shape (static ints or symbolic names) and a dtype.

Dtypes are plain strings with the names numpy, torch and TVM share ("float32",
"int64", ...), so no conversion table is needed at the boundaries. A dimension is
either an ``int`` or a ``str`` naming a symbolic size ("batch", "seq"), which
leaves room for dynamic shapes without a second type.
"""

from __future__ import annotations

from dataclasses import dataclass

Dim = int | str

DTYPES = ("float32", "float16", "bfloat16", "float64", "int64", "int32", "int8", "uint8", "bool")

# Short spellings used by the text printer: f32[1,3,224,224].
_SHORT = {
    "float32": "f32",
    "float16": "f16",
    "bfloat16": "bf16",
    "float64": "f64",
    "int64": "i64",
    "int32": "i32",
    "int8": "i8",
    "uint8": "u8",
    "bool": "bool",
}
_LONG = {short: long for long, short in _SHORT.items()}

_ITEMSIZE = {
    "float32": 4,
    "float16": 2,
    "bfloat16": 2,
    "float64": 8,
    "int64": 8,
    "int32": 4,
    "int8": 1,
    "uint8": 1,
    "bool": 1,
}


def is_float(dtype: str) -> bool:
    return dtype.startswith("float") or dtype == "bfloat16"


def itemsize(dtype: str) -> int:
    return _ITEMSIZE[dtype]


def short_dtype(dtype: str) -> str:
    return _SHORT[dtype]


def long_dtype(short: str) -> str:
    if short in _LONG:
        return _LONG[short]
    if short in _SHORT:
        return short
    raise ValueError(f"unknown dtype {short!r}; known: {', '.join(_LONG)}")


@dataclass(frozen=True)
class TensorType:
    """The static type of a value: ``shape`` and ``dtype``. Scalars have shape ``()``."""

    shape: tuple[Dim, ...]
    dtype: str

    def __post_init__(self) -> None:
        if self.dtype not in _ITEMSIZE:
            raise ValueError(f"unknown dtype {self.dtype!r}")
        object.__setattr__(self, "shape", tuple(self.shape))

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def is_static(self) -> bool:
        return all(isinstance(d, int) for d in self.shape)

    def numel(self) -> int:
        """Number of elements; raises for symbolic shapes."""
        n = 1
        for d in self.shape:
            if not isinstance(d, int):
                raise ValueError(f"numel of symbolic shape {self.shape}")
            n *= d
        return n

    def nbytes(self) -> int:
        return self.numel() * itemsize(self.dtype)

    def __str__(self) -> str:
        return f"{short_dtype(self.dtype)}[{','.join(str(d) for d in self.shape)}]"
