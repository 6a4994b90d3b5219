"""Which criteria a step is scored on: one strategy per scoring mode.

- :class:`DynamicSelection` — the method: R picks parents (after an embedding pre-filter in
  a large tree), Φ writes aspects, children of the chosen parents within ζ of an aspect are
  selected; the chosen parents themselves when none match or Φ says no fine-grained
  evaluation is needed;
- :class:`StaticSelection` — every parent, no R/Φ (ablation);
- :class:`NoTreeSelection` — one generic critic criterion (ablation).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from dgprm.config import ScoringConfig
from dgprm.embed import AsyncEmbedder
from dgprm.llm.base import LLMFailure
from dgprm.scoring.index import CRITIC_ID, CriterionIndex
from dgprm.scoring.stages import Analysis, Stages, StepView


class Selection(Protocol):
    """Chooses the criteria (tree node ids) step ``view.t`` is scored on."""

    async def select(self, view: StepView) -> list[str] | LLMFailure: ...


class NoTreeSelection:
    """The no-tree ablation: every step is scored on the one critic criterion."""

    async def select(self, view: StepView) -> list[str] | LLMFailure:
        return [CRITIC_ID]


class StaticSelection:
    """The static ablation: every step is scored on every parent."""

    def __init__(self, index: CriterionIndex) -> None:
        self.index = index

    async def select(self, view: StepView) -> list[str] | LLMFailure:
        return list(self.index.parent_ids)


class DynamicSelection:
    """R → Φ → ζ-match (two LLM calls, or one with ``config.merge_r_phi``)."""

    def __init__(
        self,
        index: CriterionIndex,
        stages: Stages,
        embedder: AsyncEmbedder,
        config: ScoringConfig,
    ) -> None:
        self.index = index
        self.stages = stages
        self.embedder = embedder
        self.config = config

    async def offered_parents(self, view: StepView) -> list[str]:
        """All parents, or in a tree with more than ``prefilter_parents`` of them, the most
        similar to the question and step by embedding (in tree order)."""
        parents = self.index.parent_ids
        if len(parents) <= self.config.prefilter_parents:
            return list(parents)
        query = (await self.embedder.encode([f"{view.question}\n{view.step}"]))[0]
        sims = self.index.parent_matrix @ query
        top = np.argsort(-sims, kind="stable")[: self.config.prefilter_parents]
        return [parents[i] for i in sorted(top)]

    async def select(self, view: StepView) -> list[str] | LLMFailure:
        offered = await self.offered_parents(view)
        analysis: Analysis | LLMFailure
        if self.config.merge_r_phi:
            both = await self.stages.select_and_analyze(view, offered)
            if isinstance(both, LLMFailure):
                return both
            chosen, analysis = both
        else:
            picked = await self.stages.select(view, offered)
            if isinstance(picked, LLMFailure):
                return picked
            chosen = picked
            analysis = await self.stages.analyze(view, chosen)
            if isinstance(analysis, LLMFailure):
                return analysis
        aspects = [a for a in analysis.aspects if a.strip()]
        matched: list[str] = []
        if analysis.fine_grained and aspects:
            vectors = await self.embedder.encode(aspects)
            matched = self.index.children.match(vectors, chosen, self.config.zeta)
        return matched or chosen
