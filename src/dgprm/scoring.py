"""Dynamic step scoring (METHOD.md §2): R → Φ → ζ-match → S, a reward vector per step.

For step *t*: the context is the question and the previous μ steps; **R** picks
the relevant parent criteria (after an embedding pre-filter when the tree has
many parents); **Φ** writes evaluation aspects; children of the chosen parents
within cosine distance ζ of an aspect are selected (the chosen parents
themselves when none match, or when Φ says no fine-grained evaluation is
needed); **S** scores the step on every selected criterion in one call.

At most three LLM calls per step (two with ``merge_select_analyze``). The
context is the earlier steps' *text*, so the steps of one trajectory are
scored in parallel. (METHOD.md's "[ours]" idea of also showing earlier
scores in the context would serialise the steps; we chose parallelism.)

Ablations (the paper's): ``mode="no-tree"`` — a plain LLM critic scores each
step on one generic criterion; ``mode="static"`` — every parent, no R/Φ;
``mu=0`` — no context.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field

from dgprm.config import Settings
from dgprm.embed import Embedder
from dgprm.llm import LLMClient, LLMFailure
from dgprm.matching import ChildIndex
from dgprm.prompts import load_template, template_versions
from dgprm.records import InputError
from dgprm.tree.model import RewardTree

Mode = Literal["dynamic", "static", "no-tree"]
CRITIC_ID = "critic"
CRITIC_TEXT = (
    "Overall step quality: the step is correct, logically valid and makes progress toward "
    "solving the problem."
)
MAX_ASPECTS = 3
ASPECT_CHARS = 100
SCORE_MAX = 10
PROMPTS = ("select", "analyze", "select_analyze", "score")


@dataclass
class CriterionScore:
    id: str
    parent_id: str | None
    score: float


@dataclass
class StepReward:
    """The reward of one step: per-criterion scores in [0, 1], their aggregate and a label."""

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


class SelectAnswer(BaseModel):
    parents: list[str]


class AnalyzeAnswer(BaseModel):
    fine_grained: bool = True
    aspects: list[str] = Field(default_factory=list)


class SelectAnalyzeAnswer(SelectAnswer, AnalyzeAnswer):
    pass


class ScoreAnswer(BaseModel):
    scores: dict[str, float]


def context_window(steps: list[str], t: int, mu: int) -> list[str]:
    """The (at most) ``mu`` steps before step ``t`` (0-based).

    Example:
        >>> context_window(["a", "b", "c", "d"], 3, 2)
        ['b', 'c']
        >>> context_window(["a", "b"], 1, 0)
        []
    """
    return steps[max(0, t - mu) : t] if mu > 0 else []


def aggregate(vector: list[float], agg: str) -> float:
    """Scalar step reward from a vector: ``mean`` (default) or ``min``."""
    return float(min(vector)) if agg == "min" else float(np.mean(vector))


def render_context(steps: list[str], t: int, mu: int) -> str:
    """The context text of step ``t``: the previous ``mu`` steps, numbered.

    Example:
        >>> render_context(["a", "b", "c"], 2, 1)
        'Step 2: b'
    """
    window = context_window(steps, t, mu)
    first = t - len(window) + 1
    lines = [f"Step {first + i}: {s.strip()}" for i, s in enumerate(window)]
    return "\n".join(lines) if lines else "(none)"


def _listing(ids: list[str], texts: dict[str, str]) -> str:
    return "\n".join(f"[{i}] {texts[i]}" for i in ids)


class StepScorer:
    """Scores reasoning steps on criteria chosen dynamically from a reward tree.

    Example (see tests/test_scoring.py for a runnable version with test doubles):
        >>> scorer = StepScorer(tree, client, embedder, Settings())    # doctest: +SKIP
        >>> rewards = scorer.score("What is 2+3?", ["2+3 = 5", "So 5."])  # doctest: +SKIP
        >>> rewards[0].vector, rewards[0].reward, rewards[0].label      # doctest: +SKIP
        ([0.9, 1.0], 0.95, True)
    """

    def __init__(
        self,
        tree: RewardTree | None,
        client: LLMClient,
        embedder: Embedder | None,
        settings: Settings,
        *,
        mode: Mode = "dynamic",
        merge_select_analyze: bool = False,
    ) -> None:
        if mode != "no-tree":
            if tree is None or embedder is None:
                raise InputError(f"mode {mode!r} needs a reward tree and an embedder")
            if not tree.parents:
                raise InputError("the reward tree has no criteria (parents); rebuild it")
            if tree.embedder != embedder.model_id:
                raise InputError(
                    f"tree was built with embedder {tree.embedder!r} but {embedder.model_id!r} "
                    "is configured; pass the tree's --embedder"
                )
        self.tree = tree
        self.client = client
        self.embedder = embedder
        self.settings = settings
        self.mode = mode
        self.merge = merge_select_analyze
        self._embed_lock = threading.Lock()
        self.texts: dict[str, str] = {CRITIC_ID: CRITIC_TEXT}
        self.parent_of: dict[str, str | None] = {CRITIC_ID: None}
        if tree is not None:
            by_id = {n.id: n for n in tree.nodes}
            self.parent_ids = [p.id for p in tree.parents]
            self.texts.update({n.id: n.text for n in tree.nodes})
            self.parent_of.update({n.id: n.parent for n in tree.nodes})
            rows = tree.node_vectors([n.id for n in tree.nodes])
            vector_of = {n.id: rows[i] for i, n in enumerate(tree.nodes)}
            self.parent_matrix = np.stack([vector_of[p] for p in self.parent_ids])
            self.children = ChildIndex(
                {p: list(by_id[p].children) for p in self.parent_ids},
                {c.id: vector_of[c.id] for c in tree.children},
            )

    @property
    def prompt_versions(self) -> dict[str, str]:
        return template_versions(*PROMPTS)

    async def _embed(self, texts: list[str]) -> np.ndarray:
        assert self.embedder is not None

        def run() -> np.ndarray:
            with self._embed_lock:
                return self.embedder.encode(texts)

        return await asyncio.to_thread(run)

    async def _offered_parents(self, question: str, step: str) -> list[str]:
        if len(self.parent_ids) <= self.settings.prefilter_parents:
            return list(self.parent_ids)
        query = (await self._embed([f"{question}\n{step}"]))[0]
        sims = self.parent_matrix @ query
        top = np.argsort(-sims, kind="stable")[: self.settings.prefilter_parents]
        return [self.parent_ids[i] for i in sorted(top)]

    async def select_criteria(
        self, question: str, steps: list[str], t: int, context: str
    ) -> list[str] | LLMFailure:
        """R, Φ and ζ-matching for step ``t``: the ids of the criteria to score it on."""
        if self.mode == "no-tree":
            return [CRITIC_ID]
        if self.mode == "static":
            return list(self.parent_ids)
        step = steps[t]
        offered = await self._offered_parents(question, step)
        values = {
            "question": question,
            "context": context,
            "step": step,
            "parents": _listing(offered, self.texts),
            "max_aspects": str(MAX_ASPECTS),
        }
        parents_schema = {
            "type": "array",
            "items": {"type": "string", "enum": offered},
            "minItems": 1,
            "maxItems": len(offered),
            "uniqueItems": True,
        }
        aspects_schema = {
            "type": "array",
            "maxItems": MAX_ASPECTS,
            "items": {"type": "string", "minLength": 3, "maxLength": 160},
        }
        s = self.settings
        where = {"step": t}
        if self.merge:
            request = load_template("select_analyze").render(
                schema={
                    "type": "object",
                    "required": ["parents", "fine_grained", "aspects"],
                    "properties": {
                        "parents": parents_schema,
                        "fine_grained": {"type": "boolean"},
                        "aspects": aspects_schema,
                    },
                },
                max_tokens=40 + 16 * len(offered) + (ASPECT_CHARS + 10) * MAX_ASPECTS,
                seed=s.seed,
                temperature=s.temperature,
                **values,
            )
            both = await self.client.ask(
                request, SelectAnalyzeAnswer, stage="select+analyze", **where
            )
            if isinstance(both, LLMFailure):
                return both
            chosen, analysis = (
                both.parents,
                AnalyzeAnswer(fine_grained=both.fine_grained, aspects=both.aspects),
            )
        else:
            request = load_template("select").render(
                schema={
                    "type": "object",
                    "required": ["parents"],
                    "properties": {"parents": parents_schema},
                },
                max_tokens=20 + 16 * len(offered),
                seed=s.seed,
                temperature=s.temperature,
                **values,
            )
            picked = await self.client.ask(request, SelectAnswer, stage="select", **where)
            if isinstance(picked, LLMFailure):
                return picked
            chosen = picked.parents
            analysis_values = {
                **values,
                "parents": _listing([p for p in offered if p in chosen], self.texts),
            }
            request = load_template("analyze").render(
                schema={
                    "type": "object",
                    "required": ["fine_grained", "aspects"],
                    "properties": {"fine_grained": {"type": "boolean"}, "aspects": aspects_schema},
                },
                max_tokens=30 + (ASPECT_CHARS + 10) * MAX_ASPECTS,
                seed=s.seed,
                temperature=s.temperature,
                **analysis_values,
            )
            analysis = await self.client.ask(request, AnalyzeAnswer, stage="analyze", **where)
            if isinstance(analysis, LLMFailure):
                return analysis
        unknown = [p for p in chosen if p not in offered]
        if unknown or not chosen:
            return self.client.fail(
                LLMFailure(
                    "select",
                    f"chose criteria not offered: {unknown}" if unknown else "chose no criteria",
                    None,
                    where,
                )
            )
        chosen = [p for p in offered if p in chosen]
        matched: list[str] = []
        aspects = [a for a in analysis.aspects if a.strip()]
        if analysis.fine_grained and aspects:
            matched = self.children.match(await self._embed(aspects), chosen, self.settings.zeta)
        return matched or chosen

    async def score_on(
        self,
        question: str,
        steps: list[str],
        t: int,
        criteria: list[str],
        context: str | None = None,
    ) -> list[CriterionScore] | LLMFailure:
        """S: score step ``t`` on every criterion in ``criteria`` with one LLM call."""
        if context is None:
            context = render_context(steps, t, self.settings.mu)
        s = self.settings
        request = load_template("score").render(
            schema={
                "type": "object",
                "required": ["scores"],
                "properties": {
                    "scores": {
                        # one required key per criterion: constrained decoding can neither
                        # repeat nor skip a criterion
                        "type": "object",
                        "required": list(criteria),
                        "additionalProperties": False,
                        "properties": {
                            c: {"type": "integer", "minimum": 0, "maximum": SCORE_MAX}
                            for c in criteria
                        },
                    }
                },
            },
            max_tokens=20 + 24 * len(criteria),
            seed=s.seed,
            temperature=s.temperature,
            question=question,
            context=context,
            step=steps[t],
            criteria=_listing(criteria, self.texts),
        )
        answer = await self.client.ask(request, ScoreAnswer, stage="score", step=t)
        if isinstance(answer, LLMFailure):
            return answer
        given = set(answer.scores)
        if given != set(criteria):
            extra = sorted(given - set(criteria))
            missing = sorted(set(criteria) - given)
            return self.client.fail(
                LLMFailure(
                    "score",
                    f"scores do not match the criteria offered (unknown {extra}, "
                    f"missing {missing})",
                    None,
                    {"step": t},
                )
            )
        out_of_range = [v for v in answer.scores.values() if not 0 <= v <= SCORE_MAX]
        if out_of_range:
            return self.client.fail(
                LLMFailure(
                    "score", f"scores outside 0..{SCORE_MAX}: {out_of_range}", None, {"step": t}
                )
            )
        return [
            CriterionScore(c, self.parent_of.get(c), round(answer.scores[c] / SCORE_MAX, 6))
            for c in criteria
        ]

    async def ascore_step(self, question: str, steps: list[str], t: int) -> StepReward:
        """Reward of step ``t`` (0-based) of ``steps``."""
        context = render_context(steps, t, self.settings.mu)
        criteria = await self.select_criteria(question, steps, t, context)
        if isinstance(criteria, LLMFailure):
            return StepReward(t, error=f"{criteria.stage}: {criteria.reason}")
        scores = await self.score_on(question, steps, t, criteria, context)
        if isinstance(scores, LLMFailure):
            return StepReward(t, error=f"{scores.stage}: {scores.reason}")
        reward = aggregate([c.score for c in scores], self.settings.agg)
        return StepReward(t, scores, round(reward, 6), reward > self.settings.threshold)

    async def ascore(self, question: str, steps: list[str]) -> list[StepReward]:
        """Rewards for every step; steps are scored concurrently."""
        if not question.strip():
            raise InputError("question is empty")
        if not steps or any(not s.strip() for s in steps):
            raise InputError("steps must be a non-empty list of non-empty strings")
        return list(
            await asyncio.gather(*(self.ascore_step(question, steps, t) for t in range(len(steps))))
        )

    def score(self, question: str, steps: list[str]) -> list[StepReward]:
        """Synchronous twin of :meth:`ascore`."""
        return asyncio.run(self.ascore(question, steps))
