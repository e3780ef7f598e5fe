"""HuggingFace transformers models as factories returning ``(model, example_inputs)``.

Every model is built from its config with random weights (nothing is downloaded), in eval
mode. ``size="full"`` is the published architecture at batch 1 (ResNet-50, MobileNetV2
1.0/224, BERT-base at sequence 128, GPT-2 small at sequence 128, ViT-base/16 at 224);
``size="tiny"`` keeps the structure with few layers and small widths, for tests.

Attention runs as ``attn_implementation="eager"`` (softmax(QK^T)V written out) in every
transformer, so all systems see the same ops; "sdpa" exports too, as one
``scaled_dot_product_attention`` op.

Text inputs are keyword arguments (a dict), as HuggingFace models are called.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

ATTN_IMPLEMENTATION = "eager"
SEQ_LEN = 128


def _seeded(seed: int = 0) -> None:
    torch.manual_seed(seed)


def resnet50(size: str = "full"):
    """ResNet-50 (``ResNetConfig()`` defaults) or a one-block-per-stage tiny ResNet."""
    from transformers import ResNetConfig, ResNetForImageClassification

    _seeded()
    if size == "tiny":
        config = ResNetConfig(depths=[1, 1, 1, 1], hidden_sizes=[16, 32, 64, 128],
                              embedding_size=16, num_labels=10)
        image = 32
    else:
        config = ResNetConfig()
        image = 224
    model = ResNetForImageClassification(config)
    return model.eval(), (torch.randn(1, 3, image, image),)


def mobilenet_v2(size: str = "full"):
    """MobileNetV2 1.0/224, or width 0.35 at 64x64."""
    from transformers import MobileNetV2Config, MobileNetV2ForImageClassification

    _seeded()
    if size == "tiny":
        config = MobileNetV2Config(depth_multiplier=0.35, image_size=64, num_labels=10)
        image = 64
    else:
        config = MobileNetV2Config()
        image = 224
    model = MobileNetV2ForImageClassification(config)
    _kaiming_convs(model)
    return model.eval(), (torch.randn(1, 3, image, image),)


def _kaiming_convs(model: torch.nn.Module) -> None:
    """Re-draw conv weights as Kaiming fan-in, which keeps activations near unit scale.
    HF's MobileNetV2 draws them at std 0.02 (and fan-out Kaiming is no better for the
    depthwise convs): activations shrink every block and the logits come out near 1e-22,
    so every output error is below any tolerance and timings risk denormals."""
    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")


def _text_inputs(vocab_size: int, seq_len: int) -> dict[str, torch.Tensor]:
    ids = torch.randint(0, vocab_size, (1, seq_len))
    return {"input_ids": ids, "attention_mask": torch.ones(1, seq_len, dtype=torch.long)}


def bert(size: str = "full"):
    """BERT-base (12 layers, hidden 768) or 2 layers of hidden 64, at sequence 128."""
    from transformers import BertConfig, BertModel

    _seeded()
    extra = {"attn_implementation": ATTN_IMPLEMENTATION}
    if size == "tiny":
        config = BertConfig(num_hidden_layers=2, hidden_size=64, num_attention_heads=4,
                            intermediate_size=256, vocab_size=1000, **extra)
    else:
        config = BertConfig(**extra)
    model = BertModel(config)
    return model.eval(), _text_inputs(config.vocab_size, SEQ_LEN)


def gpt2(size: str = "full"):
    """GPT-2 small (12 layers, 768) or 2 layers of 64, at sequence 128, no cache."""
    from transformers import GPT2Config, GPT2Model

    _seeded()
    extra = {"attn_implementation": ATTN_IMPLEMENTATION, "use_cache": False}
    if size == "tiny":
        config = GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=1000, bos_token_id=999,
                            eos_token_id=999, **extra)
    else:
        config = GPT2Config(**extra)
    model = GPT2Model(config)
    return model.eval(), _text_inputs(config.vocab_size, SEQ_LEN)


def vit(size: str = "full"):
    """ViT-base/16 at 224 (197 tokens) or 2 layers of 64 at 32x32 with 8x8 patches."""
    from transformers import ViTConfig, ViTModel

    _seeded()
    extra = {"attn_implementation": ATTN_IMPLEMENTATION}
    if size == "tiny":
        config = ViTConfig(num_hidden_layers=2, hidden_size=64, num_attention_heads=4,
                           intermediate_size=256, image_size=32, patch_size=8, **extra)
    else:
        config = ViTConfig(**extra)
    model = ViTModel(config)
    image = config.image_size
    return model.eval(), (torch.randn(1, 3, image, image),)


HF_MODELS: dict[str, Callable[..., tuple]] = {
    "resnet50": resnet50,
    "mobilenet_v2": mobilenet_v2,
    "bert": bert,
    "gpt2": gpt2,
    "vit": vit,
}
