"""One reward per solution, for RL: score every step, aggregate, and say plainly when it failed.

The reward server (:mod:`dgprm.serve`), the TRL reward function and the verl entry point
(:mod:`dgprm.integrations`) all go through :func:`ascore_response`. A solution whose
scoring failed is never given a silent default: its :class:`SolutionScore` carries the
reason, and its reward is ``None`` unless the caller chose a fallback (``on_error``), in
which case :attr:`SolutionScore.fallback` says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from dgprm.config import RewardConfig
from dgprm.errors import InputError
from dgprm.llm.cache import Ledger
from dgprm.scoring.rewards import StepReward, solution_reward
from dgprm.scoring.scorer import StepScorer
from dgprm.text import split_steps

#: Why a solution could not be scored: its input (no steps, an empty question) or the
#: scoring itself (an LLM call failed or its answer did not parse).
Failure = Literal["input", "scoring"]


class ScoringError(RuntimeError):
    """A solution could not be scored and no fallback reward was configured."""


@dataclass
class SolutionScore:
    """A solution's step rewards and its one reward.

    ``reward`` is the aggregate of the step rewards; when scoring failed, it is ``None``, or
    the caller's fallback with ``fallback=True``. ``error`` names what failed.

    Example:
        >>> SolutionScore([], None, error="step 1: score: LLM call failed", failure="scoring").ok
        False
    """

    steps: list[StepReward]
    reward: float | None
    error: str | None = None
    failure: Failure | None = None
    fallback: bool = False
    usage: Ledger = field(default_factory=Ledger)

    @property
    def ok(self) -> bool:
        """Whether every step was scored."""
        return self.error is None

    @property
    def failed_steps(self) -> int:
        return sum(step.error is not None for step in self.steps)


def _failed(
    steps: list[StepReward], error: str, failure: Failure, on_error: float | None, usage: Ledger
) -> SolutionScore:
    return SolutionScore(steps, on_error, error, failure, on_error is not None, usage)


async def ascore_steps(
    scorer: StepScorer,
    question: str,
    steps: list[str],
    *,
    agg: str = "min",
    on_error: float | None = None,
) -> SolutionScore:
    """Score ``steps`` and aggregate their rewards into one (``agg``: min | last | prod | mean).

    A step that failed makes the whole solution failed: its reward is ``on_error`` (and
    ``fallback`` is set) or ``None``; ``error`` names the first failed step (0-based, as in
    the error records of ``dgprm score``).

    Example (a stand-in judge that gives every step 8 of 9, on the no-tree critic):
        >>> import asyncio, json
        >>> from dgprm.config import ScoringConfig
        >>> from dgprm.llm import Completion, LLMClient
        >>> class Judge:
        ...     model_id = "judge"
        ...     async def complete(self, request):
        ...         return Completion(json.dumps({"scores": {"critic": 8}}))
        ...     async def aclose(self): ...
        >>> scorer = StepScorer(None, LLMClient(Judge()), None, ScoringConfig(mode="no-tree"))
        >>> s = asyncio.run(ascore_steps(scorer, "What is 2+3?", ["2+3 = 5.", "So 5."]))
        >>> s.reward, s.ok, [r.reward for r in s.steps], s.usage.llm_calls
        (0.888889, True, [0.888889, 0.888889], 2)
        >>> s = asyncio.run(ascore_steps(scorer, " ", ["2+3 = 5."], on_error=0.0))
        >>> s.reward, s.fallback, s.failure, s.error
        (0.0, True, 'input', 'question is empty')
    """
    with scorer.client.scoped() as usage:
        try:
            rewards = await scorer.ascore(question, steps)
        except InputError as exc:
            return _failed([], str(exc), "input", on_error, usage)
    failed = [r for r in rewards if r.error is not None]
    if failed:
        first = failed[0]
        count = f" ({len(failed)} of {len(rewards)} steps failed)" if len(failed) > 1 else ""
        return _failed(
            rewards, f"step {first.index}: {first.error}{count}", "scoring", on_error, usage
        )
    value = solution_reward([r.reward for r in rewards if r.reward is not None], agg)
    return SolutionScore(rewards, round(value, 6), usage=usage)


async def ascore_response(
    scorer: StepScorer, question: str, response: str, config: RewardConfig | None = None
) -> SolutionScore:
    """Cut ``response`` into steps (:func:`dgprm.text.split_steps` with ``config.step_sep``)
    and score them (:func:`ascore_steps` with ``config.agg`` and ``config.on_error``).

    A response without any step is an input failure, like an empty question.
    """
    config = config or RewardConfig()
    steps = split_steps(response, config.step_sep)
    if not steps:
        return _failed([], "the response has no steps", "input", config.on_error, Ledger())
    return await ascore_steps(scorer, question, steps, agg=config.agg, on_error=config.on_error)
