"""The step judges a benchmark can run: dgprm's dynamic scorer and a plain LLM critic.

Both turn ``(question, steps)`` into a :class:`Judgement`: one boolean per step
(true = step judged correct), optional redundancy labels, or an error that
makes the prediction invalid. A failure is never turned into a label.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import BaseModel, Field

from dgprm.config import Settings
from dgprm.llm import LLMClient, LLMFailure
from dgprm.prompts import load_template
from dgprm.scoring import StepScorer


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


class CriticStep(BaseModel):
    validity: float = Field(ge=-1, le=1)
    redundancy: float = Field(ge=-1, le=1)


class CriticAnswer(BaseModel):
    steps: list[CriticStep]


class CriticJudge:
    """PRMBench's LLM-as-critic protocol: one call per solution, per-step validity
    and redundancy scores in [−1, 1]; label = score > 0."""

    name = "critic"
    prompt = "critic"

    def __init__(self, client: LLMClient, settings: Settings) -> None:
        self.client = client
        self.settings = settings

    async def judge(self, question: str, steps: list[str]) -> Judgement:
        n = len(steps)
        # an enum, not a number range: grammar-constrained decoding enforces enums exactly
        score = {"enum": list(CRITIC_LEVELS)}
        request = load_template(self.prompt).render(
            schema={
                "type": "object",
                "required": ["steps"],
                "properties": {
                    "steps": {
                        "type": "array",
                        "minItems": n,
                        "maxItems": n,
                        "items": {
                            "type": "object",
                            "required": ["validity", "redundancy"],
                            "properties": {"validity": score, "redundancy": score},
                        },
                    }
                },
            },
            max_tokens=20 + 28 * n,
            seed=self.settings.seed,
            temperature=self.settings.temperature,
            question=question,
            steps="\n".join(f"Step {i + 1}: {s.strip()}" for i, s in enumerate(steps)),
            count=str(n),
        )
        answer = await self.client.ask(request, CriticAnswer, stage="critic")
        if isinstance(answer, LLMFailure):
            return Judgement(error=f"critic: {answer.reason}")
        if len(answer.steps) != n:
            failure = self.client.fail(
                LLMFailure("critic", f"{len(answer.steps)} step scores for {n} steps", None, {})
            )
            return Judgement(error=f"critic: {failure.reason}")
        return Judgement(
            labels=[s.validity > 0 for s in answer.steps],
            redundancy=[s.redundancy > 0 for s in answer.steps],
            detail={"validity": [s.validity for s in answer.steps]},
        )
