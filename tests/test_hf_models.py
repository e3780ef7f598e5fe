"""HuggingFace transformers models, tiny size, compiled by dscompile against eager.

transformers 5 has no fx tracer of its own, so these exercise capture through
torch.export. Full-size models are a benchmark (``benchmarks/run_models.py``), not tests.
"""

from __future__ import annotations

import pytest
import torch
from torch.utils import _pytree as pytree

pytest.importorskip("transformers")

from compiler import dscompile  # noqa: E402
from examples.hf_models import HF_MODELS  # noqa: E402

RTOL, ATOL = 1e-4, 1e-5

# All five compile in 5-15 s each at tiny size on 2 cores (about 45 s for the file), so
# all are in the default run; a model that grows past 20 s gets @pytest.mark.slow, but
# tiny BERT and tiny ResNet stay in CI.
CASES = ["bert", "resnet50", "mobilenet_v2", "gpt2", "vit"]


def call(module, inputs):
    if isinstance(inputs, dict):
        return module(**inputs)
    return module(*inputs)


@pytest.mark.parametrize("name", CASES)
def test_tiny_model_matches_eager(name, record_property):
    model, inputs = HF_MODELS[name]("tiny")
    with torch.no_grad():
        expected = call(model, inputs)
        compiled = dscompile(model, inputs, check="off")
        got = call(compiled, inputs)

    assert type(got) is type(expected), "the compiled module returns the model's own output"
    got_leaves, got_spec = pytree.tree_flatten(got)
    want_leaves, want_spec = pytree.tree_flatten(expected)
    assert got_spec == want_spec
    error = max((g - w).abs().max().item() for g, w in zip(got_leaves, want_leaves))
    record_property("max_abs_err", error)
    print(f"{name} (tiny): {compiled.num_kernels} kernels, max abs err {error:.2e}")
    torch.testing.assert_close(got, expected, rtol=RTOL, atol=ATOL)
