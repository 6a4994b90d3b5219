"""The ``dgprm`` command line: thin — parse, call the library, render with rich."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.tree import Tree as RichTree

from dgprm.config import Settings
from dgprm.records import InputError, file_sha256

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

app = typer.Typer(
    help="DG-PRM: reward trees, dynamic step rewards, Pareto pairs, PRM benchmarks.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
tree_app = typer.Typer(help="Build, inspect and extend reward trees.", no_args_is_help=True)
data_app = typer.Typer(help="Convert benchmark data to dgprm records.", no_args_is_help=True)


def _print_version(value: bool) -> None:
    if value:
        from dgprm import __version__

        print(f"dgprm {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version."
        ),
    ] = False,
) -> None:
    """DG-PRM: reward trees, dynamic step rewards, Pareto pairs, PRM benchmarks."""


app.add_typer(tree_app, name="tree")
app.add_typer(data_app, name="data")

console = Console(stderr=True)
T = TypeVar("T")

ConfigOpt = Annotated[Path | None, typer.Option("--config", help="TOML settings file.")]
LlmOpt = Annotated[
    str | None,
    typer.Option(
        "--llm", help="LLM: 'embedded' (SmolLM2-135M, default), 'gguf:PATH', 'openai:URL#MODEL'."
    ),
]
EmbedderOpt = Annotated[
    str | None,
    typer.Option("--embedder", help="Embedder: 'minilm' (default), 'st:PATH', 'openai:URL#MODEL'."),
]
ConcurrencyOpt = Annotated[int | None, typer.Option(help="LLM calls in flight at once.")]
CacheOpt = Annotated[
    str | None,
    typer.Option("--cache", help="SQLite response cache (default $DGPRM_CACHE or ~/.cache/dgprm)."),
]
LimitOpt = Annotated[int | None, typer.Option(help="Use only the first N input records.")]
MaxCharsOpt = Annotated[int | None, typer.Option(help="Longest accepted input text.")]
PrmbenchSourceArg = Annotated[
    Path, typer.Argument(help="A PRMBench .jsonl file or its data/ directory.")
]
FoldOpt = Annotated[
    int | None, typer.Option(help="Keep only questions hashing into this fold (0-based).")
]
FoldsOpt = Annotated[int, typer.Option(help="Number of folds.")]
RetryErrorsOpt = Annotated[
    bool,
    typer.Option(
        "--retry-errors",
        help="Redo the records of an earlier run that have errors (answers that were "
        "received come from the cache; failed calls are made again).",
    ),
]
TruncateOpt = Annotated[
    bool,
    typer.Option(
        "--truncate", help="Truncate over-long texts with a warning instead of refusing them."
    ),
]


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


def settings_from(config: Path | None, **overrides: Any) -> Settings:
    return Settings.load(config, overrides)


def run_with_progress(client: Any, job: Callable[[RichProgress], Coroutine[Any, Any, T]]) -> T:
    """Run ``job`` under progress bars on a fresh event loop; always close the LLM client."""

    async def go() -> T:
        with progress_bar() as bar:
            try:
                return await job(RichProgress(bar))
            finally:
                await client.aclose()

    return asyncio.run(go())


def summary_table(title: str, rows: list[tuple[str, str]]) -> Table:
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    for key, value in rows:
        table.add_row(key, value)
    return table


def tree_settings(settings: Settings, tree: Any, explicit: object) -> Settings:
    """Use the embedder the (loaded) tree was built with unless one was given explicitly."""
    if tree is None or explicit:
        return settings
    return settings.merged({"embedder": tree.manifest.get("embedder_spec", "minilm")})


def make_client(settings: Settings) -> Any:
    from dgprm.llm import LLMClient, ResponseCache, make_backend

    return LLMClient(
        make_backend(settings.llm),
        cache=ResponseCache(settings.cache_path),
        concurrency=settings.concurrency,
    )


# ---------------------------------------------------------------- tree -----------------


def _read_pairs(path: Path, settings: Settings, limit: int | None) -> list[Any]:
    from dgprm.records import PreferencePair, read_records

    pairs = read_records(
        path, PreferencePair, max_chars=settings.max_chars, on_long=settings.on_long
    )
    return pairs[:limit] if limit else pairs


def _extend(
    tree_dir: Path | None,
    pairs_path: Path,
    out: Path,
    settings: Settings,
    limit: int | None,
    title: str,
) -> None:
    from dgprm.embed import make_embedder
    from dgprm.tree import RewardTree, extend_tree

    pairs = _read_pairs(pairs_path, settings, limit)
    tree = RewardTree.load(tree_dir) if tree_dir is not None else None
    client = make_client(settings)
    embedder = make_embedder(settings.embedder)
    info = {"path": pairs_path.name, "sha256": file_sha256(pairs_path), "pairs": len(pairs)}

    new_tree, report = run_with_progress(
        client,
        lambda progress: extend_tree(
            tree,
            pairs,
            client=client,
            embedder=embedder,
            settings=settings,
            progress=progress,
            input_info=info,
        ),
    )
    new_tree.save(out)
    console.print(summary_table(title, [*report.rows(), ("artifact", str(out))]))
    for failure in client.failures[:5]:
        console.print(f"[yellow]error[/] {failure.stage}: {failure.reason}")


@tree_app.command("build")
def tree_build(
    pairs: Annotated[Path, typer.Argument(help="Preference pairs JSONL.")],
    out: Annotated[Path, typer.Option("-o", "--out", help="Output tree directory.")],
    config: ConfigOpt = None,
    llm: LlmOpt = None,
    embedder: EmbedderOpt = None,
    xi: Annotated[float | None, typer.Option(help="Merge threshold ξ (cosine distance).")] = None,
    parent_xi: Annotated[
        float | None, typer.Option(help="Cosine distance within which children share a parent.")
    ] = None,
    max_criteria: Annotated[int | None, typer.Option(help="Criteria per pair from J.")] = None,
    limit: LimitOpt = None,
    concurrency: ConcurrencyOpt = None,
    cache: CacheOpt = None,
    max_chars: MaxCharsOpt = None,
    truncate: TruncateOpt = False,
) -> None:
    """Build a reward tree: judge → validator → embed → BIRCH → summarizer.

    Re-running an interrupted build continues from the response cache without
    repeating finished LLM calls; re-running a finished build makes none.
    """
    settings = settings_from(
        config,
        llm=llm,
        embedder=embedder,
        xi=xi,
        parent_xi=parent_xi,
        max_criteria=max_criteria,
        concurrency=concurrency,
        cache=cache,
        max_chars=max_chars,
        on_long="truncate" if truncate else None,
    )
    _extend(None, pairs, out, settings, limit, "tree build")


@tree_app.command("add")
def tree_add(
    tree: Annotated[Path, typer.Argument(help="Existing tree directory (updated in place).")],
    pairs: Annotated[Path, typer.Argument(help="New preference pairs JSONL.")],
    config: ConfigOpt = None,
    llm: LlmOpt = None,
    limit: LimitOpt = None,
    concurrency: ConcurrencyOpt = None,
    cache: CacheOpt = None,
    max_chars: MaxCharsOpt = None,
    truncate: TruncateOpt = False,
) -> None:
    """Add pairs to an existing tree; node ids stay stable.

    Only changed parents are re-summarised. ξ, parent ξ and the embedder come from the
    tree's manifest.
    """
    from dgprm.tree import RewardTree

    manifest = RewardTree.load(tree).manifest
    hyper = manifest.get("hyperparameters", {})
    embedder_spec = manifest.get("embedder_spec", "minilm")
    settings = settings_from(
        config,
        llm=llm,
        concurrency=concurrency,
        cache=cache,
        max_chars=max_chars,
        on_long="truncate" if truncate else None,
        xi=hyper.get("xi"),
        parent_xi=hyper.get("parent_xi"),
        max_criteria=hyper.get("max_criteria"),
        embedder=embedder_spec,
    )
    _extend(tree, pairs, tree, settings, limit, "tree add")


@tree_app.command("show")
def tree_show(
    tree: Annotated[Path, typer.Argument(help="Tree directory.")],
    children: Annotated[int, typer.Option(help="Children shown per parent.")] = 5,
) -> None:
    """Print the tree: parents with their children, member and source counts."""
    from dgprm.progress import counted
    from dgprm.tree import RewardTree

    loaded = RewardTree.load(tree)
    out = Console()
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
            f"{counted(len(parent.sources), 'pair')})[/]"
        )
        ordered = sorted((by_id[c] for c in parent.children), key=lambda c: -len(c.members))
        for child in ordered[:children]:
            branch.add(
                f"[green]{child.id}[/] {child.text}  "
                f"[dim]({counted(len(child.members), 'criterion', 'criteria')}, "
                f"{counted(len(child.sources), 'pair')})[/]"
            )
        if len(ordered) > children:
            branch.add(f"[dim]… {len(ordered) - children} more[/]")
    out.print(root)


# ---------------------------------------------------------------- data -----------------


@data_app.command("prmbench-pairs")
def data_prmbench_pairs(
    source: PrmbenchSourceArg,
    out: Annotated[Path, typer.Option("-o", "--out", help="Output pairs JSONL.")],
    fold: FoldOpt = None,
    folds: FoldsOpt = 2,
    limit: LimitOpt = None,
) -> None:
    """PRMBench records → preference pairs (original_process = chosen,
    modified_process = rejected)."""
    from dgprm.data import prmbench_pairs
    from dgprm.records import write_jsonl

    count = write_jsonl(out, prmbench_pairs(source, fold=fold, folds=folds, limit=limit))
    console.print(f"wrote {count} pairs to {out}")


# ---------------------------------------------------------------- score ----------------


@app.command("score")
def score(
    trajectories: Annotated[Path, typer.Argument(help="Trajectories JSONL {id, question, steps}.")],
    tree: Annotated[Path | None, typer.Option(help="Reward tree directory.")] = None,
    out: Annotated[Path, typer.Option("-o", "--out", help="Output step rewards JSONL.")] = Path(
        "step_rewards.jsonl"
    ),
    config: ConfigOpt = None,
    llm: LlmOpt = None,
    embedder: EmbedderOpt = None,
    mu: Annotated[int | None, typer.Option(help="Previous steps kept as context (μ).")] = None,
    zeta: Annotated[float | None, typer.Option(help="Child matching threshold ζ.")] = None,
    agg: Annotated[
        str | None, typer.Option(help="Step reward from the vector: mean | min.")
    ] = None,
    threshold: Annotated[float | None, typer.Option(help="Label = reward > threshold.")] = None,
    merge_r_phi: Annotated[
        bool,
        typer.Option(
            "--merge-r-phi", help="One LLM call for R and Φ (2 calls per step instead of 3)."
        ),
    ] = False,
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
    max_chars: MaxCharsOpt = None,
    truncate: TruncateOpt = False,
    retry_errors: RetryErrorsOpt = False,
) -> None:
    """Score every step of every trajectory: a reward vector per step.

    Trajectories whose id is already in OUT are skipped, so an interrupted run
    continues where it stopped (--retry-errors also redoes those with errors).
    """
    from dgprm.embed import make_embedder
    from dgprm.records import Trajectory, read_records
    from dgprm.runner import score_many
    from dgprm.scoring import StepScorer
    from dgprm.tree import RewardTree

    if no_tree and static:
        raise InputError("--no-tree and --static are exclusive")
    settings = settings_from(
        config,
        llm=llm,
        embedder=embedder,
        mu=0 if no_context else mu,
        zeta=zeta,
        agg=agg,
        threshold=threshold,
        concurrency=concurrency,
        cache=cache,
        max_chars=max_chars,
        on_long="truncate" if truncate else None,
    )
    items = read_records(
        trajectories, Trajectory, max_chars=settings.max_chars, on_long=settings.on_long
    )
    items = items[:limit] if limit else items
    mode = "no-tree" if no_tree else "static" if static else "dynamic"
    if mode != "no-tree" and tree is None:
        raise InputError("--tree is required (or use --no-tree for the plain critic ablation)")
    loaded = RewardTree.load(tree) if tree is not None and mode != "no-tree" else None
    if loaded is not None:
        settings = tree_settings(settings, loaded, embedder or config)
    client = make_client(settings)
    scorer = StepScorer(
        loaded,
        client,
        make_embedder(settings.embedder) if loaded else None,
        settings,
        mode=mode,
        merge_select_analyze=merge_r_phi,
    )

    report = run_with_progress(
        client,
        lambda progress: score_many(
            scorer,
            items,
            out,
            concurrency=settings.concurrency,
            progress=progress,
            retry_errors=retry_errors,
        ),
    )
    console.print(summary_table(f"score ({mode})", [*report.rows(), ("output", str(out))]))


@data_app.command("prmbench-trajectories")
def data_prmbench_trajectories(
    source: PrmbenchSourceArg,
    out: Annotated[Path, typer.Option("-o", "--out", help="Output trajectories JSONL.")],
    fold: FoldOpt = None,
    folds: FoldsOpt = 2,
    limit: LimitOpt = None,
) -> None:
    """PRMBench records → trajectories (modified_question, modified_process); id =
    <classification>_<idx>."""
    from dgprm.data import prmbench_trajectories
    from dgprm.records import write_jsonl

    count = write_jsonl(out, prmbench_trajectories(source, fold=fold, folds=folds, limit=limit))
    console.print(f"wrote {count} trajectories to {out}")


@data_app.command("processbench-trajectories")
def data_processbench_trajectories(
    source: Annotated[Path, typer.Argument(help="A ProcessBench subset file, e.g. gsm8k.json.")],
    out: Annotated[Path, typer.Option("-o", "--out", help="Output trajectories JSONL.")],
    limit: LimitOpt = None,
) -> None:
    """ProcessBench records (problem, steps) → trajectories."""
    from dgprm.data import processbench_items
    from dgprm.records import write_jsonl

    items = processbench_items(source)[:limit]
    count = write_jsonl(
        out, ({"id": i["id"], "question": i["problem"], "steps": i["steps"]} for i in items)
    )
    console.print(f"wrote {count} trajectories to {out}")


# ---------------------------------------------------------------- pairs / train --------


@app.command("pairs")
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
    n: Annotated[int, typer.Option("--n", help="Candidates sampled per prefix.")] = 4,
    temperature: Annotated[float, typer.Option(help="Policy sampling temperature.")] = 0.8,
    seed: Annotated[int, typer.Option(help="Seed of the first candidate (+1 per candidate).")] = 0,
    conversational: Annotated[
        bool, typer.Option("--conversational", help="Write prompt/chosen/rejected as messages.")
    ] = False,
    merge_r_phi: Annotated[
        bool, typer.Option("--merge-r-phi", help="One LLM call for R and Φ.")
    ] = False,
    config: ConfigOpt = None,
    llm: LlmOpt = None,
    embedder: EmbedderOpt = None,
    limit: LimitOpt = None,
    concurrency: ConcurrencyOpt = None,
    cache: CacheOpt = None,
    retry_errors: RetryErrorsOpt = False,
) -> None:
    """Pareto preference pairs for DPO from scored candidate next steps.

    Candidates of a prefix are scored on a common criterion set; each Pareto-optimal
    candidate is paired with every candidate it dominates.

    Scored prefixes are kept in OUT with the suffix .scored.jsonl, so an
    interrupted run continues where it stopped (--retry-errors also redoes those
    with errors).
    """
    from dgprm.embed import make_embedder
    from dgprm.pairs import export_pairs, score_prefixes
    from dgprm.records import CandidateSet, Prefix, read_records
    from dgprm.scoring import StepScorer
    from dgprm.tree import RewardTree

    if (policy is None) == (candidates is None):
        raise InputError("give exactly one of --policy and --candidates")
    if policy is not None and (temperature <= 0 or n < 2):
        raise InputError("sampling candidates needs --temperature > 0 and --n ≥ 2")
    settings = settings_from(
        config, llm=llm, embedder=embedder, concurrency=concurrency, cache=cache
    )
    items = read_records(prefixes, Prefix, max_chars=settings.max_chars, on_long=settings.on_long)
    items = items[:limit] if limit else items
    given = None
    if candidates is not None:
        sets = read_records(
            candidates, CandidateSet, max_chars=settings.max_chars, on_long=settings.on_long
        )
        given = {c.id: c.candidates for c in sets}
        if not any(p.id in given for p in items):
            shown = ", ".join(p.id for p in items[:3]) + (", …" if len(items) > 3 else "")
            raise InputError(
                f"{candidates}: no candidate set has the id of a prefix in {prefixes} "
                f"(prefix ids: {shown})"
            )
    reward_tree = RewardTree.load(tree)
    settings = tree_settings(settings, reward_tree, embedder or config)
    client = make_client(settings)
    policy_client = make_client(settings.merged({"llm": policy})) if policy else None
    scorer = StepScorer(
        reward_tree,
        client,
        make_embedder(settings.embedder),
        settings,
        merge_select_analyze=merge_r_phi,
    )
    scored_path = out.with_name(out.stem + ".scored.jsonl")

    async def job(progress: RichProgress) -> Any:
        try:
            return await score_prefixes(
                scorer,
                items,
                scored_path,
                candidates=given,
                policy=policy_client,
                n=n,
                temperature=temperature,
                seed=seed,
                concurrency=settings.concurrency,
                progress=progress,
                retry_errors=retry_errors,
            )
        finally:
            if policy_client is not None:
                await policy_client.aclose()

    report = run_with_progress(client, job)
    export_pairs(scored_path, out, [p.id for p in items], report, conversational=conversational)
    console.print(
        summary_table("pairs", [*report.rows(), ("output", f"{out} ({scored_path.name})")])
    )


@app.command("train")
def train(
    pairs_file: Annotated[Path, typer.Argument(metavar="PAIRS", help="DPO pairs JSONL.")],
    model: Annotated[
        str, typer.Option(help="Policy: a model directory, a .gguf file, or 'embedded'.")
    ],
    out: Annotated[Path, typer.Option("-o", "--out", help="Output directory.")],
    beta: Annotated[float, typer.Option(help="DPO β.")] = 0.1,
    lora: Annotated[bool, typer.Option("--lora", help="Train a LoRA adapter (peft).")] = False,
    lora_rank: Annotated[int, typer.Option(help="LoRA rank.")] = 8,
    epochs: Annotated[float, typer.Option(help="Training epochs.")] = 1.0,
    max_steps: Annotated[int, typer.Option(help="Stop after N steps (-1: epochs decide).")] = -1,
    learning_rate: Annotated[float, typer.Option(help="Learning rate.")] = 5e-6,
    batch_size: Annotated[int, typer.Option(help="Pairs per device batch.")] = 4,
    max_length: Annotated[int, typer.Option(help="Longest prompt + step in tokens.")] = 512,
    seed: Annotated[int, typer.Option(help="Training seed.")] = 0,
    save_steps: Annotated[
        int, typer.Option(min=0, help="Checkpoint every N steps (the latest is kept; 0: never).")
    ] = 200,
) -> None:
    """Step-wise DPO on preference pairs with TRL's DPOTrainer (CPU or CUDA, offline).

    Saves the model or LoRA adapter, its tokenizer and training_log.json to OUT. An
    interrupted run resumes from its latest checkpoint when the same command is run again.
    """
    from dgprm.train import TrainOptions, train_dpo

    options = TrainOptions(
        beta=beta,
        lora=lora,
        lora_rank=lora_rank,
        epochs=epochs,
        max_steps=max_steps,
        learning_rate=learning_rate,
        batch_size=batch_size,
        max_length=max_length,
        seed=seed,
        save_steps=save_steps,
    )
    summary = train_dpo(pairs_file, model, out, options)
    rows = [
        (k, f"{v:.4f}" if isinstance(v, float) else str(v))
        for k, v in summary.items()
        if k != "options"
    ]
    console.print(summary_table("train", [*rows, ("output", str(out))]))


from dgprm.cli_bench import bench_app  # noqa: E402  (registers after the shared helpers)

app.add_typer(bench_app, name="bench")


_INTERRUPTED = 130  # exit status of a run stopped by Ctrl-C (128 + SIGINT)


def main() -> None:
    """Entry point: run the app, turning bad input into a one-line error and exit code 2."""
    from dgprm.tree.model import TreeError

    try:
        status = app(standalone_mode=False)
    except (InputError, TreeError, FileNotFoundError) as exc:
        console.print(f"[red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except (typer.Abort, KeyboardInterrupt):
        status = _INTERRUPTED
    except Exception as exc:
        # click's usage errors and exits, matched by shape: typer vendors its own copy of
        # click in recent versions, whose classes are not click's
        code = getattr(exc, "exit_code", None)
        if not isinstance(code, int):
            raise
        if callable(getattr(exc, "show", None)):
            exc.show()
        sys.exit(code)
    # Outside standalone mode typer returns an exit status instead of exiting; Ctrl-C
    # inside a command comes back as status 130.
    if status == _INTERRUPTED:
        console.print("[red]interrupted[/] (re-run the same command to continue)")
    if isinstance(status, int) and status:
        sys.exit(status)
