"""Winograd 3x3 convs on the CPU (backends.tvm.winograd): the transforms' algebra, which
convs take it and with which tile, and numerics against torch where they do."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
from backend_helpers import run_exported

from backends.tvm import winograd
from backends.tvm.weights import pack, packed_shape
from compiler import dscompile

WINOGRAD = "conv2d_winograd"


@pytest.mark.parametrize("m", winograd.TILES)
def test_the_transforms_compute_a_3x3_correlation(m):
    mats = winograd.matrices(m)
    rng = np.random.default_rng(m)
    d, g = rng.standard_normal((mats.t, mats.t)), rng.standard_normal((3, 3))
    y = mats.at @ ((mats.g @ g @ mats.g.T) * (mats.bt @ d @ mats.bt.T)) @ mats.at.T
    direct = np.array([[np.sum(d[i:i + 3, j:j + 3] * g) for j in range(m)] for i in range(m)])
    np.testing.assert_allclose(y, direct, rtol=1e-12, atol=1e-12)


def test_the_packed_weight_is_u_per_position_in_blocks_of_output_channels():
    w = np.random.default_rng(0).standard_normal((32, 8, 3, 3)).astype("float32")
    layout = winograd.layout(4, 16)
    u = pack(w, layout)
    assert u.shape == packed_shape(w.shape, layout) == (36, 2, 8, 16) and u.dtype == w.dtype
    mats = winograd.matrices(4)
    k, c, e, f = 21, 5, 2, 3  # output channel 21 is lane 5 of block 1
    expected = (mats.g @ w[k, c].astype(np.float64) @ mats.g.T)[e, f]
    assert u[e * 6 + f, 1, c, 5] == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("size, m", [(56, 4), (28, 4), (14, 2), (8, 2), (7, 2), (6, None)])
def test_the_tile_of_least_cost_that_leaves_enough_tiles(size, m):
    # 14x14: 16 tiles of 4 (a 36-position weight) cost more than 49 of 2; 7x7: 4 x 4 tiles
    # of 2, the last ones past the edge; 6x6: 9 tiles of 2 are too few
    assert winograd.output_tile(64, 64, 16, size, size) == m


def test_a_batch_counts_its_tiles():
    assert winograd.output_tile(64, 64, 16, 6, 6, batch=2) == 2


@pytest.mark.parametrize("channels, lanes, m", [((16, 64), 16, None), ((64, 16), 16, None),
                                                ((512, 512), 16, 2), ((1024, 1024), 16, None),
                                                ((64, 40), 8, 4)])
def test_channels_and_weight_size_decide_too(channels, lanes, m):
    # too few channels: the transforms cost more than they save; 512 -> 512 at 28x28:
    # 37.7 MB transformed for tiles of 4, 16.8 MB for 2; 1024 -> 1024: 67 MB for 2;
    # 40 channels in blocks of 8
    assert winograd.output_tile(*channels, lanes, 28, 28) == m


def test_the_switch_turns_it_off(monkeypatch):
    monkeypatch.setenv(winograd.ENV, "0")
    assert winograd.output_tile(64, 64, 16, 56, 56) is None


class Bottleneck(nn.Module):
    """ResNet's bottleneck: 1x1 down, 3x3 (with bias and relu), 1x1 up, residual add."""

    def __init__(self, channels: int = 64, inner: int = 32) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(channels, inner, 1)
        self.conv = nn.Conv2d(inner, inner, 3, padding=1)
        self.expand = nn.Conv2d(inner, channels, 1)

    def forward(self, x):
        y = torch.relu(self.conv(torch.relu(self.reduce(x))))
        return torch.relu(self.expand(y) + x).mean((2, 3))


def compile_bottleneck(x: torch.Tensor) -> tuple[nn.Module, object]:
    torch.manual_seed(0)
    model = Bottleneck().eval()
    return model, dscompile(model, (x,), cache=False, check="off")


@pytest.mark.parametrize("shape", [(1, 64, 16, 16), (2, 64, 8, 8), (1, 64, 12, 20), (1, 64, 9, 13)])
def test_a_bottleneck_3x3_conv_runs_winograd_and_matches_torch(shape):
    x = torch.randn(shape)
    model, compiled = compile_bottleneck(x)
    schedules = [k.schedule for k in compiled.kernels]
    assert schedules.count(WINOGRAD) == 1
    assert schedules[1] == WINOGRAD  # the 3x3 conv's kernel, with its bias and relu
    torch.testing.assert_close(compiled(x), model(x), rtol=1e-4, atol=1e-5)


def test_turned_off_the_same_kernels_compute_directly(monkeypatch):
    x = torch.randn(1, 64, 16, 16)
    _, with_winograd = compile_bottleneck(x)
    monkeypatch.setenv(winograd.ENV, "0")
    model, direct = compile_bottleneck(x)
    assert WINOGRAD not in [k.schedule for k in direct.kernels]
    assert direct.num_kernels == with_winograd.num_kernels
    # the tiles (V) and products (M) of 16 tiles of 4 x 4, 36 positions, 32 channels,
    # are the kernel's scratch in TVM's pool; the direct conv's is its padded input
    assert with_winograd.memory.scratch_bytes == 2 * 36 * 16 * 32 * 4
    assert direct.memory.scratch_bytes == 32 * 18 * 18 * 4
    assert "kernel scratch 144.0 KiB" in str(with_winograd.memory)
    torch.testing.assert_close(direct(x), model(x), rtol=1e-4, atol=1e-5)


class Convs(nn.Module):
    """A 3x3 conv over the (NCHW) graph input, a residual add in the kernel of a second
    3x3, a strided 3x3 and a 3x3 at 7x7, which no tile divides."""

    def __init__(self) -> None:
        super().__init__()
        self.first = nn.Conv2d(32, 32, 3, padding=1, bias=False)
        self.second = nn.Conv2d(32, 32, 3, padding=1)
        self.down = nn.Conv2d(32, 48, 3, stride=2, padding=1)
        self.odd = nn.Conv2d(48, 48, 3, padding=1)
        self.head = nn.Conv2d(48, 16, 1)

    def forward(self, x):
        y = torch.relu(self.first(x))
        y = torch.relu(self.second(y) + y)
        y = self.odd(torch.relu(self.down(y)))
        return self.head(torch.relu(y)).mean((2, 3))


def test_winograd_from_an_nchw_input_with_a_residual_and_only_where_it_fits(tmp_path):
    torch.manual_seed(0)
    model, x = Convs().eval(), torch.randn(1, 32, 14, 14)
    compiled = dscompile(model, (x,), cache=False, check="off")
    by_conv = {k.node_names[0]: k.schedule for k in compiled.kernels}
    winograd_convs = sorted(name for name, rule in by_conv.items() if rule == WINOGRAD)
    assert len(winograd_convs) == 3  # all but the strided one; 7x7 in tiles past the edge
    first = compiled.kernels[0]
    assert first.schedule == WINOGRAD and not first.reads_blocked
    torch.testing.assert_close(compiled(x), model(x), rtol=1e-4, atol=1e-5)
    # an exported library packs the transformed weights itself
    compiled.export_library(str(tmp_path / "lib.so"))
    torch.testing.assert_close(run_exported(tmp_path, x), model(x), rtol=1e-4, atol=1e-5)


def test_tuning_keeps_metaschedule_off_a_winograd_kernel(tmp_path, monkeypatch):
    # its sampled schedules leave the positions' if_then_else chains unfolded; it spent
    # 14 minutes on ResNet-50's first one
    from backends.tvm.build import build
    from backends.tvm.tuning import TuningOptions, tune
    from backends.tvm.tuning.database import TuningDatabase

    searched = []
    monkeypatch.setattr(tune.cands, "metaschedule",
                        lambda func, *args, **kwargs: searched.append(func.script()))
    x = torch.randn(1, 64, 16, 16)
    model, compiled = compile_bottleneck(x)
    options = TuningOptions(trials=4, database=TuningDatabase(tmp_path), library=False,
                            measure=lambda candidate: 1.0)
    program = build(compiled.ir, "cpu", tuning=options)
    assert [k.schedule for k in program.kernels].count(WINOGRAD) == 1
    assert len(searched) == program.num_kernels - 1
    assert not any("T_wino_product" in script for script in searched)
    torch.testing.assert_close(program(x)[0], model(x), rtol=1e-4, atol=1e-5)


class ThreeConvs(nn.Module):
    """1x1, 3x3, 1x1, and a 1x1 average pool, which reads the last blocked value in
    place: each output position stays where it is."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Conv2d(32, 32, 1), nn.Conv2d(32, 32, 3, padding=1)
        self.c = nn.Conv2d(32, 16, 1)

    def forward(self, x):
        y = self.c(torch.relu(self.b(torch.relu(self.a(x)))))
        return nn.functional.avg_pool2d(y, 1)


def test_an_inf_makes_nan_over_its_tile_and_only_with_winograd(monkeypatch):
    # the documented difference: a direct conv spreads it over its 3x3 reach
    torch.manual_seed(0)
    model, x = ThreeConvs().eval(), torch.randn(1, 32, 16, 16)
    x[0, 3, 5, 6] = float("inf")
    expected = model(x)
    assert expected.isnan().sum() == 16 * 3 * 3
    compiled = dscompile(model, (x,), cache=False, check="off")
    assert WINOGRAD in [k.schedule for k in compiled.kernels]
    assert compiled(x).isnan().sum() == 16 * 4 * 4  # 16 tiles of 4 x 4: (5, 6) in one
    monkeypatch.setenv(winograd.ENV, "0")
    direct = dscompile(model, (x,), cache=False, check="off")
    torch.testing.assert_close(direct(x), expected, rtol=1e-4, atol=1e-5, equal_nan=True)
