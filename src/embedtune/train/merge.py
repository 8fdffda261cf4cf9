"""Weight-space averaging with the base model (WiSE-FT, Wortsman et al., 2022).

The saved weights become ``(1 - share) * fine-tuned + share * base``: a fine-tuned model that
moved too far from a strong base on generated questions keeps part of what the base knew. The
base's weights are copied to the CPU before training (so a resumed run still averages with the
base, not with a checkpoint) and averaged in after LoRA adapters are merged.
"""

from __future__ import annotations

import torch
from sentence_transformers import SentenceTransformer

__all__ = ["base_snapshot", "merge_base"]


def base_snapshot(model: SentenceTransformer) -> dict[str, torch.Tensor]:
    """The model's floating-point weights, copied to the CPU."""
    return {
        name: tensor.detach().to("cpu", copy=True)
        for name, tensor in model.state_dict().items()
        if tensor.is_floating_point()
    }


def merge_base(model: SentenceTransformer, base: dict[str, torch.Tensor], share: float) -> int:
    """Average ``share`` of the ``base`` weights into ``model`` in place; returns how many
    tensors were averaged. A tensor the base lacks, or holds in another shape, is left as
    trained; tied weights (one storage under two names) are averaged once."""
    merged, seen = 0, set()
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            old = base.get(name)
            if old is None or old.shape != tensor.shape or not tensor.is_floating_point():
                continue
            if tensor.data_ptr() in seen:  # tied weights: one storage, averaged once
                continue
            seen.add(tensor.data_ptr())
            tensor.lerp_(old.to(tensor.device, tensor.dtype), share)
            merged += 1
    return merged
