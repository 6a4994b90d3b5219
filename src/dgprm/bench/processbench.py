"""ProcessBench: subsets, prediction records and results (metric in :mod:`metrics`).

The prediction for an item is the index of the first step judged incorrect
(−1 when none is); an invalid judgement is an unparseable prediction, which
the official metric counts as wrong.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from dgprm.bench.calibrate import processbench_threshold
from dgprm.bench.judges import Judgement, check_method
from dgprm.bench.metrics import first_error, processbench_results
from dgprm.bench.rundir import PREDICTIONS, RunReport, Task, check_run_dir, judge_method
from dgprm.config import RuntimeConfig, ScoringConfig
from dgprm.data import processbench_items
from dgprm.embed import Embedder
from dgprm.errors import InputError
from dgprm.files import write_json
from dgprm.llm.client import LLMClient
from dgprm.progress import Progress
from dgprm.records import iter_json_lines
from dgprm.tree.model import RewardTree

SUBSETS = ("gsm8k", "math", "olympiadbench", "omnimath")


def subset_file(data: Path | None, subset: str) -> Path:
    """``DATA/<subset>.json``; without ``data``, the packaged GSM8K sample."""
    if subset not in SUBSETS:
        raise InputError(f"unknown subset {subset!r}; choose from {', '.join(SUBSETS)}")
    if data is None:
        if subset != "gsm8k":
            raise InputError(f"subset {subset!r} needs --data (only a GSM8K sample is shipped)")
        return Path(str(resources.files("dgprm.samples").joinpath("processbench_gsm8k.json")))
    path = data / f"{subset}.json" if data.is_dir() else data
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    return path


def prediction_record(item: dict[str, Any], subset: str, judgement: Judgement) -> dict[str, Any]:
    """One line of ``predictions.jsonl``: label, prediction (None = unparseable), labels."""
    row: dict[str, Any] = {
        "id": item["id"],
        "subset": subset,
        "label": item["label"],
        "prediction": first_error(judgement.labels) if judgement.valid else None,
        "step_labels": judgement.labels,
    }
    if judgement.error:
        row["error"] = judgement.error
    if "rewards" in judgement.detail:  # dgprm's step rewards (what --calibrate-on reads)
        row["rewards"] = judgement.detail["rewards"]
    return row


def results_by_subset(rows: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Per-subset acc_err / acc_cor / F1 and their average over the subsets present.

    Example:
        >>> rows = [{"subset": "gsm8k", "label": 1, "prediction": 1},
        ...         {"subset": "gsm8k", "label": -1, "prediction": 0}]
        >>> r = results_by_subset(rows)
        >>> r["gsm8k"]["acc_err"], r["gsm8k"]["acc_cor"], r["average_f1"]
        (100.0, 0.0, 0.0)
    """
    grouped: dict[str, list[tuple[int, int | None]]] = {}
    for row in rows:
        grouped.setdefault(row["subset"], []).append((int(row["label"]), row["prediction"]))
    results: dict[str, Any] = {
        subset: processbench_results(pairs)
        for subset, pairs in sorted(grouped.items(), key=lambda kv: SUBSETS.index(kv[0]))
    }
    f1s = [r["f1"] for r in results.values()]
    results["average_f1"] = sum(f1s) / len(f1s) if f1s else None
    return results


@dataclass
class ProcessbenchRun:
    """The outcome of a ProcessBench run: results per subset and what was judged."""

    run_dir: Path
    results: dict[str, Any]
    model: str
    report: RunReport


async def arun(
    out: str | Path,
    *,
    data: str | Path | None = None,
    subsets: Sequence[str] = ("gsm8k",),
    method: str = "dgprm",
    tree: str | Path | None = None,
    limit: int | None = None,
    scoring: ScoringConfig | None = None,
    runtime: RuntimeConfig | None = None,
    client: LLMClient | None = None,
    embedder: Embedder | None = None,
    calibrate_on: str | Path | None = None,
    retry_errors: bool = False,
    progress: Progress | None = None,
) -> ProcessbenchRun:
    """Run ``method`` on the ProcessBench ``subsets`` (the first ``limit`` items of each)
    into the resumable run directory ``out``; results.json holds the official metric.
    Without ``data`` the packaged GSM8K sample is used. ``client`` overrides the LLM made
    from ``runtime`` (and is not closed)."""
    out = Path(out)
    check_run_dir(out, [data, tree])
    scoring, runtime = scoring or ScoringConfig(), runtime or RuntimeConfig()
    files = {s: subset_file(Path(data) if data is not None else None, s) for s in subsets}
    paths = [tree] if tree is not None else []
    check_method(method, paths)
    loaded = [RewardTree.load(t) for t in paths]
    items = {s: processbench_items(f)[:limit] for s, f in files.items()}
    by_id = {i["id"]: (s, i) for s, rows in items.items() for i in rows}
    calibration = None
    if calibrate_on is not None:
        if method != "dgprm":
            raise InputError("--calibrate-on sets dgprm's threshold; it needs --method dgprm")
        calibration = processbench_threshold(calibrate_on, evaluated=set(by_id))
        scoring = scoring.replace(threshold=calibration.threshold)
    report, model_id = await judge_method(
        out,
        method=method,
        trees=loaded,
        tree_paths=paths,
        scoring=scoring,
        runtime=runtime,
        client=client,
        embedder=embedder,
        selection={
            "data": {s: str(f) for s, f in files.items()},
            "limit": limit,
            **({"calibration": calibration.to_dict()} if calibration else {}),
        },
        make_tasks=lambda judges: [
            Task(i["id"], i["problem"], i["steps"], judges[0])
            for rows in items.values()
            for i in rows
        ],
        key="id",
        to_record=lambda task, j: prediction_record(by_id[task.id][1], by_id[task.id][0], j),
        retry_errors=retry_errors,
        progress=progress,
    )
    rows = [row for _, row in iter_json_lines(out / PREDICTIONS)]
    results = results_by_subset(r for r in rows if r["id"] in by_id)
    if calibration is not None:
        results["calibration"] = calibration.to_dict()
    write_json(out / "results.json", results)
    return ProcessbenchRun(out, results, model_id, report)


def run(out: str | Path, **options: Any) -> ProcessbenchRun:
    """Synchronous twin of :func:`arun` (same options)."""
    return asyncio.run(arun(out, **options))
