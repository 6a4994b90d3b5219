"""Pareto fronts: dgprm.pareto against paretoset (PyPI) and a naive O(n²) reference.

Two workloads, fronts required identical across all three (the run stops if not):

1. the real one — m prefixes × n candidates × k criteria, scores on the 0..1 grid in
   steps of 0.1 (as the scorer writes them, so ties are common): dgprm's single
   batched call against a per-prefix paretoset loop (target ≥ 20× faster);
2. single large sets, random and correlated, n ∈ {1e3, 1e4, 1e5}, k ∈ {2, 4, 8}
   (target: no slower than paretoset at any size), with dgprm's peak memory.

paretoset is warmed up first (its numba kernels compile on the first call) and
run with ``distinct=False`` so that equal rows are all kept, as in dgprm.

Usage: python benchmarks/pareto_fronts.py [--prefixes 100000] [--sizes 1000 10000 100000]
       [--seeds 1] [--skip-batched]
"""

from __future__ import annotations

import argparse
import math
import timeit
import tracemalloc

import numpy as np
from paretoset import paretoset

from dgprm.pareto import dominates, pareto_front


def naive_front(values: np.ndarray) -> np.ndarray:
    """O(n²) reference: a row is on the front when no row dominates it (row blocks)."""
    n = len(values)
    mask = np.ones(n, dtype=bool)
    block = max(1, 2_000_000 // max(1, n * values.shape[1]))
    for start in range(0, n, block):
        rows = values[start : start + block]
        mask[start : start + block] = ~dominates(values[None, :, :], rows[:, None, :]).any(axis=1)
    return mask


def paretoset_front(values: np.ndarray) -> np.ndarray:
    return paretoset(values, sense=["max"] * values.shape[1], distinct=False)


def timed(fn, *args, repeats: int = 5) -> tuple[float, object]:
    """Best seconds per call. Calls are looped (timeit's autorange: at least 0.2 s per
    measurement), so microsecond-scale calls are not lost in timer noise."""
    timer = timeit.Timer(lambda: fn(*args))
    number, _ = timer.autorange()
    best = min(timer.repeat(repeat=repeats, number=number)) / number
    return best, fn(*args)


def timed_pair(first, second, values: np.ndarray, repeats: int) -> tuple[float, float]:
    """Best seconds per call of two functions on the same input, measured in alternation,
    so that a slow spell of the machine hits both sides instead of one."""
    timers = [timeit.Timer(lambda fn=fn: fn(values)) for fn in (first, second)]
    numbers = [timer.autorange()[0] for timer in timers]
    best = [math.inf, math.inf]
    for _ in range(repeats):
        for side, (timer, number) in enumerate(zip(timers, numbers, strict=True)):
            best[side] = min(best[side], timer.timeit(number) / number)
    return best[0], best[1]


def peak_mib(fn, *args) -> float:
    tracemalloc.start()
    fn(*args)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 2**20


def check(name: str, *masks: np.ndarray) -> None:
    for other in masks[1:]:
        if not np.array_equal(masks[0], other):
            raise SystemExit(f"{name}: fronts differ between implementations")


def batched(m: int, n: int, k: int, rng: np.random.Generator) -> None:
    values = rng.integers(0, 11, size=(m, n, k)) / 10
    ours_s, ours = timed(pareto_front, values)
    loop_s, loop = timed(lambda v: np.stack([paretoset_front(x) for x in v]), values, repeats=2)
    naive_s, naive = timed(lambda v: np.stack([naive_front(x) for x in v]), values, repeats=1)
    check("batched", ours, loop, naive)
    print(
        f"\n## real workload: {m:,} prefixes × {n} candidates × {k} criteria "
        f"(front share {ours.mean():.2f})\n"
    )
    print("| implementation | seconds | dgprm speed-up |")
    print("|---|---:|---:|")
    print(f"| dgprm `pareto_front` (one batched call) | {ours_s:.3f} | 1.0× |")
    print(f"| paretoset, loop over prefixes | {loop_s:.3f} | {loop_s / ours_s:.1f}× |")
    print(f"| naive O(n²), loop over prefixes | {naive_s:.3f} | {naive_s / ours_s:.1f}× |")
    print(
        f"\ndgprm peak memory: {peak_mib(pareto_front, values):.1f} MiB "
        f"(input {values.nbytes / 2**20:.1f} MiB)"
    )


def single_set(kind: str, n: int, k: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng((seed, n, k, kind == "correlated"))
    if kind == "random":
        return rng.random((n, k))
    return rng.random((n, 1)) + 0.3 * rng.random((n, k))  # shared quality plus noise


def single_sets(sizes: list[int], dims: list[int], seeds: int) -> None:
    """One row per cell; with several seeds, times and ratio are medians over the seeds'
    data sets and the worst ratio is shown too. The naive reference runs on seed 0."""
    print(f"\n## single sets ({seeds} seed{'s' if seeds > 1 else ''} per cell)\n")
    print(
        "| data | n | k | front | dgprm ms | paretoset ms | paretoset / dgprm | worst | "
        "naive ms | dgprm peak MiB |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for kind in ("random", "correlated"):
        for n in sizes:
            for k in dims:
                repeats = 5 if n <= 10_000 else 2
                ours_s, theirs_s, naive = [], [], "–"
                for seed in range(seeds):
                    values = single_set(kind, n, k, seed)
                    ours_t, theirs_t = timed_pair(
                        pareto_front, paretoset_front, values, repeats=repeats
                    )
                    masks = [pareto_front(values), paretoset_front(values)]
                    ours = masks[0]
                    if seed == 0:
                        front, peak = int(ours.sum()), peak_mib(pareto_front, values)
                        if n <= 10_000:
                            naive_t, reference = timed(naive_front, values, repeats=1)
                            masks.append(reference)
                            naive = f"{naive_t * 1e3:.0f}"
                    check(f"{kind} n={n} k={k} seed={seed}", *masks)
                    ours_s.append(ours_t)
                    theirs_s.append(theirs_t)
                ratios = np.divide(theirs_s, ours_s)
                print(
                    f"| {kind} | {n:,} | {k} | {front:,} | {np.median(ours_s) * 1e3:.3f} | "
                    f"{np.median(theirs_s) * 1e3:.3f} | {np.median(ratios):.2f}× | "
                    f"{ratios.min():.2f}× | {naive} | {peak:.1f} |"
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prefixes", type=int, default=100_000)
    parser.add_argument("--candidates", type=int, default=8)
    parser.add_argument("--criteria", type=int, default=6)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    parser.add_argument("--dims", type=int, nargs="+", default=[2, 4, 8])
    parser.add_argument("--seeds", type=int, default=1, help="data sets per single-set cell")
    parser.add_argument("--skip-batched", action="store_true")
    args = parser.parse_args()
    if args.seeds < 1:
        parser.error("--seeds must be at least 1")
    rng = np.random.default_rng(0)
    paretoset_front(rng.random((50, 3)))  # numba compiles here, outside the timings
    if not args.skip_batched:
        batched(args.prefixes, args.candidates, args.criteria, rng)
    single_sets(args.sizes, args.dims, args.seeds)


if __name__ == "__main__":
    main()
