"""The pass framework: records, instruments (timing, IR dumps, verification), user
passes in the pipeline, and the caller's graph left untouched."""

import numpy as np
import pytest

import ir
from compiler.pass_manager import (
    DumpIRInstrument,
    Instrument,
    Pass,
    PassContext,
    PassManager,
    PassResult,
    PassVerifyError,
    TimingInstrument,
    function_pass,
)
from compiler.passes import PASSES
from compiler.passes.dce import DeadCodeElimination
from compiler.passes.simplify import Simplify
from compiler.passes.testing import assert_round_trips, assert_same_numerics, graph_from_text
from compiler.pipelines import build_pipeline, optimize, run_named_passes

TEXT = """graph(%x : f32[2,8]) {
  %w : f32[16,8] = weight()
  %unused : f32[3] = weight()
  %one : f32[] = constant(value=1.0)
  %l : f32[2,16] = linear(%x, %w)
  %m : f32[2,16] = mul(%l, %one)
  %r : f32[2,16] = relu(%m)
  return (%r)
}"""


def make_graph():
    return graph_from_text(TEXT, {"w": np.ones((16, 8), "float32"),
                                  "unused": np.zeros(3, "float32")})


@function_pass
def nothing(graph) -> bool:
    """Changes nothing."""
    return False


@function_pass
def break_users(graph) -> bool:
    """A broken pass: edits an edge behind the Graph's back."""
    node = graph.node("r")
    node.inputs = (graph.inputs[0],)
    return True


def test_records_name_sizes_time_and_change():
    graph, records = PassManager([Simplify(), nothing, DeadCodeElimination()]).run(make_graph())
    assert [(r.name, r.nodes_before, r.nodes_after, r.modified) for r in records] == [
        ("simplify", 7, 5, True), ("nothing", 5, 5, False), ("dce", 5, 4, True)]
    assert all(r.seconds >= 0 for r in records)
    assert [n.op for n in graph.ops()] == ["linear", "relu"]


def test_the_callers_graph_is_not_changed():
    g = make_graph()
    text = str(g)
    optimize(g, opt_level=2, verify=True)
    assert str(g) == text and all("group" not in n.meta for n in g.nodes)


def test_dump_writes_input_and_each_changing_pass(tmp_path):
    dump = DumpIRInstrument(tmp_path / "ir")
    PassManager([Simplify(), nothing, DeadCodeElimination()], [dump]).run(make_graph())
    names = sorted(p.name for p in (tmp_path / "ir").iterdir())
    assert names == ["00_input.dsir", "01_simplify.dsir", "03_dce.dsir"]
    for path in (tmp_path / "ir").iterdir():
        ir.verify(ir.parse(path.read_text()))
    assert "mul" not in (tmp_path / "ir" / "01_simplify.dsir").read_text()


def test_dump_every_pass_when_asked(tmp_path):
    PassManager([nothing, nothing], [DumpIRInstrument(tmp_path, only_changed=False)]).run(
        make_graph())
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "00_input.dsir", "01_nothing.dsir", "02_nothing.dsir"]


def test_timing_instrument():
    timing = TimingInstrument()
    PassManager([Simplify(), DeadCodeElimination()], [timing]).run(make_graph())
    assert [name for name, _ in timing.times] == ["simplify", "dce"]
    assert "total" in timing.summary() and timing.total() >= 0


def test_verify_names_the_broken_pass_and_those_before_it():
    pm = PassManager([Simplify(), nothing, break_users, DeadCodeElimination()], verify=True)
    with pytest.raises(PassVerifyError) as err:
        pm.run(make_graph())
    message = str(err.value)
    assert "after pass 'break_users'" in message
    assert "passes run before it: simplify, nothing" in message
    assert "users list" in message
    assert err.value.pass_name == "break_users"


def test_verify_is_off_unless_asked_and_read_from_env(monkeypatch):
    monkeypatch.delenv("DSCOMPILE_VERIFY", raising=False)
    PassManager([break_users], verify=False).run(make_graph())  # nobody checks
    monkeypatch.setenv("DSCOMPILE_VERIFY", "1")
    with pytest.raises(PassVerifyError):
        PassManager([break_users]).run(make_graph())


def test_requires_and_ensures_hooks_run():
    calls = []

    class Checked(Pass):
        name = "checked"

        def requires(self, graph):
            calls.append("requires")

        def run(self, graph):
            calls.append("run")
            return PassResult(graph, False)

        def ensures(self, graph):
            calls.append("ensures")

    PassManager([Checked()]).run(make_graph())
    assert calls == ["requires", "run", "ensures"]


def test_a_function_is_not_a_pass():
    with pytest.raises(TypeError, match="function_pass"):
        PassManager([lambda g: False])


def test_context_instruments_and_hook_order():
    events = []

    class Spy(Instrument):
        def enter_pipeline(self, graph, passes):
            events.append("enter")

        def before_pass(self, index, pass_, graph):
            events.append(f"before {pass_.name}")

        def after_pass(self, index, pass_, graph, record):
            events.append(f"after {pass_.name}")

        def exit_pipeline(self, graph, records):
            events.append("exit")

    with PassContext([Spy()]):
        PassManager([nothing]).run(make_graph())
    PassManager([nothing]).run(make_graph())  # outside the context: no spy
    assert events == ["enter", "before nothing", "after nothing", "exit"]


def test_user_passes_run_before_fusion():
    assert [p.name for p in build_pipeline(0)] == []
    assert [p.name for p in build_pipeline(1, [nothing])] == [
        "simplify", "cse", "constant_fold", "fold_batch_norm", "nothing", "dce"]
    o2 = [p.name for p in build_pipeline(2, [nothing])]
    assert o2 == ["simplify", "cse", "constant_fold", "fold_batch_norm", "dce",
                  "merge_linear_chain", "merge_parallel_linear", "batch_linears", "nothing",
                  "simplify", "dce", "fuse"]
    assert [p.name for p in build_pipeline(3)] == [p.name for p in build_pipeline(2)]
    pm = PassManager(build_pipeline(2)).with_user_passes(nothing)
    assert [p.name for p in pm.passes][-2:] == ["nothing", "fuse"]
    with pytest.raises(ValueError):
        build_pipeline(4)


def test_every_level_keeps_numerics_and_round_trips():
    g = make_graph()
    for level in (0, 1, 2, 3):
        out, records = optimize(g, opt_level=level, verify=True)
        assert_round_trips(out)
        assert_same_numerics(g, out)
        assert len(records) == len(build_pipeline(level))
    assert any("group" in n.meta for n in out.nodes)
    o0, _ = optimize(g, opt_level=0)
    assert not any("group" in n.meta for n in o0.nodes)


def test_named_passes():
    graph, records = run_named_passes(make_graph(), ["simplify", "dce"], verify=True)
    assert [r.name for r in records] == ["simplify", "dce"]
    assert set(PASSES) >= {"simplify", "cse", "constant_fold", "fold_batch_norm", "dce",
                           "merge_linear_chain", "merge_parallel_linear", "batch_linears",
                           "fuse"}
    with pytest.raises(ValueError, match="unknown pass"):
        run_named_passes(make_graph(), ["nope"])
