"""What scoring returns: per-criterion scores, the step's reward vector, its aggregate."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dgprm.config import SolutionAggregation  # noqa: F401 (re-exported, defined with the configs)


@dataclass
class CriterionScore:
    """The score in [0, 1] of one step on one criterion (a tree node id): the expected
    score over the model's distribution, or the integer it sampled (``mode`` says which;
    ``sampled`` is the integer it wrote, 0..9)."""

    id: str
    parent_id: str | None
    score: float
    sampled: int | None = None
    mode: str = "sample"


@dataclass
class StepReward:
    """The reward of one step: per-criterion scores in [0, 1], their aggregate and a label.

    A step whose scoring failed has ``error`` set, no criteria and no reward: never a
    default score.

    Example:
        >>> r = StepReward(0, [CriterionScore("c1", "p1", 0.9), CriterionScore("c2", "p1", 0.5)])
        >>> r.vector
        [0.9, 0.5]
    """

    index: int
    criteria: list[CriterionScore] = field(default_factory=list)
    reward: float | None = None
    label: bool | None = None
    error: str | None = None

    @property
    def vector(self) -> list[float]:
        return [c.score for c in self.criteria]

    def to_dict(self) -> dict[str, Any]:
        row: dict[str, Any] = {
            "index": self.index,
            "criteria": [c.__dict__ for c in self.criteria],
            "vector": self.vector,
            "reward": self.reward,
            "label": self.label,
        }
        if self.error is not None:
            row["error"] = self.error
        return row


def aggregate(vector: list[float], agg: str, weights: list[float] | None = None) -> float:
    """Scalar step reward from a vector: ``mean``, ``min``, or ``weighted`` (the mean
    weighted by each criterion's weight, which a person sets with ``dgprm tree apply``).

    Example:
        >>> aggregate([0.2, 0.8], "mean"), aggregate([0.2, 0.8], "min")
        (0.5, 0.2)
        >>> round(aggregate([0.2, 0.8], "weighted", [3.0, 1.0]), 6)
        0.35
    """
    if agg == "min":
        return float(min(vector))
    if agg == "weighted":
        if weights is None or len(weights) != len(vector):
            raise ValueError("weighted aggregation needs one weight per score")
        return float(np.dot(vector, weights) / np.sum(weights))
    return float(np.mean(vector))


SOLUTION_AGGREGATIONS: tuple[str, ...] = ("min", "last", "prod", "mean")


def solution_reward(step_rewards: list[float], agg: str = "min") -> float:
    """One reward for a whole solution from its step rewards: ``min`` (the weakest step),
    ``last``, ``prod`` or ``mean``.

    Example:
        >>> rewards = [0.9, 0.5, 0.8]
        >>> [round(solution_reward(rewards, a), 3) for a in ("min", "last", "prod", "mean")]
        [0.5, 0.8, 0.36, 0.733]
    """
    if not step_rewards:
        raise ValueError("a solution reward needs at least one step reward")
    if agg == "min":
        return float(min(step_rewards))
    if agg == "last":
        return float(step_rewards[-1])
    if agg == "prod":
        return float(np.prod(step_rewards))
    if agg == "mean":
        return float(np.mean(step_rewards))
    raise ValueError(f"unknown solution aggregation {agg!r}; choose from {SOLUTION_AGGREGATIONS}")
