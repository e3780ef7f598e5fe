"""Tables and the speedup chart for ``run_models.py``'s results.

    python benchmarks/render_models.py benchmarks/results/models.json

re-renders ``models.md`` and ``speedup.png`` from a saved JSON without running anything.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def model_flops(results: list[dict], model: str) -> tuple[int | None, str]:
    """dscompile's FLOP count for ``model`` (reused for all its systems), else torch's."""
    cells = {r["system"]: r for r in results if r["model"] == model}
    for system in ("dscompile_O2", "dscompile_O3"):
        if cells.get(system, {}).get("flops"):
            return cells[system]["flops"], "dscompile"
    counted = cells.get("eager", {}).get("flops_counted")
    return (counted, "torch FlopCounter") if counted else (None, "-")


NOISY = 0.25  # other processes' share of the cores while a cell was timed


def noisy_mark(r: dict) -> str:
    return "†" if r.get("others_busy", 0) > NOISY else ""


def speedup(results: list[dict], r: dict) -> float | None:
    eager = next((e for e in results if e["model"] == r["model"] and e["system"] == "eager"),
                 None)
    if "latency_ms" not in r or not eager or "latency_ms" not in eager:
        return None
    return eager["latency_ms"] / r["latency_ms"]


class Footnotes:
    """Errors as numbered notes; the same message on many cells shares one number."""

    def __init__(self):
        self.notes: list[str] = []

    def ref(self, error: str) -> str:
        first = " ".join(error.split())[:400] or "error"  # one line for the table
        if first not in self.notes:
            self.notes.append(first)
        return f"error [{self.notes.index(first) + 1}]"


def summary_table(report: dict, notes: Footnotes) -> list[str]:
    results = report["results"]
    models = list(dict.fromkeys(r["model"] for r in results))
    systems = list(dict.fromkeys(r["system"] for r in results))
    lines = ["| model | GFLOP | " + " | ".join(systems) + " |",
             "|---|---:|" + "---:|" * len(systems)]
    for model in models:
        flops, _ = model_flops(results, model)
        cells = []
        for system in systems:
            r = next((x for x in results if x["model"] == model and x["system"] == system), {})
            if "error" in r:
                cells.append(notes.ref(r["error"]))
            elif "latency_ms" in r:
                s = speedup(results, r)
                ratio = f" ({s:.2f}x)" if system != "eager" and s else ""
                cells.append(f"{r['latency_ms']:.2f}{noisy_mark(r)}{ratio}")
            else:
                cells.append("-")
        gflop = f"{flops / 1e9:.2f}" if flops else "-"
        lines.append(f"| {model} | {gflop} | " + " | ".join(cells) + " |")
    return lines


def detail_table(report: dict, model: str, notes: Footnotes) -> list[str]:
    results = report["results"]
    flops, source = model_flops(results, model)
    head = ["system", "median ms", "speedup", "compile s", "cached s", "peak RSS MB",
            "max abs err",
            "kernels", "GFLOP/s", "% sgemm", "reps", "others busy"]
    lines = [f"### {model}", "",
             f"FLOPs: {flops / 1e9:.3f} G ({source})" if flops else "FLOPs: unknown", "",
             "| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for r in (x for x in results if x["model"] == model):
        if "error" in r:
            lines.append(f"| {r['system']} | {notes.ref(r['error'])} |" + " |" * 10)
            continue
        s = speedup(results, r)
        rate = flops / (r["latency_ms"] * 1e-3) / 1e9 if flops else None
        peak = (r.get("run") or {}).get("sgemm_gflops") or report["meta"]["sgemm_gflops"]
        err = r.get("max_abs_err")
        row = [r["system"], f"{r['latency_ms']:.2f}{noisy_mark(r)}", f"{s:.2f}x" if s else "-",
               f"{r['compile_s']:.1f}",
               f"{r['cached_compile_s']:.1f}" if r.get("cached_compile_s") else "-",
               f"{r['peak_rss_mb']:.0f}",
               "ref" if r["system"] == "eager" else (f"{err:.1e}" if err is not None else "-"),
               str(r["kernels"]) if r.get("kernels") is not None else "-",
               f"{rate:.1f}" if rate else "-", f"{100 * rate / peak:.1f}" if rate else "-",
               str(r["reps"]), f"{100 * r.get('others_busy', 0):.0f}%"]
        lines.append("| " + " | ".join(row) + " |")
    return lines + [""]


def updated_note(report: dict) -> list[str]:
    """Which rows a ``--update`` run re-measured, and when the others were (each kept row
    carries its run: ``run_models.with_run``; its % sgemm is against that run's sgemm)."""
    meta = report["meta"]
    if not meta.get("updated_models"):
        return []
    runs = {}
    for r in report["results"]:
        run = r.get("run") or {}
        if run.get("started"):
            runs.setdefault(run["started"], run.get("sgemm_gflops"))
    when = ", ".join(f"{started}" + (f" (machine sgemm {sgemm:.0f} GFLOP/s)" if sgemm else "")
                     for started, sgemm in sorted(runs.items())) or "an earlier run"
    return [f"Re-run with `--update`: {', '.join(meta['updated_models'])}; the other rows "
            f"are from the run of {when}, their % sgemm against that run's sgemm.", ""]


def markdown(report: dict) -> str:
    meta = report["meta"]
    notes = Footnotes()
    versions = ", ".join(f"{k} {v}" for k, v in meta["versions"].items() if v)
    partial = [] if meta.get("complete", True) else [
        "**Partial**: the run was still going or was stopped; models below are the ones "
        "it finished.", ""]
    out = ["# Model benchmark", "", *partial,
           f"{meta['started']}; {meta['cpu']}; batch 1, fp32, {meta['threads']} threads; "
           f"{versions}.", "",
           f"Machine sgemm (torch.mm 2048^3, {meta['threads']} threads): "
           f"{meta['sgemm_gflops']:.0f} GFLOP/s (the better of start and end). A process "
           f"with torch imported and nothing else: {meta.get('base_rss_mb', 0):.0f} MB RSS. "
           "Load average (1 min) at start "
           f"{meta['load_start'][0]:.2f}, at end {meta['load_end'][0]:.2f}. Each cell waits "
           "for the cores to be free before timing and records how busy other processes "
           "kept them while it was timed (`others busy`); † marks latencies measured with "
           f"others above {NOISY:.0%}: with 2 threads on 2 cores every parallel op then "
           "waits for a core, and such numbers can be many times too slow.", "",
           *updated_note(report),
           "## Median latency in ms (speedup over eager, same run)", "",
           *summary_table(report, notes), "",
           "## Per model", "",
           "Peak RSS: the peak resident memory of a process that imported the system, "
           "built the torch model, compiled it and ran it (one process per cell). "
           "Compile s: the system's compile (and first call) from cold; cached s: dscompile "
           "compiling the same model again in a new process, from its compile cache. "
           "Max abs err: against eager's outputs, over all output tensors. GFLOP/s: the "
           "model's FLOPs over the median latency; % sgemm: of the machine's matmul rate.",
           ""]
    for model in dict.fromkeys(r["model"] for r in report["results"]):
        out += detail_table(report, model, notes)
    if notes.notes:
        out += ["## Errors", "", *[f"{i}. `{n}`" for i, n in enumerate(notes.notes, 1)], ""]
    return "\n".join(out)


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = report["results"]
    models = list(dict.fromkeys(r["model"] for r in results))
    systems = [s for s in dict.fromkeys(r["system"] for r in results) if s != "eager"]
    width = 0.8 / max(len(systems), 1)
    fig, ax = plt.subplots(figsize=(max(8, 1.3 * len(models)), 4.5))
    for i, system in enumerate(systems):
        xs, ys = [], []
        for j, model in enumerate(models):
            r = next((x for x in results if x["model"] == model and x["system"] == system), {})
            s = speedup(results, r) if r else None
            if s:
                xs.append(j + (i - (len(systems) - 1) / 2) * width)
                ys.append(s)
        ax.bar(xs, ys, width, label=system)
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(models)), models, rotation=30, ha="right")
    ax.set_ylabel("speedup over eager (x)")
    ax.set_title(f"batch 1, fp32, {report['meta']['threads']} threads "
                 "(missing bar: failed or not run)")
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_outputs(report: dict, prefix: Path, png: Path, quiet: bool = False) -> None:
    prefix.parent.mkdir(parents=True, exist_ok=True)
    text = markdown(report)
    prefix.with_suffix(".md").write_text(text + "\n")
    prefix.with_suffix(".json").write_text(json.dumps(report, indent=1, default=str) + "\n")
    plot(report, png)
    if quiet:
        return
    print(text)
    print(f"\nwrote {prefix.with_suffix('.md')}, {prefix.with_suffix('.json')}, {png}")


if __name__ == "__main__":
    source = Path(sys.argv[1])
    data = json.loads(source.read_text())
    name = source.stem.replace("models", "speedup")
    write_outputs(data, source.with_suffix(""), source.parent / f"{name}.png")
