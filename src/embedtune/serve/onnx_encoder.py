"""Run an ONNX export of a sentence-transformers model with ONNX Runtime, no PyTorch involved.

``embedtune export`` writes the whole model into one graph: the transformer, then the model's
own pooling, dense layers and normalisation (the modules listed in its ``modules.json``, as
sentence-transformers loaded them), from ``input_ids``, ``attention_mask`` (and
``token_type_ids`` where the tokenizer makes them) to ``sentence_embedding``. Beside it,
``onnx/encoder.json`` records what the graph cannot hold: the tokenizer's folder, the input
names, the maximum sequence length and the prompts. :class:`OnnxEncoder` tokenizes with the
model's own tokenizer, runs the graph and answers the part of sentence-transformers' interface
that serving uses (``encode``, ``tokenizer``, ``prompts``, ``max_seq_length``...)::

    >>> encoder = OnnxEncoder("runs/first/model-onnx", "onnx/model.onnx")   # doctest: +SKIP
    >>> encoder.encode(["What is R?"]).shape                               # doctest: +SKIP
    (1, 384)
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from embedtune.errors import InputError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

__all__ = ["OnnxEncoder", "EncoderSpec", "ENCODER_FILE", "OUTPUT_NAME"]

#: Written by the export beside the .onnx files, read by :class:`OnnxEncoder`.
ENCODER_FILE = "encoder.json"
#: The graph's one output: the finished sentence embedding (pooled, and normalised if the
#: model normalises).
OUTPUT_NAME = "sentence_embedding"


@dataclass
class EncoderSpec:
    """What serving an exported graph needs besides the graph: all read from the loaded model."""

    inputs: list[str]
    tokenizer: str  # folder, relative to the model folder, holding the tokenizer's files
    max_seq_length: int | None
    prompts: dict[str, str] = field(default_factory=dict)
    default_prompt_name: str | None = None
    truncate_dim: int | None = None

    def write(self, onnx_dir: Path) -> None:
        (onnx_dir / ENCODER_FILE).write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def read(cls, onnx_dir: Path) -> EncoderSpec:
        path = onnx_dir / ENCODER_FILE
        try:
            return cls(**json.loads(path.read_text()))
        except FileNotFoundError:
            raise InputError(
                f"no {ENCODER_FILE} in {onnx_dir}: its ONNX files were not written by this "
                f"version of `embedtune export`; export again with "
                f"`embedtune export MODEL --output {onnx_dir.parent} --fresh`"
            ) from None
        except (ValueError, TypeError) as e:
            raise InputError(
                f"{path} is unreadable ({e}); export again with `embedtune export MODEL "
                f"--output {onnx_dir.parent} --fresh`"
            ) from None


class OnnxEncoder:
    """An exported model run by ONNX Runtime on the CPU, encoding like ``SentenceTransformer``."""

    def __init__(self, model_dir: str | Path, onnx_path: str | Path) -> None:
        import onnxruntime as ort
        from transformers import AutoTokenizer

        self.model_dir = Path(model_dir)
        self.onnx_path = self.model_dir / onnx_path
        self.spec = EncoderSpec.read(self.onnx_path.parent)
        self.tokenizer: PreTrainedTokenizerBase = AutoTokenizer.from_pretrained(
            str(self.model_dir / self.spec.tokenizer)
        )
        self.prompts = dict(self.spec.prompts)
        self.default_prompt_name = self.spec.default_prompt_name
        self.max_seq_length = self.spec.max_seq_length
        self.session = ort.InferenceSession(str(self.onnx_path), providers=["CPUExecutionProvider"])
        width = self.session.get_outputs()[0].shape[-1]
        self._width = width if isinstance(width, int) else None
        graph_inputs = {i.name for i in self.session.get_inputs()}
        if graph_inputs != set(self.spec.inputs):
            raise InputError(
                f"{self.onnx_path} takes {sorted(graph_inputs)} but {ENCODER_FILE} names "
                f"{sorted(self.spec.inputs)}; export again with --fresh"
            )

    def __repr__(self) -> str:
        return f"OnnxEncoder({str(self.onnx_path)!r})"

    def get_backend(self) -> Literal["onnx"]:
        return "onnx"

    def get_embedding_dimension(self) -> int:
        if self._width is None:  # a graph that does not say: ask it
            self._width = int(self._run(["probe"]).shape[1])
        return min(self.spec.truncate_dim or self._width, self._width)

    def encode(
        self,
        sentences: str | Sequence[str],
        prompt_name: str | None = None,
        prompt: str | None = None,
        batch_size: int = 32,
        show_progress_bar: bool | None = None,
        convert_to_numpy: bool = True,
        normalize_embeddings: bool = False,
    ) -> np.ndarray:
        """Embed ``sentences`` as ``SentenceTransformer.encode`` would, as float32 numpy rows.

        Texts are batched longest first, as sentence-transformers does, so that a batch pads to
        texts of like length; the rows come back in the order given.
        """
        del show_progress_bar, convert_to_numpy  # always numpy, never a bar: serving's needs
        single = isinstance(sentences, str)
        texts = [sentences] if single else list(sentences)
        prefix = self._prompt(prompt_name, prompt)
        if prefix:
            texts = [prefix + t for t in texts]
        order = np.argsort([-len(t) for t in texts], kind="stable")
        out = np.empty((len(texts), self.get_embedding_dimension()), dtype=np.float32)
        step = max(1, batch_size)
        for start in range(0, len(texts), step):
            rows = order[start : start + step]
            out[rows] = self._run([texts[i] for i in rows])
        if normalize_embeddings:
            out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return out[0] if single else out

    def _prompt(self, prompt_name: str | None, prompt: str | None) -> str:
        if prompt is not None:
            return prompt
        name = prompt_name if prompt_name is not None else self.default_prompt_name
        if name is None:
            return ""
        if name not in self.prompts:
            raise InputError(
                f"prompt {name!r} not found; this model's prompts are: "
                f"{', '.join(sorted(self.prompts)) or 'none'}"
            )
        return self.prompts[name]

    def _run(self, texts: list[str]) -> np.ndarray:
        features: dict[str, Any] = self.tokenizer(
            texts,
            padding=True,
            truncation="longest_first",
            max_length=self.max_seq_length,
            return_tensors="np",
        )
        feed = {name: np.asarray(features[name], dtype=np.int64) for name in self.spec.inputs}
        (vectors,) = self.session.run([OUTPUT_NAME], feed)
        if self.spec.truncate_dim:
            vectors = vectors[:, : self.spec.truncate_dim]
        return vectors
