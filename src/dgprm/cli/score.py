"""``dgprm score``: a reward vector for every step of every trajectory."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from dgprm.cli.common import (
    CacheOpt,
    ConcurrencyOpt,
    ConfigOpt,
    EmbedderOpt,
    LimitOpt,
    LlmOpt,
    MaxCharsOpt,
    RayOpt,
    RayWorkersOpt,
    RetryErrorsOpt,
    TimeoutOpt,
    TruncateOpt,
    flag,
    load_settings,
    option,
    print_summary,
    runtime_overrides,
    with_progress,
)
from dgprm.config import ScoringConfig
from dgprm.errors import InputError

MuOpt = Annotated[int | None, option(ScoringConfig, "mu", "--mu")]
ZetaOpt = Annotated[float | None, option(ScoringConfig, "zeta", "--zeta")]
AggOpt = Annotated[str | None, option(ScoringConfig, "agg", "--agg")]
ThresholdOpt = Annotated[float | None, option(ScoringConfig, "threshold", "--threshold")]
MergeOpt = Annotated[bool, flag(ScoringConfig, "merge_r_phi", "--merge-r-phi")]
ScoreModeOpt = Annotated[str | None, option(ScoringConfig, "score_mode", "--score-mode")]


def scoring_overrides(
    *,
    mu: int | None = None,
    zeta: float | None = None,
    agg: str | None = None,
    threshold: float | None = None,
    merge_r_phi: bool = False,
    score_mode: str | None = None,
    no_tree: bool = False,
    static: bool = False,
    no_context: bool = False,
) -> dict[str, Any]:
    """The scoring options given on the command line (``None`` = not given)."""
    if no_tree and static:
        raise InputError("--no-tree and --static are exclusive")
    return {
        "mu": 0 if no_context else mu,
        "zeta": zeta,
        "agg": agg,
        "threshold": threshold,
        "merge_r_phi": merge_r_phi or None,
        "score_mode": score_mode,
        "mode": "no-tree" if no_tree else "static" if static else None,
    }


def score(
    trajectories: Annotated[Path, typer.Argument(help="Trajectories JSONL {id, question, steps}.")],
    tree: Annotated[Path | None, typer.Option(help="Reward tree directory.")] = None,
    out: Annotated[Path, typer.Option("-o", "--out", help="Output step rewards JSONL.")] = Path(
        "step_rewards.jsonl"
    ),
    config: ConfigOpt = None,
    llm: LlmOpt = None,
    embedder: EmbedderOpt = None,
    mu: MuOpt = None,
    zeta: ZetaOpt = None,
    agg: AggOpt = None,
    threshold: ThresholdOpt = None,
    merge_r_phi: MergeOpt = False,
    score_mode: ScoreModeOpt = None,
    no_tree: Annotated[
        bool, typer.Option("--no-tree", help="Ablation: plain LLM critic, one generic criterion.")
    ] = False,
    static: Annotated[
        bool,
        typer.Option("--static", help="Ablation: score on every parent, no dynamic selection."),
    ] = False,
    no_context: Annotated[bool, typer.Option("--no-context", help="Ablation: μ = 0.")] = False,
    limit: LimitOpt = None,
    concurrency: ConcurrencyOpt = None,
    cache: CacheOpt = None,
    timeout: TimeoutOpt = None,
    max_chars: MaxCharsOpt = None,
    truncate: TruncateOpt = False,
    retry_errors: RetryErrorsOpt = False,
    ray: RayOpt = None,
    ray_workers: RayWorkersOpt = None,
) -> None:
    """Score every step of every trajectory: a reward vector per step.

    Trajectories whose id is already in OUT are skipped, so an interrupted run
    continues where it stopped (--retry-errors also redoes those with errors).
    """
    from dgprm.scoring.batch import ascore_file

    settings = load_settings(
        config,
        runtime=runtime_overrides(
            llm=llm,
            embedder=embedder,
            concurrency=concurrency,
            cache=cache,
            timeout=timeout,
            max_chars=max_chars,
            truncate=truncate,
        ),
        scoring=scoring_overrides(
            mu=mu,
            zeta=zeta,
            agg=agg,
            threshold=threshold,
            merge_r_phi=merge_r_phi,
            score_mode=score_mode,
            no_tree=no_tree,
            static=static,
            no_context=no_context,
        ),
    )
    report = with_progress(
        lambda progress: ascore_file(
            trajectories,
            out,
            tree=tree,
            scoring=settings.scoring,
            runtime=settings.runtime,
            limit=limit,
            retry_errors=retry_errors,
            progress=progress,
            ray=ray,
            ray_workers=ray_workers,
        )
    )
    print_summary(f"score ({settings.scoring.mode})", [*report.rows(), ("output", str(out))])
