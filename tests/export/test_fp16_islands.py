"""``half_upscaler``: FP16 generator with the flow estimator kept in float32 (the FP16 graph's islands)."""

from __future__ import annotations

import torch

from vggx.export.fp16 import Float32Island, half_upscaler


def test_flow_island_keeps_full_precision_weights(tiny_checkpoint):
    gen = tiny_checkpoint.generator
    up = half_upscaler(gen)
    assert isinstance(up.generator.flow, Float32Island)
    original = dict(gen.flow.named_parameters())
    for name, p in up.generator.flow.module.named_parameters():
        assert p.dtype == torch.float32
        assert torch.equal(p, original[name])  # not rounded through float16 on the way
    rest = [p for n, p in up.generator.named_parameters() if not n.startswith("flow.")]
    assert rest and all(p.dtype == torch.float16 for p in rest)
    assert next(gen.parameters()).dtype == torch.float32  # the original is untouched


def test_is_idempotent(tiny_checkpoint):
    """CudaUpscaler applies it to whatever generator it is given, including an already halved one."""
    once = half_upscaler(tiny_checkpoint.generator)
    twice = half_upscaler(once.generator)
    assert isinstance(twice.generator.flow, Float32Island)
    assert not isinstance(twice.generator.flow.module, Float32Island)
    for (n1, p1), (n2, p2) in zip(once.generator.named_parameters(), twice.generator.named_parameters(),
                                  strict=True):
        assert n1 == n2 and p1.dtype == p2.dtype and torch.equal(p1, p2)
