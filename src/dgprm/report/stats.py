"""Pure statistics over scored steps: how often each criterion was selected, its mean
score, and, where steps carry gold labels, its mean on correct vs wrong steps and its
AUROC (how well its score alone separates correct from wrong steps).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np


def average_ranks(values: Sequence[float]) -> list[float]:
    """1-based ranks of ``values``; tied values share the mean of the ranks they span.

    Example:
        >>> average_ranks([0.5, 0.1, 0.5, 0.9])
        [2.5, 1.0, 2.5, 4.0]
    """
    if not len(values):
        return []
    _, inverse, counts = np.unique(
        np.asarray(values, dtype=np.float64), return_inverse=True, return_counts=True
    )
    last = np.cumsum(counts)  # the rank of the last copy of each distinct value
    return (last - (counts - 1) / 2)[inverse.reshape(-1)].tolist()


def auroc(positive: Sequence[float], negative: Sequence[float]) -> float | None:
    """Area under the ROC curve of a score separating ``positive`` from ``negative``.

    The probability that a random positive scores above a random negative, ties counting
    one half (the Mann–Whitney U statistic over ``len(positive) * len(negative)``),
    computed from average ranks in O(n log n). ``None`` when either side is empty.

    Example:
        >>> auroc([0.9, 0.8], [0.1, 0.8])  # 3 wins and 1 tie out of 4 pairs
        0.875
        >>> auroc([0.5, 0.5], [0.5]), auroc([0.2], [0.7]), auroc([1.0], [])
        (0.5, 0.0, None)
    """
    if not positive or not negative:
        return None
    ranks = average_ranks([*positive, *negative])
    n_pos, n_neg = len(positive), len(negative)
    u = math.fsum(ranks[:n_pos]) - n_pos * (n_pos + 1) / 2
    return u / (n_pos * n_neg)


def mean(values: Sequence[float]) -> float | None:
    """Arithmetic mean, ``None`` for no values.

    Example:
        >>> mean([0.2, 0.4]), mean([])
        (0.30000000000000004, None)
    """
    return math.fsum(values) / len(values) if values else None


@dataclass
class CriterionStats:
    """Scores one criterion received, split by the gold label of the step."""

    id: str
    scores: list[float] = field(default_factory=list)
    correct: list[float] = field(default_factory=list)  # steps whose gold label is correct
    wrong: list[float] = field(default_factory=list)
    _auroc: tuple[tuple[int, int], float | None] | None = field(
        default=None, repr=False, compare=False
    )

    def add(self, score: float, gold: bool | None) -> None:
        self.scores.append(score)
        if gold is True:
            self.correct.append(score)
        elif gold is False:
            self.wrong.append(score)

    @property
    def selected(self) -> int:
        """Steps scored on this criterion."""
        return len(self.scores)

    @property
    def mean(self) -> float | None:
        return mean(self.scores)

    @property
    def mean_correct(self) -> float | None:
        return mean(self.correct)

    @property
    def mean_wrong(self) -> float | None:
        return mean(self.wrong)

    @property
    def gap(self) -> float | None:
        """Mean on correct steps minus mean on wrong ones (positive = carries signal)."""
        if self.mean_correct is None or self.mean_wrong is None:
            return None
        return self.mean_correct - self.mean_wrong

    @property
    def auroc(self) -> float | None:
        """AUROC of this criterion's score for "the step is correct" (computed once per
        set of scores)."""
        key = (len(self.correct), len(self.wrong))
        if self._auroc is None or self._auroc[0] != key:
            self._auroc = (key, auroc(self.correct, self.wrong))
        return self._auroc[1]


@dataclass(frozen=True)
class StepScores:
    """One scored step as the statistics need it."""

    scores: dict[str, float]
    gold: bool | None = None
    error: str | None = None


def criterion_stats(steps: Iterable[StepScores]) -> dict[str, CriterionStats]:
    """Per criterion: how often it was selected, its scores, split by gold label.

    Steps with an error record contribute nothing (they have no scores).

    Example:
        >>> stats = criterion_stats([
        ...     StepScores({"c1": 0.9, "c2": 0.4}, gold=True),
        ...     StepScores({"c1": 0.2}, gold=False),
        ...     StepScores({"c1": 0.7}),          # no gold label: counted, not split
        ...     StepScores({}, error="score: unparseable answer"),
        ... ])
        >>> s = stats["c1"]
        >>> s.selected, round(s.mean, 3), s.mean_correct, s.mean_wrong, s.auroc
        (3, 0.6, 0.9, 0.2, 1.0)
        >>> stats["c2"].selected, stats["c2"].auroc
        (1, None)
    """
    return add_steps({}, steps)


def add_steps(
    stats: dict[str, CriterionStats], steps: Iterable[StepScores]
) -> dict[str, CriterionStats]:
    """Add ``steps`` to ``stats`` in place (streaming over a large file); return it."""
    for step in steps:
        if step.error is not None:
            continue
        for criterion_id, score in step.scores.items():
            stats.setdefault(criterion_id, CriterionStats(criterion_id)).add(score, step.gold)
    return stats


def merge_stats(groups: Iterable[dict[str, CriterionStats]]) -> dict[str, CriterionStats]:
    """Pool the statistics of several score files.

    Example:
        >>> a = criterion_stats([StepScores({"c1": 1.0}, gold=True)])
        >>> b = criterion_stats([StepScores({"c1": 0.0}, gold=False)])
        >>> merge_stats([a, b])["c1"].auroc
        1.0
    """
    pooled: dict[str, CriterionStats] = {}
    for group in groups:
        for criterion_id, s in group.items():
            target = pooled.setdefault(criterion_id, CriterionStats(criterion_id))
            target.scores += s.scores
            target.correct += s.correct
            target.wrong += s.wrong
    return pooled
