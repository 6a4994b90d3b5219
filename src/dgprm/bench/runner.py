"""Run a step judge over benchmark items into a resumable run directory.

A run directory holds ``predictions.jsonl`` (appended as items finish, so an
interrupted run continues where it stopped), ``run.json`` (configuration,
models and token usage of every invocation) and the results. A directory
started with another configuration is refused rather than mixed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dgprm.bench.methods import Judgement, StepJudge
from dgprm.llm import Ledger, LLMClient
from dgprm.progress import NoProgress, Progress
from dgprm.records import (
    InputError,
    ResumableJsonl,
    earlier_run_note,
    has_errors,
    write_json,
)
from dgprm.runner import for_each_bounded

PREDICTIONS = "predictions.jsonl"
RUN_FILE = "run.json"


@dataclass(frozen=True)
class Task:
    """One solution to judge, and the judge to use (cross-fitting varies it per item)."""

    id: str
    question: str
    steps: list[str]
    judge: StepJudge


@dataclass
class RunReport:
    items: int = 0
    skipped: int = 0  # already in the run
    skipped_with_errors: int = 0
    retried: int = 0  # predictions with errors dropped and judged again
    invalid: int = 0
    wall_seconds: float = 0.0
    ledger: Ledger = field(default_factory=Ledger)

    def rows(self) -> list[tuple[str, str]]:
        return [
            (
                "items judged",
                f"{self.items} "
                f"({earlier_run_note(self.skipped, self.skipped_with_errors, self.retried)})",
            ),
            ("invalid predictions", str(self.invalid)),
            *self.ledger.summary_rows(self.items, "item"),
            ("wall time", f"{self.wall_seconds:.1f} s"),
        ]


def start_run(run_dir: Path, config: dict[str, Any]) -> dict[str, Any]:
    """Create or reopen ``run_dir``; refuse one started with a different ``config``."""
    path = run_dir / RUN_FILE
    if path.exists():
        try:
            run = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}: invalid JSON: {exc}") from None
        old = run.get("config", {})
        changed = sorted(k for k in set(old) | set(config) if old.get(k) != config.get(k))
        if changed:
            raise InputError(
                f"{run_dir} was started with another configuration (differs in "
                f"{', '.join(changed)}); use a new -o directory"
            )
        return run
    run_dir.mkdir(parents=True, exist_ok=True)
    run = {"config": config, "invocations": []}
    write_json(path, run)
    return run


def record_invocation(run_dir: Path, run: dict[str, Any], report: RunReport) -> None:
    """Append this invocation's usage to ``run.json`` (atomically)."""
    run["invocations"].append(
        {
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "items": report.items,
            "invalid": report.invalid,
            "wall_seconds": round(report.wall_seconds, 3),
            "usage": report.ledger.to_dict(),
        }
    )
    total = Ledger()
    for invocation in run["invocations"]:
        total.add(Ledger(**invocation["usage"]))
    run["usage"] = total.to_dict()
    write_json(run_dir / RUN_FILE, run)


async def judge_all(
    tasks: list[Task],
    out: Path,
    *,
    key: str,
    to_record: Callable[[Task, Judgement], dict[str, Any]],
    client: LLMClient | None,
    concurrency: int = 4,
    progress: Progress | None = None,
    retry_errors: bool = False,
) -> RunReport:
    """Judge every task not yet in ``out`` (its ``key`` field) and append its record;
    with ``retry_errors``, the tasks whose record has an error are judged again."""
    started = time.perf_counter()
    progress = progress or NoProgress()
    report = RunReport()
    before = client.ledger.copy() if client else Ledger()
    with ResumableJsonl(
        out, key=key, failed=has_errors, retry_failed=retry_errors, among={t.id for t in tasks}
    ) as sink:
        todo = [t for t in tasks if t.id not in sink.done]
        report.skipped = len(tasks) - len(todo)
        report.skipped_with_errors, report.retried = sink.failed_kept, sink.retried
        progress.start("judge", len(todo))

        async def one(task: Task) -> None:
            judgement = await task.judge.judge(task.question, task.steps)
            sink.write(to_record(task, judgement))
            report.items += 1
            report.invalid += not judgement.valid
            progress.advance("judge")

        await for_each_bounded(todo, one, concurrency)
    if client is not None:
        report.ledger = client.ledger.since(before)
    report.wall_seconds = time.perf_counter() - started
    return report
