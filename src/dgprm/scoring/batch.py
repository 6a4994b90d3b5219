"""Score many trajectories into a resumable JSONL output (one line per trajectory)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dgprm.config import RuntimeConfig, ScoringConfig
from dgprm.errors import InputError
from dgprm.files import STEP_REWARDS, check_output_file
from dgprm.llm.cache import Ledger
from dgprm.llm.client import LLMClient
from dgprm.progress import Progress
from dgprm.records import Trajectory, records_from
from dgprm.runs import RunStats, run_resumable
from dgprm.scoring.rewards import StepReward
from dgprm.scoring.scorer import StepScorer
from dgprm.tree.model import RewardTree


@dataclass
class ScoreReport(RunStats):
    """What one ``dgprm score`` run did."""

    steps: int = 0
    failed_steps: int = 0

    @property
    def trajectories(self) -> int:
        """Trajectories scored by this run."""
        return self.done

    def add(self, record: dict[str, Any]) -> None:
        """Count the steps of one output record, and those with errors."""
        self.steps += len(record["steps"])
        self.failed_steps += sum(step.get("error") is not None for step in record["steps"])

    def rows(self) -> list[tuple[str, str]]:
        return [
            ("trajectories", f"{self.trajectories} ({self.earlier_note()})"),
            ("steps", f"{self.steps} ({self.failed_steps} with errors)"),
            *self.usage_rows(self.steps, "step"),
            (
                "time in LLM calls",
                f"{self.ledger.llm_seconds:.1f} s (summed over concurrent calls)",
            ),
        ]


def trajectory_record(
    trajectory_id: str,
    rewards: list[StepReward],
    usage: Ledger,
    *,
    gold_labels: list[bool | None] | None = None,
) -> dict[str, Any]:
    """One output line: per-step criteria, vector, reward, label; usage; error records; the
    trajectory's gold step labels when it has them."""
    row: dict[str, Any] = {
        "id": trajectory_id,
        "steps": [r.to_dict() for r in rewards],
        "usage": usage.to_dict(),
        "errors": [{"step": r.index, "reason": r.error} for r in rewards if r.error],
    }
    if gold_labels is not None:
        row["gold_labels"] = gold_labels
    return row


async def score_record(scorer: StepScorer, trajectory: Trajectory) -> dict[str, Any]:
    """Score one trajectory into its output record (see :func:`trajectory_record`)."""
    with scorer.client.scoped() as usage:
        rewards = await scorer.ascore(trajectory.question, trajectory.steps)
    return trajectory_record(trajectory.id, rewards, usage, gold_labels=trajectory.gold_labels)


async def score_many(
    scorer: StepScorer,
    trajectories: list[Trajectory],
    out: str | Path,
    *,
    concurrency: int = 4,
    progress: Progress | None = None,
    retry_errors: bool = False,
) -> ScoreReport:
    """Score ``trajectories`` into ``out``; ids already there are skipped (resume),
    except, with ``retry_errors``, those whose record has errors: they are scored again."""
    report = ScoreReport()

    async def one(trajectory: Trajectory) -> dict[str, Any]:
        record = await score_record(scorer, trajectory)
        report.add(record)
        return record

    await run_resumable(
        trajectories,
        out,
        one,
        report,
        clients=[scorer.client],
        concurrency=concurrency,
        progress=progress,
        stage="score",
        retry_errors=retry_errors,
        kind=STEP_REWARDS,
    )
    return report


async def ascore_file(
    trajectories: str | Path | list[Trajectory],
    out: str | Path,
    *,
    tree: str | Path | RewardTree | None = None,
    llm: str | LLMClient | None = None,
    scoring: ScoringConfig | None = None,
    runtime: RuntimeConfig | None = None,
    limit: int | None = None,
    retry_errors: bool = False,
    progress: Progress | None = None,
    ray: str | None = None,
    ray_workers: int | None = None,
) -> ScoreReport:
    """Score the first ``limit`` trajectories (a JSONL path or records) on the tree into
    ``out``, resumably (see :func:`score_many`). ``tree`` may be omitted only in the
    ``no-tree`` mode; the embedder is the tree's unless the runtime names one.

    With ``ray`` (a Ray address, or ``"auto"``), the trajectories are sharded over
    ``ray_workers`` Ray workers, each with its own LLM client (:func:`dgprm.scale.run_sharded`);
    the output is the same lines."""
    scoring, runtime = scoring or ScoringConfig(), runtime or RuntimeConfig()
    sources = [trajectories if not isinstance(trajectories, list) else None]
    check_output_file(
        out, STEP_REWARDS, [*sources, tree if not isinstance(tree, RewardTree) else None]
    )
    items = records_from(
        trajectories, Trajectory, limit=limit, max_chars=runtime.max_chars, on_long=runtime.on_long
    )
    if scoring.mode != "no-tree" and tree is None:
        raise InputError("--tree is required (or use --no-tree for the plain critic ablation)")
    scorer = StepScorer.from_tree(
        tree if scoring.mode != "no-tree" else None,
        llm if isinstance(llm, LLMClient) else runtime.llm if llm is None else llm,
        config=scoring,
        runtime=runtime,
    )
    if ray is not None:
        if isinstance(llm, LLMClient):
            raise InputError("Ray workers make their own LLM clients: give an LLM spec")
        await scorer.client.aclose()  # the workers' clients do the work
        return await _score_sharded(
            scorer.tree,
            items,
            out,
            scoring,
            runtime.replace(llm=llm),
            retry_errors,
            progress,
            ray,
            ray_workers,
        )
    try:
        return await score_many(
            scorer,
            items,
            out,
            concurrency=runtime.concurrency,
            progress=progress,
            retry_errors=retry_errors,
        )
    finally:
        if not isinstance(llm, LLMClient):
            await scorer.client.aclose()


async def _score_sharded(
    tree: RewardTree | None,
    items: list[Trajectory],
    out: str | Path,
    scoring: ScoringConfig,
    runtime: RuntimeConfig,
    retry_errors: bool,
    progress: Progress | None,
    address: str,
    workers: int | None,
) -> ScoreReport:
    from dgprm.scale import run_sharded

    report = ScoreReport()
    await run_sharded(
        items,
        out,
        score_work,
        (tree, scoring, runtime),
        report,
        on_record=lambda _, record: report.add(record),
        address=address,
        workers=workers,
        concurrency=runtime.concurrency,
        progress=progress,
        stage="score",
        retry_errors=retry_errors,
    )
    return report


def score_file(
    trajectories: str | Path | list[Trajectory], out: str | Path, **options: Any
) -> ScoreReport:
    """Synchronous twin of :func:`ascore_file` (same options).

    Example:
        >>> report = score_file("traj.jsonl", "rewards.jsonl", tree="runs/tree")  # doctest: +SKIP
        >>> report.steps, report.failed_steps                                  # doctest: +SKIP
        (8, 0)
    """
    return asyncio.run(ascore_file(trajectories, out, **options))


def score_work(
    tree: RewardTree | None, scoring: ScoringConfig, runtime: RuntimeConfig
) -> Callable[[Trajectory], Awaitable[dict[str, Any]]]:
    """A worker's scorer (its own LLM client from ``runtime``): trajectory → output record."""
    scorer = StepScorer.from_tree(tree, runtime.llm, config=scoring, runtime=runtime)

    async def work(trajectory: Trajectory) -> dict[str, Any]:
        return await score_record(scorer, trajectory)

    return work
