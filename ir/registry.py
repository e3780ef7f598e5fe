"""The op registry: each op is data (its kind, arity, attrs and type inference).

Fusion, planning and the verifier ask the registry what an op *is*
(``OpDef.kind``) instead of testing op names. Kinds follow TVM's op patterns:

- ``elementwise``: output element i depends on input element i (with broadcasting);
- ``injective``: each output element reads one input element (reshape, permute, slice);
- ``reduction``: reduces along some axes (sum, softmax, layer_norm, pooling);
- ``anchor``: a compute-heavy op whose output can take a fused epilogue (conv, GEMM);
- ``opaque``: everything else (gathers, attention);
- ``leaf``: ``input``, ``weight``, ``constant``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ir.types import TensorType

KINDS = ("elementwise", "injective", "reduction", "anchor", "opaque", "leaf")

InferFn = Callable[[Sequence[TensorType], dict[str, Any]], TensorType]


class IRTypeError(ValueError):
    """Operand types or attributes that an op does not accept."""


@dataclass(frozen=True)
class OpDef:
    name: str
    kind: str
    infer: InferFn
    arity: tuple[int, int]  # (min, max) number of tensor operands
    attrs: dict[str, type | tuple] = field(default_factory=dict)  # required attrs and their types
    optional_attrs: dict[str, Any] = field(default_factory=dict)  # attr -> default
    doc: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"op {self.name}: unknown kind {self.kind!r}")


OPS: dict[str, OpDef] = {}


def register_op(name: str, kind: str, infer: InferFn, arity: int | tuple[int, int],
                attrs: dict | None = None, optional_attrs: dict | None = None,
                doc: str = "") -> OpDef:
    """Register an op. User passes may register ops of their own the same way."""
    if isinstance(arity, int):
        arity = (arity, arity)
    op = OpDef(name, kind, infer, arity, dict(attrs or {}), dict(optional_attrs or {}), doc)
    OPS[name] = op
    return op


def get_op(name: str) -> OpDef:
    try:
        return OPS[name]
    except KeyError:
        raise IRTypeError(f"unknown op {name!r}") from None


def infer_type(op: str, types: Sequence[TensorType], attrs: dict[str, Any]) -> TensorType:
    """Check arity and attributes, then run the op's own inference."""
    opdef = get_op(op)
    lo, hi = opdef.arity
    if not lo <= len(types) <= hi:
        want = str(lo) if lo == hi else f"{lo} to {hi}"
        raise IRTypeError(f"{op} takes {want} operands, got {len(types)}")
    for attr in opdef.attrs:
        if attr not in attrs:
            raise IRTypeError(f"{op} needs attribute {attr!r}")
    known = set(opdef.attrs) | set(opdef.optional_attrs)
    extra = set(attrs) - known
    if extra:
        raise IRTypeError(f"{op} has no attribute(s) {sorted(extra)}; known: {sorted(known)}")
    return opdef.infer(types, attrs)


def attr(attrs: dict[str, Any], name: str, op: str) -> Any:
    """An attribute's value, or the op's declared default."""
    if name in attrs:
        return attrs[name]
    return get_op(op).optional_attrs[name]


# Importing the op definitions fills OPS.
import ir.ops  # noqa: E402, F401
