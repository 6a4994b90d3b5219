"""Converters from benchmark formats to dgprm's pair and trajectory records.

PRMBench records (``../shared/data/prmbench/data/*.jsonl``) carry an original
solution and an error-injected one, so they give preference pairs for free.
Folds are assigned by a hash of the question text, so every record about one
question — PRMBench has up to nine per question — lands in the same fold and a
2-fold cross-fit never builds a tree from the problems it evaluates.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dgprm.errors import InputError
from dgprm.records import iter_json_lines

PRMBENCH_REQUIRED = ("idx", "classification", "modified_process", "original_process", "error_steps")


def question_fold(question: str, folds: int = 2) -> int:
    """Deterministic fold of a question (stable across runs, machines and Python versions).

    Example:
        >>> question_fold("What is 2+2?") in (0, 1)
        True
    """
    digest = hashlib.sha256(question.strip().encode("utf-8")).hexdigest()
    return int(digest[:8], 16) % folds


def prmbench_files(path: str | Path) -> list[Path]:
    """The PRMBench ``.jsonl`` files at ``path`` (a file, or a directory of them)."""
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("*.jsonl"))
        if not files:
            raise InputError(f"{path}: no .jsonl files")
        return files
    if path.is_file():
        return [path]
    raise InputError(f"{path}: no such file or directory")


def iter_prmbench(path: str | Path) -> Iterator[dict[str, Any]]:
    """Yield PRMBench records with ``_where`` (file:line) attached; checks required fields."""
    for file in prmbench_files(path):
        for number, record in iter_json_lines(file):
            for key in PRMBENCH_REQUIRED:
                if key not in record:
                    raise InputError(f"{file}:{number}: field '{key}': missing")
            if benchmark_steps(record["modified_process"]) is None:
                raise InputError(f"{file}:{number}: field 'modified_process': not a step list")
            record["_where"] = f"{file}:{number}"
            yield record


def prmbench_question(record: dict[str, Any]) -> str:
    return str(
        record.get("modified_question")
        or record.get("question")
        or record.get("original_question")
        or ""
    )


def fold_key(record: dict[str, Any]) -> str:
    """The text that decides a PRMBench record's fold: its original question."""
    return str(record.get("original_question") or prmbench_question(record))


def prmbench_items(
    path: str | Path, *, fold: int | None = None, folds: int = 2
) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(item_id, record)`` for each PRMBench record, id ``<classification>_<idx>``.

    The first occurrence of a duplicate id is kept (as the official evaluator
    does). ``fold`` keeps only records whose original question hashes into it.
    """
    if fold is not None and not 0 <= fold < folds:
        raise InputError(f"fold {fold} is outside 0..{folds - 1}")
    seen: set[str] = set()
    for record in iter_prmbench(path):
        if fold is not None and question_fold(fold_key(record), folds) != fold:
            continue
        item_id = f"{record['classification']}_{record['idx']}"
        if item_id not in seen:
            seen.add(item_id)
            yield item_id, record


#: What the judge is shown in place of a step that is empty in benchmark data (PRMBench has
#: a few): the step count must stay aligned with the gold labels, and no step is skipped.
EMPTY_STEP = "(empty step)"


class Converted(list):  # type: ignore[type-arg]
    """Converted records, and how many source records were skipped, by reason."""

    def __init__(self) -> None:
        super().__init__()
        self.skipped: Counter[str] = Counter()


def benchmark_steps(value: Any) -> list[str] | None:
    """The steps of a benchmark solution with empty ones shown as :data:`EMPTY_STEP`, or
    ``None`` when ``value`` is not a non-empty list of strings.

    Example:
        >>> benchmark_steps(["a", " ", "b"]), benchmark_steps([None]), benchmark_steps([])
        (['a', '(empty step)', 'b'], None, None)
    """
    if not isinstance(value, list) or not value or not all(isinstance(s, str) for s in value):
        return None
    return [s if s.strip() else EMPTY_STEP for s in value]


def prmbench_pairs(
    path: str | Path, *, fold: int | None = None, folds: int = 2, limit: int | None = None
) -> Converted:
    """Preference pairs (original = chosen, modified = rejected) from PRMBench records.

    Records without error steps (``multi_solutions``) or whose two processes are
    identical give no pair. Empty steps are left out of a pair (the judge compares whole
    solutions); a record whose ``original_process`` or ``modified_process`` is not a list
    of steps, or has no non-empty step, is skipped and counted in ``.skipped``. ``fold``
    keeps only records whose question hashes into that fold.
    """
    pairs = Converted()
    for item_id, record in prmbench_items(path, fold=fold, folds=folds):
        if limit is not None and len(pairs) >= limit:
            break
        if not record["error_steps"]:
            continue
        sides = [benchmark_steps(record[k]) for k in ("original_process", "modified_process")]
        if any(side is None for side in sides):
            pairs.skipped["a process is not a list of steps"] += 1
            continue
        chosen, rejected = ([s for s in side if s != EMPTY_STEP] for side in sides)  # type: ignore[union-attr]
        if not chosen or not rejected:
            pairs.skipped["every step of a process is empty"] += 1
            continue
        if chosen == rejected:
            continue
        pairs.append(
            {
                "id": item_id,
                "question": fold_key(record),
                "chosen": chosen,
                "rejected": rejected,
                "domain": "math",
            }
        )
    return pairs


def prmbench_gold_labels(record: dict[str, Any]) -> list[bool]:
    """Gold label of each step of ``modified_process``: ``False`` (wrong) exactly when its
    1-based index is in ``error_steps``.

    Example:
        >>> prmbench_gold_labels({"modified_process": ["a", "b", "c"], "error_steps": [2]})
        [True, False, True]
    """
    wrong = {int(e) for e in record["error_steps"]}
    return [i + 1 not in wrong for i in range(len(record["modified_process"]))]


def prmbench_trajectories(
    path: str | Path, *, fold: int | None = None, folds: int = 2, limit: int | None = None
) -> list[dict[str, Any]]:
    """Trajectories to score from PRMBench records: ``modified_question`` and
    ``modified_process``, id ``<classification>_<idx>`` (first occurrence kept), with
    ``gold_labels`` (one per step, ``true`` = correct; see :func:`prmbench_gold_labels`)."""
    rows = (
        {
            "id": item_id,
            "question": prmbench_question(record),
            "steps": benchmark_steps(record["modified_process"]),
            "gold_labels": prmbench_gold_labels(record),
        }
        for item_id, record in prmbench_items(path, fold=fold, folds=folds)
    )
    return list(itertools.islice(rows, limit))


def processbench_items(path: str | Path) -> list[dict[str, Any]]:
    """Records of one ProcessBench subset file (a JSON array)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: invalid JSON: {exc}") from None
    if not isinstance(data, list):
        raise InputError(f"{path}: expected a JSON array of records")
    for i, item in enumerate(data):
        for key in ("id", "problem", "steps", "label"):
            if key not in item:
                raise InputError(f"{path}: record {i}: field '{key}': missing")
    return data


def processbench_gold_labels(label: int, steps: int) -> list[bool | None]:
    """Gold label of each step of a ProcessBench item whose first wrong step is ``label``
    (0-based; −1 = none): steps before it are correct, it is wrong, later steps unknown.

    Example:
        >>> processbench_gold_labels(1, 4), processbench_gold_labels(-1, 2)
        ([True, False, None, None], [True, True])
    """
    if label < 0:
        return [True] * steps
    return [True if i < label else False if i == label else None for i in range(steps)]


def processbench_trajectories(
    path: str | Path, *, limit: int | None = None
) -> list[dict[str, Any]]:
    """Trajectories to score from one ProcessBench subset file, with ``gold_labels``
    (see :func:`processbench_gold_labels`)."""
    return [
        {
            "id": item["id"],
            "question": item["problem"],
            "steps": item["steps"],
            "gold_labels": processbench_gold_labels(int(item["label"]), len(item["steps"])),
        }
        for item in processbench_items(path)[:limit]
    ]
