"""Real models through every system side by side, in one run.

    python benchmarks/run_models.py                      # 5 HF models (full) + the test zoo
    python benchmarks/run_models.py --tiny               # HF models at their tiny size
    python benchmarks/run_models.py --models bert gpt2 --systems eager onnxruntime

Each (model, system) runs in a subprocess of its own with a timeout: the process builds
the model, compiles it, runs it, then reports its peak resident memory
(``ru_maxrss``), the median latency (``compiler.timing.median_ms``, 2 threads), the
compile time and the largest absolute difference from eager's outputs. Eager runs first
for each model and leaves its outputs for the others to compare against; speedups are
over eager measured in the same run. A system that fails shows its error in its cell.

Writes ``benchmarks/results/models.md`` (also printed), ``models.json`` with the raw
numbers and ``speedup.png`` (``models_tiny.*``/``speedup_tiny.png`` with ``--tiny``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

HF_NAMES = ("resnet50", "mobilenet_v2", "bert", "gpt2", "vit")
SYSTEM_NAMES = ("eager", "inductor", "inductor_freezing", "onnxruntime", "tvm_relax",
                "dscompile_O2", "dscompile_O3")
THREADS = 2
# Every system, and the libraries under it, gets the same two threads.
WORKER_ENV = {"OMP_NUM_THREADS": str(THREADS), "MKL_NUM_THREADS": str(THREADS),
              "TVM_NUM_THREADS": str(THREADS),
              # compile times measured cold, not from an earlier run's cache
              "TORCHINDUCTOR_FORCE_DISABLE_CACHES": "1",
              "TOKENIZERS_PARALLELISM": "false", "TRANSFORMERS_VERBOSITY": "error"}


def load_model(name: str):
    """``resnet50`` (full HF), ``resnet50-tiny``, or ``zoo:mlp`` (examples/models.py)."""
    import torch

    if name.startswith("zoo:"):
        from examples.models import ZOO

        torch.manual_seed(0)  # the zoo factories draw weights and inputs unseeded
        return ZOO[name[4:]]()
    from examples.hf_models import HF_MODELS

    base, _, size = name.partition("-")
    return HF_MODELS[base](size or "full")


def load_call(name: str):
    """``(model, args, kwargs)``: ``load_model``'s example inputs as one call's arguments
    (a tuple is positional, a dict keyword)."""
    model, inputs = load_model(name)
    args, kwargs = (inputs, {}) if isinstance(inputs, tuple) else ((), inputs)
    return model, args, kwargs


def cpu_snapshot() -> tuple[float, float, float]:
    """(all cores' seconds, their busy seconds, this process's own CPU seconds)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    tick = os.sysconf("SC_CLK_TCK")
    own = resource.getrusage(resource.RUSAGE_SELF)
    total = sum(fields[:8]) / tick  # user..steal; guest time is already inside user
    return total, total - (fields[3] + fields[4]) / tick, own.ru_utime + own.ru_stime


def others_busy(before: tuple, after: tuple) -> float:
    """Share of all cores that other processes used between two snapshots."""
    total = max(after[0] - before[0], 1e-9)
    return max(0.0, (after[1] - before[1]) - (after[2] - before[2])) / total


def cpu_busy(seconds: float = 1.0) -> float:
    before = cpu_snapshot()
    time.sleep(seconds)
    return others_busy(before, cpu_snapshot())


def wait_for_quiet(max_wait: float, threshold: float = 0.25) -> float:
    """Wait (up to ``max_wait`` s) until other processes use under ``threshold`` of the
    cores: with 2 threads on 2 cores, every parallel op's barrier waits for a core that
    someone else holds, and ResNet-50 went from 30 ms to over 1 s. Returns the busy share
    measured last."""
    deadline = time.monotonic() + max_wait
    busy = cpu_busy()
    while busy > threshold and time.monotonic() < deadline:
        busy = cpu_busy(2.0)
    return busy


def max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


# --- the worker: one (model, system) in this process ---------------------------------

def worker(model_name: str, system: str, reps: int, max_seconds: float, ref: Path,
           quiet_wait: float) -> dict:
    import torch
    from systems import SYSTEMS, flat_inputs

    from compiler.timing import median_ms

    torch.set_num_threads(THREADS)
    result: dict = {"base_rss_mb": max_rss_mb()}
    model, args, kwargs = load_call(model_name)
    with torch.no_grad():
        start = time.perf_counter()
        built = SYSTEMS[system](model, args, kwargs)
        result["compile_s"] = time.perf_counter() - start
        outputs = built.run()
        start = time.perf_counter()
        built.run()
        once = time.perf_counter() - start
        # slow systems (unscheduled kernels) get fewer repetitions, never fewer than 3
        n = max(3, min(reps, int(max_seconds / max(once, 1e-6))))
        result["others_busy_before"] = wait_for_quiet(quiet_wait)
        result["load_before"] = os.getloadavg()[0]
        before = cpu_snapshot()
        result["latency_ms"] = median_ms(built.run, warmup=min(5, max(1, int(1 / once))),
                                         reps=n)
        result["others_busy"] = others_busy(before, cpu_snapshot())
        result["load_after"] = os.getloadavg()[0]
        result["reps"] = n
    result["peak_rss_mb"] = max_rss_mb()  # before anything below allocates
    result.update(kernels=built.kernels, flops=built.flops, info=built.info)
    if system == "eager":
        torch.save([t.detach().clone() for t in outputs], ref)
        result["flops_counted"] = count_flops(model, args, kwargs)
    elif ref.exists():
        result["max_abs_err"] = max_abs_error(torch.load(ref), outputs)
    result["num_inputs"] = len(flat_inputs(args, kwargs))
    return result


def count_flops(model, args, kwargs) -> int | None:
    """torch's own FLOP count (matmuls and convolutions), used where dscompile has none."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(*args, **kwargs)
        return int(counter.get_total_flops())
    except Exception:  # an informative number only
        return None


def max_abs_error(expected: list, got: list) -> float:
    if len(expected) != len(got):
        raise RuntimeError(f"{len(got)} outputs, eager has {len(expected)}")
    worst = 0.0
    for e, g in zip(expected, got):
        if tuple(e.shape) != tuple(g.shape):
            raise RuntimeError(f"output shape {tuple(g.shape)}, eager {tuple(e.shape)}")
        if e.numel():
            worst = max(worst, (e.double() - g.double()).abs().max().item())
    return worst


# --- the parent: one subprocess per cell ---------------------------------------------

def cached_compile(model_name: str, system: str) -> dict:
    """The second compile of a model in a new process: dscompile finds the first one's
    entry in its compile cache (``DSCOMPILE_CACHE_DIR``, set by the parent)."""
    import torch
    from systems import SYSTEMS

    torch.set_num_threads(THREADS)
    model, args, kwargs = load_call(model_name)
    with torch.no_grad():
        start = time.perf_counter()
        SYSTEMS[system](model, args, kwargs)
        return {"compile_s": time.perf_counter() - start}


def run_cell(model: str, system: str, opts, ref: Path) -> dict:
    """One (model, system) in a process of its own. dscompile compiles cold into a cache
    directory of the cell's own, then once more in a new process from that cache."""
    if not system.startswith("dscompile"):
        return run_worker(model, system, opts, ref)
    with tempfile.TemporaryDirectory(prefix="dscompile_cache_") as cache:
        cell = run_worker(model, system, opts, ref, env={"DSCOMPILE_CACHE_DIR": cache})
        if "error" not in cell:
            again = run_worker(model, system, opts, ref, env={"DSCOMPILE_CACHE_DIR": cache},
                               mode="--cached-compile")
            cell["cached_compile_s"] = again.get("compile_s")
    return cell


def run_worker(model: str, system: str, opts, ref: Path, env: dict | None = None,
               mode: str = "--worker") -> dict:
    cmd = [sys.executable, __file__, mode, model, system, "--reps", str(opts.reps),
           "--max-seconds", str(opts.max_seconds), "--ref", str(ref),
           "--quiet-wait", str(opts.quiet_wait)]
    env = {**os.environ, **WORKER_ENV, **(env or {})}
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, cwd=ROOT, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=opts.timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # its own group: compile workers go too
        out, err = proc.communicate()
        return {"error": f"timeout after {opts.timeout} s", "wall_s": opts.timeout}
    cell = {"wall_s": time.perf_counter() - start}
    lines = [ln for ln in out.splitlines() if ln.startswith("RESULT ")]
    if lines:
        cell.update(json.loads(lines[-1][len("RESULT "):]))
    else:
        tail = [ln for ln in err.strip().splitlines() if ln.strip()][-1:] or ["no output"]
        cell["error"] = f"worker exited {proc.returncode}: {tail[0]}"
    if "error" in cell:
        cell["stderr_tail"] = err[-3000:]
    return cell


def run_all(opts) -> dict:
    meta = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "threads": THREADS,
            "cpu": cpu_name(), "python": platform.python_version(),
            "load_start": os.getloadavg(), "versions": versions(),
            "sgemm_gflops": quiet_sgemm(opts.quiet_wait)}
    results: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="bench_models_") as tmp:
        for model in opts.models:
            ref = Path(tmp) / f"{model.replace(':', '_')}.pt"
            for system in ["eager", *[s for s in opts.systems if s != "eager"]]:
                cell = run_cell(model, system, opts, ref)
                results.append({"model": model, "system": system, **cell})
                print(progress_line(results[-1]), flush=True)
            save(opts, meta, results, final=False)  # an interrupted run keeps what it has
    # other work on the machine only lowers the rate: keep the better measurement
    meta["sgemm_gflops"] = max(meta["sgemm_gflops"], quiet_sgemm(opts.quiet_wait))
    return save(opts, meta, results, final=True)


def save(opts, meta: dict, results: list[dict], final: bool) -> dict:
    from render_models import write_outputs

    meta = {**meta, "load_end": os.getloadavg(), "complete": final}
    bases = [r["base_rss_mb"] for r in results if "base_rss_mb" in r]
    meta["base_rss_mb"] = min(bases) if bases else 0
    old = opts.out.with_suffix(".json")
    if opts.update and old.exists():  # keep the other models' cells from the earlier run
        if "kept" not in opts:
            opts.kept = [r for r in json.loads(old.read_text())["results"]
                         if r["model"] not in opts.models]
        meta["updated_models"] = opts.models
        results = opts.kept + results
    report = {"meta": meta, "results": results}
    write_outputs(report, opts.out, opts.plot, quiet=not final)
    return report


def quiet_sgemm(quiet_wait: float) -> float:
    from roofline import sgemm_gflops

    wait_for_quiet(quiet_wait)
    return sgemm_gflops(threads=THREADS)


def progress_line(r: dict) -> str:
    if "error" in r:
        return f"  {r['model']:<22} {r['system']:<18} ERROR {r['error'][:150]}"
    return (f"  {r['model']:<22} {r['system']:<18} {r['latency_ms']:9.2f} ms  compile "
            f"{r['compile_s']:6.1f} s  peak {r['peak_rss_mb']:7.0f} MB  "
            f"others busy {100 * r['others_busy']:.0f}%")


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} cores)"
    except OSError:
        pass
    return platform.processor()


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for pkg in ("torch", "apache-tvm", "transformers", "onnxruntime", "onnxscript", "onnx"):
        try:
            found[pkg] = version(pkg)
        except PackageNotFoundError:
            found[pkg] = None
    return found


def parse(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", help="resnet50, bert-tiny, zoo:mlp, ...")
    parser.add_argument("--systems", nargs="+", default=list(SYSTEM_NAMES),
                        choices=SYSTEM_NAMES)
    parser.add_argument("--tiny", action="store_true", help="HF models at their tiny size")
    parser.add_argument("--no-zoo", action="store_true", help="leave out examples/models.py")
    parser.add_argument("--reps", type=int, default=30, help="timed runs (after warm-up)")
    parser.add_argument("--max-seconds", type=float, default=20.0,
                        help="fewer reps (at least 3) where reps would take longer")
    parser.add_argument("--timeout", type=float, default=900.0, help="per (model, system)")
    parser.add_argument("--quiet-wait", type=float, default=120.0,
                        help="seconds to wait for other processes to leave the cores "
                             "before timing (the cell records how busy they were)")
    parser.add_argument("--update", action="store_true",
                        help="replace only these models' rows in an existing JSON")
    parser.add_argument("--out", help="output path prefix (default benchmarks/results/models)")
    parser.add_argument("--worker", nargs=2, metavar=("MODEL", "SYSTEM"), help=argparse.SUPPRESS)
    parser.add_argument("--cached-compile", nargs=2, metavar=("MODEL", "SYSTEM"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--ref", type=Path, help=argparse.SUPPRESS)
    opts = parser.parse_args(argv)
    if opts.worker or opts.cached_compile:
        return opts
    suffix = "_tiny" if opts.tiny else ""
    if not opts.models:
        from examples.models import ZOO

        opts.models = [f"{m}-tiny" if opts.tiny else m for m in HF_NAMES]
        opts.models += [] if opts.no_zoo else [f"zoo:{z}" for z in ZOO]
    results = ROOT / "benchmarks" / "results"
    opts.out = Path(opts.out) if opts.out else results / f"models{suffix}"
    opts.plot = opts.out.parent / f"speedup{suffix}.png"
    return opts


def main() -> None:
    opts = parse()
    if opts.worker or opts.cached_compile:
        model, system = opts.worker or opts.cached_compile
        try:
            result = worker(model, system, opts.reps, opts.max_seconds, opts.ref,
                            opts.quiet_wait) if opts.worker else cached_compile(model, system)
        except Exception as err:
            traceback.print_exc()
            result = {"error": f"{type(err).__name__}: {err}".strip()[:2000]}
        print("RESULT " + json.dumps(result, default=str), flush=True)
        return
    run_all(opts)


if __name__ == "__main__":
    main()
