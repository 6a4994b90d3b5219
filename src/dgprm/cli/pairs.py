"""``dgprm pairs``: Pareto preference pairs for DPO from scored candidate next steps."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dgprm.cli.common import (
    CacheOpt,
    ConcurrencyOpt,
    ConfigOpt,
    EmbedderOpt,
    LimitOpt,
    LlmOpt,
    RayOpt,
    RayWorkersOpt,
    RetryErrorsOpt,
    TimeoutOpt,
    flag,
    load_settings,
    option,
    print_summary,
    runtime_overrides,
    with_progress,
)
from dgprm.cli.score import MergeOpt, ScoreModeOpt
from dgprm.config import PairsConfig


def pairs(
    prefixes: Annotated[Path, typer.Argument(help="Prefixes JSONL {id, question, steps}.")],
    tree: Annotated[Path, typer.Option(help="Reward tree directory.")],
    out: Annotated[Path, typer.Option("-o", "--out", help="DPO pairs JSONL (TRL format).")],
    policy: Annotated[
        str | None,
        typer.Option(help="Policy LLM that samples candidate next steps (same specs as --llm)."),
    ] = None,
    candidates: Annotated[
        Path | None,
        typer.Option(help="Candidates JSONL {id, candidates: [step, ...]} instead of a policy."),
    ] = None,
    n: Annotated[int | None, option(PairsConfig, "n", "--n")] = None,
    temperature: Annotated[
        float | None, option(PairsConfig, "temperature", "--temperature")
    ] = None,
    seed: Annotated[int | None, option(PairsConfig, "seed", "--seed")] = None,
    conversational: Annotated[
        bool, flag(PairsConfig, "conversational", "--conversational")
    ] = False,
    merge_r_phi: MergeOpt = False,
    score_mode: ScoreModeOpt = None,
    config: ConfigOpt = None,
    llm: LlmOpt = None,
    embedder: EmbedderOpt = None,
    limit: LimitOpt = None,
    concurrency: ConcurrencyOpt = None,
    cache: CacheOpt = None,
    timeout: TimeoutOpt = None,
    retry_errors: RetryErrorsOpt = False,
    ray: RayOpt = None,
    ray_workers: RayWorkersOpt = None,
) -> None:
    """Pareto preference pairs for DPO from scored candidate next steps.

    Candidates of a prefix are scored on a common criterion set; each Pareto-optimal
    candidate is paired with every candidate it dominates.

    Scored prefixes are kept in OUT with the suffix .scored.jsonl, so an
    interrupted run continues where it stopped (--retry-errors also redoes those
    with errors).
    """
    from dgprm.pairs import amake_pairs, scored_path

    settings = load_settings(
        config,
        runtime=runtime_overrides(
            llm=llm, embedder=embedder, concurrency=concurrency, cache=cache, timeout=timeout
        ),
        scoring={"merge_r_phi": merge_r_phi or None, "score_mode": score_mode},
        pairs={
            "n": n,
            "temperature": temperature,
            "seed": seed,
            "conversational": conversational or None,
        },
    )
    report = with_progress(
        lambda progress: amake_pairs(
            prefixes,
            out,
            tree=tree,
            policy=policy,
            candidates=candidates,
            scoring=settings.scoring,
            config=settings.pairs,
            runtime=settings.runtime,
            limit=limit,
            retry_errors=retry_errors,
            progress=progress,
            ray=ray,
            ray_workers=ray_workers,
        )
    )
    print_summary("pairs", [*report.rows(), ("output", f"{out} ({scored_path(out).name})")])
