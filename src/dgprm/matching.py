"""ζ-matching of evaluation aspects to the children of chosen parents (pure numpy).

Children are stored grouped by parent, so the children of one parent are a
contiguous block of one float32 matrix: matching never copies that matrix.
"""

from __future__ import annotations

import numpy as np


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
