"""``dgprm report``: one self-contained HTML page about a reward tree, how its criteria
were used when scoring, and benchmark runs.

The page needs no network when viewed (inline CSS, JS and SVG, the bench chart as a
base64 PNG, and a Content-Security-Policy that forbids loading anything). Every text
is HTML-escaped: criteria are written by an LLM.

Example:
    >>> import pathlib, tempfile, numpy as np
    >>> from dgprm.tree.model import Criterion, Node, RewardTree
    >>> tmp = pathlib.Path(tempfile.mkdtemp())
    >>> RewardTree(
    ...     [Node("p001", "parent", "Sound steps", children=["c0001"], members=["a/0"]),
    ...      Node("c0001", "child", "Arithmetic <b>is</b> right", parent="p001",
    ...           members=["a/0"], sources=["a"])],
    ...     [Criterion("a/0", "a", "Arithmetic", "is right", True, "ok", "c0001")],
    ...     np.eye(3, dtype=np.float32), {"embedder": "test"}).save(tmp / "tree").name
    'tree'
    >>> _ = (tmp / "s.jsonl").write_text('{"id": "t1", "steps": [{"index": 0, "criteria": '
    ...     '[{"id": "c0001", "parent_id": "p001", "score": 0.8}], "reward": 0.8, '
    ...     '"label": true}], "gold_labels": [true]}\\n')
    >>> summary = write_report(tmp / "tree", tmp / "report.html", scores=[tmp / "s.jsonl"])
    >>> summary.trajectories, summary.error_records
    (1, 0)
    >>> page = (tmp / "report.html").read_text()
    >>> "Arithmetic &lt;b&gt;is&lt;/b&gt; right" in page, "<b>is</b>" in page
    (True, False)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from dgprm.errors import InputError
from dgprm.files import atomic_path, check_not_an_input, file_sha256
from dgprm.progress import Progress
from dgprm.report.inputs import (
    BenchRun,
    ScoresSummary,
    read_bench_run,
    read_trajectory_texts,
    summarise_scores,
)
from dgprm.report.render import GENERATOR, render_report
from dgprm.report.stats import CriterionStats, StepScores, auroc, criterion_stats, merge_stats
from dgprm.scoring.index import CRITIC_ID
from dgprm.tree.model import RewardTree

__all__ = [
    "BenchRun",
    "CriterionStats",
    "ReportSummary",
    "ScoresSummary",
    "StepScores",
    "auroc",
    "criterion_stats",
    "merge_stats",
    "read_bench_run",
    "render_report",
    "summarise_scores",
    "write_report",
]


@dataclass
class ReportSummary:
    """What a written report contains (for the command's closing summary)."""

    out: Path
    bytes: int
    parents: int
    children: int
    scores_files: int
    trajectories: int
    shown_trajectories: int
    error_records: int
    gold_steps: int
    bench_runs: int

    def rows(self) -> list[tuple[str, str]]:
        return [
            ("tree", f"{self.parents} parents, {self.children} children"),
            (
                "scores",
                f"{self.scores_files} files, {self.trajectories} trajectories "
                f"({self.shown_trajectories} drawn), {self.gold_steps} steps with gold labels",
            ),
            ("error records", str(self.error_records)),
            ("bench runs", str(self.bench_runs)),
            ("output", f"{self.out} ({self.bytes / 1024:.0f} KiB)"),
        ]


def write_report(
    tree_dir: str | Path,
    out: str | Path,
    *,
    scores: Sequence[str | Path] = (),
    bench: Sequence[str | Path] = (),
    trajectories: Sequence[str | Path] = (),
    max_trajectories: int = 100,
    progress: Progress | None = None,
    generated: datetime | None = None,
) -> ReportSummary:
    """``dgprm report TREE [--scores S ...] [--bench RUN ...] [--trajectories T ...] -o OUT``.

    Loads the tree, reads every scores file (refusing one whose criteria are not in this
    tree), every trajectories file (step texts for hover, gold labels) and bench run,
    and writes the page atomically. At most ``max_trajectories`` heatmaps are drawn per
    scores file; the statistics and error records always cover every line. Raises
    :class:`~dgprm.records.InputError` (file, line, field) and writes nothing on bad input.
    """
    if max_trajectories < 0:
        raise ValueError("max_trajectories must be ≥ 0")
    check_not_an_input(out, [tree_dir, *scores, *bench, *trajectories])
    existing = Path(out)
    if existing.exists() and (
        not existing.is_file()
        or f'content="{GENERATOR}"' not in existing.read_text(encoding="utf-8", errors="replace")
    ):
        raise InputError(
            f"{out}: exists and is not a dgprm report; dgprm does not replace a file it did "
            "not write (choose another -o)"
        )
    tree = RewardTree.load(tree_dir)
    known = {n.id for n in tree.nodes} | {CRITIC_ID}
    texts = read_trajectory_texts(trajectories) if trajectories else None
    summaries = [
        summarise_scores(
            path,
            known,
            tree_name=str(tree_dir),
            texts=texts,
            max_shown=max_trajectories,
            progress=progress,
        )
        for path in scores
    ]
    runs = [read_bench_run(run) for run in bench]
    inputs = [(str(Path(tree_dir) / "tree.json"), file_sha256(Path(tree_dir) / "tree.json"))]
    inputs += [(str(s.path), s.sha256) for s in summaries]
    inputs += [(str(Path(t)), file_sha256(t)) for t in trajectories]
    inputs += [(str(r.path / "results.json"), file_sha256(r.path / "results.json")) for r in runs]
    page = render_report(
        tree,
        tree_name=str(tree_dir),
        scores=summaries,
        bench=runs,
        pooled=merge_stats(s.stats for s in summaries),
        inputs=inputs,
        generated=generated,
        progress=progress,
    )
    data = page.encode("utf-8")
    with atomic_path(out) as tmp:
        tmp.write_bytes(data)
    return ReportSummary(
        Path(out),
        len(data),
        len(tree.parents),
        len(tree.children),
        len(summaries),
        sum(s.trajectories for s in summaries),
        sum(len(s.shown) for s in summaries),
        sum(len(s.errors) for s in summaries),
        sum(s.gold_steps for s in summaries),
        len(runs),
    )
