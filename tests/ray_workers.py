"""Work builders for Ray workers in tests: scorers over the scripted judge, built inside each
worker. Imported by reference (``tests.ray_workers``) in the workers, which run from the
repository root like the tests."""

from __future__ import annotations

import os

from dgprm.config import ScoringConfig
from dgprm.llm import LLMClient
from dgprm.pairs import prefix_record
from dgprm.scoring import StepScorer
from dgprm.scoring.batch import score_record
from tests.conftest import KeywordEmbedder, ScriptedBackend, judge


def scripted_scorer(tree, scoring: ScoringConfig, answer=judge) -> StepScorer:
    embedder = KeywordEmbedder(dim=64)
    return StepScorer(tree, LLMClient(ScriptedBackend(answer), backoff=0.0), embedder, scoring)


def score_work(tree, scoring: ScoringConfig, die_at: str | None = None):
    """Scores trajectories; the worker process dies when it is given the id ``die_at``."""
    scorer = scripted_scorer(tree, scoring)

    async def work(trajectory):
        if trajectory.id == die_at:
            os._exit(1)  # a worker killed mid-run
        return await score_record(scorer, trajectory)

    return work


def pairs_work(tree, scoring: ScoringConfig, answer, candidates):
    scorer = scripted_scorer(tree, scoring, answer)

    async def work(prefix):
        return await prefix_record(scorer, prefix, candidates=candidates)

    return work
