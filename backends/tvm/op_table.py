"""IR op -> TE compute: one entry per op of ``ir/ops.py``.

Each entry is ``fn(args, attrs, out) -> te.Tensor``: ``args`` are the operands (a
``te.Tensor``, or a ``PrimExpr`` for a scalar ``constant``), ``attrs`` the node's attrs and
``out`` the node's result type (shape as TIR expressions, dtype). Semantics are PyTorch's
eval-mode op of the same name. Computes are written so the CPU schedule rules can read
them: one block per op where possible, reductions as ``te.sum``/``te.max`` blocks.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tvm import te, tirx, topi

from backends.tvm import fastmath, winograd
from backends.tvm.blocked_layout import LAYOUT as BLOCKED
from backends.tvm.schedules.cpu import (  # the tiles the lowering pads to
    TILE_ROWS,
    TILE_VECS,
    VEC,
    whole_vector_row,
)

Operand = Any  # te.Tensor | tirx.PrimExpr


@dataclass(frozen=True)
class OutType:
    """The result type of a node, with symbolic dims as TIR variables."""

    shape: tuple
    dtype: str


OpFn = Callable[[list[Operand], dict, OutType], te.Tensor]
OP_TABLE: dict[str, OpFn] = {}


def register(*names: str) -> Callable[[OpFn], OpFn]:
    def wrap(fn: OpFn) -> OpFn:
        for name in names:
            OP_TABLE[name] = fn
        return fn

    return wrap


# ----- helpers -----------------------------------------------------------------------


def _static(shape: tuple) -> bool:
    return all(isinstance(d, (int, tirx.IntImm)) for d in shape)


def is_float(dtype: str) -> bool:
    return dtype.startswith("float") or dtype == "bfloat16"


def const(value: float | int | bool, dtype: str) -> tirx.PrimExpr:
    if dtype == "bool":
        return tirx.const(bool(value), "bool")
    if is_float(dtype):
        return tirx.const(float(value), dtype)
    return tirx.const(int(value), dtype)


def cast(x: tirx.PrimExpr, dtype: str) -> tirx.PrimExpr:
    return x if dtype_of(x) == dtype else x.astype(dtype)


def shape_of(x: Operand) -> tuple:
    return tuple(x.shape) if isinstance(x, te.Tensor) else ()


def dtype_of(x: Operand) -> str:
    """A tensor's or a scalar expression's dtype as a string ("float32")."""
    if isinstance(x, (te.Tensor, te.tensor.TensorSlice)):
        return str(x.dtype)
    return str(x.ty)


def at(x: Operand, index: tuple) -> tirx.PrimExpr:
    """``x`` read at the (broadcast) output ``index``: size-1 axes read element 0."""
    if not isinstance(x, te.Tensor):
        return x
    rank = len(x.shape)
    sub = index[len(index) - rank:] if rank else ()
    return x(*[_zero_like(i) if _is_one(d) else i for d, i in zip(x.shape, sub)])


def _is_one(dim: Any) -> bool:
    return isinstance(dim, (int, tirx.IntImm)) and int(dim) == 1


def _zero_like(index: tirx.PrimExpr) -> tirx.PrimExpr:
    return tirx.const(0, dtype_of(index))


_WIDTH = {"bool": 0, "uint8": 1, "int8": 1, "int32": 2, "int64": 3, "float16": 4,
          "bfloat16": 4, "float32": 5, "float64": 6}


def common_dtype(args: list[Operand]) -> str:
    """The dtype operands are compared in: the widest float, else the widest int."""
    return max((dtype_of(a) for a in args), key=lambda d: _WIDTH[d])


def elementwise(fn: Callable[..., tirx.PrimExpr], args: list[Operand], out: OutType,
                in_dtype: str | None = None, name: str = "T_elemwise") -> te.Tensor:
    """``out[i] = fn(*args[i])`` with broadcasting; operands cast to ``in_dtype``
    (default: the result dtype) first."""
    dtype = in_dtype or out.dtype

    def body(*index):
        return cast(fn(*[cast(at(a, index), dtype) for a in args]), out.dtype)

    return te.compute(out.shape, body, name=name)


def unary(fn: Callable[[tirx.PrimExpr], tirx.PrimExpr]) -> OpFn:
    return lambda args, attrs, out: elementwise(fn, args, out)


def norm_axis(axis: int, rank: int) -> int:
    return axis % rank if rank else 0


def norm_dims(dims: tuple | None, rank: int) -> list[int]:
    return list(range(rank)) if dims is None else sorted(norm_axis(d, rank) for d in dims)


# ----- elementwise -------------------------------------------------------------------


def exp(x: tirx.PrimExpr) -> tirx.PrimExpr:
    return fastmath.exp(x) if dtype_of(x) == "float32" else tirx.exp(x)


def erf(x: tirx.PrimExpr) -> tirx.PrimExpr:
    return fastmath.erf(x) if dtype_of(x) == "float32" else tirx.erf(x)


def tanh(x: tirx.PrimExpr) -> tirx.PrimExpr:
    return fastmath.tanh(x) if dtype_of(x) == "float32" else tirx.tanh(x)


def sigmoid(x: tirx.PrimExpr) -> tirx.PrimExpr:  # 1 / (1 + e^-x)
    one = const(1, dtype_of(x))
    return one / (one + exp(-x))


def _gelu(x: tirx.PrimExpr, approximate: str) -> tirx.PrimExpr:
    dtype = dtype_of(x)
    half, one = const(0.5, dtype), const(1.0, dtype)
    if approximate == "tanh":  # 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
        inner = const(math.sqrt(2.0 / math.pi), dtype) * (x + const(0.044715, dtype) * x * x * x)
        return half * x * (one + tanh(inner))
    return half * x * (one + erf(x * const(1.0 / math.sqrt(2.0), dtype)))  # erf form


# Clamps are written as selects on "x < lo" / "x > hi" so a NaN falls through unchanged,
# as in torch; tirx.max/min become LLVM's maxnum/minnum, which drop the NaN.


def clamp_expr(x: tirx.PrimExpr, lo: float | None, hi: float | None) -> tirx.PrimExpr:
    dtype = dtype_of(x)
    if lo is not None:
        x = tirx.Select(x < const(lo, dtype), const(lo, dtype), x)
    if hi is not None:
        x = tirx.Select(x > const(hi, dtype), const(hi, dtype), x)
    return x


def _relu6(x):  # min(max(x, 0), 6)
    return clamp_expr(x, 0, 6)


def _hardsigmoid(x):  # relu6(x + 3) / 6
    return _relu6(x + const(3, dtype_of(x))) / const(6, dtype_of(x))


register("relu")(unary(lambda x: clamp_expr(x, 0, None)))
register("relu6")(unary(_relu6))
register("sigmoid")(unary(sigmoid))
register("silu")(unary(lambda x: x * sigmoid(x)))
register("tanh")(unary(tanh))
register("hardswish")(unary(lambda x: x * _hardsigmoid(x)))
register("hardsigmoid")(unary(_hardsigmoid))
register("exp")(unary(exp))
register("log")(unary(tirx.log))
register("sqrt")(unary(tirx.sqrt))
register("rsqrt")(unary(lambda x: const(1, dtype_of(x)) / tirx.sqrt(x)))
register("erf")(unary(erf))
register("sin")(unary(tirx.sin))
register("cos")(unary(tirx.cos))
register("reciprocal")(unary(lambda x: const(1, dtype_of(x)) / x))
register("neg")(unary(lambda x: -x))
register("abs")(unary(tirx.abs))
register("cast")(unary(lambda x: x))


@register("gelu")
def gelu(args, attrs, out):
    return elementwise(lambda x: _gelu(x, attrs.get("approximate", "none")), args, out)


@register("leaky_relu")
def leaky_relu(args, attrs, out):
    slope = attrs.get("negative_slope", 0.01)

    def fn(x):  # x if x > 0 else slope * x
        return tirx.Select(x > const(0, dtype_of(x)), x, x * const(slope, dtype_of(x)))

    return elementwise(fn, args, out)


@register("clamp")
def clamp(args, attrs, out):
    return elementwise(lambda x: clamp_expr(x, attrs.get("min"), attrs.get("max")), args, out)


@register("logical_not")
def logical_not(args, attrs, out):
    return elementwise(lambda x: tirx.Not(x), args, out, in_dtype="bool")


def _isnan(x: tirx.PrimExpr) -> tirx.PrimExpr:
    if dtype_of(x) == "bfloat16":  # TVM has no bfloat16 isnan; widening keeps a NaN a NaN
        return tirx.isnan(x.astype("float32"))
    return tirx.isnan(x) if is_float(dtype_of(x)) else tirx.const(False, "bool")


# TVM folds x * 0 and 0 / x to 0 as it builds the expression, and refuses x / 0: torch
# gives NaN for an infinite or NaN x (or a zero one, dividing), and +-inf for x / 0.


def _zero(x: Operand) -> bool:
    return isinstance(x, tirx.FloatImm) and x.value == 0


def _widened(x: tirx.PrimExpr) -> tirx.PrimExpr:
    return x.astype("float32") if dtype_of(x) == "bfloat16" else x


def _mul(a, b):
    for x, zero in ((a, b), (b, a)):
        if _zero(zero) and not isinstance(x, tirx.FloatImm) and is_float(dtype_of(x)):
            return tirx.Select(tirx.isfinite(_widened(x)), zero, const(math.nan, dtype_of(x)))
    return a * b


def _sub(a, b):
    """``a - b`` for floats as ``a + (-b)``: TVM's simplifier rewrites a float ``Sub`` as
    if it were exact (``x - x -> 0``, ``(x + y) - x -> y``), which is NaN for an infinite
    x in torch; it leaves ``a + b * -1`` alone, and LLVM makes that one ``fsub`` again."""
    return a + (-b) if is_float(dtype_of(a)) else a - b


def _div(a, b):  # true division for floats, floor division for ints (torch floor_divide)
    if not is_float(dtype_of(a)):
        return tirx.floordiv(a, b)
    nan = const(math.nan, dtype_of(a))
    if _zero(b) and not isinstance(a, tirx.FloatImm):
        inf = const(math.copysign(math.inf, b.value), dtype_of(a))
        return tirx.Select(tirx.Or(_isnan(a), a == const(0, dtype_of(a))), nan,
                           tirx.Select(a > const(0, dtype_of(a)), inf, -inf))
    if _zero(a) and not isinstance(b, tirx.FloatImm):
        return tirx.Select(tirx.Or(_isnan(b), b == const(0, dtype_of(b))), nan, a)
    return a / b


def _pow(a, b):
    if isinstance(b, tirx.FloatImm) and b.value in (1.0, 2.0, 3.0, 4.0) and is_float(dtype_of(a)):
        result = a  # a small integer power as products: powf is a libm call per lane
        for _ in range(int(b.value) - 1):
            result = result * a
        return result
    if is_float(dtype_of(a)):
        return tirx.power(a, b)
    return tirx.power(a.astype("float64"), b.astype("float64")).astype(dtype_of(a))


_BINARY = {
    "add": lambda a, b: a + b,
    "sub": _sub,
    "mul": _mul,
    "div": _div,
    "pow": _pow,
    "maximum": lambda a, b: tirx.Select(tirx.Or(a > b, _isnan(a)), a, b),  # NaN wins
    "minimum": lambda a, b: tirx.Select(tirx.Or(a < b, _isnan(a)), a, b),
}
_COMPARE = {
    "eq": tirx.EQ,
    "ne": tirx.NE,
    "lt": lambda a, b: a < b,
    "le": lambda a, b: a <= b,
    "gt": lambda a, b: a > b,
    "ge": lambda a, b: a >= b,
}
_LOGICAL = {"logical_and": tirx.And, "logical_or": tirx.Or}

for _name, _fn in _BINARY.items():
    register(_name)(lambda args, attrs, out, _fn=_fn: elementwise(_fn, args, out))
for _name, _fn in _COMPARE.items():
    register(_name)(lambda args, attrs, out, _fn=_fn:
                    elementwise(_fn, args, out, in_dtype=common_dtype(args)))
for _name, _fn in _LOGICAL.items():
    register(_name)(lambda args, attrs, out, _fn=_fn:
                    elementwise(_fn, args, out, in_dtype="bool"))


@register("where")
def where(args, attrs, out):
    cond, a, b = args

    def body(*index):
        return tirx.Select(cast(at(cond, index), "bool"), cast(at(a, index), out.dtype),
                           cast(at(b, index), out.dtype))

    return te.compute(out.shape, body, name="T_where")


@register("batch_norm")
def batch_norm(args, attrs, out):
    """Eval mode: (x - mean) / sqrt(var + eps) * weight + bias, per channel (axis 1)."""
    x, mean, var, *affine = args
    eps = const(attrs.get("eps", 1e-5), out.dtype)

    def body(*index):
        c = index[1]
        y = (cast(x(*index), out.dtype) - mean[c]) / tirx.sqrt(var[c] + eps)
        if affine:
            y = y * affine[0][c]
        if len(affine) > 1:
            y = y + affine[1][c]
        return y

    return te.compute(out.shape, body, name="T_batch_norm")


# ----- reductions --------------------------------------------------------------------


# max_pool2d's window max keeps NaN (a NaN in the window wins) and starts from -inf, not
# te.max's lowest finite value. Its windows are small and never rfactored; amax/amin
# below are, and rfactor only knows te.max/te.min, so they flag NaN and all -inf apart.
nan_max = te.comm_reducer(lambda a, b: tirx.Select(tirx.Or(a > b, _isnan(a)), a, b),
                          lambda dtype: _lowest(str(dtype)), name="nan_max")


def _reduce_expr(reducer: Any, x: te.Tensor, dims: list[int], keep: bool, name: str,
                 fn: Callable = lambda v: v) -> te.Tensor:
    """``reducer`` of ``fn(x)`` over ``dims`` (one block, as topi's reductions)."""
    axes = {d: te.reduce_axis((0, x.shape[d]), name=f"k{d}") for d in dims}
    shape = [1 if d in axes else n for d, n in enumerate(x.shape) if keep or d not in axes]

    def body(*index):
        it = iter(index)
        full = []
        for d in range(len(x.shape)):
            if d in axes:
                if keep:
                    next(it)
                full.append(axes[d])
            else:
                full.append(next(it))
        return reducer(fn(x(*full)), axis=list(axes.values()))

    return te.compute(shape, body, name=name)


def _extreme(op: str, x: te.Tensor, dims: list[int], keep: bool) -> te.Tensor:
    """torch.amax/amin: NaN if the reduced values hold one; -inf (amax) / +inf (amin) if
    all are that, which te.max/te.min, starting from the lowest/highest finite value, miss.
    A second, int8 reduction flags it: 2 a NaN, 1 a value past the bound, 0 none."""
    dtype = dtype_of(x)
    is_max = op == "amax"
    peak = _reduce_expr(te.max if is_max else te.min, x, dims, keep, f"T_{op}")
    if not is_float(dtype):
        return peak
    bound = const(-math.inf if is_max else math.inf, dtype)
    two, one, zero = (tirx.const(v, "int8") for v in (2, 1, 0))

    def code(v):
        inside = v > bound if is_max else v < bound
        return tirx.Select(_isnan(v), two, tirx.Select(inside, one, zero))

    flag = _reduce_expr(te.max, x, dims, keep, f"T_{op}_flag", code)
    return te.compute(peak.shape, lambda *i: tirx.Select(
        flag(*i) == two, const(math.nan, dtype), tirx.Select(flag(*i) == zero, bound,
                                                             peak(*i))), name=f"T_{op}_nan")


def _reduce(op: str) -> OpFn:
    def fn(args, attrs, out):
        x = args[0]
        rank = len(x.shape)
        # a 0-d value has no axis to reduce: torch's x.amax(-1) on it is x itself
        dims = norm_dims(attrs.get("dims"), rank) if rank else []
        keep = attrs.get("keepdim", False)
        acc_dtype = out.dtype
        src = topi.cast(x, acc_dtype) if dtype_of(x) != acc_dtype else x
        if not dims:  # a copy: the kernel's result must not be its input
            src = te.compute(src.shape, lambda *i: src(*i), name=f"T_{op}")
        if op in ("amax", "amin"):
            return _extreme(op, src, dims, keep) if dims else src
        red = topi.sum(src, axis=dims, keepdims=keep) if dims else src
        if op != "mean":
            return red
        count = 1
        for d in dims:
            count = count * x.shape[d]
        return te.compute(red.shape, lambda *i: red(*i) / cast(count, acc_dtype), name="T_mean")

    return fn


for _name in ("sum", "mean", "amax", "amin"):
    OP_TABLE[_name] = _reduce(_name)


def _float_input(x: te.Tensor, dtype: str) -> te.Tensor:
    return x if dtype_of(x) == dtype else topi.cast(x, dtype)


def softmax_te(x: te.Tensor, axis: int, log: bool = False, safe: bool = False,
               vector_rows: bool = False) -> te.Tensor:
    """max -> exp(x - max) -> sum -> normalize (topi's four blocks, with our exp).
    ``safe``: a row that is -inf throughout gives zeros, not NaN (torch's
    ``_safe_softmax``, which scaled_dot_product_attention uses for fully masked rows).
    ``vector_rows`` (the CPU lowering): a last-axis row that is not whole vectors (ViT's
    197) has its max and sum reduced over the whole vectors and over the rest apart; the
    CPU rule vectorizes the first, where one reduction with a partial last vector stayed
    a scalar loop."""
    shape = x.shape
    if not shape:  # a 0-d softmax is exp(x - x) / exp(x - x): 1 (log: 0), NaN unless finite
        dtype = dtype_of(x)
        wide = x().astype("float32") if dtype == "bfloat16" else x()
        value = const(0 if log else 1, dtype)
        return te.compute((), lambda: tirx.Select(tirx.isfinite(wide), value,
                                                  const(math.nan, dtype)), name="T_softmax")
    red_shape = [d for i, d in enumerate(shape) if i != axis]

    def full(index, k):
        return (*index[:axis], k, *index[axis:])

    def row(index):
        return (*index[:axis], *index[axis + 1:])

    whole = _whole_vectors(shape[axis]) if vector_rows and axis == len(shape) - 1 else None

    def reduce(t, combine, name):
        """combine over the axis; with ``whole``, as the reduction over the whole vectors
        and the one over the rest, combined."""
        if whole is None:
            k = te.reduce_axis((0, shape[axis]), name="k")
            return te.compute(red_shape, lambda *i: combine(t(*full(i, k)), axis=k), name=name)
        k = te.reduce_axis((0, whole), name="k")
        head = te.compute(red_shape, lambda *i: combine(t(*full(i, k)), axis=k),
                          name=f"{name}_vectors")
        # the rest's axis starts at 0, offset in the index: compute_at mangled a reduce
        # axis that starts past 0 (its loop extent came out negative)
        r = te.reduce_axis((0, shape[axis] - whole), name="r")
        tail = te.compute(red_shape, lambda *i: combine(t(*full(i, whole + r)), axis=r),
                          name=f"{name}_tail")
        both = tirx.max if combine is te.max else (lambda a, b: a + b)
        return te.compute(red_shape, lambda *i: both(head(*i), tail(*i)), name=name)

    peak = reduce(x, te.max, "T_softmax_maxelem")
    e = te.compute(shape, lambda *i: exp(x(*i) - peak(*row(i))), name="T_softmax_exp")
    total = reduce(e, te.sum, "T_softmax_expsum")
    if log:
        return te.compute(shape, lambda *i: x(*i) - peak(*row(i)) - tirx.log(total(*row(i))),
                          name="T_log_softmax")
    if safe:  # the row's largest term is exp(0) = 1, so a zero sum means all -inf
        zero = const(0, dtype_of(x))
        return te.compute(shape, lambda *i: tirx.Select(total(*row(i)) == zero, zero,
                                                        e(*i) / total(*row(i))),
                          name="T_softmax_norm")
    return te.compute(shape, lambda *i: e(*i) / total(*row(i)), name="T_softmax_norm")


@register("softmax")
def softmax(args, attrs, out):
    x = _float_input(args[0], out.dtype)
    return softmax_te(x, norm_axis(attrs["dim"], len(x.shape)),
                      vector_rows=attrs.get("vector_rows", False))


def _whole_vectors(n: Any) -> int | None:
    """The part of a row of ``n`` in whole vectors, where a partial one follows."""
    if not isinstance(n, (int, tirx.IntImm)) or int(n) < 2 * VEC or int(n) % VEC == 0:
        return None
    return int(n) - int(n) % VEC


@register("log_softmax")
def log_softmax(args, attrs, out):
    x = _float_input(args[0], out.dtype)
    return softmax_te(x, norm_axis(attrs["dim"], len(x.shape)), log=True)


@register("layer_norm")
def layer_norm(args, attrs, out):
    """(x - mean) / sqrt(var + eps) [* weight] [+ bias] over the trailing dims; the variance
    is computed from centred values (two passes), as torch does, not from E[x^2]."""
    x, *affine = args
    n = attrs["normalized_ndim"]
    rank = len(x.shape)
    lead = rank - n
    count = 1
    for d in x.shape[lead:]:
        count = count * d
    inv = const(1.0, out.dtype) / cast(count, out.dtype)
    axes = [te.reduce_axis((0, d), name=f"k{i}") for i, d in enumerate(x.shape[lead:])]
    mean = te.compute(x.shape[:lead], lambda *i: te.sum(x(*i, *axes) * inv, axis=axes),
                      name="T_ln_mean")
    axes2 = [te.reduce_axis((0, d), name=f"j{i}") for i, d in enumerate(x.shape[lead:])]

    def sq(*i):
        diff = x(*i, *axes2) - mean(*i)
        return te.sum(diff * diff, axis=axes2)

    var = te.compute(x.shape[:lead], sq, name="T_ln_var")
    eps = const(attrs.get("eps", 1e-5), out.dtype)

    def body(*index):
        y = (x(*index) - mean(*index[:lead])) / tirx.sqrt(var(*index[:lead]) * inv + eps)
        if affine:
            y = y * affine[0](*index[lead:])
        if len(affine) > 1:
            y = y + affine[1](*index[lead:])
        return y

    return te.compute(x.shape, body, name="T_layer_norm")


def _lowest(dtype: str) -> tirx.PrimExpr:
    return tirx.min_value(dtype) if not is_float(dtype) else const(-math.inf, dtype)


def _pool2d(op: str) -> OpFn:
    def fn(args, attrs, out):
        """Windows over a padded copy; sizes come from the IR type (torch's ceil_mode rule)."""
        x = args[0]
        (kh, kw), (sh, sw), (ph, pw) = attrs["kernel"], attrs["stride"], attrs["padding"]
        dh, dw = attrs.get("dilation", (1, 1)) if op == "max_pool2d" else (1, 1)
        oh, ow = int(out.shape[2]), int(out.shape[3])
        h, w = int(x.shape[2]), int(x.shape[3])
        need_h, need_w = (oh - 1) * sh + (kh - 1) * dh + 1, (ow - 1) * sw + (kw - 1) * dw + 1
        extra_h, extra_w = max(0, need_h - h - ph), max(0, need_w - w - pw)
        fill = _lowest(dtype_of(x)) if op == "max_pool2d" else const(0, dtype_of(x))
        if attrs.get("layout") == BLOCKED:  # max pool only (blocked_layout.computes_blocked)
            return _max_pool2d_blocked(x, (kh, kw), (sh, sw), (ph, pw), (dh, dw), out, fill)
        if op == "max_pool2d" and attrs.get("cpu_tiles") and _static(out.shape):
            return _plane_windows(x, (kh, kw), (sh, sw), (ph, extra_h, pw, extra_w),
                                  (dh, dw), out, fill,
                                  lambda tap, ch, di, dj: nan_max(tap, axis=[di, dj]),
                                  "T_max_pool2d")
        padded = x
        if ph or pw or extra_h or extra_w:
            padded = topi.nn.pad(x, [0, 0, ph, pw], [0, 0, extra_h, extra_w], fill)
        rh = te.reduce_axis((0, kh), name="rh")
        rw = te.reduce_axis((0, kw), name="rw")

        def window(n, c, i, j):
            return padded[n, c, i * sh + rh * dh, j * sw + rw * dw]

        if op == "max_pool2d":
            return te.compute(out.shape, lambda n, c, i, j: nan_max(window(n, c, i, j),
                                                                     axis=[rh, rw]),
                              name="T_max_pool2d")
        total = te.compute(out.shape, lambda n, c, i, j: te.sum(window(n, c, i, j),
                                                                 axis=[rh, rw]),
                           name="T_pool_sum")
        include_pad = attrs.get("count_include_pad", True)

        def divisor(i, size, k, s, p):
            start = i * s - p
            end = tirx.min(start + k, size + p)
            if include_pad:
                return end - start
            return tirx.min(end, size) - tirx.max(start, 0)

        def avg(n, c, i, j):
            count = divisor(i, h, kh, sh, ph) * divisor(j, w, kw, sw, pw)
            return total[n, c, i, j] / cast(count, out.dtype)

        return te.compute(out.shape, avg, name="T_avg_pool2d")

    return fn


def _tap_or_fill(read: Callable, row: Any, col: Any, h: int, w: int,
                 fill: tirx.PrimExpr) -> tirx.PrimExpr:
    """``read(row, col)`` where (row, col) is inside the h x w input, else ``fill``: the
    blocked window ops' padding without a padded copy. The test is on the row and the
    column, the same for every lane of a channel block, and the read is clamped inside."""
    inside = tirx.all(row >= 0, row < h, col >= 0, col < w)
    clamped = read(tirx.min(tirx.max(row, 0), h - 1), tirx.min(tirx.max(col, 0), w - 1))
    return tirx.if_then_else(inside, clamped, fill)


def _max_pool2d_blocked(x, kernel, stride, pads, dilation, out, fill):
    """A max pool over NCHWc: the channels of a block are one vector, the window's
    taps whole-vector loads at any stride (the Reduction rule's window schedule). The
    bounds test is on the tap's row and column, the same for every lane: no padded copy."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, pads, dilation
    h, w = int(x.shape[2]), int(x.shape[3])
    rh = te.reduce_axis((0, kh), name="rh")
    rw = te.reduce_axis((0, kw), name="rw")

    def tap(n, c, i, j, k):
        return _tap_or_fill(lambda row, col: x[n, c, row, col, k],
                            i * sh + rh * dh - ph, j * sw + rw * dw - pw, h, w, fill)

    return te.compute(out.shape, lambda n, c, i, j, k: nan_max(tap(n, c, i, j, k),
                                                                  axis=[rh, rw]),
                      name="T_max_pool2d")


OP_TABLE["max_pool2d"] = _pool2d("max_pool2d")
OP_TABLE["avg_pool2d"] = _pool2d("avg_pool2d")


@register("adaptive_avg_pool2d")
def adaptive_avg_pool2d(args, attrs, out):
    return topi.nn.adaptive_pool(args[0], tuple(attrs["output_size"]), "avg", layout="NCHW")


# ----- anchors -----------------------------------------------------------------------


def _with_bias(y: te.Tensor, bias: te.Tensor | None, axis: int) -> te.Tensor:
    if bias is None:
        return y
    return te.compute(y.shape, lambda *i: y(*i) + bias[i[axis]], name="T_bias")


@register("conv2d")
def conv2d(args, attrs, out):
    x, w, *bias = args
    stride, padding = attrs.get("stride", (1, 1)), attrs.get("padding", (0, 0))
    dilation, groups = attrs.get("dilation", (1, 1)), attrs.get("groups", 1)
    x, w = _float_input(x, out.dtype), _float_input(w, out.dtype)
    if attrs.get("layout") == BLOCKED:
        left, right, top, bottom = attrs.get("prologue_pads", (0, 0, 0, 0))
        ph, pw = padding
        pads = (top + ph, bottom + ph, left + pw, right + pw)
        if winograd.parse_layout(attrs.get("weight_layout")):
            y = _conv2d_winograd(x, w, pads, out)
        elif groups == 1:
            y = _conv2d_blocked(x, w, stride, pads, dilation, out)
        else:  # depthwise (blocked_layout.computes_blocked)
            y = _depthwise_blocked(x, w, stride, pads, dilation, out)
        if not bias:
            return y
        lanes = int(w.shape[-1])
        return te.compute(y.shape, lambda n, c, i, j, k: y[n, c, i, j, k] + bias[0][c * lanes + k],
                          name="T_bias")
    if attrs.get("weight_layout") == "OIHW16o":
        y = _conv2d_packed(x, w, stride, padding, dilation, out)
    elif groups == 1:
        y = topi.nn.conv2d_nchw(x, w, stride, padding, dilation, out_dtype=out.dtype)
    elif groups == int(x.shape[1]) and int(w.shape[0]) == groups:  # depthwise, multiplier 1
        left, right, top, bottom = attrs.get("prologue_pads", (0, 0, 0, 0))
        if attrs.get("cpu_tiles") and _static(out.shape):
            ph, pw = padding
            y = _depthwise_whole_vectors(x, w, stride, (top + ph, bottom + ph, left + pw,
                                                        right + pw), dilation, out)
        else:
            if left or right or top or bottom:  # the pad the lowering folded in
                x = topi.nn.pad(x, [0, 0, top, left], [0, 0, bottom, right])
            y = topi.nn.depthwise_conv2d_nchw(x, w, stride, padding, dilation,
                                              out_dtype=out.dtype)
    else:
        y = topi.nn.group_conv2d_nchw(x, w, stride, padding, dilation, groups,
                                      out_dtype=out.dtype)
    return _with_bias(y, bias[0] if bias else None, axis=1)


def _depthwise_whole_vectors(x, w, stride, pads, dilation, out):
    """A depthwise conv (CPU) over rows of whole vectors (``_plane_windows``). ``pads``:
    (top, bottom, left, right), the conv's own and those of a pad fused before it
    (``compiler.passes.fuse``)."""
    def conv(tap, ch, di, dj):
        return te.sum(tap * w[ch, 0, di, dj], axis=[di, dj])

    kernel = int(w.shape[2]), int(w.shape[3])
    return _plane_windows(x, kernel, stride, pads, dilation, out, const(0, dtype_of(x)), conv,
                          "DepthwiseConv2d")


def _plane_windows(x, kernel, stride, pads, dilation, out, fill, reduce, name):
    """``reduce(tap, channel, di, dj)`` over each output's window of ``x`` padded with
    ``fill`` (CPU depthwise convs and max pools), in rows of whole vectors: 56 output
    columns computed as 64, the extra ones reading padding past the input's right edge
    and dropped at the write-back. A 56-wide row left a partial last vector, which TVM
    either predicates (then runs the tile scalar) or LLVM assembles lane by lane;
    MobileNetV2's widths are all 7 x 2^k. The CPU rule (``DepthwiseConv2d``) computes the
    padded input one channel plane at a time; at stride 2 the even and the odd columns
    in planes of their own, so each tap reads one contiguously (a stride-2 vector load
    is a shuffle)."""
    (kh, kw), (sh, sw), (top, bottom, left, right), (dh, dw) = kernel, stride, pads, dilation
    n, c, h, width = (int(d) for d in x.shape)
    oh, ow = int(out.shape[2]), int(out.shape[3])
    cols = whole_vector_row(ow)
    di = te.reduce_axis((0, kh), name="di")
    dj = te.reduce_axis((0, kw), name="dj")

    def padded_plane(phase: int, step: int, columns: int, plane: str) -> te.Tensor:
        """Columns ``phase``, ``phase + step``, ... of the padded input."""
        lo = -(-(left - phase) // step)  # first column k with k * step + phase >= left
        hi = -(-(left + width - phase) // step)

        def pad(b, ch, i, k):
            inside = tirx.all(i >= top, i < h + top, k >= lo, k < hi)
            return tirx.if_then_else(inside, x[b, ch, i - top, k * step + phase - left], fill)

        rows = max(top + h + bottom, (oh - 1) * sh + (kh - 1) * dh + 1)
        return te.compute((n, c, rows, columns), pad, name=plane)

    if sw == 2 and dw == 1:
        columns = cols + (kw - 1) // 2
        even, odd = (padded_plane(p, 2, columns, f"PaddedInput_{p}") for p in (0, 1))

        def tap(b, ch, i, j):
            row, col = i * sh + di * dh, j + dj // 2
            return tirx.if_then_else(dj % 2 == 0, even[b, ch, row, col], odd[b, ch, row, col])
    else:
        padded = padded_plane(0, 1, max((cols - 1) * sw + (kw - 1) * dw + 1,
                                        left + width + right), "PaddedInput")

        def tap(b, ch, i, j):
            return padded[b, ch, i * sh + di * dh, j * sw + dj * dw]

    windows = te.compute((n, c, oh, cols),
                         lambda b, ch, i, j: reduce(tap(b, ch, i, j), ch, di, dj), name=name)
    return te.compute(out.shape, lambda *i: windows(*i), name=f"{name}_columns")


def _conv2d_packed(x, w, stride, padding, dilation, out):
    """NCHW conv2d over a weight the backend packed as [OC / 16, IC, KH, KW, 16]: 16 output
    channels contiguous, so the CPU rule vectorizes over them (broadcasting one input
    value per FMA) whatever the stride or the output width."""
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    _, ic, kh, kw, lanes = (int(d) for d in w.shape)
    if ph or pw:
        x = topi.nn.pad(x, [0, 0, ph, pw], [0, 0, ph, pw], name="T_conv_pad")
    rc = te.reduce_axis((0, ic), name="rc")
    ry = te.reduce_axis((0, kh), name="ry")
    rx = te.reduce_axis((0, kw), name="rx")

    def body(n, c, i, j):
        value = x[n, rc, i * sh + ry * dh, j * sw + rx * dw]
        return te.sum(value * w[c // lanes, rc, ry, rx, c % lanes], axis=[rc, ry, rx])

    return te.compute(out.shape, body, name="T_conv2d_packed")


def _channel_pixel(x, n, c, row, col):
    """Channel ``c`` of pixel (``row``, ``col``) of image ``n``, from an NCHW or a blocked
    (NCHWc) ``x``: the dense blocked convs read either (a stem conv reads the image)."""
    if len(x.shape) == 5:
        lanes = int(x.shape[-1])
        return x[n, c // lanes, row, col, c % lanes]
    return x[n, c, row, col]


def _conv2d_blocked(x, w, stride, pads, dilation, out):
    """conv2d into NCHWc (``blocked_layout``) over the packed weight [OC / b, IC, KH, KW,
    b], from a blocked input (its own block size) or an NCHW one (a stem conv over the
    image). The CPU rule (``BlockedConv2d``) vectorizes the b channels of a block, which
    are contiguous in the result: its tiles are written back as whole vectors. ``pads``:
    (top, bottom, left, right), the conv's own and a prologue pad's."""
    (sh, sw), (top, bottom, left, right), (dh, dw) = stride, pads, dilation
    _, ic, kh, kw, _ = (int(d) for d in w.shape)
    blocked = len(x.shape) == 5
    if top or bottom or left or right:
        inner = [0] if blocked else []
        x = topi.nn.pad(x, [0, 0, top, left, *inner], [0, 0, bottom, right, *inner],
                        name="T_conv_pad")
    rc = te.reduce_axis((0, ic), name="rc")
    ry = te.reduce_axis((0, kh), name="ry")
    rx = te.reduce_axis((0, kw), name="rx")

    def body(n, c, i, j, k):
        value = _channel_pixel(x, n, rc, i * sh + ry * dh, j * sw + rx * dw)
        return te.sum(value * w[c, rc, ry, rx, k], axis=[rc, ry, rx])

    return te.compute(out.shape, body, name="T_conv2d_blocked")


def _conv2d_winograd(x, u, pads, out):
    """A 3x3, stride-1 conv into NCHWc by Winograd's F(m x m, 3 x 3) (``winograd``) over
    the transformed weight ``u`` [t * t, OC / b, IC, b], from a blocked or an NCHW input.
    Three computes, scheduled by ``WinogradConv2d``: the input transform of every tile
    (``T_wino_input``, [t * t, tiles, IC]), one product per tile position over the input
    channels (``T_wino_product``, [t * t, OC / b, tiles, b]: the 1x1 conv's inner loop),
    and the output transform (``T_wino_output``, the blocked result). The transforms are
    written out term by term with their constant coefficients, the zeros left out; each
    compute chooses its position's expression with a chain of ``if_then_else`` on the
    position, which the rule unrolls so that every choice folds away. Tiles reach past
    the input's edges (the conv's padding) through bounds-tested reads: no padded copy."""
    tt, _, ic, lanes = (int(d) for d in u.shape)
    mats = winograd.matrices(math.isqrt(tt) - 2)
    m, t = mats.m, mats.t
    batch, height, width = (int(out.shape[i]) for i in (0, 2, 3))
    rows, cols = -(-height // m), -(-width // m)  # the last tiles may reach past the edge
    top, left = pads[0], pads[2]
    zero = const(0, dtype_of(x))

    def tile_input(p, c):
        n, tile = p // (rows * cols), p % (rows * cols)
        row0, col0 = (tile // cols) * m - top, (tile % cols) * m - left

        def pixel(row, col):
            return _channel_pixel(x, n, c, row, col)

        return [[_tap_or_fill(pixel, row0 + a, col0 + b,
                              int(x.shape[2]), int(x.shape[3]), zero)
                 for b in range(t)] for a in range(t)]

    def input_transform(pos, p, c):
        d = tile_input(p, c)
        return _choose(pos, [_linear([(mats.bt[e, a] * mats.bt[f, b], d[a][b])
                                      for a in range(t) for b in range(t)])
                             for e in range(t) for f in range(t)])

    v = te.compute((tt, batch * rows * cols, ic), input_transform, name="T_wino_input")
    rc = te.reduce_axis((0, ic), name="rc")
    product = te.compute((tt, int(u.shape[1]), batch * rows * cols, lanes),
                         lambda pos, c, p, k: te.sum(v[pos, p, rc] * u[pos, c, rc, k], axis=rc),
                         name="T_wino_product")

    def output_transform(n, c, i, j, k):
        p = (n * rows + i // m) * cols + j // m
        return _choose((i % m) * m + j % m, [
            _linear([(mats.at[a, e] * mats.at[b, f], product[e * t + f, c, p, k])
                     for e in range(t) for f in range(t)])
            for a in range(m) for b in range(m)])

    return te.compute(out.shape, output_transform, name="T_wino_output")


def _linear(terms: list) -> tirx.PrimExpr:
    """sum(coefficient * value) over (coefficient, value) terms, without the zero terms
    and without the multiplies by +-1."""
    total = None
    for coefficient, value in terms:
        if coefficient == 0:
            continue
        term = value if abs(coefficient) == 1 else value * const(abs(coefficient), dtype_of(value))
        if total is None:
            total = term if coefficient > 0 else -term
        else:
            total = total + term if coefficient > 0 else total - term
    return total


def _choose(index: tirx.PrimExpr, exprs: list) -> tirx.PrimExpr:
    """``exprs[index]``, as a chain of ``if_then_else``: it folds to one expression where
    the loop over ``index`` is unrolled."""
    chosen = exprs[-1]
    for i in range(len(exprs) - 2, -1, -1):
        chosen = tirx.if_then_else(index == i, exprs[i], chosen)
    return chosen


def _depthwise_blocked(x, w, stride, pads, dilation, out):
    """A depthwise conv into NCHWc over the weight packed [C / b, 1, KH, KW, b]: the b
    channels of a block are one vector, each tap one whole-vector load at any stride
    (``BlockedDepthwiseConv2d``). No padded copy: a tap outside the input reads zero, a
    test on its row and column that is the same for every lane."""
    (sh, sw), (top, _, left, _), (dh, dw) = stride, pads, dilation
    blocked = len(x.shape) == 5
    h, width = int(x.shape[2]), int(x.shape[3])
    lanes = int(w.shape[-1])
    ry = te.reduce_axis((0, int(w.shape[2])), name="ry")
    rx = te.reduce_axis((0, int(w.shape[3])), name="rx")

    def tap(n, c, i, j, k):
        def read(row, col):
            return x[n, c, row, col, k] if blocked else x[n, c * lanes + k, row, col]

        return _tap_or_fill(read, i * sh + ry * dh - top, j * sw + rx * dw - left, h, width,
                            const(0, dtype_of(x)))

    return te.compute(out.shape, lambda n, c, i, j, k: te.sum(
        tap(n, c, i, j, k) * w[c, 0, ry, rx, k], axis=[ry, rx]), name="T_depthwise_blocked")


@register("linear")
def linear(args, attrs, out):
    """x @ W.T + b. ``attrs["weight_layout"]`` says how the backend bound a constant W so
    the inner loop reads it contiguously: "KN" transposed ([in, out]), "KN32" in panels
    of 32 output columns ([out / 32, in, 32]); absent: torch's [out, in]."""
    x, w, *bias = args
    k = te.reduce_axis((0, x.shape[-1]), name="k")
    layout = attrs.get("weight_layout")

    def weight_at(j):
        if layout == "KN":
            return w[k, j]
        if layout == "KN32":
            return w[tirx.floordiv(j, 32), k, tirx.floormod(j, 32)]
        return w[j, k]

    def body(*index):
        lhs = cast(x(*index[:-1], k), out.dtype)
        return te.sum(lhs * cast(weight_at(index[-1]), out.dtype), axis=k)

    y = _whole_tiles(out, body, "T_linear", attrs)
    return _with_bias(y, bias[0] if bias else None, axis=len(out.shape) - 1)


COLUMN_TILE = TILE_VECS * VEC  # the CPU matmul rule's register tile: TILE_ROWS rows by this


def _whole_tiles(out: OutType, body: Callable[..., tirx.PrimExpr], name: str, attrs: dict,
                 columns: int | None = None) -> te.Tensor:
    """``te.compute(out.shape, body)`` for a matmul-like op. With ``attrs["cpu_tiles"]``
    (the CPU lowering), rows are computed in whole register tiles: ViT's 197 tokens left a
    5-row tail whose tile was predicated row by row inside the reduction loop, and its
    GEMMs ran at 260 GFLOP/s against BERT's 440. The extra rows read the last real row
    (no padded copy of the input) and are dropped at the write-back. ``columns``: the
    padded column count, where the caller padded its right-hand operand."""
    rows = out.shape[-2] if len(out.shape) > 1 else None
    padded = _tiles_of(rows, TILE_ROWS) if attrs.get("cpu_tiles") else None
    if padded is None and columns is None:
        return te.compute(out.shape, body, name=name)

    def clamped(*index):
        if padded is None:
            return body(*index)
        return body(*index[:-2], tirx.min(index[-2], int(rows) - 1), index[-1])

    shape = (*out.shape[:-2], padded or rows, columns or out.shape[-1])
    tiles = te.compute(shape, clamped, name=name)
    return te.compute(out.shape, lambda *i: tiles(*i), name=f"{name}_tiles")


def _tiles_of(n: Any, tile: int) -> int | None:
    """``n`` rounded up to whole tiles, or None where it is whole already, at most one
    tile, or symbolic."""
    if not isinstance(n, (int, tirx.IntImm)) or int(n) <= tile or int(n) % tile == 0:
        return None
    return -(-int(n) // tile) * tile


SMALL_MATMUL_SIDE = 64  # rows or reduction at most this: whole vectors need no padding


def _padded_columns(n: Any, rows: Any, reduction: Any) -> int | None:
    """A matmul's column count padded to whole register tiles (two vectors), or None.
    Where the columns are whole vectors but not whole tiles (28 x 28 = 784: 49 vectors)
    the CPU rule's tile is 2 rows by 7 vectors instead, which beats the padded copy of
    the right-hand operand and the write-back of its own (MobileNetV2's 32 -> 192 at
    28x28: 0.047 -> 0.033 ms) while the rows are few or the 7-vector panel stays in L1
    (a short reduction); ResNet-50's 128 -> 512 ran faster padded."""
    static = _static((n, rows, reduction))
    if static and int(n) % VEC == 0 and min(int(rows), int(reduction)) <= SMALL_MATMUL_SIDE:
        return None
    return _tiles_of(n, COLUMN_TILE)


@register("matmul")
def matmul(args, attrs, out):
    a, b = args
    k = te.reduce_axis((0, a.shape[-1]), name="k")
    rank = len(out.shape)

    def operand(t, index, last):
        batch = index[:-2]
        rank_t = len(t.shape)
        bidx = [_zero_like(i) if _is_one(d) else i
                for d, i in zip(t.shape[:-2], batch[len(batch) - (rank_t - 2):])]
        return t(*bidx, *last)

    columns = _padded_columns(out.shape[-1], out.shape[-2] if rank > 1 else 1, a.shape[-1]) \
        if attrs.get("cpu_tiles") else None
    if columns is not None:  # a zero-padded copy of b: its rows are what the tile loads
        n, zero = int(out.shape[-1]), const(0, dtype_of(b))
        b = te.compute((*b.shape[:-1], columns),
                       lambda *i: tirx.if_then_else(i[-1] < n, b(*i), zero), name="T_matmul_pad")

    def body(*index):
        lhs = operand(a, index, (index[rank - 2], k))
        rhs = operand(b, index, (k, index[rank - 1]))
        return te.sum(cast(lhs, out.dtype) * cast(rhs, out.dtype), axis=k)

    return _whole_tiles(out, body, "T_matmul", attrs, columns)


def conv1x1_flat(args: list, attrs: dict, out: OutType) -> te.Tensor:
    """A 1x1, stride-1 conv2d over its H*W flattened: x [N, IC, P], w [OC, IC] (+ bias
    [OC]) -> [N, OC, P], lowered as the matmul w @ x. The CPU rule then vectorizes P and
    register-tiles OC, and writes each tile back as whole vectors; the packed conv's tile
    is channel-last and its NCHW write-back a transpose (MobileNetV2's and ResNet-50's 1x1
    convs at 56x56 and 112x112 spent a quarter of their time on it)."""
    x, w, *bias = args
    y = OP_TABLE["matmul"]([w, x], {**attrs, "cpu_tiles": True}, out)
    return _with_bias(y, bias[0] if bias else None, axis=1)


@register("sdpa")
def sdpa(args, attrs, out):
    """softmax(q @ k^T * scale + mask) @ v; a bool mask keeps True, ``is_causal`` keeps
    j <= i (torch's tril of ones)."""
    q, k, v, *mask = args
    dtype = out.dtype
    length, emb = q.shape[-2], q.shape[-1]
    skv = k.shape[-2]
    scale = attrs.get("scale")
    scale = const(1.0 / math.sqrt(int(emb)) if scale is None else scale, dtype)
    score_shape = (*q.shape[:-1], skv)
    r = len(score_shape)
    e = te.reduce_axis((0, emb), name="e")

    def bcast(t, index, last):
        lead = index[:-2]
        tb = t.shape[:-2]
        bidx = [_zero_like(i) if _is_one(d) else i for d, i in zip(tb, lead[len(lead) - len(tb):])]
        return t(*bidx, *last)

    def score(*index):
        i, j = index[r - 2], index[r - 1]
        return te.sum(bcast(q, index, (i, e)) * bcast(k, index, (j, e)) * scale, axis=e)

    s = te.compute(score_shape, score, name="T_sdpa_score")

    def masked(*index):
        val = s(*index)
        i, j = index[r - 2], index[r - 1]
        if mask:
            m = at(mask[0], index)
            val = tirx.Select(m, val, const(-math.inf, dtype)) if dtype_of(m) == "bool" else \
                val + cast(m, dtype)
        if attrs.get("is_causal"):
            val = tirx.Select(j <= i, val, const(-math.inf, dtype))
        return val

    s = te.compute(score_shape, masked, name="T_sdpa_mask") if mask or attrs.get("is_causal") \
        else s
    p = softmax_te(s, r - 1, safe=bool(mask))  # a mask may hide a whole row
    j = te.reduce_axis((0, skv), name="j")

    def attend(*index):
        return te.sum(p(*index[:-1], j) * bcast(v, index, (j, index[-1])), axis=j)

    del length
    return te.compute(out.shape, attend, name="T_sdpa_out")


@register("embedding")
def embedding(args, attrs, out):
    table, idx = args
    rank = len(idx.shape)
    return te.compute(out.shape, lambda *i: table[cast(idx(*i[:rank]), "int64"), i[rank]],
                      name="T_embedding")


@register("gather")
def gather(args, attrs, out):
    x, idx = args
    dim = norm_axis(attrs["dim"], len(x.shape))

    def body(*i):
        src = list(i)
        src[dim] = wrap_index(cast(idx(*i), "int64"), x.shape[dim])
        return x(*src)

    return te.compute(out.shape, body, name="T_gather")


@register("index")
def index(args, attrs, out):
    """x[:, I1, .., Ik]: output axes [first, first + batch rank) address the broadcast
    index tensors; each index reads at its own (broadcast) position."""
    x, *indices = args
    first = attrs["first"]
    batch_rank = len(out.shape) - len(x.shape) + len(indices)

    def body(*i):
        batch = i[first:first + batch_rank]
        src = list(i[:first])
        for k, idx in enumerate(indices):
            pos = bcast_index(idx, batch)
            src.append(wrap_index(cast(idx(*pos), "int64"), x.shape[first + k]))
        src += i[first + batch_rank:]
        return x(*src)

    return te.compute(out.shape, body, name="T_index")


def wrap_index(i, size):
    """torch's negative indices count from the end."""
    return tirx.Select(i < 0, i + cast(size, "int64"), i)


def bcast_index(t, batch):
    """The position in ``t`` of broadcast position ``batch`` (right-aligned, size-1 axes
    read at 0)."""
    rank = len(t.shape)
    tail = batch[len(batch) - rank:] if rank else ()
    return [0 if _is_one(d) else b for d, b in zip(t.shape, tail)]


def _is_one(d) -> bool:
    return isinstance(d, tirx.IntImm) and int(d) == 1


# ----- injective ---------------------------------------------------------------------


@register("reshape")
def reshape(args, attrs, out):
    return topi.reshape(args[0], out.shape)


@register("permute")
def permute(args, attrs, out):
    return topi.transpose(args[0], list(attrs["dims"]))


@register("expand")
def expand(args, attrs, out):
    x = args[0]
    return te.compute(out.shape, lambda *i: at(x, i), name="T_expand")


@register("slice")
def slice_(args, attrs, out):
    x = args[0]
    dim = norm_axis(attrs["dim"], len(x.shape))
    start, step = attrs["start"], attrs.get("step", 1)
    if isinstance(attrs["end"], int) and isinstance(x.shape[dim], tirx.IntImm):
        start, _, step = slice(start, attrs["end"], step).indices(int(x.shape[dim]))

    def body(*index):
        src = list(index)
        src[dim] = index[dim] * step + start
        return x(*src)

    return te.compute(out.shape, body, name="T_slice")


@register("concat")
def concat(args, attrs, out):
    parts = [a if dtype_of(a) == out.dtype else topi.cast(a, out.dtype) for a in args]
    return topi.concatenate(parts, axis=norm_axis(attrs["dim"], len(out.shape)))


@register("pad")
def pad(args, attrs, out):
    x = args[0]
    pads = attrs["pads"]
    rank = len(x.shape)
    before, after = [0] * rank, [0] * rank
    for i in range(len(pads) // 2):
        before[rank - 1 - i], after[rank - 1 - i] = pads[2 * i], pads[2 * i + 1]
    return topi.nn.pad(x, before, after, const(attrs.get("value", 0.0), dtype_of(x)))


def _tri(keep_lower: bool) -> OpFn:
    def fn(args, attrs, out):
        x = args[0]
        diag = attrs.get("diagonal", 0)

        def body(*index):
            i, j = index[-2], index[-1]
            keep = (j - i <= diag) if keep_lower else (j - i >= diag)
            return tirx.Select(keep, x(*index), const(0, dtype_of(x)))

        return te.compute(out.shape, body, name="T_tril" if keep_lower else "T_triu")

    return fn


OP_TABLE["tril"] = _tri(True)
OP_TABLE["triu"] = _tri(False)


@register("cumsum")
def cumsum(args, attrs, out):
    """A masked reduction (out[i] = sum_{j <= i} x[j]): quadratic in the axis length but an
    ordinary reduction block that every schedule rule understands."""
    x = args[0]
    dim = norm_axis(attrs["dim"], len(x.shape))
    j = te.reduce_axis((0, x.shape[dim]), name="j")

    def body(*index):
        src = list(index)
        src[dim] = j
        val = cast(x(*src), out.dtype)
        return te.sum(tirx.Select(j <= index[dim], val, const(0, out.dtype)), axis=j)

    return te.compute(out.shape, body, name="T_cumsum")


@register("arange")
def arange(args, attrs, out):
    start, step = attrs["start"], attrs.get("step", 1)
    work = "float64" if is_float(out.dtype) else "int64"
    return te.compute(out.shape, lambda i: cast(const(start, work) + cast(i, work)
                                                * const(step, work), out.dtype),
                      name="T_arange")


@register("full")
def full(args, attrs, out):
    return te.compute(out.shape, lambda *i: const(attrs["value"], out.dtype), name="T_full")


# ----- mixed precision ---------------------------------------------------------------
# With ``dscompile(dtype="float16"|"bfloat16")`` these ops compute in float32: operands
# are widened as they are read, the result rounded once at the end. Reductions, so the
# rounding error grows with the output's precision and not with the reduction's length
# (bf16 keeps 8 mantissa bits: a 256-term dot product summed in bf16 loses most of them);
# transcendental functions, which LLVM and CUDA have for float32 only (fp16 ``erf`` has
# no intrinsic).
HALF_DTYPES = ("float16", "bfloat16")
ACCUMULATE_IN_FP32 = ("linear", "matmul", "conv2d", "sdpa", "softmax", "log_softmax",
                      "layer_norm", "batch_norm", "sum", "mean", "avg_pool2d",
                      "adaptive_avg_pool2d", "cumsum")
TRANSCENDENTAL = ("sigmoid", "silu", "tanh", "exp", "log", "sqrt", "rsqrt", "erf", "sin",
                  "cos", "gelu", "pow")


def compute_in_fp32(fn: OpFn) -> OpFn:
    def widened(args, attrs, out):
        if out.dtype not in HALF_DTYPES:
            return fn(args, attrs, out)
        wide = [topi.cast(a, "float32") if isinstance(a, te.Tensor) and dtype_of(a) in
                HALF_DTYPES else a for a in args]
        return topi.cast(fn(wide, attrs, OutType(out.shape, "float32")), out.dtype)

    return widened


for _name in ACCUMULATE_IN_FP32 + TRANSCENDENTAL:
    OP_TABLE[_name] = compute_in_fp32(OP_TABLE[_name])
