"""What scoring returns: per-criterion scores, the step's reward vector, its aggregate."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class CriterionScore:
    """The score in [0, 1] of one step on one criterion (a tree node id)."""

    id: str
    parent_id: str | None
    score: float


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


def aggregate(vector: list[float], agg: str) -> float:
    """Scalar step reward from a vector: ``mean`` or ``min``.

    Example:
        >>> aggregate([0.2, 0.8], "mean"), aggregate([0.2, 0.8], "min")
        (0.5, 0.2)
    """
    return float(min(vector)) if agg == "min" else float(np.mean(vector))
