"""Accuracy with Wilson intervals, cost per strategy, the closing table and the chart,
all computed from the rows of ``predictions.jsonl`` (so a resumed run reports every
question, not only those of its last invocation)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

Z95 = 1.959963984540054


def wilson_interval(correct: int, total: int, z: float = Z95) -> tuple[float, float] | None:
    """The Wilson score interval of a proportion (95 % by default); ``None`` for no trials.

    Example:
        >>> [round(x, 4) for x in wilson_interval(8, 10)]
        [0.4902, 0.9433]
        >>> wilson_interval(0, 5)[0], wilson_interval(0, 0)
        (0.0, None)
    """
    if total <= 0:
        return None
    if not 0 <= correct <= total:
        raise ValueError(f"{correct} correct out of {total}")
    p = correct / total
    denominator = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denominator
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denominator
    # at p = 0 or 1 the bound is exactly 0 or 1; rounding would leave 1 - 1e-16
    low = 0.0 if correct == 0 else max(0.0, centre - half)
    high = 1.0 if correct == total else min(1.0, centre + half)
    return low, high


def _usage_sum(usages: Iterable[dict[str, Any]]) -> dict[str, float]:
    total = {"llm_calls": 0.0, "cache_hits": 0.0, "tokens": 0.0}
    for u in usages:
        total["llm_calls"] += u.get("llm_calls", 0)
        total["cache_hits"] += u.get("cache_hits", 0)
        total["tokens"] += u.get("prompt_tokens", 0) + u.get("completion_tokens", 0)
    return total


def pick_cost(row: dict[str, Any], pick: dict[str, Any], n_max: int) -> dict[str, Any]:
    """What ``pick`` cost on the question of ``row``: LLM calls, cache hits and tokens
    summed over exactly the work it used, and the wall seconds where they were measured
    for exactly that work (``None`` otherwise: sampling and scoring are timed once, at the
    largest N, for all candidates together)."""
    prm, strategy, n = pick["prm"], pick["strategy"], pick["n"]
    if strategy == "greedy":
        greedy = row["greedy"]
        return {**_usage_sum([greedy["usage"]]), "seconds": row["seconds"].get("greedy")}
    if strategy == "beam":
        beam = row["beams"][prm][str(n)]
        return {**_usage_sum([beam["usage"]]), "seconds": beam["seconds"]}
    candidates = row["candidates"][:n]
    usages = [c["usage"] for c in candidates]
    seconds = row["seconds"].get("sample") if n == n_max else None
    if prm != "none":
        usages += [s["usage"] for s in row["scores"][prm][:n] if "usage" in s]
        scored = row["seconds"].get(f"score:{prm}")
        seconds = None if seconds is None or scored is None else seconds + scored
    return {**_usage_sum(usages), "seconds": seconds}


def _unextractable(row: dict[str, Any], pick: dict[str, Any]) -> tuple[int, int]:
    """(candidates without an extractable answer, candidates whose scoring failed)
    behind ``pick``."""
    if pick["strategy"] == "greedy":
        return int(row["greedy"]["answer"] is None), 0
    if pick["strategy"] == "beam":
        beam = row["beams"][pick["prm"]][str(pick["n"])]
        return (
            sum(b["answer"] is None for b in beam["finished"]),
            len(beam["scoring_errors"]),
        )
    candidates = row["candidates"][: pick["n"]]
    failed = 0
    if pick["prm"] != "none":
        failed = sum(bool(s.get("error")) for s in row["scores"][pick["prm"]][: pick["n"]])
    return sum(c["answer"] is None for c in candidates), failed


def summarize(rows: list[dict[str, Any]], *, task: str, split: str, n_max: int) -> dict[str, Any]:
    """``results.json``: one entry per PRM × strategy × N with accuracy, its 95 % Wilson
    interval, counts (questions, correct, picks without an answer, candidates without an
    extractable answer, candidates whose scoring failed) and the mean cost per question.

    Example:
        >>> row = {"gold": "A", "candidates": [{"answer": "A", "usage": {"llm_calls": 1}}],
        ...        "seconds": {"sample": 2.0}, "picks": [{"prm": "none", "strategy":
        ...        "majority", "n": 1, "answer": "A", "correct": True}]}
        >>> r = summarize([row], task="arc-c", split="test", n_max=1)["results"][0]
        >>> r["accuracy"], r["correct"], r["cost"]["llm_calls"], r["cost"]["seconds"]
        (1.0, 1, 1.0, 2.0)
    """
    groups: dict[tuple[str, str, int], list[tuple[dict[str, Any], dict[str, Any]]]] = {}
    for row in rows:
        for pick in row["picks"]:
            groups.setdefault((pick["prm"], pick["strategy"], pick["n"]), []).append((row, pick))
    entries = []
    for (prm, strategy, n), items in groups.items():
        total = len(items)
        correct = sum(bool(p["correct"]) for _, p in items)
        interval = wilson_interval(correct, total)
        counts = [_unextractable(r, p) for r, p in items]
        costs = [pick_cost(r, p, n_max) for r, p in items]
        seconds = [c["seconds"] for c in costs]
        entries.append(
            {
                "prm": prm,
                "strategy": strategy,
                "n": n,
                "accuracy": correct / total,
                "ci95": None if interval is None else [round(x, 6) for x in interval],
                "questions": total,
                "correct": correct,
                "no_answer": sum(p["answer"] is None for _, p in items),
                "unextractable": sum(c[0] for c in counts),
                "scoring_failed": sum(c[1] for c in counts),
                "cost": {
                    "llm_calls": sum(c["llm_calls"] for c in costs) / total,
                    "cache_hits": sum(c["cache_hits"] for c in costs) / total,
                    "requests": sum(c["llm_calls"] + c["cache_hits"] for c in costs) / total,
                    "tokens": sum(c["tokens"] for c in costs) / total,
                    "seconds": None
                    if any(s is None for s in seconds)
                    else round(sum(s for s in seconds if s is not None) / total, 3),
                },
            }
        )
    entries.sort(key=lambda e: (e["prm"] != "none", e["prm"], e["strategy"], e["n"]))
    candidates = [c for row in rows for c in row["candidates"]]
    return {
        "task": task,
        "split": split,
        "questions": len(rows),
        "candidates": {
            "sampled": len(candidates),
            "policy_errors": sum(bool(c.get("error")) for c in candidates),
            "unextractable": sum(c["answer"] is None for c in candidates),
        },
        "results": entries,
    }


def table_rows(results: dict[str, Any]) -> list[tuple[str, ...]]:
    """The closing table: PRM, strategy, N, accuracy %, 95 % CI, correct/questions,
    picks without an answer, requests and wall seconds per question.

    Example:
        >>> res = {"results": [{"prm": "none", "strategy": "majority", "n": 4, "accuracy": 0.5,
        ...   "ci95": [0.15, 0.85], "questions": 4, "correct": 2, "no_answer": 1,
        ...   "cost": {"requests": 4.0, "seconds": None}}]}
        >>> table_rows(res)[0]
        ('none', 'majority', '4', '50.0', '15–85', '2/4', '1', '4.0', '–')
    """
    rows = []
    for e in results["results"]:
        low, high = e["ci95"] or (math.nan, math.nan)
        seconds = e["cost"]["seconds"]
        rows.append(
            (
                e["prm"],
                e["strategy"],
                str(e["n"]),
                f"{100 * e['accuracy']:.1f}",
                f"{100 * low:.0f}–{100 * high:.0f}",
                f"{e['correct']}/{e['questions']}",
                str(e["no_answer"]),
                f"{e['cost']['requests']:.1f}",
                "–" if seconds is None else f"{seconds:.{1 if seconds < 100 else 0}f}",
            )
        )
    return rows


TABLE_HEADER = (
    "PRM",
    "strategy",
    "N",
    "acc %",
    "95 % CI",
    "correct",
    "no ans",
    "req/q",
    "s/q",
)


_AGG_COLOURS = {"min": "tab:blue", "last": "tab:orange", "prod": "tab:green", "mean": "tab:red"}


def _style(owner: str, strategy: str) -> dict[str, Any]:
    """Line style: majority grey, beam purple squares; best-of-N solid and weighted vote
    dashed, one colour per aggregation.

    Example:
        >>> _style("critic", "weighted/min")["ls"], _style("none", "majority")["color"]
        ('--', 'grey')
    """
    if owner == "none":
        return {"color": "grey", "marker": "o", "alpha": 0.8}
    if strategy == "beam":
        return {"color": "tab:purple", "marker": "s", "lw": 2}
    kind, _, agg = strategy.partition("/")
    return {
        "color": _AGG_COLOURS.get(agg, "black"),
        "marker": "o" if kind == "best-of-n" else "^",
        "ls": "-" if kind == "best-of-n" else "--",
    }


def save_chart(path: str | Path, results: dict[str, Any]) -> None:
    """Accuracy against N: one panel per PRM, one line per strategy (the policy alone,
    greedy, dashed; majority vote in grey on every panel for reference)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    entries = results["results"]
    prms = [p for p in dict.fromkeys(e["prm"] for e in entries) if p != "none"] or ["none"]
    fig, axes = plt.subplots(
        1, len(prms), figsize=(5.2 * len(prms), 4.2), squeeze=False, sharey=True
    )
    ns = sorted({e["n"] for e in entries})
    for ax, prm in zip(axes[0], prms, strict=True):
        lines: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for e in entries:
            if e["prm"] == prm or (e["prm"] == "none" and prm != "none"):
                lines.setdefault((e["prm"], e["strategy"]), []).append(e)
        for (owner, strategy), points in lines.items():
            points.sort(key=lambda e: e["n"])
            ys = [100 * e["accuracy"] for e in points]
            if strategy == "greedy":
                ax.axhline(ys[0], color="black", ls="--", lw=1, label="greedy (policy alone)")
                continue
            ax.plot([e["n"] for e in points], ys, label=strategy, **_style(owner, strategy))
        ax.set_title(f"PRM: {prm}")
        ax.set_xscale("log", base=2)
        ax.set_xticks(ns, [str(n) for n in ns])
        ax.set_xlabel("N (samples per question)")
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel(f"accuracy % ({results.get('task')}, {results.get('questions')} q)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
