"""What every command shares: the console, the options (defaults and help come from the
config classes, so a default is written once), progress bars and summary tables."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from pydantic import BaseModel
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from dgprm.config import RuntimeConfig, Settings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

console = Console(stderr=True)
T = TypeVar("T")


def config_help(config: type[BaseModel], name: str) -> str:
    """The help text of a config field, with its default.

    Example:
        >>> from dgprm.config import ScoringConfig
        >>> config_help(ScoringConfig, "mu")
        'μ: previous steps kept as context. [default: 20]'
    """
    field = config.model_fields[name]
    default = field.default
    shown = (
        ""
        if default is None
        else f" [default: {str(default).lower() if isinstance(default, bool) else default}]"
    )
    return f"{field.description}{shown}"


def _bounds(config: type[BaseModel], name: str) -> dict[str, Any]:
    """The field's inclusive numeric bounds as click range options (checked before anything
    runs; strict bounds are left to the config's own validation)."""
    bounds: dict[str, Any] = {}
    for rule in config.model_fields[name].metadata:
        if getattr(rule, "ge", None) is not None:
            bounds["min"] = rule.ge
        if getattr(rule, "le", None) is not None:
            bounds["max"] = rule.le
    return bounds


def option(config: type[BaseModel], name: str, *decls: str, **kwargs: Any) -> Any:
    """A ``typer.Option`` whose help (and shown default) and numeric bounds come from
    ``config.name``. The option itself defaults to ``None``: the config's default applies
    unless it is given (on the command line or in ``--config``)."""
    return typer.Option(
        *decls,
        help=config_help(config, name),
        show_default=False,
        **{**_bounds(config, name), **kwargs},
    )


def flag(config: type[BaseModel], name: str, decl: str) -> Any:
    """A ``--flag`` that sets a boolean config field to true (help from the config)."""
    return typer.Option(decl, help=config.model_fields[name].description)


ConfigOpt = Annotated[Path | None, typer.Option("--config", help="TOML settings file.")]
LlmOpt = Annotated[str | None, option(RuntimeConfig, "llm", "--llm")]
EmbedderOpt = Annotated[str | None, option(RuntimeConfig, "embedder", "--embedder")]
ConcurrencyOpt = Annotated[int | None, option(RuntimeConfig, "concurrency", "--concurrency")]
TimeoutOpt = Annotated[float | None, option(RuntimeConfig, "timeout", "--timeout")]
CacheOpt = Annotated[str | None, option(RuntimeConfig, "cache", "--cache")]
MaxCharsOpt = Annotated[int | None, option(RuntimeConfig, "max_chars", "--max-chars")]
TruncateOpt = Annotated[
    bool,
    typer.Option(
        "--truncate", help="Truncate over-long texts with a warning instead of refusing them."
    ),
]
LimitOpt = Annotated[int | None, typer.Option(min=1, help="Use only the first N input records.")]
TaskOpt = Annotated[str, typer.Option(help="arc-c | strategyqa | qasc.")]
TaskDataOpt = Annotated[
    Path | None,
    typer.Option(help="The task's data directory (or its parent). Default: packaged samples."),
]
RetryErrorsOpt = Annotated[
    bool,
    typer.Option(
        "--retry-errors",
        help="Redo the records of an earlier run that have errors (answers that were "
        "received come from the cache; failed calls are made again).",
    ),
]
OutFileOpt = Annotated[Path, typer.Option("-o", "--out", help="Output file.")]
RayOpt = Annotated[
    str | None,
    typer.Option(
        "--ray",
        metavar="ADDRESS",
        help="Shard the input over a Ray cluster, one LLM client per worker: 'auto' (this "
        "machine's cluster, or a new local one) or a cluster address. Needs dgprm[ray].",
    ),
]
RayWorkersOpt = Annotated[
    int | None,
    typer.Option(
        "--ray-workers", min=1, help="Ray workers (shards) [default: the cluster's CPUs]."
    ),
]


def runtime_overrides(
    *,
    llm: str | None = None,
    embedder: str | None = None,
    concurrency: int | None = None,
    cache: str | None = None,
    timeout: float | None = None,
    max_chars: int | None = None,
    truncate: bool = False,
) -> dict[str, Any]:
    """The runtime options given on the command line (``None`` = not given)."""
    return {
        "llm": llm,
        "embedder": embedder,
        "concurrency": concurrency,
        "cache": cache,
        "timeout": timeout,
        "max_chars": max_chars,
        "on_long": "truncate" if truncate else None,
    }


def load_settings(config: Path | None, **sections: dict[str, Any] | None) -> Settings:
    """Defaults, then ``--config``, then the options given on the command line."""
    return Settings.load(config, **sections)


class RichProgress:
    """rich progress bars behind dgprm's Progress protocol."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.tasks: dict[str, Any] = {}

    def start(self, stage: str, total: int) -> None:
        self.tasks[stage] = self.progress.add_task(stage, total=total)

    def advance(self, stage: str, amount: int = 1) -> None:
        self.progress.advance(self.tasks[stage], amount)


def progress_bar() -> Progress:
    return Progress(
        TextColumn("{task.description:<18}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
        disable=not console.is_terminal and os.environ.get("DGPRM_PROGRESS") != "1",
    )


def with_progress(job: Any) -> T:
    """Run ``job(progress)`` (a coroutine function) under progress bars on a new event loop."""

    async def go() -> T:
        with progress_bar() as bar:
            coroutine: Coroutine[Any, Any, T] = job(RichProgress(bar))
            return await coroutine

    return asyncio.run(go())


def summary_table(title: str, rows: list[tuple[str, str]]) -> Table:
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    for key, value in rows:
        table.add_row(key, value)
    return table


def print_summary(title: str, rows: list[tuple[str, str]]) -> None:
    console.print(summary_table(title, rows))
