"""The model benchmark's runner (``benchmarks/run_models.py``) end to end on the smallest
zoo model: every system's timed runs come in interleaved bursts, and the table reports
their median, the accuracy against eager and dscompile's cached compile."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_runner_times_each_system_in_interleaved_bursts(tmp_path):
    out = tmp_path / "models"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "run_models.py"), "--models", "zoo:mlp",
           "--systems", "eager", "dscompile_O2", "--reps", "6", "--rounds", "3",
           "--quiet-wait", "0", "--out", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["meta"]["complete"] and report["meta"]["rounds"] == 3
    cells = {r["system"]: r for r in report["results"]}
    assert set(cells) == {"eager", "dscompile_O2"}
    for cell in cells.values():
        assert "error" not in cell, cell.get("stderr_tail")
        assert cell["reps"] == 6 and len(cell["burst_ms"]) == 3  # 3 bursts of 2 runs
        assert min(cell["burst_ms"]) <= cell["latency_ms"] <= max(cell["burst_ms"])
        assert cell["peak_rss_mb"] >= cell["base_rss_mb"] > 0
    ours = cells["dscompile_O2"]
    assert ours["max_abs_err"] < 1e-5 and ours["kernels"] >= 1
    assert ours["cached_compile_s"] > 0
    table = out.with_suffix(".md").read_text()
    assert "| zoo:mlp |" in table and "dscompile_O2" in table

    # --update re-times one model and keeps the others' rows, saying when those ran
    cmd = [sys.executable, str(ROOT / "benchmarks" / "run_models.py"), "--models",
           "zoo:gpt_block", "--systems", "eager", "--reps", "3", "--rounds", "1",
           "--quiet-wait", "0", "--update", "--out", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    updated = json.loads(out.with_suffix(".json").read_text())
    assert sorted((r["model"], r["system"]) for r in updated["results"]) == [
        ("zoo:gpt_block", "eager"), ("zoo:mlp", "dscompile_O2"), ("zoo:mlp", "eager")]
    kept = [r for r in updated["results"] if r["model"] == "zoo:mlp"]
    assert all(r["run"]["started"] == report["meta"]["started"] for r in kept)
    assert (f"Re-run with `--update`: zoo:gpt_block; the other rows are from the run of "
            f"{report['meta']['started']}") in out.with_suffix(".md").read_text()


def test_a_row_kept_twice_keeps_the_run_that_measured_it():
    # update 1 re-ran resnet50 and kept bert (measured on 12-02); update 2 re-runs resnet50
    # again: bert is still from 12-02, at that run's sgemm, not from update 1
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from run_models import with_run

    first = {"started": "12-02", "sgemm_gflops": 174.0}
    update_1 = {"started": "12-06", "sgemm_gflops": 179.0, "updated_models": ["resnet50"],
                "earlier_run": first}  # the format before rows were stamped
    bert, resnet = {"model": "bert"}, {"model": "resnet50"}
    assert with_run(bert, update_1)["run"] == first
    assert with_run(resnet, update_1)["run"] == {"started": "12-06", "sgemm_gflops": 179.0}
    stamped = with_run(bert, update_1)
    assert with_run(stamped, {"started": "12-07", "sgemm_gflops": 183.0})["run"] == first
