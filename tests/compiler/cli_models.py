"""Factories for the command-line tests (MODEL arguments of the form file.py:factory)."""

import torch
from torch import nn


def conv_bn_relu():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU()).eval()
    return model, (torch.randn(1, 3, 16, 16),)


def raises():
    raise RuntimeError("no weights here")


def wrong_return():
    return nn.Linear(2, 2)
