"""Records for every file dgprm reads or writes, and JSONL input/output.

Every reader reports bad input as :class:`InputError` with the file, the line
and the field, so a user can fix the exact place. Every writer writes to a
temporary file first and renames it, so no half-written artifact is left.

Example:
    >>> pair = PreferencePair(id="p1", question="2+2?", chosen=["2+2=4"], rejected=["2+2=5"])
    >>> pair.chosen_steps
    ['2+2=4']
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

DEFAULT_MAX_CHARS = 20_000


class InputError(ValueError):
    """Bad user input, with a one-line message naming file, line and field."""


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
    """A step-segmented solution to score (also used for prefixes)."""

    model_config = ConfigDict(extra="ignore")

    id: str
    question: str
    steps: list[str] = Field(default_factory=list)

    @field_validator("id", "question")
    @classmethod
    def _not_blank(cls, value: str, info: Any) -> str:
        return _nonblank(value, info.field_name)

    @field_validator("steps")
    @classmethod
    def _steps_ok(cls, value: list[str]) -> list[str]:
        return _steps(value, "steps")


class Prefix(Trajectory):
    """A question and the steps taken so far; candidates continue after them (may be empty)."""

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
            if not isinstance(obj, dict):
                raise InputError(f"{path}:{number}: expected a JSON object")
            yield number, obj


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


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it over ``path`` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def write_jsonl(path: str | Path, rows: list[dict[str, Any]] | Iterator[dict[str, Any]]) -> int:
    """Atomically write ``rows`` as JSONL; return the number of lines."""
    count = 0
    with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
    return count


def file_sha256(path: str | Path) -> str:
    """SHA-256 hex digest of a file, read in 1 MiB blocks (input hashes in manifests)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_json(path: str | Path, obj: Any) -> None:
    """Atomically write one JSON document."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


def has_errors(record: dict[str, Any]) -> bool:
    """Whether an output record carries errors: an ``errors`` list (``score``, ``pairs``)
    or an ``error`` field (benchmark predictions).

    Example:
        >>> has_errors({"id": "a", "errors": []}), has_errors({"id": "b", "errors": ["x"]})
        (False, True)
        >>> has_errors({"idx": "c", "error": "critic: unparseable answer"})
        True
    """
    return bool(record.get("errors") or record.get("error"))


def earlier_run_note(kept: int, failed_kept: int, retried: int) -> str:
    """How a resumed run used the records already in its output, for its summary.

    Example:
        >>> earlier_run_note(5, 2, 0)
        '+5 from an earlier run, 2 of them with errors (--retry-errors redoes them)'
        >>> earlier_run_note(3, 0, 2)
        '+3 from an earlier run; 2 with errors redone'
    """
    note = f"+{kept} from an earlier run"
    if retried:
        return f"{note}; {retried} with errors redone"
    if failed_kept:
        return f"{note}, {failed_kept} of them with errors (--retry-errors redoes them)"
    return note


class ResumableJsonl:
    """An append-only JSONL output that a re-run continues.

    Complete lines already present are kept and their ``id`` values reported by
    :attr:`done`; a torn last line (from a killed run) is dropped. Lines of the ids in
    ``among`` (all lines when ``None``) for which ``failed`` is true are counted in
    :attr:`failed_kept`, or, with ``retry_failed``, dropped so that their ids are done
    again (counted in :attr:`retried`).

    Example:
        >>> import pathlib, tempfile
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "out.jsonl"
        >>> _ = path.write_text('{"id": "a", "errors": []}\\n{"id": "b", "errors": ["x"]}\\n')
        >>> with ResumableJsonl(path, failed=has_errors) as sink:
        ...     sorted(sink.done), sink.failed_kept
        (['a', 'b'], 1)
        >>> with ResumableJsonl(path, failed=has_errors, retry_failed=True, among={"a"}) as sink:
        ...     sorted(sink.done), sink.retried  # "b" is not asked for: kept as it is
        (['a', 'b'], 0)
        >>> with ResumableJsonl(path, failed=has_errors, retry_failed=True) as sink:
        ...     sorted(sink.done), sink.retried
        (['a'], 1)
    """

    def __init__(
        self,
        path: str | Path,
        key: str = "id",
        *,
        failed: Callable[[dict[str, Any]], bool] | None = None,
        retry_failed: bool = False,
        among: set[str] | None = None,
    ) -> None:
        self.path = Path(path)
        self.key = key
        self.done: set[str] = set()
        self.failed_kept = 0
        self.retried = 0
        if self.path.exists():
            good: list[str] = []
            for raw in self.path.read_bytes().splitlines(keepends=True):
                try:
                    obj = json.loads(raw)
                except (json.JSONDecodeError, UnicodeDecodeError):
                    continue
                if not (raw.endswith(b"\n") and isinstance(obj, dict) and key in obj):
                    continue
                ours = among is None or str(obj[key]) in among
                if failed is not None and ours and failed(obj):
                    if retry_failed:
                        self.retried += 1
                        continue
                    self.failed_kept += 1
                self.done.add(str(obj[key]))
                good.append(raw.decode("utf-8"))
            with atomic_path(self.path) as tmp:
                tmp.write_text("".join(good), encoding="utf-8")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = self.path.open("a", encoding="utf-8")

    def write(self, row: dict[str, Any]) -> None:
        self._handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        self._handle.flush()
        self.done.add(str(row[self.key]))

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> ResumableJsonl:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
