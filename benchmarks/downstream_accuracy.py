"""Downstream accuracy of a policy with PRM-guided selection (the paper's §4 table): the
same run that ``dgprm bench downstream`` will make, from model specs.

Writes RUN/predictions.jsonl, results.json, chart.png and run.json (resumable: the same
command again continues), then prints the closing summary, the accuracy table and the
cost of every strategy per question.

Usage (the full 50-question measurement):

    python benchmarks/downstream_accuracy.py --task arc-c --data ../shared/data --split test \\
        --limit 50 --policy embedded --llm embedded --tree runs/tree \\
        --prm none,critic,dgprm --strategy majority,best-of-n,weighted,beam --n 1,4 \\
        -o runs/downstream_arc --cache /tmp/downstream.sqlite

When ``--policy`` equals ``--llm`` one model (and one client) serves both.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from dgprm.config import Settings
from dgprm.downstream.bench import STRATEGIES, DownstreamOptions, bench_downstream
from dgprm.downstream.prm import AGGREGATIONS, make_prms
from dgprm.downstream.results import TABLE_HEADER, table_rows
from dgprm.downstream.tasks import TASKS, load_task, task_file
from dgprm.llm import LLMClient, ResponseCache, make_backend
from dgprm.records import InputError, file_sha256


def _csv(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--task", required=True, choices=TASKS)
    p.add_argument("--data", type=Path, default=None, help="data dir (default: the samples)")
    p.add_argument("--split", default="test")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--policy", default="embedded", help="policy LLM spec (hf:DIR, embedded, …)")
    p.add_argument("--llm", default="embedded", help="judge LLM spec for the PRMs")
    p.add_argument("--tree", type=Path, default=None, help="reward tree (PRM dgprm)")
    p.add_argument("--embedder", default=None, help="default: the tree's embedder")
    p.add_argument("--merge-r-phi", action="store_true")
    p.add_argument("--prm", default="none,critic", help="of dgprm, critic, orm, none")
    p.add_argument("--strategy", default=",".join(STRATEGIES))
    p.add_argument(
        "--agg", default=",".join(AGGREGATIONS), help="best-of-n/weighted step aggregations"
    )
    p.add_argument("--n", default="1,4,8")
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-tokens", type=int, default=384)
    p.add_argument("--max-steps", type=int, default=8)
    p.add_argument("--beam-expansions", type=int, default=4)
    p.add_argument("--beam-agg", default="last", choices=AGGREGATIONS)
    p.add_argument("--beam-max-tokens", type=int, default=128)
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--cache", default=None, help="response cache (default $DGPRM_CACHE)")
    p.add_argument("--retry-errors", action="store_true")
    p.add_argument("-o", "--out", type=Path, required=True)
    return p.parse_args(argv)


def _print_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(str(x)) for x in column) for column in zip(header, *rows, strict=True)]
    for line in (header, *rows):
        print("  ".join(str(x).rjust(w) for x, w in zip(line, widths, strict=True)))


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    from dgprm.tree import RewardTree

    prm_names = _csv(args.prm)
    options = DownstreamOptions(
        task=args.task,
        prms=tuple(prm_names),
        strategies=tuple(_csv(args.strategy)),
        ns=tuple(int(n) for n in _csv(args.n)),
        aggs=tuple(_csv(args.agg)),
        temperature=args.temperature,
        seed=args.seed,
        max_tokens=args.max_tokens,
        max_steps=args.max_steps,
        beam_expansions=args.beam_expansions,
        beam_agg=args.beam_agg,
        beam_max_tokens=args.beam_max_tokens,
        concurrency=args.concurrency,
    )
    tree = RewardTree.load(args.tree) if args.tree else None
    settings = Settings(llm=args.llm, concurrency=args.concurrency, cache=args.cache)
    embedder_spec = args.embedder or (
        tree.manifest.get("embedder_spec", "minilm") if tree else None
    )
    if embedder_spec:
        settings = settings.merged({"embedder": embedder_spec})
    cache = ResponseCache(settings.cache_path)
    judge = LLMClient(make_backend(args.llm), cache=cache, concurrency=args.concurrency)
    policy = (
        judge
        if args.policy == args.llm
        else LLMClient(make_backend(args.policy), cache=cache, concurrency=args.concurrency)
    )
    embedder = None
    if "dgprm" in prm_names:
        from dgprm.embed import make_embedder

        embedder = make_embedder(settings.embedder)
    prms = make_prms(
        [p for p in prm_names if p != "none"],
        judge=judge,
        settings=settings,
        tree=tree,
        tree_path=str(args.tree) if args.tree else None,
        embedder=embedder,
        merge_r_phi=args.merge_r_phi,
    )
    path = task_file(args.task, args.data, args.split)
    records = load_task(args.task, args.data, args.split, args.limit)
    source = {
        "task": args.task,
        "split": args.split,
        "data": str(path),
        "sha256": file_sha256(path),
        "limit": args.limit,
        "policy": args.policy,
        "llm": args.llm,
    }
    try:
        report = await bench_downstream(
            records,
            args.out,
            options=options,
            policy=policy,
            prms=prms,
            source=source,
            retry_errors=args.retry_errors,
        )
    finally:
        await judge.aclose()
        if policy is not judge:
            await policy.aclose()
    for key, value in report.rows():
        print(f"{key:>40}: {value}")
    print()
    _print_table(TABLE_HEADER, table_rows(report.results))
    return report.results


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    args = parse_args(argv)
    try:
        results = asyncio.run(_run(args))
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"\nwrote {args.out}/results.json ({len(results['results'])} rows), chart.png")
    print(json.dumps(results["candidates"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
