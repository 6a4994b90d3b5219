"""Progress reporting and summary wording that library code can use without knowing
about terminals."""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    def start(self, stage: str, total: int) -> None: ...

    def advance(self, stage: str, amount: int = 1) -> None: ...


class NoProgress:
    """The silent default."""

    def start(self, stage: str, total: int) -> None:
        pass

    def advance(self, stage: str, amount: int = 1) -> None:
        pass


def counted(count: int, noun: str, plural: str | None = None) -> str:
    """``count`` and ``noun``, in the plural unless the count is one.

    Example:
        >>> counted(1, "pair"), counted(3, "pair"), counted(1, "criterion", "criteria")
        ('1 pair', '3 pairs', '1 criterion')
    """
    return f"{count} {noun if count == 1 else plural or noun + 's'}"
