"""Writing files without leaving half-written ones: temp file, then rename.

Example:
    >>> import pathlib, tempfile
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "rows.jsonl"
    >>> write_jsonl(out, [{"id": "a"}, {"id": "b"}])
    2
    >>> len(file_sha256(out))
    64
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dgprm.errors import InputError


@functools.cache
def _umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it: set it straight back
    os.umask(mask)
    return mask


def user_mode(directory: bool = False) -> int:
    """The permissions a new file (or directory) gets under the user's umask: temporary
    files and directories are made private (0600 / 0700) and take these before they are
    renamed into place, so dgprm's outputs look like every other file the user makes."""
    return (0o777 if directory else 0o666) & ~_umask()


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
        tmp_path.chmod(user_mode())
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


_HEAD = 1 << 20
_WEIGHT_SUFFIXES = (".json", ".safetensors", ".bin", ".model", ".txt", ".gguf")


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    size = path.stat().st_size
    digest.update(f"{path.name}:{size}".encode())
    with path.open("rb") as handle:
        digest.update(handle.read(_HEAD))
        if size > 2 * _HEAD:
            handle.seek(size - _HEAD)
            digest.update(handle.read(_HEAD))
    return digest.hexdigest()


def fingerprint(path: str | Path) -> str:
    """A short content fingerprint of a model directory (or file).

    Example:
        >>> import pathlib, tempfile
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (d / "config.json").write_text("{}")
        >>> before = fingerprint(d)
        >>> _ = (d / "config.json").write_text('{"a": 1}')
        >>> len(before), before != fingerprint(d)
        (12, True)
    """
    path = Path(path)
    files = [path] if path.is_file() else sorted(p for p in path.iterdir() if p.is_file())
    digest = hashlib.sha256()
    for file in files:
        if file.suffix in _WEIGHT_SUFFIXES:
            digest.update(_file_digest(file).encode())
    return digest.hexdigest()[:12]


def write_json(path: str | Path, obj: Any) -> None:
    """Atomically write one JSON document."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


@dataclass(frozen=True)
class OutputKind:
    """What a dgprm output file holds, recognised by the keys every line has."""

    noun: str
    keys: frozenset[str]

    def matches(self, obj: Any) -> bool:
        return isinstance(obj, dict) and self.keys <= obj.keys()


STEP_REWARDS = OutputKind("step rewards (dgprm score)", frozenset({"id", "steps", "errors"}))
SCORED_PREFIXES = OutputKind("scored prefixes (dgprm pairs)", frozenset({"id", "candidates"}))
DPO_PAIRS = OutputKind("DPO pairs (dgprm pairs)", frozenset({"prompt", "chosen", "rejected"}))
PREFERENCE_PAIRS = OutputKind(
    "preference pairs", frozenset({"id", "question", "chosen", "rejected"})
)
TRAJECTORIES = OutputKind("trajectories", frozenset({"id", "question", "steps"}))


def _resolved(path: str | Path) -> Path:
    return Path(path).expanduser().resolve()


def check_not_an_input(out: str | Path, inputs: Iterable[str | Path | None]) -> None:
    """Refuse an output path that is one of the ``inputs``, or a directory holding one
    (writing it would replace the input).

    Example:
        >>> check_not_an_input("runs/a.jsonl", ["data/b.jsonl"])
        >>> check_not_an_input("data/b.jsonl", ["data/b.jsonl"])
        Traceback (most recent call last):
        ...
        dgprm.errors.InputError: data/b.jsonl: the output is also an input; choose another -o
    """
    target = _resolved(out)
    for given in inputs:
        if given is None:
            continue
        source = _resolved(given)
        if source == target or source.is_relative_to(target):
            what = "also an input" if source == target else f"a directory holding {given}"
            raise InputError(f"{out}: the output is {what}; choose another -o")


def check_output_file(
    out: str | Path, kind: OutputKind, inputs: Iterable[str | Path | None] = ()
) -> None:
    """Refuse ``out`` before anything is written when it is an input, a directory, or an
    existing file that is not ``kind`` (a file dgprm did not write is never replaced).
    A torn last line (a run killed mid-write) is allowed."""
    check_not_an_input(out, inputs)
    path = Path(out)
    if not path.exists():
        return
    if not path.is_file():
        raise InputError(f"{out}: is a directory; give a file path for the {kind.noun}")
    lines = path.read_bytes().splitlines(keepends=True)
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except (ValueError, RecursionError):
            if number == len(lines) and not raw.endswith(b"\n"):
                continue  # the torn last line of a killed run
            obj = None
        if not kind.matches(obj):
            raise InputError(
                f"{out}:{number}: exists and is not {kind.noun}; dgprm does not replace a file "
                "it did not write (choose another -o)"
            )


def check_output_dir(
    out: str | Path, marker: str, noun: str, inputs: Iterable[str | Path | None] = ()
) -> None:
    """Refuse ``out`` when it is an input, a file, or an existing non-empty directory
    without ``marker`` (the file dgprm writes into every ``noun``)."""
    check_not_an_input(out, inputs)
    path = Path(out)
    if not path.exists():
        return
    if not path.is_dir():
        raise InputError(f"{out}: exists and is not a directory; choose another -o")
    if any(path.iterdir()) and not (path / marker).is_file():
        raise InputError(
            f"{out}: exists and is not a {noun} (no {marker}); dgprm does not replace a "
            "directory it did not write (choose another -o)"
        )
