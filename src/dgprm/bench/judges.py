"""The step judges a benchmark can run: dgprm's dynamic scorer and a plain LLM critic.

Both turn ``(question, steps)`` into a :class:`Judgement`: one boolean per step
(true = step judged correct), optional redundancy labels, or an error that
makes the prediction invalid. A failure is never turned into a label.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from pydantic import Field, create_model

from dgprm.config import RuntimeConfig, ScoringConfig
from dgprm.embed import Embedder, make_embedder
from dgprm.errors import InputError
from dgprm.llm.base import LLMFailure
from dgprm.llm.client import LLMClient
from dgprm.llm.structured import AnswerModel, ask_structured
from dgprm.prompts import load_template, template_versions
from dgprm.scoring.scorer import StepScorer
from dgprm.scoring.stages import PROMPTS
from dgprm.text import number_steps
from dgprm.tree.model import RewardTree, tree_embedder_spec


@dataclass
class Judgement:
    """Step labels for one solution, or why there are none."""

    labels: list[bool] = field(default_factory=list)
    redundancy: list[bool] | None = None
    error: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def valid(self) -> bool:
        return self.error is None


class StepJudge(Protocol):
    name: str

    async def judge(self, question: str, steps: list[str]) -> Judgement: ...


class DgprmJudge:
    """Labels from dgprm's step rewards: step correct when its reward > threshold."""

    name = "dgprm"

    def __init__(self, scorer: StepScorer) -> None:
        self.scorer = scorer

    async def judge(self, question: str, steps: list[str]) -> Judgement:
        rewards = await self.scorer.ascore(question, steps)
        errors = [f"step {r.index}: {r.error}" for r in rewards if r.error]
        detail = {"rewards": [r.reward for r in rewards]}
        if errors:
            return Judgement(error="; ".join(errors), detail=detail)
        return Judgement(labels=[bool(r.label) for r in rewards], detail=detail)


CRITIC_LEVELS = (-1, -0.5, 0, 0.5, 1)
# an enum, not a number range: grammar-constrained decoding enforces enums exactly
Level = Literal[-1, -0.5, 0, 0.5, 1]


class CriticStep(AnswerModel):
    validity: Level
    redundancy: Level


def critic_answer(steps: int) -> type[AnswerModel]:
    """The critic's answer model: exactly one validity/redundancy pair per step."""
    listed = (list[CriticStep], Field(min_length=steps, max_length=steps))
    return create_model("CriticAnswer", __base__=AnswerModel, steps=listed)


class CriticJudge:
    """PRMBench's LLM-as-critic protocol: one call per solution, per-step validity
    and redundancy scores in [−1, 1]; label = score > 0."""

    name = "critic"
    prompt = "critic"

    def __init__(self, client: LLMClient, *, seed: int = 0, temperature: float = 0.0) -> None:
        self.client = client
        self.seed = seed
        self.temperature = temperature

    async def judge(self, question: str, steps: list[str]) -> Judgement:
        n = len(steps)
        answer = await ask_structured(
            self.client,
            load_template(self.prompt),
            critic_answer(n),
            stage="critic",
            seed=self.seed,
            temperature=self.temperature,
            question=question,
            steps=number_steps(steps),
            count=str(n),
        )
        if isinstance(answer, LLMFailure):
            return Judgement(error=f"critic: {answer.reason}")
        scored: list[CriticStep] = answer.steps  # type: ignore[attr-defined]
        return Judgement(
            labels=[s.validity > 0 for s in scored],
            redundancy=[s.redundancy > 0 for s in scored],
            detail={"validity": [s.validity for s in scored]},
        )


METHODS = ("dgprm", "critic")


def check_method(method: str, trees: list[Any]) -> None:
    """Refuse a method name, or a method given the wrong number of trees."""
    if method not in METHODS:
        raise InputError(f"unknown method {method!r}; choose dgprm or critic")
    if method == "critic" and trees:
        raise InputError("--method critic takes no --tree")
    if method == "dgprm" and not trees:
        raise InputError("--method dgprm needs --tree")


def method_judges(
    method: str,
    trees: list[RewardTree],
    client: LLMClient,
    scoring: ScoringConfig,
    runtime: RuntimeConfig,
    embedder: Embedder | None = None,
) -> list[StepJudge]:
    """The judge(s) for ``method``: one per tree for dgprm, one critic otherwise. The
    embedder is the trees' own unless one is given."""
    check_method(method, trees)
    if method == "critic":
        return [CriticJudge(client, seed=runtime.seed, temperature=runtime.temperature)]
    embedder = embedder or make_embedder(
        tree_embedder_spec(trees[0], runtime.embedder), timeout=runtime.timeout
    )
    return [
        DgprmJudge(
            StepScorer(
                t, client, embedder, scoring, seed=runtime.seed, temperature=runtime.temperature
            )
        )
        for t in trees
    ]


def method_prompts(method: str) -> dict[str, str]:
    """Prompt-template versions a method's judgements depend on (for run.json)."""
    return template_versions(*(PROMPTS if method == "dgprm" else (CriticJudge.prompt,)))
