"""Dynamic step scoring (METHOD.md §2): a reward vector for every step.

For step *t*: the context is the question and the previous μ steps; a selection strategy
(:mod:`dgprm.scoring.strategies`) picks the criteria; **S** scores the step on every one
of them in one call. At most three LLM calls per step (two with ``merge_r_phi``). The
context is the earlier steps' *text*, so the steps of one trajectory are scored in
parallel. (METHOD.md's "[ours]" idea of also showing earlier scores in the context would
serialise the steps; we chose parallelism.)
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from dgprm.config import RuntimeConfig, ScoringConfig
from dgprm.embed import AsyncEmbedder, Embedder, make_embedder
from dgprm.errors import InputError
from dgprm.llm import make_client
from dgprm.llm.base import LLMFailure
from dgprm.llm.client import LLMClient
from dgprm.scoring.index import CriterionIndex
from dgprm.scoring.rewards import CriterionScore, StepReward, aggregate
from dgprm.scoring.stages import Stages, StepView, render_context
from dgprm.scoring.strategies import (
    DynamicSelection,
    NoTreeSelection,
    Selection,
    StaticSelection,
)
from dgprm.tree.model import RewardTree, tree_embedder_spec


class StepScorer:
    """Scores reasoning steps on criteria chosen dynamically from a reward tree.

    Example (three lines from a saved tree; the embedder comes from the tree's manifest):
        >>> import dgprm
        >>> scorer = dgprm.StepScorer.from_tree("runs/tree", llm="embedded")  # doctest: +SKIP
        >>> rewards = scorer.score("What is 2+3?", ["2+3 = 5", "So 5."])   # doctest: +SKIP
        >>> rewards[0].vector, rewards[0].reward, rewards[0].label        # doctest: +SKIP
        ([0.9, 1.0], 0.95, True)
    """

    def __init__(
        self,
        tree: RewardTree | None,
        client: LLMClient,
        embedder: Embedder | None,
        config: ScoringConfig | None = None,
        *,
        seed: int = 0,
        temperature: float = 0.0,
    ) -> None:
        config = config or ScoringConfig()
        if config.mode != "no-tree":
            if tree is None or embedder is None:
                raise InputError(f"mode {config.mode!r} needs a reward tree and an embedder")
            if not tree.parents:
                raise InputError("the reward tree has no criteria (parents); rebuild it")
            if not tree.selectable_ids() & {p.id for p in tree.parents}:
                raise InputError("every parent of the reward tree is disabled; enable one")
            tree.check_embedder(embedder.model_id)
        self.tree = tree
        self.client = client
        self.embedder = embedder
        self.config = config
        self.index = CriterionIndex(tree if config.mode != "no-tree" else None)
        self.stages = Stages(
            client,
            self.index,
            seed=seed,
            temperature=temperature,
            score_mode=config.score_mode,
        )
        self.selection: Selection
        if config.mode == "no-tree":
            self.selection = NoTreeSelection()
        elif config.mode == "static":
            self.selection = StaticSelection(self.index)
        else:
            assert embedder is not None
            self.selection = DynamicSelection(
                self.index, self.stages, AsyncEmbedder(embedder), config
            )

    @classmethod
    def from_tree(
        cls,
        tree: str | Path | RewardTree | None,
        llm: str | LLMClient = "embedded",
        *,
        config: ScoringConfig | None = None,
        embedder: str | Embedder | None = None,
        runtime: RuntimeConfig | None = None,
    ) -> StepScorer:
        """A scorer for a saved tree (a directory or a loaded :class:`RewardTree`).

        ``llm`` is an LLM spec (a client is made with the runtime's cache and concurrency)
        or a ready :class:`LLMClient`; the embedder defaults to the one the tree was built
        with. ``tree=None`` is allowed for ``config.mode="no-tree"``.
        """
        runtime = runtime or RuntimeConfig()
        loaded = RewardTree.load(tree) if isinstance(tree, (str, Path)) else tree
        client = llm if isinstance(llm, LLMClient) else make_client(runtime.replace(llm=llm))
        if loaded is None:
            embedder = None
        elif isinstance(embedder, str) or embedder is None:
            embedder = make_embedder(
                tree_embedder_spec(loaded, embedder or runtime.embedder), timeout=runtime.timeout
            )
        return cls(
            loaded,
            client,
            embedder,
            config,
            seed=runtime.seed,
            temperature=runtime.temperature,
        )

    def _view(self, question: str, steps: list[str], t: int) -> StepView:
        return StepView(question, render_context(steps, t, self.config.mu), steps[t], t)

    async def select_criteria(
        self, question: str, steps: list[str], t: int
    ) -> list[str] | LLMFailure:
        """The ids of the criteria step ``t`` (0-based) of ``steps`` is to be scored on."""
        return await self.selection.select(self._view(question, steps, t))

    async def score_on(
        self, question: str, steps: list[str], t: int, criteria: list[str]
    ) -> list[CriterionScore] | LLMFailure:
        """S: score step ``t`` on every criterion in ``criteria`` with one LLM call."""
        return await self.stages.score(self._view(question, steps, t), criteria)

    async def ascore_step(self, question: str, steps: list[str], t: int) -> StepReward:
        """Reward of step ``t`` (0-based) of ``steps``."""
        view = self._view(question, steps, t)
        criteria = await self.selection.select(view)
        if isinstance(criteria, LLMFailure):
            return StepReward(t, error=f"{criteria.stage}: {criteria.reason}")
        scores = await self.stages.score(view, criteria)
        if isinstance(scores, LLMFailure):
            return StepReward(t, error=f"{scores.stage}: {scores.reason}")
        weights = [self.index.weights.get(c.id, 1.0) for c in scores]
        reward = aggregate([c.score for c in scores], self.config.agg, weights)
        return StepReward(t, scores, round(reward, 6), reward > self.config.threshold)

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
