"""The tuning database round-trips through disk, is keyed by workload and target, and a
second compile of the same model measures nothing."""

from __future__ import annotations

import numpy as np
import torch
import tvm

from backends.tvm.build import build
from backends.tvm.lower import lower_graph
from backends.tvm.target import resolve_target
from backends.tvm.tuning import TuningOptions
from backends.tvm.tuning.database import Record, TuningDatabase, program_key, record_key
from backends.tvm.tuning.measure import STATS, Settings
from compiler import dscompile
from ir import Graph
from ir.types import TensorType

QUICK = Settings(repeat=3, min_repeat_ms=1, warmup=1)  # real timings, kept short


def linear_graph(rows: int = 8, name: str = "x") -> Graph:
    g = Graph()
    x = g.add_input(name, TensorType((rows, 64), "float32"))
    w = g.add_weight("w", np.random.randn(48, 64).astype("float32"))
    g.outputs = [g.call("linear", [x, w])]
    return g


def kernel_func(graph: Graph):
    lowered = lower_graph(graph, resolve_target("cpu"))
    return lowered.mod[lowered.kernels[0].name]


def test_records_round_trip_through_disk_and_the_last_line_wins(tmp_path):
    db = TuningDatabase(tmp_path)
    db.commit(Record("k1", "linear", "matmul", {"matmul": 1.0, "onednn": 2.0}, trials=0))
    db.commit(Record("k1", "linear", "onednn", {"matmul": 1.0, "onednn": 0.5}, trials=8,
                     trace=[["GetSBlock", [], ["T_linear", "main"], ["b0"]]]))
    with open(db.path, "a") as f:
        f.write('{"key": "torn", "chosen": \n')  # a write cut short loses one line only
    fresh = TuningDatabase(tmp_path)
    record = fresh.lookup("k1")
    assert len(fresh) == 1 and fresh.hits == 1
    assert (record.chosen, record.trials, record.ranked()) == ("onednn", 8, ["onednn", "matmul"])
    assert record.trace == [["GetSBlock", [], ["T_linear", "main"], ["b0"]]]


def test_key_is_the_workload_and_the_target():
    a, same, other = kernel_func(linear_graph()), kernel_func(linear_graph(name="y")), \
        kernel_func(linear_graph(rows=9))
    cpu = resolve_target("cpu")
    assert record_key(a, cpu) == record_key(same, cpu)  # names and weights do not count
    assert record_key(a, cpu) != record_key(other, cpu)  # shapes do
    avx2 = tvm.target.Target({**cpu.export(), "mcpu": "haswell"})
    assert record_key(a, cpu) != record_key(a, avx2)


def test_a_second_compile_measures_nothing(tmp_path):
    options = TuningOptions(trials=0, database=TuningDatabase(tmp_path), settings=QUICK)
    graph = small_conv_graph()
    before = STATS.measurements
    first = build(graph, "cpu", tuning=options)
    measured = STATS.measurements - before
    assert measured == 2  # the rule and the library candidate of the one conv kernel
    again = TuningOptions(trials=0, database=TuningDatabase(tmp_path), settings=QUICK)
    second = build(graph, "cpu", tuning=again)
    assert STATS.measurements - before == measured  # nothing more
    assert again.database.hits == 1
    assert [k.schedule for k in second.kernels] == [k.schedule for k in first.kernels]
    assert second.kernels[0].timings == first.kernels[0].timings


def test_a_record_is_served_and_an_edited_rule_is_measured_again_alone(tmp_path):
    graph = small_conv_graph()
    key = record_key(kernel_func(graph), resolve_target("cpu"))
    db = TuningDatabase(tmp_path)
    db.commit(Record(key, "conv2d_relu", "onednn", {"conv2d_packed": 5.0, "onednn": 2.0},
                     trials=0))
    calls = []

    def measure(candidate):
        calls.append(candidate.name)
        return 1.0

    served = build(graph, "cpu", tuning=TuningOptions(trials=0, database=db, measure=measure))
    assert calls == [] and served.kernels[0].schedule == "onednn"
    db.commit(Record(key, "conv2d_relu", "onednn", {"conv2d_packed": 5.0, "onednn": 2.0},
                     trials=0, rule_hash="0" * 16))  # measured with another rule
    rebuilt = build(graph, "cpu", tuning=TuningOptions(trials=0, database=db, measure=measure))
    assert calls == ["conv2d_packed"]  # the library's time is still good
    assert rebuilt.kernels[0].schedule == "conv2d_packed"
    assert TuningDatabase(tmp_path).lookup(key).times_ms == {"conv2d_packed": 1.0,
                                                              "onednn": 2.0}


def test_a_rule_time_from_before_a_tir_pass_changed_is_measured_again(tmp_path, monkeypatch):
    # a pass after scheduling (stack_buffers.py) made the rules' kernels faster with the
    # same schedule: records that timed the old code must not keep a slower library call
    from backends.tvm import pipeline

    graph = small_conv_graph()
    db = TuningDatabase(tmp_path)
    calls = []

    def measure(candidate):
        calls.append(candidate.name)
        return {"conv2d_packed": 5.0, "onednn": 2.0}[candidate.name]

    options = TuningOptions(trials=0, database=db, measure=measure)
    assert build(graph, "cpu", tuning=options).kernels[0].schedule == "onednn"
    assert sorted(calls) == ["conv2d_packed", "onednn"]
    calls.clear()
    build(graph, "cpu", tuning=options)
    assert calls == []  # served from the record
    target = resolve_target("cpu")
    before = program_key("g", target, 0, True)
    monkeypatch.setattr(pipeline, "_fingerprint", "passes-edited")
    assert program_key("g", target, 0, True) != before
    build(graph, "cpu", tuning=options)
    assert calls == ["conv2d_packed"]


def small_conv_graph() -> Graph:
    g = Graph()
    x = g.add_input("x", TensorType((1, 16, 32, 32), "float32"))
    w = g.add_weight("w", np.random.randn(16, 16, 3, 3).astype("float32") * 0.1)
    attrs = {"padding": (1, 1), "stride": (1, 1), "dilation": (1, 1), "groups": 1}
    c = g.call("conv2d", [x, w], attrs, meta={"group": 0})
    g.outputs = [g.call("relu", [c], meta={"group": 0})]
    return g


def test_dscompile_tune_reuses_the_database(tmp_path, monkeypatch):
    monkeypatch.setenv("DSCOMPILE_TUNING_DIR", str(tmp_path))
    model = torch.nn.Sequential(torch.nn.Conv2d(16, 16, 3, padding=1), torch.nn.ReLU()).eval()
    x = torch.randn(1, 16, 32, 32)
    before = STATS.measurements
    compiled = dscompile(model, (x,), tune=True, trials=0, cache=False)
    assert STATS.measurements > before
    assert compiled.kernels[0].timings  # the rule and the library, both measured
    torch.testing.assert_close(compiled(x), model(x), rtol=1e-4, atol=1e-4)
    after_first = STATS.measurements
    again = dscompile(model, (x,), tune=True, trials=0, cache=False)
    assert STATS.measurements == after_first
    assert again.kernels[0].schedule == compiled.kernels[0].schedule
    assert (tmp_path / "decisions.jsonl").exists()
