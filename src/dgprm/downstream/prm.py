"""The reward models a search can use, behind one small protocol, and solution scores.

A PRM is anything with ``async ascore(question, steps) -> list[StepReward]``:

- ``dgprm`` — :class:`~dgprm.scoring.StepScorer` with a reward tree (R → Φ → ζ-match
  → S, up to 3 LLM calls per step, 2 with ``merge_r_phi``);
- ``critic`` — ``StepScorer(mode="no-tree")``, the paper's no-tree ablation: one
  generic criterion, 1 LLM call per step;
- ``orm`` — :class:`OutcomeJudge`, an outcome reward model: 1 LLM call per solution,
  one reward for the whole solution (returned as the reward of its last step);
- ``none`` — no reward model: the policy alone (greedy) and majority vote.

A step whose scoring failed carries ``error`` and ``reward=None``; the solution then
has no score (:func:`solution_score` says why) — never a default.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel

from dgprm.config import Settings
from dgprm.llm import LLMClient, LLMFailure
from dgprm.prompts import load_template, template_versions
from dgprm.records import InputError
from dgprm.scoring import PROMPTS as STEP_PROMPTS
from dgprm.scoring import CriterionScore, StepReward, StepScorer

PRM_NAMES = ("dgprm", "critic", "orm", "none")
AGGREGATIONS = ("min", "last", "prod", "mean")
OUTCOME_ID = "outcome"
OUTCOME_MAX = 10


@runtime_checkable
class PRM(Protocol):
    """Rewards for the steps of a solution (see the module docstring)."""

    async def ascore(self, question: str, steps: list[str]) -> list[StepReward]: ...


@runtime_checkable
class StepwisePRM(PRM, Protocol):
    """A PRM that can score one step given the steps before it (beam search then pays
    only for the new step). :class:`~dgprm.scoring.StepScorer` is one."""

    async def ascore_step(self, question: str, steps: list[str], t: int) -> StepReward: ...


class OutcomeAnswer(BaseModel):
    score: int


class OutcomeJudge:
    """An outcome reward model: an LLM scores only the whole solution (0–10 → [0, 1]).

    ``ascore`` returns one :class:`StepReward`, for the last step, covering the whole
    solution; every step aggregation of it is that score.

    Example (with a test double backend):
        >>> import asyncio
        >>> from dgprm.llm import Completion, ResponseCache
        >>> class Eight:
        ...     model_id = "eight"
        ...     async def complete(self, request):
        ...         return Completion('{"score": 8}')
        ...     async def aclose(self): ...
        >>> judge = OutcomeJudge(LLMClient(Eight(), cache=ResponseCache(":memory:")), Settings())
        >>> [(r.index, r.reward) for r in asyncio.run(judge.ascore("2+2?", ["4", "Answer: 4"]))]
        [(1, 0.8)]
    """

    name = "orm"
    prompt = "outcome"

    def __init__(self, client: LLMClient, settings: Settings) -> None:
        self.client = client
        self.settings = settings

    async def ascore(self, question: str, steps: list[str]) -> list[StepReward]:
        if not question.strip():
            raise InputError("question is empty")
        if not steps or any(not s.strip() for s in steps):
            raise InputError("steps must be a non-empty list of non-empty strings")
        last = len(steps) - 1
        request = load_template(self.prompt).render(
            schema={
                "type": "object",
                "required": ["score"],
                "properties": {"score": {"type": "integer", "minimum": 0, "maximum": OUTCOME_MAX}},
            },
            max_tokens=24,
            seed=self.settings.seed,
            temperature=self.settings.temperature,
            question=question,
            solution="\n".join(f"Step {i + 1}: {s.strip()}" for i, s in enumerate(steps)),
        )
        answer = await self.client.ask(request, OutcomeAnswer, stage="orm")
        if isinstance(answer, LLMFailure):
            return [StepReward(last, error=f"orm: {answer.reason}")]
        if not 0 <= answer.score <= OUTCOME_MAX:
            failure = self.client.fail(
                LLMFailure("orm", f"score {answer.score} outside 0..{OUTCOME_MAX}", None, {})
            )
            return [StepReward(last, error=f"orm: {failure.reason}")]
        reward = round(answer.score / OUTCOME_MAX, 6)
        return [
            StepReward(
                last,
                [CriterionScore(OUTCOME_ID, None, reward)],
                reward,
                reward > self.settings.threshold,
            )
        ]


@dataclass(frozen=True)
class NamedPRM:
    """A PRM with the name results use and what identifies it in ``run.json``."""

    name: str
    prm: PRM
    config: dict[str, Any] = field(default_factory=dict)


def make_prms(
    names: list[str],
    *,
    judge: LLMClient,
    settings: Settings,
    tree: Any = None,
    tree_path: str | None = None,
    embedder: Any = None,
    merge_r_phi: bool = False,
) -> list[NamedPRM]:
    """The PRMs named in ``names`` (``none`` needs no object and is skipped).

    ``dgprm`` needs ``tree`` (a loaded :class:`~dgprm.tree.RewardTree`) and ``embedder``;
    the others take none.
    """
    unknown = [n for n in names if n not in PRM_NAMES]
    if unknown:
        raise InputError(f"unknown PRM {unknown[0]!r}; choose from {', '.join(PRM_NAMES)}")
    if len(set(names)) != len(names):
        raise InputError(f"PRM listed twice in {names}")
    if "dgprm" in names and (tree is None or embedder is None):
        raise InputError("PRM dgprm needs --tree (a reward tree) and its embedder")
    if "dgprm" not in names and tree is not None:
        raise InputError("--tree is used only by PRM dgprm; add dgprm to the PRMs or drop --tree")
    hyper = {k: getattr(settings, k) for k in ("mu", "zeta", "agg", "threshold", "seed")}
    prms = []
    for name in names:
        if name == "dgprm":
            scorer = StepScorer(tree, judge, embedder, settings, merge_select_analyze=merge_r_phi)
            config = {
                "tree": tree_path,
                "tree_nodes": len(tree.nodes),
                "embedder": settings.embedder,
                "merge_r_phi": merge_r_phi,
                "hyperparameters": hyper,
                "prompts": template_versions(*STEP_PROMPTS),
            }
            prms.append(NamedPRM(name, scorer, config))
        elif name == "critic":
            scorer = StepScorer(None, judge, None, settings, mode="no-tree")
            config = {"mode": "no-tree", "hyperparameters": hyper}
            prms.append(NamedPRM(name, scorer, {**config, "prompts": template_versions("score")}))
        elif name == "orm":
            config = {"prompts": template_versions(OutcomeJudge.prompt), "hyperparameters": hyper}
            prms.append(NamedPRM(name, OutcomeJudge(judge, settings), config))
    return prms


def solution_score(rewards: list[StepReward], agg: str) -> float | None:
    """One score for a solution from its step rewards, or ``None`` when there is none
    (no rewards, or a step whose scoring failed).

    ``min`` (weakest step), ``last`` (final step), ``prod`` (product: every step right)
    or ``mean``.

    Example:
        >>> r = [StepReward(0, reward=0.5), StepReward(1, reward=0.8)]
        >>> [solution_score(r, a) for a in AGGREGATIONS]
        [0.5, 0.8, 0.4, 0.65]
        >>> solution_score([StepReward(0, reward=0.5), StepReward(1, error="score: ...")], "min")
    """
    if agg not in AGGREGATIONS:
        raise ValueError(f"unknown aggregation {agg!r}; choose from {', '.join(AGGREGATIONS)}")
    values = [r.reward for r in rewards]
    if not values or any(v is None or r.error for v, r in zip(values, rewards, strict=True)):
        return None
    scores = [float(v) for v in values if v is not None]
    if agg == "min":
        return min(scores)
    if agg == "last":
        return scores[-1]
    if agg == "prod":
        return round(math.prod(scores), 12)
    return round(sum(scores) / len(scores), 12)
