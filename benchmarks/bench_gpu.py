"""GPU latency per model: eager PyTorch, torch.compile (inductor) and dscompile, on the
machine's CUDA or ROCm GPU, in one run.

    python benchmarks/bench_gpu.py                          # the test zoo + tiny HF models
    python benchmarks/bench_gpu.py --models zoo:mlp resnet50 --dtype bfloat16
    python benchmarks/bench_gpu.py --dry-run                # no GPU: compile for it only

The target is the GPU torch sees (``sm_XY`` from its compute capability, ``gfxNNN`` from
its ``gcnArchName``), or ``--target``. Latency is the median of ``--reps`` runs after
warm-up, each ending in ``torch.cuda.synchronize()``; compile time is the first call of
``torch.compile`` and the whole ``dscompile``. The error column is the largest absolute
difference from eager in the same dtype. With ``--dtype bfloat16``/``float16`` eager and
torch.compile run the model cast to that dtype; dscompile compiles with
``dtype=...`` (float32 in and out, weights and compute in the low precision).

``--dry-run`` (for a machine without a GPU) compiles every model with dscompile for the
target and reports kernels and compile time, with no timing.

Writes ``benchmarks/results/gpu.md`` (printed too) and ``gpu.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

DEFAULT_MODELS = ("zoo:mlp", "zoo:resnet_block", "zoo:mobilenet_block", "zoo:transformer_block",
                  "zoo:gpt_block", "zoo:sdpa_block", "resnet50-tiny", "bert-tiny", "gpt2-tiny")
SYSTEMS = ("eager", "torch.compile", "dscompile")


def gpu_target() -> dict | None:
    """The target of the GPU torch sees, or None without one."""
    import torch

    if not torch.cuda.is_available():
        return None
    if torch.version.hip is not None:
        arch = torch.cuda.get_device_properties(0).gcnArchName.split(":")[0]
        return {"kind": "rocm", "mcpu": arch}
    major, minor = torch.cuda.get_device_capability(0)
    return {"kind": "cuda", "arch": f"sm_{major}{minor}"}


def gpu_ms(fn, reps: int) -> float:
    import torch

    from compiler.timing import median_ms

    def synced():
        fn()
        torch.cuda.synchronize()

    return median_ms(synced, warmup=5, reps=reps)


def max_abs_error(expected: list, got: list) -> float:
    return max((float((e.float() - g.float()).abs().max()) for e, g in zip(expected, got)),
               default=0.0)


def bench_model(name: str, target: dict, opts) -> list[dict]:
    import torch
    from run_models import load_model
    from systems import tensor_leaves

    from compiler import dscompile
    from compiler.api import split_example_inputs

    model, inputs = load_model(name)
    args, kwargs = split_example_inputs(inputs, None)
    start = time.perf_counter()
    compiled = dscompile(model, args, target=target, example_kwargs=kwargs, check="off",
                         dtype=None if opts.dtype == "float32" else opts.dtype, cache=False)
    row = {"model": name, "system": "dscompile", "compile_s": time.perf_counter() - start,
           "kernels": compiled.num_kernels,
           "distinct_kernels": len(compiled.device_code.kernel_names())}
    if opts.dry_run:
        return [row]
    low = getattr(torch, opts.dtype)
    on_gpu = lambda t: t.cuda() if isinstance(t, torch.Tensor) else t  # noqa: E731
    g_args = tuple(on_gpu(a) for a in args)
    g_kwargs = {k: on_gpu(v) for k, v in kwargs.items()}
    cast = lambda t: t.to(low) if isinstance(t, torch.Tensor) and t.is_floating_point() \
        else t  # noqa: E731
    e_model = model.cuda().to(low)
    e_args, e_kwargs = tuple(cast(a) for a in g_args), {k: cast(v) for k, v in g_kwargs.items()}
    rows = [row]
    with torch.no_grad():
        reference = tensor_leaves(e_model(*e_args, **e_kwargs))
        rows.insert(0, {"model": name, "system": "eager", "compile_s": 0.0,
                        "ms": gpu_ms(lambda: e_model(*e_args, **e_kwargs), opts.reps),
                        "max_abs_err": 0.0})
        inductor = torch.compile(e_model)
        start = time.perf_counter()
        inductor(*e_args, **e_kwargs)
        rows.insert(1, {"model": name, "system": "torch.compile",
                        "compile_s": time.perf_counter() - start,
                        "ms": gpu_ms(lambda: inductor(*e_args, **e_kwargs), opts.reps),
                        "max_abs_err": max_abs_error(
                            reference, tensor_leaves(inductor(*e_args, **e_kwargs)))})
        row["ms"] = gpu_ms(lambda: compiled(*g_args, **g_kwargs), opts.reps)
        row["max_abs_err"] = max_abs_error(reference,
                                           tensor_leaves(compiled(*g_args, **g_kwargs)))
    return rows


def _fmt(value, spec: str) -> str:
    return "" if value is None else format(value, spec)


def table(rows: list[dict], target: dict, opts) -> str:
    eager = {r["model"]: r.get("ms") for r in rows if r["system"] == "eager"}
    lines = [f"GPU benchmark: target {json.dumps(target)}, dtype {opts.dtype}"
             + (" (dry run: compiled only)" if opts.dry_run else ""), "",
             "| model | system | latency ms | speedup | compile s | kernels | max abs err |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['model']} | {r['system']} | {r['error']} | | | | |")
            continue
        ms, base = r.get("ms"), eager.get(r["model"])
        cells = [r["model"], r["system"], _fmt(ms, ".3f"),
                 f"{base / ms:.2f}x" if ms and base else "", _fmt(r.get("compile_s"), ".1f"),
                 str(r.get("kernels", "")), _fmt(r.get("max_abs_err"), ".3g")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS))
    p.add_argument("--dtype", default="float32", choices=("float32", "float16", "bfloat16"))
    p.add_argument("--target", help='a target dict as JSON, e.g. \'{"kind": "cuda", '
                                    '"arch": "sm_90"}\' (default: the GPU present)')
    p.add_argument("--reps", type=int, default=100)
    p.add_argument("--dry-run", action="store_true", help="compile only (no GPU needed)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "gpu"))
    return p.parse_args(argv)


def main(argv=None) -> int:
    opts = parse(argv)
    target = json.loads(opts.target) if opts.target else gpu_target()
    if target is None and opts.dry_run:
        target = {"kind": "cuda", "arch": "sm_80"}
    if target is None:
        print("no CUDA or ROCm device is present: nothing to time (--dry-run compiles for "
              "a GPU without one)", file=sys.stderr)
        return 2
    rows: list[dict] = []
    for name in opts.models:
        try:
            rows += bench_model(name, target, opts)
        except Exception as e:  # one model's failure is its row, the run goes on
            traceback.print_exc()
            rows.append({"model": name, "system": "all", "error": str(e).splitlines()[0]})
        print(rows[-1], flush=True)
    text = table(rows, target, opts)
    print(text)
    out = Path(opts.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text(text + "\n")
    out.with_suffix(".json").write_text(json.dumps({"target": target, "dtype": opts.dtype,
                                                    "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
