"""The seeded spec generator: a random walk that appends small recipes (one op, or a
pattern the fusions look for) to a growing program, each on a random earlier value.

Every proposed node runs at once on real tensors (``Program.append``); a node that does
not fit (shapes, ranges, blow-ups) is dropped, so recipes may propose freely.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import torch
from graph_gen import BINARY, UNARY, InvalidSpec, Program, Spec

MAX_NUMEL = 40_000  # keeps each graph's compile and run around a second
ACTIVATIONS = ("relu", "relu6", "hardswish", "silu", "sigmoid", "gelu", "tanh", "leaky_relu")


class Gen:
    """The program under construction and the random choices that grow it."""

    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        self.prog = Program()
        self.focus: int | None = None  # pick() returns this value where it fits

    # --- adding nodes ---

    def add(self, op: str, args: list[int], **attrs) -> int | None:
        """Append a node; its index, or None where it does not fit."""
        node = {"op": op, "args": list(args), **attrs}
        if op in OWNS_PARAMS:
            node["seed"] = self.rng.randrange(1 << 20)
        try:
            value = self.prog.append(node)
        except InvalidSpec:
            return None
        if value.numel() > MAX_NUMEL:
            self.pop()
            return None
        return len(self.prog.spec) - 1

    def add_input(self, shape: list[int], dtype: str = "float32", **attrs) -> int:
        node = {"op": "input", "shape": list(shape), "dtype": dtype,
                "seed": self.rng.randrange(1 << 20), **attrs}
        self.prog.append(node)
        return len(self.prog.spec) - 1

    def pop(self) -> None:
        self.prog.pop()

    # --- choosing operands ---

    def value(self, i: int) -> torch.Tensor:
        return self.prog.values[i]

    def shape(self, i: int) -> tuple[int, ...]:
        return tuple(self.value(i).shape)

    def find(self, pred: Callable[[torch.Tensor], bool] = lambda v: True,
             dtype: str = "float") -> list[int]:
        out = []
        for i, v in enumerate(self.prog.values):
            kind = "float" if v.dtype == torch.float32 else "float64" if v.is_floating_point() \
                else "bool" if v.dtype == torch.bool \
                else "int"
            if kind == dtype and pred(v):
                out.append(i)
        return out

    def pick(self, pred: Callable[[torch.Tensor], bool] = lambda v: True,
             dtype: str = "float") -> int | None:
        """A value that fits, usually a recent one (depth), sometimes an old one (branches,
        shared inputs)."""
        cands = self.find(pred, dtype)
        if self.focus is not None:
            return self.focus if self.focus in cands else None
        if not cands:
            return None
        if self.rng.random() < 0.6:
            return cands[-1] if self.rng.random() < 0.5 else cands[-min(len(cands), 2)]
        return self.rng.choice(cands)

    def choice(self, seq):
        return self.rng.choice(list(seq))

    def coin(self, p: float = 0.5) -> bool:
        return self.rng.random() < p


OWNS_PARAMS = {"linear", "conv2d", "batch_norm", "layer_norm", "embedding", "binary",
               "matmul"}


def rank(n: int | tuple[int, ...]) -> Callable[[torch.Tensor], bool]:
    ranks = (n,) if isinstance(n, int) else n
    return lambda v: v.dim() in ranks


def at_least(n: int) -> Callable[[torch.Tensor], bool]:
    return lambda v: v.dim() >= n


# ----- single ops ------------------------------------------------------------------------


def r_unary(g: Gen) -> None:
    x = g.pick()
    if x is not None:
        g.add("unary", [x], fn=g.choice(UNARY))


def broadcast_shape_for(g: Gen, shape: tuple[int, ...]) -> list[int]:
    """A shape that broadcasts against ``shape`` without growing it."""
    kind = g.choice(["last", "channel", "ones", "full"])
    if kind == "last" or not shape:
        return [shape[-1]] if shape else [1]
    if kind == "channel" and len(shape) == 4:
        return [shape[1], 1, 1]
    if kind == "ones":
        return [d if g.coin() else 1 for d in shape][g.rng.randrange(len(shape)):]
    return list(shape)


def r_binary(g: Gen) -> None:
    x = g.pick()
    if x is None:
        return
    fn = g.choice(BINARY)
    shape = g.shape(x)
    if fn == "pow":
        g.add("binary", [x], fn=fn, scalar=g.choice([2, 3, 0.5, 1.5, 2.0]))
        return
    mode = g.choice(["value", "value", "scalar", "param"])
    if mode == "value":
        others = g.find(lambda v: _broadcasts_into(tuple(v.shape), shape))
        if others:
            g.add("binary", [x, g.choice(others)], fn=fn, rev=g.coin(0.3))
            return
    if mode == "param":
        g.add("binary", [x], fn=fn, param=broadcast_shape_for(g, shape), rev=g.coin(0.3))
        return
    scalar = g.choice([0.5, 2.0, -1.5, 3, 1e-3, 0.25])
    g.add("binary", [x], fn=fn, scalar=scalar, rev=g.coin(0.3))


def _broadcasts_into(small: tuple[int, ...], big: tuple[int, ...]) -> bool:
    if len(small) > len(big):
        return False
    return all(s in (1, b) for s, b in zip(small[::-1], big[::-1]))


def mask_for(g: Gen, shape: tuple[int, ...]) -> int | None:
    """A bool value broadcasting into ``shape``: a bool input, a comparison of a float
    input (inputs are exact in both eager and compiled, so the mask is too), or a logical
    op of two masks."""
    masks = g.find(lambda v: _broadcasts_into(tuple(v.shape), shape), "bool")
    if masks and g.coin(0.6):
        m = g.choice(masks)
        if g.coin(0.2):
            return g.add("logical", [m], fn="not")
        if g.coin(0.2) and len(masks) > 1:
            return g.add("logical", [m, g.choice(masks)], fn=g.choice(["and", "or"]))
        return m
    inputs = [i for i in g.find(lambda v: _broadcasts_into(tuple(v.shape), shape))
              if g.prog.spec[i]["op"] == "input"]
    if inputs and g.coin(0.5):
        return g.add("compare", [g.choice(inputs)], fn=g.choice(["lt", "gt", "le", "ge"]),
                     scalar=g.choice([0.0, 0.5, -0.3]))
    ints = g.find(lambda v: _broadcasts_into(tuple(v.shape), shape), "int")
    if ints and g.coin(0.5):
        return g.add("compare", [g.choice(ints)], fn=g.choice(["eq", "ne", "lt"]), scalar=2)
    mshape = [d if g.coin(0.7) else 1 for d in shape][g.rng.randrange(max(1, len(shape))):]
    return g.add_input(mshape or [1], "bool")


def r_where(g: Gen) -> None:
    x = g.pick()
    if x is None:
        return
    mask = mask_for(g, g.shape(x))
    if mask is None:
        return
    if g.coin(0.5):
        g.add("masked_fill", [x, mask], value=g.choice([0.0, -1.0, 2.5, -1e4]))
        return
    others = g.find(lambda v: _broadcasts_into(tuple(v.shape), g.shape(x)))
    if others and g.coin(0.6):
        g.add("where", [mask, x, g.choice(others)])
    else:
        g.add("where", [mask, x], scalar=g.choice([0.0, 1.0, -2.0]))


def r_cast(g: Gen) -> None:
    """float32 -> float64 -> op -> float32, or an int/bool value cast to float32. A float64
    value never leaves its recipe: computed from float32 values it carries their float32
    rounding, which float64's tolerance would call a mismatch."""
    kind = g.choice(["f64", "int", "bool"])
    if kind == "f64":
        x = g.pick()
        if x is None:
            return
        y = g.add("cast", [x], dtype="float64")
        z = y and g.add("unary", [y], fn=g.choice(["tanh", "sigmoid", "exp", "neg"]))
        back = z and g.add("cast", [z], dtype="float32")
        for _ in range((y is not None) + (z is not None) if back is None else 0):
            g.pop()
        return
    src = g.pick(dtype=kind)
    if src is not None:
        g.add("cast", [src], dtype="float32")


def r_reduce(g: Gen) -> None:
    x = g.pick(at_least(1))
    if x is None:
        return
    r = len(g.shape(x))
    dims = None if g.coin(0.15) else sorted(g.rng.sample(range(r), g.rng.randint(1, r)))
    if dims is not None and g.coin(0.3):
        dims = [d - r for d in dims]
    g.add("reduce", [x], fn=g.choice(["sum", "mean", "amax", "amin"]), dims=dims,
          keepdim=g.coin(0.4) if dims is not None else False)


def r_softmax(g: Gen) -> None:
    x = g.pick(at_least(1))
    if x is not None:
        r = len(g.shape(x))
        g.add("softmax", [x], fn=g.choice(["softmax", "log_softmax"]),
              dim=g.rng.randrange(-r, r))


def r_layer_norm(g: Gen) -> None:
    x = g.pick(at_least(1))
    if x is not None:
        g.add("layer_norm", [x], ndim=1 if g.coin(0.8) else 2, affine=g.coin(0.8),
              functional=g.coin(0.2))


def r_batch_norm1d(g: Gen) -> None:
    x = g.pick(rank((2, 3)))
    if x is not None:
        g.add("batch_norm", [x], affine=g.coin(0.8))


def r_cumsum_tri(g: Gen) -> None:
    x = g.pick(at_least(2))
    if x is None:
        return
    if g.coin():
        g.add("cumsum", [x], dim=g.rng.randrange(len(g.shape(x))))
    else:
        g.add("tri", [x], fn=g.choice(["tril", "triu"]), diagonal=g.choice([0, 0, 1, -1]))


def r_sources(g: Gen) -> None:
    x = g.pick(at_least(1))
    if x is None:
        return
    if g.coin():
        g.add("arange_add", [x], scale=g.choice([0.1, 1.0]))
    else:
        g.add("full_mul", [x], value=g.choice([1.0, 0.5, 2.0]))


# ----- layout ------------------------------------------------------------------------------


def r_reshape(g: Gen) -> None:
    x = g.pick(at_least(1))
    if x is None:
        return
    shape = g.shape(x)
    r = len(shape)
    kind = g.choice(["flatten", "unflatten", "unsqueeze", "squeeze", "view"])
    if kind == "flatten" and r >= 2:
        g.add("reshape", [x], kind=kind, dim=g.rng.randrange(r - 1), fn=g.choice(["", "method"]))
    elif kind == "unflatten":
        d = g.rng.randrange(r)
        factors = [f for f in range(2, shape[d] + 1) if shape[d] % f == 0]
        if factors:
            g.add("reshape", [x], kind=kind, dim=d, factor=g.choice(factors),
                  fn=g.choice(["view", "reshape"]))
    elif kind == "unsqueeze":
        g.add("reshape", [x], kind=kind, dim=g.rng.randrange(-r - 1, r + 1))
    elif kind == "squeeze" and 1 in shape:
        g.add("reshape", [x], kind=kind, dim=shape.index(1))
    elif kind == "view":
        g.add("reshape", [x], kind=kind, lead=shape[0])


def r_permute(g: Gen) -> None:
    x = g.pick(at_least(2))
    if x is None:
        return
    r = len(g.shape(x))
    if g.coin(0.5):
        dims = list(range(r))
        g.rng.shuffle(dims)
        g.add("permute", [x], dims=dims)
    else:
        a, b = g.rng.sample(range(-r, r), 2)
        g.add("transpose", [x], a=a, b=b)


def r_slice(g: Gen) -> None:
    x = g.pick(at_least(1))
    if x is None:
        return
    shape = g.shape(x)
    d = g.rng.randrange(len(shape))
    n = shape[d]
    if g.coin(0.3) and n > 1:
        g.add("select", [x], dim=d, index=g.rng.randrange(-n, n))
        return
    start = g.rng.randrange(0, max(1, n - 1)) if g.coin(0.7) else None
    end = g.choice([None, n, -1, max(1, n // 2)])
    g.add("slice", [x], dim=d, start=start, end=end, step=g.choice([None, 1, 2]))


def r_expand(g: Gen) -> None:
    x = g.pick(lambda v: 1 in v.shape)
    if x is not None:
        g.add("expand", [x], size=g.choice([2, 3, 4]))


def r_pad(g: Gen) -> None:
    x = g.pick(at_least(1))
    if x is None:
        return
    pairs = min(len(g.shape(x)), g.choice([1, 2]))
    pads = [g.choice([0, 1, 2]) for _ in range(2 * pairs)]
    g.add("pad", [x], pads=pads, value=g.choice([0.0, 0.0, -1.0]))


def r_concat(g: Gen) -> None:
    x = g.pick(at_least(1))
    if x is None:
        return
    shape = g.shape(x)
    d = g.rng.randrange(len(shape))
    fits = g.find(lambda v: v.dim() == len(shape) and all(
        a == b for i, (a, b) in enumerate(zip(v.shape, shape)) if i != d))
    parts = [x] + [g.choice(fits) for _ in range(g.rng.randint(1, 2))]
    if g.coin(0.25):
        same = [i for i in parts if g.shape(i) == shape]
        g.add("concat", same if len(same) > 1 else [x, x], fn="stack",
              dim=g.rng.randrange(-len(shape) - 1, len(shape) + 1))
    else:
        g.add("concat", parts, dim=d - len(shape) if g.coin(0.3) else d)


def r_split(g: Gen) -> None:
    x = g.pick(at_least(1))
    if x is None:
        return
    shape = g.shape(x)
    d = g.rng.randrange(len(shape))
    fn = g.choice(["split", "chunk", "unbind"] if shape[d] <= 4 else ["split", "chunk"])
    attrs = {"size": g.rng.randint(1, max(1, shape[d] - 1))} if fn == "split" else \
        {"chunks": g.rng.randint(2, 4)} if fn == "chunk" else {}
    a = g.add("split", [x], fn=fn, dim=d, take=0, **attrs)
    b = g.add("split", [x], fn=fn, dim=d, take=g.rng.randrange(1, 4), **attrs)
    if a is not None and b is not None and g.shape(a) == g.shape(b) and g.coin(0.6):
        g.add("binary", [a, b], fn=g.choice(["add", "mul", "sub"]))


# ----- anchors and the fusion patterns -----------------------------------------------------


def linear(g: Gen, x: int, out: int, act: bool | None = None, **attrs) -> int | None:
    y = g.add("linear", [x], out=out, bias=g.coin(0.8), functional=g.coin(0.2), **attrs)
    if y is not None and (g.coin(0.4) if act is None else act):
        y = g.add("unary", [y], fn=g.choice(ACTIVATIONS)) or y
    return y


def features(g: Gen) -> int:
    return g.choice([1, 3, 4, 5, 7, 8, 12, 16, 17, 32, 33, 40, 64])


def r_linear(g: Gen) -> None:
    x = g.pick(lambda v: v.dim() >= 1 and v.shape[-1] <= 80)
    if x is not None:
        linear(g, x, features(g))


def r_linear_chain(g: Gen) -> None:
    """linear -> linear (-> linear) with nothing between: MergeLinearChain's pattern."""
    x = g.pick(lambda v: v.dim() >= 1 and v.shape[-1] <= 64)
    for _ in range(g.rng.randint(2, 3)):
        if x is None:
            return
        x = linear(g, x, features(g), act=False)


def r_parallel_linear(g: Gen) -> None:
    """Several linears reading one value (Q/K/V), then combined or used apart."""
    x = g.pick(lambda v: v.dim() >= 2 and v.shape[-1] <= 64)
    if x is None:
        return
    out = features(g)
    outs = [linear(g, x, out if g.coin(0.7) else features(g), act=g.coin(0.2))
            for _ in range(g.rng.randint(2, 3))]
    outs = [o for o in outs if o is not None]
    if len(outs) >= 3 and g.coin(0.6):
        q, k, v = outs[:3]
        if g.shape(q) == g.shape(k) and g.shape(k)[-2] == g.shape(v)[-2]:
            g.add("attention", [q, k, v], causal=g.coin(0.4))
            return
    same = [o for o in outs if g.shape(o) == g.shape(outs[0])]
    if len(same) >= 2:
        g.add("binary", same[:2], fn=g.choice(["add", "mul"]))


def r_attention_block(g: Gen) -> None:
    """Multi-head attention: q/k/v linears, heads split by reshape + transpose, attention
    (written out or sdpa), heads merged, output linear, residual add."""
    x = g.pick(lambda v: v.dim() == 3 and v.shape[-1] <= 64)
    if x is None:
        return
    dim = g.shape(x)[-1]
    heads = g.choice([h for h in (1, 2, 4) if dim % h == 0])
    q, k, v = (g.add("linear", [x], out=dim, bias=g.coin(0.8)) for _ in range(3))
    if None in (q, k, v):
        return
    split = [g.add("reshape", [t], kind="unflatten", dim=-1, factor=heads, fn="view")
             for t in (q, k, v)]
    split = [g.add("transpose", [t], a=1, b=2) if t is not None else None for t in split]
    if None in split:
        return
    if g.coin(0.4):
        mask = None
        if g.coin(0.4):
            t = g.shape(x)[1]
            mask = g.add_input([t, t], "bool") if g.coin() else \
                g.add_input([1, t] if g.coin() else [t, t])  # an additive float mask
        if mask is not None:
            y = g.add("sdpa", [*split, mask])
        else:
            y = g.add("sdpa", split, causal=g.coin(0.5))
    else:
        y = g.add("attention", split, causal=g.coin(0.5))
    if y is None:
        return
    y = g.add("transpose", [y], a=1, b=2)
    y = g.add("reshape", [y], kind="flatten", dim=2) if y is not None else None
    y = g.add("linear", [y], out=dim) if y is not None else None
    if y is not None and g.coin(0.7):
        g.add("binary", [x, y], fn="add")


def r_residual_linear(g: Gen) -> None:
    """x + linear(x) (the linear's epilogue reads the residual), maybe a layer norm."""
    x = g.pick(lambda v: v.dim() >= 1 and v.shape[-1] <= 64)
    if x is None:
        return
    y = linear(g, x, g.shape(x)[-1])
    if y is None:
        return
    y = g.add("binary", [y, x] if g.coin() else [x, y], fn="add")
    if y is not None and g.coin(0.4):
        g.add("layer_norm", [y], affine=g.coin(0.8))


def r_mlp_block(g: Gen) -> None:
    """layer_norm -> linear(4d) -> gelu -> linear(d) -> + residual."""
    x = g.pick(lambda v: v.dim() >= 2 and v.shape[-1] <= 32)
    if x is None:
        return
    d = g.shape(x)[-1]
    h = g.add("layer_norm", [x]) if g.coin(0.7) else x
    h = h and g.add("linear", [h], out=4 * d)
    h = h and g.add("unary", [h], fn=g.choice(["gelu", "gelu_tanh", "relu", "silu"]))
    h = h and g.add("linear", [h], out=d)
    if h is not None:
        g.add("binary", [x, h], fn="add")


def r_reshape_between_linears(g: Gen) -> None:
    """linear -> unflatten -> permute -> flatten -> linear: a merge must not see through."""
    x = g.pick(lambda v: v.dim() in (2, 3) and v.shape[-1] <= 64)
    if x is None:
        return
    y = linear(g, x, g.choice([4, 8, 12]), act=False)
    y = y and g.add("reshape", [y], kind="unflatten", dim=-1, factor=2)
    if y is None:
        return
    r = len(g.shape(y))
    y = g.add("transpose", [y], a=r - 1, b=r - 2)
    y = y and g.add("reshape", [y], kind="flatten", dim=r - 2)
    if y is not None:
        linear(g, y, features(g), act=False)


def r_shared_linear(g: Gen) -> None:
    """Call an existing linear again on another value: one parameter, two uses."""
    owners = [i for i, n in enumerate(g.prog.spec) if n["op"] == "linear" and "share" not in n]
    if not owners:
        return
    owner = g.choice(owners)
    fan_in = g.prog.consts[(owner, "in")]
    x = g.pick(lambda v: v.dim() >= 1 and v.shape[-1] == fan_in)
    if x is not None:
        spec = g.prog.spec[owner]
        g.add("linear", [x], out=spec["out"], bias=spec.get("bias", True), share=owner,
              functional=g.coin(0.3))


def conv(g: Gen, x: int, out: int, **attrs) -> int | None:
    k = attrs.pop("k", g.choice([1, 3, 3, 5]))
    dil = attrs.pop("dil", 2 if k == 3 and g.coin(0.15) else 1)
    return g.add("conv2d", [x], out=out, k=k, stride=attrs.pop("stride", g.choice([1, 1, 2])),
                 pad=attrs.pop("pad", g.choice([k // 2 * dil, 0])), dil=dil,
                 bias=attrs.pop("bias", g.coin(0.4)), functional=g.coin(0.15), **attrs)


def r_conv_bn_act(g: Gen) -> None:
    """conv -> batch_norm (eval, random stats) -> activation: FoldBatchNorm + epilogue."""
    x = g.pick(rank(4))
    if x is None:
        return
    cin = g.shape(x)[1]
    groups = g.choice([1, 1, 1, "dw"] + ([2] if cin % 2 == 0 else []))
    # 32 and 48: a 3x3 conv after it (r_conv_residual) then has the channels for Winograd
    out = cin if groups == "dw" else g.choice([c for c in (2, 4, 6, 8, 16, 32, 48)
                                               if not isinstance(groups, int) or c % groups == 0])
    y = conv(g, x, out, groups=groups)
    y = y and g.add("batch_norm", [y], affine=g.coin(0.85), functional=g.coin(0.15))
    if y is not None and g.coin(0.8):
        g.add("unary", [y], fn=g.choice(["relu", "relu6", "hardswish", "silu", "sigmoid"]))


def r_conv_residual(g: Gen) -> None:
    """relu(bn(conv(x)) + x): the residual add and relu in the conv's epilogue."""
    x = g.pick(rank(4))
    if x is None:
        return
    y = conv(g, x, g.shape(x)[1], k=3, stride=1, pad=1, dil=1)
    if y is not None and g.coin(0.7):
        y = g.add("batch_norm", [y])
    y = y and g.add("binary", [y, x] if g.coin() else [x, y], fn="add")
    if y is not None:
        g.add("unary", [y], fn=g.choice(["relu", "relu", "relu6"]))


def r_bottleneck(g: Gen) -> None:
    """ResNet's bottleneck: 1x1 to 32 or 48 channels, a 3x3 (stride 1, padding 1) with
    batch norm and relu, 1x1 back (to 16 channels, without the residual add, where the
    input's are not in blocks of 8), mostly a global pool after it: the 3x3
    has the channels for Winograd, and with the pool every kernel of the block can store
    its value blocked (blocked_layout: each reader computes blocked or reads it once)."""
    x = g.pick(rank(4))
    if x is None:
        return
    inner = g.choice([32, 48])
    y = conv(g, x, inner, k=1, stride=1, pad=0, dil=1)
    y = y and g.add("unary", [y], fn="relu")
    y = y and conv(g, y, inner, k=3, stride=1, pad=1, dil=1)
    y = y and g.add("batch_norm", [y])
    y = y and g.add("unary", [y], fn=g.choice(["relu", "relu6", "silu"]))
    cin = g.shape(x)[1]
    out = cin if cin % 8 == 0 else 16  # channels in blocks (blocked_layout.block_size)
    y = y and conv(g, y, out, k=1, stride=1, pad=0, dil=1)
    y = y and (g.add("binary", [y, x], fn="add") if out == cin else y)
    y = y and g.add("unary", [y], fn="relu")
    if y is not None and g.coin(0.7):
        g.add("adaptive_pool", [y], size=1)


def r_pool(g: Gen) -> None:
    x = g.pick(rank(4))
    if x is None:
        return
    k = g.choice([1, 2, 3])
    g.add("pool", [x], fn=g.choice(["max", "avg"]), k=k, stride=g.choice([None, 1, 2]),
          pad=g.rng.randint(0, k // 2), ceil=g.coin(0.3), count_pad=g.coin(0.7))


def r_head(g: Gen) -> None:
    """adaptive_avg_pool2d -> flatten -> linear: a classifier head."""
    x = g.pick(rank(4))
    if x is None:
        return
    y = g.add("adaptive_pool", [x], size=g.choice([1, 1, 2, [2, 3]]))
    y = y and g.add("reshape", [y], kind="flatten", dim=1)
    if y is not None and g.coin(0.8):
        linear(g, y, features(g))


def r_conv_to_seq(g: Gen) -> None:
    """[N, C, H, W] -> [N, H*W, C]: from images to tokens (a ViT stem)."""
    x = g.pick(rank(4))
    if x is None:
        return
    y = g.add("reshape", [x], kind="flatten", dim=2)
    y = y and g.add("transpose", [y], a=1, b=2)
    if y is not None and g.coin(0.6):
        linear(g, y, features(g))


def r_matmul(g: Gen) -> None:
    x = g.pick(lambda v: v.dim() >= 2 and v.shape[-1] <= 64)
    if x is None:
        return
    kind = g.choice(["self", "param", "value"])
    if kind == "self":
        g.add("matmul", [x], self_t=True, fn=g.choice(["matmul", "@"]))
    elif kind == "param":
        g.add("matmul", [x], n=features(g))
    else:
        shape = g.shape(x)
        others = g.find(lambda v: v.dim() >= 2 and v.shape[-2] == shape[-1]
                        and _batch_fits(tuple(v.shape[:-2]), shape[:-2]))
        if others:
            g.add("matmul", [x, g.choice(others)], fn=g.choice(["matmul", "@"]))


def _batch_fits(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    try:
        torch.broadcast_shapes(a, b)
    except RuntimeError:
        return False
    return True


def r_embedding(g: Gen) -> None:
    """Token ids -> embedding (maybe ids arithmetic first); sometimes a tied head."""
    ids = g.pick(dtype="int")
    if ids is None:
        ids = g.add_input([g.rng.randint(1, 3), g.rng.randint(1, 6)], "int64",
                          high=g.rng.randint(2, 12))
    num = int(g.value(ids).max()) + 1 + g.rng.randint(0, 4)
    if g.coin(0.2):
        shifted = g.add("binary", [ids], fn=g.choice(["add", "mul"]), scalar=g.choice([1, 2]))
        if shifted is not None:
            ids, num = shifted, int(g.value(shifted).max()) + 1 + g.rng.randint(0, 2)
    emb = g.add("embedding", [ids], num=num, dim=g.choice([4, 8, 16]))
    if emb is None or not g.coin(0.4):
        return
    x = g.pick(lambda v: v.dim() >= 1 and v.shape[-1] == g.shape(emb)[-1])
    if x is not None:
        g.add("tied_linear", [x], share=emb)


EPILOGUES = ("unary", "binary", "pad", "slice", "permute", "reshape", "expand", "cumsum_tri",
             "softmax", "reduce", "where", "cast")


def r_anchor_epilogue(g: Gen) -> None:
    """An anchor or reduction, then a chain of 1-3 elementwise/layout ops on its result:
    what fusion puts in one kernel and the schedule rules must compute whole."""
    start = len(g.prog.spec)
    g.choice([r_linear, r_conv_bn_act, r_matmul, r_softmax, r_reduce, r_pool, r_layer_norm])(g)
    if len(g.prog.spec) == start:
        return
    for _ in range(g.rng.randint(1, 3)):
        g.focus = len(g.prog.spec) - 1
        RECIPE_BY_NAME[g.choice(EPILOGUES)](g)
        g.focus = None


def r_int_ops(g: Gen) -> None:
    """Integer arithmetic on ids: position ids by cumsum, shifted ids, counts by sum."""
    ids = g.pick(dtype="int")
    if ids is None:
        return
    r = len(g.shape(ids))
    kind = g.choice(["cumsum", "binary", "sum", "div", "where"])
    if kind == "cumsum":
        g.add("cumsum", [ids], dim=g.rng.randrange(-r, r))
    elif kind == "binary":
        g.add("binary", [ids], fn=g.choice(["add", "mul", "sub", "maximum", "minimum"]),
              scalar=g.choice([1, 2, 3]))
    elif kind == "sum":
        g.add("reduce", [ids], fn=g.choice(["sum", "amax"]), dims=[r - 1], keepdim=g.coin())
    elif kind == "div":
        g.add("binary", [ids], fn="div", scalar=2)
    else:
        mask = g.add("compare", [ids], fn=g.choice(["eq", "ne", "ge"]), scalar=1)
        if mask is not None:
            g.add("where", [mask, ids], scalar=0)


def r_gather(g: Gen) -> None:
    """torch.gather along a random dim with int64 ids from an input (in range)."""
    x = g.pick(at_least(1))
    if x is None:
        return
    shape = list(g.shape(x))
    dim = g.rng.randrange(len(shape))
    ids_shape = [g.rng.randint(1, d) if i != dim and g.coin(0.3) else d
                 for i, d in enumerate(shape)]
    ids_shape[dim] = g.rng.randint(1, shape[dim] + 2)  # fewer, as many or more ids than rows
    ids = g.add_input(ids_shape, "int64", high=shape[dim])
    if g.add("gather", [x, ids], dim=dim - len(shape) if g.coin(0.3) else dim) is None:
        g.pop()


def r_index(g: Gen) -> None:
    """x[ids] or x[:, ids1, ids2]: advanced indexing by int inputs, some ids negative."""
    x = g.pick(at_least(1))
    if x is None:
        return
    shape = g.shape(x)
    k = 2 if len(shape) >= 2 and g.coin(0.3) else 1
    first = g.rng.randint(0, len(shape) - k)
    ids_shape = g.choice([[g.rng.randint(1, 5)], [g.rng.randint(1, 3), g.rng.randint(1, 3)]])
    made = 0
    for axis in range(first, first + k):
        low = -shape[axis] if g.coin(0.3) else 0
        g.add_input(ids_shape, "int64", high=shape[axis], **({"low": low} if low else {}))
        made += 1
    ids = list(range(len(g.prog.spec) - made, len(g.prog.spec)))
    if g.add("index", [x, *ids], first=first) is None:
        for _ in range(made):
            g.pop()


HALF_UNARY = ("relu", "sigmoid", "tanh", "silu", "gelu", "neg", "abs", "exp", "sin",
              "hardswish", "leaky_relu", "clamp")


def r_half(g: Gen) -> None:
    """A float32 value cast to float16 or bfloat16 and 1-3 ops in that dtype. Its values
    stay in it (outputs judged at its own tolerance): cast back, its rounding would be
    judged at float32's."""
    x = g.pick()
    if x is None:
        return
    y = g.add("cast", [x], dtype=g.choice(["float16", "float16", "bfloat16"]))
    for _ in range(g.rng.randint(1, 3) if y is not None else 0):
        kind = g.choice(["unary", "unary", "scalar", "square", "softmax", "reduce", "matmul"])
        rank = len(g.shape(y))
        if kind == "unary":
            z = g.add("unary", [y], fn=g.choice(HALF_UNARY))
        elif kind == "scalar":
            z = g.add("binary", [y], fn=g.choice(["add", "mul", "sub"]),
                      scalar=g.choice([0.5, 2.0, -1.5]))
        elif kind == "square":
            z = g.add("binary", [y, y], fn=g.choice(["mul", "add", "maximum"]))
        elif kind == "softmax":
            z = g.add("softmax", [y], fn="softmax", dim=-1)
        elif kind == "reduce":
            z = g.add("reduce", [y], fn=g.choice(["sum", "mean", "amax"]), dims=[rank - 1],
                      keepdim=g.coin())
        else:
            z = g.add("matmul", [y], self_t=True) if rank >= 2 else None
        y = z if z is not None else y


def r_fill(g: Gen) -> None:
    """A value that reads no input: full, full_like, ones_like (an output that is a
    constant, or a constant operand)."""
    x = g.pick(at_least(1))
    if x is None:
        return
    y = g.add("fill", [x], kind=g.choice(["new", "like", "ones_like"]),
              value=g.choice([0.0, 1.0, -2.5]))
    if y is not None and g.coin(0.5):
        g.add("binary", [x, y], fn=g.choice(["add", "mul", "maximum"]))


def r_shared_conv(g: Gen) -> None:
    """Call an existing conv again on another value of the same channel count."""
    owners = [i for i, n in enumerate(g.prog.spec) if n["op"] == "conv2d" and "share" not in n]
    if not owners:
        return
    owner = g.choice(owners)
    cin = g.prog.consts[(owner, "in")]
    x = g.pick(lambda v: v.dim() == 4 and v.shape[1] == cin)
    if x is not None:
        g.add("conv2d", [x], **{k: v for k, v in g.prog.spec[owner].items()
                                if k not in ("op", "args", "seed", "output")}, share=owner)


def r_mark_output(g: Gen) -> None:
    """Also return an intermediate value that other nodes read (a group root used twice)."""
    inner = [i for i, n in enumerate(g.prog.spec)
             if n["op"] != "input" and g.value(i).dtype != torch.float64]
    if inner:
        g.prog.spec[g.choice(inner)]["output"] = True


RECIPES: list[tuple[Callable[[Gen], None], float]] = [
    (r_unary, 3), (r_binary, 4), (r_where, 1.5), (r_cast, 0.7), (r_reduce, 1.5),
    (r_softmax, 1), (r_layer_norm, 1), (r_batch_norm1d, 0.4), (r_cumsum_tri, 0.5),
    (r_sources, 0.5), (r_reshape, 1.5), (r_permute, 1), (r_slice, 1), (r_expand, 0.4),
    (r_pad, 0.5), (r_concat, 1), (r_split, 1), (r_linear, 2), (r_linear_chain, 1.5),
    (r_parallel_linear, 1.5), (r_attention_block, 0.8), (r_residual_linear, 1.5),
    (r_mlp_block, 0.8), (r_reshape_between_linears, 0.8), (r_shared_linear, 1),
    (r_conv_bn_act, 3), (r_conv_residual, 2), (r_bottleneck, 1), (r_pool, 1.2), (r_head, 0.8),
    (r_conv_to_seq, 0.5), (r_matmul, 1), (r_embedding, 0.7), (r_mark_output, 0.4),
    (r_anchor_epilogue, 3), (r_int_ops, 0.7), (r_fill, 0.4), (r_shared_conv, 0.6),
    (r_gather, 0.5), (r_index, 0.5), (r_half, 0.8),
]
RECIPE_BY_NAME = {f.__name__.removeprefix("r_"): f for f, _ in RECIPES}


def start(g: Gen) -> None:
    """The model's main input: a sequence, a feature vector, an image, or token ids."""
    theme = g.choice(["seq", "vec", "image", "image", "tokens"])
    if theme == "seq":
        g.add_input([g.rng.randint(1, 3), g.rng.randint(1, 8), g.choice([4, 8, 16, 32])])
    elif theme == "vec":
        g.add_input([g.rng.randint(1, 4), g.choice([3, 8, 16, 32])])
    elif theme == "image":
        hw = g.rng.randint(4, 12)
        g.add_input([g.rng.randint(1, 2), g.choice([1, 3, 4, 8]), hw,
                     hw if g.coin(0.7) else g.rng.randint(4, 12)])
    else:
        r_embedding(g)
    if g.coin(0.3):  # a second input of the same type (shared by both branches)
        node = g.prog.spec[0]
        g.add_input(node["shape"], node["dtype"], **({"high": node["high"]}
                                                     if "high" in node else {}))


def generate_spec(seed: int, max_nodes: int | None = None) -> Spec:
    """A valid spec of at most ``max_nodes`` nodes (default: 6 to 30, by seed)."""
    g = Gen(seed)
    max_nodes = max_nodes or g.rng.randint(6, 30)
    start(g)
    funcs, weights = zip(*RECIPES)
    for _ in range(200):
        if len(g.prog.spec) >= max_nodes:
            break
        g.rng.choices(funcs, weights)[0](g)
    return [dict(n) for n in g.prog.spec]
