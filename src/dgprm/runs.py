"""The resumable-run skeleton shared by scoring, pairs and the benchmarks.

A run takes items, skips those whose record is already in its JSONL output (so an
interrupted run continues where it stopped), works on the rest at a bounded concurrency
and appends one record per item as soon as it is done. :class:`RunStats` holds what
every such run reports: items done, records kept from an earlier run (and how many of
them have errors), records with errors redone, wall time and the LLM usage.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from dgprm.files import OutputKind, atomic_path, check_output_file
from dgprm.llm.cache import Ledger
from dgprm.llm.client import LLMClient
from dgprm.progress import NoProgress, Progress


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
        kind: OutputKind | None = None,
    ) -> None:
        if kind is not None:
            check_output_file(path, kind)  # never append to a file of another kind
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


@contextlib.contextmanager
def long_lived_heap_frozen() -> Iterator[None]:
    """Keep the cyclic GC's full collections off every object created before the block.

    Models, trees and imported modules outlive a run. A full collection that walks them
    stops the event loop, and every request in flight with it: 0.11 s per pause over
    ~150k objects in ``benchmarks/scoring_throughput.py``, 5 % of a run's wall time at
    concurrency 32. The objects are unfrozen afterwards.

    Example:
        >>> with long_lived_heap_frozen():
        ...     gc.get_freeze_count() > 0
        True
    """
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


Item = TypeVar("Item")


async def for_each_bounded(
    items: Iterable[Item], work: Callable[[Item], Awaitable[None]], concurrency: int
) -> None:
    """Await ``work(item)`` for every item, at most ``concurrency`` at a time, with the
    long-lived heap frozen (see :func:`long_lived_heap_frozen`).

    Example:
        >>> seen = []
        >>> async def work(x):
        ...     seen.append(x)
        >>> asyncio.run(for_each_bounded([1, 2, 3], work, concurrency=2))
        >>> sorted(seen)
        [1, 2, 3]
    """
    limit = asyncio.Semaphore(concurrency)

    async def bounded(item: Item) -> None:
        async with limit:
            await work(item)

    with long_lived_heap_frozen():
        await asyncio.gather(*(bounded(item) for item in items))


@dataclass
class RunStats:
    """What a resumable run did; every stage's report extends it with its own counts."""

    done: int = 0  # items worked on by this run
    skipped: int = 0  # items whose record was already in the output
    skipped_with_errors: int = 0  # ... of which have errors
    retried: int = 0  # records with errors dropped from the output and done again
    wall_seconds: float = 0.0
    ledger: Ledger = field(default_factory=Ledger)

    def earlier_note(self) -> str:
        """How this run used the records already in its output (see :func:`earlier_run_note`)."""
        return earlier_run_note(self.skipped, self.skipped_with_errors, self.retried)

    def usage_rows(self, units: int, unit: str) -> list[tuple[str, str]]:
        """Closing-summary rows: LLM calls, cache hits, tokens and errors, then wall time."""
        return [*self.ledger.summary_rows(units, unit), ("wall time", f"{self.wall_seconds:.1f} s")]


async def run_resumable(
    items: Sequence[Item],
    out: str | Path,
    work: Callable[[Item], Awaitable[dict[str, Any]]],
    stats: RunStats,
    *,
    key: str = "id",
    id_of: Callable[[Item], str] = lambda item: str(getattr(item, "id")),  # noqa: B009
    clients: Sequence[LLMClient] = (),
    concurrency: int = 4,
    progress: Progress | None = None,
    stage: str = "items",
    retry_errors: bool = False,
    kind: OutputKind | None = None,
) -> None:
    """Run ``work`` on every item whose record (``key`` = its id) is not yet in ``out``,
    at most ``concurrency`` at a time, appending each returned record as soon as it is done.

    With ``retry_errors``, items whose record has errors (:func:`has_errors`) are done
    again. ``stats`` receives the counts, the wall time and the usage of ``clients``
    during the run.

    Example:
        >>> import pathlib, tempfile
        >>> out = pathlib.Path(tempfile.mkdtemp()) / "out.jsonl"
        >>> async def square(n):
        ...     return {"id": str(n), "value": n * n}
        >>> stats = RunStats()
        >>> asyncio.run(run_resumable([1, 2], out, square, stats, id_of=str))
        >>> stats.done, stats.skipped
        (2, 0)
        >>> asyncio.run(run_resumable([1, 2, 3], out, square, stats := RunStats(), id_of=str))
        >>> stats.done, stats.skipped, len(out.read_text().splitlines())
        (1, 2, 3)
    """
    started = time.perf_counter()
    progress = progress or NoProgress()
    unique = list({id(c): c for c in clients}.values())
    before = [client.ledger.copy() for client in unique]
    with ResumableJsonl(
        out,
        key=key,
        failed=has_errors,
        retry_failed=retry_errors,
        among={id_of(item) for item in items},
        kind=kind or OutputKind("records", frozenset({key})),
    ) as sink:
        todo = [item for item in items if id_of(item) not in sink.done]
        stats.skipped = len(items) - len(todo)
        stats.skipped_with_errors, stats.retried = sink.failed_kept, sink.retried
        progress.start(stage, len(todo))

        async def one(item: Item) -> None:
            sink.write(await work(item))
            stats.done += 1
            progress.advance(stage)

        try:
            await for_each_bounded(todo, one, concurrency)
        finally:  # an interrupted run's usage is counted too
            for client, snapshot in zip(unique, before, strict=True):
                stats.ledger.add(client.ledger.since(snapshot))
            stats.wall_seconds = time.perf_counter() - started
