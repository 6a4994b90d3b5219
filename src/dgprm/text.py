"""How steps are written into prompts: one numbering, used by every stage."""

from __future__ import annotations


def number_steps(steps: list[str], start: int = 1) -> str:
    """Render steps as ``Step N: ...`` lines, numbered from ``start``.

    Example:
        >>> number_steps(["a", " b "])
        'Step 1: a\\nStep 2: b'
        >>> number_steps(["c"], start=3)
        'Step 3: c'
    """
    return "\n".join(f"Step {i}: {s.strip()}" for i, s in enumerate(steps, start=start))
