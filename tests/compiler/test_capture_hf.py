"""Capture of HuggingFace transformers models built from tiny configs (random weights,
nothing downloaded): they go through torch.export, match eager through the reference
interpreter, and ``out_spec`` rebuilds the model's own ``ModelOutput`` class."""

from __future__ import annotations

import pytest
import torch

import ir
from compiler.capture import capture
from compiler.capture.testing import assert_matches_eager, op_histogram

T = pytest.importorskip("transformers")


def bert():
    config = T.BertConfig(num_hidden_layers=2, hidden_size=64, num_attention_heads=4,
                          intermediate_size=128, vocab_size=100)
    mask = torch.ones(2, 8, dtype=torch.long)
    mask[1, 5:] = 0  # padding in the second sequence: the mask input matters
    return T.BertModel(config), {"input_ids": torch.randint(0, 100, (2, 8)),
                                 "attention_mask": mask}


def gpt2():
    config = T.GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=100, n_positions=64,
                          use_cache=False, bos_token_id=0, eos_token_id=0)
    return T.GPT2LMHeadModel(config), {"input_ids": torch.randint(0, 100, (2, 8))}


def vit():
    config = T.ViTConfig(num_hidden_layers=2, hidden_size=64, num_attention_heads=4,
                         intermediate_size=128, image_size=32, patch_size=8)
    return T.ViTModel(config), {"pixel_values": torch.randn(1, 3, 32, 32)}


def resnet():
    config = T.ResNetConfig(embedding_size=16, hidden_sizes=[16, 32], depths=[1, 1])
    return T.ResNetModel(config), {"pixel_values": torch.randn(1, 3, 32, 32)}


def mobilenet_v2():
    config = T.MobileNetV2Config(image_size=32, depth_multiplier=0.35)
    return T.MobileNetV2Model(config), {"pixel_values": torch.randn(1, 3, 32, 32)}


MODELS = {"bert": bert, "gpt2": gpt2, "vit": vit, "resnet": resnet,
          "mobilenet_v2": mobilenet_v2}
ANCHORS = {"bert": {"linear": 13, "sdpa": 2}, "gpt2": {"linear": 9, "sdpa": 2},
           "vit": {"conv2d": 1, "linear": 13, "sdpa": 2},
           "resnet": {"conv2d": 8, "batch_norm": 8}, "mobilenet_v2": {"conv2d": 52}}


SLOW = {"mobilenet_v2"}  # 52 convolutions: about 10 s of export and decomposition


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n
                                  for n in MODELS])
def test_hf_model_captures_and_matches_eager(name: str) -> None:
    model, kwargs = MODELS[name]()
    model.eval()
    result = capture(model, kwargs)
    assert result.method == "export"  # HF forward() is not symbolically traceable
    ir.verify(result.graph)
    assert ir.parse(str(result.graph)) == result.graph
    assert [n.name for n in result.graph.inputs] == list(kwargs)
    counts = op_histogram(result.graph)
    for op, n in ANCHORS[name].items():
        assert counts[op] == n, counts
    assert all(n.source and n.source.startswith("transformers/") for n in result.graph.ops())
    assert_matches_eager(model, result, (), kwargs)  # also checks the ModelOutput class
