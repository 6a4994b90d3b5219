"""ProcessBench: subsets, prediction records and results (metric in :mod:`metrics`).

The prediction for an item is the index of the first step judged incorrect
(−1 when none is); an invalid judgement is an unparseable prediction, which
the official metric counts as wrong.
"""

from __future__ import annotations

from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from typing import Any

from dgprm.bench.methods import Judgement
from dgprm.bench.metrics import first_error, processbench_results
from dgprm.records import InputError

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
