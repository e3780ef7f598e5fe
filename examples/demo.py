"""The main job: compile an example CNN and a transformer block for every target.

On CPU it runs both and prints the max error and latency against eager PyTorch. For
CUDA and ROCm it generates and compiles the GPU kernels (nvcc to a cubin; LLVM amdgcn and
ld.lld to a code object) and runs them only where such a device is present; elsewhere
it prints what was built.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from compiler import DSCompileError, dscompile  # noqa: E402
from compiler.timing import median_ms  # noqa: E402
from examples.models import resnet_block, transformer_block  # noqa: E402

TARGETS = ("cpu", "cuda", "rocm")


def gpu_present(target: str) -> bool:
    if target == "cuda":
        return torch.cuda.is_available() and torch.version.hip is None
    if target == "rocm":
        return torch.cuda.is_available() and torch.version.hip is not None
    return True


def run_one(name: str, factory, target: str) -> str:
    model, inputs = factory()
    start = time.perf_counter()
    try:
        compiled = dscompile(model, inputs, target=target, check="raise" if target == "cpu"
                             else "off")
    except DSCompileError as e:
        return f"| {name} | {target} | not built: {str(e).splitlines()[0]} | | | |"
    compile_s = time.perf_counter() - start
    kernels = compiled.num_kernels
    if not gpu_present(target):
        code = compiled.device_code
        return (f"| {name} | {target} | {compile_s:.1f} s | {kernels} | no {target} device: "
                f"compiled only, {len(code.binary_kernels())} distinct kernels in a "
                f"{len(code.binary) // 1024} KiB {code.binary_format} for {code.arch} | |")
    device = "cpu" if target == "cpu" else "cuda"
    model, inputs = model.to(device), tuple(x.to(device) for x in inputs)
    with torch.no_grad():
        expected = model(*inputs)
        err = float((compiled(*inputs) - expected).abs().max())
        eager = median_ms(lambda: model(*inputs), reps=30)
    ours = median_ms(lambda: compiled(*inputs), reps=30)
    return (f"| {name} | {target} | {compile_s:.1f} s | {kernels} | max err {err:.2e} | "
            f"eager {eager:.2f} ms, dscompile {ours:.2f} ms ({eager / ours:.2f}x) |")


def main() -> None:
    torch.manual_seed(0)
    print("| model | target | compile | kernels | result | latency |")
    print("|---|---|---|---|---|---|")
    for name, factory in (("resnet_block", resnet_block),
                          ("transformer_block", transformer_block)):
        for target in TARGETS:
            print(run_one(name, factory, target), flush=True)


if __name__ == "__main__":
    main()
