"""Random-graph differential testing: random models through the real capture, passes and
TVM backend, compared with eager torch. Each must be ok or cleanly refused (an error that
names the op); a mismatch or a crash is shrunk to a minimal spec, saved under
``regressions/`` and shown in the failure. ``benchmarks/fuzz.py`` runs thousands.
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fuzz_oracle import (  # noqa: E402
    REGRESSIONS,
    format_spec,
    run_case,
    save_regression,
    shrink_failure,
)
from graph_gen import build_model, generate, outputs_of  # noqa: E402

SEEDS_O2 = range(50)
SEEDS_O0_O1 = range(1000, 1006)
SHRINK_BUDGET_S = 90  # in CI a failure still reports a small spec, within bounded time


def check(seed: int, opt_level: int) -> None:
    spec = generate(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        outcome = run_case(spec, opt_level)
        if not outcome.failed:
            assert outcome.kind in ("ok", "refused"), outcome
            return
        small, small_outcome = shrink_failure(spec, outcome, opt_level, SHRINK_BUDGET_S)
    path = save_regression(small, small_outcome, opt_level, seed)
    pytest.fail(f"seed {seed}, opt_level {opt_level}: {outcome.kind}\n{outcome.detail}\n"
                f"shrunk to {len(small)} nodes, saved as {path}:\n{format_spec(small)}\n"
                f"{small_outcome}", pytrace=False)


@pytest.mark.parametrize("seed", SEEDS_O2)
def test_random_graph_o2(seed: int) -> None:
    check(seed, 2)


@pytest.mark.parametrize("opt_level", [0, 1])
@pytest.mark.parametrize("seed", SEEDS_O0_O1)
def test_random_graph_o0_o1(seed: int, opt_level: int) -> None:
    check(seed, opt_level)


def saved_regressions() -> list[Path]:
    return sorted(REGRESSIONS.glob("*.json"))


@pytest.mark.parametrize("path", saved_regressions(), ids=lambda p: p.stem)
def test_regressions(path: Path) -> None:
    """Every shrunk failure ever saved stays fixed."""
    record = json.loads(path.read_text())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        outcome = run_case(record["spec"], record["opt_level"])
    allowed = ("ok",) if record["outcome"] == "refused" else ("ok", "refused")  # a wrong
    # refusal (of an op we support) stays fixed only if it now compiles
    assert outcome.kind in allowed, f"{path.name}\n{format_spec(record['spec'])}\n{outcome}"


def test_generator_is_deterministic_and_valid() -> None:
    """Same seed, same spec and same numbers; every spec is JSON and builds in eager."""
    import torch

    for seed in range(20):
        spec = generate(seed)
        assert json.loads(json.dumps(spec)) == spec == generate(seed)
        model, inputs = build_model(spec)
        again, inputs_again = build_model(spec)
        with torch.no_grad():
            for a, b in zip(model(*inputs), again(*inputs_again)):
                assert torch.equal(a, b)
        assert outputs_of(spec)


def test_generator_covers_the_fusion_patterns() -> None:
    """Across the CI seeds the generator emits every op kind and the fusion patterns."""
    ops: set[str] = set()
    patterns = {"conv_bn": False, "linear_chain": False, "shared_input_linears": False,
                "shared_weight": False, "residual_add": False}
    for seed in SEEDS_O2:
        spec = generate(seed)
        readers: dict[int, list[dict]] = {}
        for node in spec:
            ops.add(node["op"])
            for a in node.get("args", ()):
                readers.setdefault(a, []).append(node)
        for i, node in enumerate(spec):
            users = readers.get(i, [])
            if node["op"] == "conv2d" and any(u["op"] == "batch_norm" for u in users):
                patterns["conv_bn"] = True
            if node["op"] == "linear" and any(u["op"] == "linear" for u in users):
                patterns["linear_chain"] = True
            if sum(u["op"] == "linear" for u in users) >= 2:
                patterns["shared_input_linears"] = True
            if "share" in node:
                patterns["shared_weight"] = True
            if node["op"] == "binary" and node["fn"] == "add" and len(node["args"]) == 2 and \
                    spec[node["args"][0]]["op"] in ("linear", "conv2d", "batch_norm") + \
                    ("input",):
                patterns["residual_add"] = True
    assert all(patterns.values()), patterns
    expected = {"input", "linear", "conv2d", "batch_norm", "unary", "binary", "reshape",
                "concat", "split", "softmax", "layer_norm", "pool", "where", "embedding"}
    assert expected <= ops, expected - ops
