"""The records dgprm reads (pairs, trajectories, prefixes, candidates) and the JSONL reader.

Every reader reports bad input as :class:`~dgprm.errors.InputError` with the file, the
line and the field, so a user can fix the exact place.

Example:
    >>> pair = PreferencePair(id="p1", question="2+2?", chosen=["2+2=4"], rejected=["2+2=5"])
    >>> pair.chosen_steps
    ['2+2=4']
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from dgprm.errors import InputError

DEFAULT_MAX_CHARS = 20_000


def _nonblank(value: str, what: str) -> str:
    if not value.strip():
        raise ValueError(f"{what} is empty")
    return value


def _steps(value: str | list[str], what: str) -> list[str]:
    steps = [value] if isinstance(value, str) else list(value)
    if not steps:
        raise ValueError(f"{what} has no steps")
    for index, step in enumerate(steps):
        if not isinstance(step, str) or not step.strip():
            raise ValueError(f"{what} step {index} is empty")
    return steps


class PreferencePair(BaseModel):
    """Two outputs for one question; ``chosen`` is the better one."""

    model_config = ConfigDict(extra="ignore")

    id: str
    question: str
    chosen: str | list[str]
    rejected: str | list[str]
    domain: str | None = None

    @field_validator("id", "question")
    @classmethod
    def _not_blank(cls, value: str, info: Any) -> str:
        return _nonblank(value, info.field_name)

    @field_validator("chosen", "rejected")
    @classmethod
    def _has_steps(cls, value: str | list[str], info: Any) -> str | list[str]:
        _steps(value, info.field_name)
        return value

    @model_validator(mode="after")
    def _differ(self) -> PreferencePair:
        if self.chosen_steps == self.rejected_steps:
            raise ValueError("chosen is identical to rejected")
        return self

    @property
    def chosen_steps(self) -> list[str]:
        return _steps(self.chosen, "chosen")

    @property
    def rejected_steps(self) -> list[str]:
        return _steps(self.rejected, "rejected")


class Trajectory(BaseModel):
    """A step-segmented solution to score, optionally with gold step labels (``true`` =
    correct, ``false`` = wrong, ``null`` = unknown), which scores and reports carry along."""

    model_config = ConfigDict(extra="ignore")

    id: str
    question: str
    steps: list[str]
    gold_labels: list[bool | None] | None = None

    @field_validator("id", "question")
    @classmethod
    def _not_blank(cls, value: str, info: Any) -> str:
        return _nonblank(value, info.field_name)

    @field_validator("steps")
    @classmethod
    def _steps_ok(cls, value: list[str]) -> list[str]:
        return _steps(value, "steps")

    @model_validator(mode="after")
    def _one_label_per_step(self) -> Trajectory:
        if self.gold_labels is not None and len(self.gold_labels) != len(self.steps):
            raise ValueError(
                f"gold_labels has {len(self.gold_labels)} labels for {len(self.steps)} steps"
            )
        return self


class Prefix(Trajectory):
    """A question and the steps taken so far; candidates continue after them (may be none)."""

    steps: list[str] = Field(default_factory=list)

    @field_validator("steps")
    @classmethod
    def _steps_ok(cls, value: list[str]) -> list[str]:
        for index, step in enumerate(value):
            if not step.strip():
                raise ValueError(f"steps step {index} is empty")
        return value


class CandidateSet(BaseModel):
    """Candidate next steps for the prefix with the same ``id`` (``dgprm pairs --candidates``)."""

    model_config = ConfigDict(extra="ignore")

    id: str
    candidates: list[str]

    @field_validator("candidates")
    @classmethod
    def _candidates_ok(cls, value: list[str]) -> list[str]:
        return _steps(value, "candidates")


Record = TypeVar("Record", bound=BaseModel)


def _first_error(error: ValidationError) -> tuple[str, str]:
    first = error.errors()[0]
    field = ".".join(str(part) for part in first["loc"]) or "(record)"
    message = first["msg"].removeprefix("Value error, ")
    return field, message


def _limit_lengths(obj: Any, max_chars: int, on_long: str, where: str, field: str = "") -> Any:
    if isinstance(obj, str):
        if len(obj) <= max_chars:
            return obj
        if on_long == "truncate":
            warnings.warn(
                f"{where}: field '{field}': truncated to {max_chars} characters", stacklevel=2
            )
            return obj[:max_chars]
        raise InputError(
            f"{where}: field '{field}': text of {len(obj)} characters exceeds the limit of "
            f"{max_chars} (raise --max-chars or use truncation)"
        )
    if isinstance(obj, list):
        return [
            _limit_lengths(v, max_chars, on_long, where, f"{field}[{i}]") for i, v in enumerate(obj)
        ]
    if isinstance(obj, dict):
        return {
            k: _limit_lengths(v, max_chars, on_long, where, k if not field else f"{field}.{k}")
            for k, v in obj.items()
        }
    return obj


def limit_lengths(
    obj: Any, *, max_chars: int, on_long: Literal["error", "truncate"] = "error", where: str
) -> Any:
    """``obj`` with every string checked against ``max_chars``: an over-long one is refused
    with an :class:`InputError` naming ``where`` and the field, or truncated with a warning.

    Example:
        >>> try:
        ...     limit_lengths({"steps": ["ok", "x" * 200]}, max_chars=100, where="body")
        ... except InputError as exc:
        ...     str(exc).split(" (")[0]
        "body: field 'steps[1]': text of 200 characters exceeds the limit of 100"
    """
    return _limit_lengths(obj, max_chars, on_long, where)


def iter_json_lines(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, object)`` for each non-blank line of a JSONL file.

    Raises :class:`InputError` naming the line for invalid UTF-8, invalid JSON
    or a line that is not a JSON object.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InputError(f"{path}:{number}: invalid UTF-8 at byte {exc.start}") from None
            if not text.strip():
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as exc:
                raise InputError(f"{path}:{number}: malformed JSON: {exc.msg}") from None
            except RecursionError:
                raise InputError(f"{path}:{number}: JSON nested too deeply") from None
            except ValueError as exc:  # e.g. an integer past Python's digit limit
                reason = str(exc).split(";")[0]
                raise InputError(f"{path}:{number}: unreadable JSON value: {reason}") from None
            if not isinstance(obj, dict):
                raise InputError(f"{path}:{number}: expected a JSON object")
            check_values(obj, f"{path}:{number}")
            yield number, obj


MAX_DEPTH = 32


def check_values(obj: Any, where: str) -> None:
    """Refuse values no record can hold: nesting deeper than :data:`MAX_DEPTH` levels and
    text that is not valid Unicode (an unpaired surrogate such as ``"\\ud800"``, which JSON
    can spell but UTF-8 cannot encode).

    Example:
        >>> check_values({"steps": ["ok"]}, "f.jsonl:1")
        >>> check_values({"steps": [chr(0xD800)]}, "f.jsonl:1")
        Traceback (most recent call last):
        ...
        dgprm.errors.InputError: f.jsonl:1: field 'steps[0]': text is not valid Unicode ...
    """
    stack: list[tuple[Any, str, int]] = [(obj, "", 0)]
    while stack:
        value, field, depth = stack.pop()
        if depth > MAX_DEPTH:
            top = field.split(".")[0].split("[")[0]
            raise InputError(f"{where}: field '{top}': nested deeper than {MAX_DEPTH} levels")
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise InputError(
                    f"{where}: field '{field or '(key)'}': text is not valid Unicode "
                    "(an unpaired surrogate)"
                ) from None
        elif isinstance(value, dict):
            for key, item in value.items():
                name = f"{field}.{key}" if field else str(key)
                stack.append((key, field, depth + 1))
                stack.append((item, name, depth + 1))
        elif isinstance(value, list):
            stack.extend((item, f"{field}[{i}]", depth + 1) for i, item in enumerate(value))


def read_records(
    path: str | Path,
    model: type[Record],
    *,
    max_chars: int = DEFAULT_MAX_CHARS,
    on_long: Literal["error", "truncate"] = "error",
) -> list[Record]:
    """Read and validate every line of a JSONL file as ``model``.

    Example:
        >>> import tempfile, pathlib
        >>> f = pathlib.Path(tempfile.mkdtemp()) / "t.jsonl"
        >>> _ = f.write_text('{"id": "a", "question": "q", "steps": ["s"]}\\n')
        >>> [t.id for t in read_records(f, Trajectory)]
        ['a']
    """
    records: list[Record] = []
    seen: set[str] = set()
    for number, obj in iter_json_lines(path):
        where = f"{path}:{number}"
        obj = _limit_lengths(obj, max_chars, on_long, where)
        try:
            record = model.model_validate(obj)
        except ValidationError as exc:
            field, message = _first_error(exc)
            raise InputError(f"{where}: field '{field}': {message}") from None
        record_id = getattr(record, "id", None)
        if record_id is not None:
            if record_id in seen:
                raise InputError(f"{where}: field 'id': duplicate id {record_id!r}")
            seen.add(record_id)
        records.append(record)
    if not records:
        raise InputError(f"{path}: no records")
    return records


def records_from(
    source: str | Path | list[Record],
    model: type[Record],
    *,
    limit: int | None = None,
    max_chars: int = DEFAULT_MAX_CHARS,
    on_long: Literal["error", "truncate"] = "error",
) -> list[Record]:
    """The first ``limit`` records of ``source``: a JSONL file (read and validated as
    ``model``, see :func:`read_records`) or records already in memory.

    Example:
        >>> given = [Trajectory(id=i, question="q", steps=["s"]) for i in "abc"]
        >>> [t.id for t in records_from(given, Trajectory, limit=2)]
        ['a', 'b']
    """
    if isinstance(source, list):
        return source[:limit]
    return read_records(source, model, max_chars=max_chars, on_long=on_long)[:limit]
