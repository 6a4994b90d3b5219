"""The criteria of a reward tree, indexed for scoring: texts, parents, and the child
vectors grouped by parent for ζ-matching (pure numpy).

Children are stored grouped by parent, so the children of one parent are a contiguous
block of one float32 matrix: matching never copies that matrix.
"""

from __future__ import annotations

import numpy as np

from dgprm.tree.model import RewardTree

#: The one generic criterion of the no-tree ablation (a plain LLM critic).
CRITIC_ID = "critic"
CRITIC_TEXT = (
    "Overall step quality: the step is correct, logically valid and makes progress toward "
    "solving the problem."
)


class ChildIndex:
    """Unit child vectors grouped by parent, for fast cosine matching.

    Example:
        >>> index = ChildIndex({"p1": ["c1", "c2"]}, {"c1": [1.0, 0.0], "c2": [0.0, 1.0]})
        >>> index.match(np.array([[0.99, 0.14]], dtype=np.float32), ["p1"], zeta=0.2)
        ['c1']
    """

    def __init__(self, children_of: dict[str, list[str]], vectors: dict[str, object]) -> None:
        ids: list[str] = []
        self.blocks: dict[str, tuple[int, int]] = {}
        for parent, children in children_of.items():
            start = len(ids)
            ids.extend(children)
            self.blocks[parent] = (start, len(ids))
        self.ids = ids
        dim = len(next(iter(vectors.values()))) if vectors else 0
        matrix = np.array([vectors[c] for c in ids], dtype=np.float32).reshape(len(ids), dim)
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        self.matrix = matrix / np.where(norms == 0, 1.0, norms)

    def match(self, aspects: np.ndarray, parents: list[str], zeta: float) -> list[str]:
        """Children of ``parents`` within cosine distance ``zeta`` of any aspect row.

        Returned in index order (parents in the order given), without duplicates.
        """
        if len(aspects) == 0:
            return []
        floor = 1.0 - zeta - 1e-6
        ranges: list[list[int]] = []
        for parent in parents:  # merge adjacent blocks: one matrix product per run of parents
            start, stop = self.blocks.get(parent, (0, 0))
            if stop == start:
                continue
            if ranges and ranges[-1][1] == start:
                ranges[-1][1] = stop
            else:
                ranges.append([start, stop])
        chosen: list[str] = []
        for start, stop in ranges:
            sims = aspects @ self.matrix[start:stop].T
            hits = np.flatnonzero(sims.max(axis=0) >= floor)
            chosen.extend(self.ids[start + int(i)] for i in hits)
        return chosen


class CriterionIndex:
    """Everything scoring needs from a tree: each criterion's text, parent and weight, the
    parent vectors (for the embedding pre-filter) and the children grouped by parent.

    Only selectable nodes are indexed: a node a person disabled (or merged into another),
    and the children of a disabled parent, are never offered, matched or scored. Without a
    tree it holds only the critic criterion of the no-tree ablation.

    Example:
        >>> CriterionIndex(None).texts == {CRITIC_ID: CRITIC_TEXT}
        True
    """

    def __init__(self, tree: RewardTree | None) -> None:
        self.texts: dict[str, str] = {CRITIC_ID: CRITIC_TEXT}
        self.parent_of: dict[str, str | None] = {CRITIC_ID: None}
        self.weights: dict[str, float] = {CRITIC_ID: 1.0}
        self.parent_ids: list[str] = []
        self.parent_matrix = np.zeros((0, 0), dtype=np.float32)
        self.children = ChildIndex({}, {})
        if tree is None:
            return
        selectable = tree.selectable_ids()
        nodes = [n for n in tree.nodes if n.id in selectable]
        by_id = {n.id: n for n in nodes}
        self.parent_ids = [n.id for n in nodes if n.level == "parent"]
        self.texts.update({n.id: n.text for n in nodes})
        self.parent_of.update({n.id: n.parent for n in nodes})
        self.weights.update({n.id: n.weight for n in nodes})
        rows = tree.node_vectors([n.id for n in nodes])
        vector_of = {n.id: rows[i] for i, n in enumerate(nodes)}
        if self.parent_ids:
            self.parent_matrix = np.stack([vector_of[p] for p in self.parent_ids])
        self.children = ChildIndex(
            {p: [c for c in by_id[p].children if c in by_id] for p in self.parent_ids},
            {n.id: vector_of[n.id] for n in nodes if n.level == "child"},
        )

    def listing(self, ids: list[str]) -> str:
        """The criteria as ``[id] text`` lines, as prompts show them."""
        return "\n".join(f"[{i}] {self.texts[i]}" for i in ids)

    def ordered(self, ids: set[str] | list[str]) -> list[str]:
        """``ids`` in the tree's node order (the critic first)."""
        order = {c: i for i, c in enumerate(self.texts)}
        return sorted(ids, key=lambda c: order.get(c, len(order)))
