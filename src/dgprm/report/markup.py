"""A tiny HTML builder that escapes every text it is given.

Strings become text (``&``, ``<``, ``>``, ``"`` and ``'`` escaped) unless they are
:class:`Markup`, which only this module's functions produce. Attribute values are
always escaped. Criteria are written by an LLM, so nothing they contain may become
markup.

Example:
    >>> str(el("p", {"title": 'a "b"'}, "x < y", el("b", None, "bold")))
    '<p title="a &quot;b&quot;">x &lt; y<b>bold</b></p>'
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping

VOID = {"br", "hr", "img", "input", "meta", "col", "wbr"}


class Markup(str):
    """HTML that is already safe (built by :func:`el` or :func:`join`)."""


def esc(value: object) -> str:
    """Escape ``value`` for use as HTML text or inside a quoted attribute.

    Example:
        >>> esc("<script>alert('x')</script> & \\"q\\"")
        '&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; &quot;q&quot;'
    """
    return html.escape(str(value), quote=True)


def _flatten(children: Iterable[object]) -> Iterable[object]:
    for child in children:
        if child is None or child is False:
            continue
        if isinstance(child, str):
            yield child
        elif isinstance(child, Iterable):
            yield from _flatten(child)
        else:
            yield str(child)


def join(*children: object) -> Markup:
    """Concatenate children, escaping the plain strings among them.

    Example:
        >>> str(join("a&b", Markup("<i>c</i>"), [None, "d"]))
        'a&amp;b<i>c</i>d'
    """
    return Markup("".join(c if isinstance(c, Markup) else esc(c) for c in _flatten(children)))


def el(tag: str, attrs: Mapping[str, object] | None = None, *children: object) -> Markup:
    """One element: ``attrs`` values ``None``/``False`` are left out, ``True`` is a bare
    attribute, anything else is escaped."""
    parts = [f"<{tag}"]
    for name, value in (attrs or {}).items():
        if value is None or value is False:
            continue
        parts.append(f" {name}" if value is True else f' {name}="{esc(value)}"')
    parts.append(">")
    if tag in VOID:
        return Markup("".join(parts))
    return Markup("".join(parts) + join(*children) + f"</{tag}>")
