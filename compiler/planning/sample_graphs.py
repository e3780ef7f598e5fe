"""Graphs that show what planning and ordering do, built with the IR API (no torch).

The branching ones are built in a plausible but memory-poor order, as a capture of
straightforward model code would give: Inception branches in declaration order, U-Net
skip projections computed on the way down, attention heads computed projection by
projection across all heads. Shared by the planning tests and the memory benchmark.
"""

from __future__ import annotations

import numpy as np

from ir import Graph, Node, TensorType

F32 = "float32"


def _weight(g: Graph, name: str, shape: tuple[int, ...]) -> Node:
    return g.add_weight(name, np.zeros(shape, np.float32))


def _conv(g: Graph, x: Node, cout: int, k: int = 1, name: str = "conv") -> Node:
    w = _weight(g, f"{name}_w", (cout, x.shape[1], k, k))
    return g.call("conv2d", [x, w], {"padding": (k // 2, k // 2)}, name=name)


def inception_block(hw: int = 16) -> Graph:
    """Four branches of different widths concatenated. The captured order runs them as
    declared: cheap branches first, so their outputs sit live through the wide branch."""
    g = Graph()
    x = g.add_input("x", TensorType((1, 32, hw, hw), F32))
    a = _conv(g, x, 32, name="a_1x1")
    b = _conv(g, _conv(g, x, 16, name="b_reduce"), 32, k=3, name="b_3x3")
    c_wide = _conv(g, x, 128, name="c_expand")
    c = _conv(g, c_wide, 16, k=3, name="c_3x3")
    pool = g.call("max_pool2d", [x], {"kernel": (3, 3), "stride": (1, 1), "padding": (1, 1)})
    d = _conv(g, pool, 16, name="d_proj")
    g.outputs = [g.call("concat", [a, b, c, d], {"dim": 1})]
    return g


def _upsample2x(g: Graph, x: Node) -> Node:
    n, c, h, w = x.shape
    y = g.call("reshape", [x], {"shape": (n, c, h, 1, w, 1)})
    y = g.call("expand", [y], {"shape": (n, c, h, 2, w, 2)})
    return g.call("reshape", [y], {"shape": (n, c, 2 * h, 2 * w)})


def unet(hw: int = 32, width: int = 32) -> Graph:
    """A two-level U-Net whose skips pass through 1x1 convs that narrow them before the
    concat (as DeepLabv3+ does with its low-level features). The captured order runs the
    projection in the decoder, where the model code writes it, so the wide encoder
    feature stays live through the bottleneck; projecting on the way down frees it.
    Each conv+relu is one fused kernel (``meta["group"]``), as after fusion."""
    g = Graph()
    groups = iter(range(1, 1 << 16))

    def conv_relu(h: Node, cout: int, k: int, name: str) -> Node:
        conv = _conv(g, h, cout, k, name)
        relu = g.call("relu", [conv], name=f"{name}_relu")
        conv.meta["group"] = relu.meta["group"] = next(groups)
        return relu

    def pool(h: Node) -> Node:
        return g.call("max_pool2d", [h], {"kernel": (2, 2), "stride": (2, 2),
                                          "padding": (0, 0)})

    def up_and_merge(h: Node, skip: Node, cout: int, name: str) -> Node:
        up = _upsample2x(g, _conv(g, h, cout // 2, name=f"{name}_reduce"))
        narrow = _conv(g, skip, cout // 2, name=f"{name}_skip")  # the projection
        return conv_relu(g.call("concat", [up, narrow], {"dim": 1}), cout, 3, name)

    x = g.add_input("x", TensorType((1, 3, hw, hw), F32))
    e1 = conv_relu(x, width, 3, "enc1")
    e2 = conv_relu(pool(e1), 2 * width, 3, "enc2")
    mid = conv_relu(pool(e2), 4 * width, 3, "mid")
    d2 = up_and_merge(mid, e2, width // 2, "dec2")
    d1 = up_and_merge(d2, e1, width // 4, "dec1")
    g.outputs = [_conv(g, d1, 1, name="head")]
    return g


def multi_head_attention(seq: int = 64, dim: int = 64, heads: int = 4) -> Graph:
    """Heads computed independently and concatenated. The captured order is stage by
    stage across heads (all Q, all K, all V, all scores...), so every head's score
    matrix is live at once; head by head holds one."""
    g = Graph()
    dh = dim // heads
    x = g.add_input("x", TensorType((seq, dim), F32))
    stages: dict[str, list[Node]] = {}
    for proj in ("q", "k", "v"):
        stages[proj] = [g.call("linear", [x, _weight(g, f"w{proj}{h}", (dh, dim))],
                               name=f"{proj}{h}") for h in range(heads)]
    stages["kt"] = [g.call("permute", [k], {"dims": (1, 0)}, name=f"kt{h}")
                    for h, k in enumerate(stages["k"])]
    stages["s"] = [g.call("matmul", [q, kt], name=f"scores{h}")
                   for h, (q, kt) in enumerate(zip(stages["q"], stages["kt"]))]
    stages["p"] = [g.call("softmax", [s], {"dim": -1}, name=f"probs{h}")
                   for h, s in enumerate(stages["s"])]
    stages["o"] = [g.call("matmul", [p, v], name=f"head{h}")
                   for h, (p, v) in enumerate(zip(stages["p"], stages["v"]))]
    merged = g.call("concat", stages["o"], {"dim": 1})
    g.outputs = [g.call("linear", [merged, _weight(g, "wo", (dim, dim))], name="out")]
    return g


def resnet_chain(blocks: int = 4, channels: int = 16, hw: int = 16,
                 grouped: bool = True) -> Graph:
    """Residual blocks (conv-bn-relu, conv-bn, add, relu), each conv's epilogue fused
    into one kernel when ``grouped``."""
    g = Graph()
    x = g.add_input("x", TensorType((1, channels, hw, hw), F32))
    ones = np.ones(channels, np.float32)
    group = 0

    def conv_bn(h: Node, relu: bool, name: str) -> Node:
        nonlocal group
        group += 1
        y = _conv(g, h, channels, k=3, name=name)
        stats = [g.add_weight(f"{name}_{s}", ones) for s in ("mean", "var")]
        out = [y, g.call("batch_norm", [y, *stats])]
        if relu:
            out.append(g.call("relu", [out[-1]]))
        if grouped:
            for node in out:
                node.meta["group"] = group
        return out[-1]

    h = x
    for i in range(blocks):
        y = conv_bn(conv_bn(h, True, f"b{i}a"), False, f"b{i}b")
        h = g.call("relu", [g.call("add", [y, h])])
    g.outputs = [h]
    return g


def mobilenet_chain(blocks: int = 2, channels: int = 16, expand: int = 4,
                    hw: int = 16) -> Graph:
    """Inverted residual blocks (1x1 expand, 3x3 depthwise, 1x1 project + residual) as
    fused kernels. Small long-lived residuals between wide short-lived expansions are
    what greedy-by-size alone packs badly (11% over the bound here)."""
    g = Graph()
    groups = iter(range(1, 1 << 16))
    hidden = channels * expand

    def kernel(h: Node, cout: int, k: int, epilogue: str, other: Node | None = None,
               conv_groups: int = 1) -> Node:
        w = _weight(g, "w", (cout, h.shape[1] // conv_groups, k, k))
        conv = g.call("conv2d", [h, w], {"padding": (k // 2, k // 2), "groups": conv_groups})
        out = g.call(epilogue, [conv] if other is None else [conv, other])
        conv.meta["group"] = out.meta["group"] = next(groups)
        return out

    x = g.add_input("x", TensorType((1, 3, 2 * hw, 2 * hw), F32))
    w = _weight(g, "stem_w", (channels, 3, 3, 3))
    stem = g.call("conv2d", [x, w], {"stride": (2, 2), "padding": (1, 1)})
    h = g.call("hardswish", [stem])
    stem.meta["group"] = h.meta["group"] = next(groups)
    for _ in range(blocks):
        wide = kernel(kernel(h, hidden, 1, "relu6"), hidden, 3, "relu6", conv_groups=hidden)
        h = kernel(wide, channels, 1, "add", other=h)
    g.outputs = [g.call("mean", [h], {"dims": (2, 3)})]
    return g


def mlp(batch: int = 32, dims: tuple[int, ...] = (256, 1024, 1024, 512, 256, 10)) -> Graph:
    """Linear + GELU layers."""
    g = Graph()
    h = g.add_input("x", TensorType((batch, dims[0]), F32))
    for i, (din, dout) in enumerate(zip(dims, dims[1:])):
        h = g.call("linear", [h, _weight(g, f"w{i}", (dout, din))], name=f"fc{i}")
        if i < len(dims) - 2:
            h = g.call("gelu", [h])
    g.outputs = [h]
    return g


BRANCHING = {"inception_block": inception_block, "unet": unet,
             "multi_head_attention": multi_head_attention}
CHAINS = {"resnet_chain": resnet_chain, "mobilenet_chain": mobilenet_chain, "mlp": mlp}
