"""``dgprm report``: one self-contained HTML page of a tree, its rewards and bench runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dgprm.cli.common import RichProgress, console, print_summary, progress_bar


def report(
    tree: Annotated[Path, typer.Argument(help="Reward tree directory.")],
    out: Annotated[Path, typer.Option("-o", "--out", help="Output HTML file.")],
    scores: Annotated[
        list[Path] | None,
        typer.Option("--scores", help="Step rewards JSONL from dgprm score (repeatable)."),
    ] = None,
    bench: Annotated[
        list[Path] | None,
        typer.Option("--bench", help="A dgprm bench run directory (repeatable)."),
    ] = None,
    trajectories: Annotated[
        list[Path] | None,
        typer.Option(
            "--trajectories",
            help="The scored trajectories JSONL: step texts on hover, gold step labels "
            "(repeatable).",
        ),
    ] = None,
    max_trajectories: Annotated[
        int, typer.Option(min=0, help="Heatmaps drawn per scores file (statistics use all).")
    ] = 100,
) -> None:
    """Write one self-contained HTML report (no network at view time): the tree with its
    provenance, per-criterion statistics and heatmaps of the scores, the bench results.

    A scores file that names criteria this tree does not have is refused.
    """
    from dgprm.report import write_report

    with progress_bar() as bar:
        summary = write_report(
            tree,
            out,
            scores=scores or [],
            bench=bench or [],
            trajectories=trajectories or [],
            max_trajectories=max_trajectories,
            progress=RichProgress(bar),
        )
    print_summary("report", summary.rows())
    console.print(f"open {out} in a browser")
