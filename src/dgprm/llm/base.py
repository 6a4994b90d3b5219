"""Types shared by every LLM backend: the request, the completion, the errors."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True)
class ChatRequest:
    """One chat call: messages, an optional JSON schema and sampling parameters.

    ``template`` names the prompt template and its version hash; it is part of
    the cache key, so editing a template never serves stale answers.

    Example:
        >>> r = ChatRequest(messages=({"role": "user", "content": "hi"},), template="t@1")
        >>> len(r.cache_key("model-a")) == 64 and r.cache_key("a") != r.cache_key("b")
        True
    """

    messages: tuple[dict[str, str], ...]
    schema: dict[str, Any] | None = None
    temperature: float = 0.0
    max_tokens: int = 512
    seed: int = 0
    template: str = ""
    top_logprobs: int = 0  # > 0: also return this many alternatives per token, with log-probs
    sampling: tuple[tuple[str, float], ...] = ()  # extra sampling controls (repeat_penalty, …)

    def canonical(self, model_id: str) -> str:
        """The request as canonical JSON, including the model that answers it."""
        extra: dict[str, Any] = {"top_logprobs": self.top_logprobs} if self.top_logprobs else {}
        if self.sampling:
            extra["sampling"] = dict(self.sampling)
        return json.dumps(
            {
                "model": model_id,
                "messages": list(self.messages),
                "schema": self.schema,
                "temperature": self.temperature,
                "max_tokens": self.max_tokens,
                "seed": self.seed,
                "template": self.template,
                **extra,
            },
            sort_keys=True,
            ensure_ascii=False,
            separators=(",", ":"),
        )

    def openai_body(self) -> dict[str, Any]:
        """The request as an OpenAI ``/chat/completions`` body (without ``model``)."""
        body: dict[str, Any] = {
            "messages": list(self.messages),
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "seed": self.seed,
        }
        body.update(self.sampling)
        if self.top_logprobs:
            body["logprobs"] = True
            body["top_logprobs"] = self.top_logprobs
        if self.schema is not None:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "answer", "schema": self.schema},
            }
        return body

    def cache_key(self, model_id: str) -> str:
        return hashlib.sha256(self.canonical(model_id).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Completion:
    """What a backend answered: text plus token counts, and the generated tokens with their
    log-probabilities when the request asked for them and the backend returns them (the
    OpenAI ``choices[0].logprobs.content`` list)."""

    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str = "stop"
    logprobs: list[dict[str, Any]] | None = None


def completion_from_chat(answer: Any) -> Completion:
    """The :class:`Completion` in an OpenAI ``/chat/completions`` answer (what every
    backend here returns); a malformed answer is a :class:`PermanentLLMError`.

    Example:
        >>> completion_from_chat({"choices": [{"message": {"content": "hi"}}]}).text
        'hi'
    """
    try:
        choice = answer["choices"][0]
        text = choice["message"].get("content") or ""
        usage = answer.get("usage") or {}
        return Completion(
            text=text,
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
            finish_reason=choice.get("finish_reason") or "stop",
            logprobs=(choice.get("logprobs") or {}).get("content"),
        )
    except (KeyError, IndexError, TypeError, AttributeError, ValueError) as exc:
        raise PermanentLLMError(f"malformed chat response: {exc!r}") from None


class TransientLLMError(RuntimeError):
    """A failure worth retrying (timeout, 429, 5xx, connection reset)."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentLLMError(RuntimeError):
    """A failure that retrying will not fix (bad request, auth, missing model)."""


@runtime_checkable
class ChatBackend(Protocol):
    """Anything that turns a :class:`ChatRequest` into a :class:`Completion`."""

    model_id: str

    async def complete(self, request: ChatRequest) -> Completion: ...

    async def aclose(self) -> None: ...


@dataclass
class LLMFailure:
    """An explicit error record: a call that failed or an answer that did not parse."""

    stage: str
    reason: str
    raw: str | None = None
    context: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"stage": self.stage, "reason": self.reason, "raw": self.raw, **self.context}
