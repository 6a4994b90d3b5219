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

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from pydantic import Field

from dgprm.config import RuntimeConfig, ScoringConfig
from dgprm.errors import InputError
from dgprm.llm import LLMClient, LLMFailure
from dgprm.llm.structured import AnswerModel, ask_structured
from dgprm.prompts import load_template, template_versions
from dgprm.scoring import PROMPTS as STEP_PROMPTS
from dgprm.scoring import SOLUTION_AGGREGATIONS as AGGREGATIONS
from dgprm.scoring import CriterionScore, StepReward, StepScorer, solution_reward
from dgprm.text import number_steps

PRM_NAMES = ("dgprm", "critic", "orm", "none")
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


class OutcomeAnswer(AnswerModel):
    score: int = Field(ge=0, le=OUTCOME_MAX)


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
        >>> judge = OutcomeJudge(LLMClient(Eight(), cache=ResponseCache(":memory:")))
        >>> [(r.index, r.reward) for r in asyncio.run(judge.ascore("2+2?", ["4", "Answer: 4"]))]
        [(1, 0.8)]
    """

    name = "orm"
    prompt = "outcome"

    def __init__(
        self,
        client: LLMClient,
        *,
        seed: int = 0,
        temperature: float = 0.0,
        threshold: float = 0.5,
    ) -> None:
        self.client = client
        self.seed = seed
        self.temperature = temperature
        self.threshold = threshold

    async def ascore(self, question: str, steps: list[str]) -> list[StepReward]:
        if not question.strip():
            raise InputError("question is empty")
        if not steps or any(not s.strip() for s in steps):
            raise InputError("steps must be a non-empty list of non-empty strings")
        last = len(steps) - 1
        answer = await ask_structured(
            self.client,
            load_template(self.prompt),
            OutcomeAnswer,
            stage="orm",
            seed=self.seed,
            temperature=self.temperature,
            question=question,
            solution=number_steps(steps),
        )
        if isinstance(answer, LLMFailure):
            return [StepReward(last, error=f"orm: {answer.reason}")]
        reward = round(answer.score / OUTCOME_MAX, 6)
        return [
            StepReward(
                last,
                [CriterionScore(OUTCOME_ID, None, reward)],
                reward,
                reward > self.threshold,
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
    scoring: ScoringConfig | None = None,
    runtime: RuntimeConfig | None = None,
    tree: Any = None,
    tree_path: str | None = None,
    embedder: Any = None,
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
    scoring, runtime = scoring or ScoringConfig(), runtime or RuntimeConfig()
    hyper = {
        **{k: getattr(scoring, k) for k in ("mu", "zeta", "agg", "threshold", "score_mode")},
        "seed": runtime.seed,
    }
    sampling = {"seed": runtime.seed, "temperature": runtime.temperature}
    prms = []
    for name in names:
        if name == "dgprm":
            scorer = StepScorer(tree, judge, embedder, scoring, **sampling)
            config = {
                "tree": tree_path,
                "tree_nodes": len(tree.nodes),
                "embedder": embedder.model_id,
                "merge_r_phi": scoring.merge_r_phi,
                "hyperparameters": hyper,
                "prompts": template_versions(*STEP_PROMPTS),
            }
            prms.append(NamedPRM(name, scorer, config))
        elif name == "critic":
            scorer = StepScorer(None, judge, None, scoring.replace(mode="no-tree"), **sampling)
            config = {"mode": "no-tree", "hyperparameters": hyper}
            prms.append(NamedPRM(name, scorer, {**config, "prompts": template_versions("score")}))
        elif name == "orm":
            config = {"prompts": template_versions(OutcomeJudge.prompt), "hyperparameters": hyper}
            outcome = OutcomeJudge(judge, threshold=scoring.threshold, **sampling)
            prms.append(NamedPRM(name, outcome, config))
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
    return round(solution_reward([float(v) for v in values if v is not None], agg), 12)
