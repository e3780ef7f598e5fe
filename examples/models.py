"""Example models as factories returning ``(model, example_inputs)``.

The demo, the ``dscompile`` command line (``examples/models.py:resnet_block``) and the
test zoo all build their models here, so each model is written once.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class MLP(nn.Module):
    def __init__(self, dims=(64, 128, 128, 10)):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims, dims[1:]))

    def forward(self, x):
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x


class BasicBlock(nn.Module):
    """ResNet's basic block: two Conv-BN, a residual add, ReLU."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                      nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        skip = x if self.down is None else self.down(x)
        return F.relu(out + skip)


class SmallResNet(nn.Module):
    """Conv-BN-ReLU stem, max pool, residual blocks, global average pool, classifier."""

    def __init__(self, width: int = 16, classes: int = 10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(width), nn.ReLU())
        self.pool = nn.MaxPool2d(3, 2, 1)
        self.block1 = BasicBlock(width, width)
        self.block2 = BasicBlock(width, 2 * width, stride=2)
        self.head = nn.Linear(2 * width, classes)

    def forward(self, x):
        x = self.pool(self.stem(x))
        x = self.block2(self.block1(x))
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.head(x)


class InvertedResidual(nn.Module):
    """MobileNetV2's block: 1x1 expand, 3x3 depthwise, 1x1 project, residual."""

    def __init__(self, channels: int = 16, expand: int = 4, act=nn.ReLU6):
        super().__init__()
        hidden = channels * expand
        self.expand = nn.Sequential(nn.Conv2d(channels, hidden, 1, bias=False),
                                    nn.BatchNorm2d(hidden), act())
        self.depthwise = nn.Sequential(nn.Conv2d(hidden, hidden, 3, 1, 1, groups=hidden,
                                                 bias=False), nn.BatchNorm2d(hidden), act())
        self.project = nn.Sequential(nn.Conv2d(hidden, channels, 1, bias=False),
                                     nn.BatchNorm2d(channels))

    def forward(self, x):
        return x + self.project(self.depthwise(self.expand(x)))


class MobileNetLike(nn.Module):
    def __init__(self, channels: int = 16, classes: int = 10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, channels, 3, 2, 1, bias=False),
                                  nn.BatchNorm2d(channels), nn.Hardswish())
        self.block1 = InvertedResidual(channels, act=nn.ReLU6)
        self.block2 = InvertedResidual(channels, act=nn.Hardswish)
        self.head = nn.Linear(channels, classes)

    def forward(self, x):
        x = self.block2(self.block1(self.stem(x)))
        return self.head(x.mean(dim=(2, 3)))


class SelfAttention(nn.Module):
    """Multi-head attention written out: Q/K/V linears, softmax(QK^T/sqrt(d))V."""

    def __init__(self, dim: int, heads: int, causal: bool = False, use_sdpa: bool = False):
        super().__init__()
        self.heads, self.causal, self.use_sdpa = heads, causal, use_sdpa
        self.q, self.k, self.v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)
        self.drop = nn.Dropout(0.1)

    def forward(self, x):
        b, t, d = x.shape
        h = self.heads

        def split(y):
            return y.view(b, t, h, d // h).transpose(1, 2)

        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        if self.use_sdpa:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)
        else:
            scores = q @ k.transpose(-2, -1) / math.sqrt(d // h)
            if self.causal:
                mask = torch.tril(torch.ones(t, t, dtype=torch.bool))
                scores = scores.masked_fill(~mask, float("-inf"))
            y = self.drop(scores.softmax(dim=-1)) @ v
        return self.out(y.transpose(1, 2).reshape(b, t, d))


class TransformerBlock(nn.Module):
    """A pre-norm encoder (or, with ``causal``, GPT-style decoder) block."""

    def __init__(self, dim: int = 64, heads: int = 4, causal: bool = False,
                 use_sdpa: bool = False):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, heads, causal, use_sdpa)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim),
                                 nn.Dropout(0.1))

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


def mlp():
    return MLP().eval(), (torch.randn(8, 64),)


def resnet_block():
    return SmallResNet().eval(), (torch.randn(1, 3, 32, 32),)


def mobilenet_block():
    return MobileNetLike().eval(), (torch.randn(1, 3, 32, 32),)


def transformer_block():
    return TransformerBlock().eval(), (torch.randn(2, 16, 64),)


def gpt_block():
    return TransformerBlock(causal=True).eval(), (torch.randn(1, 16, 64),)


def sdpa_block():
    return TransformerBlock(causal=True, use_sdpa=True).eval(), (torch.randn(1, 16, 64),)


ZOO = {
    "mlp": mlp,
    "resnet_block": resnet_block,
    "mobilenet_block": mobilenet_block,
    "transformer_block": transformer_block,
    "gpt_block": gpt_block,
    "sdpa_block": sdpa_block,
}
