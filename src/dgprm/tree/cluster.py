"""BIRCH clustering of criterion embeddings into children and parents (pure numpy).

A child is a BIRCH clustering feature over unit vectors: its member count
``n`` and linear sum ``ls``. For unit vectors the squared sum equals ``n``, so
the subcluster radius is ``sqrt(1 - |ls / n|^2)``.

**ξ semantics.** scikit-learn's ``Birch(threshold=T)`` merges a point into a
subcluster while the merged subcluster's radius stays within ``T``. Two unit
vectors at cosine distance ``δ`` are ``sqrt(2δ)`` apart, and their two-member
subcluster has radius ``sqrt(2δ) / 2``. We therefore use
``T = sqrt(2ξ) / 2``, so that *two criteria merge exactly when their cosine
distance is at most ξ*. (METHOD.md writes ``sqrt(2ξ)``; that is the diameter,
which as a BIRCH radius would merge criteria up to cosine distance 4ξ.)

New vectors first join existing children when BIRCH's radius test allows it
(that is what makes ``tree add`` incremental with stable ids); the rest are
clustered with scikit-learn's :class:`~sklearn.cluster.Birch`. Children are
grouped into parents the same way, at the coarser ``parent_xi``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def birch_radius(cosine_distance: float) -> float:
    """BIRCH threshold under which two unit vectors at ``cosine_distance`` merge.

    Example:
        >>> round(birch_radius(0.25), 4)
        0.3536
    """
    if not 0 < cosine_distance < 2:
        raise ValueError(f"cosine distance must be in (0, 2), got {cosine_distance}")
    return float(np.sqrt(2.0 * cosine_distance) / 2.0)


def cluster_new(
    vectors: np.ndarray, cosine_distance: float, branching_factor: int = 50
) -> np.ndarray:
    """Cluster unit ``vectors`` with BIRCH; return a label per row (0..k-1, first-seen order).

    Example:
        >>> v = np.array([[1, 0], [0.99, 0.141], [0, 1]], dtype=np.float32)
        >>> cluster_new(v, 0.25).tolist()
        [0, 0, 1]
    """
    vectors = np.asarray(vectors, dtype=np.float32)
    if len(vectors) == 0:
        return np.zeros(0, dtype=np.int64)
    if len(vectors) == 1:
        return np.zeros(1, dtype=np.int64)
    from sklearn.cluster import Birch  # imported here: scikit-learn takes ~1 s to import

    birch = Birch(
        threshold=birch_radius(cosine_distance),
        n_clusters=None,
        branching_factor=branching_factor,
        compute_labels=True,
    )
    raw = birch.fit(vectors).labels_
    _, first_index, inverse = np.unique(raw, return_index=True, return_inverse=True)
    order = np.argsort(np.argsort(first_index))
    return order[inverse].astype(np.int64)


@dataclass
class Features:
    """Clustering features of a set of clusters: counts ``n`` (k,) and linear sums ``ls`` (k, d)."""

    n: np.ndarray
    ls: np.ndarray

    @classmethod
    def empty(cls, dim: int) -> Features:
        return cls(np.zeros(0, dtype=np.int64), np.zeros((0, dim), dtype=np.float64))

    @property
    def centroids(self) -> np.ndarray:
        return self.ls / np.maximum(self.n, 1)[:, None]

    @property
    def directions(self) -> np.ndarray:
        """Centroids scaled to unit length (for cosine comparisons)."""
        c = self.centroids
        norms = np.linalg.norm(c, axis=1, keepdims=True)
        return c / np.where(norms == 0, 1.0, norms)

    def __len__(self) -> int:
        return len(self.n)


def _nearest(queries: np.ndarray, directions: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """Index of the nearest direction (by cosine) for each query row, in bounded blocks."""
    best = np.empty(len(queries), dtype=np.int64)
    for start in range(0, len(queries), chunk):
        best[start : start + chunk] = (queries[start : start + chunk] @ directions.T).argmax(1)
    return best


def absorb(existing: Features, vectors: np.ndarray, cosine_distance: float) -> np.ndarray:
    """Assign unit ``vectors`` to existing clusters where BIRCH's radius test allows.

    Updates ``existing`` in place and returns, per vector, the cluster index or
    -1 when the vector must start a new cluster.
    """
    assigned = np.full(len(vectors), -1, dtype=np.int64)
    if len(existing) == 0 or len(vectors) == 0:
        return assigned
    limit = birch_radius(cosine_distance) ** 2
    nearest = _nearest(np.asarray(vectors, dtype=np.float64), existing.directions)
    for row, cluster in enumerate(nearest):
        n = existing.n[cluster] + 1
        ls = existing.ls[cluster] + vectors[row]
        radius_sq = 1.0 - float(ls @ ls) / (n * n)
        if radius_sq <= limit + 1e-9:
            existing.n[cluster] = n
            existing.ls[cluster] = ls
            assigned[row] = cluster
    return assigned


def assign_clusters(
    existing: Features, vectors: np.ndarray, cosine_distance: float
) -> tuple[np.ndarray, Features]:
    """Put unit ``vectors`` into ``existing`` clusters or new ones (BIRCH).

    Returns the label of each vector (indices ≥ ``len(existing)`` are new
    clusters, numbered in first-seen order) and the updated features.

    Example:
        >>> f = Features.empty(2)
        >>> labels, f = assign_clusters(f, np.array([[1.0, 0.0], [0.0, 1.0]]), 0.25)
        >>> labels.tolist(), f.n.tolist()
        ([0, 1], [1, 1])
    """
    vectors = np.asarray(vectors, dtype=np.float64)
    dim = vectors.shape[1] if vectors.ndim == 2 else existing.ls.shape[1]
    features = (
        Features(existing.n.copy(), existing.ls.copy()) if len(existing) else Features.empty(dim)
    )
    labels = absorb(features, vectors, cosine_distance)
    rest = np.flatnonzero(labels < 0)
    if len(rest):
        new_labels = cluster_new(vectors[rest], cosine_distance)
        k = int(new_labels.max()) + 1
        n_new = np.bincount(new_labels, minlength=k)
        ls_new = np.zeros((k, vectors.shape[1]), dtype=np.float64)
        np.add.at(ls_new, new_labels, vectors[rest])
        labels[rest] = len(features) + new_labels
        features = Features(
            np.concatenate([features.n, n_new]), np.concatenate([features.ls, ls_new])
        )
    return labels, features


def central_member(member_vectors: np.ndarray) -> int:
    """Index of the member closest to the members' mean direction."""
    mean = member_vectors.mean(axis=0)
    return int(np.argmax(member_vectors @ mean))
