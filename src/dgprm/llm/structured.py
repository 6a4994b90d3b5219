"""Structured answers: the JSON schema a backend decodes with is generated from the same
pydantic model that validates the answer, so the two cannot disagree.

Answer models derive from :class:`AnswerModel`: no field has a default (a missing field is
an error, never filled in) and unknown fields are refused, as the schema says.

Example:
    >>> from pydantic import Field
    >>> class Verdict(AnswerModel):
    ...     keep: bool
    ...     reason: str = Field(max_length=20)
    >>> schema = answer_schema(Verdict)
    >>> schema["properties"]
    {'keep': {'type': 'boolean'}, 'reason': {'maxLength': 20, 'type': 'string'}}
    >>> schema["required"], schema["additionalProperties"]
    (['keep', 'reason'], False)
"""

from __future__ import annotations

import functools
import json
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict

from dgprm.llm.base import ChatRequest, Completion, LLMFailure
from dgprm.llm.client import LLMClient

Answer = TypeVar("Answer", bound=BaseModel)


class AnswerModel(BaseModel):
    """Base of every answer model: closed objects, so schema and validation agree."""

    model_config = ConfigDict(extra="forbid")


class Template(Protocol):
    """Anything that renders placeholder values into a :class:`ChatRequest`."""

    def render(
        self,
        *,
        schema: dict[str, Any] | None = None,
        max_tokens: int = 512,
        temperature: float = 0.0,
        seed: int = 0,
        top_logprobs: int = 0,
        **values: str,
    ) -> ChatRequest: ...


def _inline(node: Any, defs: dict[str, Any]) -> Any:
    """``node`` with every local ``$ref`` replaced by its definition and every ``title`` dropped."""
    if isinstance(node, list):
        return [_inline(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        return _inline(defs[node["$ref"].rsplit("/", 1)[-1]], defs)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in ("title", "$defs", "description"):
            continue
        if key == "properties":  # a mapping of names to schemas, not a schema itself
            out[key] = {name: _inline(schema, defs) for name, schema in value.items()}
        else:
            out[key] = _inline(value, defs)
    return out


def token_budget(schema: dict[str, Any]) -> int:
    """The most tokens an answer valid under ``schema`` can take, so ``max_tokens`` is sized
    from the schema and a grammar-constrained answer always fits (every string counted at
    one token per character, as a small model repeating "1.1.1" writes them).

    Refuses a schema with an unbounded string or array: every free-text field of every
    answer model must have a ``max_length``, and so must every list.

    Example:
        >>> token_budget({"type": "object", "properties": {"ok": {"type": "boolean"},
        ...     "why": {"type": "string", "maxLength": 20}}, "required": ["ok", "why"]})
        39
    """
    if "enum" in schema:
        return 2 + max(len(json.dumps(v)) for v in schema["enum"])
    kind = schema.get("type")
    if kind == "object":
        return 2 + sum(
            len(name) + 4 + token_budget(value)
            for name, value in schema.get("properties", {}).items()
        )
    if kind == "array":
        if "maxItems" not in schema:
            raise ValueError("an array in an answer schema needs maxItems")
        return 2 + schema["maxItems"] * (1 + token_budget(schema.get("items", {})))
    if kind == "string":
        if "maxLength" not in schema:
            raise ValueError("a string in an answer schema needs maxLength")
        return 2 + int(schema["maxLength"])
    if kind in ("integer", "number"):
        return (
            2
            + max(len(str(schema.get(k, 0))) for k in ("minimum", "maximum"))
            + (0 if kind == "integer" else 8)
        )
    if kind == "boolean":
        return 2
    raise ValueError(f"cannot bound the answer schema {schema!r}")


#: Tokens allowed beyond the schema's bound (a model may open with a space or a newline).
BUDGET_MARGIN = 16


@functools.lru_cache(maxsize=4096)
def answer_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The JSON schema of ``model`` as grammar-constrained decoders take it: self-contained
    (no ``$ref``), without titles or descriptions. Computed once per model (generating a
    schema costs about a millisecond, on every LLM call otherwise): do not modify it."""
    schema = model.model_json_schema()
    return _inline(schema, schema.get("$defs", {}))


async def ask_structured(
    client: LLMClient,
    template: Template,
    answer: type[Answer],
    *,
    stage: str,
    max_tokens: int | None = None,
    seed: int = 0,
    temperature: float = 0.0,
    where: dict[str, Any] | None = None,
    **values: str,
) -> Answer | LLMFailure:
    """Render ``template`` with ``values`` and the schema of ``answer``, ask the LLM, and
    return the validated answer, or an :class:`LLMFailure` (counted by the client, with
    ``where`` as its context) when the call failed or the answer does not validate.

    ``max_tokens`` defaults to the schema's :func:`token_budget` (plus a margin)."""
    result = await ask_structured_completion(
        client,
        template,
        answer,
        stage=stage,
        max_tokens=max_tokens,
        seed=seed,
        temperature=temperature,
        where=where,
        **values,
    )
    return result if isinstance(result, LLMFailure) else result[0]


async def ask_structured_completion(
    client: LLMClient,
    template: Template,
    answer: type[Answer],
    *,
    stage: str,
    max_tokens: int | None = None,
    seed: int = 0,
    temperature: float = 0.0,
    top_logprobs: int = 0,
    where: dict[str, Any] | None = None,
    **values: str,
) -> tuple[Answer, Completion] | LLMFailure:
    """:func:`ask_structured`, also returning the completion; with ``top_logprobs``, the
    completion carries that many alternatives per token with their log-probabilities
    (when the backend returns them)."""
    schema = answer_schema(answer)
    request = template.render(
        schema=schema,
        max_tokens=max_tokens or token_budget(schema) + BUDGET_MARGIN,
        seed=seed,
        temperature=temperature,
        top_logprobs=top_logprobs,
        **values,
    )
    return await client.ask_with_completion(request, answer, stage=stage, **(where or {}))
