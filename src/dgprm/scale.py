"""Scale-out on Ray: one input sharded over a Ray cluster, each worker with its own LLM client.

:func:`run_sharded` splits the items not yet in the output into shards by a stable hash of
their id, starts one Ray actor per shard (it builds its own scorer and LLM client from a
picklable builder, such as :func:`dgprm.scoring.batch.score_work`), and runs the ordinary
resumable-run skeleton (:func:`dgprm.runs.run_resumable`) once per shard on the driver, with
the actor doing the work. Each shard appends to its own file,
``OUT.shards/shard-K-of-N.jsonl``; when every shard is done, the shard files are merged into
``OUT`` in input order and removed. A run that was interrupted (or whose worker died) leaves
its shard files: the next run merges the finished lines first and works only on what is
left, so no finished item is scored twice. The lines are the ones a single-process run
writes.

Ray is an optional dependency (``pip install 'dgprm[ray]'``). ``address="auto"`` connects to
the Ray cluster this machine runs (``ray start``) or, without one, starts a local one; any
other value is a cluster address (``ray://host:10001``, ``host:6379``). On a cluster of
several machines, dgprm must be installed on every node; the output is written by the
driver, so it needs no shared file system; each worker's response cache is its node's
(``--cache``).
"""

from __future__ import annotations

import asyncio
import json
import time
import zlib
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from dgprm.errors import InputError
from dgprm.llm.cache import Ledger
from dgprm.llm.client import usage_scope
from dgprm.progress import NoProgress, Progress
from dgprm.runs import ResumableJsonl, RunStats, has_errors, run_resumable

Item = TypeVar("Item")
Work = Callable[[Any], Awaitable[dict[str, Any]]]


def shard_of(item_id: str, shards: int) -> int:
    """The shard (0 … ``shards`` - 1) of an item: a stable hash of its id, the same in every
    process and run.

    Example:
        >>> [shard_of(f"t{i}", 2) for i in range(10)]
        [1, 1, 1, 1, 0, 0, 0, 0, 1, 1]
    """
    return zlib.crc32(item_id.encode("utf-8")) % shards


def shards_dir(out: str | Path) -> Path:
    """Where the shard files of the output ``out`` are kept while a sharded run is going.

    Example:
        >>> shards_dir("runs/rewards.jsonl").name
        'rewards.jsonl.shards'
    """
    out = Path(out)
    return out.with_name(out.name + ".shards")


def merge_shards(out: str | Path, order: Sequence[str] = (), *, key: str = "id") -> int:
    """Append the complete lines of the shard files of ``out`` whose id is not yet in
    ``out`` (ids in ``order`` first, in that order), then remove the shard files. Returns the
    number of lines appended.

    Example:
        >>> import json, pathlib, tempfile
        >>> out = pathlib.Path(tempfile.mkdtemp()) / "out.jsonl"
        >>> shards_dir(out).mkdir()
        >>> _ = (shards_dir(out) / "shard-0-of-2.jsonl").write_text('{"id": "b"}\\n{"id": "c"')
        >>> _ = (shards_dir(out) / "shard-1-of-2.jsonl").write_text('{"id": "a"}\\n')
        >>> merge_shards(out, order=["a", "b", "c"]), out.read_text(), shards_dir(out).exists()
        (2, '{"id": "a"}\\n{"id": "b"}\\n', False)
    """
    directory = shards_dir(out)
    files = sorted(directory.glob("shard-*.jsonl")) if directory.is_dir() else []
    rows: dict[str, dict[str, Any]] = {}
    for file in files:
        with ResumableJsonl(file, key=key) as shard:  # drops a torn last line
            done = shard.done
        if not done:
            continue
        for line in file.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            rows.setdefault(str(row[key]), row)
    rank = {item_id: i for i, item_id in enumerate(order)}
    appended = 0
    with ResumableJsonl(out, key=key) as sink:
        for item_id in sorted(rows, key=lambda i: rank.get(i, len(rank))):
            if item_id not in sink.done:
                sink.write(rows[item_id])
                appended += 1
    for file in files:
        file.unlink()
    if directory.is_dir() and not any(directory.iterdir()):
        directory.rmdir()
    return appended


def connect(address: str = "auto") -> Any:
    """Connect to Ray (see the module docstring for ``address``); returns the ``ray`` module."""
    try:
        import ray
    except ImportError:
        raise InputError("--ray needs Ray: pip install 'dgprm[ray]'") from None
    if ray.is_initialized():
        return ray
    options: dict[str, Any] = {"include_dashboard": False, "logging_level": "WARNING"}
    if address == "auto":
        try:
            ray.init(address="auto", **options)
        except ConnectionError:  # no cluster on this machine: a local one, on loopback only
            ray.init(_node_ip_address="127.0.0.1", **options)
    else:
        try:
            ray.init(address=address, **options)
        except ConnectionError as exc:
            raise InputError(f"--ray {address}: cannot connect to a Ray cluster: {exc}") from None
    return ray


class ShardError(RuntimeError):
    """A shard of a sharded run failed (its worker died, or its work raised); the lines that
    were finished are kept, and running the same command again continues."""


class ShardWorker:
    """A Ray actor: builds its work function once (its own scorer and LLM client) and runs
    it on the items it is sent, returning each item's record and the LLM usage it took."""

    def __init__(self, build: Callable[..., Work], *args: Any) -> None:
        self.work = build(*args)

    async def run(self, item: Any) -> tuple[dict[str, Any], dict[str, float]]:
        with usage_scope() as usage:
            record = await self.work(item)
        return record, usage.to_dict()


async def run_sharded(
    items: Sequence[Item],
    out: str | Path,
    build: Callable[..., Work],
    args: Sequence[Any],
    stats: RunStats,
    *,
    on_record: Callable[[Item, dict[str, Any]], None] | None = None,
    key: str = "id",
    id_of: Callable[[Item], str] = lambda item: str(getattr(item, "id")),  # noqa: B009
    address: str = "auto",
    workers: int | None = None,
    concurrency: int = 4,
    progress: Progress | None = None,
    stage: str = "items",
    retry_errors: bool = False,
) -> None:
    """Do what :func:`dgprm.runs.run_resumable` does, sharded over Ray workers.

    Each of ``workers`` actors (default: the cluster's CPUs) calls ``build(*args)`` once
    to make its work function (item → record), so ``build`` and ``args`` must be picklable
    (a module-level function; large arguments are put in Ray's object store once).
    ``on_record(item, record)`` is called on the driver for every record written;
    ``stats`` receives the counts, the wall time and the LLM usage of all workers.
    Shard files and resumption: see the module docstring.
    """
    started = time.perf_counter()
    progress = progress or NoProgress()
    order = [id_of(item) for item in items]
    merge_shards(out, order, key=key)  # what an interrupted run finished
    with ResumableJsonl(
        out, key=key, failed=has_errors, retry_failed=retry_errors, among=set(order)
    ) as sink:
        done = set(sink.done)
        stats.skipped_with_errors, stats.retried = sink.failed_kept, sink.retried
    todo = [item for item in items if id_of(item) not in done]
    stats.skipped = len(items) - len(todo)
    if todo:
        ray = connect(address)
        cpus = float(ray.cluster_resources().get("CPU", 1))
        count = max(1, workers or int(cpus))
        groups = [
            [item for item in todo if shard_of(id_of(item), count) == k] for k in range(count)
        ]
        actor = ray.remote(num_cpus=min(1.0, cpus / count))(ShardWorker)
        refs = [ray.put(arg) for arg in args]
        live = {k: actor.remote(build, *refs) for k, group in enumerate(groups) if group}
        directory = shards_dir(out)
        directory.mkdir(parents=True, exist_ok=True)

        async def shard(k: int) -> RunStats:
            shard_stats = RunStats()  # the ledger: the usage the worker reports per item

            async def work(item: Item) -> dict[str, Any]:
                record, usage = await live[k].run.remote(item)
                shard_stats.ledger.add(Ledger(**usage))
                if on_record is not None:
                    on_record(item, record)
                return record

            await run_resumable(
                groups[k],
                directory / f"shard-{k}-of-{count}.jsonl",
                work,
                shard_stats,
                key=key,
                id_of=id_of,
                concurrency=concurrency,
                progress=progress,
                stage=f"{stage} {k + 1}/{count}",
            )
            return shard_stats

        try:
            # every shard runs to its end even when another fails, so a re-run redoes only
            # the shard that failed
            results = await asyncio.gather(*(shard(k) for k in live), return_exceptions=True)
        finally:
            for handle in live.values():
                ray.kill(handle)
        failed = [
            (k, r) for k, r in zip(live, results, strict=True) if isinstance(r, BaseException)
        ]
        for result in results:
            if isinstance(result, RunStats):
                stats.done += result.done
                stats.ledger.add(result.ledger)
        if failed:
            k, exc = failed[0]
            reason = (str(exc).strip().splitlines() or [""])[0][:300]
            raise ShardError(
                f"shard {k + 1}/{count} failed ({type(exc).__name__}: {reason}); the finished "
                f"lines are kept in {directory}: run the same command again to continue"
            ) from exc
        merge_shards(out, order, key=key)
    stats.wall_seconds = time.perf_counter() - started
