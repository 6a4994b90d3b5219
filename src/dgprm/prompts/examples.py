"""The example criteria a prompt template shows the model.

The criterion gate (:mod:`dgprm.tree.quality`) rejects criteria that merely
copy these examples, so they are read from the template itself and never
listed twice.

Example:
    >>> texts = example_criteria("judge")
    >>> len(texts) >= 2 and all(t.strip() == t and "$" not in t for t in texts)
    True
"""

from __future__ import annotations

import json
import re

from dgprm.prompts import load_template

_FIELD = re.compile(r'"(?:title|description)"\s*:\s*("(?:[^"\\]|\\.)*")')


def example_texts(text: str) -> list[str]:
    """Every ``"title"`` and ``"description"`` string value in ``text``, in order, once each.

    Placeholders (anything with ``...``, ``…`` or ``$``, and ``<...>``) are skipped, so a
    partial example such as ``"The step ..."`` is not an example criterion.

    Example:
        >>> example_texts('{"title": "Units", "description": "Units are stated"} '
        ...               '{"title": "...", "description": "The step ..."} {"title": "Units"}')
        ['Units', 'Units are stated']
    """
    seen: dict[str, None] = {}
    for match in _FIELD.finditer(text):
        value = json.loads(match.group(1)).strip()
        if not value or "$" in value or "..." in value or "…" in value:
            continue
        if value.startswith("<") and value.endswith(">"):
            continue
        seen.setdefault(value, None)
    return list(seen)


def example_criteria(name: str = "judge") -> list[str]:
    """The example criterion texts (titles and descriptions) of prompt template ``name``."""
    template = load_template(name)
    return example_texts(f"{template.system}\n{template.user}")
