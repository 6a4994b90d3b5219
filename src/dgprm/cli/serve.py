"""``dgprm serve``: the reward server (FastAPI + uvicorn) for RL trainers."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from dgprm.cli.common import (
    CacheOpt,
    ConcurrencyOpt,
    ConfigOpt,
    EmbedderOpt,
    LlmOpt,
    MaxCharsOpt,
    TruncateOpt,
    console,
    load_settings,
    option,
    print_summary,
    runtime_overrides,
)
from dgprm.cli.score import MergeOpt, MuOpt, ThresholdOpt, ZetaOpt, scoring_overrides
from dgprm.config import RewardConfig, ScoringConfig, ServeConfig
from dgprm.errors import InputError

ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\"}


def unescape(text: str) -> str:
    r"""``\n``, ``\t``, ``\r`` and ``\\`` in a command-line value as the characters they name.

    Example:
        >>> unescape(r"\n\n"), unescape(r"a\\nb"), unescape("; ")
        ('\n\n', 'a\\nb', '; ')
    """
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text) and text[i + 1] in ESCAPES:
            out.append(ESCAPES[text[i + 1]])
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def serve(
    tree: Annotated[Path | None, typer.Option(help="Reward tree directory.")] = None,
    llm: LlmOpt = None,
    host: Annotated[str | None, option(ServeConfig, "host", "--host")] = None,
    port: Annotated[int | None, option(ServeConfig, "port", "--port")] = None,
    concurrency: ConcurrencyOpt = None,
    api_key_env: Annotated[str | None, option(ServeConfig, "api_key_env", "--api-key-env")] = None,
    agg: Annotated[str | None, option(RewardConfig, "agg", "--agg")] = None,
    step_sep: Annotated[
        str | None,
        typer.Option(
            "--step-sep",
            help=RewardConfig.model_fields["step_sep"].description
            + r" Backslash escapes \n and \t are read as newline and tab.",
            show_default=False,
        ),
    ] = None,
    on_error: Annotated[float | None, option(RewardConfig, "on_error", "--on-error")] = None,
    step_agg: Annotated[str | None, option(ScoringConfig, "agg", "--step-agg")] = None,
    mu: MuOpt = None,
    zeta: ZetaOpt = None,
    threshold: ThresholdOpt = None,
    merge_r_phi: MergeOpt = False,
    no_tree: Annotated[
        bool, typer.Option("--no-tree", help="Ablation: plain LLM critic, one generic criterion.")
    ] = False,
    static: Annotated[
        bool,
        typer.Option("--static", help="Ablation: score on every parent, no dynamic selection."),
    ] = False,
    max_body_bytes: Annotated[
        int | None, option(ServeConfig, "max_body_bytes", "--max-body-bytes")
    ] = None,
    no_access_log: Annotated[
        bool, typer.Option("--no-access-log", help="Do not log one line per request.")
    ] = False,
    config: ConfigOpt = None,
    embedder: EmbedderOpt = None,
    cache: CacheOpt = None,
    max_chars: MaxCharsOpt = None,
    truncate: TruncateOpt = False,
) -> None:
    """Serve step rewards over HTTP: POST /v1/score, POST /get_reward (OpenRLHF),
    GET /health, GET /v1/tree, GET /metrics (Prometheus).

    Every request shares one LLM client, its response cache and its concurrency bound. A
    solution whose scoring failed gets an error status (502) naming what failed, unless
    --on-error gives the reward to use instead (every use is counted in /metrics).
    """
    from dgprm.runs import long_lived_heap_frozen
    from dgprm.scoring.scorer import StepScorer

    try:
        from dgprm.serve import create_app
        from dgprm.serve import serve as run_server
    except ImportError as exc:
        raise InputError(
            f"dgprm serve needs FastAPI and uvicorn ({exc}): pip install 'dgprm[serve]'"
        ) from None

    settings = load_settings(
        config,
        runtime=runtime_overrides(
            llm=llm,
            embedder=embedder,
            concurrency=concurrency,
            cache=cache,
            max_chars=max_chars,
            truncate=truncate,
        ),
        scoring=scoring_overrides(
            mu=mu,
            zeta=zeta,
            agg=step_agg,
            threshold=threshold,
            merge_r_phi=merge_r_phi,
            no_tree=no_tree,
            static=static,
        ),
        reward={
            "agg": agg,
            "step_sep": unescape(step_sep) if step_sep is not None else None,
            "on_error": on_error,
        },
        serve={
            "host": host,
            "port": port,
            "api_key_env": api_key_env,
            "max_body_bytes": max_body_bytes,
            "access_log": False if no_access_log else None,
        },
    )
    tree = tree if tree is not None else settings.reward.tree
    if settings.scoring.mode != "no-tree" and tree is None:
        raise InputError("--tree is required (or use --no-tree for the plain critic ablation)")
    runtime, reward, server = settings.runtime, settings.reward, settings.serve
    scorer = StepScorer.from_tree(
        tree if settings.scoring.mode != "no-tree" else None,
        runtime.llm,
        config=settings.scoring,
        runtime=runtime,
    )
    app = create_app(scorer, server, reward, runtime=runtime)
    if scorer.embedder is not None:
        scorer.embedder.encode(["warm-up"])  # load the model now, not on the first request
    print_summary(
        "dgprm serve",
        [
            ("url", f"http://{server.host}:{server.port}"),
            ("tree", str(tree) if tree is not None else "(none: no-tree critic)"),
            ("llm", scorer.client.model_id),
            ("embedder", scorer.embedder.model_id if scorer.embedder is not None else "-"),
            ("concurrency", f"{runtime.concurrency} LLM calls at once, shared"),
            ("cache", str(runtime.cache_path)),
            ("solution reward", f"{reward.agg} of the step rewards"),
            ("step separator", repr(reward.step_sep) if reward.step_sep else "auto"),
            (
                "on error",
                f"reward {reward.on_error} (counted)" if reward.on_error is not None else "502",
            ),
            (
                "bearer key",
                f"required (from ${server.api_key_env})" if server.api_key_env else "none",
            ),
        ],
    )

    async def main() -> None:
        try:
            with long_lived_heap_frozen():
                await run_server(app, server.host, server.port, access_log=server.access_log)
        finally:
            await scorer.client.aclose()

    try:
        asyncio.run(main())
    except KeyboardInterrupt:  # uvicorn re-raises the Ctrl-C it shut down on: a normal stop
        console.print("stopped")
