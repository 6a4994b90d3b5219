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
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict

from dgprm.llm.base import ChatRequest, LLMFailure
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
    max_tokens: int,
    seed: int = 0,
    temperature: float = 0.0,
    where: dict[str, Any] | None = None,
    **values: str,
) -> Answer | LLMFailure:
    """Render ``template`` with ``values`` and the schema of ``answer``, ask the LLM, and
    return the validated answer, or an :class:`LLMFailure` (counted by the client, with
    ``where`` as its context) when the call failed or the answer does not validate."""
    request = template.render(
        schema=answer_schema(answer),
        max_tokens=max_tokens,
        seed=seed,
        temperature=temperature,
        **values,
    )
    return await client.ask(request, answer, stage=stage, **(where or {}))
