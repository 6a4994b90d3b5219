from unittest import mock

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from dgprm import pareto
from dgprm.pareto import dominates, nondominated_layers, pareto_front, preference_pairs

small_ints = st.integers(min_value=0, max_value=3)  # few values: many ties and duplicates
matrices = st.integers(1, 30).flatmap(
    lambda n: st.integers(1, 4).flatmap(
        lambda k: arrays(np.float64, (n, k), elements=small_ints.map(float))
    )
)


def naive_front(values):
    return np.array(
        [
            not any(dominates(values[j], values[i]) for j in range(len(values)))
            for i in range(len(values))
        ]
    )


@settings(max_examples=200, deadline=None)
@given(matrices)
def test_front_matches_definition(values):
    mask = pareto_front(values)
    assert np.array_equal(mask, naive_front(values))
    members, others = values[mask], values[~mask]
    assert not any(dominates(a, b) for a in members for b in members)
    assert all(any(dominates(a, b) for a in members) for b in others)


@settings(max_examples=100, deadline=None)
@given(matrices, st.randoms())
def test_front_is_invariant_to_row_order(values, rnd):
    perm = list(range(len(values)))
    rnd.shuffle(perm)
    assert np.array_equal(pareto_front(values)[perm], pareto_front(values[perm]))


@settings(max_examples=100, deadline=None)
@given(matrices)
def test_pairs_satisfy_dominance(values):
    mask = pareto_front(values)
    for chosen, rejected, margin in preference_pairs(values):
        assert mask[chosen] and not mask[rejected]
        assert dominates(values[chosen], values[rejected])
        assert margin == pytest.approx((values[chosen] - values[rejected]).mean())


# Thresholds that send even tiny inputs down each code path: all-pairs only; the
# single-pivot rounds, the round of several pivots (leaders), or both, each ending in
# all-pairs or in sorted blocks; the sorted blocks from their first row; and the
# chunked comparisons. Larger sets of two criteria take the sweep (see the next test).
_NEVER = 1 << 30
PATHS = {
    "all-pairs": {"_FEW_CELLS": _NEVER},
    "pivot rounds": {"_FEW_CELLS": 0, "_MID_CELLS": 0, "_LEADER_CELLS": _NEVER},
    "leaders": {"_FEW_CELLS": 0, "_MID_CELLS": _NEVER, "_LEADER_CELLS": 0},
    "two leaders": {"_FEW_CELLS": 0, "_MID_CELLS": _NEVER, "_LEADER_CELLS": 0, "_LEADERS": 2},
    "rounds, leaders, sorted blocks": {
        "_FEW_CELLS": 0,
        "_MID_CELLS": 0,
        "_LEADER_CELLS": 0,
        "_ALL_PAIRS": 0,
    },
    "sorted blocks": {
        "_FEW_CELLS": 0,
        "_MID_CELLS": _NEVER,
        "_LEADER_CELLS": _NEVER,
        "_ALL_PAIRS": 0,
        "_FIRST_BLOCK": 1,
    },
    "chunked": {
        "_FEW_CELLS": 0,
        "_MID_CELLS": _NEVER,
        "_LEADER_CELLS": _NEVER,
        "_ALL_PAIRS": 0,
        "_FIRST_BLOCK": 2,
        "_CELLS": 1,
    },
}
larger = st.integers(1, 80).flatmap(
    lambda n: st.integers(1, 5).flatmap(
        lambda k: arrays(
            np.float64,
            (n, k),
            elements=st.one_of(small_ints.map(float), st.floats(-1e3, 1e3, width=16)),
        )
    )
)


@pytest.mark.parametrize("path", PATHS)
@settings(max_examples=150, deadline=None)
@given(values=larger)
@pytest.mark.slow
def test_every_code_path_matches_the_definition(path, values):
    with mock.patch.multiple(pareto, **PATHS[path]):
        assert np.array_equal(pareto_front(values), naive_front(values))


@settings(max_examples=200, deadline=None)
@given(
    st.integers(1, 300).flatmap(
        lambda n: arrays(
            np.float64,
            (n, 2),
            elements=st.one_of(small_ints.map(float), st.floats(-1e3, 1e3, width=16)),
        )
    )
)
@pytest.mark.slow
def test_two_criteria_sweep_matches_the_definition(values):
    # grid values give ties on one criterion and duplicate rows, both adjacent after the sort
    with mock.patch.object(pareto, "_FEW_CELLS", 0):  # the sweep even for tiny sets
        assert np.array_equal(pareto_front(values), naive_front(values))


def test_two_criteria_duplicates_share_their_fate():
    values = np.array([[1.0, 1.0], [3.0, 0.0], [1.0, 1.0], [0.0, 3.0], [3.0, 0.0], [0.0, 0.0]])
    dominated = np.array([[1.0, 1.0], [2.0, 1.0], [1.0, 1.0], [1.0, 2.0]])
    with mock.patch.object(pareto, "_FEW_CELLS", 0):  # the sweep even for tiny sets
        assert pareto_front(values).tolist() == [True, True, True, True, True, False]
        assert pareto_front(dominated).tolist() == [False, True, False, True]


@settings(max_examples=30, deadline=None)
@given(
    st.integers(1, 40).flatmap(
        lambda m: arrays(np.float64, (m, 4, 3), elements=small_ints.map(float))
    )
)
def test_batched_blocks_cover_every_prefix(values):
    with mock.patch.object(pareto, "_BATCH_CELLS", 16):  # one prefix per block
        assert np.array_equal(pareto_front(values), [naive_front(v) for v in values])


def test_empty_shapes():
    assert pareto_front(np.zeros((0, 3))).shape == (0,)
    assert pareto_front(np.zeros((3, 0))).tolist() == [True, True, True]
    assert pareto_front(np.zeros((2, 0, 3))).shape == (2, 0)
    assert pareto_front(np.zeros((2, 3, 0))).all()


@settings(max_examples=50, deadline=None)
@given(
    st.integers(1, 6).flatmap(
        lambda m: arrays(np.float64, (m, 5, 3), elements=small_ints.map(float))
    )
)
def test_batched_front_equals_per_prefix_front(values):
    batched = pareto_front(values)
    assert batched.shape == values.shape[:2]
    for p in range(len(values)):
        assert np.array_equal(batched[p], naive_front(values[p]))


def test_duplicates_do_not_dominate_each_other_and_give_no_pair():
    values = np.array([[1.0, 1.0], [1.0, 1.0]])
    assert pareto_front(values).tolist() == [True, True]
    assert preference_pairs(values) == []


def test_large_sets_match_a_naive_reference():
    rng = np.random.default_rng(0)
    values = rng.integers(0, 20, size=(3000, 3)).astype(float)
    dominated = np.zeros(len(values), dtype=bool)
    for start in range(0, len(values), 500):
        block = values[start : start + 500]
        dominated[start : start + 500] = dominates(values[:, None, :], block[None]).any(axis=0)
    assert np.array_equal(pareto_front(values), ~dominated)


def test_layers_peel_fronts():
    values = np.array([[3, 3], [2, 2], [1, 1], [3, 0], [2, 2]], dtype=float)
    assert nondominated_layers(values).tolist() == [0, 1, 2, 1, 1]  # [3,3] dominates [3,0]


@settings(max_examples=100, deadline=None)
@given(matrices)
def test_layers_match_their_definition(values):
    """Layer 0 is the front; no row dominates another of its layer; every row of layer
    L > 0 is dominated by a row of layer L − 1 and by none of a layer ≥ L."""
    layers = nondominated_layers(values)
    assert np.array_equal(layers == 0, pareto_front(values))
    for i, layer in enumerate(layers):
        dominators = {int(layers[j]) for j in range(len(values)) if dominates(values[j], values[i])}
        assert all(d < layer for d in dominators)
        assert layer == 0 or layer - 1 in dominators


@pytest.mark.parametrize("bad", [[[np.nan, 1.0]], [[np.inf, 0.0]], [1.0, 2.0]])
def test_bad_values_are_refused(bad):
    with pytest.raises(ValueError):
        pareto_front(bad)


def test_dominator_with_an_equal_rounded_sum_is_found():
    # both rows sum to 1e16 in floating point, yet the first dominates the second
    values = np.array([[1e16, 0.0, 0.0], [1e16, 1.0, 0.0], [0.0, 0.0, 2e16]])
    assert pareto_front(values).tolist() == [False, True, True]


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_bad_value_in_a_large_set_is_refused(bad):
    values = np.random.default_rng(0).random((500, 3))
    values[321, 1] = bad
    with pytest.raises(ValueError, match="NaN or infinite"):
        pareto_front(values)


# near the float maximum numpy warns that the plain sums overflow; the front stays exact
@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
@pytest.mark.parametrize("scale", [1e200, 1e308])
def test_huge_finite_values_give_the_exact_front(scale):
    values = np.random.default_rng(1).integers(0, 5, size=(400, 3)) * (scale / 4)
    expected = ~dominates(values[:, None, :], values[None]).any(axis=0)
    assert np.array_equal(pareto_front(values), expected)
