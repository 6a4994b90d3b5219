"""``dgprm bench prmbench`` and ``dgprm bench processbench``: run a step judge on a
benchmark (or score someone else's predictions) into a resumable run directory."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from dgprm.cli import (
    CacheOpt,
    ConcurrencyOpt,
    ConfigOpt,
    EmbedderOpt,
    LimitOpt,
    LlmOpt,
    RetryErrorsOpt,
    console,
    make_client,
    run_with_progress,
    settings_from,
    summary_table,
    tree_settings,
)
from dgprm.config import Settings
from dgprm.records import InputError, file_sha256

bench_app = typer.Typer(
    help="PRMBench and ProcessBench with their official metrics.", no_args_is_help=True
)

MethodOpt = Annotated[
    str, typer.Option(help="dgprm (tree-based step rewards) or critic (one LLM call per item).")
]
TreeOpt = Annotated[
    list[Path] | None,
    typer.Option("--tree", help="Reward tree; give two (one per fold) for a 2-fold cross-fit."),
]
RunDirOpt = Annotated[Path, typer.Option("-o", "--out", help="Run directory (resumable).")]
MergeOpt = Annotated[bool, typer.Option("--merge-r-phi", help="dgprm: one LLM call for R and Φ.")]


def _load_trees(method: str, trees: list[Path]) -> list[Any]:
    """Check ``method`` against ``trees`` and load the trees (each once)."""
    from dgprm.tree import RewardTree

    if method not in ("dgprm", "critic"):
        raise InputError(f"unknown method {method!r}; choose dgprm or critic")
    if method == "critic" and trees:
        raise InputError("--method critic takes no --tree")
    if method == "dgprm" and not trees:
        raise InputError("--method dgprm needs --tree")
    return [RewardTree.load(t) for t in trees]


def _judges(method: str, trees: list[Any], settings: Settings, merge: bool, client: Any) -> list:
    """The judge(s) for ``method``: one per loaded tree for dgprm, one critic otherwise."""
    from dgprm.bench.methods import CriticJudge, DgprmJudge
    from dgprm.embed import make_embedder
    from dgprm.scoring import StepScorer

    if method == "critic":
        return [CriticJudge(client, settings)]
    embedder = make_embedder(settings.embedder)
    return [
        DgprmJudge(StepScorer(t, client, embedder, settings, merge_select_analyze=merge))
        for t in trees
    ]


def _run_config(
    method: str,
    trees: list[Any],
    tree_paths: list[Path],
    settings: Settings,
    merge: bool,
    client: Any,
    **selection: Any,
) -> dict[str, Any]:
    from dgprm.bench.methods import CriticJudge
    from dgprm.prompts import template_versions
    from dgprm.scoring import PROMPTS

    return {
        "method": method,
        "llm": settings.llm,
        "model": client.model_id,
        "embedder": settings.embedder if trees else None,
        "trees": [
            {"path": str(p), "built_from": t.manifest.get("input"), "nodes": len(t.nodes)}
            for p, t in zip(tree_paths, trees, strict=True)
        ],
        "merge_r_phi": merge,
        "hyperparameters": {
            k: getattr(settings, k)
            for k in ("mu", "zeta", "agg", "threshold", "seed", "temperature", "prefilter_parents")
        },
        "prompts": template_versions(*(PROMPTS if method == "dgprm" else (CriticJudge.prompt,))),
        **selection,
    }


def _bench_settings(
    config: Path | None, trees: list[Any], embedder: str | None, **overrides: Any
) -> Settings:
    settings = settings_from(config, embedder=embedder, **overrides)
    return tree_settings(settings, trees[0] if trees else None, embedder or config)


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


def _finish_prmbench(
    run_dir: Path, predictions: Path, items: dict[str, Any], source: Any, label: str
) -> None:
    from dgprm.bench.metrics import prmbench_results
    from dgprm.bench.prmbench import (
        leaderboard_path,
        load_leaderboard,
        read_predictions,
        save_chart,
        table_rows,
    )
    from dgprm.records import write_json

    results = prmbench_results(items, read_predictions(predictions))
    results["label"] = label
    write_json(run_dir / "results.json", results)
    rows = table_rows(results, label, load_leaderboard(leaderboard_path(source)))
    _print_leaderboard(rows, label)
    save_chart(run_dir / "chart.png", rows, label)
    valid = results["valid_rate"]
    console.print(
        f"{results['valid']}/{results['predictions']} predictions valid "
        f"({'–' if valid is None else f'{100 * valid:.1f} %'}), {results['items']} items in "
        f"the data; wrote {run_dir / 'results.json'} and {run_dir / 'chart.png'}"
    )


def _judge_into(
    out: Path,
    run: dict[str, Any],
    tasks: list[Any],
    key: str,
    to_record: Any,
    client: Any,
    settings: Settings,
    title: str,
    retry_errors: bool,
) -> None:
    """Judge the tasks not yet in OUT/predictions.jsonl (and, with ``retry_errors``, those
    whose prediction has an error), log usage in run.json, print a summary."""
    from dgprm.bench.runner import PREDICTIONS, judge_all, record_invocation

    report = run_with_progress(
        client,
        lambda progress: judge_all(
            tasks,
            out / PREDICTIONS,
            key=key,
            to_record=to_record,
            client=client,
            concurrency=settings.concurrency,
            progress=progress,
            retry_errors=retry_errors,
        ),
    )
    record_invocation(out, run, report)
    console.print(summary_table(title, report.rows()))


@bench_app.command("prmbench")
def bench_prmbench(
    out: RunDirOpt,
    data: Annotated[
        Path | None,
        typer.Option(
            help="PRMBench root (with data/), a data dir or a .jsonl file. "
            "Default: the packaged sample."
        ),
    ] = None,
    method: MethodOpt = "dgprm",
    tree: TreeOpt = None,
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
    limit: Annotated[int | None, typer.Option(help="First N items of each category.")] = None,
    fold: Annotated[
        int | None, typer.Option(help="Evaluate only questions hashing into this fold (of 2).")
    ] = None,
    merge_r_phi: MergeOpt = False,
    config: ConfigOpt = None,
    llm: LlmOpt = None,
    embedder: EmbedderOpt = None,
    concurrency: ConcurrencyOpt = None,
    cache: CacheOpt = None,
    retry_errors: RetryErrorsOpt = False,
) -> None:
    """PRMBench with the official metric; results beside the published leaderboard.

    Writes RUN_DIR/predictions.jsonl (PRMBench's output format), results.json,
    chart.png and run.json. Re-running the same command continues an
    interrupted run.
    """
    from dgprm.bench.prmbench import (
        assign_trees,
        metric_items,
        prediction_record,
        prmbench_records,
        resolve_source,
        select_records,
    )
    from dgprm.bench.runner import PREDICTIONS, Task, start_run
    from dgprm.data import fold_key, prmbench_question, question_fold

    source = resolve_source(data, subset400=subset400)
    records = prmbench_records(source)
    if predictions is not None:
        if tree or method != "dgprm" or limit or categories or fold is not None or retry_errors:
            raise InputError(
                "--predictions scores a file; method, tree, selection and retry options "
                "do not apply"
            )
        if not predictions.is_file():
            raise InputError(f"{predictions}: no such file")
        start_run(
            out,
            {
                "predictions": str(predictions),
                "sha256": file_sha256(predictions),
                "data": str(source.records),
            },
        )
        label = predictions.stem
        _finish_prmbench(out, predictions, metric_items(records), source, label)
        return

    trees = tree or []
    if fold is not None and fold not in (0, 1):
        raise InputError(f"fold {fold} is outside 0..1")
    wanted = [c.strip() for c in categories.split(",")] if categories else None
    in_fold = [(i, r) for i, r in records if fold is None or question_fold(fold_key(r)) == fold]
    selected = select_records(in_fold, categories=wanted, limit=limit)
    if not selected:
        raise InputError("no PRMBench items selected")
    loaded = _load_trees(method, trees)
    settings = _bench_settings(
        config, loaded, embedder, llm=llm, concurrency=concurrency, cache=cache
    )
    client = make_client(settings)
    judges = _judges(method, loaded, settings, merge_r_phi, client)
    which = (
        assign_trees(list(zip(map(str, trees), loaded, strict=True)), selected, dict(records))
        if loaded
        else {}
    )
    run_config = _run_config(
        method,
        loaded,
        trees,
        settings,
        merge_r_phi,
        client,
        data=str(source.records),
        subset400=subset400,
        categories=wanted,
        limit=limit,
        fold=fold,
    )
    run = start_run(out, run_config)
    tasks = [
        Task(item_id, prmbench_question(r), r["modified_process"], judges[which.get(item_id, 0)])
        for item_id, r in selected
    ]
    _judge_into(
        out,
        run,
        tasks,
        "idx",
        lambda task, j: prediction_record(task.id, j),
        client,
        settings,
        f"bench prmbench ({method})",
        retry_errors,
    )
    model = (
        client.model_id.split(":")[1] if client.model_id.startswith("gguf:") else client.model_id
    )
    label = f"dgprm-{method} ({model.removesuffix('.gguf')})"
    _finish_prmbench(out, out / PREDICTIONS, metric_items(selected), source, label)


@bench_app.command("processbench")
def bench_processbench(
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
    config: ConfigOpt = None,
    llm: LlmOpt = None,
    embedder: EmbedderOpt = None,
    concurrency: ConcurrencyOpt = None,
    cache: CacheOpt = None,
    retry_errors: RetryErrorsOpt = False,
) -> None:
    """ProcessBench with its official metric: F1 of finding the first wrong step.

    Prediction = first step judged incorrect (−1 if none); acc_err, acc_cor and their
    harmonic mean F1 per subset, and the average F1.
    """
    from dgprm.bench.processbench import prediction_record, results_by_subset, subset_file
    from dgprm.bench.runner import PREDICTIONS, Task, start_run
    from dgprm.data import processbench_items
    from dgprm.records import iter_json_lines, write_json

    subsets = subset or ["gsm8k"]
    files = {s: subset_file(data, s) for s in subsets}
    trees = [tree] if tree else []
    loaded = _load_trees(method, trees)
    settings = _bench_settings(
        config, loaded, embedder, llm=llm, concurrency=concurrency, cache=cache
    )
    client = make_client(settings)
    judges = _judges(method, loaded, settings, merge_r_phi, client)
    run = start_run(
        out,
        _run_config(
            method,
            loaded,
            trees,
            settings,
            merge_r_phi,
            client,
            data={s: str(f) for s, f in files.items()},
            limit=limit,
        ),
    )
    items = {s: processbench_items(f)[:limit] for s, f in files.items()}
    by_id = {i["id"]: (s, i) for s, rows in items.items() for i in rows}
    tasks = [
        Task(i["id"], i["problem"], i["steps"], judges[0]) for rows in items.values() for i in rows
    ]
    _judge_into(
        out,
        run,
        tasks,
        "id",
        lambda task, j: prediction_record(by_id[task.id][1], by_id[task.id][0], j),
        client,
        settings,
        f"bench processbench ({method})",
        retry_errors,
    )
    rows = [row for _, row in iter_json_lines(out / PREDICTIONS)]
    results = results_by_subset(r for r in rows if r["id"] in by_id)
    write_json(out / "results.json", results)
    table = Table(title=f"ProcessBench ({method}, {client.model_id})")
    for column in ("subset", "acc_err", "acc_cor", "F1", "items", "unparseable"):
        table.add_column(column, justify="right")
    for name, r in results.items():
        if name != "average_f1":
            table.add_row(
                name,
                f"{r['acc_err']:.1f}",
                f"{r['acc_cor']:.1f}",
                f"{r['f1']:.1f}",
                str(r["items"]),
                str(r["unparseable"]),
            )
    table.add_row("average", "", "", f"{results['average_f1']:.1f}", "", "")
    Console().print(table)
