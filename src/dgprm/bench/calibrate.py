"""Threshold calibration: the step-reward threshold that maximises a benchmark's own
objective, chosen on *another* run (a calibration set), never on the evaluated items.

A dgprm benchmark run keeps every step's reward in its predictions. For PRMBench, the
calibration run is typically the other fold (``--fold 0`` calibrates ``--fold 1``): items
are assigned to folds by their question, so no question is both tuned on and evaluated.
:func:`prmbench_threshold` and :func:`processbench_threshold` try every cut between two
distinct rewards of the calibration run and return the one with the best objective
(PRMBench: Overall PRMScore; ProcessBench: average F1). ``--calibrate-on RUN`` applies it;
a calibration run that shares an item with the evaluated selection is refused.

Example:
    >>> best_cut([([0.9, 0.2], [True, False]), ([0.8], [True])], step_accuracy)
    (0.5, 1.0)
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dgprm.bench.metrics import (
    Item,
    Prediction,
    first_error,
    prmbench_results,
    processbench_results,
)
from dgprm.bench.rundir import PREDICTIONS, RUN_FILE
from dgprm.errors import InputError
from dgprm.records import iter_json_lines

Scored = tuple[list[float], Any]  # one item's step rewards, and what the objective needs


@dataclass(frozen=True)
class Calibration:
    """The chosen threshold, its objective on the calibration run, and what was used."""

    threshold: float
    objective: float
    items: int
    run_dir: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold,
            "objective": self.objective,
            "items": self.items,
            "calibrated_on": self.run_dir,
        }


def cuts(rewards: Sequence[float]) -> list[float]:
    """Candidate thresholds: the midpoints between consecutive distinct rewards, and one
    below all of them (label = reward > threshold).

    Example:
        >>> cuts([0.2, 0.9, 0.2, 0.5])
        [0.19, 0.35, 0.7]
    """
    values = sorted(set(rewards))
    if not values:
        return []
    return [round(max(values[0] - 0.01, 0.0), 6)] + [
        round((a + b) / 2, 6) for a, b in zip(values, values[1:], strict=False)
    ]


def best_cut(
    scored: list[Scored], objective: Callable[[list[Scored], float], float]
) -> tuple[float, float]:
    """The cut with the highest ``objective(scored, cut)`` (the lowest cut on ties)."""
    rewards = [r for item_rewards, _ in scored for r in item_rewards]
    best: tuple[float, float] | None = None
    for cut in cuts(rewards):
        value = objective(scored, cut)
        if best is None or value > best[1] + 1e-12:
            best = (cut, value)
    if best is None:
        raise InputError("the calibration run has no step rewards")
    return best


def step_accuracy(scored: list[Scored], cut: float) -> float:
    """Share of steps whose label (reward > cut) equals the gold label (a demo objective)."""
    pairs = [(r > cut) == g for rewards, gold in scored for r, g in zip(rewards, gold, strict=True)]
    return sum(pairs) / len(pairs)


def _run(run_dir: str | Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    run_dir = Path(run_dir)
    try:
        config = json.loads((run_dir / RUN_FILE).read_text(encoding="utf-8"))["config"]
    except (OSError, ValueError, KeyError, TypeError):
        raise InputError(f"{run_dir}: not a dgprm benchmark run (no run.json)") from None
    if config.get("method") != "dgprm":
        raise InputError(f"{run_dir}: calibration needs a --method dgprm run (step rewards)")
    rows = [row for _, row in iter_json_lines(run_dir / PREDICTIONS)]
    return config, rows


def _rewards(row: dict[str, Any]) -> list[float] | None:
    rewards = row.get("rewards", (row.get("detail") or {}).get("rewards"))
    if not rewards or any(r is None for r in rewards) or row.get("error"):
        return None
    return [float(r) for r in rewards]


def prmbench_threshold(
    run_dir: str | Path, items: dict[str, Item], evaluated: set[str] = frozenset()
) -> Calibration:
    """The threshold maximising PRMBench's Overall PRMScore on the dgprm run ``run_dir``
    (its predictions of the metric ``items``). Refuses a run that judged any of the
    ``evaluated`` item ids."""
    _, rows = _run(run_dir)
    if rows and "idx" not in rows[0]:
        raise InputError(f"{run_dir}: not a PRMBench run (its predictions have no 'idx')")
    overlap = evaluated & {str(row["idx"]) for row in rows}
    if overlap:
        raise InputError(
            f"{run_dir}: judged {len(overlap)} of the items this run evaluates (e.g. "
            f"{sorted(overlap)[0]}); calibrate on another fold"
        )
    scored = [
        (r, items[row["idx"]]) for row in rows if (r := _rewards(row)) and row["idx"] in items
    ]

    def overall(chosen: list[Scored], cut: float) -> float:
        predictions = [Prediction(item.id, True, [v > cut for v in rw]) for rw, item in chosen]
        value = prmbench_results({i.id: i for _, i in chosen}, predictions)["overall"]
        return -1.0 if value is None else float(value)

    threshold, value = best_cut(scored, overall)
    return Calibration(threshold, value, len(scored), str(run_dir))


def processbench_threshold(run_dir: str | Path, evaluated: set[str] = frozenset()) -> Calibration:
    """The threshold maximising ProcessBench's F1 on the dgprm run ``run_dir``."""
    _, rows = _run(run_dir)
    if rows and not {"id", "label"} <= rows[0].keys():
        raise InputError(f"{run_dir}: not a ProcessBench run (its predictions have no 'label')")
    overlap = evaluated & {str(row["id"]) for row in rows}
    if overlap:
        raise InputError(
            f"{run_dir}: judged {len(overlap)} of the items this run evaluates (e.g. "
            f"{sorted(overlap)[0]}); calibrate on other items"
        )
    scored = [(r, int(row["label"])) for row in rows if (r := _rewards(row))]

    def f1(chosen: list[Scored], cut: float) -> float:
        pairs = [(label, first_error([v > cut for v in rw])) for rw, label in chosen]
        return float(processbench_results(pairs)["f1"])

    threshold, value = best_cut(scored, f1)
    return Calibration(threshold, value, len(scored), str(run_dir))
