"""Pareto dominance, fronts and preference pairs over reward vectors (pure numpy, no LLM).

Larger is better on every criterion. ``a`` dominates ``b`` when ``a >= b``
everywhere and ``a > b`` somewhere; equal vectors do not dominate each other.

Example:
    >>> import numpy as np
    >>> v = np.array([[0.9, 0.8], [0.5, 0.5], [0.9, 0.8], [1.0, 0.1]])
    >>> pareto_front(v).tolist()
    [True, False, True, True]
    >>> preference_pairs(v)
    [(0, 1, 0.35), (2, 1, 0.35)]
"""

from __future__ import annotations

import numpy as np

_CELLS = 1 << 24  # bound on the boolean cells of any one comparison block


def _checked(vectors: np.ndarray | list, dims: tuple[int, ...]) -> np.ndarray:
    array = np.asarray(vectors, dtype=np.float64)
    if array.ndim not in dims:
        raise ValueError(
            f"expected a {' or '.join(f'{d}-D' for d in dims)} array, got shape {array.shape}"
        )
    if not np.isfinite(array).all():
        raise ValueError("reward vectors contain NaN or infinite values")
    return array


def dominates(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Elementwise over leading axes: does ``a`` dominate ``b`` (last axis = criteria)?"""
    return (a >= b).all(axis=-1) & (a > b).any(axis=-1)


def _front_batched(values: np.ndarray) -> np.ndarray:
    m, n, k = values.shape
    mask = np.empty((m, n), dtype=bool)
    step = max(1, _CELLS // max(1, n * n * k))
    for start in range(0, m, step):
        block = values[start : start + step]
        # dominated[p, i, j]: candidate i dominates candidate j within prefix p
        dominated = dominates(block[:, :, None, :], block[:, None, :, :])
        mask[start : start + step] = ~dominated.any(axis=1)
    return mask


def _front_single(values: np.ndarray) -> np.ndarray:
    n, k = values.shape
    # A dominator has a strictly larger sum, so visiting rows by decreasing sum means a row can
    # only be dominated by rows already visited; by transitivity, checking the front suffices.
    order = np.lexsort((*values.T[::-1], -values.sum(axis=1)))
    sorted_values = values[order]
    on_front = np.zeros(n, dtype=bool)
    front = np.empty((0, k))
    chunk = 512
    for start in range(0, n, chunk):
        block = sorted_values[start : start + chunk]
        alive = np.ones(len(block), dtype=bool)
        rows = max(1, _CELLS // max(1, len(block) * k))
        for f in range(0, len(front), rows):
            hit = dominates(front[f : f + rows, None, :], block[None, :, :]).any(axis=0)
            alive &= ~hit
        inner = dominates(block[:, None, :], block[None, :, :]).any(axis=0)
        alive &= ~inner
        on_front[order[start : start + chunk][alive]] = True
        front = np.concatenate([front, block[alive]])
    return on_front


def pareto_front(vectors: np.ndarray | list) -> np.ndarray:
    """Mask of the non-dominated rows.

    ``vectors`` is ``n × k`` (one candidate set) → an ``n`` mask, or ``m × n × k``
    (``m`` prefixes with ``n`` candidates each) → an ``m × n`` mask computed in one
    vectorised pass. Exact; memory stays bounded (no ``n × n`` matrix for large ``n``).
    NaN or infinite values raise :class:`ValueError`.
    """
    values = _checked(vectors, (2, 3))
    if values.ndim == 3:
        return _front_batched(values)
    return _front_single(values)


def nondominated_layers(vectors: np.ndarray | list) -> np.ndarray:
    """Layer of each row: 0 for the Pareto front, 1 for the front of the rest, and so on.

    Example:
        >>> nondominated_layers([[1, 1], [0, 0], [2, 0], [-1, -1]]).tolist()
        [0, 1, 0, 2]
    """
    values = _checked(vectors, (2,))
    layers = np.full(len(values), -1, dtype=np.int64)
    remaining = np.arange(len(values))
    layer = 0
    while len(remaining):
        mask = _front_single(values[remaining])
        layers[remaining[mask]] = layer
        remaining = remaining[~mask]
        layer += 1
    return layers


def preference_pairs(vectors: np.ndarray | list) -> list[tuple[int, int, float]]:
    """``(chosen, rejected, margin)`` for every front row that dominates a non-front row.

    ``margin`` is the mean per-criterion difference. Mutually non-dominated
    candidates give no pair.
    """
    values = _checked(vectors, (2,))
    mask = _front_single(values)
    front, rest = np.flatnonzero(mask), np.flatnonzero(~mask)
    pairs: list[tuple[int, int, float]] = []
    for i in front:
        for j in rest[dominates(values[i][None, :], values[rest])]:
            pairs.append((int(i), int(j), round(float((values[i] - values[j]).mean()), 6)))
    return pairs
