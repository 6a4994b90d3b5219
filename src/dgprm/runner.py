"""Score many trajectories into a resumable JSONL output."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from dgprm.llm import Ledger
from dgprm.progress import NoProgress, Progress
from dgprm.records import ResumableJsonl, Trajectory, earlier_run_note, has_errors
from dgprm.scoring import StepScorer


@dataclass
class ScoreReport:
    trajectories: int = 0
    skipped: int = 0  # already in OUT
    skipped_with_errors: int = 0
    retried: int = 0  # records with errors dropped from OUT and scored again
    steps: int = 0
    failed_steps: int = 0
    wall_seconds: float = 0.0
    ledger: Ledger = field(default_factory=Ledger)

    def rows(self) -> list[tuple[str, str]]:
        return [
            (
                "trajectories",
                f"{self.trajectories} "
                f"({earlier_run_note(self.skipped, self.skipped_with_errors, self.retried)})",
            ),
            ("steps", f"{self.steps} ({self.failed_steps} with errors)"),
            *self.ledger.summary_rows(self.steps, "step"),
            ("wall time", f"{self.wall_seconds:.1f} s"),
            (
                "time in LLM calls",
                f"{self.ledger.llm_seconds:.1f} s (summed over concurrent calls)",
            ),
        ]


def trajectory_record(trajectory_id: str, rewards: list[Any], usage: Ledger) -> dict[str, Any]:
    """One output line: per-step criteria, vector, reward, label; usage; error records."""
    return {
        "id": trajectory_id,
        "steps": [r.to_dict() for r in rewards],
        "usage": usage.to_dict(),
        "errors": [{"step": r.index, "reason": r.error} for r in rewards if r.error],
    }


@contextlib.contextmanager
def long_lived_heap_frozen() -> Iterator[None]:
    """Keep the cyclic GC's full collections off every object created before the block.

    Models, trees and imported modules outlive a run. A full collection that walks them
    stops the event loop, and every request in flight with it: 0.11 s per pause over
    ~150k objects in ``benchmarks/scoring_throughput.py``, 5 % of a run's wall time at
    concurrency 32. The objects are unfrozen afterwards.

    Example:
        >>> with long_lived_heap_frozen():
        ...     gc.get_freeze_count() > 0
        True
    """
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


Item = TypeVar("Item")


async def for_each_bounded(
    items: Iterable[Item], work: Callable[[Item], Awaitable[None]], concurrency: int
) -> None:
    """Await ``work(item)`` for every item, at most ``concurrency`` at a time, with the
    long-lived heap frozen (see :func:`long_lived_heap_frozen`).

    Example:
        >>> seen = []
        >>> async def work(x):
        ...     seen.append(x)
        >>> asyncio.run(for_each_bounded([1, 2, 3], work, concurrency=2))
        >>> sorted(seen)
        [1, 2, 3]
    """
    limit = asyncio.Semaphore(concurrency)

    async def bounded(item: Item) -> None:
        async with limit:
            await work(item)

    with long_lived_heap_frozen():
        await asyncio.gather(*(bounded(item) for item in items))


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
    started = time.perf_counter()
    progress = progress or NoProgress()
    report = ScoreReport()
    ledger_before = scorer.client.ledger.copy()
    with ResumableJsonl(
        out, failed=has_errors, retry_failed=retry_errors, among={t.id for t in trajectories}
    ) as sink:
        todo = [t for t in trajectories if t.id not in sink.done]
        report.skipped = len(trajectories) - len(todo)
        report.skipped_with_errors, report.retried = sink.failed_kept, sink.retried
        progress.start("score", len(todo))

        async def one(trajectory: Trajectory) -> None:
            with scorer.client.scoped() as usage:
                rewards = await scorer.ascore(trajectory.question, trajectory.steps)
            sink.write(trajectory_record(trajectory.id, rewards, usage))
            report.trajectories += 1
            report.steps += len(rewards)
            report.failed_steps += sum(r.error is not None for r in rewards)
            progress.advance("score")

        await for_each_bounded(todo, one, concurrency)
    report.ledger = scorer.client.ledger.since(ledger_before)
    report.wall_seconds = time.perf_counter() - started
    return report
