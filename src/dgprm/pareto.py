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

import math

import numpy as np

_CELLS = 1 << 22  # bound on the boolean cells of any one comparison block
_FEW_CELLS = 1 << 13  # criteria × rows² up to which all-pairs alone is fastest
_MID_CELLS = 1 << 18  # ... above which single-pivot pruning rounds pay
_LEADER_CELLS = 1 << 15  # ... above which one round with several pivots pays
_LEADERS = 8  # pivots of that round: the items of largest sum
_ALL_PAIRS = 1 << 17  # ... up to which all-pairs beats sorted blocks on a large front
_BATCH_CELLS = 1 << 16  # candidate pairs × prefixes per batched block: stays in cache
_FIRST_BLOCK = 32  # rows in the first sorted block


def _checked(vectors: np.ndarray | list, dims: tuple[int, ...]) -> np.ndarray:
    array = np.asarray(vectors, dtype=np.float64)
    if array.ndim not in dims:
        raise ValueError(
            f"expected a {' or '.join(f'{d}-D' for d in dims)} array, got shape {array.shape}"
        )
    return array


def _require_finite(array: np.ndarray) -> None:
    if not np.isfinite(array).all():
        raise ValueError("reward vectors contain NaN or infinite values")


def dominates(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Elementwise over leading axes: does ``a`` dominate ``b`` (last axis = criteria)?"""
    return (a >= b).all(axis=-1) & (a > b).any(axis=-1)


def _front_batched(values: np.ndarray) -> np.ndarray:
    m, n, k = values.shape
    mask = np.empty((m, n), dtype=bool)
    step = max(1, _BATCH_CELLS // (n * n))
    for start in range(0, m, step):
        # criteria × candidates × prefixes: the prefix axis is innermost, so every
        # comparison below runs over long contiguous rows
        block = np.ascontiguousarray(values[start : start + step].transpose(2, 1, 0))
        ge = np.greater_equal(block[0][:, None], block[0][None])  # ge[i, j, p]: i ≥ j
        scratch = np.empty_like(ge)
        for c in range(1, k):
            ge &= np.greater_equal(block[c][:, None], block[c][None], out=scratch)
        # j is dominated when some i is ≥ everywhere and j is not ≥ i everywhere
        mask[start : start + step] = ~np.greater(ge, ge.transpose(1, 0, 2)).any(axis=0).T
    return mask


def _dominated(pivots: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Mask over the columns of ``rows``: some column of ``pivots`` is ≥ on every criterion.

    Both are criteria × items, and the pivots are front rows. A row that is ≥-covered is
    either dominated or equal to a pivot; callers have already placed such equal rows
    (they share the pivot's sum, so they are among the pivots' candidates).
    """
    k, m = rows.shape
    hit = np.empty(m, dtype=bool)
    step = max(1, _CELLS // (k * pivots.shape[1]))
    for start in range(0, m, step):
        block = rows[:, start : start + step]
        if pivots.shape[1] <= 4:  # few pivots: one broadcast comparison
            ge = (pivots[:, :, None] >= block[:, None, :]).all(axis=0)
        else:  # many pivots: one criterion at a time, in place
            ge = pivots[0][:, None] >= block[0]
            for c in range(1, k):
                ge &= pivots[c][:, None] >= block[c]
        hit[start : start + step] = ge.any(axis=0)
    return hit


def _front_of(cols: np.ndarray) -> np.ndarray:
    """Front mask of a criteria × items array by all-pairs comparison (bounded blocks)."""
    k, m = cols.shape
    if k * m * m <= _CELLS:
        ge = np.logical_and.reduce(cols[:, :, None] >= cols[:, None, :], axis=0)  # i ≥ j
        return np.logical_and.reduce(ge <= ge.T, axis=0)
    hit = np.empty(m, dtype=bool)
    step = max(1, _CELLS // (k * m))
    for start in range(0, m, step):
        block = cols[:, None, start : start + step]
        ge = (cols[:, :, None] >= block).all(axis=0)
        ge &= (cols[:, :, None] > block).any(axis=0)
        hit[start : start + step] = ge.any(axis=0)
    return ~hit


def _sums(cols: np.ndarray) -> np.ndarray:
    """Per-item sums; also the finiteness check (a NaN or inf makes its sum non-finite).

    Rounding is monotonic, so a dominator's sum is never below the sum of the row it
    dominates, and equal rows have equal sums. Sums that overflow are taken over
    values scaled by a power of two, which keeps both properties.
    """
    # the same order of additions for every item; two criteria: one add beats a reduction
    sums = cols[0] + cols[1] if len(cols) == 2 else np.add.reduce(cols, axis=0)
    # a NaN is both argmax and argmin; +inf is the largest, -inf the smallest
    if math.isfinite(sums[sums.argmax()]) and math.isfinite(sums[sums.argmin()]):
        return sums
    _require_finite(cols)
    return (cols * 2.0 ** -math.ceil(math.log2(len(cols)))).sum(axis=0)


def _at(positions: np.ndarray | None, index: np.ndarray | int) -> np.ndarray | int:
    """Input positions of the remaining items at ``index`` (``None``: all items remain)."""
    return index if positions is None else positions[index]


def _sweep_2d(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Indices of the front items of two criteria, by one sort: with x descending
    (ties by y descending), an item is on the front when its y beats every y before it.

    Example:
        >>> _sweep_2d(np.array([3.0, 1.0, 2.0, 3.0]), np.array([1.0, 2.0, 0.0, 1.0])).tolist()
        [3, 0, 1]
    """
    order = np.lexsort((y, x))[::-1]
    ys = y[order]
    best = np.maximum.accumulate(ys)
    front = np.empty(len(order), dtype=bool)
    front[:1] = True
    np.greater(ys[1:], best[:-1], out=front[1:])
    if (ys[1:] == best[:-1]).any():  # maybe equal items (adjacent): all share the first's fate
        xs = x[order]
        same = np.zeros(len(order), dtype=bool)
        same[1:] = (xs[1:] == xs[:-1]) & (ys[1:] == ys[:-1])
        front = front[np.maximum.accumulate(np.where(same, 0, np.arange(len(order))))]
    return order[front]


def _front_two(cols: np.ndarray, sums: np.ndarray) -> np.ndarray:
    """Front mask for two criteria: the item of largest sum dominates every item below
    it on both criteria; one sweep over the rest finds the front (ties included)."""
    x, y = cols
    top = int(sums.argmax())
    near = ((x >= x[top]) | (y >= y[top])).nonzero()[0]
    mask = np.zeros(len(x), dtype=bool)
    mask[near[_sweep_2d(x[near], y[near])]] = True
    return mask


def _leaders_prune(cols: np.ndarray, sums: np.ndarray) -> np.ndarray:
    """Indices of the items not dominated by one of the ``_LEADERS`` items of largest sum.

    An item ≥-covered by a leader of strictly larger sum is dominated by it (equal
    items have equal sums). Leaders are never dropped, so none needs to be on the front.
    """
    few = min(_LEADERS, len(sums))
    lead = np.argpartition(sums, -few)[-few:]
    covered = np.logical_and.reduce(cols.take(lead, axis=1)[:, :, None] >= cols[:, None], axis=0)
    covered &= sums.take(lead)[:, None] > sums
    return (~np.logical_or.reduce(covered, axis=0)).nonzero()[0]


def _front_single(values: np.ndarray) -> np.ndarray:
    n, k = values.shape
    if k == 0 or n == 0:  # no rows, or no criteria (then all rows are equal)
        return np.ones(n, dtype=bool)
    cols = np.ascontiguousarray(values.T)  # criteria × items: contiguous per criterion
    sums = _sums(cols)
    if k * n * n <= _FEW_CELLS:
        return _front_of(cols)
    if k == 2:
        return _front_two(cols, sums)
    on_front = np.zeros(n, dtype=bool)
    positions = None  # of the remaining items in the input; None while all remain
    # 1. The row of largest sum is not dominated by any row of smaller sum, so it is
    # on the front and every row it dominates can be dropped. Repeat while the set is
    # large and each round prunes most rows (small fronts).
    while k * len(sums) ** 2 > _MID_CELLS:
        top = int(sums.argmax())
        tied = sums == sums[top]
        if np.count_nonzero(tied) == 1:  # the usual case: no tie
            on_front[_at(positions, top)] = True
            kept = (cols > cols[:, top, None]).any(axis=0).nonzero()[0]
        else:
            lead = np.flatnonzero(tied)
            lead = lead[_front_of(cols[:, lead])]
            on_front[_at(positions, lead)] = True
            kept = (~_dominated(cols[:, lead], cols)).nonzero()[0]  # also drops the lead rows
        before = len(sums)
        cols, sums, positions = cols.take(kept, axis=1), sums.take(kept), _at(positions, kept)
        if len(sums) * 2 > before:  # a large front: single pivots stop paying
            break
    # 2. Several pivots at once thin out what is left before the quadratic finish.
    if k * len(sums) ** 2 > _LEADER_CELLS:
        kept = _leaders_prune(cols, sums)
        cols, sums, positions = cols.take(kept, axis=1), sums.take(kept), _at(positions, kept)
    # 3. Finish: all-pairs up to a size, sorted blocks beyond (a large front).
    if k * len(sums) ** 2 <= _ALL_PAIRS:
        on_front[_at(positions, _front_of(cols))] = True
        return on_front
    return _sorted_front(cols, sums, np.arange(n) if positions is None else positions, on_front)


def _sorted_front(
    cols: np.ndarray, sums: np.ndarray, positions: np.ndarray, on_front: np.ndarray
) -> np.ndarray:
    """Phase 2 (large fronts): leading blocks by decreasing sum. A block's front is
    final and prunes the rows after it; rows of equal sum share a block, and blocks
    double while they prune little."""
    order = np.argsort(-sums, kind="stable")
    cols, keys, positions = cols.take(order, axis=1), -sums[order], positions[order]
    k, block = len(cols), _FIRST_BLOCK
    while k * len(keys) ** 2 > _ALL_PAIRS:
        end = int(np.searchsorted(keys, keys[min(block, len(keys)) - 1], side="right"))
        head = cols[:, :end]
        found = _front_of(head)
        on_front[positions[:end][found]] = True
        keep = ~_dominated(head[:, found], cols[:, end:])
        before = len(keep)
        cols, keys, positions = (
            cols[:, end:].compress(keep, axis=1),
            keys[end:].compress(keep),
            positions[end:].compress(keep),
        )
        grow = len(keys) * 2 > before
        block = min(2 * block, 256) if grow else max(_FIRST_BLOCK, block // 2)
    on_front[positions[_front_of(cols)]] = True
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
        _require_finite(values)
        if 0 in values.shape:  # no prefixes, no candidates or no criteria
            return np.ones(values.shape[:2], dtype=bool)
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
