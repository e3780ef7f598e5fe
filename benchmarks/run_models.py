"""Real models through every system side by side, in one run.

    python benchmarks/run_models.py                      # 5 HF models (full) + the test zoo
    python benchmarks/run_models.py --tiny               # HF models at their tiny size
    python benchmarks/run_models.py --models bert gpt2 --systems eager onnxruntime

Each (model, system) runs in a subprocess of its own with a timeout: the process builds
the model and compiles it (the systems of a model one after the other, each alone on the
cores), then times runs in bursts that the parent interleaves across the systems
(``--rounds``, the order rotating each round), so a slow spell of the shared host falls
on every system alike; then it reports its peak resident memory (``ru_maxrss``), the
median latency over all its runs (2 threads), the compile time and the largest absolute
difference from eager's outputs. Eager compiles first for each model and leaves its
outputs for the others to compare against; speedups are over eager measured in the same
run. A system that fails shows its error in its cell.

Writes ``benchmarks/results/models.md`` (also printed), ``models.json`` with the raw
numbers and ``speedup.png`` (``models_tiny.*``/``speedup_tiny.png`` with ``--tiny``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import queue
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
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

def worker(model_name: str, system: str, ref: Path) -> None:
    """Build and compile, then time bursts of runs when the parent says so (``TIME n`` on
    stdin, ``TIMES {...}`` on stdout) until ``DONE``; then report the rest (``RESULT``).
    The parent interleaves the bursts of every system of a model, so that the host's
    slow spells, which last minutes on this shared machine, fall on all of them alike."""
    import torch
    from systems import SYSTEMS, flat_inputs

    from compiler.timing import run_times

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
        if system == "eager":  # the reference, there before any other system starts
            torch.save([t.detach().clone() for t in outputs], ref)
        say("READY", {"once_s": once})
        # a run of over a second (TVM's unscheduled kernels) is its own warm-up
        warmup = 0 if once > 1.0 else min(3, max(1, int(0.2 / max(once, 1e-6))))
        for line in sys.stdin:
            command = line.split()
            if command[:1] != ["TIME"]:
                break
            before = cpu_snapshot()
            times = run_times(built.run, warmup=warmup, reps=int(command[1]))
            after = cpu_snapshot()
            say("TIMES", {"times": times, "cpu": [a - b for a, b in zip(after, before)],
                          "load": os.getloadavg()[0]})
    result["peak_rss_mb"] = max_rss_mb()  # before anything below allocates
    result.update(kernels=built.kernels, flops=built.flops, info=built.info)
    if system == "eager":
        result["flops_counted"] = count_flops(model, args, kwargs)
    elif ref.exists():
        result["max_abs_err"] = max_abs_error(torch.load(ref), outputs)
    result["num_inputs"] = len(flat_inputs(args, kwargs))
    say("RESULT", result)


def say(tag: str, data: dict) -> None:
    print(f"{tag} " + json.dumps(data, default=str), flush=True)


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


class Cell:
    """One (model, system) worker process, alive from its compile to its report so that
    its timing bursts can be interleaved with the other systems' (``worker``)."""

    def __init__(self, model: str, system: str, opts, ref: Path, env: dict):
        self.model, self.system = model, system
        self.data: dict = {"model": model, "system": system}
        self.times: list[float] = []
        self.bursts: list[dict] = []
        self.finished = False
        self.stderr = tempfile.TemporaryFile(mode="w+")
        cmd = [sys.executable, __file__, "--worker", model, system, "--ref", str(ref)]
        self.started = time.perf_counter()
        self.timeout = opts.timeout
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.stderr, text=True, env=env, cwd=ROOT,
                                     start_new_session=True)
        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        ready = self.expect("READY")
        if ready is not None:
            self.once = ready["once_s"]
            # slow systems (unscheduled kernels) get fewer runs, never fewer than 3
            self.wanted = max(3, min(opts.reps, int(opts.max_seconds / max(self.once, 1e-6))))

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    @property
    def failed(self) -> bool:
        return "error" in self.data

    def expect(self, tag: str) -> dict | None:
        """The next ``tag`` line's data; None once the worker failed (its error, or its
        RESULT in place of ``tag``, is in ``data``). The timeout counts from the call: a
        worker idles between its bursts while the others compile and run."""
        deadline = time.monotonic() + self.timeout
        while not self.failed:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                os.killpg(self.proc.pid, signal.SIGKILL)  # its own group: compile workers go
                self.data.update(error=f"timeout after {self.timeout} s",
                                 wall_s=self.timeout)
                return None
            if line is None:
                self.data["error"] = f"worker exited {self.proc.wait()}: {self._last_error()}"
                return None
            got, _, rest = line.partition(" ")
            if got == tag:
                return json.loads(rest)
            if got == "RESULT":
                self.data.update(json.loads(rest))
                return None
        return None

    def send(self, line: str) -> None:
        try:
            self.proc.stdin.write(line + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:  # it exited: ``expect`` reports how
            pass

    def burst(self, reps: int) -> None:
        self.send(f"TIME {reps}")
        done = self.expect("TIMES")
        if done is not None:
            self.times += done["times"]
            self.bursts.append(done)

    def finish(self) -> dict:
        """The cell's row: the worker's report and the latency over all its bursts."""
        if self.finished:
            return self.data
        self.finished = True
        if not self.failed:
            self.send("DONE")
            self.data.update(self.expect("RESULT") or {})
        self.proc.wait()
        self.data.setdefault("wall_s", time.perf_counter() - self.started)
        if self.failed:
            self.data["stderr_tail"] = self._tail(3000)
        elif self.times:
            self.data.update(
                latency_ms=statistics.median(self.times) * 1e3, reps=len(self.times),
                burst_ms=[statistics.median(b["times"]) * 1e3 for b in self.bursts],
                others_busy=others_busy((0, 0, 0), [sum(b["cpu"][i] for b in self.bursts)
                                                    for i in range(3)]),
                load_after=self.bursts[-1]["load"])
        return self.data

    def _tail(self, chars: int) -> str:
        self.stderr.seek(0)
        return self.stderr.read()[-chars:]

    def _last_error(self) -> str:
        return ([ln for ln in self._tail(3000).splitlines() if ln.strip()][-1:]
                or ["no output"])[0]


def time_model(model: str, systems: list[str], opts, ref: Path,
               envs: dict[str, dict]) -> list[dict]:
    """Every system's cell for one model. The systems compile one after the other (each
    alone on the cores), then their timing runs in ``opts.rounds`` rounds, one burst of
    each system a round, the order rotating, so that a slow spell of the shared host falls
    on every system alike rather than on whichever one it happened to be running."""
    cells: list[Cell] = []
    for system in systems:
        cell = Cell(model, system, opts, ref, envs[system])
        cells.append(cell)
        if cell.failed:
            print(progress_line(cell.finish()), flush=True)
    timed = [c for c in cells if not c.failed]
    wait_for_quiet(opts.quiet_wait)
    for round_ in range(opts.rounds):
        shift = round_ % max(1, len(timed))
        for cell in timed[shift:] + timed[:shift]:
            left = cell.wanted - len(cell.times)
            if left > 0 and not cell.failed:
                cell.burst(min(left, -(-cell.wanted // opts.rounds)))
                time.sleep(0.2)  # ONNX Runtime's threads spin a while after a run
    for cell in timed:
        print(progress_line(cell.finish()), flush=True)
    return [cell.data for cell in cells]


def cached_compile_s(model: str, system: str, opts, ref: Path, env: dict) -> float | None:
    """dscompile's compile time in a new process from the cold compile's cache entry."""
    cmd = [sys.executable, __file__, "--cached-compile", model, system, "--ref", str(ref)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT,
                              timeout=opts.timeout)
    except subprocess.TimeoutExpired:
        return None
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")]
    return json.loads(lines[-1][len("RESULT "):]).get("compile_s") if lines else None


def run_all(opts) -> dict:
    meta = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "threads": THREADS,
            "cpu": cpu_name(), "python": platform.python_version(),
            "load_start": os.getloadavg(), "versions": versions(), "rounds": opts.rounds,
            "sgemm_gflops": quiet_sgemm(opts.quiet_wait)}
    results: list[dict] = []
    systems = ["eager", *[s for s in opts.systems if s != "eager"]]
    with tempfile.TemporaryDirectory(prefix="bench_models_") as tmp:
        for model in opts.models:
            ref = Path(tmp) / f"{model.replace(':', '_')}.pt"
            # dscompile compiles cold into a cache directory of the cell's own, then
            # once more, in a new process, from that cache
            caches = {s: tempfile.mkdtemp(prefix="dscompile_cache_", dir=tmp)
                      for s in systems if s.startswith("dscompile")}
            envs = {s: {**os.environ, **WORKER_ENV,
                        **({"DSCOMPILE_CACHE_DIR": caches[s]} if s in caches else {})}
                    for s in systems}
            rows = time_model(model, systems, opts, ref, envs)
            for row in rows:
                if row["system"] in caches and "error" not in row:
                    row["cached_compile_s"] = cached_compile_s(model, row["system"], opts,
                                                               ref, envs[row["system"]])
            results += rows
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
            earlier = json.loads(old.read_text())
            opts.kept = [with_run(r, earlier["meta"]) for r in earlier["results"]
                         if r["model"] not in opts.models]
        meta["updated_models"] = opts.models
        results = opts.kept + results
    report = {"meta": meta, "results": results}
    write_outputs(report, opts.out, opts.plot, quiet=not final)
    return report


def with_run(row: dict, meta: dict) -> dict:
    """A row kept by ``--update``, stamped with the run that measured it (``started``,
    ``sgemm_gflops``): its own stamp from an earlier update, else the run of ``meta``, or
    the run that run had itself kept the row from (``meta["earlier_run"]``, the format
    before rows were stamped)."""
    if "run" in row:
        return row
    if meta.get("updated_models") and row["model"] not in meta["updated_models"] \
            and meta.get("earlier_run"):
        return {**row, "run": meta["earlier_run"]}
    return {**row, "run": {k: meta.get(k) for k in ("started", "sgemm_gflops")}}


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
    parser.add_argument("--rounds", type=int, default=5,
                        help="the timed runs come in this many bursts per system, "
                             "interleaved with the other systems' bursts")
    parser.add_argument("--max-seconds", type=float, default=20.0,
                        help="fewer reps (at least 3) where reps would take longer")
    parser.add_argument("--timeout", type=float, default=900.0,
                        help="seconds a (model, system) may take to compile, and to run "
                             "each burst")
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
            if opts.worker:
                worker(model, system, opts.ref)
            else:
                say("RESULT", cached_compile(model, system))
        except Exception as err:
            traceback.print_exc()
            say("RESULT", {"error": f"{type(err).__name__}: {err}".strip()[:2000]})
        return
    run_all(opts)


if __name__ == "__main__":
    main()
