"""The dscompile command line, driven as a user would: through a subprocess."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CNN = "examples/models.py:resnet_block"
CBR = "tests/compiler/cli_models.py:conv_bn_relu"


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "compiler.cli", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def test_inspect_shows_conv_bn_relu_as_one_row():
    out = json.loads(run("inspect", CBR, "--json").stdout)
    rows = out["kernels"]
    assert len(rows) == 1
    assert rows[0]["ops"] == "conv2d+relu"  # batch norm folded into the conv's weights
    assert rows[0]["flops"] > 0 and rows[0]["kernel"]
    text = run("inspect", CBR, "--quiet").stdout
    assert "conv2d+relu" in text and "total: 1 kernels" in text


def test_inspect_table_of_a_resnet_block():
    text = run("inspect", CNN, "--quiet").stdout
    assert "conv2d+add+relu" in text  # the residual add and relu fused into the conv
    assert "total: 9 kernels" in text
    assert "MFLOP" in text and "total:" in text


def test_inspect_profile_times_every_kernel_in_the_program():
    out = json.loads(run("inspect", CNN, "--profile", "--json").stdout)
    timed = [r for r in out["kernels"] if r["ms"] is not None]
    assert len(timed) == out["num_kernels"] == 9
    assert all(r["ms"] > 0 for r in timed)
    text = run("inspect", CNN, "--profile", "--quiet").stdout
    assert "GFLOP/s" in text.splitlines()[0]


def test_dump_writes_one_file_per_changing_pass(tmp_path):
    out = json.loads(run("dump", CNN, "--after-each-pass", str(tmp_path), "--json").stdout)
    changed = [p for p in out["passes"] if p["changed"]]
    files = sorted(f.name for f in tmp_path.iterdir())
    assert files[0] == "00_input.dsir"
    assert len(files) == len(changed) + 1
    assert any("fold_batch_norm" in f.lower() or "foldbatchnorm" in f.lower() for f in files)


def test_diff_of_two_dumps(tmp_path):
    run("dump", CNN, "--after-each-pass", str(tmp_path), "--quiet")
    files = sorted(tmp_path.iterdir())
    text = run("diff", str(files[0]), str(files[-1])).stdout
    assert "removed" in text and "batch_norm" in text
    assert run("diff", str(files[0]), str(files[0])).stdout.strip() == "no differences"


@pytest.mark.parametrize("fmt", ["dot", "svg", "png", "html"])
def test_graph_pictures(tmp_path, fmt):
    out = tmp_path / f"g.{fmt}"
    run("graph", CNN, "--format", fmt, "--out", str(out), "--quiet")
    assert out.stat().st_size > 200
    if fmt == "dot":
        assert "subgraph cluster_" in out.read_text()  # fused groups boxed
    if fmt == "html":
        assert "<svg" in out.read_text() and "conv2d" in out.read_text()


def test_plan_reports_arena_within_naive(tmp_path):
    png = tmp_path / "plan.png"
    out = json.loads(run("plan", CNN, "--json", "--png", str(png)).stdout)
    assert out["lower_bound_bytes"] <= out["arena_bytes"] <= out["naive_bytes"]
    assert png.stat().st_size > 1000
    program = out["program"]  # what the built program allocates: exactly the plan
    assert program["route"] == "arena"
    assert program["allocated_bytes"] == program["planned_bytes"] == out["arena_bytes"]
    assert out["order"]["captured_arena_bytes"] >= out["arena_bytes"]


def test_kernels_lists_sources():
    out = json.loads(run("kernels", CBR, "--json").stdout)
    assert len(out["kernels"]) == 1
    assert all(src for src in out["kernels"].values())


def test_saved_ir_is_a_model(tmp_path):
    run("dump", CBR, "--after-each-pass", str(tmp_path), "--quiet")
    first = sorted(tmp_path.iterdir())[0]
    out = json.loads(run("inspect", str(first), "--json", "--no-build").stdout)
    assert len(out["kernels"]) == 1


@pytest.mark.parametrize(("model", "message"), [
    ("nowhere.py:f", "no such file"),
    ("examples/models.py:nothing", "has no function 'nothing'"),
    ("tests/compiler/cli_models.py:raises", "the factory raised RuntimeError"),
    ("tests/compiler/cli_models.py:wrong_return", "must return (model, example_inputs)"),
    ("broken.dsir", "no such file"),
])
def test_model_errors_are_one_line_with_exit_2(model, message):
    proc = run("inspect", model, check=False)
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if not line.startswith("[")]
    assert len(errors) == 1 and message in errors[0]  # progress lines start with "[time]"


def test_malformed_dsir_is_one_line(tmp_path):
    bad = tmp_path / "bad.dsir"
    bad.write_text("graph(%x : f32[2]) {\n  %y : f32[2] = relu(%q)\n  return (%y)\n}\n")
    proc = run("inspect", str(bad), check=False)
    assert proc.returncode == 2 and "line 2, column 22" in proc.stderr
