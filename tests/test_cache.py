"""The compile cache: a second dscompile of the same model, in a new process, loads the
built program instead of building it; anything that changes the program changes the key;
a damaged or stale entry is rebuilt, never used."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from compiler import dscompile
from compiler.cache import CompileCache, cache_key
from examples.models import MLP, SmallResNet

ROOT = Path(__file__).resolve().parents[1]

# A fresh interpreter compiles the example ResNet and prints what the cache did, the
# compile time and the error against eager.
SCRIPT = textwrap.dedent("""
    import json, sys, time
    import torch
    sys.path.insert(0, {root!r})
    from compiler import dscompile
    from examples.models import SmallResNet
    torch.manual_seed(0)
    model, x = SmallResNet().eval(), torch.randn(1, 3, 32, 32)
    start = time.perf_counter()
    compiled = dscompile(model, (x,), check="off")
    seconds = time.perf_counter() - start
    with torch.no_grad():
        error = (compiled(x) - model(x)).abs().max().item()
    print(json.dumps({{"status": compiled._program.cache_status, "seconds": seconds,
                      "error": error}}))
""")


def compile_in_new_process(cache_dir: Path) -> dict:
    env = {**os.environ, "DSCOMPILE_CACHE_DIR": str(cache_dir), "DSCOMPILE_CACHE": "1"}
    out = subprocess.run([sys.executable, "-c", SCRIPT.format(root=str(ROOT))], env=env,
                         capture_output=True, text=True, timeout=600, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_new_process_loads_instead_of_building(tmp_path):
    cold = compile_in_new_process(tmp_path)
    warm = compile_in_new_process(tmp_path)
    assert (cold["status"], warm["status"]) == ("miss", "hit")
    assert warm["error"] <= 1e-5 and cold["error"] <= 1e-5
    assert warm["seconds"] < cold["seconds"]  # loading skips lowering, scheduling, LLVM
    entries = list(tmp_path.glob("*/*/meta.json"))
    assert len(entries) == 1


def compile_mlp(cache: CompileCache, model: torch.nn.Module, monkeypatch):
    monkeypatch.setattr("compiler.cache.default_cache", lambda: cache)
    return dscompile(model, (torch.randn(4, 64),), cache=True, check="off")


def test_weights_target_and_options_are_in_the_key(tmp_path, monkeypatch):
    cache = CompileCache(tmp_path)
    model = MLP().eval()
    first = compile_mlp(cache, model, monkeypatch)
    assert compile_mlp(cache, model, monkeypatch)._program.cache_status == "hit"
    with torch.no_grad():
        model.layers[0].weight[0, 0] += 1.0  # one weight changed: another program
    again = compile_mlp(cache, model, monkeypatch)
    assert again._program.cache_status == "miss"
    x = torch.randn(4, 64)
    with torch.no_grad():
        torch.testing.assert_close(again(x), model(x), rtol=1e-4, atol=1e-5)
    from backends.tvm.target import resolve_target
    from compiler.config import CompileOptions

    graph = first.ir
    keys = {cache_key(graph, resolve_target(t), CompileOptions(opt_level=o))[0]
            for t in ("cpu", "cuda") for o in (1, 2)}
    assert len(keys) == 4
    assert cache.stats == {"hit": 1, "miss": 2, "rejected": 0}
    # DSCOMPILE_WINOGRAD=0 asks for another program (direct 3x3 convs)
    monkeypatch.setenv("DSCOMPILE_WINOGRAD", "0")
    assert cache_key(graph, resolve_target("cpu"), CompileOptions())[0] not in keys


def test_kernel_sources_survive_a_cache_hit(tmp_path, monkeypatch):
    cache = CompileCache(tmp_path)
    model = MLP().eval()
    built = compile_mlp(cache, model, monkeypatch)._program.kernel_sources()
    loaded = compile_mlp(cache, model, monkeypatch)._program
    assert loaded.cache_status == "hit" and loaded.mod is None
    assert loaded.kernel_sources() == built
    assert all(s.startswith("# schedule: ") and "T.prim_func" in s for s in built.values())


@pytest.mark.parametrize("damage", ["garbage library", "truncated meta", "other versions"])
def test_a_damaged_or_stale_entry_is_rebuilt_never_used(tmp_path, monkeypatch, caplog, damage):
    cache = CompileCache(tmp_path)
    model = MLP().eval()
    compile_mlp(cache, model, monkeypatch)
    (entry,) = [p.parent for p in tmp_path.glob("*/*/meta.json")]
    if damage == "garbage library":
        (entry / "program.so").write_bytes(b"\x7fELF not really a library")
    elif damage == "truncated meta":
        text = (entry / "meta.json").read_text()
        (entry / "meta.json").write_text(text[: len(text) // 2])
    else:
        meta = json.loads((entry / "meta.json").read_text())
        meta["parts"]["versions"]["tvm"] = "0.0.1"
        (entry / "meta.json").write_text(json.dumps(meta))
    with caplog.at_level(logging.WARNING, logger="compiler.cache"):
        rebuilt = compile_mlp(cache, model, monkeypatch)
    assert rebuilt._program.cache_status == "rebuilt"
    assert "rejected" in caplog.text
    x = torch.randn(4, 64)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), model(x), rtol=1e-4, atol=1e-5)
    assert compile_mlp(cache, model, monkeypatch)._program.cache_status == "hit"  # repaired


def test_cache_off_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("DSCOMPILE_CACHE_DIR", str(tmp_path))
    dscompile(SmallResNet().eval(), (torch.randn(1, 3, 32, 32),), cache=False, check="off")
    assert not any(tmp_path.iterdir())
