"""Errors name the IR nodes at fault; targets resolve by name, dict or Target."""

from __future__ import annotations

import pytest
import tvm

from backends.tvm import op_table
from backends.tvm.build import build
from backends.tvm.lower import lower_graph
from backends.tvm.target import resolve_target, target_kind
from compiler.errors import LoweringError, TargetError
from ir import Graph
from ir.types import TensorType

F32 = TensorType((2, 3), "float32")


def test_unknown_ops_are_all_listed_with_their_source():
    g = Graph()
    x = g.add_input("x", F32)
    a = g.call("fft_magic", [x], type=F32, meta={"source": "model.py:12 in forward"})
    b = g.call("relu", [a])
    c = g.call("grid_sample", [b], type=F32, meta={"source": "model.py:14 in forward"})
    g.outputs = [c]
    with pytest.raises(LoweringError) as info:
        lower_graph(g, "cpu")
    text = str(info.value)
    assert "2 op(s)" in text
    assert "%fft_magic (fft_magic) at model.py:12 in forward" in text
    assert "%grid_sample (grid_sample) at model.py:14 in forward" in text
    assert "relu" not in text


def test_a_failing_lowering_names_the_group(monkeypatch):
    def broken(args, attrs, out):
        raise tvm.error.InternalError("Check failed: something deep inside TVM")

    monkeypatch.setitem(op_table.OP_TABLE, "gelu", broken)
    g = Graph()
    x = g.add_input("x", F32)
    s = g.call("sigmoid", [x], meta={"group": 0, "source": "m.py:3"})
    g.outputs = [g.call("gelu", [s], meta={"group": 0, "source": "m.py:4"})]
    with pytest.raises(LoweringError) as info:
        build(g, "cpu")
    text = str(info.value)
    assert "%sigmoid (sigmoid) at m.py:3" in text and "%gelu (gelu) at m.py:4" in text
    assert "something deep inside TVM" in text
    assert "Traceback" not in text


def test_cpu_target_names_the_host_cpu():
    target = resolve_target("cpu")
    assert target.kind.name == "llvm"
    assert str(target.attrs["mcpu"]) == tvm.target.codegen.llvm_get_system_cpu()
    assert str(target.attrs["mtriple"]) == "x86_64-linux-gnu"
    assert target_kind("llvm") == "cpu"


def test_gpu_targets():
    assert str(resolve_target("cuda").attrs["arch"]) == "sm_80"
    assert str(resolve_target("rocm").attrs["mcpu"]) == "gfx90a"
    assert target_kind("cuda") == "cuda" and target_kind("rocm") == "rocm"


def test_dicts_and_targets_pass_through():
    target = resolve_target({"kind": "cuda", "arch": "sm_90"})
    assert str(target.attrs["arch"]) == "sm_90"
    assert resolve_target(target) is target
    native = resolve_target({"kind": "llvm", "mcpu": "native"})
    assert str(native.attrs["mcpu"]) == tvm.target.codegen.llvm_get_system_cpu()


def test_unknown_target_suggests_close_names():
    with pytest.raises(TargetError, match="did you mean 'cuda'"):
        resolve_target("cdua")
    with pytest.raises(TargetError, match="invalid target"):
        resolve_target({"kind": "llvm", "bogus": 1})
    with pytest.raises(TargetError, match="no 'kind'"):
        resolve_target({"arch": "sm_80"})


def test_cuda_builds_without_a_gpu():
    g = Graph()
    x = g.add_input("x", TensorType((4, 16), "float32"))
    g.outputs = [g.call("softmax", [g.call("relu", [x])], {"dim": -1})]
    m = build(g, "cuda")
    assert m.num_kernels == 2 and all(k.schedule.startswith("dlight.") for k in m.kernels)


def test_tvm_threads_default_to_every_cpu_of_the_process():
    # TVM alone takes half the hardware threads (one on a 2-vCPU machine: half speed).
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "TVM_NUM_THREADS"}
    code = ("import os, tvm, backends.tvm.build; "
            "print(tvm.get_global_func('runtime.NumThreads')(), len(os.sched_getaffinity(0)))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True, timeout=120).stdout.split()
    assert out[0] == out[1]
