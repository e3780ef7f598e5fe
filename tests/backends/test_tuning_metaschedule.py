"""The MetaSchedule candidate on one tiny kernel with a handful of trials: locally, and
through an RPC tracker with two servers on loopback. The only tests that tune (MetaSchedule's
first use in a process costs about 20 s of CPU: it parses TVM's tensor intrinsics)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import tvm

from backends.tvm.build import build
from backends.tvm.lower import lower_graph
from backends.tvm.target import resolve_target
from backends.tvm.tuning import TuningOptions
from backends.tvm.tuning import metaschedule as ms_tuning
from backends.tvm.tuning.database import TuningDatabase, record_key
from backends.tvm.tuning.measure import STATS, Settings, compile_primfunc
from backends.tvm.weights import as_torch, pack
from ir import Graph
from ir.types import TensorType

QUICK = Settings(repeat=3, min_repeat_ms=1, warmup=1)
TRIALS = 4


def tiny_linear() -> tuple[Graph, torch.Tensor, torch.Tensor]:
    g = Graph()
    x = g.add_input("x", TensorType((16, 64), "float32"))
    w = g.add_weight("w", np.random.randn(64, 64).astype("float32"))
    y = g.call("linear", [x, w], meta={"group": 0})
    g.outputs = [g.call("relu", [y], meta={"group": 0})]
    xt = torch.randn(16, 64)
    return g, xt, F.relu(F.linear(xt, torch.from_numpy(g.weights["w"])))


def test_metaschedule_candidate_is_measured_recorded_and_replays(tmp_path):
    graph, x, expected = tiny_linear()
    db = TuningDatabase(tmp_path)
    before = STATS.measurements
    module = build(graph, "cpu", tuning=TuningOptions(trials=TRIALS, database=db,
                                                      settings=QUICK))
    (kernel,) = module.kernels
    assert set(kernel.timings) == {"matmul", "metaschedule"}
    assert kernel.schedule in kernel.timings
    assert 2 < STATS.measurements - before <= TRIALS + 2  # the trials, then both candidates
    torch.testing.assert_close(module(x)[0], expected, rtol=1e-4, atol=1e-4)

    lowered = lower_graph(graph, resolve_target("cpu"))
    func = lowered.mod[lowered.kernels[0].name]
    record = TuningDatabase(tmp_path).lookup(record_key(func, resolve_target("cpu")))
    assert record.trials == TRIALS and record.trace
    replayed = ms_tuning.replay(func, record.trace)  # the searched schedule, no search
    ((name, layout),) = lowered.weights  # main's weight argument, in the kernel's layout
    weight = tvm.runtime.from_dlpack(as_torch(pack(graph.weights[name], layout)))
    out = tvm.runtime.empty((16, 64), "float32")
    compile_primfunc(replayed, resolve_target("cpu"))["main"](
        tvm.runtime.from_dlpack(x), weight, out)
    torch.testing.assert_close(torch.from_dlpack(out), expected, rtol=1e-4, atol=1e-4)


def test_rpc_tracker_with_two_servers_tunes_one_kernel(tmp_path):
    pytest.importorskip("tornado", reason="TVM's RPC tracker needs tornado")
    from tvm import rpc

    from backends.tvm.tuning.rpc import loopback

    graph, x, expected = tiny_linear()
    with loopback(servers=2) as tracker:
        before = STATS.measurements
        options = TuningOptions(trials=TRIALS, rpc=str(tracker),
                                database=TuningDatabase(tmp_path), settings=QUICK)
        module = build(graph, "cpu", tuning=options)
        summary = rpc.connect_tracker(tracker.host, tracker.port).summary()
    assert len(summary["server_info"]) == 2
    (kernel,) = module.kernels
    assert set(kernel.timings) == {"matmul", "metaschedule"}
    assert STATS.measurements - before > 2  # trials and candidates, timed on the servers
    torch.testing.assert_close(module(x)[0], expected, rtol=1e-4, atol=1e-4)
