"""PRMBench: items, predictions in the official output format, tree leakage checks,
the leaderboard table and chart.

Data layout (``../shared/data/prmbench``): ``data/*.jsonl`` (25 files),
``subset400/target_data.jsonl`` and ``published/leaderboard_main_table.json``.
A single ``.jsonl`` file or a directory of them also works; the published
table then comes from the copy shipped with dgprm.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from dgprm.bench.calibrate import prmbench_threshold
from dgprm.bench.judges import Judgement, check_method
from dgprm.bench.metrics import (
    COLUMNS,
    CORRECT,
    Item,
    Prediction,
    leaderboard_row,
    prmbench_results,
)
from dgprm.bench.rundir import (
    PREDICTIONS,
    RunReport,
    Task,
    check_run_dir,
    judge_method,
    start_run,
)
from dgprm.config import RuntimeConfig, ScoringConfig
from dgprm.data import (
    EMPTY_STEP,
    benchmark_steps,
    fold_key,
    prmbench_items,
    prmbench_question,
    question_fold,
)
from dgprm.embed import Embedder
from dgprm.errors import InputError
from dgprm.files import file_sha256, write_json
from dgprm.llm.client import LLMClient
from dgprm.progress import Progress
from dgprm.records import iter_json_lines
from dgprm.tree.model import RewardTree

VALIDITY = "step_level_validity_labels"
REDUNDANCY = "step_level_redundancy_labels"
LEADERBOARD = "leaderboard_main_table.json"


@dataclass(frozen=True)
class Source:
    """Where the records come from, and where the published table is."""

    records: Path
    leaderboard: Path | None


def resolve_source(data: Path | None, *, subset400: bool = False) -> Source:
    """Resolve ``--data`` (PRMBench root, its ``data/`` dir, or one file; default: the
    packaged sample) and ``--subset400``."""
    packaged = resources.files("dgprm.samples")
    if data is None:
        if subset400:
            raise InputError("--subset400 needs --data pointing at the PRMBench root")
        return Source(Path(str(packaged.joinpath("prmbench_records.jsonl"))), None)
    if not data.exists():
        raise InputError(f"{data}: no such file or directory")
    root = data if (data / "data").is_dir() else None
    published = root / "published" / LEADERBOARD if root else None
    if subset400:
        if root is None or not (root / "subset400" / "target_data.jsonl").is_file():
            raise InputError(f"{data}: no subset400/target_data.jsonl (give the PRMBench root)")
        records = root / "subset400" / "target_data.jsonl"
    else:
        records = root / "data" if root else data
    return Source(records, published if published and published.is_file() else None)


def leaderboard_path(source: Source) -> Path:
    """The published table: the data's own copy, else the one shipped with dgprm."""
    if source.leaderboard is not None:
        return source.leaderboard
    return Path(str(resources.files("dgprm.samples").joinpath("prmbench_leaderboard.json")))


def metric_items(records: Iterable[tuple[str, dict[str, Any]]]) -> dict[str, Item]:
    """Metric items from ``(item_id, record)``: one per record, plus ``correct_<idx>``
    (the original process, no error steps) for each ``redundency`` record."""
    items: dict[str, Item] = {}
    for item_id, record in records:
        items[item_id] = Item(
            item_id,
            record["classification"],
            tuple(int(e) for e in record["error_steps"]),
            len(record["modified_process"]),
        )
        if record["classification"] == "redundency":
            correct_id = f"{CORRECT}_{record['idx']}"
            items.setdefault(
                correct_id, Item(correct_id, CORRECT, (), len(record["original_process"]))
            )
    return items


def select_records(
    records: Iterable[tuple[str, dict[str, Any]]],
    *,
    categories: list[str] | None = None,
    limit: int | None = None,
) -> list[tuple[str, dict[str, Any]]]:
    """Keep the named ``categories`` and at most ``limit`` records of each, in file order."""
    known = set(COLUMNS.values())
    for name in categories or []:
        if name not in known:
            raise InputError(f"unknown category {name!r}; choose from {', '.join(sorted(known))}")
    taken: Counter[str] = Counter()
    chosen = []
    for item_id, record in records:
        name = record["classification"]
        if (categories and name not in categories) or (limit is not None and taken[name] >= limit):
            continue
        taken[name] += 1
        chosen.append((item_id, record))
    return chosen


def prediction_record(item_id: str, judgement: Judgement) -> dict[str, Any]:
    """One line of PRMBench's output format (plus ``error``/``detail`` for inspection)."""
    scores: dict[str, Any] = {VALIDITY: judgement.labels}
    if judgement.redundancy is not None:
        scores[REDUNDANCY] = judgement.redundancy
    row: dict[str, Any] = {"idx": item_id, "scores": scores, "validity": judgement.valid}
    if judgement.error:
        row["error"] = judgement.error
    if judgement.detail:
        row["detail"] = judgement.detail
    return row


def _bool_list(value: Any, where: str, name: str) -> list[bool]:
    if not isinstance(value, list) or not all(isinstance(v, bool) for v in value):
        raise InputError(f"{where}: field 'scores.{name}': expected a list of booleans")
    return value


def read_predictions(path: str | Path) -> Iterator[Prediction]:
    """Predictions in PRMBench's output format; bad lines raise file:line:field errors."""
    for number, row in iter_json_lines(path):
        where = f"{path}:{number}"
        if "idx" not in row:
            raise InputError(f"{where}: field 'idx': missing")
        valid = row.get("validity", True)
        if not isinstance(valid, bool):
            raise InputError(f"{where}: field 'validity': expected true or false")
        if not valid:
            yield Prediction(str(row["idx"]), False, [])
            continue
        scores = row.get("scores")
        if not isinstance(scores, dict):
            raise InputError(f"{where}: field 'scores': missing or not an object")
        if VALIDITY not in scores:
            raise InputError(f"{where}: field 'scores.{VALIDITY}': missing")
        labels = _bool_list(scores[VALIDITY], where, VALIDITY)
        redundancy = None
        if scores.get(REDUNDANCY) is not None:
            redundancy = _bool_list(scores[REDUNDANCY], where, REDUNDANCY)
        yield Prediction(str(row["idx"]), True, labels, redundancy)


def tree_questions(tree: RewardTree, by_id: dict[str, dict[str, Any]]) -> set[str]:
    """PRMBench questions among the tree's source pairs (pair id = PRMBench item id)."""
    sources = {s for node in tree.nodes for s in node.sources}
    sources |= {c.pair_id for c in tree.criteria}
    return {fold_key(by_id[s]) for s in sources if s in by_id}


def assign_trees(
    trees: list[tuple[str, RewardTree]],
    items: list[tuple[str, dict[str, Any]]],
    everything: dict[str, dict[str, Any]],
    folds: int = 2,
) -> dict[str, int]:
    """Which tree scores each item, refusing any tree built from an item's question.

    One tree: it must share no question with the evaluated items (a tree built
    elsewhere, or on another fold). Two trees: a 2-fold cross-fit — each tree's
    PRMBench sources must lie in one fold, the two in different folds, and each
    item is scored by the tree built on the other fold.
    """
    learned = [tree_questions(tree, everything) for _, tree in trees]
    if len(trees) == 1:
        name, leaked = trees[0][0], learned[0] & {fold_key(r) for _, r in items}
        if leaked:
            raise InputError(
                f"tree {name} was built from {len(leaked)} question(s) it would evaluate; "
                "build it on another fold (dgprm data prmbench-pairs --fold) or use two trees"
            )
        return {item_id: 0 for item_id, _ in items}
    if len(trees) != 2 or folds != 2:
        raise InputError("cross-fitting takes exactly two trees (one per fold)")
    tree_fold: list[int] = []
    for (name, _), questions in zip(trees, learned, strict=True):
        seen = {question_fold(q, folds) for q in questions}
        if len(seen) != 1:
            why = "no PRMBench pairs" if not seen else "pairs from both folds"
            raise InputError(f"tree {name} cannot be cross-fitted: it was built from {why}")
        tree_fold.append(seen.pop())
    if tree_fold[0] == tree_fold[1]:
        raise InputError(f"both trees were built on fold {tree_fold[0]}; build one per fold")
    return {item_id: tree_fold.index(1 - question_fold(fold_key(r), folds)) for item_id, r in items}


def load_leaderboard(path: Path) -> list[dict[str, Any]]:
    try:
        return list(json.loads(path.read_text(encoding="utf-8"))["rows"])
    except (OSError, KeyError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: not a leaderboard table ({exc})") from None


TABLE_COLUMNS = (
    "Overall",
    "NR",
    "NCL",
    "Simplicity_avg",
    "ES",
    "SC",
    "DC",
    "CI",
    "Soundness_avg",
    "PS",
    "DR",
    "MS",
    "Sensitivity_avg",
)


def table_rows(
    results: dict[str, Any], label: str, published: list[dict[str, Any]]
) -> list[tuple[str, list[float | None]]]:
    """Published rows, then this run's, each as (model, values in leaderboard order)."""
    ours = leaderboard_row(results)
    rows = [(str(r["model"]), [r.get(c) for c in TABLE_COLUMNS]) for r in published]
    return [*rows, (label, [ours.get(c) for c in TABLE_COLUMNS])]


def save_chart(path: Path, rows: list[tuple[str, list[float | None]]], label: str) -> None:
    """Bar chart: Overall of every published model and this run (highlighted), and this
    run's columns beside the published median."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, (left, right) = plt.subplots(1, 2, figsize=(15, 7), width_ratios=(1, 1.4))
    ordered = sorted(rows, key=lambda r: r[1][0] if r[1][0] is not None else -1)
    left.barh(
        [name for name, _ in ordered],
        [v[0] or 0 for _, v in ordered],
        color=["tab:red" if name == label else "tab:gray" for name, _ in ordered],
    )
    left.set_xlabel("PRMBench Overall (PRMScore)")
    left.tick_params(axis="y", labelsize=7)
    left.axvline(50, color="black", lw=0.6, ls=":")
    columns = np.arange(len(TABLE_COLUMNS))
    published = np.array(
        [[np.nan if x is None else x for x in v] for name, v in rows if name != label], float
    )
    ours = [np.nan if x is None else x for x in rows[-1][1]]
    if published.size:
        right.bar(
            columns - 0.2,
            np.nanmedian(published, axis=0),
            0.4,
            label="published median",
            color="tab:gray",
        )
    right.bar(columns + 0.2, ours, 0.4, label=label, color="tab:red")
    right.set_xticks(columns, TABLE_COLUMNS, rotation=45, ha="right")
    right.set_ylabel("PRMScore")
    right.set_ylim(0, 100)
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def prmbench_records(source: Source) -> list[tuple[str, dict[str, Any]]]:
    """Every ``(item_id, record)`` of the source, duplicate ids dropped (first kept)."""
    return list(prmbench_items(source.records))


@dataclass
class PrmbenchRun:
    """The outcome of a PRMBench run: the official results, the leaderboard rows with this
    run's row last (under ``label``), and what this invocation judged (``None`` when a
    predictions file was scored)."""

    run_dir: Path
    results: dict[str, Any]
    rows: list[tuple[str, list[float | None]]]
    label: str
    report: RunReport | None = None
    empty_steps: int = 0  # steps empty in the data, shown to the judge as EMPTY_STEP


def _finish(
    run_dir: Path,
    predictions: Path,
    items: dict[str, Item],
    source: Source,
    label: str,
    calibration: dict[str, Any] | None = None,
) -> PrmbenchRun:
    """Official results of ``predictions`` over ``items`` into results.json and chart.png."""
    results = prmbench_results(items, read_predictions(predictions))
    results["label"] = label
    if calibration is not None:
        results["calibration"] = calibration
    write_json(run_dir / "results.json", results)
    rows = table_rows(results, label, load_leaderboard(leaderboard_path(source)))
    save_chart(run_dir / "chart.png", rows, label)
    return PrmbenchRun(run_dir, results, rows, label)


def evaluate_predictions(
    predictions: str | Path,
    out: str | Path,
    *,
    data: str | Path | None = None,
    subset400: bool = False,
) -> PrmbenchRun:
    """The official metric on another PRM's predictions file (PRMBench's output format)."""
    predictions, out = Path(predictions), Path(out)
    check_run_dir(out, [predictions, data])
    source = resolve_source(Path(data) if data is not None else None, subset400=subset400)
    records = prmbench_records(source)
    if not predictions.is_file():
        raise InputError(f"{predictions}: no such file")
    given = list(read_predictions(predictions))  # every line is checked before run.json
    if not given:
        raise InputError(f"{predictions}: no predictions")
    items = metric_items(records)
    unknown = [p.id for p in given if p.id not in items]
    if unknown:
        raise InputError(
            f"{predictions}: {len(unknown)} of {len(given)} prediction ids are not in the data "
            f"{source.records} (first: {unknown[0]!r}); pass --data with the data they were "
            "made on"
        )
    start_run(
        out,
        {
            "predictions": str(predictions),
            "sha256": file_sha256(predictions),
            "data": str(source.records),
        },
    )
    return _finish(out, predictions, items, source, predictions.stem)


async def arun(
    out: str | Path,
    *,
    data: str | Path | None = None,
    method: str = "dgprm",
    trees: Sequence[str | Path] = (),
    subset400: bool = False,
    categories: list[str] | None = None,
    limit: int | None = None,
    fold: int | None = None,
    scoring: ScoringConfig | None = None,
    runtime: RuntimeConfig | None = None,
    client: LLMClient | None = None,
    embedder: Embedder | None = None,
    calibrate_on: str | Path | None = None,
    retry_errors: bool = False,
    progress: Progress | None = None,
) -> PrmbenchRun:
    """Run ``method`` (``dgprm`` with one tree, or two for a 2-fold cross-fit, or
    ``critic``) on PRMBench into the resumable run directory ``out``.

    Selection: ``subset400``, ``categories``, ``limit`` items per category, questions of
    ``fold``. A tree built from a question it would evaluate is refused. Without
    ``data`` the packaged sample is used. ``client`` overrides the LLM made from
    ``runtime`` (and is not closed). ``calibrate_on`` is another dgprm run (typically the
    other fold): the threshold that maximises Overall on it is used (see
    :mod:`dgprm.bench.calibrate`) and recorded in ``run.json`` and ``results.json``.
    """
    out = Path(out)
    check_run_dir(out, [data, *trees])
    scoring, runtime = scoring or ScoringConfig(), runtime or RuntimeConfig()
    source = resolve_source(Path(data) if data is not None else None, subset400=subset400)
    records = prmbench_records(source)
    if fold is not None and fold not in (0, 1):
        raise InputError(f"fold {fold} is outside 0..1")
    in_fold = [(i, r) for i, r in records if fold is None or question_fold(fold_key(r)) == fold]
    selected = select_records(in_fold, categories=categories, limit=limit)
    if not selected:
        raise InputError("no PRMBench items selected")
    check_method(method, list(trees))
    loaded = [RewardTree.load(t) for t in trees]
    which = (
        assign_trees(list(zip(map(str, trees), loaded, strict=True)), selected, dict(records))
        if loaded
        else {}
    )
    calibration = None
    if calibrate_on is not None:
        if method != "dgprm":
            raise InputError("--calibrate-on sets dgprm's threshold; it needs --method dgprm")
        calibration = prmbench_threshold(
            calibrate_on, metric_items(records), evaluated={i for i, _ in selected}
        )
        scoring = scoring.replace(threshold=calibration.threshold)
    steps = {i: benchmark_steps(r["modified_process"]) or [] for i, r in selected}
    report, model_id = await judge_method(
        out,
        method=method,
        trees=loaded,
        tree_paths=list(trees),
        scoring=scoring,
        runtime=runtime,
        client=client,
        embedder=embedder,
        selection={
            "data": str(source.records),
            "subset400": subset400,
            "categories": categories,
            "limit": limit,
            "fold": fold,
            **({"calibration": calibration.to_dict()} if calibration else {}),
        },
        make_tasks=lambda judges: [
            Task(i, prmbench_question(r), steps[i], judges[which.get(i, 0)]) for i, r in selected
        ],
        key="idx",
        to_record=lambda task, j: prediction_record(task.id, j),
        retry_errors=retry_errors,
        progress=progress,
    )
    label = f"{'dgprm' if method == 'dgprm' else f'dgprm-{method}'} ({model_label(model_id)})"
    result = _finish(
        out,
        out / PREDICTIONS,
        metric_items(selected),
        source,
        label,
        calibration.to_dict() if calibration else None,
    )
    result.report = report
    result.empty_steps = sum(s == EMPTY_STEP for ss in steps.values() for s in ss)
    return result


def model_label(model_id: str) -> str:
    """A short model name for tables: the GGUF file name without extension, or the id.

    Example:
        >>> model_label("gguf:SmolLM2-135M-Instruct.Q4_1.gguf:1234"), model_label("openai:u#m")
        ('SmolLM2-135M-Instruct.Q4_1', 'openai:u#m')
    """
    if model_id.startswith("gguf:"):
        return model_id.split(":")[1].removesuffix(".gguf")
    return model_id


def run(out: str | Path, **options: Any) -> PrmbenchRun:
    """Synchronous twin of :func:`arun` (same options)."""
    return asyncio.run(arun(out, **options))
