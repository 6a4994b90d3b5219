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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dgprm.bench.judges import Judgement, StepJudge, method_judges, method_prompts
from dgprm.config import RuntimeConfig, ScoringConfig
from dgprm.embed import Embedder
from dgprm.errors import InputError
from dgprm.files import check_output_dir, write_json
from dgprm.llm import make_client
from dgprm.llm.cache import Ledger
from dgprm.llm.client import LLMClient
from dgprm.progress import Progress
from dgprm.runs import RunStats, run_resumable
from dgprm.tree.model import RewardTree, tree_embedder_spec

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
class RunReport(RunStats):
    """What one benchmark invocation judged."""

    invalid: int = 0

    @property
    def items(self) -> int:
        """Items judged by this run."""
        return self.done

    def rows(self) -> list[tuple[str, str]]:
        return [
            ("items judged", f"{self.items} ({self.earlier_note()})"),
            ("invalid predictions", str(self.invalid)),
            *self.usage_rows(self.items, "item"),
        ]


def check_run_dir(run_dir: Path, inputs: list[Any]) -> None:
    """Refuse a run directory that is an input, or an existing directory that is not a
    benchmark run (dgprm writes run.json into every one)."""
    check_output_dir(run_dir, RUN_FILE, "benchmark run directory", inputs)


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


def record_invocation(
    run_dir: Path, run: dict[str, Any], report: RunReport, *, interrupted: bool = False
) -> None:
    """Append this invocation's usage to ``run.json`` (atomically), also for an
    interrupted invocation (marked so)."""
    run["invocations"].append(
        {
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "items": report.items,
            "invalid": report.invalid,
            "wall_seconds": round(report.wall_seconds, 3),
            "usage": report.ledger.to_dict(),
            **({"interrupted": True} if interrupted else {}),
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
    report: RunReport | None = None,
) -> RunReport:
    """Judge every task not yet in ``out`` (its ``key`` field) and append its record;
    with ``retry_errors``, the tasks whose record has an error are judged again. The
    counts go to ``report`` (a new one by default), also when the run is interrupted."""
    report = report if report is not None else RunReport()

    async def one(task: Task) -> dict[str, Any]:
        judgement = await task.judge.judge(task.question, task.steps)
        report.invalid += not judgement.valid
        return to_record(task, judgement)

    await run_resumable(
        tasks,
        out,
        one,
        report,
        key=key,
        clients=[client] if client is not None else [],
        concurrency=concurrency,
        progress=progress,
        stage="judge",
        retry_errors=retry_errors,
    )
    return report


def method_config(
    method: str,
    trees: list[RewardTree],
    tree_paths: list[str | Path],
    scoring: ScoringConfig,
    runtime: RuntimeConfig,
    client: LLMClient,
    **selection: Any,
) -> dict[str, Any]:
    """The configuration of a benchmark run (``run.json``): method, models, trees, scoring
    hyper-parameters, prompt versions and the item selection. A run directory started with
    another configuration is refused (:func:`start_run`)."""
    return {
        "method": method,
        "llm": runtime.llm,
        "model": client.model_id,
        "embedder": tree_embedder_spec(trees[0], runtime.embedder) if trees else None,
        "trees": [
            {
                "path": str(p),
                "nodes": len(t.nodes),
                "tree_sha256": t.manifest.get("files", {}).get("tree.json"),
            }
            for p, t in zip(tree_paths, trees, strict=True)
        ],
        "merge_r_phi": scoring.merge_r_phi,
        "score_mode": scoring.score_mode,
        "hyperparameters": {
            **{k: getattr(scoring, k) for k in ("mu", "zeta", "agg", "threshold")},
            "seed": runtime.seed,
            "temperature": runtime.temperature,
            "prefilter_parents": scoring.prefilter_parents,
        },
        "prompts": method_prompts(method),
        **selection,
    }


async def judge_method(
    out: Path,
    *,
    method: str,
    trees: list[RewardTree],
    tree_paths: list[str | Path],
    scoring: ScoringConfig,
    runtime: RuntimeConfig,
    client: LLMClient | None,
    embedder: Embedder | None = None,
    selection: dict[str, Any],
    make_tasks: Callable[[list[StepJudge]], list[Task]],
    key: str,
    to_record: Callable[[Task, Judgement], dict[str, Any]],
    retry_errors: bool = False,
    progress: Progress | None = None,
) -> tuple[RunReport, str]:
    """Judge a benchmark's tasks with ``method`` into the run directory ``out``: start (or
    reopen) the run, judge what is not done yet, log the invocation in ``run.json``.

    ``make_tasks`` turns the method's judges (one per tree for dgprm) into the tasks.
    ``client`` overrides the LLM made from ``runtime`` (and is then not closed). Returns
    this invocation's report and the id of the model that judged.
    """
    own = client is None
    client = client or make_client(runtime)
    try:
        judges = method_judges(method, trees, client, scoring, runtime, embedder)
        run = start_run(
            out, method_config(method, trees, tree_paths, scoring, runtime, client, **selection)
        )
        report = RunReport()
        finished = False
        try:
            await judge_all(
                make_tasks(judges),
                out / PREDICTIONS,
                key=key,
                to_record=to_record,
                client=client,
                concurrency=runtime.concurrency,
                progress=progress,
                retry_errors=retry_errors,
                report=report,
            )
            finished = True
        finally:
            record_invocation(out, run, report, interrupted=not finished)
    finally:
        if own:
            await client.aclose()
    return report, client.model_id
