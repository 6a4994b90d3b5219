"""``dgprm bench prmbench | processbench``: a step judge on a benchmark (or someone
else's predictions) into a resumable run directory, with the official metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from dgprm.cli.common import (
    CacheOpt,
    ConcurrencyOpt,
    ConfigOpt,
    EmbedderOpt,
    LimitOpt,
    LlmOpt,
    RetryErrorsOpt,
    TaskDataOpt,
    TaskOpt,
    TimeoutOpt,
    console,
    load_settings,
    print_summary,
    runtime_overrides,
    with_progress,
)
from dgprm.cli.score import MergeOpt, ScoreModeOpt, ThresholdOpt
from dgprm.errors import InputError

app = typer.Typer(
    help="PRMBench and ProcessBench with their official metrics.", no_args_is_help=True
)

MethodOpt = Annotated[
    str, typer.Option(help="dgprm (tree-based step rewards) or critic (one LLM call per item).")
]
RunDirOpt = Annotated[Path, typer.Option("-o", "--out", help="Run directory (resumable).")]
CalibrateOpt = Annotated[
    Path | None,
    typer.Option(
        "--calibrate-on",
        help="Another dgprm run directory (e.g. the other fold): use the threshold that "
        "maximises this benchmark's objective on its predictions (never tuned on the "
        "evaluated items).",
    ),
]


def _print_leaderboard(rows: list[tuple[str, list[float | None]]], label: str) -> None:
    from dgprm.bench.prmbench import TABLE_COLUMNS

    table = Table(title="PRMBench (PRMScore ×100; published rows from the leaderboard)")
    table.add_column("model", no_wrap=True, max_width=30)
    for column in TABLE_COLUMNS:
        table.add_column(column.replace("_avg", ""), justify="right", no_wrap=True)
    for name, values in rows:
        style = "bold red" if name == label else None
        cells = ["–" if v is None else f"{v:.1f}" for v in values]
        table.add_row(name, *cells, style=style)
    wide = Console()
    if not wide.is_terminal:
        wide = Console(width=170)
    wide.print(table)


def _print_prmbench(result) -> None:
    _print_leaderboard(result.rows, result.label)
    results, run_dir = result.results, result.run_dir
    valid = results["valid_rate"]
    console.print(
        f"{results['valid']}/{results['predictions']} predictions valid "
        f"({'–' if valid is None else f'{100 * valid:.1f} %'}), {results['items']} items in "
        f"the data; wrote {run_dir / 'results.json'} and {run_dir / 'chart.png'}"
    )


@app.command("prmbench")
def prmbench(
    out: RunDirOpt,
    data: Annotated[
        Path | None,
        typer.Option(
            help="PRMBench root (with data/), a data dir or a .jsonl file. "
            "Default: the packaged sample."
        ),
    ] = None,
    method: MethodOpt = "dgprm",
    tree: Annotated[
        list[Path] | None,
        typer.Option("--tree", help="Reward tree; give two (one per fold) for a 2-fold cross-fit."),
    ] = None,
    predictions: Annotated[
        Path | None,
        typer.Option(
            help="Score this predictions file (PRMBench output format) instead of running a method."
        ),
    ] = None,
    subset400: Annotated[
        bool, typer.Option("--subset400", help="The paper's 394-item subset.")
    ] = False,
    categories: Annotated[
        str | None, typer.Option(help="Comma-separated classifications, e.g. circular,deception.")
    ] = None,
    limit: Annotated[
        int | None, typer.Option(min=1, help="First N items of each category.")
    ] = None,
    fold: Annotated[
        int | None, typer.Option(help="Evaluate only questions hashing into this fold (of 2).")
    ] = None,
    merge_r_phi: MergeOpt = False,
    score_mode: ScoreModeOpt = None,
    threshold: ThresholdOpt = None,
    calibrate_on: CalibrateOpt = None,
    config: ConfigOpt = None,
    llm: LlmOpt = None,
    embedder: EmbedderOpt = None,
    concurrency: ConcurrencyOpt = None,
    cache: CacheOpt = None,
    timeout: TimeoutOpt = None,
    retry_errors: RetryErrorsOpt = False,
) -> None:
    """PRMBench with the official metric; results beside the published leaderboard.

    Writes RUN_DIR/predictions.jsonl (PRMBench's output format), results.json,
    chart.png and run.json. Re-running the same command continues an
    interrupted run.
    """
    from dgprm.bench import prmbench as bench

    if predictions is not None:
        if tree or method != "dgprm" or limit or categories or fold is not None or retry_errors:
            raise InputError(
                "--predictions scores a file; method, tree, selection and retry options "
                "do not apply"
            )
        _print_prmbench(
            bench.evaluate_predictions(predictions, out, data=data, subset400=subset400)
        )
        return
    settings = load_settings(
        config,
        runtime=runtime_overrides(
            llm=llm, embedder=embedder, concurrency=concurrency, cache=cache, timeout=timeout
        ),
        scoring={
            "merge_r_phi": merge_r_phi or None,
            "score_mode": score_mode,
            "threshold": threshold,
        },
    )
    result = with_progress(
        lambda progress: bench.arun(
            out,
            data=data,
            method=method,
            trees=tree or [],
            subset400=subset400,
            categories=[c.strip() for c in categories.split(",")] if categories else None,
            limit=limit,
            fold=fold,
            calibrate_on=calibrate_on,
            scoring=settings.scoring,
            runtime=settings.runtime,
            retry_errors=retry_errors,
            progress=progress,
        )
    )
    assert result.report is not None
    empty = [("steps empty in the data", f"{result.empty_steps} (shown as '(empty step)')")]
    print_summary(
        f"bench prmbench ({method})",
        [*result.report.rows(), *(empty if result.empty_steps else [])],
    )
    _print_prmbench(result)


@app.command("processbench")
def processbench(
    out: RunDirOpt,
    subset: Annotated[
        list[str] | None,
        typer.Option(help="gsm8k | math | olympiadbench | omnimath (repeatable; default gsm8k)."),
    ] = None,
    data: Annotated[
        Path | None,
        typer.Option(help="ProcessBench directory with <subset>.json. Default: packaged sample."),
    ] = None,
    method: MethodOpt = "dgprm",
    tree: Annotated[Path | None, typer.Option(help="Reward tree (--method dgprm).")] = None,
    limit: LimitOpt = None,
    merge_r_phi: MergeOpt = False,
    score_mode: ScoreModeOpt = None,
    threshold: ThresholdOpt = None,
    calibrate_on: CalibrateOpt = None,
    config: ConfigOpt = None,
    llm: LlmOpt = None,
    embedder: EmbedderOpt = None,
    concurrency: ConcurrencyOpt = None,
    cache: CacheOpt = None,
    timeout: TimeoutOpt = None,
    retry_errors: RetryErrorsOpt = False,
) -> None:
    """ProcessBench with its official metric: F1 of finding the first wrong step.

    Prediction = first step judged incorrect (−1 if none); acc_err, acc_cor and their
    harmonic mean F1 per subset, and the average F1.
    """
    from dgprm.bench import processbench as bench

    settings = load_settings(
        config,
        runtime=runtime_overrides(
            llm=llm, embedder=embedder, concurrency=concurrency, cache=cache, timeout=timeout
        ),
        scoring={
            "merge_r_phi": merge_r_phi or None,
            "score_mode": score_mode,
            "threshold": threshold,
        },
    )
    result = with_progress(
        lambda progress: bench.arun(
            out,
            data=data,
            subsets=subset or ["gsm8k"],
            method=method,
            tree=tree,
            limit=limit,
            calibrate_on=calibrate_on,
            scoring=settings.scoring,
            runtime=settings.runtime,
            retry_errors=retry_errors,
            progress=progress,
        )
    )
    print_summary(f"bench processbench ({method})", result.report.rows())
    table = Table(title=f"ProcessBench ({method}, {result.model})")
    for column in ("subset", "acc_err", "acc_cor", "F1", "items", "unparseable"):
        table.add_column(column, justify="right")
    for name, r in result.results.items():
        if name != "average_f1":
            table.add_row(
                name,
                f"{r['acc_err']:.1f}",
                f"{r['acc_cor']:.1f}",
                f"{r['f1']:.1f}",
                str(r["items"]),
                str(r["unparseable"]),
            )
    table.add_row("average", "", "", f"{result.results['average_f1']:.1f}", "", "")
    Console().print(table)


def _csv(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip())


def _ints(text: str, option: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in _csv(text))
    except ValueError:
        raise InputError(f"{option}: expected comma-separated integers, got {text!r}") from None


@app.command("downstream")
def downstream(
    out: RunDirOpt,
    task: TaskOpt,
    data: TaskDataOpt = None,
    split: Annotated[str, typer.Option(help="train | dev | test (as the task provides).")] = "test",
    limit: LimitOpt = None,
    policy: Annotated[
        str, typer.Option(help="Policy LLM that solves the questions: any --llm spec or hf:DIR.")
    ] = "embedded",
    tree: Annotated[Path | None, typer.Option(help="Reward tree (PRM dgprm).")] = None,
    prm: Annotated[
        str, typer.Option(help="PRMs to compare: dgprm,critic,orm,none.")
    ] = "none,critic",
    strategy: Annotated[
        str, typer.Option(help="majority,best-of-n,weighted,beam (greedy is always run).")
    ] = "majority,best-of-n,weighted,beam",
    n: Annotated[
        str, typer.Option("--n", help="Numbers of samples, e.g. 1,4,8 (paired).")
    ] = "1,4,8",
    agg: Annotated[
        str, typer.Option(help="Solution score from step rewards for best-of-n/weighted.")
    ] = "min,last,prod,mean",
    temperature: Annotated[float, typer.Option(help="Policy sampling temperature.")] = 0.8,
    seed: Annotated[int, typer.Option(help="Seed of the first sample (+1 per sample).")] = 0,
    max_tokens: Annotated[int, typer.Option(min=16, help="Tokens per sampled solution.")] = 384,
    max_steps: Annotated[int, typer.Option(min=1, help="Steps a solution may have.")] = 8,
    beam_expansions: Annotated[int, typer.Option(min=1, help="Beam: expansions per beam.")] = 4,
    merge_r_phi: MergeOpt = False,
    score_mode: ScoreModeOpt = None,
    config: ConfigOpt = None,
    llm: LlmOpt = None,
    embedder: EmbedderOpt = None,
    concurrency: ConcurrencyOpt = None,
    cache: CacheOpt = None,
    timeout: TimeoutOpt = None,
    retry_errors: RetryErrorsOpt = False,
) -> None:
    """Downstream accuracy of a policy guided by a PRM: greedy, majority vote, best-of-N and
    weighted vote over N sampled solutions (paired: smaller N are prefixes), and PRM-guided
    step-level beam search, with 95 % intervals and the LLM cost of each strategy.

    Writes RUN/predictions.jsonl, results.json, chart.png and run.json (resumable).
    """
    from dgprm.downstream import bench as downstream_bench
    from dgprm.downstream.bench import DownstreamOptions
    from dgprm.downstream.results import TABLE_HEADER, table_rows

    settings = load_settings(
        config,
        runtime=runtime_overrides(
            llm=llm,
            embedder=embedder,
            concurrency=concurrency,
            cache=cache,
            timeout=timeout,
        ),
        scoring={"merge_r_phi": merge_r_phi or None, "score_mode": score_mode},
    )
    options = DownstreamOptions(
        task=task,
        prms=_csv(prm),
        strategies=_csv(strategy),
        ns=_ints(n, "--n"),
        aggs=_csv(agg),
        temperature=temperature,
        seed=seed,
        max_tokens=max_tokens,
        max_steps=max_steps,
        beam_expansions=beam_expansions,
        concurrency=settings.runtime.concurrency,
    )
    report = with_progress(
        lambda progress: downstream_bench.arun(
            out,
            options=options,
            data=data,
            split=split,
            limit=limit,
            policy=policy,
            tree=tree,
            scoring=settings.scoring,
            runtime=settings.runtime,
            retry_errors=retry_errors,
            progress=progress,
        )
    )
    print_summary(f"bench downstream ({task})", report.rows())
    table = Table(
        title=f"{task}: accuracy (%, 95 % interval) and cost per question",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
    )
    for column in TABLE_HEADER:  # fits 80 columns
        table.add_column(column, justify="right", no_wrap=True, min_width=len(column))
    for row in table_rows(report.results):
        table.add_row(*map(str, row))
    Console().print(table)
