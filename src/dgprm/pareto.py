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
_BATCH_CELLS = 1 << 16  # per block of prefixes: small enough to stay in cache


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
    step = max(1, _BATCH_CELLS // max(1, n * n))  # cache-sized blocks of prefixes
    for start in range(0, m, step):
        block = values[start : start + step]
        # ge[p, i, j]: candidate i ≥ candidate j on every criterion, one pass per criterion
        ge = np.ones((len(block), n, n), dtype=bool)
        scratch = np.empty_like(ge)
        for c in range(k):
            column = block[..., c]
            np.greater_equal(column[:, :, None], column[:, None, :], out=scratch)
            ge &= scratch
        # i dominates j when i ≥ j everywhere and not j ≥ i everywhere
        mask[start : start + step] = ~(ge & ~ge.transpose(0, 2, 1)).any(axis=1)
    return mask


def _dominated_by_any(pivots: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Mask over ``rows``: dominated by at least one pivot (bounded memory)."""
    hit = np.zeros(len(rows), dtype=bool)
    step = max(1, _CELLS // max(1, len(pivots)))
    for start in range(0, len(rows), step):
        block = rows[start : start + step]
        ge = np.ones((len(pivots), len(block)), dtype=bool)  # pivot ≥ row everywhere
        le = np.ones_like(ge)  # pivot ≤ row everywhere
        for c in range(rows.shape[1]):
            p, r = pivots[:, c, None], block[None, :, c]
            ge &= p >= r
            le &= p <= r
        hit[start : start + step] = (ge & ~le).any(axis=0)
    return hit


def _pivot_front(rows: np.ndarray) -> np.ndarray:
    """Mask of the rows not dominated by another row of ``rows`` (a small block)."""
    return ~_dominated_by_any(rows, rows) if len(rows) > 1 else np.ones(len(rows), dtype=bool)


def _front_single(values: np.ndarray) -> np.ndarray:
    # Rounding is monotonic, so a dominator's sum is never smaller than the row it
    # dominates. The front of the rows with the largest remaining sum is therefore part
    # of the final front, and every row it dominates can be dropped. Phase 1 repeats
    # that while each round prunes most rows (small fronts); phase 2 sorts what is left.
    on_front = np.zeros(len(values), dtype=bool)
    rest, positions, sums = values, np.arange(len(values)), values.sum(axis=1)
    while len(rest):
        lead = np.flatnonzero(sums == sums.max())
        pivots = _pivot_front(rest[lead])
        on_front[positions[lead[pivots]]] = True
        keep = ~_dominated_by_any(rest[lead[pivots]], rest)
        keep[lead] = False
        rest, positions, sums = rest[keep], positions[keep], sums[keep]
        if keep.sum() * 2 > len(keep):
            break
    on_front[positions[_front_sorted(rest, sums)]] = True
    return on_front


def _front_sorted(values: np.ndarray, sums: np.ndarray) -> np.ndarray:
    """Front by decreasing sum in leading blocks; rows of equal sum share a block, and
    blocks double while they prune little."""
    order = np.argsort(-sums, kind="stable")
    rest, keys, positions = values[order], -sums[order], order
    on_front = np.zeros(len(values), dtype=bool)
    block = 1
    while len(rest):
        end = int(np.searchsorted(keys, keys[min(block, len(keys)) - 1], side="right"))
        pivots = _pivot_front(rest[:end])
        on_front[positions[:end][pivots]] = True
        keep = ~_dominated_by_any(rest[:end][pivots], rest[end:])
        rest, keys, positions = rest[end:][keep], keys[end:][keep], positions[end:][keep]
        block = min(2 * block, 256) if keep.sum() * 2 > len(keep) else max(1, block // 2)
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
