"""GPU code generation without a GPU: every zoo model compiles for CUDA (nvcc -> cubin) and
ROCm (LLVM amdgcn + ld.lld -> code object), one GPU kernel per fused group, for the arch
asked; a missing toolchain or device is named clearly."""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from backends.tvm import toolchain
from backends.tvm.build import build
from backends.tvm.cuda_fixes import fix_cuda_source
from backends.tvm.elf import function_symbols, gpu_arch
from backends.tvm.lower import lower_graph
from backends.tvm.schedules import _dlight_gpu, apply_rules, gpu
from backends.tvm.target import resolve_target
from compiler import dscompile
from compiler.errors import DeviceError, TargetError, ToolchainError
from compiler.kernels import kernel_groups
from examples.models import ZOO
from ir import Graph
from ir.types import TensorType

SM80, SM90 = {"kind": "cuda", "arch": "sm_80"}, {"kind": "cuda", "arch": "sm_90"}
GFX90A, GFX942 = {"kind": "rocm", "mcpu": "gfx90a"}, {"kind": "rocm", "mcpu": "gfx942"}
ARCH = {"cuda": "arch", "rocm": "mcpu"}
CI_SLICE = [(name, t) for name in sorted(ZOO) for t in (SM80, GFX90A)] + \
    [(name, t) for name in ("resnet_block", "sdpa_block") for t in (SM90, GFX942)]
SLOW = [(name, t) for name in sorted(ZOO) for t in (SM90, GFX942)
        if (name, t) not in CI_SLICE]
ROOT = Path(__file__).resolve().parents[2]


@functools.cache
def zoo_compiled(name: str, target_json: str):
    torch.manual_seed(0)
    model, inputs = ZOO[name]()
    return dscompile(model, inputs, target=json.loads(target_json), check="off", cache=False)


def compiled_for(name: str, target: dict):
    return zoo_compiled(name, json.dumps(target, sort_keys=True))


def check_one_gpu_kernel_per_group(name: str, target: dict) -> None:
    compiled = compiled_for(name, target)
    code = compiled.device_code
    arch = target[ARCH[target["kind"]]]
    assert code.kind == target["kind"] and code.arch == arch
    assert gpu_arch(code.binary) == arch  # the binary's ELF header says which GPU
    assert compiled.num_kernels == len(kernel_groups(compiled.ir))
    primfuncs = {k.name for k in compiled.kernels}  # identical groups share one PrimFunc
    for k in primfuncs:
        assert code.kernels_of(k) == [f"{k}_kernel"], f"{name}: {k} is not one GPU kernel"
    assert sorted(code.kernel_names()) == sorted(f"{k}_kernel" for k in primfuncs)
    assert sorted(code.binary_kernels()) == sorted(code.kernel_names())
    if code.kind == "cuda":  # declared once and defined once
        assert code.source.count("__global__") == 2 * len(primfuncs)


@pytest.mark.parametrize("name, target", CI_SLICE,
                         ids=[f"{n}-{t[ARCH[t['kind']]]}" for n, t in CI_SLICE])
def test_zoo_model_is_one_gpu_kernel_per_fused_group(name, target):
    check_one_gpu_kernel_per_group(name, target)


@pytest.mark.slow
@pytest.mark.parametrize("name, target", SLOW, ids=[f"{n}-{t[ARCH[t['kind']]]}" for n, t in SLOW])
def test_zoo_model_is_one_gpu_kernel_per_fused_group_all_archs(name, target):
    check_one_gpu_kernel_per_group(name, target)


def conv_bn_relu():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU()).eval()
    model[1].running_mean.uniform_(-1, 1)
    return model, (torch.randn(1, 3, 16, 16),)


def test_conv_bn_relu_is_one_global_function_in_cuda():
    compiled = dscompile(*conv_bn_relu(), target="cuda", check="off")
    code = compiled.device_code
    assert [n.op for n in compiled.ir.ops()] == ["conv2d", "relu"]
    assert code.kernel_names() == ["conv2d_relu_kernel"]
    assert len(re.findall(r"__global__", code.source)) == 2  # its declaration, its body
    assert function_symbols(code.binary) == ["conv2d_relu_kernel"]
    body = code.kernel_source("conv2d_relu_kernel")
    assert body.count("__global__") == 1 and body.rstrip().endswith("}")


def test_conv_bn_relu_is_one_kernel_in_the_rocm_code_object():
    compiled = dscompile(*conv_bn_relu(), target="rocm", check="off")
    code = compiled.device_code
    assert code.binary_format == "hsaco" and gpu_arch(code.binary) == "gfx90a"
    assert function_symbols(code.binary) == ["conv2d_relu_kernel"]
    assert "s_endpgm" in code.kernel_source("conv2d_relu_kernel")  # AMDGPU assembly


def test_kernel_sources_show_cuda_source_and_amdgpu_assembly():
    for target, marker in (("cuda", 'extern "C" __global__ void'), ("rocm", "s_endpgm")):
        sources = compiled_for("mlp", SM80 if target == "cuda" else GFX90A)._program \
            .kernel_sources()
        assert len(sources) == 3
        assert all(src.startswith("// schedule: dlight.") and marker in src
                   for src in sources.values())


def test_attention_is_one_kernel_with_the_row_rule():
    """dlight's Fallback launches a kernel per block of sdpa; the row rule makes it one,
    for a causal and a bool-masked attention at a longer sequence."""
    target = resolve_target("cuda")
    g = Graph()
    q, k, v = (g.add_input(n, TensorType((2, 4, 128, 64), "float32")) for n in "qkv")
    mask = g.add_input("mask", TensorType((128, 128), "bool"))
    g.outputs = [g.call("sdpa", [q, k, v], {"is_causal": True}),
                 g.call("sdpa", [q, k, v, mask])]
    program = build(g, target)
    assert [k.schedule for k in program.kernels] == ["row_kernel", "row_kernel"]
    assert all(len(program.device_code.kernels_of(k.name)) == 1 for k in program.kernels)
    func = lower_graph(g, target).mod[program.kernels[0].name]  # unscheduled
    plain, _ = apply_rules(func, target, [], _dlight_gpu.FALLBACK)
    assert gpu.launches(plain) > 1


def test_bool_masks_are_not_loaded_as_vectors():
    """TVM's CUDA code generator loads two bools as a ushort2 into a float2; our rules
    unroll those loops, so gpt_block's masked scores compile with nvcc."""
    code = compiled_for("gpt_block", SM80).device_code
    assert "ushort2" not in code.source
    assert "matmul_div_where_kernel" in code.kernel_names()


def test_half_infinities_are_valid_cuda():
    assert fix_cuda_source("x = __float2bfloat16_rn(-inff/*-inf*/);") == \
        "x = __float2bfloat16_rn(-__int_as_float(0x7f800000)/*-inf*/);"
    assert fix_cuda_source("y = nanf/*nan*/; inff_count = 1;") == \
        "y = __int_as_float(0x7fc00000)/*nan*/; inff_count = 1;"


def test_calling_without_a_device_says_so(tmp_path):
    compiled = compiled_for("mlp", SM80)
    with pytest.raises(DeviceError, match=r"no CUDA device is present.*sm_80"):
        compiled(torch.randn(8, 64))  # not "move the input to cuda"
    rocm = compiled_for("mlp", GFX90A)
    with pytest.raises(DeviceError, match=r"no ROCm device is present.*gfx90a"):
        rocm(torch.randn(8, 64))


@pytest.mark.parametrize("target, binary", [(SM80, "cubin"), (GFX90A, "hsaco")])
def test_export_writes_a_deployable_artifact(tmp_path, target, binary):
    compiled = compiled_for("mlp", target)
    library = tmp_path / "mlp.so"
    compiled.export_library(str(library))
    assert sorted(p.name for p in tmp_path.iterdir()) == \
        sorted(["mlp.so", f"mlp.{binary}", "mlp.weights.npz", "mlp.json", "mlp_loader.py"])
    manifest = json.loads((tmp_path / "mlp.json").read_text())
    assert manifest["kind"] == target["kind"] and manifest["binary_format"] == binary
    assert manifest["inputs"] == [{"name": "x", "shape": [8, 64], "dtype": "float32"}]
    shipped = (tmp_path / f"mlp.{binary}").read_bytes()
    assert sorted(function_symbols(shipped)) == sorted(manifest["kernels"])
    assert gpu_arch(shipped) == target[ARCH[target["kind"]]]
    # the loader runs with only tvm and torch; here it says there is no GPU
    script = f"import mlp_loader; mlp_loader.load({str(library)!r})"
    run = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True,
                         text=True, env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert run.returncode != 0 and "NoDeviceError: no " in run.stderr, run.stderr


def test_gpu_target_dicts_name_a_real_arch():
    assert str(resolve_target(SM90).attrs["arch"]) == "sm_90"
    assert str(resolve_target(GFX942).attrs["mcpu"]) == "gfx942"
    with pytest.raises(TargetError, match="'sm90' is not a cuda GPU name"):
        resolve_target({"kind": "cuda", "arch": "sm90"})
    with pytest.raises(TargetError, match="'mi300' is not a rocm GPU name"):
        resolve_target({"kind": "rocm", "mcpu": "mi300"})


# ----- toolchain discovery ---------------------------------------------------------------


def test_rocm_path_is_made_when_unset(monkeypatch, tmp_path):
    monkeypatch.delenv("ROCM_PATH", raising=False)
    monkeypatch.setenv("DSCOMPILE_CACHE_DIR", str(tmp_path))
    root = Path(toolchain.rocm_path())
    assert root == tmp_path / "rocm" and os.environ["ROCM_PATH"] == str(root)
    link = root / "amdgcn" / "bitcode"
    assert link.is_symlink() and (link / "ocml.bc").exists()
    assert link.resolve() == toolchain.rocm_bitcode_dir().resolve()


def test_rocm_links_the_isa_bitcode_of_the_target():
    files = [Path(f).name for f in toolchain.rocm_bitcode_files("gfx90a")]
    assert "oclc_isa_version_90a.bc" in files and "ocml.bc" in files
    # Debian's libraries (ROCm 5.2) stop at gfx940: gfx942 links its family's newest
    assert "oclc_isa_version_94" in toolchain.isa_version_bitcode(
        Path(toolchain.rocm_path()) / "amdgcn" / "bitcode", "gfx942").name


def test_missing_nvcc_names_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("CUDA_PATH", str(tmp_path))
    monkeypatch.delenv("CUDA_HOME", raising=False)
    monkeypatch.setattr(toolchain, "DEFAULT_CUDA_HOME", str(tmp_path))
    with pytest.raises(ToolchainError, match="nvcc.*cuda-nvcc"):
        build(_tiny_graph(), "cuda")


def test_missing_device_libs_name_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv("ROCM_PATH", str(tmp_path))
    monkeypatch.setattr(toolchain, "DEBIAN_BITCODE", str(tmp_path / "none"))
    monkeypatch.setattr(toolchain.glob, "glob", lambda *_: [])
    with pytest.raises(ToolchainError, match="apt-get install rocm-device-libs"):
        build(_tiny_graph(), "rocm")


def test_missing_lld_names_what_to_install(monkeypatch):
    monkeypatch.setattr(toolchain.shutil, "which", lambda _name: None)
    with pytest.raises(ToolchainError, match=r"apt-get install lld-\d+"):
        build(_tiny_graph(), "rocm")


def test_nvcc_errors_are_short_and_name_the_arch():
    with pytest.raises(Exception, match="nvcc failed on the generated CUDA code for sm_80"):
        toolchain.compile_cuda('extern "C" __global__ void k() { undefined_thing(); }', "sm_80")


def _tiny_graph() -> Graph:
    g = Graph()
    x = g.add_input("x", TensorType((4, 16), "float32"))
    g.outputs = [g.call("relu", [x])]
    return g


def test_gpu_benchmark_compiles_without_a_gpu(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import bench_gpu

    assert bench_gpu.main(["--dry-run", "--models", "zoo:mlp", "--out",
                           str(tmp_path / "gpu")]) == 0
    assert "| zoo:mlp | dscompile |" in (tmp_path / "gpu.md").read_text()
