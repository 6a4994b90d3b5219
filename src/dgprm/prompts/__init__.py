"""Prompt templates as plain text files, versioned by content hash.

A template file has a ``### system`` section and a ``### user`` section;
``$name`` placeholders are filled with :meth:`PromptTemplate.render`. The
template's hash is part of every cache key, so editing a prompt never serves
stale answers.

Example:
    >>> t = load_template("judge")
    >>> t.version == load_template("judge").version and len(t.version) == 12
    True
"""

from __future__ import annotations

import hashlib
import string
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from dgprm.llm.base import ChatRequest


@dataclass(frozen=True)
class PromptTemplate:
    name: str
    system: str
    user: str
    version: str

    @property
    def tag(self) -> str:
        return f"{self.name}@{self.version}"

    def render(
        self,
        *,
        schema: dict[str, Any] | None = None,
        max_tokens: int = 512,
        temperature: float = 0.0,
        seed: int = 0,
        top_logprobs: int = 0,
        **values: str,
    ) -> ChatRequest:
        """Fill the placeholders and build the :class:`ChatRequest`."""
        return ChatRequest(
            messages=(
                {"role": "system", "content": string.Template(self.system).substitute(values)},
                {"role": "user", "content": string.Template(self.user).substitute(values)},
            ),
            schema=schema,
            max_tokens=max_tokens,
            temperature=temperature,
            seed=seed,
            template=self.tag,
            top_logprobs=top_logprobs,
        )


@cache
def load_template(name: str) -> PromptTemplate:
    """Load ``prompts/<name>.txt`` from the package."""
    text = resources.files("dgprm.prompts").joinpath(f"{name}.txt").read_text(encoding="utf-8")
    head, sep, user = text.partition("### user\n")
    if not sep or "### system\n" not in head:
        raise ValueError(f"prompt template {name!r} needs '### system' and '### user' sections")
    system = head.split("### system\n", 1)[1]
    version = hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]
    return PromptTemplate(name, system.strip(), user.strip(), version)


def template_versions(*names: str) -> dict[str, str]:
    """``{name: version}`` for the manifest."""
    return {name: load_template(name).version for name in names}
