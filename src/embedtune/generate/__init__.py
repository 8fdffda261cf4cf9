"""Question generation: an LLM writes the questions each chunk answers.

Two backends: any OpenAI-compatible chat server (`client.OpenAIBackend`) and an offline
SmolLM2-135M-Instruct on CPU (`local.LocalBackend`). Replies are cached as they arrive
(`cache.ResponseCache`), parsed tolerantly (`prompts.parse_questions`) and filtered with every
drop counted (`filters.QuestionFilter`, `filters.roundtrip_keep`). `run_generate` runs the stage.
"""

from embedtune.generate.report import DryRunReport, GenerateReport, summary_table
from embedtune.generate.runner import estimate_cost, resolve_backend, run_generate

__all__ = [
    "run_generate",
    "resolve_backend",
    "estimate_cost",
    "summary_table",
    "GenerateReport",
    "DryRunReport",
]
