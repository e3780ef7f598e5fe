"""Definitions of the built-in ops: kind, arity, attributes and type inference.

Semantics follow PyTorch's eval-mode operators of the same name; where an
attribute differs from torch's argument it says so. Shapes may hold symbolic
dims (strings); inference passes them through where the op allows it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ir.registry import IRTypeError, attr, register_op
from ir.types import Dim, TensorType, is_float

Types = Sequence[TensorType]

# ----- helpers ---------------------------------------------------------------


def broadcast_shapes(*shapes: tuple[Dim, ...]) -> tuple[Dim, ...]:
    """NumPy/PyTorch broadcasting; a symbolic dim broadcasts against 1 or itself."""
    rank = max(len(s) for s in shapes)
    out: list[Dim] = []
    for axis in range(rank):
        dims = [s[axis - rank + len(s)] for s in shapes if axis - rank + len(s) >= 0]
        result: Dim = 1
        for d in dims:
            if d == 1 or d == result:
                continue
            if result == 1:
                result = d
            else:
                raise IRTypeError(f"shapes {list(shapes)} do not broadcast (axis {axis}: "
                                  f"{result} vs {d})")
        out.append(result)
    return tuple(out)


_FLOAT_RANK = {"float16": 1, "bfloat16": 1, "float32": 2, "float64": 3}
_INT_RANK = {"bool": 0, "uint8": 1, "int8": 1, "int32": 2, "int64": 3}


def promote(*types: TensorType) -> str:
    """Result dtype of an arithmetic op, torch-style: a 0-d operand does not widen a tensor
    of the same category (float 0-d with an int tensor gives float32)."""
    tensors = [t for t in types if t.rank > 0] or list(types)
    scalars = [t for t in types if t.rank == 0 and t not in tensors]
    dtype = tensors[0].dtype
    for t in tensors[1:]:
        dtype = _wider(dtype, t.dtype)
    for s in scalars:
        if is_float(s.dtype) and not is_float(dtype):
            dtype = "float32"
    return dtype


def _wider(a: str, b: str) -> str:
    if a == b:
        return a
    if is_float(a) != is_float(b):
        return a if is_float(a) else b
    if is_float(a):
        if {a, b} == {"float16", "bfloat16"}:
            return "float32"
        return a if _FLOAT_RANK[a] >= _FLOAT_RANK[b] else b
    return a if _INT_RANK[a] >= _INT_RANK[b] else b


def norm_axis(axis: int, rank: int, op: str) -> int:
    if not -rank <= axis < max(rank, 1):
        raise IRTypeError(f"{op}: axis {axis} out of range for rank {rank}")
    return axis % rank if rank else 0


def _same(types: Types, attrs: dict) -> TensorType:
    return types[0]


def _float_like(types: Types, attrs: dict) -> TensorType:
    t = types[0]
    return t if is_float(t.dtype) else TensorType(t.shape, "float32")


def _binary(types: Types, attrs: dict) -> TensorType:
    return TensorType(broadcast_shapes(*(t.shape for t in types)), promote(*types))


def _compare(types: Types, attrs: dict) -> TensorType:
    return TensorType(broadcast_shapes(*(t.shape for t in types)), "bool")


# ----- symbolic dims: a str dim is a name ("seq") or a polynomial of names ("batch*seq",
# "seq+1"), kept in one canonical spelling (sympy's, without spaces) so that two
# inferences of the same size compare equal as strings.

_NAME = __import__("re").compile(r"[A-Za-z_][A-Za-z_0-9]*")


def sym_dim(d: Dim) -> Any:
    """``d`` as a sympy expression over positive integer symbols."""
    import sympy

    if isinstance(d, int):
        return sympy.Integer(d)
    names = {n: sympy.Symbol(n, integer=True, positive=True) for n in _NAME.findall(d)}
    return sympy.sympify(d, locals=names)


def canonical_dim(expr: Any) -> Dim:
    """A sympy expression (or int) back as a dim: an int when it is a number."""
    import sympy

    expr = sympy.expand(sympy.sympify(expr))
    if expr.is_Integer:
        return int(expr)
    return str(expr).replace(" ", "")


def dim_add(*dims: Dim) -> Dim:
    if all(isinstance(d, int) for d in dims):
        return sum(dims)  # type: ignore[arg-type]
    return canonical_dim(sum((sym_dim(d) for d in dims), start=sym_dim(0)))


# ----- leaves (created by Graph.add_*; registered so the verifier knows them) ----------

register_op("input", "leaf", _same, 0, doc="A graph argument.")
register_op("weight", "leaf", _same, 0, doc="A parameter or buffer; data in Graph.weights.")
register_op("constant", "leaf", _same, 0, attrs={"value": (int, float, bool)},
            doc="A scalar (shape ()); broadcasts in elementwise ops.")

# ----- elementwise -------------------------------------------------------------------

for _name in ("relu", "relu6", "silu", "sigmoid", "tanh", "hardswish", "hardsigmoid", "exp",
              "log", "sqrt", "rsqrt", "erf", "sin", "cos", "reciprocal"):
    register_op(_name, "elementwise", _float_like, 1)
for _name in ("neg", "abs"):
    register_op(_name, "elementwise", _same, 1)
register_op("gelu", "elementwise", _float_like, 1, optional_attrs={"approximate": "none"},
            doc="approximate: 'none' (erf) or 'tanh'.")
register_op("leaky_relu", "elementwise", _float_like, 1, optional_attrs={"negative_slope": 0.01})
register_op("clamp", "elementwise", _same, 1, optional_attrs={"min": None, "max": None})
register_op("logical_not", "elementwise", lambda t, a: TensorType(t[0].shape, "bool"), 1)
register_op("cast", "elementwise", lambda t, a: TensorType(t[0].shape, a["dtype"]), 1,
            attrs={"dtype": str})

for _name in ("add", "sub", "mul", "div", "pow", "maximum", "minimum"):
    register_op(_name, "elementwise", _binary, 2)
for _name in ("eq", "ne", "lt", "le", "gt", "ge", "logical_and", "logical_or"):
    register_op(_name, "elementwise", _compare, 2)


def _where(types: Types, attrs: dict) -> TensorType:
    cond, a, b = types
    return TensorType(broadcast_shapes(cond.shape, a.shape, b.shape), promote(a, b))


register_op("where", "elementwise", _where, 3, doc="where(cond, a, b); masked_fill maps here.")


def _batch_norm(types: Types, attrs: dict) -> TensorType:
    x = types[0]
    if x.rank < 2:
        raise IRTypeError(f"batch_norm needs rank >= 2 input, got {x}")
    for t in types[1:]:
        if t.shape != (x.shape[1],):
            raise IRTypeError(f"batch_norm parameter of shape {t.shape}, expected ({x.shape[1]},)")
    return x


register_op("batch_norm", "elementwise", _batch_norm, (3, 5), optional_attrs={"eps": 1e-5},
            doc="Eval-mode batch norm: (x, running_mean, running_var[, weight[, bias]]).")

# ----- reductions ---------------------------------------------------------------------


def _reduce(types: Types, attrs: dict, op: str) -> TensorType:
    x = types[0]
    dims = attr(attrs, "dims", op)
    dims = tuple(range(x.rank)) if dims is None else tuple(norm_axis(d, x.rank, op) for d in dims)
    keep = attr(attrs, "keepdim", op)
    shape = [1 if i in dims else d for i, d in enumerate(x.shape)] if keep else \
        [d for i, d in enumerate(x.shape) if i not in dims]
    dtype = x.dtype if op in ("amax", "amin") or is_float(x.dtype) else \
        ("float32" if op == "mean" else "int64")
    return TensorType(tuple(shape), dtype)


for _name in ("sum", "mean", "amax", "amin"):
    register_op(_name, "reduction", lambda t, a, _op=_name: _reduce(t, a, _op), 1,
                optional_attrs={"dims": None, "keepdim": False},
                doc="dims=None reduces over all axes.")


def _softmax(types: Types, attrs: dict) -> TensorType:
    norm_axis(attrs["dim"], types[0].rank, "softmax")
    return _float_like(types, attrs)


register_op("softmax", "reduction", _softmax, 1, attrs={"dim": int})
register_op("log_softmax", "reduction", _softmax, 1, attrs={"dim": int})


def _layer_norm(types: Types, attrs: dict) -> TensorType:
    x = types[0]
    n = attrs["normalized_ndim"]
    if not 1 <= n <= x.rank:
        raise IRTypeError(f"layer_norm over {n} trailing dims of rank-{x.rank} input")
    for t in types[1:]:
        if t.shape != x.shape[x.rank - n:]:
            raise IRTypeError(f"layer_norm parameter of shape {t.shape}, expected "
                              f"{x.shape[x.rank - n:]}")
    return x


register_op("layer_norm", "reduction", _layer_norm, (1, 3), attrs={"normalized_ndim": int},
            optional_attrs={"eps": 1e-5}, doc="(x[, weight[, bias]]) over trailing dims.")


def _pool_out(size: Dim, k: int, s: int, p: int, d: int, ceil: bool) -> Dim:
    if not isinstance(size, int):
        raise IRTypeError("pooling/conv over a symbolic spatial dim is not supported")
    span = size + 2 * p - d * (k - 1) - 1
    out = (-(-span // s) if ceil else span // s) + 1
    if ceil and (out - 1) * s >= size + p:  # torch: last window must start inside the input
        out -= 1
    if out <= 0:
        raise IRTypeError(f"window {k} (stride {s}, padding {p}) larger than input {size}")
    return out


def _pool2d(types: Types, attrs: dict, op: str) -> TensorType:
    x = types[0]
    if x.rank != 4:
        raise IRTypeError(f"{op} needs an NCHW input, got {x}")
    k, s, p = attrs["kernel"], attrs["stride"], attrs["padding"]
    d = attr(attrs, "dilation", op) if op == "max_pool2d" else (1, 1)
    ceil = attr(attrs, "ceil_mode", op)
    h = _pool_out(x.shape[2], k[0], s[0], p[0], d[0], ceil)
    w = _pool_out(x.shape[3], k[1], s[1], p[1], d[1], ceil)
    return TensorType((x.shape[0], x.shape[1], h, w), x.dtype)


_POOL_ATTRS = {"kernel": tuple, "stride": tuple, "padding": tuple}
register_op("max_pool2d", "reduction", lambda t, a: _pool2d(t, a, "max_pool2d"), 1,
            attrs=_POOL_ATTRS, optional_attrs={"dilation": (1, 1), "ceil_mode": False})
register_op("avg_pool2d", "reduction", lambda t, a: _pool2d(t, a, "avg_pool2d"), 1,
            attrs=_POOL_ATTRS, optional_attrs={"ceil_mode": False, "count_include_pad": True})


def _adaptive_pool(types: Types, attrs: dict) -> TensorType:
    x = types[0]
    if x.rank != 4:
        raise IRTypeError(f"adaptive_avg_pool2d needs an NCHW input, got {x}")
    return TensorType((x.shape[0], x.shape[1], *attrs["output_size"]), x.dtype)


register_op("adaptive_avg_pool2d", "reduction", _adaptive_pool, 1, attrs={"output_size": tuple})

# ----- anchors ------------------------------------------------------------------------


def _conv2d(types: Types, attrs: dict) -> TensorType:
    x, w = types[0], types[1]
    if x.rank != 4 or w.rank != 4:
        raise IRTypeError(f"conv2d needs NCHW input and OIHW weight, got {x} and {w}")
    groups = attr(attrs, "groups", "conv2d")
    if x.shape[1] != w.shape[1] * groups:
        raise IRTypeError(f"conv2d: input has {x.shape[1]} channels, weight expects "
                          f"{w.shape[1]} x {groups} groups")
    if len(types) == 3 and types[2].shape != (w.shape[0],):
        raise IRTypeError(f"conv2d bias of shape {types[2].shape}, expected ({w.shape[0]},)")
    s, p, d = (attr(attrs, k, "conv2d") for k in ("stride", "padding", "dilation"))
    h = _pool_out(x.shape[2], w.shape[2], s[0], p[0], d[0], False)
    wd = _pool_out(x.shape[3], w.shape[3], s[1], p[1], d[1], False)
    return TensorType((x.shape[0], w.shape[0], h, wd), promote(x, w))


register_op("conv2d", "anchor", _conv2d, (2, 3),
            optional_attrs={"stride": (1, 1), "padding": (0, 0), "dilation": (1, 1), "groups": 1},
            doc="(x, weight[, bias]); NCHW / OIHW; padding is symmetric per axis.")


def _linear(types: Types, attrs: dict) -> TensorType:
    x, w = types[0], types[1]
    if w.rank != 2 or x.rank < 1 or x.shape[-1] != w.shape[1]:
        raise IRTypeError(f"linear: input {x} does not match weight {w} ([out, in])")
    if len(types) == 3 and types[2].shape != (w.shape[0],):
        raise IRTypeError(f"linear bias of shape {types[2].shape}, expected ({w.shape[0]},)")
    return TensorType((*x.shape[:-1], w.shape[0]), promote(x, w))


register_op("linear", "anchor", _linear, (2, 3), doc="(x, weight[out, in][, bias]): x @ W.T + b.")


def _matmul(types: Types, attrs: dict) -> TensorType:
    a, b = types
    if a.rank < 2 or b.rank < 2:
        raise IRTypeError(f"matmul needs rank >= 2 operands, got {a} and {b}")
    if a.shape[-1] != b.shape[-2]:
        raise IRTypeError(f"matmul: inner dims differ, {a} @ {b}")
    batch = broadcast_shapes(a.shape[:-2], b.shape[:-2])
    return TensorType((*batch, a.shape[-2], b.shape[-1]), promote(a, b))


register_op("matmul", "anchor", _matmul, 2, doc="Batched matmul with broadcast batch dims.")


def _sdpa(types: Types, attrs: dict) -> TensorType:
    q, k, v = types[:3]
    if q.rank < 2 or k.shape[-1] != q.shape[-1] or k.shape[-2] != v.shape[-2]:
        raise IRTypeError(f"sdpa: q {q}, k {k}, v {v} do not fit")
    return TensorType((*q.shape[:-1], v.shape[-1]), q.dtype)


register_op("sdpa", "opaque", _sdpa, (3, 4), optional_attrs={"is_causal": False, "scale": None},
            doc="scaled_dot_product_attention(q, k, v[, mask]); a bool mask keeps True.")


def _embedding(types: Types, attrs: dict) -> TensorType:
    table, idx = types
    if table.rank != 2 or is_float(idx.dtype):
        raise IRTypeError(f"embedding(table {table}, indices {idx})")
    return TensorType((*idx.shape, table.shape[1]), table.dtype)


register_op("embedding", "opaque", _embedding, 2, doc="(table[num, dim], int indices).")


def _gather(types: Types, attrs: dict) -> TensorType:
    x, idx = types
    dim = attrs["dim"]
    if x.rank != idx.rank or is_float(idx.dtype) or not -x.rank <= dim < x.rank:
        raise IRTypeError(f"gather(x {x}, dim {dim}, index {idx})")
    return TensorType(idx.shape, x.dtype)


register_op("gather", "opaque", _gather, 2, attrs={"dim": int},
            doc="torch.gather: out[i..] = x[i.. with axis dim replaced by index[i..]].")


def _index(types: Types, attrs: dict) -> TensorType:
    x, *indices = types
    first = attrs["first"]
    if any(is_float(t.dtype) or t.dtype == "bool" for t in indices) or \
            not 0 <= first <= x.rank - len(indices):
        raise IRTypeError(f"index of {x} at axis {first} by {[str(t) for t in indices]}")
    batch = broadcast_shapes(*(t.shape for t in indices))
    return TensorType((*x.shape[:first], *batch, *x.shape[first + len(indices):]), x.dtype)


register_op("index", "opaque", _index, (2, 9), attrs={"first": int},
            doc="x[:, .., I1, .., Ik, ..]: k adjacent axes from `first` indexed by int "
                "tensors broadcast together (torch advanced indexing; negatives wrap).")

# ----- injective (layout) -------------------------------------------------------------


def _reshape(types: Types, attrs: dict) -> TensorType:
    x = types[0]
    shape = tuple(attrs["shape"])
    if x.is_static and all(isinstance(d, int) for d in shape):
        if shape.count(-1) > 1:
            raise IRTypeError(f"reshape: more than one -1 in {shape}")
        known = 1
        for d in shape:
            known *= d if d != -1 else 1
        if -1 in shape:
            if known == 0 or x.numel() % known:
                raise IRTypeError(f"reshape {x} to {shape}: sizes do not divide")
            shape = tuple(x.numel() // known if d == -1 else d for d in shape)
        elif known != x.numel():
            raise IRTypeError(f"reshape {x} ({x.numel()} elements) to {shape}")
    return TensorType(shape, x.dtype)


register_op("reshape", "injective", _reshape, 1, attrs={"shape": tuple},
            doc="view/flatten/squeeze/unsqueeze map here; one -1 allowed.")


def _permute(types: Types, attrs: dict) -> TensorType:
    x = types[0]
    dims = attrs["dims"]
    if sorted(dims) != list(range(x.rank)):
        raise IRTypeError(f"permute {dims} of rank-{x.rank} tensor")
    return TensorType(tuple(x.shape[d] for d in dims), x.dtype)


register_op("permute", "injective", _permute, 1, attrs={"dims": tuple})


def _expand(types: Types, attrs: dict) -> TensorType:
    x = types[0]
    shape = tuple(attrs["shape"])
    if len(shape) < x.rank:
        raise IRTypeError(f"expand {x} to smaller rank {shape}")
    pad = (1,) * (len(shape) - x.rank) + tuple(x.shape)
    out = []
    for have, want in zip(pad, shape):
        if want == -1:
            want = have
        if have != 1 and have != want:
            raise IRTypeError(f"expand {x} to {shape}")
        out.append(want)
    return TensorType(tuple(out), x.dtype)


register_op("expand", "injective", _expand, 1, attrs={"shape": tuple})


def _slice(types: Types, attrs: dict) -> TensorType:
    x = types[0]
    dim = norm_axis(attrs["dim"], x.rank, "slice")
    size = x.shape[dim]
    start, end, step = attrs["start"], attrs["end"], attr(attrs, "step", "slice")
    if step <= 0:
        raise IRTypeError(f"slice step must be positive, got {step}")
    if isinstance(end, str) or not isinstance(size, int):
        # a symbolic end (x[:, :seq]) or a symbolic axis: the slice is taken to stay in
        # range, as torch's guards on the example inputs established at capture
        if step != 1 or not isinstance(start, int) or start < 0 or \
                (isinstance(end, int) and end < 0):
            raise IRTypeError(f"slice {start}:{end}:{step} of symbolic size {size}")
        end = size if isinstance(end, int) and end >= 2**62 else end
        length = canonical_dim(sym_dim(end) - start)
    else:
        start, end, _ = slice(start, end).indices(size)
        length = max(0, -(-(end - start) // step))
    shape = list(x.shape)
    shape[dim] = length
    return TensorType(tuple(shape), x.dtype)


register_op("slice", "injective", _slice, 1, attrs={"dim": int, "start": int, "end": (int, str)},
            optional_attrs={"step": 1}, doc="Python slice semantics on one axis.")


def _concat(types: Types, attrs: dict) -> TensorType:
    first = types[0]
    dim = norm_axis(attrs["dim"], first.rank, "concat")
    total: Any = 0
    for t in types:
        if t.rank != first.rank or any(a != b for i, (a, b) in enumerate(zip(t.shape, first.shape))
                                       if i != dim):
            raise IRTypeError(f"concat of {list(map(str, types))} along {dim}")
        total = dim_add(total, t.shape[dim])
    shape = list(first.shape)
    shape[dim] = total
    return TensorType(tuple(shape), promote(*types))


register_op("concat", "injective", _concat, (1, 1 << 16), attrs={"dim": int})


def _pad(types: Types, attrs: dict) -> TensorType:
    x = types[0]
    pads = attrs["pads"]  # torch order: last dim first, (before, after) pairs
    shape = list(x.shape)
    for i in range(len(pads) // 2):
        shape[-1 - i] = dim_add(shape[-1 - i], pads[2 * i] + pads[2 * i + 1])
    return TensorType(tuple(shape), x.dtype)


register_op("pad", "injective", _pad, 1, attrs={"pads": tuple}, optional_attrs={"value": 0.0},
            doc="Constant padding, torch.nn.functional.pad order.")


def _tri(types: Types, attrs: dict) -> TensorType:
    if types[0].rank < 2:
        raise IRTypeError("tril/triu need rank >= 2")
    return types[0]


register_op("tril", "injective", _tri, 1, optional_attrs={"diagonal": 0})
register_op("triu", "injective", _tri, 1, optional_attrs={"diagonal": 0})


def _cumsum(types: Types, attrs: dict) -> TensorType:
    x = types[0]
    norm_axis(attrs["dim"], x.rank, "cumsum")
    return TensorType(x.shape, x.dtype if x.dtype != "bool" else "int64")


register_op("cumsum", "opaque", _cumsum, 1, attrs={"dim": int})

# ----- sources ------------------------------------------------------------------------


def _arange(types: Types, attrs: dict) -> TensorType:
    start, end, step = attrs["start"], attrs["end"], attr(attrs, "step", "arange")
    if isinstance(end, str):  # arange(seq): a symbolic length
        if step != 1 or not isinstance(start, int):
            raise IRTypeError(f"arange({start}, {end}, {step}) with a symbolic end")
        return TensorType((canonical_dim(sym_dim(end) - start),), attrs["dtype"])
    n = max(0, -(-(end - start) // step))
    return TensorType((int(n),), attrs["dtype"])


register_op("arange", "injective", _arange, 0,
            attrs={"start": (int, float), "end": (int, float, str), "dtype": str},
            optional_attrs={"step": 1})
register_op("full", "injective", lambda t, a: TensorType(tuple(a["shape"]), a["dtype"]), 0,
            attrs={"shape": tuple, "value": (int, float, bool), "dtype": str},
            doc="ones/zeros/full map here.")
