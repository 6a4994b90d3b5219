"""Reading what a report shows: ``dgprm score`` output, trajectories, bench run directories.

Every problem is an :class:`~dgprm.records.InputError` naming the file, the line and the
field. A scores file naming a criterion the tree does not have was built with another
tree, and is refused.

**Gold step labels.** A scored line may carry ``gold_labels`` (one per step: ``true`` =
correct, ``false`` = wrong, ``null`` = unknown), or each step a ``gold`` field; a
trajectories file given with ``--trajectories`` may carry ``gold_labels`` too (the
PRMBench and ProcessBench converters in :mod:`dgprm.data` write them). A step's own
``gold`` wins over its line's list, which wins over the trajectories file.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dgprm.errors import InputError
from dgprm.files import file_sha256
from dgprm.progress import NoProgress, Progress
from dgprm.records import iter_json_lines
from dgprm.report.stats import CriterionStats, StepScores, add_steps

USAGE_KEYS = ("llm_calls", "cache_hits", "prompt_tokens", "completion_tokens", "errors")


@dataclass
class TrajectoryText:
    """Question and step texts of a trajectory (for hover text), and its gold labels."""

    question: str
    steps: list[str]
    gold_labels: list[bool | None] | None = None


@dataclass
class ScoredStep:
    index: int
    scores: dict[str, float]
    reward: float | None = None
    label: bool | None = None
    error: str | None = None
    gold: bool | None = None
    text: str | None = None


@dataclass
class ScoredTrajectory:
    id: str
    line: int
    steps: list[ScoredStep]
    question: str | None = None
    usage: dict[str, Any] = field(default_factory=dict)

    @property
    def errors(self) -> list[ScoredStep]:
        return [s for s in self.steps if s.error is not None]

    @property
    def mean_reward(self) -> float | None:
        rewards = [s.reward for s in self.steps if s.reward is not None]
        return sum(rewards) / len(rewards) if rewards else None


@dataclass
class ErrorRecord:
    trajectory: str
    step: int | None
    reason: str
    line: int


@dataclass
class ScoresSummary:
    """One scores file: totals, per-criterion statistics, the trajectories to draw and
    every error record."""

    path: Path
    sha256: str
    trajectories: int = 0
    steps: int = 0
    error_steps: int = 0
    gold_steps: int = 0
    usage: dict[str, int] = field(default_factory=dict)
    stats: dict[str, CriterionStats] = field(default_factory=dict)
    shown: list[ScoredTrajectory] = field(default_factory=list)
    errors: list[ErrorRecord] = field(default_factory=list)


def count_lines(path: Path) -> int:
    """Newline-terminated lines in a file, read in 1 MiB blocks (the progress total)."""
    total = 0
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            total += block.count(b"\n")
    return total


def _fail(where: str, field_name: str, message: str) -> InputError:
    return InputError(f"{where}: field '{field_name}': {message}")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _gold(value: Any, where: str, field_name: str) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    raise _fail(where, field_name, f"expected true, false or null, got {value!r}")


def _gold_list(obj: dict[str, Any], steps: int, where: str) -> list[bool | None] | None:
    labels = obj.get("gold_labels")
    if labels is None:
        return None
    if not isinstance(labels, list) or len(labels) != steps:
        raise _fail(where, "gold_labels", f"expected a list of {steps} labels (one per step)")
    return [_gold(v, where, f"gold_labels[{i}]") for i, v in enumerate(labels)]


def read_trajectory_texts(paths: Iterable[str | Path]) -> dict[str, TrajectoryText]:
    """Trajectories files (``{"id", "question", "steps", "gold_labels"?}``) by id.

    Example:
        >>> import pathlib, tempfile
        >>> f = pathlib.Path(tempfile.mkdtemp()) / "t.jsonl"
        >>> _ = f.write_text('{"id": "a", "question": "q", "steps": ["s1", "s2"],'
        ...                  ' "gold_labels": [true, false]}\\n')
        >>> read_trajectory_texts([f])["a"].gold_labels
        [True, False]
    """
    texts: dict[str, TrajectoryText] = {}
    for path in paths:
        for number, obj in iter_json_lines(path):
            where = f"{path}:{number}"
            trajectory_id, question, steps = obj.get("id"), obj.get("question"), obj.get("steps")
            if not isinstance(trajectory_id, str) or not trajectory_id.strip():
                raise _fail(where, "id", "expected a non-empty text")
            if trajectory_id in texts:
                raise _fail(where, "id", f"duplicate id {trajectory_id!r}")
            if not isinstance(question, str):
                raise _fail(where, "question", "expected a text")
            if not isinstance(steps, list) or not all(isinstance(s, str) for s in steps):
                raise _fail(where, "steps", "expected a list of texts")
            texts[trajectory_id] = TrajectoryText(
                question, steps, _gold_list(obj, len(steps), where)
            )
    return texts


def _parse_step(raw: Any, where: str, i: int, known: set[str], tree_name: str) -> ScoredStep:
    name = f"steps[{i}]"
    if not isinstance(raw, dict):
        raise _fail(where, name, "expected an object")
    index = raw.get("index", i)
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise _fail(where, f"{name}.index", f"expected a step number ≥ 0, got {index!r}")
    criteria = raw.get("criteria", [])
    if not isinstance(criteria, list):
        raise _fail(where, f"{name}.criteria", "expected a list")
    scores: dict[str, float] = {}
    for j, criterion in enumerate(criteria):
        cname = f"{name}.criteria[{j}]"
        if not isinstance(criterion, dict):
            raise _fail(where, cname, "expected an object")
        cid, score = criterion.get("id"), criterion.get("score")
        if not isinstance(cid, str):
            raise _fail(where, f"{cname}.id", f"expected a criterion id, got {cid!r}")
        if cid not in known:
            raise _fail(
                where,
                f"{cname}.id",
                f"criterion {cid!r} is not in the tree {tree_name}: this scores file was "
                "built with another tree",
            )
        if not _is_number(score) or not 0 <= score <= 1:
            raise _fail(where, f"{cname}.score", f"expected a score in [0, 1], got {score!r}")
        scores[cid] = float(score)
    reward = raw.get("reward")
    if reward is not None and not _is_number(reward):
        raise _fail(where, f"{name}.reward", f"expected a number or null, got {reward!r}")
    label = raw.get("label")
    if label is not None and not isinstance(label, bool):
        raise _fail(where, f"{name}.label", f"expected true, false or null, got {label!r}")
    error = raw.get("error")
    if error is not None and not isinstance(error, str):
        error = json.dumps(error, ensure_ascii=False)
    return ScoredStep(
        index,
        scores,
        None if reward is None else float(reward),
        label,
        error,
        _gold(raw.get("gold"), where, f"{name}.gold"),
    )


def iter_scored(
    path: str | Path,
    known: set[str],
    *,
    tree_name: str = "",
    texts: dict[str, TrajectoryText] | None = None,
) -> Iterator[tuple[ScoredTrajectory, list[ErrorRecord]]]:
    """Each line of a ``dgprm score`` output, checked against the tree's node ids
    ``known``, with step texts and gold labels joined from ``texts`` by id; and the
    line's error records (its ``errors`` list, and steps with an ``error``)."""
    path = Path(path)
    seen: set[str] = set()
    texts = texts or {}
    for number, obj in iter_json_lines(path):
        where = f"{path}:{number}"
        trajectory_id, steps = obj.get("id"), obj.get("steps")
        if not isinstance(trajectory_id, str) or not trajectory_id:
            raise _fail(where, "id", "expected a non-empty text")
        if trajectory_id in seen:
            raise _fail(where, "id", f"duplicate id {trajectory_id!r}")
        seen.add(trajectory_id)
        if not isinstance(steps, list):
            raise _fail(where, "steps", "expected a list of scored steps")
        parsed = [_parse_step(s, where, i, known, tree_name) for i, s in enumerate(steps)]
        text = texts.get(trajectory_id)
        line_gold = _gold_list(obj, len(parsed), where)
        for i, step in enumerate(parsed):
            if text is not None:
                if step.index >= len(text.steps):
                    raise _fail(
                        where,
                        f"steps[{i}].index",
                        f"step {step.index} does not exist in trajectory {trajectory_id!r} "
                        f"of the trajectories file ({len(text.steps)} steps)",
                    )
                step.text = text.steps[step.index]
            if step.gold is None and line_gold is not None:
                step.gold = line_gold[i]
            if step.gold is None and text is not None and text.gold_labels is not None:
                step.gold = text.gold_labels[step.index]
        errors = [ErrorRecord(trajectory_id, s.index, s.error, number) for s in parsed if s.error]
        flagged = {s.index for s in parsed if s.error}
        for k, record in enumerate(obj.get("errors") or []):
            if not isinstance(record, dict):
                raise _fail(where, f"errors[{k}]", "expected an object")
            step_no = record.get("step")
            if step_no in flagged:
                continue  # the same record as the step's own error
            reason = record.get("reason", record)
            errors.append(
                ErrorRecord(
                    trajectory_id,
                    step_no if isinstance(step_no, int) else None,
                    reason if isinstance(reason, str) else json.dumps(reason, ensure_ascii=False),
                    number,
                )
            )
        usage = obj.get("usage")
        yield (
            ScoredTrajectory(
                trajectory_id,
                number,
                parsed,
                text.question if text is not None else None,
                usage if isinstance(usage, dict) else {},
            ),
            errors,
        )


def summarise_scores(
    path: str | Path,
    known: set[str],
    *,
    tree_name: str = "",
    texts: dict[str, TrajectoryText] | None = None,
    max_shown: int = 100,
    progress: Progress | None = None,
) -> ScoresSummary:
    """Read a scores file once: totals, per-criterion statistics, the first ``max_shown``
    trajectories (drawn as heatmaps) and every error record."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    progress = progress or NoProgress()
    stage = f"read {path.name}"
    progress.start(stage, count_lines(path))
    summary = ScoresSummary(path, file_sha256(path))
    usage = dict.fromkeys(USAGE_KEYS, 0)
    last = 0
    for trajectory, errors in iter_scored(path, known, tree_name=tree_name, texts=texts):
        summary.trajectories += 1
        summary.steps += len(trajectory.steps)
        summary.error_steps += len(trajectory.errors)
        summary.gold_steps += sum(s.gold is not None for s in trajectory.steps)
        summary.errors += errors
        add_steps(summary.stats, (StepScores(s.scores, s.gold, s.error) for s in trajectory.steps))
        for key in USAGE_KEYS:
            value = trajectory.usage.get(key)
            if _is_number(value):
                usage[key] += int(value)
        if len(summary.shown) < max_shown:
            summary.shown.append(trajectory)
        progress.advance(stage, trajectory.line - last)
        last = trajectory.line
    summary.usage = usage
    return summary


# ---- bench runs ------------------------------------------------------------------------


@dataclass
class BenchRun:
    """A ``dgprm bench`` run directory: its results, configuration and chart."""

    path: Path
    kind: str  # "prmbench", "processbench" or "other"
    results: dict[str, Any]
    run: dict[str, Any] = field(default_factory=dict)
    chart_png: bytes | None = None
    predictions: int = 0

    @property
    def chart_data_uri(self) -> str | None:
        if self.chart_png is None:
            return None
        return "data:image/png;base64," + base64.b64encode(self.chart_png).decode("ascii")


PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _json_file(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: invalid JSON: {exc}") from None


def read_bench_run(run_dir: str | Path) -> BenchRun:
    """Load ``results.json`` (required), ``run.json`` and ``chart.png`` of a bench run.

    Example:
        >>> import pathlib, tempfile
        >>> run = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (run / "results.json").write_text('{"gsm8k": {"f1": 50.0}, "average_f1": 50.0}')
        >>> read_bench_run(run).kind
        'processbench'
    """
    run_dir = Path(run_dir)
    results_path = run_dir / "results.json"
    if not run_dir.is_dir():
        raise InputError(f"{run_dir}: not a directory (expected a dgprm bench run)")
    if not results_path.is_file():
        raise InputError(f"{run_dir}: no results.json (not a finished dgprm bench run)")
    results = _json_file(results_path)
    if not isinstance(results, dict):
        raise InputError(f"{results_path}: expected a JSON object")
    kind = (
        "prmbench"
        if "overall" in results and "details" in results
        else "processbench"
        if "average_f1" in results
        else "other"
    )
    run: dict[str, Any] = {}
    if (run_dir / "run.json").is_file():
        loaded = _json_file(run_dir / "run.json")
        run = loaded if isinstance(loaded, dict) else {}
    chart = None
    if (run_dir / "chart.png").is_file():
        chart = (run_dir / "chart.png").read_bytes()
        if not chart.startswith(PNG_MAGIC):
            raise InputError(f"{run_dir / 'chart.png'}: not a PNG image")
    predictions = (
        count_lines(run_dir / "predictions.jsonl")
        if (run_dir / "predictions.jsonl").is_file()
        else 0
    )
    return BenchRun(run_dir, kind, results, run, chart, predictions)
