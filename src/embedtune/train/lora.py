"""LoRA adapters: trained alone while the model's own weights stay frozen, merged before saving.

peft is an optional dependency (``pip install -e '.[lora]'`` in a clone), imported only when
``train.lora`` is set. peft's ``inject_adapter_in_model`` rather than ``model.add_adapter``:
transformers 5.24's adapter integration demands peft >= 0.22, newer than PyPI offers (0.21.2).
The merged model loads without peft.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import load_file

from embedtune.errors import ConfigError, TrainingError

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

__all__ = ["add_lora", "merge_lora", "lora_trainer_class", "require_peft"]

#: The attention projections adapters go on, by the names model families give them.
_TARGETS = {"query", "key", "value", "q_proj", "k_proj", "v_proj", "q", "k", "v", "q_lin", "k_lin", "v_lin"}  # fmt: skip


def require_peft() -> None:
    """Raise a :class:`ConfigError` that says how to install peft, where it is not installed."""
    try:
        import peft  # noqa: F401  (optional dependency, only checked for)
    except ImportError:
        raise ConfigError(
            "train.lora needs peft, which is not installed; run `pip install 'peft~=0.21'` (in a clone: `pip install -e '.[lora]'`)"
        ) from None


def add_lora(model: SentenceTransformer, rank: int) -> None:
    """Inject LoRA layers of rank ``rank`` into the transformer and train only them."""
    require_peft()
    from peft import LoraConfig, inject_adapter_in_model

    hf = model.transformers_model
    if hf is None:
        raise TrainingError("LoRA needs a model whose first module is a transformers model")
    targets = sorted(
        {
            name.rsplit(".", 1)[-1]
            for name, module in hf.named_modules()
            if isinstance(module, torch.nn.Linear) and name.rsplit(".", 1)[-1] in _TARGETS
        }
    )
    if not targets:
        raise TrainingError("found no attention projections to put LoRA adapters on")
    config = LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.1, target_modules=targets)
    try:
        inject_adapter_in_model(config, hf)
    except ValueError as exc:
        raise TrainingError(f"cannot add LoRA adapters to this model: {exc}") from None
    for name, param in hf.named_parameters():
        param.requires_grad = "lora_" in name


def merge_lora(model: SentenceTransformer) -> None:
    """Fold the LoRA weights into the base layers so the saved model needs no peft to load."""
    from peft.tuners.lora import LoraLayer  # optional dependency, installed with train.lora

    hf = model.transformers_model
    for name, module in list(hf.named_modules()):
        if isinstance(module, LoraLayer):
            module.merge()
            parent_name, _, child = name.rpartition(".")
            parent = hf.get_submodule(parent_name) if parent_name else hf
            setattr(parent, child, module.get_base_layer())
    for param in hf.parameters():
        param.requires_grad = True


def lora_trainer_class(base: type) -> type:
    """``base`` (sentence-transformers' trainer) loading checkpoints of a model with LoRA layers."""

    class LoraTrainer(base):
        """Loads checkpoints (best model, resume) of a model with injected LoRA layers.

        sentence-transformers rebuilds a fresh model from the checkpoint and copies its state,
        which drops the LoRA weights; their names in the checkpoint match the in-memory model
        exactly, so load them directly.
        """

        def _load_from_checkpoint(self, checkpoint_path: str, *args: Any, **kwargs: Any) -> None:
            state = load_file(str(Path(checkpoint_path) / "model.safetensors"))
            hf = self.model.transformers_model
            missing, unexpected = hf.load_state_dict(state, strict=False)
            lost = [k for k in missing if "lora_" in k] + list(unexpected)
            if lost:
                raise TrainingError(
                    f"{checkpoint_path} does not match the LoRA model being trained (e.g. "
                    f"{lost[0]!r}); run again with --fresh"
                )

    return LoraTrainer
