"""The LLM stages of step scoring (METHOD.md §2), each one structured call:

- **R** (``select``) picks the relevant parents among those offered;
- **Φ** (``analyze``) decides whether fine-grained evaluation is needed and writes aspects;
- R and Φ in one call (``select_analyze``, the ``merge_r_phi`` option);
- **S** (``score``) scores the step on every selected criterion.

Answer models are built once per set of ids (the offered parents, the criteria to score),
and the JSON schema the backend decodes with is generated from them: an answer that picks a
parent not offered, repeats or skips a criterion, or gives a score out of range cannot
validate, and comes back as an :class:`~dgprm.llm.base.LLMFailure` — never a default.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

from pydantic import Field, create_model, field_validator

from dgprm.llm.base import Completion, LLMFailure
from dgprm.llm.client import LLMClient
from dgprm.llm.logprobs import (
    RECOMMENDED_TOP_LOGPROBS,
    ExpectedScore,
    digit_scale,
    expected_scores,
    parse_entries,
)
from dgprm.llm.structured import AnswerModel, ask_structured, ask_structured_completion
from dgprm.prompts import load_template, template_versions
from dgprm.scoring.index import CriterionIndex
from dgprm.scoring.rewards import CriterionScore
from dgprm.text import number_steps

MAX_ASPECTS = 3
ASPECT_CHARS = 100  # an aspect's longest text (bounded by the grammar, and so is its budget)
SCORE_MAX = 9  # one token per value (0..9): "10" would be two tokens, "1" then "0"
PROMPTS = ("select", "analyze", "select_analyze", "score")

Aspect = Annotated[str, Field(min_length=3, max_length=ASPECT_CHARS)]


class Analysis(AnswerModel):
    """Φ's answer: whether fine-grained evaluation is needed, and the aspects to check."""

    fine_grained: bool
    aspects: list[Aspect] = Field(max_length=MAX_ASPECTS)


class _Selection(AnswerModel):
    """R's answer; subclasses fix the ``offered`` ids (schema enum and validation alike)."""

    offered: ClassVar[tuple[str, ...]] = ()
    parents: list[str]

    @field_validator("parents")
    @classmethod
    def _offered_only(cls, value: list[str]) -> list[str]:
        unknown = [p for p in value if p not in cls.offered]
        if unknown:
            raise ValueError(f"chose criteria not offered: {unknown}")
        return value


def select_answer(offered: list[str], *, with_analysis: bool = False) -> type[AnswerModel]:
    """R's answer model: one to all of the ``offered`` parent ids (with Φ's fields when
    R and Φ are merged). Made once per set of ids (see :func:`score_answer`).

    Example:
        >>> from dgprm.llm.structured import answer_schema
        >>> parents = answer_schema(select_answer(["p1", "p2"]))["properties"]["parents"]
        >>> parents["items"], parents["minItems"], parents["maxItems"]
        ({'enum': ['p1', 'p2'], 'type': 'string'}, 1, 2)
        >>> select_answer(["p1", "p2"]) is select_answer(["p1", "p2"])
        True
    """
    return _select_answer(tuple(offered), with_analysis)


@functools.lru_cache(maxsize=4096)
def _select_answer(offered: tuple[str, ...], with_analysis: bool) -> type[AnswerModel]:
    item = Annotated[str, Field(json_schema_extra={"enum": list(offered)})]
    bases = (_Selection, Analysis) if with_analysis else (_Selection,)
    model = create_model(
        "SelectAnswer",
        __base__=bases,
        parents=(list[item], Field(min_length=1, max_length=len(offered))),  # type: ignore[valid-type]
    )
    model.offered = offered
    return model


def score_answer(criteria: list[str]) -> type[AnswerModel]:
    """S's answer model: exactly one integer score in 0..SCORE_MAX per criterion id.

    Made once per list of ids: building a pydantic model costs milliseconds, which every
    LLM call would pay otherwise (the reward server's throughput is bound by it).

    Example:
        >>> score_answer(["c1", "c2"]) is score_answer(["c1", "c2"])
        True
    """
    return _score_answer(tuple(criteria))


@functools.lru_cache(maxsize=4096)
def _score_answer(criteria: tuple[str, ...]) -> type[AnswerModel]:
    fields = {f"s{i}": (int, Field(ge=0, le=SCORE_MAX, alias=c)) for i, c in enumerate(criteria)}
    scores = create_model("Scores", __base__=AnswerModel, **fields)  # type: ignore[call-overload]
    return create_model("ScoreAnswer", __base__=AnswerModel, scores=(scores, ...))


def render_context(steps: list[str], t: int, mu: int) -> str:
    """The context text of step ``t``: the previous ``mu`` steps, numbered.

    Example:
        >>> render_context(["a", "b", "c"], 2, 1)
        'Step 2: b'
        >>> render_context(["a", "b"], 1, 0)
        '(none)'
    """
    window = context_window(steps, t, mu)
    return number_steps(window, start=t - len(window) + 1) if window else "(none)"


def context_window(steps: list[str], t: int, mu: int) -> list[str]:
    """The (at most) ``mu`` steps before step ``t`` (0-based).

    Example:
        >>> context_window(["a", "b", "c", "d"], 3, 2)
        ['b', 'c']
        >>> context_window(["a", "b"], 1, 0)
        []
    """
    return steps[max(0, t - mu) : t] if mu > 0 else []


@dataclass(frozen=True)
class StepView:
    """What every stage shows the LLM about step ``t``: the question, the context, the step."""

    question: str
    context: str
    step: str
    t: int


class Stages:
    """The R, Φ and S calls for one client, one criterion index and one sampling setup."""

    def __init__(
        self,
        client: LLMClient,
        index: CriterionIndex,
        *,
        seed: int = 0,
        temperature: float = 0.0,
        score_mode: str = "expected",
    ) -> None:
        self.client = client
        self.index = index
        self.seed = seed
        self.temperature = temperature
        self.score_mode = score_mode
        self._warned = False

    @staticmethod
    def versions() -> dict[str, str]:
        """Prompt-template versions of every scoring stage (for manifests and run configs)."""
        return template_versions(*PROMPTS)

    async def _ask(
        self,
        template: str,
        answer: type[AnswerModel],
        view: StepView,
        *,
        stage: str,
        **values: str,
    ) -> AnswerModel | LLMFailure:
        return await ask_structured(
            self.client,
            load_template(template),
            answer,
            stage=stage,
            seed=self.seed,
            temperature=self.temperature,
            where={"step": view.t},
            question=view.question,
            context=view.context,
            step=view.step,
            **values,
        )

    def _fail(self, stage: str, reason: str, view: StepView) -> LLMFailure:
        return self.client.fail(LLMFailure(stage, reason, None, {"step": view.t}))

    async def select(self, view: StepView, offered: list[str]) -> list[str] | LLMFailure:
        """R: the relevant parents among ``offered``, in offered order."""
        answer = await self._ask(
            "select",
            select_answer(offered),
            view,
            stage="select",
            parents=self.index.listing(offered),
        )
        if isinstance(answer, LLMFailure):
            return answer
        return [p for p in offered if p in answer.parents]  # type: ignore[attr-defined]

    async def analyze(self, view: StepView, chosen: list[str]) -> Analysis | LLMFailure:
        """Φ: whether fine-grained evaluation is needed under the ``chosen`` parents, and
        which aspects of the step to check."""
        return await self._ask(  # type: ignore[return-value]
            "analyze",
            Analysis,
            view,
            stage="analyze",
            parents=self.index.listing(chosen),
            max_aspects=str(MAX_ASPECTS),
        )

    async def select_and_analyze(
        self, view: StepView, offered: list[str]
    ) -> tuple[list[str], Analysis] | LLMFailure:
        """R and Φ in one call."""
        answer = await self._ask(
            "select_analyze",
            select_answer(offered, with_analysis=True),
            view,
            stage="select+analyze",
            parents=self.index.listing(offered),
            max_aspects=str(MAX_ASPECTS),
        )
        if isinstance(answer, LLMFailure):
            return answer
        chosen = [p for p in offered if p in answer.parents]  # type: ignore[attr-defined]
        return chosen, Analysis(fine_grained=answer.fine_grained, aspects=answer.aspects)  # type: ignore[attr-defined]

    async def score(self, view: StepView, criteria: list[str]) -> list[CriterionScore] | LLMFailure:
        """S: the step's score on every criterion, normalised to [0, 1], in the given order.

        With ``score_mode="expected"`` each score is the mean of the model's distribution
        over the score tokens 0..9 at that position (G-Eval), read from the answer's token
        log-probabilities; ``sampled`` keeps the integer it wrote. Where the backend
        returns no log-probabilities, or a position cannot be read, the sampled integer is
        used and the criterion says so (``mode``); the first such fallback warns once.
        """
        expected = self.score_mode == "expected"
        result = await ask_structured_completion(
            self.client,
            load_template("score"),
            score_answer(criteria),
            stage="score",
            seed=self.seed,
            temperature=self.temperature,
            top_logprobs=RECOMMENDED_TOP_LOGPROBS if expected else 0,
            where={"step": view.t},
            question=view.question,
            context=view.context,
            step=view.step,
            criteria=self.index.listing(criteria),
        )
        if isinstance(result, LLMFailure):
            return result
        answer, completion = result
        given = answer.scores.model_dump(by_alias=True)  # type: ignore[attr-defined]
        read: dict[str, Any] = {}
        if expected:
            read = self._expected(completion, criteria)
        scores = []
        for c in criteria:
            value = read.get(c)
            if isinstance(value, ExpectedScore):
                score, mode = value.expected, "expected"
            else:
                score, mode = float(given[c]), "sample" if not expected else f"sample ({value})"
            scores.append(
                CriterionScore(
                    c, self.index.parent_of.get(c), round(score / SCORE_MAX, 6), given[c], mode
                )
            )
        return scores

    def _expected(self, completion: Completion, criteria: list[str]) -> dict[str, Any]:
        """Each criterion's :class:`ExpectedScore`, or why it cannot be read (a gap code)."""
        if completion.logprobs is None:
            if not self._warned:
                self._warned = True
                warnings.warn(
                    f"{self.client.model_id} returns no token log-probabilities: scores are "
                    "the sampled integers (score_mode 'sample')",
                    stacklevel=2,
                )
            return dict.fromkeys(criteria, "no log-probs")
        try:
            entries = parse_entries(completion.logprobs)
        except (ValueError, TypeError, KeyError):
            return dict.fromkeys(criteria, "malformed log-probs")
        found = expected_scores(entries, criteria, digit_scale(0, SCORE_MAX))
        return {c: v if isinstance(v, ExpectedScore) else v.reason for c, v in found.items()}
