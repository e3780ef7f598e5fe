"""Single-kernel timings: our scheduled TVM kernel vs torch eager, medians of many runs.

    python benchmarks/bench_kernels.py [--reps 50] [--threads N] [--no-schedule]

Each case is a one-op IR graph built for the host CPU; the timing includes the Relax VM
call and the DLPack crossing (a few microseconds), as a user sees it.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backends.tvm.build import build  # noqa: E402
from compiler import timing  # noqa: E402
from compiler.cost import node_flops  # noqa: E402
from ir import Graph  # noqa: E402
from ir.types import TensorType  # noqa: E402


def median_ms(fn: Callable[[], object], reps: int) -> float:
    return timing.median_ms(fn, warmup=max(3, reps // 10), reps=reps)


def matmul_case():
    g = Graph()
    a = g.add_input("a", TensorType((512, 512), "float32"))
    b = g.add_input("b", TensorType((512, 512), "float32"))
    g.outputs = [g.call("matmul", [a, b])]
    return g, [torch.randn(512, 512), torch.randn(512, 512)], torch.matmul


def linear_case(rows: int):
    def case():
        g = Graph()
        x = g.add_input("x", TensorType((1, rows, 768), "float32"))
        w = g.add_weight("w", np.random.randn(3072, 768).astype("float32") * 0.02)
        b = g.add_weight("b", np.random.randn(3072).astype("float32"))
        lin = g.call("linear", [x, w, b], meta={"group": 0})
        g.outputs = [g.call("gelu", [lin], meta={"group": 0})]
        wt, bt = torch.from_numpy(g.weights["w"]), torch.from_numpy(g.weights["b"])
        return g, [torch.randn(1, rows, 768)], lambda x: F.gelu(F.linear(x, wt, bt))

    return case


def conv_case(channels: int, size: int, groups: int = 1, relu: bool = False,
              out_channels: int | None = None, kernel: int = 3, stride: int = 1):
    oc = out_channels or channels
    pad = kernel // 2

    def case():
        g = Graph()
        x = g.add_input("x", TensorType((1, channels, size, size), "float32"))
        w = g.add_weight("w", np.random.randn(oc, channels // groups, kernel, kernel)
                         .astype("float32") * 0.1)
        attrs = {"padding": (pad, pad), "stride": (stride, stride), "groups": groups}
        out = g.call("conv2d", [x, w], attrs, meta={"group": 0})
        if relu:
            out = g.call("relu", [out], meta={"group": 0})
        g.outputs = [out]
        wt = torch.from_numpy(g.weights["w"])

        def reference(x):
            y = F.conv2d(x, wt, padding=pad, stride=stride, groups=groups)
            return F.relu(y) if relu else y

        return g, [torch.randn(1, channels, size, size)], reference

    return case


def attention_scores_case():
    """ViT's q @ k^T * scale: 197 tokens, 12 heads of 64."""
    g = Graph()
    q = g.add_input("q", TensorType((1, 12, 197, 64), "float32"))
    k = g.add_input("k", TensorType((1, 12, 197, 64), "float32"))
    kt = g.call("permute", [k], {"dims": (0, 1, 3, 2)}, meta={"group": 0})
    s = g.call("matmul", [q, kt], meta={"group": 0})
    g.outputs = [g.call("mul", [s, g.add_constant(0.125, "float32")], meta={"group": 0})]
    return g, [torch.randn(1, 12, 197, 64), torch.randn(1, 12, 197, 64)], \
        lambda q, k: q @ k.transpose(-1, -2) * 0.125


def attention_context_case():
    """ViT's softmax(scores) @ v."""
    g = Graph()
    p = g.add_input("p", TensorType((1, 12, 197, 197), "float32"))
    v = g.add_input("v", TensorType((1, 12, 197, 64), "float32"))
    g.outputs = [g.call("matmul", [p, v])]
    return g, [torch.randn(1, 12, 197, 197), torch.randn(1, 12, 197, 64)], torch.matmul


def pad_depthwise_case():
    """MobileNetV2's stride-2 depthwise conv + relu6 with the TF-style pad before it, fused
    as its prologue (compiler.passes.fuse)."""
    g = Graph()
    x = g.add_input("x", TensorType((1, 96, 112, 112), "float32"))
    w = g.add_weight("w", np.random.randn(96, 1, 3, 3).astype("float32") * 0.1)
    y = g.call("pad", [x], {"pads": (0, 1, 0, 1)}, meta={"group": 0})
    y = g.call("conv2d", [y, w], {"stride": (2, 2), "groups": 96}, meta={"group": 0})
    g.outputs = [g.call("clamp", [y], {"min": 0.0, "max": 6.0}, meta={"group": 0})]
    wt = torch.from_numpy(g.weights["w"])
    return g, [torch.randn(1, 96, 112, 112)], \
        lambda x: F.conv2d(F.pad(x, (0, 1, 0, 1)), wt, stride=2, groups=96).clamp(0, 6)


def softmax_case():
    g = Graph()
    x = g.add_input("x", TensorType((12, 128, 128), "float32"))
    g.outputs = [g.call("softmax", [x], {"dim": -1})]
    return g, [torch.randn(12, 128, 128)], lambda x: x.softmax(-1)


def layer_norm_case():
    g = Graph()
    x = g.add_input("x", TensorType((128, 768), "float32"))
    w = g.add_weight("w", np.random.randn(768).astype("float32"))
    b = g.add_weight("b", np.random.randn(768).astype("float32"))
    g.outputs = [g.call("layer_norm", [x, w, b], {"normalized_ndim": 1})]
    wt, bt = torch.from_numpy(g.weights["w"]), torch.from_numpy(g.weights["b"])
    return g, [torch.randn(128, 768)], lambda x: F.layer_norm(x, (768,), wt, bt)


def max_pool_case():
    g = Graph()
    x = g.add_input("x", TensorType((1, 64, 112, 112), "float32"))
    attrs = {"kernel": (3, 3), "stride": (2, 2), "padding": (1, 1)}
    g.outputs = [g.call("max_pool2d", [x], attrs)]
    return g, [torch.randn(1, 64, 112, 112)], lambda x: F.max_pool2d(x, 3, 2, 1)


CASES = {
    "matmul 512x512x512": matmul_case,
    "linear+gelu 128x768->3072": linear_case(128),
    "linear+gelu 197x768->3072": linear_case(197),  # ViT's 197 tokens: a row tail
    "conv3x3 1x64x56x56 ->64": conv_case(64, 56),
    "conv3x3+relu 1x128x28x28": conv_case(128, 28, relu=True),
    "depthwise3x3 1x128x56x56": conv_case(128, 56, groups=128),
    "softmax 12x128x128": softmax_case,
    "vit q@k^T 12x197x64": attention_scores_case,
    "vit p@v 12x197x197x64": attention_context_case,
    # ResNet-50 / MobileNetV2 / BERT shapes
    "r50 conv1x1 256->64 @56": conv_case(256, 56, out_channels=64, kernel=1),
    "r50 conv3x3 256 @14": conv_case(256, 14),
    "r50 conv1x1 64->256 @56": conv_case(64, 56, out_channels=256, kernel=1),
    "r50 conv1x1 512->2048 @7": conv_case(512, 7, out_channels=2048, kernel=1),
    "r50 conv3x3 512 @7": conv_case(512, 7),
    "r50 stem 7x7/2 3->64 @224": conv_case(3, 224, out_channels=64, kernel=7, stride=2),
    "mbv2 stem 3x3/2 3->32 @224": conv_case(3, 224, out_channels=32, kernel=3, stride=2),
    "mbv2 conv1x1 32->192 @56": conv_case(32, 56, out_channels=192, kernel=1),
    "mbv2 depthwise3x3/2 96 @112": conv_case(96, 112, groups=96, relu=True, stride=2),
    "mbv2 depthwise3x3 144 @56": conv_case(144, 56, groups=144, relu=True),
    "mbv2 depthwise3x3 960 @7": conv_case(960, 7, groups=960, relu=True),
    "mbv2 conv1x1 320->1280 @7": conv_case(320, 7, out_channels=1280, kernel=1, relu=True),
    "mbv2 conv1x1 16->96 @112": conv_case(16, 112, out_channels=96, kernel=1, relu=True),
    "mbv2 conv1x1 192->32 @28": conv_case(192, 28, out_channels=32, kernel=1),  # k blocks
    "mbv2 pad+depthwise3x3/2 96 @112": pad_depthwise_case,
    "layer_norm 128x768": layer_norm_case,
    "max_pool3x3/2 1x64x112": max_pool_case,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=50)
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for both torch and TVM (default: all cores)")
    parser.add_argument("--no-schedule", action="store_true")
    parser.add_argument("--only", default="", help="cases whose name contains this")
    args = parser.parse_args()
    if args.threads:  # TVM reads this when its thread pool starts, on the first kernel run
        os.environ["TVM_NUM_THREADS"] = str(args.threads)
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    np.random.seed(0)
    print(f"torch threads: {torch.get_num_threads()}")
    header = (f"{'kernel':28s} {'rule':18s} {'ours ms':>9s} {'torch ms':>9s} {'ours/torch':>10s}"
              f" {'GFLOP/s':>8s}")
    print(header + "\n" + "-" * len(header))
    for name, make in CASES.items():
        if args.only not in name:
            continue
        graph, inputs, reference = make()
        module = build(graph, "cpu", schedule=not args.no_schedule)
        torch.testing.assert_close(module(*inputs)[0], reference(*inputs), rtol=1e-3, atol=1e-3)
        with torch.no_grad():
            ref_ms = median_ms(lambda: reference(*inputs), args.reps)  # noqa: B023
        ours_ms = median_ms(lambda: module(*inputs), args.reps)  # noqa: B023
        rule = ",".join(k.schedule for k in module.kernels)
        gflops = sum(node_flops(n) for n in graph.ops()) / ours_ms / 1e6
        print(f"{name:28s} {rule:18s} {ours_ms:9.3f} {ref_ms:9.3f} {ours_ms / ref_ms:10.2f}"
              f" {gflops:8.1f}", flush=True)


if __name__ == "__main__":
    main()
