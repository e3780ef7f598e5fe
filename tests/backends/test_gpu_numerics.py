"""On a CUDA or ROCm GPU: every zoo model compiled for it matches eager PyTorch on the same
GPU, with torch GPU tensors in and out through DLPack (no copies), in float32 and in
bfloat16; an exported program runs through its own loader. Skipped, with the reason,
where no GPU is present."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from compiler import dscompile
from compiler.guard import tolerance
from examples.models import ZOO


def present_gpu() -> dict | None:
    """The target of the GPU torch sees, or None."""
    if not torch.cuda.is_available():
        return None
    if torch.version.hip is not None:
        return {"kind": "rocm",
                "mcpu": torch.cuda.get_device_properties(0).gcnArchName.split(":")[0]}
    major, minor = torch.cuda.get_device_capability(0)
    return {"kind": "cuda", "arch": f"sm_{major}{minor}"}


TARGET = present_gpu()
pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(TARGET is None, reason="no CUDA or ROCm device is present "
                                 "(torch.cuda.is_available() is False)")]


def assert_close(actual: torch.Tensor, expected: torch.Tensor, dtype: str) -> None:
    rtol, atol = tolerance(torch.float32, dtype)
    allowed = atol + rtol * float(expected.abs().max())
    assert float((actual.float() - expected.float()).abs().max()) <= allowed


@pytest.mark.parametrize("name", sorted(ZOO))
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_zoo_model_matches_eager_on_the_gpu(name, dtype):
    model, inputs = ZOO[name]()
    compiled = dscompile(model, inputs, target=TARGET, check="off",
                         dtype=None if dtype == "float32" else dtype)
    gpu_inputs = tuple(x.cuda() for x in inputs)
    with torch.no_grad():
        expected = model.cuda()(*gpu_inputs)
    actual = compiled(*gpu_inputs)
    assert actual.device.type == "cuda" and actual.dtype == torch.float32
    assert_close(actual, expected, dtype)


def test_the_guard_runs_on_the_gpu():
    model, inputs = ZOO["transformer_block"]()
    dscompile(model, inputs, target=TARGET, check="raise")  # NumericsError on a mismatch


def test_gpu_tensors_cross_without_copies():
    """DLPack: the buffer the kernels read is the caller's GPU tensor (same pointer), and
    outputs come back as GPU tensors."""
    from backends.tvm.build import _to_tvm

    x = torch.randn(8, 64, device="cuda")
    assert torch.from_dlpack(_to_tvm(x)).data_ptr() == x.data_ptr()
    model, inputs = ZOO["mlp"]()
    compiled = dscompile(model, inputs, target=TARGET, check="off")
    assert compiled(x).is_cuda


def test_exported_program_runs_through_its_loader(tmp_path):
    model, inputs = ZOO["mlp"]()
    compiled = dscompile(model, inputs, target=TARGET, check="off")
    compiled.export_library(str(tmp_path / "mlp.so"))
    torch.save(inputs[0], tmp_path / "x.pt")
    script = (
        "import torch, mlp_loader\n"
        "run = mlp_loader.load('mlp.so')\n"
        "(y,) = run(torch.load('x.pt').cuda())\n"
        "torch.save(y.cpu(), 'y.pt')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr
    with torch.no_grad():
        expected = model(inputs[0])
    assert_close(torch.load(tmp_path / "y.pt"), expected, "float32")
