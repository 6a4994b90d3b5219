"""The official PRMBench and ProcessBench metrics, as pure functions.

PRMBench (Song et al. 2025) scores boolean step labels (true = step judged
correct) against the injected error steps. Counts are pooled per category and,
for **Overall**, over every non-``correct_*`` item — Overall is *not* a mean of
the columns. A precision or recall with a zero denominator is −1 inside the F1
formula, and an F1 whose P + R is 0 is −1, as in the official evaluator.

ProcessBench (Zheng et al. 2025) compares the index of the first step judged
incorrect (−1 for none) with the earliest-error label.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

#: Leaderboard columns → PRMBench classification names (spelling as in the data).
COLUMNS: dict[str, str] = {
    "NR": "redundency",
    "NCL": "circular",
    "ES": "counterfactual",
    "SC": "step_contradiction",
    "DC": "domain_inconsistency",
    "CI": "confidence",
    "PS": "missing_condition",
    "DR": "deception",
    "MS": "multi_solutions",
}
GROUPS: dict[str, tuple[str, ...]] = {
    "simplicity": ("NR", "NCL"),
    "soundness": ("ES", "SC", "DC", "CI"),
    "sensitivity": ("PS", "DR", "MS"),
}
REDUNDANCY_CLASSES = ("redundency", "circular")
NO_ERROR_CLASS = "multi_solutions"
CORRECT = "correct"


@dataclass
class Counts:
    """Confusion counts where "positive" means a step judged correct."""

    tp: int = 0
    fn: int = 0
    fp: int = 0
    tn: int = 0

    def __iadd__(self, other: Counts) -> Counts:
        self.tp += other.tp
        self.fn += other.fn
        self.fp += other.fp
        self.tn += other.tn
        return self


def _ratio(num: int, den: int) -> float:
    return num / den if den else -1.0


def _f1(precision: float, recall: float) -> float:
    total = precision + recall
    return 2 * precision * recall / total if total != 0 else -1.0


def f1(c: Counts) -> float:
    """F1 of the "step is correct" class, with the official −1 conventions.

    Example:
        >>> f1(Counts(tp=3, fn=1, fp=1, tn=0))
        0.75
        >>> f1(Counts(tp=0, fn=0, fp=0, tn=2))   # P and R undefined: −1 each, P + R ≠ 0
        -1.0
    """
    return _f1(_ratio(c.tp, c.tp + c.fp), _ratio(c.tp, c.tp + c.fn))


def negative_f1(c: Counts) -> float:
    """F1 of the "step is erroneous" class (P' = TN/(TN+FN), R' = TN/(TN+FP)).

    Example:
        >>> negative_f1(Counts(tp=3, fn=1, fp=1, tn=1))
        0.5
    """
    return _f1(_ratio(c.tn, c.tn + c.fn), _ratio(c.tn, c.tn + c.fp))


def prm_score(c: Counts, classification: str | None = None) -> float:
    """PRMScore × 100: max(0, ½F1 + ½negF1), or max(0, F1) for ``multi_solutions``.

    Example:
        >>> round(prm_score(Counts(tp=3, fn=1, fp=1, tn=1)), 2)
        62.5
    """
    if classification == NO_ERROR_CLASS:
        return max(0.0, f1(c)) * 100
    return max(0.0, 0.5 * f1(c) + 0.5 * negative_f1(c)) * 100


def item_counts(
    labels: list[bool],
    error_steps: Iterable[int],
    redundancy_labels: list[bool] | None = None,
    classification: str = "",
) -> Counts:
    """Counts of one item: ``labels[i]`` true = step ``i`` judged correct.

    ``error_steps`` are 1-based; for ``redundency``/``circular`` items carrying
    redundancy labels ``r``, the labels used are ``not r``.

    Example:
        >>> item_counts([True, False, True], [2, 9])   # step 2 wrong; 9 is out of range
        Counts(tp=2, fn=0, fp=0, tn=1)
        >>> item_counts([True, True], [2], [False, True], "circular")
        Counts(tp=1, fn=0, fp=0, tn=1)
    """
    if redundancy_labels is not None and classification in REDUNDANCY_CLASSES:
        labels = [not r for r in redundancy_labels]
    errors = {e - 1 for e in error_steps}
    c = Counts()
    for i, ok in enumerate(labels):
        if i in errors:
            c.fp += ok
            c.tn += not ok
        else:
            c.tp += ok
            c.fn += not ok
    return c


@dataclass(frozen=True)
class Item:
    """One PRMBench item as the metric needs it."""

    id: str
    classification: str
    error_steps: tuple[int, ...]
    steps: int


@dataclass
class Prediction:
    """One prediction in PRMBench's output format."""

    id: str
    valid: bool
    labels: list[bool]
    redundancy_labels: list[bool] | None = None


def prmbench_results(
    items: Mapping[str, Item], predictions: Iterable[Prediction]
) -> dict[str, Any]:
    """Official PRMBench numbers for ``predictions`` over ``items``.

    Invalid predictions are dropped (not counted wrong); ``valid_rate`` is the
    share of predictions that are valid. A prediction whose label list does not have one
    label per step of its item is invalid too (counted in ``wrong_length``). Predictions
    for unknown ids are ignored and counted in ``unknown_ids``. Categories with no valid
    prediction are absent from the result (and from the group means).

    Example:
        >>> items = {"circular_a": Item("circular_a", "circular", (2,), 2)}
        >>> r = prmbench_results(items, [Prediction("circular_a", True, [True, False])])
        >>> r["overall"], r["circular"]
        (100.0, 100.0)
    """
    per_class: dict[str, Counts] = {}
    overall = Counts()
    seen: set[str] = set()
    total = valid = unknown = wrong_length = 0
    for p in predictions:
        item = items.get(p.id)
        if item is None:
            unknown += 1
            continue
        if p.id in seen:
            continue
        seen.add(p.id)
        total += 1
        if not p.valid:
            continue
        if len(p.labels) != item.steps or (
            p.redundancy_labels is not None and len(p.redundancy_labels) != item.steps
        ):
            wrong_length += 1
            continue
        valid += 1
        c = item_counts(p.labels, item.error_steps, p.redundancy_labels, item.classification)
        if item.classification == CORRECT:
            continue
        per_class.setdefault(item.classification, Counts())
        per_class[item.classification] += c
        overall += c
    result: dict[str, Any] = {
        "overall": prm_score(overall) if valid else None,
        "valid_rate": valid / total if total else None,
        "predictions": total,
        "valid": valid,
        "unknown_ids": unknown,
        "wrong_length": wrong_length,
        "items": sum(i.classification != CORRECT for i in items.values()),
    }
    for name, counts in per_class.items():
        result[name] = prm_score(counts, name)
    for group, columns in GROUPS.items():
        values = [result[COLUMNS[c]] for c in columns if COLUMNS[c] in result]
        result[group] = sum(values) / len(values) if values else None
    result["details"] = {
        name: {
            "f1": f1(counts),
            "negative_f1": negative_f1(counts),
            "prm_score": prm_score(counts, name),
            **asdict(counts),
        }
        for name, counts in sorted({**per_class, "overall": overall}.items())
    }
    return result


def leaderboard_row(results: Mapping[str, Any]) -> dict[str, float | None]:
    """``results`` in the leaderboard's columns (Overall, NR, NCL, Simplicity_avg, …)."""
    row: dict[str, float | None] = {"Overall": results.get("overall")}
    for group, columns in GROUPS.items():
        for column in columns:
            row[column] = results.get(COLUMNS[column])
        row[f"{group.capitalize()}_avg"] = results.get(group)
    return row


def first_error(labels: list[bool]) -> int:
    """Index of the first step labelled incorrect, −1 when all are correct.

    Example:
        >>> first_error([True, False, False]), first_error([True, True])
        (1, -1)
    """
    return next((i for i, ok in enumerate(labels) if not ok), -1)


def processbench_results(pairs: Iterable[tuple[int, int | None]]) -> dict[str, float | int]:
    """ProcessBench numbers from ``(label, prediction)`` pairs; ``None`` = unparseable.

    acc_err is the accuracy on items with an error (label ≠ −1), acc_cor on
    items without (label = −1); F1 is their harmonic mean, all × 100.

    Example:
        >>> processbench_results([(2, 2), (1, -1), (-1, -1), (-1, None)])
        {'acc_err': 50.0, 'acc_cor': 50.0, 'f1': 50.0, 'items': 4, 'unparseable': 1}
    """
    err = cor = err_hit = cor_hit = unparseable = 0
    for label, prediction in pairs:
        unparseable += prediction is None
        if label == -1:
            cor += 1
            cor_hit += prediction == -1
        else:
            err += 1
            err_hit += prediction == label
    acc_err = 100 * err_hit / err if err else 0.0
    acc_cor = 100 * cor_hit / cor if cor else 0.0
    total = acc_err + acc_cor
    return {
        "acc_err": acc_err,
        "acc_cor": acc_cor,
        "f1": 2 * acc_err * acc_cor / total if total else 0.0,
        "items": err + cor,
        "unparseable": unparseable,
    }
