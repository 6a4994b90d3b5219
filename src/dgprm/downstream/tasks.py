"""Downstream reasoning tasks: ARC-Challenge, StrategyQA and QASC as one record type.

Every loader turns its source format into :class:`TaskRecord` ``{id, question,
choices?, answer}``: multiple choice (ARC-Challenge, QASC) carries ``choices`` and
the gold choice label as ``answer``; StrategyQA carries no choices and ``answer`` is
``"yes"`` or ``"no"``. A bad record raises :class:`~dgprm.records.InputError` naming
the file, the line (JSONL) or the record index (JSON arrays), and the field.

Sources (see the READMEs in ``../shared/data``):

- ``arc-c``: ``ARC-Challenge-{Train,Dev,Test}.jsonl`` (ARC-V1-Feb2018). The 26
  records with numeric choice labels ("1".."4") are mapped to letters (1 → A, …),
  as lm-evaluation-harness does, so every ARC answer is a letter.
- ``strategyqa``: ``train.json`` / ``dev.json`` (official format, bool ``answer``);
  the test file has no labels and is refused.
- ``qasc``: ``train.json`` / ``dev.json`` (a reformatted copy without ids): choices
  are parsed from ``answers`` ("(A) .. (H) .."), the gold letter from ``answer``
  ("(F) local weather conditions"); the id is ``qasc-<split>-<record index>``.

Without a data directory, the few records shipped in ``dgprm/samples`` are used.

Example:
    >>> records = load_task("arc-c", None, "test")
    >>> r = records[0]
    >>> r.answer in r.labels, r.choices[0].label
    (True, 'A')
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from dgprm.errors import InputError
from dgprm.records import iter_json_lines

TASKS = ("arc-c", "strategyqa", "qasc")
#: task → split → file name in the task's data directory
FILES: dict[str, dict[str, str]] = {
    "arc-c": {
        "train": "ARC-Challenge-Train.jsonl",
        "dev": "ARC-Challenge-Dev.jsonl",
        "test": "ARC-Challenge-Test.jsonl",
    },
    "strategyqa": {"train": "train.json", "dev": "dev.json"},
    "qasc": {"train": "train.json", "dev": "dev.json"},
}
#: the task's directory name under ``../shared/data`` (and the samples' file prefix)
DIRECTORIES = {"arc-c": "arc_challenge", "strategyqa": "strategyqa", "qasc": "qasc"}
YES_NO = ("yes", "no")
_NUMERIC_LABELS = {str(i): chr(ord("A") + i - 1) for i in range(1, 10)}
_QASC_CHOICE = re.compile(r"\(([A-Z])\)\s*")


class Choice(BaseModel):
    """One answer option of a multiple-choice question."""

    model_config = ConfigDict(extra="forbid")

    label: str
    text: str

    @field_validator("label", "text")
    @classmethod
    def _not_blank(cls, value: str, info: Any) -> str:
        if not value.strip():
            raise ValueError(f"{info.field_name} is empty")
        return value.strip()


class TaskRecord(BaseModel):
    """A question with its gold answer: a choice label, or ``yes``/``no`` without choices.

    Example:
        >>> r = TaskRecord(id="q1", question="Is ice cold?", answer="yes")
        >>> r.kind, r.labels
        ('yes-no', ('yes', 'no'))
        >>> TaskRecord(id="q2", question="2+2?", answer="C",
        ...            choices=[Choice(label="A", text="3"), Choice(label="B", text="4")])
        Traceback (most recent call last):
        ...
        pydantic_core._pydantic_core.ValidationError: 1 validation error for TaskRecord
        ...
    """

    model_config = ConfigDict(extra="forbid")

    id: str
    question: str
    choices: list[Choice] | None = None
    answer: str

    @field_validator("id", "question", "answer")
    @classmethod
    def _not_blank(cls, value: str, info: Any) -> str:
        if not value.strip():
            raise ValueError(f"{info.field_name} is empty")
        return value.strip()

    @model_validator(mode="after")
    def _answer_is_an_option(self) -> TaskRecord:
        if self.choices is not None:
            labels = [c.label for c in self.choices]
            if len(labels) < 2:
                raise ValueError("choices: fewer than two")
            if len(set(labels)) != len(labels):
                raise ValueError(f"choices: repeated labels {labels}")
        if self.answer not in self.labels:
            raise ValueError(f"answer {self.answer!r} is not one of {list(self.labels)}")
        return self

    @property
    def kind(self) -> str:
        """``choice`` (answer is a choice label) or ``yes-no``."""
        return "choice" if self.choices is not None else "yes-no"

    @property
    def labels(self) -> tuple[str, ...]:
        """The possible answers: choice labels, or ``("yes", "no")``."""
        return tuple(c.label for c in self.choices) if self.choices is not None else YES_NO


def _field_path(error: ValidationError) -> tuple[str, str]:
    first = error.errors()[0]
    field = ".".join(str(part) for part in first["loc"]) or "(record)"
    return field, first["msg"].removeprefix("Value error, ")


def _record(where: str, **fields: Any) -> TaskRecord:
    try:
        return TaskRecord.model_validate(fields)
    except ValidationError as exc:
        field, message = _field_path(exc)
        raise InputError(f"{where}: field '{field}': {message}") from None


def _need(obj: Any, key: str, kind: type | tuple[type, ...], where: str, name: str = "") -> Any:
    if not isinstance(obj, dict) or key not in obj:
        raise InputError(f"{where}: field '{name or key}': missing")
    value = obj[key]
    if not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise InputError(f"{where}: field '{name or key}': expected {names}")
    return value


def _json_array(path: Path) -> list[Any]:
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: invalid UTF-8 at byte {exc.start}") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}:{exc.lineno}: malformed JSON: {exc.msg}") from None
    if not isinstance(rows, list):
        raise InputError(f"{path}: expected a JSON array of records")
    return rows


def arc_records(path: str | Path) -> Iterator[TaskRecord]:
    """ARC records from an ARC-V1-Feb2018 ``.jsonl`` file (numeric labels → letters).

    Example:
        >>> import pathlib, tempfile
        >>> f = pathlib.Path(tempfile.mkdtemp()) / "arc.jsonl"
        >>> choices = '[{"text": "yes", "label": "1"}, {"text": "no", "label": "2"}]'
        >>> _ = f.write_text('{"id": "a1", "question": {"stem": "Hot?", "choices": '
        ...                  + choices + '}, "answerKey": "2"}\\n')
        >>> [(r.id, r.answer, [c.label for c in r.choices]) for r in arc_records(f)]
        [('a1', 'B', ['A', 'B'])]
    """
    for number, row in iter_json_lines(path):
        where = f"{path}:{number}"
        record_id = _need(row, "id", str, where)
        question = _need(row, "question", dict, where)
        stem = _need(question, "stem", str, where, "question.stem")
        raw = _need(question, "choices", list, where, "question.choices")
        choices = []
        for i, choice in enumerate(raw):
            name = f"question.choices.{i}"
            label = _need(choice, "label", str, where, f"{name}.label")
            text = _need(choice, "text", str, where, f"{name}.text")
            choices.append({"label": _NUMERIC_LABELS.get(label, label), "text": text})
        key = _need(row, "answerKey", str, where)
        yield _record(
            where,
            id=record_id,
            question=stem,
            choices=choices,
            answer=_NUMERIC_LABELS.get(key.strip(), key.strip()),
        )


def strategyqa_records(path: str | Path) -> Iterator[TaskRecord]:
    """StrategyQA records (``qid``, ``question``, bool ``answer``) from a JSON array file.

    Example:
        >>> import pathlib, tempfile
        >>> f = pathlib.Path(tempfile.mkdtemp()) / "dev.json"
        >>> _ = f.write_text('[{"qid": "q", "question": "Is ice cold?", "answer": true}]')
        >>> [(r.id, r.answer) for r in strategyqa_records(f)]
        [('q', 'yes')]
    """
    path = Path(path)
    for index, row in enumerate(_json_array(path)):
        where = f"{path}: record {index}"
        record_id = _need(row, "qid", str, where)
        question = _need(row, "question", str, where)
        if "answer" not in row:
            raise InputError(f"{where}: field 'answer': missing (a test file without labels?)")
        answer = row["answer"]
        if not isinstance(answer, bool):
            raise InputError(f"{where}: field 'answer': expected true or false")
        yield _record(where, id=record_id, question=question, answer="yes" if answer else "no")


def parse_qasc_choices(text: str) -> list[dict[str, str]]:
    """``"(A) sand (B) forests"`` → ``[{"label": "A", "text": "sand"}, ...]``.

    Raises :class:`ValueError` when the text does not start with ``(A)`` or the labels
    are not consecutive letters.

    Example:
        >>> parse_qasc_choices("(A) sand (B) occurs over a wide range")
        [{'label': 'A', 'text': 'sand'}, {'label': 'B', 'text': 'occurs over a wide range'}]
    """
    parts = _QASC_CHOICE.split(text.strip())
    if parts[0].strip() or len(parts) < 3:
        raise ValueError("expected '(A) ... (B) ...'")
    labels, texts = parts[1::2], [t.strip() for t in parts[2::2]]
    expected = [chr(ord("A") + i) for i in range(len(labels))]
    if labels != expected:
        raise ValueError(f"labels {labels} are not {expected}")
    return [{"label": label, "text": t} for label, t in zip(labels, texts, strict=True)]


def qasc_records(path: str | Path, split: str) -> Iterator[TaskRecord]:
    """QASC records from the reformatted JSON array (ids ``qasc-<split>-<index>``).

    Example:
        >>> import pathlib, tempfile
        >>> f = pathlib.Path(tempfile.mkdtemp()) / "dev.json"
        >>> _ = f.write_text('[{"question": "What melts?", "answers": "(A) ice (B) rock",'
        ...                  ' "answer": "(A) ice"}]')
        >>> [(r.id, r.answer, len(r.choices)) for r in qasc_records(f, "dev")]
        [('qasc-dev-0', 'A', 2)]
    """
    path = Path(path)
    for index, row in enumerate(_json_array(path)):
        where = f"{path}: record {index}"
        question = _need(row, "question", str, where)
        try:
            choices = parse_qasc_choices(_need(row, "answers", str, where))
        except ValueError as exc:
            raise InputError(f"{where}: field 'answers': {exc}") from None
        gold = re.match(r"\s*\(([A-Z])\)", _need(row, "answer", str, where))
        if gold is None:
            raise InputError(f"{where}: field 'answer': expected '(<letter>) <text>'")
        yield _record(
            where, id=f"qasc-{split}-{index}", question=question, choices=choices, answer=gold[1]
        )


def sample_file(task: str, split: str) -> Path:
    """The records shipped with dgprm for ``task`` and ``split``.

    Example:
        >>> sample_file("qasc", "dev").name
        'qasc_dev.json'
    """
    _check(task, split)
    suffix = Path(FILES[task][split]).suffix
    name = f"{DIRECTORIES[task]}_{split}{suffix}"
    return Path(str(resources.files("dgprm.samples").joinpath(name)))


def _check(task: str, split: str) -> None:
    if task not in FILES:
        raise InputError(f"unknown task {task!r}; choose from {', '.join(TASKS)}")
    if split not in FILES[task]:
        raise InputError(
            f"task {task} has no labelled split {split!r}; choose from {', '.join(FILES[task])}"
        )


def task_file(task: str, data: str | Path | None, split: str) -> Path:
    """The file holding ``split`` of ``task``.

    ``data`` is the task's directory (e.g. ``../shared/data/arc_challenge``), the
    directory above it (``../shared/data``), or the file itself; ``None`` gives the
    packaged sample.
    """
    _check(task, split)
    if data is None:
        return sample_file(task, split)
    data = Path(data)
    if data.is_file():
        return data
    if not data.is_dir():
        raise InputError(f"{data}: no such file or directory")
    for directory in (data, data / DIRECTORIES[task]):
        if (directory / FILES[task][split]).is_file():
            return directory / FILES[task][split]
    raise InputError(
        f"{data}: no {FILES[task][split]} (nor {DIRECTORIES[task]}/{FILES[task][split]})"
    )


def read_task(task: str, path: str | Path, split: str) -> list[TaskRecord]:
    """Every record of a ``task`` file; duplicate ids and an empty file are refused."""
    if task == "arc-c":
        rows = list(arc_records(path))
    elif task == "strategyqa":
        rows = list(strategyqa_records(path))
    elif task == "qasc":
        rows = list(qasc_records(path, split))
    else:
        raise InputError(f"unknown task {task!r}; choose from {', '.join(TASKS)}")
    seen: set[str] = set()
    for index, row in enumerate(rows):
        if row.id in seen:
            raise InputError(f"{path}: record {index}: field 'id': duplicate id {row.id!r}")
        seen.add(row.id)
    if not rows:
        raise InputError(f"{path}: no records")
    return rows


def load_task(
    task: str, data: str | Path | None, split: str, limit: int | None = None
) -> list[TaskRecord]:
    """The first ``limit`` records (all when ``None``) of ``split`` of ``task``
    (``data``: see :func:`task_file`)."""
    if limit is not None and limit < 1:
        raise InputError(f"limit {limit} is below 1")
    return read_task(task, task_file(task, data, split), split)[:limit]
