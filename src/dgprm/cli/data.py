"""``dgprm data ...``: benchmark records → dgprm pairs and trajectories."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dgprm.cli.common import (
    CacheOpt,
    ConcurrencyOpt,
    LimitOpt,
    RetryErrorsOpt,
    TaskDataOpt,
    TaskOpt,
    console,
    print_summary,
    with_progress,
)

app = typer.Typer(help="Convert benchmark data to dgprm records.", no_args_is_help=True)

PrmbenchSourceArg = Annotated[
    Path, typer.Argument(help="A PRMBench .jsonl file or its data/ directory.")
]
FoldOpt = Annotated[
    int | None, typer.Option(help="Keep only questions hashing into this fold (0-based).")
]
FoldsOpt = Annotated[int, typer.Option(min=2, help="Number of folds.")]
OutOpt = Annotated[Path, typer.Option("-o", "--out", help="Output JSONL.")]


@app.command("prmbench-pairs")
def prmbench_pairs(
    source: PrmbenchSourceArg,
    out: OutOpt,
    fold: FoldOpt = None,
    folds: FoldsOpt = 2,
    limit: LimitOpt = None,
) -> None:
    """PRMBench records → preference pairs (original_process = chosen,
    modified_process = rejected)."""
    from dgprm.data import prmbench_pairs as convert
    from dgprm.files import PREFERENCE_PAIRS, check_output_file, write_jsonl

    check_output_file(out, PREFERENCE_PAIRS, [source])
    pairs = convert(source, fold=fold, folds=folds, limit=limit)
    count = write_jsonl(out, pairs)
    skipped = "".join(f"; skipped {n}: {why}" for why, n in sorted(pairs.skipped.items()))
    console.print(f"wrote {count} pairs to {out}{skipped}")


@app.command("prmbench-trajectories")
def prmbench_trajectories(
    source: PrmbenchSourceArg,
    out: OutOpt,
    fold: FoldOpt = None,
    folds: FoldsOpt = 2,
    limit: LimitOpt = None,
) -> None:
    """PRMBench records → trajectories (modified_question, modified_process); id =
    <classification>_<idx>."""
    from dgprm.data import prmbench_trajectories as convert
    from dgprm.files import TRAJECTORIES, check_output_file, write_jsonl

    check_output_file(out, TRAJECTORIES, [source])
    count = write_jsonl(out, convert(source, fold=fold, folds=folds, limit=limit))
    console.print(f"wrote {count} trajectories to {out}")


@app.command("processbench-trajectories")
def processbench_trajectories(
    source: Annotated[Path, typer.Argument(help="A ProcessBench subset file, e.g. gsm8k.json.")],
    out: OutOpt,
    limit: LimitOpt = None,
) -> None:
    """ProcessBench records (problem, steps) → trajectories."""
    from dgprm.data import processbench_trajectories as convert
    from dgprm.files import TRAJECTORIES, check_output_file, write_jsonl

    check_output_file(out, TRAJECTORIES, [source])
    count = write_jsonl(out, convert(source, limit=limit))
    console.print(f"wrote {count} trajectories to {out}")


@app.command("task-pairs")
def task_pairs(
    out: OutOpt,
    task: TaskOpt,
    policy: Annotated[str, typer.Option(help="Policy LLM that samples solutions (--llm spec).")],
    data: TaskDataOpt = None,
    split: Annotated[str, typer.Option(help="train | dev | test.")] = "train",
    limit: LimitOpt = None,
    n: Annotated[int, typer.Option("--n", min=2, help="Solutions sampled per question.")] = 4,
    temperature: Annotated[float, typer.Option(help="Sampling temperature (> 0).")] = 0.8,
    seed: Annotated[int, typer.Option(help="Seed of the first sample (+1 per sample).")] = 0,
    concurrency: ConcurrencyOpt = None,
    cache: CacheOpt = None,
    retry_errors: RetryErrorsOpt = False,
) -> None:
    """Preference pairs from a task's questions: for each, a correct sampled solution
    (chosen) and an incorrect one (rejected). Build a tree from them with ``dgprm tree
    build`` (in domain), or evaluate it on another task (out of domain)."""
    from dgprm.config import RuntimeConfig
    from dgprm.downstream.pairs import amake_task_pairs

    runtime = RuntimeConfig().replace(concurrency=concurrency, cache=cache)
    report = with_progress(
        lambda progress: amake_task_pairs(
            task,
            out,
            data=data,
            split=split,
            limit=limit,
            policy=policy,
            runtime=runtime,
            n=n,
            temperature=temperature,
            seed=seed,
            retry_errors=retry_errors,
            progress=progress,
        )
    )
    print_summary(f"data task-pairs ({task})", [*report.rows(), ("output", str(out))])


@app.command("task-prefixes")
def task_prefixes(
    sampled: Annotated[
        Path, typer.Argument(help="The OUT.sampled.jsonl that dgprm data task-pairs kept.")
    ],
    out: OutOpt,
    task: TaskOpt,
    data: TaskDataOpt = None,
    split: Annotated[str, typer.Option(help="The split the solutions were sampled on.")] = "train",
) -> None:
    """Prefixes for ``dgprm pairs`` at every step of the policy's sampled solutions."""
    from dgprm.downstream.pairs import prefixes_from_samples
    from dgprm.downstream.tasks import load_task

    count = prefixes_from_samples(sampled, out, records=load_task(task, data, split))
    console.print(f"wrote {count} prefixes to {out}")
