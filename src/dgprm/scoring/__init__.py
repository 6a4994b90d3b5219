"""Dynamic step scoring: a reward vector for every reasoning step (METHOD.md §2).

- :class:`StepScorer` (:mod:`.scorer`) scores a trajectory; :func:`score_many`
  (:mod:`.batch`) scores a file of them into a resumable output;
- :class:`StepReward` / :class:`CriterionScore` (:mod:`.rewards`) are what comes back;
- :mod:`.strategies` holds one criterion-selection strategy per mode, :mod:`.stages` the
  R, Φ and S calls with their answer models, :mod:`.index` the tree's criteria as
  scoring needs them.
"""

from dgprm.scoring.batch import ScoreReport, ascore_file, score_file, score_many
from dgprm.scoring.index import CRITIC_ID, CRITIC_TEXT, ChildIndex, CriterionIndex
from dgprm.scoring.rewards import (
    SOLUTION_AGGREGATIONS,
    CriterionScore,
    StepReward,
    aggregate,
    solution_reward,
)
from dgprm.scoring.scorer import StepScorer
from dgprm.scoring.stages import PROMPTS, context_window, render_context

__all__ = [
    "CRITIC_ID",
    "CRITIC_TEXT",
    "PROMPTS",
    "SOLUTION_AGGREGATIONS",
    "ChildIndex",
    "CriterionIndex",
    "CriterionScore",
    "ScoreReport",
    "StepReward",
    "StepScorer",
    "aggregate",
    "ascore_file",
    "context_window",
    "render_context",
    "score_file",
    "score_many",
    "solution_reward",
]
