"""``dgprm tree build | add | show``."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.tree import Tree as RichTree

from dgprm.cli.common import (
    CacheOpt,
    ConcurrencyOpt,
    ConfigOpt,
    EmbedderOpt,
    LimitOpt,
    LlmOpt,
    MaxCharsOpt,
    TimeoutOpt,
    TruncateOpt,
    console,
    load_settings,
    option,
    print_summary,
    runtime_overrides,
    with_progress,
)
from dgprm.config import TreeConfig

app = typer.Typer(help="Build, inspect and extend reward trees.", no_args_is_help=True)


def _print_build(title: str, report, out: Path) -> None:
    print_summary(title, [*report.rows(), ("artifact", str(out))])
    for failure in report.failures[:5]:
        console.print(f"[yellow]error[/] {failure.stage}: {failure.reason}")
    if report.raw_criteria and not report.kept_criteria:
        console.print(
            "[yellow]no criterion passed[/] the quality gate and the validator (reasons above "
            "and in tree.json). A weak judge such as the embedded SmolLM2-135M writes "
            "comparisons, repetitions or copies; point --llm at a capable model. To try "
            "scoring meanwhile, use the hand-written tree src/dgprm/samples/tree."
        )


@app.command("build")
def build(
    pairs: Annotated[Path, typer.Argument(help="Preference pairs JSONL.")],
    out: Annotated[Path, typer.Option("-o", "--out", help="Output tree directory.")],
    config: ConfigOpt = None,
    llm: LlmOpt = None,
    embedder: EmbedderOpt = None,
    xi: Annotated[float | None, option(TreeConfig, "xi")] = None,
    parent_xi: Annotated[float | None, option(TreeConfig, "parent_xi")] = None,
    max_criteria: Annotated[int | None, option(TreeConfig, "max_criteria")] = None,
    limit: LimitOpt = None,
    concurrency: ConcurrencyOpt = None,
    cache: CacheOpt = None,
    timeout: TimeoutOpt = None,
    max_chars: MaxCharsOpt = None,
    truncate: TruncateOpt = False,
) -> None:
    """Build a reward tree: judge → validator → embed → BIRCH → summarizer.

    Re-running an interrupted build continues from the response cache without
    repeating finished LLM calls; re-running a finished build makes none.
    """
    from dgprm.tree.build import abuild_tree

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
        tree={"xi": xi, "parent_xi": parent_xi, "max_criteria": max_criteria},
    )
    _, report = with_progress(
        lambda progress: abuild_tree(
            pairs,
            out=out,
            config=settings.tree,
            runtime=settings.runtime,
            limit=limit,
            progress=progress,
        )
    )
    _print_build("tree build", report, out)


@app.command("add")
def add(
    tree: Annotated[Path, typer.Argument(help="Existing tree directory (updated in place).")],
    pairs: Annotated[Path, typer.Argument(help="New preference pairs JSONL.")],
    config: ConfigOpt = None,
    llm: LlmOpt = None,
    limit: LimitOpt = None,
    concurrency: ConcurrencyOpt = None,
    cache: CacheOpt = None,
    timeout: TimeoutOpt = None,
    max_chars: MaxCharsOpt = None,
    truncate: TruncateOpt = False,
) -> None:
    """Add pairs to an existing tree; node ids stay stable.

    Only changed parents are re-summarised. ξ, parent ξ and the embedder come from the
    tree's manifest.
    """
    from dgprm.tree.build import aadd_to_tree

    settings = load_settings(
        config,
        runtime=runtime_overrides(
            llm=llm,
            concurrency=concurrency,
            cache=cache,
            timeout=timeout,
            max_chars=max_chars,
            truncate=truncate,
        ),
    )
    _, report = with_progress(
        lambda progress: aadd_to_tree(
            tree, pairs, runtime=settings.runtime, limit=limit, progress=progress
        )
    )
    _print_build("tree add", report, tree)


def _marks(node) -> str:
    """What a person changed about a node, for ``tree show``."""
    from dgprm.tree.edits import describe_edits

    marks = [m for m in (describe_edits(node),) if m]
    if node.disabled:
        marks.insert(
            0, f"disabled{f', merged into {node.merged_into}' if node.merged_into else ''}"
        )
    if node.weight != 1.0:
        marks.append(f"weight {node.weight:g}")
    return f"  [magenta]({'; '.join(marks)})[/]" if marks else ""


@app.command("show")
def show(
    tree: Annotated[Path, typer.Argument(help="Tree directory.")],
    children: Annotated[int, typer.Option(min=0, help="Children shown per parent.")] = 5,
) -> None:
    """Print the tree: parents with their children, member and source counts."""
    from dgprm.progress import counted
    from dgprm.tree.model import RewardTree

    loaded = RewardTree.load(tree)
    m = loaded.manifest
    root = RichTree(
        f"[bold]{tree}[/]  {counted(len(loaded.parents), 'parent')}, "
        f"{counted(len(loaded.children), 'child', 'children')}, "
        f"{len(loaded.kept_criteria)}/{len(loaded.criteria)} criteria kept, "
        f"{counted(len(loaded.errors), 'error')}  "
        f"(llm {m.get('llm')}, embedder {m.get('embedder')})"
    )
    by_id = {n.id: n for n in loaded.nodes}
    for parent in sorted(loaded.parents, key=lambda p: -len(p.members)):
        branch = root.add(
            f"[bold cyan]{parent.id}[/] {parent.text}  "
            f"[dim]({counted(len(parent.children), 'child', 'children')}, "
            f"{counted(len(parent.members), 'criterion', 'criteria')}, "
            f"{counted(len(parent.sources), 'pair')})[/]{_marks(parent)}"
        )
        ordered = sorted((by_id[c] for c in parent.children), key=lambda c: -len(c.members))
        for child in ordered[:children]:
            branch.add(
                f"[green]{child.id}[/] {child.text}  "
                f"[dim]({counted(len(child.members), 'criterion', 'criteria')}, "
                f"{counted(len(child.sources), 'pair')})[/]{_marks(child)}"
            )
        if len(ordered) > children:
            branch.add(f"[dim]… {len(ordered) - children} more[/]")
    Console().print(root)
    if not loaded.parents:
        rejected = Counter(c.gate["reason"] for c in loaded.criteria if c.gate)
        shown = ", ".join(f"{why} {n}" for why, n in rejected.most_common()) or "none"
        Console().print(
            f"no criteria yet: {len(loaded.criteria)} written, rejected by the quality gate: "
            f"{shown}; see tree.json for each criterion's reason"
        )


@app.command("export")
def export(
    tree: Annotated[Path, typer.Argument(help="Tree directory.")],
    out: Annotated[Path, typer.Option("-o", "--out", help="Output YAML file.")],
) -> None:
    """Write the tree as a human-editable YAML file (ids, texts, parents, weights, disabled
    flags); edit it and apply it with ``dgprm tree apply``."""
    from dgprm.tree.edits import write_export

    write_export(tree, out)
    console.print(f"wrote {out}; edit it, then: dgprm tree apply {tree} {out}")


@app.command("apply")
def apply(
    tree: Annotated[Path, typer.Argument(help="Tree directory.")],
    edits: Annotated[Path, typer.Argument(help="Edits YAML (an edited export or a short file).")],
    out: Annotated[
        Path | None,
        typer.Option("-o", "--out", help="Write the edited tree here (default: in place)."),
    ] = None,
) -> None:
    """Apply a person's edits: change a text (re-embedded), disable or re-enable a node, set
    a weight, move or merge children, add a criterion under a parent. Node ids stay stable;
    the manifest records the edit file by hash. A bad file is refused and nothing written."""
    from dgprm.tree.edits import apply_edits_file

    report = apply_edits_file(tree, edits, out)
    print_summary("tree apply", [*report.rows(), ("tree", str(out or tree))])
